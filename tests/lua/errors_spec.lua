-- Protocol errors: 400, 408, 413, 414, 431, 501, 505 -- each followed by the
-- connection being closed (and announced with Connection: close).
local helper = require "helper"

local SCRIPT = [[
luring.config{
  max_header_size = 1024,
  max_uri_size    = 2048,
  max_body_size   = 1024,
  header_timeout  = 0.5,
}
local app = luring.app()
app:listen("@LISTEN@")
app:get("/", function(req) return 200, nil, "ok" end)
app:get("/*", function(req) return 200, nil, "len=" .. #req.path end)
app:post("/echo", function(req) return 200, nil, req:body() end)
]]

-- Send raw bytes on a fresh connection, expect `status`, then close.
local function expect_error(port, raw, status, opts)
  opts = opts or {}
  local c = helper.connect(port)
  local t0 = helper.now()
  local ok, err = c:send(raw)
  assert.is_true(ok, "send failed: " .. tostring(err))
  local res, rerr = c:read_response({ timeout = opts.timeout or 5 })
  assert.is_not_nil(res, ("expected %d, got no response: %s"):format(status, tostring(rerr)))
  assert.are.equal(status, res.status, "response:\n" .. res.raw_head .. "\r\n\r\n" .. (res.body or ""))
  assert.are.equal("close", (res.headers["connection"] or ""):lower(),
    "error response without Connection: close:\n" .. res.raw_head)
  local closed, why = c:expect_closed(3)
  assert.is_true(closed, "connection not closed after " .. status .. ": " .. tostring(why))
  c:close()
  return res, helper.now() - t0
end

describe("errors", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  after_each(function()
    -- every error path must leave the server healthy
    assert.is_true(srv:alive(), "server died:\n" .. srv:stderr())
    assert.are.equal("ok", helper.get(srv:port(), "/").body)
  end)

  it("malformed request line -> 400", function()
    expect_error(srv:port(), "THIS IS NOT HTTP\r\n\r\n", 400)
  end)

  it("garbage bytes -> 400", function()
    expect_error(srv:port(), "\1\2\3\4 \255\254\r\n\r\n", 400)
  end)

  it("header line without a colon -> 400", function()
    expect_error(srv:port(), "GET / HTTP/1.1\r\nHost: x\r\nBroken header line\r\n\r\n", 400)
  end)

  it("malformed request after a good one on the same connection -> 200 then 400", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/") .. "BAD\r\n\r\n")
    assert.are.equal(200, c:response().status)
    local res = c:response()
    assert.are.equal(400, res.status)
    local closed, why = c:expect_closed(3)
    assert.is_true(closed, why)
    c:close()
  end)

  it("conflicting Content-Length headers -> 400", function()
    expect_error(srv:port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde", 400)
  end)

  it("non-numeric Content-Length -> 400", function()
    expect_error(srv:port(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400)
  end)

  it("invalid chunk size -> 400", function()
    expect_error(srv:port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400)
  end)

  it("unsupported HTTP version -> 505", function()
    expect_error(srv:port(), "GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505)
  end)

  it("header block larger than max_header_size -> 431", function()
    expect_error(srv:port(), helper.request("GET", "/", { ["X-Big"] = string.rep("h", 2000) }), 431)
  end)

  it("many small headers exceeding max_header_size -> 431", function()
    local hs = {}
    for i = 1, 60 do hs[#hs + 1] = { "X-H" .. i, "vvvvvvvvvvvvvvvvvvvv" } end
    expect_error(srv:port(), helper.request("GET", "/", hs), 431)
  end)

  it("a head just under max_header_size is served", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/", { ["X-Big"] = string.rep("h", 800) }))
    assert.are.equal(200, c:response().status)
    c:close()
  end)

  it("URI longer than max_uri_size -> 414", function()
    expect_error(srv:port(), helper.request("GET", "/" .. string.rep("u", 3000)), 414)
  end)

  it("a long URI within max_uri_size does not count against max_header_size", function()
    local path = "/" .. string.rep("u", 1500)
    local res = helper.get(srv:port(), path)
    assert.are.equal(200, res.status)
    assert.are.equal("len=" .. #path, res.body)
  end)

  it("body larger than max_body_size with Content-Length -> 413", function()
    expect_error(srv:port(), helper.request("POST", "/echo", nil, string.rep("b", 1500)), 413)
  end)

  it("huge declared Content-Length -> 413 without waiting for the body", function()
    local _, elapsed = expect_error(srv:port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nabc", 413, { timeout = 3 })
    assert.truthy(elapsed < 2, "413 took " .. elapsed .. "s")
  end)

  it("chunked body larger than max_body_size -> 413", function()
    local body = helper.chunked({ string.rep("1", 600), string.rep("2", 600), string.rep("3", 600) })
    expect_error(srv:port(), helper.request("POST", "/echo", { ["Transfer-Encoding"] = "chunked" }, body), 413)
  end)

  it("chunked body over the limit without the terminating chunk -> 413", function()
    local body = ("%x\r\n%s\r\n"):format(1100, string.rep("x", 1100))
    expect_error(srv:port(), helper.request("POST", "/echo", { ["Transfer-Encoding"] = "chunked" }, body), 413)
  end)

  it("body of exactly max_body_size is accepted", function()
    local body = string.rep("e", 1024)
    local c = helper.connect(srv:port())
    c:write(helper.request("POST", "/echo", nil, body))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.are.equal(body, res.body)
    c:close()
  end)

  it("Expect: 100-continue with a too large Content-Length -> 413 and no 100", function()
    local res = expect_error(srv:port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n", 413)
    assert.are.equal(413, res.status)
  end)

  -- RFC 9112 §6.3: chunked not the final coding of a request -> 400
  it("Transfer-Encoding: gzip -> 400", function()
    expect_error(srv:port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxxxx", 400)
  end)

  -- RFC 9112 §6.1: a coding we don't implement before chunked -> 501
  it("Transfer-Encoding: gzip, chunked -> 501", function()
    expect_error(srv:port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501)
  end)

  it("incomplete head within header_timeout -> 408 then close", function()
    local res, elapsed = expect_error(srv:port(), "GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ", 408,
      { timeout = 4 })
    assert.are.equal(408, res.status)
    assert.truthy(elapsed >= 0.4, ("408 after only %.3fs (header_timeout = 0.5)"):format(elapsed))
    assert.truthy(elapsed < 3, ("408 after %.3fs (header_timeout = 0.5)"):format(elapsed))
  end)

  it("header_timeout is not reset by a client trickling bytes -> 408", function()
    local c = helper.connect(srv:port())
    local t0 = helper.now()
    local head = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " .. string.rep("s", 200)
    local got = ""
    for i = 1, #head do
      local ok = c:send(head:sub(i, i))
      if not ok then break end
      got = got .. c:read_available(0.05)
      if got:find("\r\n\r\n", 1, true) or c.closed or helper.now() - t0 > 4 then break end
    end
    local elapsed = helper.now() - t0
    assert.truthy(got:match("^HTTP/1%.[01] 408"), ("expected 408 while trickling, got %q after %.2fs")
      :format(got:sub(1, 60), elapsed))
    assert.truthy(elapsed < 2.5, ("408 after %.2fs: timer reset by each byte?"):format(elapsed))
    c:close()
  end)

  it("a connection that sends nothing is closed after header_timeout", function()
    local c = helper.connect(srv:port())
    local t0 = helper.now()
    local data = c:read_available(3)
    local elapsed = helper.now() - t0
    assert.is_true(c.closed, "silent connection still open after 3s (header_timeout = 0.5)")
    assert.truthy(data == "" or data:match("^HTTP/1%.1 408"), ("unexpected data %q"):format(data))
    assert.truthy(elapsed >= 0.4, ("closed after only %.3fs"):format(elapsed))
    c:close()
  end)

  it("no crash reports in the log", function()
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
