/* ops.h - the op numbers in user_data (io/loop.h's UD_MAKE), one per kind
 * of operation; the worker's dispatcher routes each completion by it. */
#ifndef LURING_OPS_H
#define LURING_OPS_H

enum op {
    OP_ACCEPT = 1, /* idx = listener */
    OP_RECV,       /* idx = connection */
    OP_SEND,       /* idx = connection */
    OP_CLOSE,      /* nothing to do on completion */
    OP_CANCEL,     /* nothing to do on completion */
    OP_TICK,       /* the worker's 100 ms timer */
    OP_SLEEP,      /* idx = request: luring.sleep() */
    OP_WAKE,       /* the worker's stop eventfd */
    OP_UP_CONNECT, /* idx = upstream connection */
    OP_UP_SEND,    /* idx = upstream connection */
    OP_UP_RECV,    /* idx = upstream connection */
    OP_FILE_READ,  /* idx = upstream slot reading a file */
    OP_INOTIFY,    /* --watch: the script's directory changed */
    OP_MSG,        /* another worker's message (loop_msg_ring): res = CTL_* */
    OP_MSG_FAIL,   /* a message of ours not delivered: idx = target worker */
    OP_ALOG_WRITE, /* the access log's write (app/accesslog.c) */
    OP_TIMER,      /* idx = timer slot, gen = its arming: luring.timer */
    OP_COSOCK,     /* a cosocket's operation: bits 55..0 are the address
                    * of its struct lsock (lua/l_socket.c), which lives
                    * until that completion, whatever happens meanwhile */
    OP_RESOLVED,   /* the worker's resolver has answers (its eventfd read) */
};

#endif
