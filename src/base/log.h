/* log.h - the error log: one line per message on stderr,
 *   2026-12-01T00:10:00.123Z [info] luring w0: message (request 1f3a...)
 * an RFC 3339 UTC timestamp with milliseconds, the level, who logs (w<N>
 * for worker N, "main" for the main thread), the message, and the id of
 * the request being handled when there is one. Safe from any thread (one
 * write per line). Messages below the level set by log_set_level (the
 * command line's --log-level) are not written. */
#ifndef LURING_LOG_H
#define LURING_LOG_H

#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_CRIT };

/** Write one line at `level` (not written below log_set_level's). */
void log_at(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_crit(...)  log_at(LOG_CRIT, __VA_ARGS__)
#define log_err(...)   log_at(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)

/** The least level written, for the whole process (default LOG_INFO). */
void log_set_level(enum log_level level);
/** Would a message at `level` be written? (skip building costly ones) */
bool log_enabled(enum log_level level);
/** "debug", "info", "warn", "error" or "crit" (also "err") → 0 and *out;
 * -1 for anything else. */
int log_level_parse(const char *name, enum log_level *out);
/** The calling thread logs as worker `id` (w<id>); -1: "main". */
void log_set_worker(int id);
/** The id of the request the calling thread handles now (req.id), 0:
 * none. Its lines end with " (request <16 hex digits>)". */
void log_set_request(uint64_t id);

#endif
