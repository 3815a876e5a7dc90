/* stream.c - a socket endpoint's lifecycle (see stream.h). */
#include "io/stream.h"
#include "io/ops.h"

#include <sys/socket.h>

void stream_open(struct stream *s, int fd)
{
    s->fd = fd;
    s->inflight = 0;
    s->recv_armed = false;
    s->closed = false;
}

void stream_recv(struct loop *l, struct stream *s, unsigned op)
{
    loop_recv_multishot(l, s->fd, stream_ud(s, op));
    s->recv_armed = true;
    s->inflight++;
}

void stream_close(struct stream *s, bool shut)
{
    if (s->closed)
        return;
    s->closed = true;
    s->gen = (s->gen + 1) & GEN_MASK;
    if (shut && s->fd >= 0)
        shutdown(s->fd, SHUT_RDWR);
}

void stream_release(struct loop *l, struct stream *s)
{
    if (s->fd >= 0)
        loop_close(l, s->fd, UD_MAKE(OP_CLOSE, 0, 0));
    s->fd = -1;
}
