-- An origin that sends exact bytes (tests/lua/raw_origin.py), for responses
-- nginx can't be made to send: odd field names, interim responses,
-- malformed Cache-Control.  Runs under helper.lua's runner (pid published,
-- killed if the test process goes away).
--
--   local raw = require "raw_origin"
--   local o = raw.start{ responses = { name = "HTTP/1.1 200 OK\r\n...\r\n\r\nbody {id}" },
--                        delay = 0.3 }
--   o:url()            "http://127.0.0.1:PORT"
--   o:count("/name")   requests whose path (without query) was /name
--   o:connections()    connections accepted so far
--   o:stop()
local helper = require "helper"
local socket = require "socket"

local M = {}
local Raw = {}
Raw.__index = Raw

local shquote, writefile, readfile = helper.shquote, helper.writefile, helper.readfile
local live = {}

local function script_path()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  return (src:match("^(.*)/[^/]*$") or ".") .. "/raw_origin.py"
end

function M.start(opts)
  local self = setmetatable({ _dir = helper.mktempdir(), _port = helper.free_port() }, Raw)
  for name, bytes in pairs(opts.responses) do
    writefile(self._dir .. "/" .. name .. ".http", bytes)
  end
  writefile(self._dir .. "/delay", tostring(opts.delay or 0.3))
  local d = self._dir
  self._pid = helper.spawn(d, { "python3", script_path(), tostring(self._port), d })
  live[#live + 1] = self
  local ok = helper.wait_until(function()
    local c = socket.tcp()
    c:settimeout(0.2)
    local r = c:connect("127.0.0.1", self._port)
    c:close()
    return r
  end, 5)
  assert(ok, "raw_origin.py did not listen: " .. (readfile(d .. "/stderr") or ""))
  return self
end

function Raw:url() return "http://127.0.0.1:" .. self._port end

function Raw:count(path)
  local n = 0
  for line in (readfile(self._dir .. "/requests.log") or ""):gmatch("[^\n]+") do
    if line:match("^[^?]*") == path then n = n + 1 end
  end
  return n
end

function Raw:connections()
  local _, n = (readfile(self._dir .. "/connections.log") or ""):gsub("\n", "")
  return n
end

function Raw:stop()
  if self._pid then
    os.execute("kill -KILL " .. math.floor(self._pid) .. " 2>/dev/null")
    self._pid = nil
  end
  if self._dir:match("^/tmp/luring%-test%.") then
    os.execute("rm -rf " .. shquote(self._dir))
  end
end

function M.stop_all()
  for _, o in ipairs(live) do o:stop() end
  live = {}
end

-- A spec's teardown: every luring, then every origin started here.
M.teardown = helper.teardown_with(M.stop_all)

return M
