/* log.c - one line per message on stderr: "luring: [level] message". */
#include <stdarg.h>
#include <stdio.h>

#include "base/log.h"

void log_msg(const char *level, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(line, sizeof line, "luring: [%s] ", level);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* one fputs per line so worker threads' lines don't interleave */
    fprintf(stderr, "%s\n", line);
}
