/* date.h - HTTP-date (RFC 9110 §5.6.7): the three formats a recipient
 * accepts, and IMF-fixdate, the one a sender generates. Pure functions, no
 * locale, no allocation, no time zone (every HTTP-date is GMT). */
#ifndef LURING_DATE_H
#define LURING_DATE_H

#include <stddef.h>
#include <stdint.h>

/* Years an HTTP-date may name here: 1900..9999 (a four-digit year field;
 * earlier dates are of no use to a cache and are rejected). */
#define HTTP_DATE_MIN (-2208988800LL) /* 1900-01-01T00:00:00Z */
#define HTTP_DATE_MAX 253402300799LL  /* 9999-12-31T23:59:59Z */

/* Length of an IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT". */
#define HTTP_DATE_LEN 29

/** Parse an HTTP-date (RFC 9110 §5.6.7) from p[0..n): IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete RFC 850 form
 * ("Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit year more than 50 years
 * after `now` is taken as the most recent past year with those digits)
 * and asctime ("Sun Nov  6 08:49:37 1994"). Names of days and months are
 * case-sensitive, as the grammar says; the day name is checked for being
 * one (not for matching the date). Leading and trailing spaces and tabs
 * are ignored. A second of 60 (a leap second) is read as 59.
 * `now`: seconds since the epoch, only for the RFC 850 century.
 * Returns seconds since the epoch (negative before 1970), or INT64_MIN
 * when p is not an HTTP-date. */
int64_t http_date_parse(const char *p, size_t n, int64_t now);

/** Write t (seconds since the epoch, clamped to HTTP_DATE_MIN..MAX) as an
 * IMF-fixdate into out (HTTP_DATE_LEN bytes, plus a NUL when out has room
 * for HTTP_DATE_LEN + 1). Returns HTTP_DATE_LEN. */
size_t http_date_format(int64_t t, char *out);

#endif
