-- Raw TCP handlers (issue 15, point 5): app:tcp(addr, handler) runs
-- handler(sock) in its own coroutine for every connection accepted, sock
-- a cosocket. examples/echo.lua streams 1 GiB on 8 connections at once,
-- every byte checked in order (tests/c/echo_check.c: the seed's own
-- echo server lost bytes on short writes); then the line protocol,
-- receiveany, a handler's error, a client leaving mid-stream, many
-- connections, --workers 2, SIGHUP reload and graceful drain with a
-- connection open. Timing bounds are generous (ASan builds, 2 cores).
local helper = require "helper"
local socket = require "socket"

local function script_dir()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  return src:match("^(.*)/[^/]*$") or "."
end

local BIN_DIR = helper.BIN:match("^(.*)/[^/]*$") or "."
local CHECK = BIN_DIR .. "/echo_check"
local ECHO = script_dir() .. "/../../examples/echo.lua"

local function connect(port)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(10)
  c:setoption("tcp-nodelay", true)
  return c
end

-- Run echo_check against port: conns connections of each bytes.
local function check(port, conns, bytes, limit)
  local cmd = ("ASAN_OPTIONS=detect_leaks=0 timeout -k 2 %d %s 127.0.0.1 %d %d %d 7 2>&1"):format(
    limit, helper.shquote(CHECK), port, conns, bytes)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function signal(srv, sig)
  os.execute("kill -" .. sig .. " " .. math.floor(srv:pid()) .. " 2>/dev/null")
end

describe("app:tcp", function()
  after_each(function() helper.stop_all() end)

  it("examples/echo.lua: 1 GiB on 8 connections at once comes back whole and in order", function()
    local f = io.open(CHECK)
    assert.is_not_nil(f, CHECK .. " not built (cmake --build)")
    f:close()
    local srv = helper.start(nil, { file = ECHO })
    local t0 = socket.gettime()
    local out = check(srv:port(), 8, 128 * 1024 * 1024, helper.sanitized() and 170 or 60)
    assert.is_truthy(out:match("^ok 1073741824 "), out)
    assert.is_true(socket.gettime() - t0 < (helper.sanitized() and 170 or 60))
    -- and again once those are gone: nothing was left behind
    out = check(srv:port(), 2, 1024 * 1024, 20)
    assert.is_truthy(out:match("^ok 2097152 "), out)
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()), srv:stderr())
  end)

  local LINES = [[
local app = luring.app()
app:listen("@LISTEN@")
local TCP = @TCP@
local stats = { closed = 0, partial = "" }
app:get("/stats", function(req)
  return stats.closed .. " " .. stats.partial
end)
local tcp = luring.app()
tcp:tcp("127.0.0.1:" .. TCP, function(sock)
  sock:settimeout(5000)
  local ip, port = sock:getpeername()
  while true do
    local line, err, partial = sock:receive("*l")
    if not line then
      stats.closed = stats.closed + 1
      stats.partial = tostring(err) .. ":" .. tostring(partial)
      return
    end
    local cmd, arg = line:match("^(%S+) ?(.*)$")
    if cmd == "quit" then
      sock:send("bye\n")
      return
    elseif cmd == "peer" then
      sock:send(ip .. " " .. tostring(port > 0) .. "\n")
    elseif cmd == "bytes" then                 -- "bytes n": read n, say them back
      local data, rerr = sock:receive(tonumber(arg))
      sock:send("got " .. data .. "\n")
    elseif cmd == "any" then                   -- "any n": receiveany(n) twice
      local a = sock:receiveany(tonumber(arg))
      local b = sock:receiveany(100)
      sock:send(a .. "|" .. b .. "\n")
    elseif cmd == "until" then
      local read = sock:receiveuntil("--end")
      sock:send("until " .. read() .. "\n")
    elseif cmd == "worker" then
      sock:send(luring.worker.id() .. "\n")
    elseif cmd == "sleep" then
      luring.sleep(tonumber(arg))
      sock:send("slept\n")
    elseif cmd == "wait" then                  -- a receive that times out
      sock:settimeout(200)
      local x, err, partial = sock:receive("*l")
      sock:settimeout(5000)
      sock:send(tostring(x) .. " " .. tostring(err) .. " [" .. tostring(partial) .. "]\n")
    elseif cmd == "twice" then                 -- two receives, each within 400 ms
      sock:settimeout(400)
      local a, e1 = sock:receive("*l")
      local b, e2 = sock:receive("*l")
      sock:settimeout(5000)
      sock:send(tostring(a or e1) .. " " .. tostring(b or e2) .. "\n")
    elseif cmd == "bulk" then                  -- not reading for a while
      luring.sleep(300)
      local data, rerr = sock:receive(tonumber(arg))
      local ok = data == ("0123456789"):rep(tonumber(arg) / 10)
      local bad = ""
      if not ok then
        local want = ("0123456789"):rep(tonumber(arg) / 10)
        local i = 1
        while data and data:byte(i) == want:byte(i) do i = i + 1 end
        bad = " " .. tostring(rerr) .. " " .. tostring(data and #data) .. " at " .. i .. " " .. tostring(data and data:sub(i, i + 20))
      end
      sock:send("bulk " .. (ok and "ok" or "bad") .. bad .. "\n")
    elseif cmd == "boom" then
      error("boom on purpose")
    elseif cmd == "spin" then
      while true do end
    else
      sock:send({ "you said ", line, "\n" })
    end
  end
end)
]]

  local function start_lines(opts)
    opts = opts or {}
    local tcp = helper.free_port()
    local src = (opts.src or LINES):gsub("@TCP@", tostring(tcp))
    local srv = helper.start(src, opts)
    assert(helper.wait_until(function()
      local c = socket.connect("127.0.0.1", tcp)
      if c then -- not counted as closed: it says quit
        c:send("quit\n")
        c:receive("*l")
        c:close()
      end
      return c ~= nil
    end, 10))
    return srv, tcp
  end

  it("serves a line protocol: receive('*l'), receive(n), receiveuntil, getpeername", function()
    local srv, tcp = start_lines()
    local c = connect(tcp)
    c:send("hello\r\nworld\n")
    assert.are.equal("you said hello", c:receive("*l"))
    assert.are.equal("you said world", c:receive("*l"))
    c:send("bytes 5\nabcdeagain\n")
    assert.are.equal("got abcde", c:receive("*l"))
    assert.are.equal("you said again", c:receive("*l"))
    c:send("until\nfirst part--endrest\n")
    assert.are.equal("until first part", c:receive("*l"))
    assert.are.equal("you said rest", c:receive("*l"))
    c:send("peer\n")
    assert.are.equal("127.0.0.1 true", c:receive("*l"))
    c:send("quit\n")
    assert.are.equal("bye", c:receive("*l"))
    local x, err = c:receive("*l")
    assert.is_nil(x)
    assert.are.equal("closed", err)  -- the handler returned: closed
    c:close()
  end)

  it("a receive times out (settimeout) and the connection goes on", function()
    local srv, tcp = start_lines()
    local c = connect(tcp)
    c:send("wait\npart")
    assert.are.equal("nil timeout [part]", c:receive("*l"))
    c:send("ly\n")
    assert.are.equal("you said ly", c:receive("*l"))
    c:close()
  end)

  it("each receive gets the whole read timeout (one timeout kept armed across receives)", function()
    local srv, tcp = start_lines()
    local c = connect(tcp)
    c:send("twice\n")
    socket.sleep(0.3)
    c:send("a\n")
    socket.sleep(0.3)  -- 600 ms after the first receive began, 300 ms into the second
    c:send("b\n")
    assert.are.equal("a b", c:receive("*l"))
    c:close()
  end)

  it("a handler not reading while 4 MB come: every byte is kept, in order", function()
    local srv, tcp = start_lines()
    local c = connect(tcp)
    local n = 4000000
    c:send("bulk " .. n .. "\n")
    assert(c:send(("0123456789"):rep(n / 10)))
    assert.are.equal("bulk ok", c:receive("*l"))
    c:send("after\n")
    assert.are.equal("you said after", c:receive("*l"))
    c:close()
  end)

  it("receiveany(max) returns what has come, at most max bytes", function()
    local srv, tcp = start_lines()
    local c = connect(tcp)
    c:send("any 4\n0123456789")
    assert.are.equal("0123|456789", c:receive("*l"))
    c:close()
  end)

  it("a handler's error closes its connection and is logged; the others go on", function()
    local srv, tcp = start_lines()
    local other = connect(tcp)
    local c = connect(tcp)
    c:send("boom\n")
    local x, err = c:receive("*l")
    assert.is_nil(x)
    assert.are.equal("closed", err)
    assert.is_true(srv:wait_stderr("tcp handler failed", 5))
    assert.is_truthy(srv:stderr():find("boom on purpose", 1, true))
    other:send("still\n")
    assert.are.equal("you said still", other:receive("*l"))
    other:close()
  end)

  ;(helper.tsan() and pending or it)("lua_budget: a handler that never yields fails, its connection closes", function()
    local srv, tcp = start_lines({ src = "luring.config{ lua_budget = 0.2 }\n" .. LINES })
    local c = connect(tcp)
    c:send("spin\n")
    local x, err = c:receive("*l")
    assert.is_nil(x)
    assert.are.equal("closed", err)
    assert.is_true(srv:wait_stderr("tcp handler failed", 5))
    local d = connect(tcp)
    d:send("ok\n")
    assert.are.equal("you said ok", d:receive("*l"))
    d:close()
  end)

  it("a client leaving mid-line: the handler's receive says closed, with the partial line", function()
    local srv, tcp = start_lines()
    local c = connect(tcp)
    c:send("half a li")
    socket.sleep(0.1)
    c:close()
    assert(helper.wait_until(function()
      return helper.get(srv:port(), "/stats").body == "1 closed:half a li"
    end, 5))
    -- a client resetting a connection whose replies it does not read
    local d = connect(tcp)
    d:send(("x"):rep(200) .. "\n")
    d:setoption("linger", { on = true, timeout = 0 })
    d:close()
    assert(helper.wait_until(function()
      return helper.get(srv:port(), "/stats").body:match("^2 ") ~= nil
    end, 5))
    assert.is_true(srv:alive())
  end)

  it("many connections at once, each served on its own", function()
    local srv, tcp = start_lines()
    local cs = {}
    for i = 1, 300 do
      cs[i] = connect(tcp)
      cs[i]:send("n" .. i .. "\n")
    end
    for i = 1, 300 do
      assert.are.equal("you said n" .. i, cs[i]:receive("*l"))
    end
    for i = 1, 300 do cs[i]:close() end
    assert(helper.wait_until(function()
      return helper.get(srv:port(), "/stats").body:match("^300 ") ~= nil
    end, 10))
  end)

  it("max_connections of an app:tcp listener: the next connection waits until one ends", function()
    local srv, tcp = start_lines({ src = LINES:gsub('tcp:tcp%("127.0.0.1:" .. TCP, function%(sock%)',
      'tcp:tcp("127.0.0.1:" .. TCP, function(sock)', 1):gsub("\nend%)\n$", "\nend, { max_connections = 1 })\n") })
    local a = connect(tcp)
    a:send("x\n")
    assert.are.equal("you said x", a:receive("*l"))
    local b = connect(tcp)       -- in the backlog: not accepted yet
    b:send("y\n")
    b:settimeout(0.3)
    assert.is_nil((b:receive("*l")))
    b:settimeout(10)
    a:close()
    assert.are.equal("you said y", b:receive("*l"))
    b:close()
  end)

  it("--workers 2: both workers accept on the shared port", function()
    local srv, tcp = start_lines({ args = { "--workers", "2" } })
    local seen, n = {}, 0
    assert(helper.wait_until(function()
      local c = connect(tcp)
      c:send("worker\n")
      local w = c:receive("*l")
      c:close()
      if w and not seen[w] then seen[w], n = true, n + 1 end
      return n == 2
    end, 20, 0.01), "one worker took every connection")
  end)

  it("SIGHUP reload: an open connection keeps its handler, new ones get the new script", function()
    local srv, tcp = start_lines()
    local c = connect(tcp)
    c:send("a\n")
    assert.are.equal("you said a", c:receive("*l"))
    local f = assert(io.open(srv:script_path()))
    local src = f:read("*a")
    f:close()
    f = assert(io.open(srv:script_path(), "w"))
    f:write((src:gsub('"you said "', '"v2 said "')))
    f:close()
    signal(srv, "HUP")
    assert(helper.wait_until(function()
      local d = connect(tcp)
      d:send("b\n")
      local l = d:receive("*l")
      d:close()
      return l == "v2 said b"
    end, 10))
    c:send("c\n")
    assert.are.equal("you said c", c:receive("*l"))
    c:close()
  end)

  it("graceful drain (SIGTERM): new connections refused, an open one finishes, then exit 0", function()
    local srv, tcp = start_lines()
    local c = connect(tcp)
    c:send("sleep 300\n")
    socket.sleep(0.05)
    signal(srv, "TERM")
    assert(helper.wait_until(function()
      local d = socket.tcp()
      d:settimeout(1)
      local ok = d:connect("127.0.0.1", tcp)
      d:close()
      return not ok
    end, 5), "still accepting")
    assert.are.equal("slept", c:receive("*l"))
    c:send("after\n")
    assert.are.equal("you said after", c:receive("*l"))
    assert.is_true(srv:alive())  -- a connection still open
    c:close()
    assert(helper.wait_until(function() return not srv:alive() end, 10))
    srv:stop()
    assert.are.equal(0, srv:exit_code())
    assert.is_nil(helper.crash_report(srv:stderr()), srv:stderr())
  end)
end)
