-- Command line: --check, missing script, bind failure, --version/--help.
local helper = require "helper"
local socket = require "socket"

local GOOD = [[
luring.config{ max_connections = 100 }
local app = luring.app()
app:listen("127.0.0.1:%d")
app:get("/", function(req) return "ok" end)
]]

describe("command line", function()
  local cleanups = {}

  local function script(src, name)
    local path, cleanup = helper.temp_script(src, name)
    cleanups[#cleanups + 1] = cleanup
    return path
  end

  after_each(function()
    for _, f in ipairs(cleanups) do f() end
    cleanups = {}
    helper.stop_all()
  end)

  it("--check exits 0 for a good script without starting to listen", function()
    -- occupy the port the script listens on: --check must not bind it
    local blocker = assert(socket.bind("127.0.0.1", 0))
    local _, port = blocker:getsockname()
    local path = script(GOOD:format(port))
    local rc, out, err = helper.run({ "--check", path }, 10)
    blocker:close()
    assert.are.equal(0, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
  end)

  it("--check exits 1 with a message for a syntax error", function()
    local path = script("local app = luring.app(\napp:get('/', function(req) return 'x' end\n", "broken.lua")
    local rc, out, err = helper.run({ "--check", path }, 10)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(err:find("broken.lua", 1, true), "message does not name the script:\n" .. err)
  end)

  it("--check exits 1 for a script raising an error at load time", function()
    local path = script("error('load-time failure xyz')\n", "raises.lua")
    local rc, out, err = helper.run({ "--check", path }, 10)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(err:find("load-time failure xyz", 1, true), err)
  end)

  it("--check exits 1 for an invalid config option", function()
    local path = script("luring.config{ no_such_option = 1 }\n", "badcfg.lua")
    local rc, out, err = helper.run({ "--check", path }, 10)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(#err > 0, "no message")
  end)

  it("--check exits 1 for an access log it cannot open, as a start would (nginx -t)", function()
    -- a directory that does not exist, and a path under a regular file
    -- (ENOTDIR even for root): both fail the start, so --check says so
    local path = script(GOOD:format(1) .. 'luring.access_log{ path = "/nonexistent/dir/a.log" }\n')
    local rc, out, err = helper.run({ "--check", path }, 10)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(err:find("cannot open /nonexistent/dir/a.log", 1, true), err)
    path = script(GOOD:format(1) .. ('luring.access_log{ path = %q }\n'):format(path .. "/a.log"))
    rc, out, err = helper.run({ "--check", path }, 10)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(err:find("Not a directory", 1, true), err)
    -- a path it can open passes; stderr needs no file
    local dir = path:match("^(.*)/[^/]*$")
    path = script(GOOD:format(1) .. ('luring.access_log{ path = %q }\n'):format(dir .. "/ok.log"))
    rc, out, err = helper.run({ "--check", path }, 10)
    assert.are.equal(0, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    path = script(GOOD:format(1) .. 'luring.access_log{ path = "stderr" }\n')
    rc, out, err = helper.run({ "--check", path }, 10)
    assert.are.equal(0, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    -- a FIFO no one reads yet (a log shipper started later): --check
    -- does not wait for a reader
    local fifo = dir .. "/pipe.log"
    assert.is_true(os.execute("mkfifo " .. helper.shquote(fifo)) == 0)
    path = script(GOOD:format(1) .. ('luring.access_log{ path = %q }\n'):format(fifo))
    rc, out, err = helper.run({ "--check", path }, 5)
    assert.are.equal(0, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
  end)

  it("a missing script file exits 1 with a message", function()
    local rc, out, err = helper.run({ "/nonexistent/dir/missing_script.lua" }, 10)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(err:find("missing_script.lua", 1, true), "message does not name the file:\n" .. err)
  end)

  it("--check on a missing script file exits 1 with a message", function()
    local rc, out, err = helper.run({ "--check", "/nonexistent/dir/missing_script.lua" }, 10)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(#err > 0, "no message on stderr")
  end)

  it("a syntax error without --check exits 1 with a message", function()
    local path = script("this is not lua\n", "notlua.lua")
    local rc, out, err = helper.run({ "--listen", "127.0.0.1:" .. helper.free_port(), path }, 10)
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(err:find("notlua.lua", 1, true), err)
  end)

  it("a bind failure exits 1 with a message", function()
    local blocker = assert(socket.bind("127.0.0.1", 0))
    local _, port = blocker:getsockname()
    local path = script(GOOD:format(port))
    local rc, out, err = helper.run({ path }, 10)
    blocker:close()
    assert.are.equal(1, rc, "stdout:\n" .. out .. "\nstderr:\n" .. err)
    assert.truthy(#err > 0, "no message on stderr")
  end)

  it("the script's own listen address is used without --listen", function()
    local port = helper.free_port()
    local srv = helper.start(GOOD:format(port), { listen = false, port = port })
    assert.truthy(srv:wait_stderr("listening on 127.0.0.1:" .. port, 2), srv:stderr())
    assert.are.equal("ok", helper.get(port, "/").body)
  end)

  it("--version exits 0 and prints something", function()
    local rc, out, err = helper.run({ "--version" }, 10)
    assert.are.equal(0, rc, err)
    assert.truthy(#(out .. err) > 0)
  end)

  it("--help exits 0 and mentions --check", function()
    local rc, out, err = helper.run({ "--help" }, 10)
    assert.are.equal(0, rc, err)
    assert.truthy((out .. err):find("--check", 1, true), out .. err)
  end)

  it("no script argument exits non-zero", function()
    local rc, out, err = helper.run({}, 10)
    assert.is_not.equal(0, rc)
    assert.truthy(#err > 0, "no message on stderr")
  end)
end)
