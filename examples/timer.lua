-- timer.lua: luring.timer.every keeps a value fresh in the background; a
-- handler serves the latest copy without waiting for the origin.
-- Features: luring.timer.at / every, premature runs on reload and drain,
-- origin:fetch from a timer, luring.worker.id().
--   python3 -m http.server 9000 --bind 127.0.0.1 &   (any origin with /)
--   luring examples/timer.lua            (or ORIGIN=http://host:port luring ...)
--   curl -i http://127.0.0.1:8080/latest
--   curl -X POST http://127.0.0.1:8080/stop-refresh
-- With --workers N each worker runs this file, so each has its own refresh
-- timer and its own copy (as OpenResty's init_worker).
local app = luring.app()
app:listen("127.0.0.1:8080")

local upstream = luring.origin{ name = "upstream",
                                url = os.getenv("ORIGIN") or "http://127.0.0.1:9000" }
local latest = { body = "not fetched yet\n", at = 0 }

local function refresh(premature)
    if premature then -- reload or drain: this was the last run
        return
    end
    local status, headers, body = upstream:fetch("/")
    if status == 200 then
        latest = { body = body, at = luring.now() }
    else
        luring.log("warn", "refresh: ", status or "failed", " ", headers or "")
    end
end

luring.timer.at(0, refresh)            -- right after start-up
local every = assert(luring.timer.every(5, refresh))

app:get("/latest", function(req)
    local age = latest.at > 0 and math.floor(luring.now() - latest.at) or -1
    return 200, { ["X-Age-Ms"] = age, ["X-Worker"] = luring.worker.id() }, latest.body
end)

app:post("/stop-refresh", function(req)
    local ok, err = every:cancel()
    return ok and "stopped\n" or (err .. "\n")
end)
