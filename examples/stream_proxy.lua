-- stream_proxy.lua: a streaming reverse proxy written in Lua with
-- origin:request (issue 11, point 7), where luring.proxy would do it in C.
--   Every method and path goes to $ORIGIN (default http://127.0.0.1:8081);
--   the origin's status, fields and body come back as they arrive, with an
--   X-Served-By field added. A deliver hook is not needed: the handler
--   builds the head itself. See docs/API.md, "Origin requests from Lua".
-- Run (an origin on 127.0.0.1:9000):
--   ORIGIN=http://127.0.0.1:9000 luring --listen 127.0.0.1:8080 examples/stream_proxy.lua
local origin = luring.origin{
    name = "site",
    url = os.getenv("ORIGIN") or "http://127.0.0.1:8081",
    connect_timeout = 5, first_byte_timeout = 30, idle_timeout = 30,
}

local app = luring.app()
app:listen("127.0.0.1:8080")   -- --listen replaces it

app:route("*", "/*", function(req)
    local headers = req:headers()
    -- fields the client's Connection names are hop-by-hop (RFC 9110 §7.6.1)
    for name in (headers.connection or ""):gmatch("[^%s,]+") do
        headers[name:lower()] = nil
    end
    local status, fields, body = origin:request{
        method = req.method,
        path = req.path .. (req.query and "?" .. req.query or ""),
        headers = headers,
        body = req:body(),
    }
    if not status then
        return fields == "timeout" and 504 or 502, nil, fields .. "\n"
    end
    fields["x-served-by"] = "luring stream_proxy.lua"
    req:start(status, fields)
    while true do
        local piece, err = body:read()
        if not piece then
            if err then error("origin: " .. err) end -- closes the client connection
            return
        end
        req:write(piece)
    end
end)
