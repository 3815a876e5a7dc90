/* main.c - `luring [options] script.lua`: checks the script, starts the
 * workers (one io_uring and one Lua state each) and waits for a signal. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "app/accesslog.h"
#include "app/worker.h"
#include "app/sim.h"
#include "base/log.h"
#include "lua/rt.h"
#include "store/shdict.h"
#include "store/wake.h"

#define LURING_VERSION "0.1.0"

struct thread {
    struct worker w;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 starting, 1 running, -1 failed */
    bool joined;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The watchdog's look at every running worker (stop: interrupt any run). */
static void watch_all(struct thread *th, unsigned n, bool stop)
{
    int64_t now = now_ms();
    for (unsigned i = 0; i < n; i++)
        if (th[i].state == 1 && !th[i].joined)
            lbudget_watch(&th[i].w.lrt.budget, th[i].tid, now, stop);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: luring [options] script.lua\n"
            "       luring sim --help   (cache policy simulator)\n"
            "Serves HTTP/1.1 as the Lua script says: routes, caches, "
            "origins.\n"
            "  --listen ADDR   override the script's listen address "
            "(host:port, [v6]:port)\n"
            "  --workers N     worker threads, 1 to 256 (default: the "
            "script's, else 1)\n"
            "  --watch         reload the script when its file changes\n"
            "  --check         load the script, report errors, exit (0 ok, "
            "1 error)\n"
            "  --log-level L   least level logged: debug, info (default), "
            "warn, error, crit\n"
            "  --version       print the version\n"
            "  --help          this text\n"
            "Signals: SIGHUP reloads the script; SIGTERM and SIGQUIT drain "
            "(stop accepting,\n"
            "  finish requests in flight, up to drain_timeout, then exit 0; "
            "twice: stop now);\n"
            "  SIGINT stops at once (exit 0); SIGUSR1 reopens the access log.\n"
            "Logs: stderr, one line each: RFC 3339 UTC time, [level], "
            "luring w<worker>\n"
            "  (or main), the message, \"(request <id>)\" while handling "
            "one.\n"
            "Exit status 1 with a message: bad script, address in use, "
            "io_uring\n"
            "  unavailable (kernel.io_uring_disabled, a seccomp profile such "
            "as Docker's).\n"
            "Manual: man luring; the Lua API: docs/API.md "
            "(share/doc/luring/API.md).\n");
}

static void set_state(struct thread *t, int state)
{
    pthread_mutex_lock(&t->mu);
    t->state = state;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void *thread_main(void *arg)
{
    struct thread *t = arg;
    if (worker_run(&t->w) < 0) {
        set_state(t, -1);
        return NULL;
    }
    if (t->w.id == 0)
        for (unsigned i = 0; i < t->w.nls; i++) {
            char name[80];
            worker_listener_name(&t->w, i, name, sizeof name);
            log_info("listening on %s", name);
        }
    set_state(t, 1);
    worker_loop(&t->w);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "sim") == 0)
        return sim_main(argc - 1, argv + 1);
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'},
        {"check", no_argument, NULL, 'c'},
        {"watch", no_argument, NULL, 'W'},
        {"log-level", required_argument, NULL, 'L'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = NULL;
    long workers = 0;
    bool check = false, watch = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'l': listen = optarg; break;
        case 'w':
            workers = strtol(optarg, NULL, 10);
            if (workers < 1 || workers > 256) {
                fprintf(stderr, "luring: --workers takes 1 to 256\n");
                return 1;
            }
            break;
        case 'c': check = true; break;
        case 'W': watch = true; break;
        case 'L': {
            enum log_level lv;
            if (log_level_parse(optarg, &lv) < 0) {
                fprintf(stderr, "luring: --log-level takes debug, info, "
                                "warn, error or crit\n");
                return 1;
            }
            log_set_level(lv);
            break;
        }
        case 'V': printf("luring %s\n", LURING_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 1;
    }
    const char *script = argv[optind];

    /* Load once here to report script errors and read the configuration
     * before any thread starts; each worker then loads its own state. */
    char err[1024];
    lua_State *L = lrt_open(script, NULL, NULL, err, sizeof err);
    if (L == NULL) {
        fprintf(stderr, "luring: %s\n", err);
        return 1;
    }
    struct config cfg;
    config_defaults(&cfg);
    int nls = 0;
    if (lrt_read_config(L, &cfg, err, sizeof err) < 0 ||
        alog_check(L, err, sizeof err) < 0 ||
        (nls = lrt_listeners(L, NULL, NULL, err, sizeof err)) < 0) {
        fprintf(stderr, "luring: %s: %s\n", script, err);
        lua_close(L);
        return 1;
    }
    lua_close(L);
    if (listen && nls > 1) {
        fprintf(stderr, "luring: --listen needs a script with one listener "
                        "(this one has %d)\n", nls);
        return 1;
    }
    if (check) {
        printf("luring: %s: ok\n", script);
        return 0;
    }
    if (workers)
        cfg.workers = (unsigned)workers;

    /* Signals are taken by this thread only (sigwait below). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    lbudget_install();             /* workers' Lua runs, watched below */
    lbudget_jit(NULL, cfg.lua_jit); /* for Lua policies */

    /* shared caches tell waiters on other workers through inboxes */
    if (store_wake_init(cfg.workers, worker_store_poke) < 0) {
        fprintf(stderr, "luring: out of memory\n");
        return 1;
    }
    struct thread *th = calloc(cfg.workers, sizeof *th);
    if (th == NULL) {
        fprintf(stderr, "luring: out of memory\n");
        return 1;
    }
    int rc = 0;
    unsigned started = 0;
    for (unsigned i = 0; i < cfg.workers; i++, started++) {
        struct thread *t = &th[i];
        t->w.id = i;
        t->w.cfg = &cfg;
        t->w.script = script;
        t->w.listen_override = listen;
        t->w.wake_fd = eventfd(0, EFD_CLOEXEC);
        t->w.watch = watch && i == 0; /* one watcher reloads them all */
        worker_register(&t->w);
        pthread_mutex_init(&t->mu, NULL);
        pthread_cond_init(&t->cv, NULL);
        if (t->w.wake_fd < 0 ||
            pthread_create(&t->tid, NULL, thread_main, t) != 0) {
            fprintf(stderr, "luring: cannot start worker: %s\n",
                    strerror(errno));
            rc = 1;
            break;
        }
        pthread_mutex_lock(&t->mu);
        while (t->state == 0)
            pthread_cond_wait(&t->cv, &t->mu);
        pthread_mutex_unlock(&t->mu);
        if (t->state < 0) {
            fprintf(stderr, "luring: %s\n", t->w.err);
            rc = 1;
            started++;
            break;
        }
    }

    /* This thread waits for signals and is the workers' watchdog: a run
     * of Lua code over lua_budget is interrupted (lua/lbudget.h). */
    int64_t period = lbudget_period_ms(cfg.lua_budget_ms);
    int64_t drain_until = 0; /* draining (SIGTERM, SIGQUIT) until then */
    while (rc == 0) {
        struct timespec ts = {period / 1000, (period % 1000) * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig < 0) {
            watch_all(th, started, false);
            if (drain_until == 0)
                continue;
            unsigned open = 0;
            for (unsigned i = 0; i < started; i++)
                open += !atomic_load(&th[i].w.drained);
            if (open == 0) {
                log_info("drained: stopping");
                break;
            }
            if (now_ms() >= drain_until) {
                log_warn("drain_timeout (%.3g s) reached with connections "
                         "still open or timers still running: stopping",
                         (double)cfg.drain_timeout_ms / 1000);
                break;
            }
            continue;
        }
        if (sig == SIGHUP) {
            log_info("SIGHUP: reloading %s", script);
            worker_signal_all(CTL_RELOAD);
            continue;
        }
        if (sig == SIGUSR1) { /* logrotate renamed the access log */
            log_info("SIGUSR1: reopening the access log");
            worker_signal_all(CTL_REOPEN);
            continue;
        }
        const char *name = sig == SIGINT    ? "SIGINT"
                           : sig == SIGTERM ? "SIGTERM"
                                            : "SIGQUIT";
        if (sig != SIGINT && drain_until == 0) {
            /* graceful: requests in flight finish, up to drain_timeout */
            log_info("%s: draining (stop accepting, finish requests in "
                     "flight, up to %.3g s; again to stop now)",
                     name, (double)cfg.drain_timeout_ms / 1000);
            drain_until = now_ms() + cfg.drain_timeout_ms;
            worker_signal_all(CTL_DRAIN);
            continue;
        }
        log_info("%s: stopping", name);
        break;
    }

    worker_signal_all(CTL_STOP);
    /* A worker busy in Lua is interrupted at once; one that still hasn't
     * stopped by shutdown_timeout (a loop the JIT compiled, a C call that
     * never returns) can't be waited for: the process ends without it. */
    int64_t deadline = now_ms() + cfg.shutdown_timeout_ms;
    for (unsigned i = 0; i < started; i++) {
        for (;;) {
            watch_all(th, started, true);
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            if (pthread_timedjoin_np(th[i].tid, NULL, &ts) == 0)
                break;
            if (now_ms() >= deadline) {
                log_err("worker %u did not stop within shutdown_timeout "
                        "(%.3g s; stuck in Lua or C code): exiting without it",
                        i, (double)cfg.shutdown_timeout_ms / 1000);
                _exit(1);
            }
        }
        th[i].joined = true;
    }
    for (unsigned i = 0; i < started; i++) {
        worker_cleanup(&th[i].w);
        close(th[i].w.wake_fd);
    }
    free(th);
    shdict_free_all(); /* no Lua state uses them any more */
    return rc;
}
