-- An origin whose response does not match its own framing (the hardening
-- issue, point 4): bytes beyond the announced Content-Length are never
-- read as the next response, the response is not cached, and the
-- connection is not reused (RFC 9112 §6.3: the length ends the message;
-- what follows on the connection is not part of it).
local helper = require "helper"
local raw = require "raw_origin"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@", keepalive = 8 }
local c = luring.cache{ name = "c", ttl = 60 }
app:get("/c/*", function(req)
  local key = req.path:match("^/c(/.*)$")
  return c:fetch(req, key, o)
end)
app:get("/ostats", function(req)
  local s = o:stats()
  return ("connects=%d reused=%d"):format(s.connects, s.reused)
end)
]]

describe("origin responses longer than their framing", function()
  local srv, rawo
  lazy_setup(function()
    rawo = raw.start{ delay = 0, responses = {
      -- Content-Length 5, then a whole forged response in the same send
      extra = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\n"
        .. "hello" .. "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
      plain = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {len}\r\n\r\nplain {id}",
    } }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", rawo:url())))
  end)
  lazy_teardown(raw.teardown)

  it("the response goes out whole, is not cached, and the extra bytes are never a response", function()
    for i = 1, 3 do
      local r = helper.get(srv:port(), "/c/extra")
      assert.are.equal(200, r.status)
      assert.are.equal("hello", r.body)
      assert.are.equal("MISS", r.headers["x-cache"], "round " .. i)
    end
    assert.are.equal(3, rawo:count("/extra"))
    -- the next key gets its own response, not the forged one
    local r = helper.get(srv:port(), "/c/plain")
    assert.truthy(r.body:match("^plain %d+$"), r.body)
    assert.are.equal("HIT", helper.get(srv:port(), "/c/plain").headers["x-cache"])
    assert.truthy(srv:wait_stderr("beyond the response's framing", 2))
  end)

  it("a connection that carried extra bytes is never reused", function()
    -- a server of its own, so the origin pool starts empty
    local srv2 = helper.start((SCRIPT:gsub("@ORIGIN@", rawo:url())))
    helper.get(srv2:port(), "/c/extra")
    helper.get(srv2:port(), "/c/plain3")
    helper.get(srv2:port(), "/c/plain4")
    local st = helper.get(srv2:port(), "/ostats").body
    -- extra: a connection, closed; plain3: a new one, pooled; plain4 reuses it
    assert.are.equal("connects=2 reused=1", st)
    assert.is_true(srv2:alive())
    assert.is_nil(helper.crash_report(srv2:stderr()))
  end)
end)
