/* log.h - one line per message on stderr: "luring: [level] message". Safe
 * from any thread (one write per line). */
#ifndef LURING_LOG_H
#define LURING_LOG_H

void log_msg(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define log_err(...)  log_msg("error", __VA_ARGS__)
#define log_warn(...) log_msg("warn", __VA_ARGS__)
#define log_info(...) log_msg("info", __VA_ARGS__)

#endif
