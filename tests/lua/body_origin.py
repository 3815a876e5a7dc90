#!/usr/bin/env python3
"""An origin that reads request bodies and says what it got, for
body_stream_spec.lua.

    body_origin.py PORT DIR

Each request's body is read as its framing says (Content-Length or
chunked, decoded here) and answered with
    200 "n=<bytes> sha=<sha256 hex> te=<Transfer-Encoding> cl=<Content-Length>
         expect=<Expect>"
The path chooses how it reads:
    /stall/<ms>/...  read nothing for <ms> ms after the head, then read
    /slow/<kib>/...  read <kib> KiB every 10 ms
    /dieafter/<n>/...  read <n> bytes of the body, then close without an
                     answer (logged "died <path>")
    /dropnext/...    answered; the next request on the same connection is
                     not: the connection closes when its head arrives
                     (logged "dropped <path>"), as an origin closing an
                     idle keep-alive connection just as it is reused
    anything else    read as fast as it can
Every request appends a line to DIR/log when its head arrives
("start <path>") and when it ends ("done <path> <n>", or "aborted <path>
<n>" when the connection closed mid-body). Keep-alive until the client
closes. Stops by itself after 10 minutes.
"""
import hashlib
import os
import socketserver
import sys
import threading
import time

PORT, DIR = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


def log(line):
    with lock:
        with open(os.path.join(DIR, "log"), "a") as f:
            f.write(line + "\n")


class Closed(Exception):
    pass


class Reader:
    def __init__(self, sock):
        self.sock, self.buf, self.pace = sock, b"", None

    def more(self):
        n = 65536
        if self.pace:
            kib, _ = self.pace
            n = kib * 1024
            time.sleep(0.01)
        data = self.sock.recv(n)
        if not data:
            raise Closed()
        self.buf += data

    def until(self, delim):
        while delim not in self.buf:
            self.more()
        i = self.buf.index(delim) + len(delim)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def take(self, n, sink):
        while n > 0:
            if not self.buf:
                self.more()
            k = min(n, len(self.buf))
            sink(self.buf[:k])
            self.buf = self.buf[k:]
            n -= k


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        rd = Reader(self.request)
        drop_next = False
        while True:
            try:
                head = rd.until(b"\r\n\r\n")
            except Closed:
                return
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            fields = {}
            for ln in lines[1:]:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            if drop_next:
                log("dropped " + path)
                return
            log("start " + path)
            parts = path.split("/")
            drop_next = len(parts) > 1 and parts[1] == "dropnext"
            rd.pace = None
            if len(parts) > 2 and parts[1] == "stall":
                time.sleep(int(parts[2]) / 1000.0)
            elif len(parts) > 2 and parts[1] == "slow":
                rd.pace = (int(parts[2]), 0)
            h = hashlib.sha256()
            got = [0]
            if len(parts) > 2 and parts[1] == "dieafter":
                try:
                    rd.take(int(parts[2]), lambda b: None)
                except Closed:
                    pass
                log("died " + path)
                return

            def sink(b):
                h.update(b)
                got[0] += len(b)
            try:
                if fields.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(rd.until(b"\r\n").split(b";")[0], 16)
                        if size == 0:
                            while rd.until(b"\r\n") != b"\r\n":
                                pass
                            break
                        rd.take(size, sink)
                        rd.until(b"\r\n")
                else:
                    rd.take(int(fields.get("content-length", "0")), sink)
            except Closed:
                log("aborted %s %d" % (path, got[0]))
                return
            log("done %s %d" % (path, got[0]))
            body = ("n=%d sha=%s te=%s cl=%s expect=%s\n" % (
                got[0], h.hexdigest(), fields.get("transfer-encoding", ""),
                fields.get("content-length", ""),
                fields.get("expect", ""))).encode()
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
                                 % len(body) + body)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", PORT), Handler)
    threading.Timer(600, os._exit, args=(0,)).start()
    srv.serve_forever()
