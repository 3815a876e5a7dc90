/* config.h - server settings from luring.config{} (docs/API.md), the same
 * for every worker. Times in ms, sizes in bytes. */
#ifndef LURING_CONFIG_H
#define LURING_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config {
    unsigned workers;
    unsigned max_connections;  /* per worker; accept pauses at the limit */
    int64_t header_timeout_ms; /* whole request head (408) */
    int64_t idle_timeout_ms;   /* keep-alive idle */
    int64_t body_timeout_ms;   /* between body reads (408) */
    int64_t send_timeout_ms;   /* no send progress: close */
    size_t max_header_size;    /* request head bytes excluding URI (431) */
    size_t max_uri_size;       /* (414) */
    size_t max_body_size;      /* (413) */
    int64_t lua_budget_ms;     /* Lua code without yielding: interrupted */
    size_t lua_max_memory;     /* bytes a script's Lua state may hold */
    bool lua_jit;              /* JIT on in script states (budget then
                                  can't stop compiled loops) */
    int64_t shutdown_timeout_ms; /* stop: workers gone by then, or exit 1 */
    int64_t drain_timeout_ms;  /* SIGTERM/SIGQUIT: connections in flight
                                  may finish until then (graceful drain) */
    size_t conn_buffer_budget; /* every worker's connection buffers */
    unsigned max_timers;       /* per worker: luring.timer's pending +
                                  running timers */
    unsigned batch_wait_us;    /* a worker under load waits up to this
                                  for more completions once one is in
                                  (io/loop.h); 0: never */
    char request_id_header[64]; /* the field that carries req.id to the
                                   origin (fills and passes); "": none */
};

void config_defaults(struct config *cfg);

#endif
