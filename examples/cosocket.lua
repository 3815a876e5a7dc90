-- cosocket.lua: a handler that talks to a TCP service with a line protocol
-- (here: a Redis-like "PING"/"ECHO" service, or any echo server) through
-- luring.socket.tcp, as OpenResty's ngx.socket.tcp. The worker serves
-- other requests while the handler waits on the socket.
-- Features: connect, send (an array of strings), receive "*l",
-- settimeouts, errors as nil, err.
--   python3 -c 'import socketserver as s
--   class H(s.StreamRequestHandler):
--       def handle(self):
--           for l in self.rfile: self.wfile.write(l)
--   s.ThreadingTCPServer(("127.0.0.1", 7000), H).serve_forever()' &
--   luring examples/cosocket.lua
--   curl -i 'http://127.0.0.1:8080/echo/hello'
local app = luring.app()
app:listen("127.0.0.1:8080")

local HOST, PORT = "127.0.0.1", tonumber(os.getenv("ECHO_PORT") or "7000")

app:get("/echo/:word", function(req)
    local sock = luring.socket.tcp()
    sock:settimeouts(500, 1000, 1000)     -- connect, send, read (ms)
    local ok, err = sock:connect(HOST, PORT)
    if not ok then
        return 502, nil, "connect: " .. err .. "\n"
    end
    local _, err = sock:send({ req.params.word, "\r\n" })
    if err then
        return 502, nil, "send: " .. err .. "\n"
    end
    local line, err = sock:receive("*l")
    sock:close()
    if not line then
        return 502, nil, "receive: " .. err .. "\n"
    end
    return "the service said: " .. line .. "\n"
end)
