-- hello.lua: the fixed response of the epoll vs io_uring benchmark (seed
-- 002), plus a health check.
--   luring examples/hello.lua          (then: curl http://127.0.0.1:8080/)
--   luring --listen 127.0.0.1:9000 examples/hello.lua
local app = luring.app()
app:listen("127.0.0.1:8080")

local text = { ["Content-Type"] = "text/plain" }

app:get("/", function(req)
    return 200, text, "Hello, World!"
end)

app:get("/health", function(req)
    return 200, text, "OK\n"
end)
