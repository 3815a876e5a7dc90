-- Cosockets (issue 15, point 2): luring.socket.tcp(), shaped like
-- OpenResty's ngx.socket.tcp, against a real TCP server written for the
-- test (line_server.py): connect (ok, refused, timeout, a name resolved
-- on the resolver's threads), the connection pool (setkeepalive), send, receive by
-- line, by size and to the end, partial data on close, receiveuntil,
-- timeouts, use from a timer, many sockets at once, a socket collected
-- unclosed; and a handler waiting on a cosocket does not hold up the
-- worker (a concurrent /ping answers at once). Timing bounds are generous
-- (ASan builds, a shared machine).
local helper = require "helper"
local socket = require "socket"

local function script_dir()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  return src:match("^(.*)/[^/]*$") or "."
end

local SCRIPT = [[
luring.config{ workers = 1 }
local app = luring.app()
app:listen("@LISTEN@")
local P, FULL = @PORT@, @FULL@
local results = {}

local function s(...)
  local t = table.pack and table.pack(...) or { n = select("#", ...), ... }
  local out = {}
  for i = 1, t.n do out[i] = tostring(t[i]) end
  return table.concat(out, "|")
end

local function conn(host)
  local sock = luring.socket.tcp()
  sock:settimeout(2000)
  assert(sock:connect(host or "127.0.0.1", P))
  return sock
end

app:get("/ping", function(req) return "pong" end)
app:get("/get/:k", function(req) return tostring(results[req.params.k]) end)

app:get("/echo", function(req)
  local sock = conn()
  local n = sock:send("echo hello\n")
  local line = sock:receive()        -- "*l" by default
  local n2 = sock:send({ "ec", "ho ", { "wor", "ld" }, 42, "\n" })
  local line2 = sock:receive("*l")
  sock:close()
  return s(n, line, n2, line2, sock:close())
end)

app:get("/host/:h", function(req)
  local sock = luring.socket.tcp()
  sock:settimeout(2000)
  local ok, err = sock:connect(req.params.h, P)
  if not ok then return s(ok, err) end
  sock:send("echo v\n")
  return s(ok, sock:receive())
end)

app:get("/refused", function(req)
  local sock = luring.socket.tcp()
  return s(sock:connect("127.0.0.1", @CLOSED@))
end)

app:get("/connect-timeout", function(req)
  local sock = luring.socket.tcp()
  sock:settimeouts(150, 1000, 1000)
  local t0 = luring.now()
  local ok, err = sock:connect("127.0.0.1", FULL)
  return s(ok, err, luring.now() - t0 >= 100)
end)

app:get("/sizes", function(req)
  local sock = conn()
  sock:send("bytes 10\nlines 3\n")
  local a = sock:receive(4)
  local b = sock:receive(6)
  local l1, l2, l3 = sock:receive(), sock:receive(), sock:receive()
  local z = sock:receive(0)
  sock:close()
  return s(a, b, l1, l2, l3, z)
end)

app:get("/all", function(req)
  local sock = conn()
  sock:send("big 100000\n")
  local data, err = sock:receive("*a")
  local again, err2 = sock:receive("*a")
  return s(data and #data, err, again, err2)
end)

app:get("/partial/:pat", function(req)
  local sock = conn()
  sock:send("partial abc\r\n") -- "abc", then the server closes
  local pat = req.params.pat == "n" and 10 or "*l"
  local d, err, part = sock:receive(pat)
  local d2, err2 = sock:receive()
  return s(d, err, part, d2, err2)
end)

app:get("/read-timeout", function(req)
  local sock = conn()
  sock:settimeouts(1000, 1000, 150)
  sock:send("silent\n")
  local d, err, part = sock:receive()
  -- a read timeout leaves the socket open
  sock:settimeout(2000)
  sock:send("echo still\n")
  local again = sock:receive()
  return s(d, err, part, again)
end)

app:get("/until", function(req)
  local sock = conn()
  sock:send("bound\n")
  local reader = sock:receiveuntil("--B--")
  local a = reader()
  local b = reader()
  local c, err, part = reader()
  return s(a, b, c, err, part)
end)

app:get("/until-size", function(req)
  local sock = conn()
  sock:send("bound\n")
  local reader = sock:receiveuntil("--B--")
  local out = {}
  for i = 1, 6 do
    local d, err = reader(2)
    out[#out + 1] = tostring(d) .. (err and ("/" .. err) or "")
  end
  return table.concat(out, ",")
end)

app:get("/until-inclusive", function(req)
  local sock = conn()
  sock:send("bound\n")
  local reader = sock:receiveuntil("--B--", { inclusive = true })
  return s(reader(), reader())
end)

app:get("/too-large", function(req)
  local sock = conn()
  sock:send("bytes 5000000\n")
  local d, err, part = sock:receive("*l")
  return s(d, err, part and #part)
end)

app:get("/slow", function(req)
  local sock = conn()
  sock:send("sleep 700\n")
  return s(sock:receive())
end)

app:get("/timer", function(req)
  results.timer = nil
  luring.timer.at(0, function(premature)
    local sock = conn()
    sock:send("echo from a timer\n")
    results.timer = s(sock:receive())
    sock:close()
  end)
  return "ok"
end)

app:get("/many/:n", function(req)
  local n = tonumber(req.params.n)
  local socks = {}
  for i = 1, n do
    socks[i] = conn()
    socks[i]:send("echo " .. i .. "\n")
  end
  local sum = 0
  for i = 1, n do
    sum = sum + tonumber(socks[i]:receive())
    socks[i]:close()
  end
  return tostring(sum)
end)

app:get("/gc", function(req)
  for i = 1, 20 do
    local sock = conn()
    sock:send("echo x\n")
    sock:receive()
  end
  collectgarbage()
  collectgarbage()
  return "ok"
end)

app:get("/gc-inflight", function(req)
  -- a timer whose socket waits when the script's state drops it
  luring.timer.at(0, function()
    local sock = conn()
    sock:send("silent\n")
    sock:settimeout(300)
    sock:receive()
  end)
  return "ok"
end)

app:get("/errors", function(req)
  local sock = luring.socket.tcp()
  local r1 = s(sock:send("x"))
  local r2 = s(sock:receive())
  local r3 = s(sock:close())
  local r4 = s(sock:connect("example.invalid", 80))
  local ok, e = pcall(sock.connect, sock, "127.0.0.1", 0)
  local ok2, e2 = pcall(sock.receive, sock, "*x")
  return table.concat({ r1, r2, r3, r4, tostring(ok), tostring(ok2) }, "\n")
end)

app:get("/names/:n", function(req)
  results.names = 0
  for i = 1, tonumber(req.params.n) do
    luring.timer.at(0, function()
      local sock = luring.socket.tcp()
      sock:settimeout(3000)
      assert(sock:connect("localhost", P))
      sock:send("echo " .. i .. "\n")
      if tonumber(sock:receive()) == i then results.names = results.names + 1 end
      sock:close()
    end)
  end
  return "ok"
end)

app:get("/keepalive", function(req)
  local a = conn()
  a:send("count\n")
  local c1 = a:receive()
  local r0 = a:getreusedtimes()
  local ok = a:setkeepalive(10000, 5)
  local st = s(a:send("x"))
  local b = conn()
  local r1 = b:getreusedtimes()
  b:send("count\n")
  local c2 = b:receive()
  b:setkeepalive()
  local c = conn()
  local r2 = c:getreusedtimes()
  c:close()
  local d = conn()
  local r3 = d:getreusedtimes()
  d:close()
  return s(r0, ok, st, r1, c1 == c2, r2, r3)
end)

app:get("/keepalive-edges", function(req)
  -- unread data: refused, closed
  local a = conn()
  a:send("lines 2\n")
  a:receive()
  luring.sleep(50)
  local u = s(a:setkeepalive())
  -- the peer closes an idle connection: not reused
  local b = conn()
  b:send("quit\n")
  b:setkeepalive()
  luring.sleep(100)
  local c = conn()
  local rc = c:getreusedtimes()
  -- an idle connection past its timeout: not reused
  c:setkeepalive(30)
  luring.sleep(100)
  local d = conn()
  local rd = d:getreusedtimes()
  -- a named pool is apart from host:port's
  d:setkeepalive()
  local e = luring.socket.tcp()
  assert(e:connect("127.0.0.1", P, { pool = "other" }))
  local re = e:getreusedtimes()
  e:setkeepalive()
  local f = luring.socket.tcp()
  assert(f:connect("127.0.0.1", P, { pool = "other" }))
  local rf = f:getreusedtimes()
  f:close()
  return s(u, rc, rd, re, rf)
end)

app:get("/linger", function(req)
  -- left waiting when the server stops (the spec's teardown)
  luring.timer.at(0, function()
    local sock = conn()
    sock:settimeout(60000)
    sock:send("silent\n")
    sock:receive()
  end)
  local sock = conn()
  sock:settimeout(60000)
  sock:send("silent\n")
  results.lingering = sock -- kept, waited on by nobody
  return "ok"
end)

app:get("/outside", function(req)
  local co = coroutine.create(function()
    return luring.socket.tcp():connect("127.0.0.1", P)
  end)
  local ok, err = coroutine.resume(co)
  return s(ok, err:match("only inside") ~= nil)
end)
]]

describe("cosockets", function()
  local srv, port, full, dir, line_pid

  lazy_setup(function()
    dir = helper.mktempdir()
    port, full = helper.free_port(), helper.free_port()
    line_pid = helper.spawn(dir, { "python3", script_dir() .. "/line_server.py",
                        tostring(port), tostring(full) })
    assert(helper.wait_until(function()
      local c = socket.tcp()
      c:settimeout(0.2)
      local r = c:connect("127.0.0.1", port)
      c:close()
      return r
    end, 5), "line_server.py did not listen")
    local closed = helper.free_port()
    srv = helper.start((SCRIPT:gsub("@PORT@", tostring(port)):gsub("@FULL@", tostring(full))
                              :gsub("@CLOSED@", tostring(closed))))
  end)

  lazy_teardown(function()
    if line_pid then os.execute("kill " .. tonumber(line_pid) .. " 2>/dev/null") end
    helper.stop_all()
  end)

  local function get(path)
    local res = helper.get(srv:port(), path)
    assert.are.equal(200, res.status, res.body)
    return res.body
  end

  it("connects, sends strings and nested arrays, receives lines", function()
    assert.are.equal("11|hello|13|world42|nil|closed", get("/echo"))
  end)

  it("connects to localhost and to an IPv6 literal", function()
    assert.are.equal("1|v", get("/host/localhost"))
    local v6 = get("/host/::1")
    assert.truthy(v6 == "1|v" or v6:match("^nil|"), v6)
  end)

  it("reports a refused connection", function()
    assert.are.equal("nil|connection refused", get("/refused"))
  end)

  it("times a connect out (settimeouts' first)", function()
    assert.are.equal("nil|timeout|true", get("/connect-timeout"))
  end)

  it("receives by size and by line, CR dropped, 0 bytes", function()
    assert.are.equal("xxxx|xxxxxx|line 0|line 1|line 2|", get("/sizes"))
  end)

  it("receives to the end with *a, which closes the socket", function()
    assert.are.equal("100000|nil|nil|closed", get("/all"))
  end)

  it("returns the partial data when the peer closes", function()
    assert.are.equal("nil|closed|abc|nil|closed", get("/partial/l"))
    assert.are.equal("nil|closed|abc|nil|closed", get("/partial/n"))
  end)

  it("times a receive out and keeps the socket open", function()
    assert.are.equal("nil|timeout||still", get("/read-timeout"))
  end)

  it("receiveuntil: the data before each pattern, then closed with the rest", function()
    assert.are.equal("aaa|bbbb|nil|closed|cc", get("/until"))
  end)

  it("receiveuntil with a size: pieces, then nil at the pattern", function()
    assert.are.equal("aa,a,nil,bb,bb,nil", get("/until-size"))
  end)

  it("receiveuntil inclusive", function()
    assert.are.equal("aaa--B--|bbbb--B--", get("/until-inclusive"))
  end)

  it("caps what it buffers: too large", function()
    assert.are.equal("nil|too large|4194304", get("/too-large"))
  end)

  it("works from a timer", function()
    assert.are.equal("ok", get("/timer"))
    assert.truthy(helper.wait_until(function()
      return helper.get(srv:port(), "/get/timer").body == "from a timer"
    end, 5))
  end)

  it("never blocks the worker: /ping answers while a handler waits on a socket", function()
    local c = socket.tcp()
    c:settimeout(5)
    assert(c:connect("127.0.0.1", srv:port()))
    assert(c:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
    helper.sleep(0.1)
    local t0 = helper.now()
    assert.are.equal("pong", get("/ping"))
    assert.is_true(helper.now() - t0 < 0.4, "ping took " .. (helper.now() - t0))
    local status = c:receive("*l")
    assert.truthy(status:match("200"))
    c:close()
  end)

  it("a client leaving while its handler waits on a socket: the operation is cancelled", function()
    for _ = 1, 5 do
      local c = socket.tcp()
      c:settimeout(5)
      assert(c:connect("127.0.0.1", srv:port()))
      assert(c:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
      helper.sleep(0.05)
      c:close()
    end
    helper.sleep(0.2)
    assert.are.equal("pong", get("/ping"))
    assert.are.equal("1|v", get("/host/localhost"))
  end)

  it("holds many sockets at once", function()
    assert.are.equal(tostring(200 * 201 / 2), get("/many/200"))
  end)

  it("closes sockets collected unclosed, and survives one collected mid-operation", function()
    assert.are.equal("ok", get("/gc"))
    assert.are.equal("ok", get("/gc-inflight"))
    helper.sleep(0.5)
    assert.are.equal("pong", get("/ping"))
  end)

  it("errors: not connected, closed, names, bad arguments", function()
    assert.are.equal(table.concat({
      "nil|closed", "nil|closed", "nil|closed",
      "nil|example.invalid could not be resolved (Name or service not known)",
      "false", "false" }, "\n"), get("/errors"))
  end)

  it("resolves host names off the worker's thread, many at once", function()
    assert.are.equal("ok", get("/names/40"))
    assert.truthy(helper.wait_until(function()
      return helper.get(srv:port(), "/get/names").body == "40"
    end, 10))
  end)

  it("setkeepalive pools the connection for the next connect to host:port", function()
    assert.are.equal("0|1|nil|closed|1|true|2|0", get("/keepalive"))
  end)

  it("setkeepalive: unread data, a peer that closed, a timeout, named pools", function()
    assert.are.equal("nil|unread data in buffer|0|0|0|1", get("/keepalive-edges"))
  end)

  it("stops cleanly with sockets waiting (teardown checks the exit)", function()
    assert.are.equal("ok", get("/linger"))
    helper.sleep(0.2)
  end)

  it("refuses to park outside a handler's coroutine", function()
    assert.are.equal("false|true", get("/outside"))
  end)
end)
