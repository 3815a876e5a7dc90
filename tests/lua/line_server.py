#!/usr/bin/env python3
"""A line-protocol TCP server for the cosocket specs (cosocket_spec.lua).

    line_server.py PORT FULL_PORT

On PORT, each connection reads command lines (LF-terminated) and answers:
    echo TEXT      TEXT CR LF
    bytes N        N bytes "x" (no line end)
    lines N        N lines "line I" CR LF
    sleep MS       after MS milliseconds, "woke" LF
    partial TEXT   TEXT (no line end), then closes
    bound          "aaa--B--bbbb--B--cc", then closes
    big N          N bytes "y", then closes
    silent         nothing (the client times out)
    count          the number of connections accepted so far, LF
    quit           closes
A line that is none of these is echoed back with its line end.
PORT also listens on [::1] when it can. FULL_PORT listens with a backlog of 0, kept full by a connection that is
never accepted: connecting to it hangs (a connect timeout).
Stops by itself after 10 minutes.
"""
import socket
import socketserver
import sys
import threading
import time

PORT, FULL_PORT = int(sys.argv[1]), int(sys.argv[2])
accepted = [0]
lock = threading.Lock()


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        with lock:
            accepted[0] += 1
        w = self.wfile
        for raw in self.rfile:
            line = raw.rstrip(b"\r\n")
            cmd, _, arg = line.partition(b" ")
            if cmd == b"echo":
                w.write(arg + b"\r\n")
            elif cmd == b"bytes":
                w.write(b"x" * int(arg))
            elif cmd == b"lines":
                w.write(b"".join(b"line %d\r\n" % i for i in range(int(arg))))
            elif cmd == b"sleep":
                time.sleep(int(arg) / 1000)
                w.write(b"woke\n")
            elif cmd == b"partial":
                w.write(arg)
                return
            elif cmd == b"bound":
                w.write(b"aaa--B--bbbb--B--cc")
                return
            elif cmd == b"big":
                w.write(b"y" * int(arg))
                return
            elif cmd == b"silent":
                pass
            elif cmd == b"count":
                w.write(b"%d\n" % accepted[0])
            elif cmd == b"quit":
                return
            else:
                w.write(raw)
            w.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


full = socket.socket()
full.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
full.bind(("127.0.0.1", FULL_PORT))
full.listen(0)
fillers = []
for _ in range(3):  # the queue's one place and more: later SYNs are dropped
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", FULL_PORT))
    except BlockingIOError:
        pass
    fillers.append(c)

srv = Server(("127.0.0.1", PORT), Handler)
threading.Thread(target=srv.serve_forever, daemon=True).start()


class Server6(Server):
    address_family = socket.AF_INET6


try:  # the same on [::1], when the host has IPv6
    srv6 = Server6(("::1", PORT), Handler)
    threading.Thread(target=srv6.serve_forever, daemon=True).start()
except OSError:
    pass
time.sleep(600)
