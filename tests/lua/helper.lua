-- End-to-end test helper for luring: starts the real binary, talks raw HTTP/1.1
-- to it over loopback sockets (lua-socket).  Every wait in here is bounded.
--
-- How to run the suite (from the repository root):
--
--     LURING_BIN=/abs/path/to/build/luring busted
--
-- /usr/bin/busted starts with "#!/usr/bin/env lua" (lua5.2 on Debian); the
-- `lua = "luajit"` entry of .busted makes busted re-exec itself as
-- `luajit /usr/bin/busted --ignore-lua ...`, so the specs always run under
-- LuaJIT.  Invoking it explicitly works too (that is what ctest does):
--
--     LURING_BIN=$PWD/build/luring luajit /usr/bin/busted -o utfTerminal
--
-- One file / one test:  busted tests/lua/errors_spec.lua --filter '408'
-- LURING_BIN defaults to build/luring (relative to the repository root).

local socket = require "socket"

local M = {}

M.BIN = os.getenv("LURING_BIN") or "build/luring"
M.START_TIMEOUT = 15     -- seconds to wait for the server to accept connections
                         -- (a script whose main chunk builds megabytes runs it
                         -- interpreted: the JIT is off for scripts, see lua_budget)
M.STOP_TIMEOUT = 5       -- seconds to wait after SIGINT before SIGKILL
M.IO_TIMEOUT = 5         -- default per-operation socket timeout

local now = socket.gettime
M.now = now
M.sleep = socket.sleep

---------------------------------------------------------------------------
-- small utilities
---------------------------------------------------------------------------

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shquote = shquote

local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.readfile = readfile

local function writefile(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
end
M.writefile = writefile

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function mktempdir()
  local p = assert(io.popen("mktemp -d /tmp/luring-test.XXXXXX"))
  local dir = p:read("*l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  return dir
end
M.mktempdir = mktempdir

local function rmtree(dir)
  if dir and dir:match("^/tmp/luring%-test%.") then
    os.execute("rm -rf " .. shquote(dir))
  end
end

-- pid of this (busted) process: /proc/self is resolved by the opener.
local function self_pid()
  local s = readfile("/proc/self/stat")
  return s and tonumber(s:match("^(%d+)")) or 0
end

local function abs_path(p)
  if p:sub(1, 1) == "/" then return p end
  local h = assert(io.popen("pwd"))
  local cwd = h:read("*l")
  h:close()
  return cwd .. "/" .. p
end

-- Absolute path of the repository root (tests/lua/../..), for examples/.
function M.repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/tests/lua/[^/]*$") or "."
  return abs_path(dir)
end

-- Wait until fn() returns a truthy value, polling every `interval` seconds,
-- for at most `timeout` seconds.  Returns fn's value or nil on timeout.
-- Is the luring under test built with a sanitizer (memory figures such as
-- RSS are then meaningless)?
local sanitized
function M.sanitized()
  if sanitized == nil then
    local p = io.popen("ldd " .. M.shquote(M.BIN) .. " 2>/dev/null")
    local out = p:read("*a") or ""
    p:close()
    sanitized = out:find("libasan", 1, true) ~= nil or out:find("libubsan", 1, true) ~= nil
  end
  return sanitized
end

-- Is it built with ThreadSanitizer? (lua_budget's interrupt then comes only
-- at an intercepted call, never inside a pure-Lua loop: such tests are
-- pending there.)
local tsan_built
function M.tsan()
  if tsan_built == nil then
    local p = io.popen("ldd " .. M.shquote(M.BIN) .. " 2>/dev/null")
    local out = p:read("*a") or ""
    p:close()
    tsan_built = out:find("libtsan", 1, true) ~= nil
  end
  return tsan_built
end

function M.wait_until(fn, timeout, interval)
  local deadline = now() + (timeout or 5)
  interval = interval or 0.01
  while true do
    local v = fn()
    if v then return v end
    if now() >= deadline then return nil end
    socket.sleep(interval)
  end
end

-- A free loopback TCP port (bound and released again).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- Regex-ish scan for sanitizer / crash reports in a log text.
local CRASH_PATTERNS = {
  "AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
  "ThreadSanitizer", "runtime error:", "Segmentation fault", "SIGSEGV",
  "Assertion .* failed", "%f[%w]PANIC%f[%W]", "double free", "free%(%): invalid",
  "stack smashing", "Aborted",
}
function M.crash_report(text)
  text = text or ""
  for _, pat in ipairs(CRASH_PATTERNS) do
    local s = text:find(pat)
    if s then
      return text:sub(math.max(1, s - 200), s + 800)
    end
  end
  return nil
end

---------------------------------------------------------------------------
-- Running the binary
---------------------------------------------------------------------------

-- Runner: starts the command in the background with its own stdout/stderr
-- files, publishes its pid, reaps it and publishes its exit status.  A
-- watchdog SIGKILLs the server if the test process (owner) disappears, so an
-- aborted busted run cannot leak servers.
local RUNNER = [[
pidf=$1; rcf=$2; outf=$3; errf=$4; owner=$5; shift 5
"$@" </dev/null >"$outf" 2>"$errf" &
pid=$!
echo "$pid" >"$pidf.tmp" && mv "$pidf.tmp" "$pidf"
(
  while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do
    sleep 1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
) >/dev/null 2>&1 </dev/null &
wait "$pid"
echo "$?" >"$rcf.tmp" && mv "$rcf.tmp" "$rcf"
]]


local Server = {}
Server.__index = Server

local live_servers = {}

-- Start `luring` in the background.  argv: list of arguments after the binary.
-- Does not wait for readiness.
-- Start argv (program first) under RUNNER in dir: its output goes to
-- dir/stdout and dir/stderr, its pid to dir/pid and its exit status to
-- dir/rc (stale ones from an earlier run are removed first), with the
-- variables of env (name -> value) added to its environment.  Returns the
-- pid; raises if it did not start within 5 s.
function M.spawn(dir, argv, env)
  local runner = dir .. "/runner.sh"
  writefile(runner, RUNNER)
  os.remove(dir .. "/pid")
  os.remove(dir .. "/rc")
  local cmd = { "env" }
  for k, v in pairs(env or {}) do cmd[#cmd + 1] = shquote(k .. "=" .. v) end
  for _, a in ipairs{ "sh", shquote(runner), shquote(dir .. "/pid"), shquote(dir .. "/rc"),
                shquote(dir .. "/stdout"), shquote(dir .. "/stderr"), tostring(self_pid()) } do
    cmd[#cmd + 1] = a
  end
  for _, a in ipairs(argv) do cmd[#cmd + 1] = shquote(a) end
  os.execute(table.concat(cmd, " ") .. " >/dev/null 2>&1 </dev/null &")
  local pid = M.wait_until(function()
    local s = readfile(dir .. "/pid")
    return s and tonumber(s:match("%d+"))
  end, 5)
  assert(pid, "could not spawn " .. tostring(argv[1]))
  return pid
end

-- A spec's teardown that also stops other processes: every luring first
-- (M.stop_all reports crashes and sanitizer output), then stop(), whatever
-- the first said.
function M.teardown_with(stop)
  return function()
    local ok, err = pcall(M.stop_all)
    stop()
    assert(ok, err)
  end
end

-- helper.start(script_source, opts) -> server
--   The script is written to <tmpdir>/app.lua.  Any "@LISTEN@" in the source
--   is replaced by "127.0.0.1:<port>"; if the source has no "@LISTEN@", the
--   address is given with --listen instead.
--   opts.args      extra command line arguments (list), placed before the script
--   opts.file      run this existing script file instead of script_source
--   opts.listen    force passing --listen 127.0.0.1:<port> (default: see above)
--   opts.port      use this port (readiness is polled on it) instead of a free one
--   opts.timeout   readiness timeout (default M.START_TIMEOUT)
--   opts.env       environment variables to add ({ ORIGIN = "http://..." })
--   opts.bin       run this binary instead of M.BIN (an installed copy)
function M.start(source, opts)
  opts = opts or {}
  local dir = mktempdir()
  local port = opts.port or M.free_port()
  local addr = "127.0.0.1:" .. port
  local script
  local use_listen = opts.listen
  if opts.file then
    script = opts.file
    if use_listen == nil then use_listen = true end
  else
    script = dir .. "/app.lua"
    local has_placeholder = source:find("@LISTEN@", 1, true) ~= nil
    writefile(script, (source:gsub("@LISTEN@", addr)))
    if use_listen == nil then use_listen = not has_placeholder end
  end
  local argv = {}
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  if use_listen then
    argv[#argv + 1] = "--listen"
    argv[#argv + 1] = addr
  end
  argv[#argv + 1] = script
  local pid = M.spawn(dir, { abs_path(opts.bin or M.BIN), unpack(argv) }, opts.env)
  local self = setmetatable({ _dir = dir, _port = port, _pid = pid, _script = script,
                              _argv = argv }, Server)
  live_servers[self] = true
  local ok, err = self:wait_ready(opts.timeout or M.START_TIMEOUT)
  if not ok then
    local log = self:stderr()
    self:stop()
    error(("luring did not become ready on %s: %s\ncommand: %s %s\n--- stderr ---\n%s")
      :format(addr, err, M.BIN, table.concat(argv, " "), log), 2)
  end
  return self
end

function Server:port() return self._port end
function Server:pid() return self._pid end
function Server:script_path() return self._script end
function Server:addr() return "127.0.0.1:" .. self._port end

function Server:stderr()
  if self._stderr_text then return self._stderr_text end
  return readfile(self._dir .. "/stderr") or ""
end

function Server:stdout()
  if self._stdout_text then return self._stdout_text end
  return readfile(self._dir .. "/stdout") or ""
end

-- Exit status if the process has exited (128+signo when killed), else nil.
function Server:exit_code()
  if self._rc then return self._rc end
  local s = self._dir and readfile(self._dir .. "/rc")
  if s and s:match("%d") then
    self._rc = tonumber(s:match("%d+"))
    return self._rc
  end
  return nil
end

function Server:alive()
  return self:exit_code() == nil
end

function Server:wait_ready(timeout)
  local deadline = now() + timeout
  while now() < deadline do
    if not self:alive() then
      return nil, "server exited with status " .. tostring(self:exit_code())
    end
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", self._port)
    c:close()
    if ok then return true end
    socket.sleep(0.02)
  end
  return nil, ("not accepting connections after %.1fs"):format(timeout)
end

-- Wait for a pattern (plain substring) to show up in stderr, bounded.
function Server:wait_stderr(substr, timeout)
  return M.wait_until(function()
    return self:stderr():find(substr, 1, true) ~= nil
  end, timeout or 5)
end

-- The workers start one after another: wait (bounded, 20 s: slow under
-- the sanitizers) until n distinct ones have answered GET `path` on fresh
-- connections, the body of which names the worker. Raises otherwise.
function Server:wait_workers(n, path)
  local seen, count = {}, 0
  assert(M.wait_until(function()
    local w = M.get(self._port, path).body
    if not seen[w] then seen[w], count = true, count + 1 end
    return count == n
  end, 20, 0.01), ("not all %d workers took connections"):format(n))
end

-- SIGINT (an immediate stop; SIGTERM and SIGQUIT drain first), or `sig`
-- ("TERM", "QUIT"), bounded wait, then SIGKILL.  Returns exit status
-- (number) and whether SIGKILL was needed.  Idempotent.
function Server:stop(sig)
  if self._stopped then return self._rc, self._killed end
  self._stopped = true
  live_servers[self] = nil
  if self:alive() then
    os.execute("kill -" .. (sig or "INT") .. " " .. math.floor(self._pid) .. " 2>/dev/null")
    if not M.wait_until(function() return not self:alive() end, M.STOP_TIMEOUT, 0.01) then
      self._killed = true
      os.execute("kill -KILL " .. math.floor(self._pid) .. " 2>/dev/null")
      M.wait_until(function() return not self:alive() end, 3, 0.01)
    end
  end
  self._rc = self:exit_code()
  self._stderr_text = readfile(self._dir .. "/stderr") or ""
  self._stdout_text = readfile(self._dir .. "/stdout") or ""
  rmtree(self._dir)
  return self._rc, self._killed
end

-- Stop every server started through this helper that is still running.
-- Then raise an error if any of them had to be SIGKILLed, exited with a
-- non-zero status on SIGINT (e.g. LeakSanitizer), or logged a crash /
-- sanitizer report.  Use in lazy_teardown / after_each.
function M.stop_all()
  local list = {}
  for s in pairs(live_servers) do list[#list + 1] = s end
  local problems = {}
  for _, s in ipairs(list) do
    local was_alive = s:alive()
    local rc, killed = s:stop()
    local crash = M.crash_report(s:stderr())
    if killed then
      problems[#problems + 1] = "server pid " .. s:pid() .. " ignored SIGINT (SIGKILLed)"
    elseif was_alive and rc ~= 0 then
      problems[#problems + 1] = "server pid " .. s:pid() .. " exited with status " .. tostring(rc) .. " on SIGINT"
    elseif not was_alive then
      problems[#problems + 1] = "server pid " .. s:pid() .. " had already exited with status " .. tostring(rc)
    end
    if crash then
      problems[#problems + 1] = "crash report in stderr of pid " .. s:pid() .. ":\n" .. crash
    end
    if #problems > 0 and not problems.log then
      problems.log = s:stderr()
    end
  end
  if #problems > 0 then
    error(table.concat(problems, "\n") .. "\n--- stderr ---\n" .. tostring(problems.log):sub(-4000), 2)
  end
end

-- Run the binary synchronously (bounded by `timeout` seconds).
-- Returns exit status, stdout, stderr.  124/137 mean it had to be killed.
function M.run(argv, timeout)
  local dir = mktempdir()
  local cmd = { "timeout", "-k", "2", tostring(timeout or 10), shquote(abs_path(M.BIN)) }
  for _, a in ipairs(argv) do cmd[#cmd + 1] = shquote(a) end
  local line = table.concat(cmd, " ") .. " </dev/null >" .. shquote(dir .. "/out")
    .. " 2>" .. shquote(dir .. "/err") .. "; echo \"rc=$?\""
  local p = assert(io.popen(line))
  local res = p:read("*a")
  p:close()
  local rc = tonumber(res:match("rc=(%d+)"))
  local out, err = readfile(dir .. "/out") or "", readfile(dir .. "/err") or ""
  rmtree(dir)
  return rc, out, err
end

-- Write a file into a fresh temp dir (for --check tests); returns path and a
-- cleanup function.
function M.temp_script(source, name)
  local dir = mktempdir()
  local path = dir .. "/" .. (name or "app.lua")
  writefile(path, source)
  return path, function() rmtree(dir) end
end

---------------------------------------------------------------------------
-- Raw HTTP client
---------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

-- helper.connect(port [, timeout]) -> conn   (raises on failure)
function M.connect(port, timeout)
  local c, err = M.try_connect(port, timeout)
  if not c then error("connect to 127.0.0.1:" .. tostring(port) .. " failed: " .. tostring(err), 2) end
  return c
end

function M.try_connect(port, timeout)
  local s = socket.tcp()
  s:settimeout(timeout or M.IO_TIMEOUT)
  local ok, err = s:connect("127.0.0.1", port)
  if not ok then s:close() return nil, err end
  s:setoption("tcp-nodelay", true)
  s:settimeout(0)
  return setmetatable({ sock = s, buf = "", closed = false, timeout = timeout or M.IO_TIMEOUT }, Conn)
end

-- Send all of `data` (bounded).  Returns true or nil, err.
function Conn:send(data, timeout)
  local deadline = now() + (timeout or self.timeout)
  local i = 1
  while i <= #data do
    local remaining = deadline - now()
    if remaining <= 0 then return nil, "timeout" end
    local _, w, serr = socket.select(nil, { self.sock }, remaining)
    if serr == "timeout" then return nil, "timeout" end
    local last, err, partial = self.sock:send(data, i)
    if last then
      i = last + 1
    elseif err == "timeout" then
      i = (partial or i - 1) + 1
    else
      return nil, err
    end
  end
  return true
end

-- Like send but raises on failure.
function Conn:write(data, timeout)
  local ok, err = self:send(data, timeout)
  if not ok then error("send failed: " .. tostring(err), 2) end
  return true
end

-- Send `data` one byte at a time with `delay` seconds between bytes.
function Conn:send_slowly(data, delay)
  for i = 1, #data do
    local ok, err = self:send(data:sub(i, i))
    if not ok then return nil, err end
    socket.sleep(delay)
  end
  return true
end

-- Pull more bytes into self.buf.  Returns true, or nil + "timeout"|"closed"|err.
function Conn:fill(deadline)
  if self.closed then return nil, "closed" end
  while true do
    local remaining = deadline - now()
    if remaining <= 0 then return nil, "timeout" end
    local r, _, serr = socket.select({ self.sock }, nil, remaining)
    if serr == "timeout" then return nil, "timeout" end
    local data, err, partial = self.sock:receive(65536)
    local got = data or partial
    if got and #got > 0 then
      self.buf = self.buf .. got
      self.last_recv = now()
      return true
    end
    if err and err ~= "timeout" then
      self.closed = true
      self.close_reason = err   -- "closed" (FIN) or e.g. "connection reset by peer"
      return nil, "closed"
    end
  end
end

-- Read bytes up to and including `delim`.  Returns string (without delim) or nil, err.
function Conn:read_until(delim, deadline, limit)
  limit = limit or 1024 * 1024
  local from = 1
  while true do
    local s, e = self.buf:find(delim, from, true)
    if s then
      local out = self.buf:sub(1, s - 1)
      self.buf = self.buf:sub(e + 1)
      return out
    end
    if #self.buf > limit then return nil, "line too long" end
    from = math.max(1, #self.buf - #delim + 2)
    local ok, err = self:fill(deadline)
    if not ok then return nil, err end
  end
end

-- Read exactly n bytes.
function Conn:read_n(n, deadline)
  if #self.buf >= n then
    local out = self.buf:sub(1, n)
    self.buf = self.buf:sub(n + 1)
    return out
  end
  local parts, have = { self.buf }, #self.buf
  self.buf = ""
  while have < n do
    local ok, err = self:fill(deadline)
    if not ok then return nil, err, table.concat(parts) end
    parts[#parts + 1] = self.buf
    have = have + #self.buf
    self.buf = ""
  end
  local all = table.concat(parts)
  self.buf = all:sub(n + 1)
  return all:sub(1, n)
end

-- Read until the peer closes.
function Conn:read_to_close(deadline)
  local parts = { self.buf }
  self.buf = ""
  while true do
    local ok, err = self:fill(deadline)
    if not ok then
      if err == "closed" then break end
      return nil, err, table.concat(parts)
    end
    parts[#parts + 1] = self.buf
    self.buf = ""
  end
  return table.concat(parts)
end

-- Read whatever arrives within `timeout` seconds (for negative checks).
-- Returns the bytes read so far ("" if none) and whether the peer closed.
function Conn:read_available(timeout)
  local deadline = now() + timeout
  while true do
    local ok = self:fill(deadline)
    if not ok then break end
  end
  local out = self.buf
  self.buf = ""
  return out, self.closed
end

-- read_response(opts) -> res | nil, err, partial_res
--   opts.method   "HEAD" => no body expected
--   opts.timeout  seconds for the whole response (default conn timeout)
-- res = { version, status, reason, headers (lowercased name -> value; repeated
--         names joined with ", "), header_list = {{name, value}...}, raw_head,
--         body, chunked (bool), chunk_sizes = {...}, chunk_times = {...},
--         trailers, t_head (time head complete), t_done }
function Conn:read_response(opts)
  opts = opts or {}
  local deadline = now() + (opts.timeout or self.timeout)
  local head, err = self:read_until("\r\n\r\n", deadline, opts.head_limit)
  if not head then
    return nil, "reading head: " .. tostring(err) .. (#self.buf > 0 and (" (got " .. ("%q"):format(self.buf) .. ")") or "")
  end
  local res = { raw_head = head, headers = {}, header_list = {}, t_head = now() }
  local status_line, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
  local version, status, reason = status_line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
  if not version then
    return nil, "bad status line: " .. ("%q"):format(status_line), res
  end
  res.version, res.status, res.reason, res.status_line = version, tonumber(status), reason, status_line
  for line in (rest .. "\r\n"):gmatch("(.-)\r\n") do
    if line ~= "" then
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if not name then return nil, "bad header line: " .. ("%q"):format(line), res end
      local lname = name:lower()
      res.header_list[#res.header_list + 1] = { name, value }
      if res.headers[lname] then
        res.headers[lname] = res.headers[lname] .. ", " .. value
      else
        res.headers[lname] = value
      end
    end
  end
  local st = res.status
  if opts.method == "HEAD" or (st >= 100 and st < 200) or st == 204 or st == 304 then
    res.body = ""
    res.t_done = now()
    return res
  end
  local te = res.headers["transfer-encoding"]
  if te and te:lower():find("chunked", 1, true) then
    res.chunked = true
    res.chunk_sizes, res.chunk_times = {}, {}
    local parts = {}
    while true do
      local line, lerr = self:read_until("\r\n", deadline)
      if not line then
        res.body = table.concat(parts)
        return nil, "reading chunk size: " .. tostring(lerr), res
      end
      local hex = line:match("^(%x+)")
      if not hex then
        res.body = table.concat(parts)
        return nil, "bad chunk size line: " .. ("%q"):format(line), res
      end
      local size = tonumber(hex, 16)
      if size == 0 then break end
      local data, derr = self:read_n(size, deadline)
      if not data then
        res.body = table.concat(parts)
        return nil, "reading chunk data: " .. tostring(derr), res
      end
      parts[#parts + 1] = data
      res.chunk_sizes[#res.chunk_sizes + 1] = size
      res.chunk_times[#res.chunk_times + 1] = now()
      local crlf, cerr = self:read_n(2, deadline)
      if crlf ~= "\r\n" then
        res.body = table.concat(parts)
        return nil, "missing CRLF after chunk data: " .. tostring(crlf or cerr), res
      end
    end
    res.body = table.concat(parts)
    res.trailers = {}
    while true do
      local line, lerr = self:read_until("\r\n", deadline)
      if not line then return nil, "reading trailers: " .. tostring(lerr), res end
      if line == "" then break end
      res.trailers[#res.trailers + 1] = line
    end
  elseif res.headers["content-length"] then
    local n = tonumber(res.headers["content-length"])
    if not n then return nil, "bad content-length", res end
    local body, berr, partial = self:read_n(n, deadline)
    if not body then
      res.body = partial
      return nil, ("reading body (%d bytes): %s, got %d"):format(n, tostring(berr), #(partial or "")), res
    end
    res.body = body
  else
    local body, berr, partial = self:read_to_close(deadline)
    if not body then
      res.body = partial
      return nil, "reading body to close: " .. tostring(berr), res
    end
    res.body = body
    res.until_close = true
  end
  res.t_done = now()
  return res
end

-- Like read_response but raises (with context) on failure.
function Conn:response(opts)
  local res, err = self:read_response(opts)
  if not res then error("no complete response: " .. tostring(err), 2) end
  return res
end

-- Wait (bounded) for the peer to close the connection with no further data.
-- Returns true, or false + description.
function Conn:expect_closed(timeout)
  local deadline = now() + (timeout or self.timeout)
  while true do
    if #self.buf > 0 then
      return false, "unexpected data: " .. ("%q"):format(self.buf:sub(1, 200))
    end
    local ok, err = self:fill(deadline)
    if not ok then
      if err == "closed" then
        if #self.buf > 0 then
          return false, "unexpected data before close: " .. ("%q"):format(self.buf:sub(1, 200))
        end
        return true
      end
      return false, "connection still open after " .. tostring(timeout or self.timeout) .. "s"
    end
  end
end

function Conn:close()
  if self.sock then self.sock:close() end
  self.closed = true
end

-- Close with RST instead of FIN (SO_LINGER 0).
function Conn:abort()
  pcall(self.sock.setoption, self.sock, "linger", { on = true, timeout = 0 })
  self:close()
end

---------------------------------------------------------------------------
-- Request builders and one-shot helpers
---------------------------------------------------------------------------

-- helper.request(method, path, headers, body, version) -> raw request string.
-- headers: list of {name, value} or map name->value.  Host is added unless
-- present; Content-Length is added for a body unless a
-- Transfer-Encoding/Content-Length header is given.
function M.request(method, path, headers, body, version)
  version = version or "1.1"
  local lines = { ("%s %s HTTP/%s"):format(method, path, version) }
  local list = {}
  if headers then
    if headers[1] then
      for _, h in ipairs(headers) do list[#list + 1] = h end
    else
      local names = {}
      for k in pairs(headers) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do list[#list + 1] = { k, headers[k] } end
    end
  end
  local has = {}
  for _, h in ipairs(list) do has[h[1]:lower()] = true end
  if not has.host then table.insert(list, 1, { "Host", "localhost" }) end
  if body and not has["content-length"] and not has["transfer-encoding"] then
    list[#list + 1] = { "Content-Length", tostring(#body) }
  end
  for _, h in ipairs(list) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- Complete response in buf? -> res | nil (incomplete) | false, err
function M.parse_response(buf)
  local hend = buf:find("\r\n\r\n", 1, true)
  if not hend then return nil end
  local head = buf:sub(1, hend - 1)
  local status = head:match("^HTTP/1%.%d (%d%d%d)")
  if not status then return false, "bad status line: " .. head:sub(1, 80) end
  local res = { status = tonumber(status), headers = {}, header_list = {}, raw_head = head }
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    res.headers[name:lower()] = value
    res.header_list[#res.header_list + 1] = { name, value }
  end
  local rest = buf:sub(hend + 4)
  local cl = res.headers["content-length"]
  if cl then
    cl = tonumber(cl)
    if #rest < cl then return nil end
    res.body = rest:sub(1, cl)
    return res
  end
  if (res.headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    local parts, pos = {}, 1
    while true do
      local le = rest:find("\r\n", pos, true)
      if not le then return nil end
      local size = tonumber(rest:sub(pos, le - 1):match("^%x+") or "", 16)
      if not size then return false, "bad chunk size line" end
      if size == 0 then
        if #rest < le + 3 then return nil end
        res.body = table.concat(parts)
        return res
      end
      if #rest < le + 2 + size + 1 then return nil end
      parts[#parts + 1] = rest:sub(le + 2, le + 1 + size)
      pos = le + 2 + size + 2
    end
  end
  return false, "response without framing"
end

-- n connections, all connected first, then one GET each (with `headers`,
-- see M.request), responses read in parallel (select).  Returns
-- results[i] = res (with .latency) or { err = ... }.
function M.burst(port, n, path, timeout, headers)
  local conns, by_sock, results = {}, {}, {}
  local ok, err = pcall(function()
    for i = 1, n do
      conns[i] = M.connect(port, 5)
      by_sock[conns[i].sock] = i
    end
  end)
  if not ok then
    for _, c in pairs(conns) do c:close() end
    error("connecting " .. n .. " clients: " .. tostring(err), 2)
  end
  local req = M.request("GET", path, headers)
  local t_send, pending = {}, {}
  for i = 1, n do
    t_send[i] = now()
    assert(conns[i]:send(req))
    pending[i] = true
  end
  local left = n
  local deadline = now() + timeout
  while left > 0 and now() < deadline do
    local socks = {}
    for i in pairs(pending) do socks[#socks + 1] = conns[i].sock end
    local readable = socket.select(socks, nil, math.min(0.5, deadline - now()))
    for _, s in ipairs(readable or {}) do
      local i = by_sock[s]
      local c = conns[i]
      local data, rerr, partial = s:receive(65536)
      local got = data or partial
      if got and #got > 0 then c.buf = c.buf .. got end
      local res, perr = M.parse_response(c.buf)
      if res then
        res.latency = now() - t_send[i]
        results[i] = res
      elseif res == false then
        results[i] = { err = perr }
      elseif rerr and rerr ~= "timeout" then
        results[i] = { err = "closed after " .. #c.buf .. " bytes: " .. rerr }
      end
      if results[i] then
        pending[i] = nil
        left = left - 1
      end
    end
  end
  for i in pairs(pending) do results[i] = { err = "timeout after " .. #conns[i].buf .. " bytes" } end
  for _, c in ipairs(conns) do c:close() end
  return results
end

-- Encode a list of strings as a chunked body (with the terminating chunk).
function M.chunked(parts, trailer)
  local out = {}
  for _, p in ipairs(parts) do
    if #p > 0 then out[#out + 1] = ("%x\r\n%s\r\n"):format(#p, p) end
  end
  out[#out + 1] = "0\r\n" .. (trailer or "") .. "\r\n"
  return table.concat(out)
end

-- One request on a fresh connection; returns response (raises on failure).
function M.get(port, path, headers)
  local c = M.connect(port)
  c:write(M.request("GET", path, headers))
  local res, err = c:read_response()
  c:close()
  if not res then error("GET " .. path .. ": " .. tostring(err), 2) end
  return res
end

-- Run curl (bounded).  Returns exit code, stdout.
function M.curl(args, timeout)
  local cmd = { "curl", "-sS", "--max-time", tostring(timeout or 5) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = shquote(a) end
  local p = assert(io.popen(table.concat(cmd, " ") .. " 2>&1; echo \"\nrc=$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.*)\nrc=(%d+)\n?$")
  return tonumber(rc), body
end

-- Deterministic pseudo-random-ish payload of n bytes (detects reordering).
function M.payload(n, seed)
  local parts, len, i = {}, 0, 0
  seed = seed or "x"
  while len < n do
    local s = ("%s%08d\n"):format(seed, i)
    parts[#parts + 1] = s
    len = len + #s
    i = i + 1
  end
  return table.concat(parts):sub(1, n)
end

-- Lua source (for server scripts) of the same payload function.
M.PAYLOAD_LUA = [[
local function payload(n, seed)
  local parts, len, i = {}, 0, 0
  seed = seed or "x"
  while len < n do
    local s = ("%s%08d\n"):format(seed, i)
    parts[#parts + 1] = s
    len = len + #s
    i = i + 1
  end
  return table.concat(parts):sub(1, n)
end
]]

-- Human-readable short description of a body mismatch.
function M.diff(expected, actual)
  if expected == actual then return "equal" end
  if actual == nil then return "actual is nil" end
  local n = math.min(#expected, #actual)
  for i = 1, n do
    if expected:byte(i) ~= actual:byte(i) then
      return ("lengths %d/%d, first difference at byte %d: expected %q got %q")
        :format(#expected, #actual, i, expected:sub(i, i + 20), actual:sub(i, i + 20))
    end
  end
  return ("lengths differ: expected %d got %d"):format(#expected, #actual)
end

return M
