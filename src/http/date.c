/* date.c - HTTP-date parsing and formatting (see date.h). Own code rather
 * than strptime/strftime: those follow the locale, accept more than the
 * grammar (strptime takes day and month names in any case and seconds up
 * to 61) and need a NUL-terminated copy. */
#include "http/date.h"

#include <stdbool.h>
#include <string.h>

static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
                                 "Sat" };
static const char *const long_days[7] = { "Sunday", "Monday", "Tuesday",
    "Wednesday", "Thursday", "Friday", "Saturday" };
static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; m 1..12). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_days(int64_t y, unsigned m)
{
    static const unsigned md[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
                                     30, 31 };
    return m == 2 && is_leap(y) ? 29 : md[m - 1];
}

/* A cursor over the value being parsed. */
struct cur {
    const char *p, *end;
};

static bool lit(struct cur *c, const char *s)
{
    size_t k = strlen(s);
    if ((size_t)(c->end - c->p) < k || memcmp(c->p, s, k) != 0)
        return false;
    c->p += k;
    return true;
}

/* exactly k digits */
static bool digits(struct cur *c, unsigned k, unsigned *v)
{
    if ((size_t)(c->end - c->p) < k)
        return false;
    unsigned x = 0;
    for (unsigned i = 0; i < k; i++) {
        char ch = c->p[i];
        if (ch < '0' || ch > '9')
            return false;
        x = x * 10 + (unsigned)(ch - '0');
    }
    c->p += k;
    *v = x;
    return true;
}

/* a three-letter month name: 1..12, 0 when none */
static unsigned month(struct cur *c)
{
    for (unsigned i = 0; i < 12; i++)
        if (lit(c, months[i]))
            return i + 1;
    return 0;
}

/* "HH:MM:SS" */
static bool time_of_day(struct cur *c, unsigned *h, unsigned *mi, unsigned *s)
{
    return digits(c, 2, h) && lit(c, ":") && digits(c, 2, mi) &&
           lit(c, ":") && digits(c, 2, s) && *h < 24 && *mi < 60 && *s <= 60;
}

static int64_t make_time(int64_t y, unsigned m, unsigned d, unsigned h,
                         unsigned mi, unsigned s)
{
    if (y < 1900 || y > 9999 || m < 1 || m > 12 || d < 1 ||
        d > month_days(y, m))
        return INT64_MIN;
    if (s == 60)
        s = 59; /* a leap second: no time_t of its own */
    return days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + s;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" after the day name and the comma */
static int64_t imf_fixdate(struct cur *c)
{
    unsigned d, m, y, h, mi, s;
    if (!lit(c, " ") || !digits(c, 2, &d) || !lit(c, " ") ||
        (m = month(c)) == 0 || !lit(c, " ") || !digits(c, 4, &y) ||
        !lit(c, " ") || !time_of_day(c, &h, &mi, &s) || !lit(c, " GMT") ||
        c->p != c->end)
        return INT64_MIN;
    return make_time(y, m, d, h, mi, s);
}

/* "Sunday, 06-Nov-94 08:49:37 GMT" after the day name and the comma */
static int64_t rfc850_date(struct cur *c, int64_t now)
{
    unsigned d, m, yy, h, mi, s;
    if (!lit(c, " ") || !digits(c, 2, &d) || !lit(c, "-") ||
        (m = month(c)) == 0 || !lit(c, "-") || !digits(c, 2, &yy) ||
        !lit(c, " ") || !time_of_day(c, &h, &mi, &s) || !lit(c, " GMT") ||
        c->p != c->end)
        return INT64_MIN;
    /* RFC 9110 §5.6.7: more than 50 years in the future -> the most
     * recent past year with the same last two digits */
    int64_t now_y = 1970 + now / 31556952; /* close enough for a century */
    if (now < 0)
        now_y = 1970;
    int64_t y = now_y - now_y % 100 + yy;
    if (y > now_y + 50)
        y -= 100;
    return make_time(y, m, d, h, mi, s);
}

/* "Sun Nov  6 08:49:37 1994" after the day name */
static int64_t asctime_date(struct cur *c)
{
    unsigned m, d, y, h, mi, s;
    if (!lit(c, " ") || (m = month(c)) == 0 || !lit(c, " "))
        return INT64_MIN;
    if (lit(c, " ")) { /* day-of-month: SP DIGIT */
        if (!digits(c, 1, &d))
            return INT64_MIN;
    } else if (!digits(c, 2, &d)) {
        return INT64_MIN;
    }
    if (!lit(c, " ") || !time_of_day(c, &h, &mi, &s) || !lit(c, " ") ||
        !digits(c, 4, &y) || c->p != c->end)
        return INT64_MIN;
    return make_time(y, m, d, h, mi, s);
}

int64_t http_date_parse(const char *p, size_t n, int64_t now)
{
    struct cur c = { p, p + n };
    while (c.p < c.end && (*c.p == ' ' || *c.p == '\t'))
        c.p++;
    while (c.end > c.p && (c.end[-1] == ' ' || c.end[-1] == '\t'))
        c.end--;
    for (int i = 0; i < 7; i++) {
        struct cur t = c;
        if (lit(&t, long_days[i]) && lit(&t, ","))
            return rfc850_date(&t, now);
    }
    for (int i = 0; i < 7; i++) {
        struct cur t = c;
        if (!lit(&t, days[i]))
            continue;
        if (lit(&t, ","))
            return imf_fixdate(&t);
        return asctime_date(&t);
    }
    return INT64_MIN;
}

size_t http_date_format(int64_t t, char *out)
{
    if (t < HTTP_DATE_MIN)
        t = HTTP_DATE_MIN;
    if (t > HTTP_DATE_MAX)
        t = HTTP_DATE_MAX;
    int64_t days_n = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t secs = t - days_n * 86400;
    /* civil from days (the inverse of days_from_civil) */
    int64_t z = days_n + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    unsigned wd = (unsigned)((days_n % 7 + 7 + 4) % 7); /* 1970-01-01: Thu */
    unsigned h = (unsigned)(secs / 3600), mi = (unsigned)(secs / 60 % 60),
             s = (unsigned)(secs % 60);
    char *o = out;
    memcpy(o, days[wd], 3);
    o += 3;
    *o++ = ',';
    *o++ = ' ';
    *o++ = (char)('0' + d / 10);
    *o++ = (char)('0' + d % 10);
    *o++ = ' ';
    memcpy(o, months[m - 1], 3);
    o += 3;
    *o++ = ' ';
    unsigned yy = (unsigned)y;
    *o++ = (char)('0' + yy / 1000);
    *o++ = (char)('0' + yy / 100 % 10);
    *o++ = (char)('0' + yy / 10 % 10);
    *o++ = (char)('0' + yy % 10);
    *o++ = ' ';
    *o++ = (char)('0' + h / 10);
    *o++ = (char)('0' + h % 10);
    *o++ = ':';
    *o++ = (char)('0' + mi / 10);
    *o++ = (char)('0' + mi % 10);
    *o++ = ':';
    *o++ = (char)('0' + s / 10);
    *o++ = (char)('0' + s % 10);
    memcpy(o, " GMT", 4);
    return HTTP_DATE_LEN;
}
