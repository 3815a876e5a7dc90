/* range.h - the Range request field (RFC 9110 §14.1.2, §14.2) for the
 * bytes unit: parsed and normalised against a representation of known
 * length into a short list of byte ranges, or found unsatisfiable, or to
 * be ignored. Pure functions; no allocation. */
#ifndef LURING_RANGE_H
#define LURING_RANGE_H

#include <stddef.h>
#include <stdint.h>

/* The most range-specs a Range field may hold before it is ignored (a 200
 * with the whole representation, as §14.2 allows; nginx's max_ranges has
 * the same idea): bounds the parts of a multipart/byteranges response and
 * the work of checking them. */
#define RANGE_MAX 16

/* Positions past this are read as this (a 20-digit first-pos is simply
 * past the end; a 20-digit last-pos or suffix-length, the whole rest). */
#define RANGE_POS_MAX (INT64_C(1) << 62)

/* One satisfiable byte range: positions first..last, both included,
 * 0 <= first <= last < the representation's length. */
struct range {
    int64_t first, last;
};

enum {
    RANGE_IGNORE = -1,       /* not a bytes range set we serve: send 200 */
    RANGE_UNSATISFIABLE = 0, /* valid, but nothing in it is in the
                              * representation: 416 (§15.5.17) */
};

/** Evaluate the Range field value p[0..n) against a representation of
 * `len` bytes (>= 0). Returns the number of ranges written to
 * out[RANGE_MAX] (1..RANGE_MAX), RANGE_UNSATISFIABLE, or RANGE_IGNORE.
 *
 * Grammar (§14.1.1, §14.1.2): a range unit (a token; only "bytes", in any
 * case, is ours: any other unit is ignored, §14.2), "=", then a list of
 * int-range (first-pos "-" [last-pos]) and suffix-range ("-"
 * suffix-length), separated by commas with optional spaces and tabs,
 * empty elements allowed (§5.6.1). Ignored: anything that does not follow
 * it, an int-range whose last-pos is below its first-pos (invalid,
 * §14.1.1), more than RANGE_MAX range-specs, and any Range on an empty
 * representation (no range of it can be stated in a Content-Range).
 *
 * Normalisation: last-pos is clamped to len - 1; a suffix-range stands
 * for the last suffix-length bytes (all of them when it is longer);
 * unsatisfiable specs (first-pos >= len, suffix-length 0) are dropped.
 * When the remaining ranges overlap one another, they are sorted and every
 * overlapping or adjacent pair is coalesced into one (§14.6 allows it
 * regardless of the requested order): the result never covers a byte
 * twice, so a response is never longer than the representation plus the
 * part heads. Ranges that do not overlap keep the order asked for. */
int range_eval(const char *p, size_t n, int64_t len, struct range *out);

#endif
