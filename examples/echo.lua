-- echo.lua: a TCP echo server, the io_uring echo server this project
-- started from, written as a luring script.
-- Features: app:tcp (a raw TCP listener: multishot accept, one coroutine
-- per connection), sock:receiveany, sock:send (ordered, short writes
-- resumed: no byte lost).
--   luring examples/echo.lua             (ECHO_ADDR=host:port to move it)
--   nc 127.0.0.1 7000                    (type lines: they come back)
-- With --workers N the workers share the port (SO_REUSEPORT).
local app = luring.app()

app:tcp(os.getenv("ECHO_ADDR") or "127.0.0.1:7000", function(sock)
    sock:settimeout(300000) -- an idle client is closed after 5 minutes
    while true do
        local data, err = sock:receiveany(65536)
        if not data then
            return -- "closed" (the client left) or "timeout"
        end
        local ok, serr = sock:send(data)
        if not ok then
            return
        end
    end
end)
