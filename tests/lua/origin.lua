-- A real nginx (Debian's /usr/sbin/nginx) as the origin server of the cache
-- specs.  It runs in the foreground as one process (daemon off,
-- master_process off) on a free 127.0.0.1 port, with a generated config,
-- document root, pid file, error log and access log in a fresh temp dir.
-- ngx_http_echo_module (echo, echo_flush, echo_sleep) is loaded for slow and
-- streamed responses.  Every wait is bounded; a watchdog SIGKILLs nginx if
-- the test process disappears, so an aborted run does not leak it.
--
--   local origin = require "origin"
--   local o = origin.start{
--     locations = [[ location /slow/ { echo_sleep 0.3; echo "hi"; } ]],
--     files = { ["files/a.txt"] = "hello\n" },   -- relative to the root
--   }
--   o:port(), o:url(), o:root(), o:dir()
--   o:count("/slow/x")      -- access-log lines whose request URI is exactly that
--   o:log_entries()         -- { {uri=, status=, conn=, conn_requests=, bytes=}, ... }
--   o:kill()                -- SIGKILL (connections die mid-response)
--   o:restart{ locations = ... }  -- start again on the same port (new config optional)
--   o:stop()                -- SIGTERM, bounded wait, SIGKILL; removes the temp dir
--   origin.stop_all()       -- stop every nginx started here (use in teardown)
local socket = require "socket"
local helper = require "helper"

local M = {}

M.NGINX = os.getenv("NGINX_BIN") or "/usr/sbin/nginx"
M.ECHO_MODULE = os.getenv("NGINX_ECHO_MODULE") or "/usr/lib/nginx/modules/ngx_http_echo_module.so"
M.START_TIMEOUT = 5
M.STOP_TIMEOUT = 3

local shquote, readfile, writefile = helper.shquote, helper.readfile, helper.writefile
local now = socket.gettime

local CONF = [[
load_module @ECHO@;
daemon off;
master_process off;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log info;
events { worker_connections 4096; }
http {
  log_format luring_test '$request_uri $status $connection $connection_requests $body_bytes_sent';
  access_log @DIR@/access.log luring_test;
  client_body_temp_path @DIR@/tmp/body;
  proxy_temp_path @DIR@/tmp/proxy;
  fastcgi_temp_path @DIR@/tmp/fastcgi;
  uwsgi_temp_path @DIR@/tmp/uwsgi;
  scgi_temp_path @DIR@/tmp/scgi;
  default_type application/octet-stream;
  types { text/plain txt; text/html html; application/octet-stream bin; }
  sendfile on;
  tcp_nodelay on;
  keepalive_timeout 60s;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:@PORT@;
    server_name localhost;
    root @DIR@/www;
@LOCATIONS@
  }
}
]]

local Nginx = {}
Nginx.__index = Nginx

local live = {}

local function mkdir_p(path)
  os.execute("mkdir -p " .. shquote(path))
end

-- Write files (name relative to the root -> content).
function Nginx:add_files(files)
  for name, data in pairs(files or {}) do
    local path = self._dir .. "/www/" .. name
    mkdir_p(path:match("^(.*)/[^/]*$"))
    writefile(path, data)
  end
  os.execute("chmod -R a+rX " .. shquote(self._dir .. "/www"))
end

function Nginx:_write_conf()
  local conf = CONF:gsub("@ECHO@", M.ECHO_MODULE):gsub("@DIR@", self._dir)
    :gsub("@PORT@", tostring(self._port))
  conf = conf:gsub("@LOCATIONS@", function() return self._locations or "" end)
  writefile(self._dir .. "/nginx.conf", conf)
end

function Nginx:_spawn()
  local d = self._dir
  self._rc = nil
  self._pid = helper.spawn(d, { M.NGINX, "-p", d, "-e", d .. "/error.log",
                                "-c", d .. "/nginx.conf" })
  local deadline = now() + M.START_TIMEOUT
  while now() < deadline do
    if not self:alive() then break end
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", self._port)
    c:close()
    if ok then return true end
    socket.sleep(0.02)
  end
  local err = ("nginx did not become ready on 127.0.0.1:%d (exit status %s)\n--- error.log ---\n%s\n--- stderr ---\n%s")
    :format(self._port, tostring(self:exit_code()), readfile(d .. "/error.log") or "",
            readfile(d .. "/stderr") or "")
  self:stop()
  error(err, 3)
end

-- origin.start{ locations = "nginx location blocks", files = {name = data},
--               port = n (default: a free one) } -> nginx
function M.start(opts)
  opts = opts or {}
  local dir = helper.mktempdir()
  os.execute("chmod 755 " .. shquote(dir))
  for _, sub in ipairs({ "www", "tmp", "logs" }) do mkdir_p(dir .. "/" .. sub) end
  local self = setmetatable({ _dir = dir, _port = opts.port or helper.free_port(),
                              _locations = opts.locations }, Nginx)
  writefile(dir .. "/access.log", "")
  self:add_files(opts.files)
  self:_write_conf()
  live[self] = true
  self:_spawn()
  return self
end

function Nginx:port() return self._port end
function Nginx:url() return "http://127.0.0.1:" .. self._port end
function Nginx:dir() return self._dir end
function Nginx:root() return self._dir .. "/www" end
function Nginx:pid() return self._pid end

function Nginx:exit_code()
  if self._rc then return self._rc end
  local s = readfile(self._dir .. "/rc")
  if s and s:match("%d") then
    self._rc = tonumber(s:match("%d+"))
    return self._rc
  end
  return nil
end

function Nginx:alive() return self._pid ~= nil and self:exit_code() == nil end

function Nginx:error_log()
  return self._error_log_text or readfile(self._dir .. "/error.log") or ""
end

function Nginx:access_log()
  return self._access_log_text or readfile(self._dir .. "/access.log") or ""
end

-- Parsed access log: one entry per request nginx finished.
function Nginx:log_entries()
  local out = {}
  for line in self:access_log():gmatch("[^\n]+") do
    local uri, status, conn, creq, bytes = line:match("^(%S+) (%d+) (%d+) (%d+) (%d+)$")
    if uri then
      out[#out + 1] = { uri = uri, status = tonumber(status), conn = tonumber(conn),
                        conn_requests = tonumber(creq), bytes = tonumber(bytes) }
    end
  end
  return out
end

-- Number of requests for exactly this URI in the access log.
function Nginx:count(uri)
  local n = 0
  for _, e in ipairs(self:log_entries()) do
    if e.uri == uri then n = n + 1 end
  end
  return n
end

-- Wait (bounded) until the access log has at least n requests for uri, then
-- a further `settle` seconds so that a late extra request would show up too.
-- Returns the final count.
function Nginx:wait_count(uri, n, timeout, settle)
  helper.wait_until(function() return self:count(uri) >= n end, timeout or 3, 0.02)
  if settle and settle > 0 then socket.sleep(settle) end
  return self:count(uri)
end

function Nginx:_wait_exit(timeout)
  return helper.wait_until(function() return not self:alive() end, timeout, 0.01)
end

-- SIGKILL now: established connections are torn down by the kernel.
function Nginx:kill()
  if self:alive() then
    os.execute("kill -KILL " .. math.floor(self._pid) .. " 2>/dev/null")
    self:_wait_exit(3)
  end
end

-- Start again on the same port, optionally with new locations / files.
function Nginx:restart(opts)
  opts = opts or {}
  if self:alive() then self:kill() end
  if opts.locations then self._locations = opts.locations end
  self:add_files(opts.files)
  self:_write_conf()
  self:_spawn()
end

-- SIGTERM (fast shutdown), bounded wait, SIGKILL. Removes the temp dir
-- (logs are kept in memory for later inspection).  Idempotent.
function Nginx:stop()
  if self._stopped then return end
  self._stopped = true
  live[self] = nil
  if self:alive() then
    os.execute("kill -TERM " .. math.floor(self._pid) .. " 2>/dev/null")
    if not self:_wait_exit(M.STOP_TIMEOUT) then
      os.execute("kill -KILL " .. math.floor(self._pid) .. " 2>/dev/null")
      self:_wait_exit(3)
    end
  end
  self._error_log_text = readfile(self._dir .. "/error.log") or ""
  self._access_log_text = readfile(self._dir .. "/access.log") or ""
  if self._dir:match("^/tmp/luring%-test%.") then
    os.execute("rm -rf " .. shquote(self._dir))
  end
end

function M.stop_all()
  local list = {}
  for o in pairs(live) do list[#list + 1] = o end
  for _, o in ipairs(list) do o:stop() end
end

-- A spec's teardown: every luring, then every nginx.
M.teardown = helper.teardown_with(M.stop_all)

return M
