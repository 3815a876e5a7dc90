/* accesslog.h - the access log (luring.access_log{}, docs/API.md): one
 * line per request, formatted when the request is over (req_pool.done),
 * appended to the worker's buffer and written through io_uring: when the
 * buffer passes 64 KiB and on the worker's 100 ms tick, never a blocking
 * write on the loop. Each write is a whole number of lines to an O_APPEND
 * file (or at most PIPE_BUF bytes to stderr), so the lines of several
 * workers never mix. SIGUSR1 reopens the file (logrotate). */
#ifndef LURING_ACCESSLOG_H
#define LURING_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>

struct alog;
struct loop;
struct loop_cqe;
struct lua_State;
struct req;

/** A worker's access log, off until configured; NULL when out of memory.
 * Its writes use `loop` (OP_ALOG_WRITE completions go to alog_on_write). */
struct alog *alog_new(struct loop *loop, unsigned worker);
/** Read luring._access_log from the script state L (a table { path,
 * format } or nil: off) and apply it: the format is compiled (a function
 * gets a Lua thread of L to run on), the file opened when its path
 * changed. 0, or -1 with a sentence in err (the previous configuration
 * stays). L must stay open while it is configured. */
int alog_configure(struct alog *a, struct lua_State *L, char *err,
                   size_t errlen);
/** Check luring._access_log in L without applying it (main's first load,
 * --check): its format compiles and its path (unless "stderr") opens for
 * appending, created when missing. 0, or -1 with err. */
int alog_check(struct lua_State *L, char *err, size_t errlen);
/** Is a line written per request? */
bool alog_on(const struct alog *a);
/** r is over: its line goes to the buffer, or with a format function a
 * copy of its record waits for alog_run (req_pool.done). */
void alog_request(struct alog *a, struct req *r);
/** Run the script's format function on the records kept since the last
 * call (a function format: alog_request only keeps a copy), outside any
 * completion handler or store notification: the worker's before-sleep
 * step, before a reload (the function's state may go with it) and at the
 * end. Nothing when no record waits. */
void alog_run(struct alog *a);
/** The tick: write what is buffered. */
void alog_tick(struct alog *a);
/** Completion of an OP_ALOG_WRITE. */
void alog_on_write(struct alog *a, const struct loop_cqe *cq);
/** SIGUSR1: what is buffered goes to the current file, then the path is
 * opened again (a new file after logrotate renamed the old one). */
void alog_reopen(struct alog *a);
/** The worker is ending: nothing more is submitted (lines are kept for
 * alog_free). Whether a write is still in flight (the worker polls its
 * ring until it is not). */
bool alog_stop(struct alog *a);
/** The worker ends, its ring gone (no write of it is in flight any
 * more): the rest is written with write(2), the file closed, a freed. */
void alog_free(struct alog *a);

#endif
