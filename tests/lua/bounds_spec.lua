-- Resource bounds (issue 10 point 7): a process-wide budget for connection
-- buffers (conn_buffer_budget), so hostile clients that pipeline without
-- reading or stall mid-body cannot grow memory without limit, and the
-- memory comes back when they close; and a listener's own max_connections,
-- so a health listener stays reachable when the public one is full.
-- Ports 18800-18830.
local helper = require "helper"
local socket = require "socket"

local BUDGET = 8 * 1024 * 1024

-- /watch?ms=N: the highest luring.conn_stats().buffer_bytes seen over N ms,
-- sampled inside the server (a request started before the attack, so it
-- is not refused by the budget it measures).
local SCRIPT = [[
luring.config{ conn_buffer_budget = @BUDGET@, max_body_size = 2 * 1024 * 1024,
               body_timeout = 1, send_timeout = 30 }
local app = luring.app()
app:listen("@LISTEN@")
local body = string.rep("x", 16000) -- copied into the output queue (<= 16 KiB)
app:get("/big", function(req) return body end)
app:post("/upload", function(req) return tostring(#req:body()) end)
app:get("/stats", function(req)
  local s = luring.conn_stats()
  return ("%d %d"):format(s.buffer_bytes, s.budget)
end)
app:get("/watch", function(req)
  local t_end = luring.now() + tonumber(req.query:match("ms=(%d+)"))
  local peak = 0
  while luring.now() < t_end do
    local b = luring.conn_stats().buffer_bytes
    if b > peak then peak = b end
    luring.sleep(20)
  end
  return tostring(peak)
end)
]]

local function rss_kb(pid)
  local s = helper.readfile("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

-- The highest RSS over `secs` seconds.
local function rss_peak_kb(pid, secs)
  local peak, deadline = 0, helper.now() + secs
  repeat
    peak = math.max(peak, rss_kb(pid))
    socket.sleep(0.05)
  until helper.now() > deadline
  return peak
end

-- buffer_bytes, or nil while the server refuses (503: over budget).
local function buffer_bytes(port)
  local c = helper.connect(port)
  c:write(helper.request("GET", "/stats"))
  local res = c:read_response()
  c:close()
  if res and res.status == 200 then
    local used, budget = res.body:match("^(%d+) (%d+)$")
    assert.are.equal(BUDGET, tonumber(budget))
    return tonumber(used)
  end
end

-- The server's count once the connections it held are gone: it must come
-- back to `base` (the /stats request's own head is in both).
local function back_to(port, base)
  local last
  local ok = helper.wait_until(function()
    last = buffer_bytes(port)
    return last == base
  end, 10, 0.1)
  assert.is_truthy(ok, ("buffer_bytes %s, baseline %d"):format(tostring(last), base))
end

-- Send each client its whole `data` without blocking (what the kernel
-- takes), round robin, until all is sent or `secs` have passed.
local function pour(conns, data, secs)
  local sent = {}
  for i = 1, #conns do sent[i] = 0 end
  local deadline = helper.now() + secs
  local left = #conns
  while left > 0 and helper.now() < deadline do
    left = 0
    for i, c in ipairs(conns) do
      if sent[i] < #data then
        c.sock:settimeout(0)
        local last, err, partial = c.sock:send(data, sent[i] + 1)
        sent[i] = last or partial or sent[i]
        if err and err ~= "timeout" then sent[i] = #data end -- closed by the server
        if sent[i] < #data then left = left + 1 end
      end
    end
    if left > 0 then socket.sleep(0.01) end
  end
  local total = 0
  for i = 1, #conns do total = total + sent[i] end
  return total
end

local function connect_many(port, n)
  local conns = {}
  for i = 1, n do conns[i] = helper.connect(port) end
  return conns
end

local function close_all(conns)
  for _, c in ipairs(conns) do c:close() end
end

describe("conn_buffer_budget", function()
  local srv, port

  lazy_setup(function()
    port = 18801
    srv = helper.start((SCRIPT:gsub("@BUDGET@", tostring(BUDGET))), { port = port })
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("200 clients pipelining without reading: bounded, then back to the baseline", function()
    assert.are.equal(16000, #helper.get(port, "/big").body)
    local base = buffer_bytes(port)
    local rss0 = rss_kb(srv:pid())
    local watch = helper.connect(port)
    watch:write(helper.request("GET", "/watch?ms=2400"))
    helper.sleep(0.05)
    local conns = connect_many(port, 200)
    finally(function() close_all(conns) end) -- even when an assertion fails
    -- 2000 requests each for a 16 KB response (32 MB per client, 6.4 GB in
    -- all) that nobody reads: unbounded, each connection would hold its
    -- output queue (256 KiB and more) and its pipelined input (64 KiB)
    local req = ("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"):rep(2000)
    pour(conns, req, 1.5)
    local rss_peak = rss_peak_kb(srv:pid(), 0.8)
    -- a new request while the budget is exhausted: 503 and close
    local c = helper.connect(port)
    c:write(helper.request("GET", "/big"))
    local res = c:response()
    c:close()
    local peak = tonumber(watch:response({ timeout = 10 }).body)
    watch:close()
    print(("\npipelining: peak buffer_bytes %d (budget %d), RSS +%d KiB"):format(
      peak, BUDGET, rss_peak - rss0))
    assert.is_truthy(peak > BUDGET, "the budget was never reached: " .. peak)
    assert.are.equal(503, res.status)
    assert.is_truthy(peak < BUDGET + 4 * 1024 * 1024,
      ("buffer_bytes peaked at %d, budget %d"):format(peak, BUDGET))
    -- RSS says nothing under AddressSanitizer (quarantine, shadow memory)
    assert.is_truthy(helper.sanitized() or rss_peak - rss0 < 3 * BUDGET / 1024,
      ("RSS grew by %d KiB"):format(rss_peak - rss0))
    assert.is_truthy(srv:stderr():find("connection buffers over budget", 1, true))
    close_all(conns)
    back_to(port, base)
    assert.are.equal(16000, #helper.get(port, "/big").body)
  end)

  it("300 clients stalling in a 1 MiB body: bounded, closed by body_timeout", function()
    local base = buffer_bytes(port)
    local rss0 = rss_kb(srv:pid())
    local watch = helper.connect(port)
    watch:write(helper.request("GET", "/watch?ms=1500"))
    helper.sleep(0.05)
    local conns = connect_many(port, 300)
    finally(function() close_all(conns) end)
    -- a head announcing 1 MiB and 256 KiB of it (75 MiB in all), then nothing
    local req = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
      .. ("b"):rep(256 * 1024)
    local sent = pour(conns, req, 1.2)
    local rss_peak = rss_peak_kb(srv:pid(), 0.2)
    local peak = tonumber(watch:response({ timeout = 10 }).body)
    watch:close()
    assert.is_truthy(sent > 2 * BUDGET, "clients sent only " .. sent)
    assert.is_truthy(peak > BUDGET / 2, "the buffers never filled: " .. peak)
    assert.is_truthy(peak < BUDGET + 4 * 1024 * 1024,
      ("buffer_bytes peaked at %d, budget %d"):format(peak, BUDGET))
    -- RSS says nothing under AddressSanitizer (quarantine, shadow memory)
    assert.is_truthy(helper.sanitized() or rss_peak - rss0 < 3 * BUDGET / 1024,
      ("RSS grew by %d KiB"):format(rss_peak - rss0))
    -- each one is answered and closed by the server: 408 when its body
    -- made no progress within body_timeout (1 s), 503 when its head came
    -- while the budget was exhausted
    local deadline = helper.now() + 10
    local got = { [408] = 0, [503] = 0 }
    for _, c in ipairs(conns) do
      local text = c:read_to_close(deadline) or c.buf
      local st = tonumber(text:match("^HTTP/1.1 (%d%d%d)"))
      got[st or "none"] = (got[st or "none"] or 0) + 1
    end
    close_all(conns)
    print(("\nstalled bodies: peak buffer_bytes %d (budget %d), RSS +%d KiB, 408: %d, 503: %d")
      :format(peak, BUDGET, rss_peak - rss0, got[408], got[503]))
    assert.are.equal(300, got[408] + got[503])
    assert.is_truthy(got[408] >= BUDGET / (512 * 1024), "408: " .. got[408])
    back_to(port, base)
    local c = helper.connect(port)
    c:write(helper.request("POST", "/upload", nil, ("u"):rep(100000)))
    assert.are.equal("100000", c:response().body)
    c:close()
  end)

  it("is range-checked and shown by luring.conn_stats()", function()
    local path, cleanup = helper.temp_script([[
luring.config{ conn_buffer_budget = 1000 }
luring.app():listen("127.0.0.1:18809")
]])
    local rc, _, err = helper.run({ "--check", path })
    cleanup()
    assert.are.equal(1, rc)
    assert.truthy(err:find("conn_buffer_budget must be a number from 1048576", 1, true), err)
    assert.are.equal(tostring(BUDGET), helper.get(port, "/stats").body:match("^%d+ (%d+)$"))
  end)
end)

describe("a listener's own max_connections", function()
  local PUBLIC, HEALTH = 18803, 18804

  lazy_setup(function()
    helper.start(([[
local public = luring.app()
public:listen("@LISTEN@", { max_connections = 2 })
public:get("/who/:n", function(req) return "conn " .. req.params.n end)
local admin = luring.app()
admin:listen("127.0.0.1:%d")
admin:get("/health", function(req) return "ok" end)
]]):format(HEALTH), { port = PUBLIC })
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  local function open_and_use(n)
    local c = helper.connect(PUBLIC)
    c:write(helper.request("GET", "/who/" .. n))
    assert.are.equal("conn " .. n, c:response().body)
    return c
  end

  it("a full public listener leaves /health on the other one answering", function()
    local c1, c2 = open_and_use(1), open_and_use(2)
    local c3 = helper.connect(PUBLIC)
    c3:write(helper.request("GET", "/who/3"))
    local early, closed = c3:read_available(0.5)
    assert.are.equal("", early, "third public connection served beyond its limit of 2")
    assert.is_false(closed)
    for _ = 1, 3 do
      local t0 = helper.now()
      assert.are.equal("ok", helper.get(HEALTH, "/health").body)
      assert.is_truthy(helper.now() - t0 < 1, "/health took " .. (helper.now() - t0) .. " s")
    end
    c1:close()
    local res, err = c3:read_response({ timeout = 5 })
    assert.is_not_nil(res, "third connection not served after a slot was freed: " .. tostring(err))
    assert.are.equal("conn 3", res.body)
    c2:close()
    c3:close()
  end)

  it("is checked: a number from 1 to 10^9, and no unknown option", function()
    for _, opts in ipairs({ "{ max_connections = 0 }", "{ max_connections = 'x' }",
                            "{ max_connections = 1e10 }", "{ max_conns = 2 }", "5" }) do
      local path, cleanup = helper.temp_script(
        'luring.app():listen("127.0.0.1:18810", ' .. opts .. ')\n')
      local rc, _, err = helper.run({ "--check", path })
      cleanup()
      assert.are.equal(1, rc, opts)
      assert.truthy(err:find("listen", 1, true), err)
    end
  end)
end)
