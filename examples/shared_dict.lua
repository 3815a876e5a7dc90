-- shared_dict.lua: one store for every worker (luring.shared_dict{}, the
-- shape of OpenResty's lua_shared_dict): a hit counter per path, a fixed
-- window rate limit per client address, and a small key-value store.
--   luring --workers 4 examples/shared_dict.lua
--   curl http://127.0.0.1:8080/hits/a          (counts across all workers)
--   curl -X PUT -d hello http://127.0.0.1:8080/kv/greeting
--   curl http://127.0.0.1:8080/kv/greeting
local app = luring.app()
app:listen("127.0.0.1:8080")

local hits = luring.shared_dict{ name = "hits", size = "1m" }
luring.shared_dict{ name = "kv", size = "10m" }
local limits = luring.shared_dict{ name = "limits", size = "1m" }

local LIMIT = 100  -- requests per client and second
local text = { ["Content-Type"] = "text/plain" }

-- true when the client is over its limit in this one-second window
local function limited(req)
    -- the first incr of a window makes the counter, expiring with it
    local n = limits:incr(req.remote_addr or "gone", 1, 0, 1)
    return n and n > LIMIT
end

app:get("/hits/:name", function(req)
    if limited(req) then
        return 429, text, "slow down\n"
    end
    local n = hits:incr(req.params.name, 1, 0)
    return 200, text, ("%s: %d\n"):format(req.params.name, n)
end)

app:put("/kv/:key", function(req)
    local ok, err = luring.shared.kv:set(req.params.key, req:body(), 3600)
    if not ok then
        return 507, text, err .. "\n"
    end
    return 204
end)

app:get("/kv/:key", function(req)
    local v = luring.shared.kv:get(req.params.key)
    if v == nil then
        return 404, text, "not found\n"
    end
    return 200, text, v
end)
