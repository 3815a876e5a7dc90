#!/usr/bin/env python3
"""An origin that answers with exact bytes, for the cache specs.

    raw_origin.py PORT DIR

GET /<name>[?...] answers with the file DIR/<name>.http after DELAY seconds
(DIR/delay, default 0.3), where {id} is replaced by a number unique to the
request and {len} by the byte length of the body (what follows the last
CRLF CRLF). {imf}, {rfc850} and {asctime}, optionally with a signed offset
in seconds ({imf-30}, {asctime+60}), are replaced by the current time in
that HTTP-date format (RFC 9110 §5.6.7). A template may hold {then}: what follows it is sent 50 ms
after the response, unasked, on the same connection. A template ending in
{close} is followed by the origin closing the connection (a close-delimited
or a truncated body). Unknown names get a 404. Each request's path is
appended to DIR/requests.log, and a line to DIR/connections.log for each
connection accepted. Keep-alive: requests on one connection are answered
in order until the client closes. Stops by itself after 10 minutes.
"""
import email.utils
import itertools
import os
import re
import socket
import socketserver
import sys
import threading
import time

PORT, DIR = int(sys.argv[1]), sys.argv[2]
ids = itertools.count(1)
lock = threading.Lock()


def delay():
    try:
        with open(os.path.join(DIR, "delay")) as f:
            return float(f.read())
    except OSError:
        return 0.3


def http_date(m):
    t = time.time() + int(m.group(2) or 0)
    g = time.gmtime(t)
    if m.group(1) == b"imf":
        return email.utils.formatdate(t, usegmt=True).encode()
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
            "Saturday", "Sunday"]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
              "Oct", "Nov", "Dec"]
    if m.group(1) == b"rfc850":
        return ("%s, %02d-%s-%02d %02d:%02d:%02d GMT" % (
            days[g.tm_wday], g.tm_mday, months[g.tm_mon - 1], g.tm_year % 100,
            g.tm_hour, g.tm_min, g.tm_sec)).encode()
    return ("%s %s %2d %02d:%02d:%02d %d" % (
        days[g.tm_wday][:3], months[g.tm_mon - 1], g.tm_mday, g.tm_hour,
        g.tm_min, g.tm_sec, g.tm_year)).encode()


def response(path):
    name = path.split("?", 1)[0].lstrip("/")
    with lock:
        n = next(ids)
        with open(os.path.join(DIR, "requests.log"), "a") as log:
            log.write(path + "\n")
    try:
        with open(os.path.join(DIR, os.path.basename(name) + ".http"), "rb") as f:
            tmpl = f.read()
    except OSError:
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", b"", False
    raw = tmpl.replace(b"{id}", b"%d" % n)
    raw = re.sub(rb"\{(imf|rfc850|asctime)([+-][0-9]+)?\}", http_date, raw)
    close = raw.endswith(b"{close}")
    if close:
        raw = raw[:-len(b"{close}")]
    raw, _, later = raw.partition(b"{then}")
    cut = raw.rfind(b"\r\n\r\n") + 4
    head, body = raw[:cut], raw[cut:]
    return head.replace(b"{len}", b"%d" % len(body)) + body, later, close


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        with lock:
            with open(os.path.join(DIR, "connections.log"), "a") as log:
                log.write("1\n")
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = self.request.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            time.sleep(delay())
            now, later, close = response(path)
            self.request.sendall(now)
            if later:
                time.sleep(0.05)
                self.request.sendall(later)
            if close:
                self.request.shutdown(socket.SHUT_WR)
                return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    srv = Server(("127.0.0.1", PORT), Handler)
    threading.Timer(600, os._exit, args=(0,)).start()
    srv.serve_forever()
