-- A listening address belongs to one luring process (issue 13, point 5):
-- the workers of one process share it (SO_REUSEPORT among themselves), but
-- a second luring, or any other program already listening there (even one
-- that set SO_REUSEPORT itself), makes the new one fail at start-up with
-- "Address already in use" instead of silently taking part of the traffic.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/", function(req) return 200, {}, "first" end)
]]

local function second(port, workers)
  local path, clean = helper.temp_script([[
local app = luring.app()
app:listen("127.0.0.1:1")
app:get("/", function(req) return 200, {}, "second" end)
]])
  local rc, _, err = helper.run({ "--workers", tostring(workers), "--listen",
    "127.0.0.1:" .. port, path }, 10)
  clean()
  return rc, err
end

describe("listeners are exclusive to one process", function()
  after_each(function() helper.stop_all() end)

  for _, first_w in ipairs({ 1, 2 }) do
    for _, second_w in ipairs({ 1, 2 }) do
      it(("a second luring (--workers %d) on the address of a running one "
          .. "(--workers %d) exits with 'Address already in use'")
          :format(second_w, first_w), function()
        local srv = helper.start(SCRIPT, { args = { "--workers", tostring(first_w) } })
        local rc, err = second(srv:port(), second_w)
        assert.are_not.equal(0, rc)
        assert.truthy(err:find("Address already in use", 1, true), err)
        -- every request still reaches the first one
        for _ = 1, 20 do
          local res = helper.get(srv:port(), "/")
          assert.are.equal("first", res.body)
        end
      end)
    end
  end

  it("another program's SO_REUSEPORT listener makes --workers 2 fail", function()
    local port = helper.free_port()
    local dir = helper.mktempdir()
    local pid = helper.spawn(dir, { "python3", "-c", ([[
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", %d))
s.listen(8)
open(%q, "w").write("ready")
time.sleep(20)
]]):format(port, dir .. "/ready") })
    assert.truthy(helper.wait_until(function()
      return helper.readfile(dir .. "/ready") end, 5), "python listener not ready")
    local rc, err = second(port, 2)
    os.execute("kill " .. pid)
    assert.are_not.equal(0, rc)
    assert.truthy(err:find("Address already in use", 1, true), err)
  end)

  it("the workers of one process share the address (--workers 4)", function()
    local srv = helper.start(SCRIPT, { args = { "--workers", "4" } })
    local conns = {}
    for i = 1, 40 do
      conns[i] = helper.connect(srv:port())
      conns[i]:write(helper.request("GET", "/"))
    end
    for i = 1, 40 do
      assert.are.equal("first", conns[i]:response().body)
      conns[i]:close()
    end
  end)

  it("port 0 with --workers 2: one port, logged as bound", function()
    local path, clean = helper.temp_script(SCRIPT:gsub("@LISTEN@", "127.0.0.1:0"))
    local dir = helper.mktempdir()
    local pid = helper.spawn(dir, { helper.BIN, "--workers", "2", path })
    local port = helper.wait_until(function()
      local log = helper.readfile(dir .. "/stderr") or ""
      return tonumber(log:match("listening on 127%.0%.0%.1:(%d+)"))
    end, 10)
    os.execute("kill " .. pid)
    clean()
    assert.is_not_nil(port, "no 'listening on 127.0.0.1:<port>' line")
    assert.are_not.equal(0, port)
  end)
end)
