-- http_client.lua: handlers that call another HTTP service with
-- luring.http.request (shaped like lua-resty-http's request_uri), one
-- reading a small answer whole, one streaming a large one through as it
-- arrives. The worker serves other requests while they wait.
-- Features: a URL with a host name (looked up off the worker), request
-- fields and body, timeout, keep-alive reuse, res:read_body(max),
-- res.body_reader, errors as nil, err.
--   python3 -m http.server 8081 --bind 127.0.0.1 &      # any HTTP service
--   luring examples/http_client.lua
--   curl -i 'http://127.0.0.1:8080/ask/'                 # its listing, summed up
--   curl -s 'http://127.0.0.1:8080/through/some/file' -o copy
local app = luring.app()
app:listen("127.0.0.1:8080")

local UPSTREAM = os.getenv("UPSTREAM") or "http://localhost:8081"

-- a small answer, read whole (at most 1 MiB)
app:get("/ask/*", function(req)
    local res, err = luring.http.request{
        url = UPSTREAM .. "/" .. req.params["*"],
        headers = { Accept = "text/html", ["X-Request-Id"] = req.id },
        timeout = 2,
    }
    if not res then
        return err == "timeout" and 504 or 502, nil, "upstream: " .. err .. "\n"
    end
    local body, err = res:read_body(2^20)
    if not body then
        return 502, nil, "upstream body: " .. err .. "\n"
    end
    return 200, { ["Content-Type"] = "text/plain" },
        ("upstream said %d, %s, %d bytes\n"):format(res.status,
            res.headers["content-type"] or "no type", #body)
end)

-- a large answer, streamed to the client piece by piece (never whole in
-- memory: luring stops reading the upstream while the client is behind)
app:get("/through/*", function(req)
    local res, err = luring.http.request{ url = UPSTREAM .. "/" .. req.params["*"] }
    if not res then
        return 502, nil, "upstream: " .. err .. "\n"
    end
    req:start(res.status, { ["Content-Type"] = res.headers["content-type"],
                            ["Content-Length"] = res.headers["content-length"] })
    while true do
        local piece, err = res.body_reader()
        if not piece then
            if err then       -- cut short: the client connection is closed,
                error(err)    -- never a truncated body taken for a whole one
            end
            return
        end
        req:write(piece)      -- yields while the client is behind
    end
end)
