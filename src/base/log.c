/* log.c - the error log (see log.h). */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"

static _Atomic int min_level = LOG_INFO;
static __thread int self_worker = -1;
static __thread uint64_t self_request;

static const char *const names[] = {"debug", "info", "warn", "error",
                                    "crit"};

void log_set_level(enum log_level level) { min_level = (int)level; }

bool log_enabled(enum log_level level) { return (int)level >= min_level; }

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i <= LOG_CRIT; i++)
        if (strcasecmp(name, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    if (strcasecmp(name, "err") == 0) {
        *out = LOG_ERROR;
        return 0;
    }
    return -1;
}

void log_set_worker(int id) { self_worker = id; }

void log_set_request(uint64_t id) { self_request = id; }

void log_at(enum log_level level, const char *fmt, ...)
{
    if ((int)level < min_level)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char who[16];
    if (self_worker >= 0)
        snprintf(who, sizeof who, "w%d", self_worker);
    else
        snprintf(who, sizeof who, "main");
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] luring %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     names[level], who);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 1)
        len = sizeof line - 1;
    if (self_request)
        len += (size_t)snprintf(line + len, sizeof line - len,
                                " (request %016llx)",
                                (unsigned long long)self_request);
    if (len > sizeof line - 1)
        len = sizeof line - 1;
    /* one fputs per line so worker threads' lines don't interleave */
    line[len] = '\n';
    fwrite(line, 1, len + 1, stderr);
}
