/* sim.c - `luring sim`: replays a CSV request trace through an eviction
 * policy and prints its miss ratios, counting exactly as libCacheSim's
 * cachesim does, so results compare with shared/traces/REFERENCE.md.
 *
 *     luring sim --policy lru,s3fifo --size 1%,5% [--bytes] trace.csv */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/sim.h"

/* One distinct key of the trace: its node lives here for the whole run. */
struct sim_obj {
    struct policy_node node; /* node.key = hash of the key string */
    const char *key;         /* into sim_trace.buf */
    uint32_t klen;
    bool resident;           /* linked into the policy (not a ghost) */
};

struct sim_trace {
    char *buf;              /* the CSV; keys point into it */
    struct sim_obj *objs;
    uint32_t nobj, objcap;
    uint32_t *tab;          /* key index: obj index + 1, 0 = empty slot */
    uint32_t tabmask;
    uint32_t *req_obj;      /* per request: its object */
    uint64_t *req_size;     /* per request: its own size */
    uint64_t nreq, reqcap;
    uint64_t wss_bytes;
};

/* ==== loading ==== */

static uint64_t hash64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a 64-bit mix */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static int grow_tab(struct sim_trace *t)
{
    uint32_t n = t->tab ? (t->tabmask + 1) * 2 : 1024;
    uint32_t *tab = calloc(n, sizeof *tab);
    if (tab == NULL)
        return -1;
    for (uint32_t i = 0; i < t->nobj; i++) {
        uint32_t s = (uint32_t)t->objs[i].node.key & (n - 1);
        while (tab[s])
            s = (s + 1) & (n - 1);
        tab[s] = i + 1;
    }
    free(t->tab);
    t->tab = tab;
    t->tabmask = n - 1;
    return 0;
}

/* The index of key's object, added on first sight (its size then joins
 * the working set); -1 when out of memory. */
static int64_t intern(struct sim_trace *t, const char *key, size_t klen,
                      uint64_t size)
{
    uint64_t h = hash64(key, klen);
    uint32_t s = (uint32_t)h & t->tabmask;
    for (; t->tab[s]; s = (s + 1) & t->tabmask) {
        struct sim_obj *o = &t->objs[t->tab[s] - 1];
        if (o->node.key == h && o->klen == klen &&
            memcmp(o->key, key, klen) == 0)
            return t->tab[s] - 1;
    }
    if (t->nobj == t->objcap) {
        if (t->objcap >= (uint32_t)1 << 30) /* keeps tab's indexes in range */
            return -1;
        uint32_t cap = t->objcap ? t->objcap * 2 : 1024;
        struct sim_obj *objs = realloc(t->objs, cap * sizeof *objs);
        if (objs == NULL)
            return -1;
        t->objs = objs;
        t->objcap = cap;
    }
    uint32_t i = t->nobj++;
    t->objs[i] = (struct sim_obj){.node.key = h, .key = key,
                                  .klen = (uint32_t)klen};
    t->tab[s] = i + 1;
    t->wss_bytes += size;
    if (t->nobj * 2 > t->tabmask && grow_tab(t) < 0)
        return -1;
    return i;
}

static int add_request(struct sim_trace *t, uint32_t obj, uint64_t size)
{
    if (t->nreq == t->reqcap) {
        uint64_t cap = t->reqcap ? t->reqcap * 2 : 4096;
        uint32_t *ro = realloc(t->req_obj, cap * sizeof *ro);
        if (ro == NULL)
            return -1;
        t->req_obj = ro;
        uint64_t *rs = realloc(t->req_size, cap * sizeof *rs);
        if (rs == NULL)
            return -1;
        t->req_size = rs;
        t->reqcap = cap;
    }
    t->req_obj[t->nreq] = obj;
    t->req_size[t->nreq++] = size;
    return 0;
}

/* A non-negative decimal in [p, e) without overflow; false if not one. */
static bool parse_u64(const char *p, const char *e, uint64_t *v)
{
    if (p == e)
        return false;
    *v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9' || *v > (UINT64_MAX - 9) / 10)
            return false;
        *v = *v * 10 + (uint64_t)(*p - '0');
    }
    return true;
}

/* Parses the request line [p, e); NULL, or the reason it is bad. */
static const char *parse_line(struct sim_trace *t, const char *p,
                              const char *e)
{
    uint64_t ts, size;
    const char *c1 = memchr(p, ',', (size_t)(e - p));
    const char *c2 = c1 ? memchr(c1 + 1, ',', (size_t)(e - c1 - 1)) : NULL;
    if (c2 == NULL || memchr(c2 + 1, ',', (size_t)(e - c2 - 1)))
        return "expected 3 fields timestamp,key,size";
    if (!parse_u64(p, c1, &ts))
        return "bad timestamp";
    if (c2 == c1 + 1)
        return "empty key";
    if (c2 - c1 - 1 > UINT32_MAX)
        return "key too long";
    if (!parse_u64(c2 + 1, e, &size) || size == 0)
        return "bad size (an integer >= 1 expected)";
    int64_t obj = intern(t, c1 + 1, (size_t)(c2 - c1 - 1), size);
    if (obj < 0 || add_request(t, (uint32_t)obj, size) < 0)
        return "out of memory";
    return NULL;
}

/* Parses the CSV in buf (len bytes, allocated with malloc), which the
 * trace takes over: freed with it, or here on error. */
static struct sim_trace *parse_buf(const char *name, char *buf, size_t len,
                                   char *err, size_t errlen)
{
    static const char header[] = "timestamp,key,size";
    static const char bad_header[] = "expected the header timestamp,key,size";
    struct sim_trace *t = calloc(1, sizeof *t);
    if (t == NULL || grow_tab(t) < 0) {
        snprintf(err, errlen, "%s: out of memory", name);
        free(buf);
        sim_trace_free(t);
        return NULL;
    }
    t->buf = buf;
    if (len == 0) {
        snprintf(err, errlen, "%s:1: %s", name, bad_header);
        sim_trace_free(t);
        return NULL;
    }
    const char *p = buf, *end = buf + len;
    for (uint64_t line = 1; p < end; line++) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        const char *next = e ? e + 1 : end;
        if (e == NULL)
            e = end;
        if (e > p && e[-1] == '\r')
            e--;
        const char *why = NULL;
        if (line == 1) {
            if ((size_t)(e - p) != sizeof header - 1 ||
                memcmp(p, header, sizeof header - 1) != 0)
                why = bad_header;
        } else {
            why = parse_line(t, p, e);
        }
        if (why) {
            int n = (int)(e - p < 60 ? e - p : 60);
            snprintf(err, errlen, "%s:%" PRIu64 ": %s: '%.*s'", name, line,
                     why, n, p);
            sim_trace_free(t);
            return NULL;
        }
        p = next;
    }
    return t;
}

struct sim_trace *sim_trace_parse(const char *name, const char *csv,
                                  size_t len, char *err, size_t errlen)
{
    char *buf = malloc(len + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    memcpy(buf, csv, len);
    return parse_buf(name, buf, len, err, errlen);
}

struct sim_trace *sim_trace_load(const char *path, char *err, size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *buf = malloc(len + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
        return NULL;
    }
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) {
            snprintf(err, errlen, "cannot read %s: %s", path,
                     n < 0 ? strerror(errno) : "file shrank");
            free(buf);
            close(fd);
            return NULL;
        }
        got += (size_t)n;
    }
    close(fd);
    return parse_buf(path, buf, len, err, errlen);
}

void sim_trace_free(struct sim_trace *t)
{
    if (t == NULL)
        return;
    free(t->buf);
    free(t->objs);
    free(t->tab);
    free(t->req_obj);
    free(t->req_size);
    free(t);
}

uint64_t sim_trace_wss(const struct sim_trace *t, bool bytes)
{
    return bytes ? t->wss_bytes : t->nobj;
}

uint64_t sim_capacity(const struct sim_trace *t, bool bytes, double percent)
{
    return (uint64_t)((double)sim_trace_wss(t, bytes) * (percent / 100.0));
}

/* ==== replay ==== */

int sim_run(struct sim_trace *t, struct policy *p, bool bytes,
            struct sim_result *res, char *err, size_t errlen)
{
    *res = (struct sim_result){0};
    for (uint32_t i = 0; i < t->nobj; i++)
        t->objs[i].resident = false;
    for (uint64_t i = 0; i < t->nreq; i++) {
        struct sim_obj *o = &t->objs[t->req_obj[i]];
        uint64_t size = bytes ? t->req_size[i] : 1;
        res->requests++;
        res->bytes += size;
        if (o->resident) {
            policy_hit(p, &o->node); /* the stored size is kept */
            continue;
        }
        res->misses++;
        res->missed_bytes += size;
        o->node.size = size;
        policy_miss(p, &o->node);
        if (!policy_can_insert(p, size))
            continue; /* never cached, nothing evicted */
        while (policy_full(p, size)) {
            struct policy_node *v = policy_evict(p);
            if (v == NULL)
                goto fail;
            ((struct sim_obj *)((char *)v - offsetof(struct sim_obj, node)))
                ->resident = false;
        }
        o->resident = policy_insert(p, &o->node);
        if (policy_error(p))
            goto fail;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s", policy_error(p) ? policy_error(p)
                                 : "the policy had nothing to evict");
    return -1;
}

/* ==== command line ==== */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: luring sim --policy NAME|file.lua --size N|P%% [--bytes] "
            "trace.csv\n"
            "  --policy LIST  built-ins %s, or a Lua policy file;\n"
            "                 comma-separated for several runs\n"
            "  --size LIST    capacity: N objects (bytes with --bytes), or P%% "
            "of the\n"
            "                 working set; comma-separated for several runs\n"
            "  --bytes        use object sizes (default: every object counts "
            "1)\n"
            "The trace is CSV with the header timestamp,key,size. One line "
            "per run:\n"
            "policy= size= mode= requests= misses= miss_ratio= "
            "byte_miss_ratio= missed_bytes=\n",
            policy_names());
}

/* The capacity for one --size item: "N" or "P%". 0 with a message in err
 * when it is not one, or comes to 0. */
static uint64_t parse_size(const char *s, const struct sim_trace *t,
                           bool bytes, char *err, size_t errlen)
{
    size_t len = strlen(s);
    uint64_t c = 0;
    if (len > 1 && s[len - 1] == '%') {
        char *e;
        double pct = strtod(s, &e);
        if (e != s + len - 1 || !(pct > 0) || !isfinite(pct)) {
            snprintf(err, errlen, "bad size '%s'", s);
            return 0;
        }
        c = sim_capacity(t, bytes, pct);
        if (c == 0)
            snprintf(err, errlen, "size %s of a working set of %" PRIu64
                     " is 0", s, sim_trace_wss(t, bytes));
        return c;
    }
    if (!parse_u64(s, s + len, &c) || c == 0) {
        snprintf(err, errlen, "bad size '%s' (N >= 1 or P%%)", s);
        return 0;
    }
    return c;
}

/* The comma-separated items of list (empty ones included), in a
 * NULL-terminated array whose [0] owns the one copy of the string; *n gets
 * the count. NULL when out of memory. */
static char **split(const char *list, size_t *n)
{
    *n = 1;
    for (const char *p = list; *p; p++)
        *n += *p == ',';
    char **v = calloc(*n + 1, sizeof *v);
    char *s = strdup(list);
    if (v == NULL || s == NULL) {
        free(v);
        free(s);
        return NULL;
    }
    v[0] = s;
    for (size_t i = 1; (s = strchr(s, ',')) != NULL; i++) {
        *s++ = '\0';
        v[i] = s;
    }
    return v;
}

static void split_free(char **v)
{
    if (v)
        free(v[0]);
    free(v);
}

/* Runs one policy at one capacity and prints its line; 0 or -1. */
static int run_one(struct sim_trace *t, const char *spec, uint64_t cap,
                   bool bytes)
{
    char err[512];
    struct sim_result r;
    struct policy *p = policy_open(spec, cap, err, sizeof err);
    if (p == NULL) {
        fprintf(stderr, "luring sim: %s\n", err);
        return -1;
    }
    /* built-ins by their canonical name (static), Lua ones by their file */
    const char *name = strcmp(p->ops->name, "lua") == 0 ? spec : p->ops->name;
    int rc = sim_run(t, p, bytes, &r, err, sizeof err);
    policy_free(p);
    if (rc < 0) {
        fprintf(stderr, "luring sim: %s\n", err);
        return -1;
    }
    double n = r.requests ? (double)r.requests : 1;
    double b = r.bytes ? (double)r.bytes : 1;
    printf("policy=%s size=%" PRIu64 " mode=%s requests=%" PRIu64
           " misses=%" PRIu64 " miss_ratio=%.6f byte_miss_ratio=%.6f"
           " missed_bytes=%" PRIu64 "\n",
           name, cap, bytes ? "bytes" : "objects", r.requests, r.misses,
           (double)r.misses / n, (double)r.missed_bytes / b, r.missed_bytes);
    fflush(stdout);
    return 0;
}

/* Checks every policy name before the trace is read; 0 or -1. */
static int check_policies(char **specs)
{
    for (char **s = specs; *s; s++) {
        size_t len = strlen(*s);
        bool lua = len > 4 && strcmp(*s + len - 4, ".lua") == 0;
        if (lua && access(*s, R_OK) != 0) {
            fprintf(stderr, "luring sim: cannot open %s: %s\n", *s,
                    strerror(errno));
            return -1;
        }
        if (!lua && policy_by_name(*s) == NULL) {
            fprintf(stderr, "luring sim: unknown policy '%s' (built-ins: "
                    "%s; or a file.lua)\n", *s, policy_names());
            return -1;
        }
    }
    return 0;
}

int sim_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"size", required_argument, NULL, 's'},
        {"bytes", no_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *policy = NULL, *size = NULL;
    bool bytes = false;
    int ch;
    optind = 1;
    opterr = 0; /* our own message, under our own name */
    while ((ch = getopt_long(argc, argv, "p:s:bh", opts, NULL)) != -1) {
        switch (ch) {
        case 'p': policy = optarg; break;
        case 's': size = optarg; break;
        case 'b': bytes = true; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "luring sim: bad option or missing value: %s\n",
                    argv[optind - 1]);
            usage(stderr);
            return 1;
        }
    }
    if (policy == NULL || size == NULL || optind != argc - 1) {
        fprintf(stderr, "luring sim: %s\n",
                policy == NULL ? "--policy is required"
                : size == NULL ? "--size is required"
                               : "expected exactly one trace file");
        usage(stderr);
        return 1;
    }

    char err[512];
    int rc = 1;
    size_t nspecs, nsizes;
    struct sim_trace *t = NULL;
    uint64_t *caps = NULL;
    char **specs = split(policy, &nspecs), **sizes = split(size, &nsizes);
    if (specs == NULL || sizes == NULL ||
        (caps = calloc(nsizes, sizeof *caps)) == NULL) {
        fprintf(stderr, "luring sim: out of memory\n");
        goto out;
    }
    if (check_policies(specs) < 0)
        goto out;
    if ((t = sim_trace_load(argv[optind], err, sizeof err)) == NULL) {
        fprintf(stderr, "luring sim: %s\n", err);
        goto out;
    }
    for (size_t i = 0; i < nsizes; i++)
        if ((caps[i] = parse_size(sizes[i], t, bytes, err, sizeof err)) == 0) {
            fprintf(stderr, "luring sim: %s\n", err);
            goto out;
        }
    rc = 0;
    for (size_t j = 0; j < nspecs && rc == 0; j++)
        for (size_t i = 0; i < nsizes && rc == 0; i++)
            if (run_one(t, specs[j], caps[i], bytes) < 0)
                rc = 1;
out:
    free(caps);
    sim_trace_free(t);
    split_free(specs);
    split_free(sizes);
    return rc;
}
