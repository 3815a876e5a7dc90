-- Streaming responses: req:start + req:write (+ luring.sleep between writes),
-- chunked encoding, explicit Content-Length, a 5 MB streamed body with
-- backpressure, and write() after the client went away.
local helper = require "helper"

local SCRIPT = helper.PAYLOAD_LUA .. [[
local app = luring.app()
app:listen("@LISTEN@")

app:get("/stream", function(req)
  req:start(200, { ["Content-Type"] = "text/plain" })
  assert(req:write("one\n"))
  luring.sleep(300)
  assert(req:write("two\n"))
  luring.sleep(50)
  assert(req:write("three\n"))
end)

app:get("/stream-pause", function(req)
  req:start(200, { ["Content-Type"] = "text/plain" })
  assert(req:write("sent\n"))
  luring.sleep(200) -- the body is out before the handler returns
end)

app:get("/stream-cl", function(req)
  req:start(200, { ["Content-Length"] = "11" })
  req:write("hello")
  luring.sleep(20)
  req:write(" world")
end)

local BIG_CHUNK = 64 * 1024
local BIG_N = 80            -- 80 * 64 KiB = 5 MiB
local big = payload(BIG_CHUNK * BIG_N, "S")
app:get("/big-stream", function(req)
  req:start(200, { ["Content-Type"] = "application/octet-stream" })
  for i = 0, BIG_N - 1 do
    local ok, err = req:write(big:sub(i * BIG_CHUNK + 1, (i + 1) * BIG_CHUNK))
    if not ok then
      luring.log("err", "big-stream write failed at chunk " .. i .. ": " .. tostring(err))
      return
    end
  end
end)

app:get("/endless", function(req)
  req:start(200, { ["Content-Type"] = "application/octet-stream" })
  local chunk = string.rep("e", 64 * 1024)
  for i = 1, 2000 do            -- at most 128 MiB
    local ok, err = req:write(chunk)
    if not ok then
      luring.log("info", "endless-ended " .. tostring(ok) .. " " .. tostring(err))
      return
    end
  end
  luring.log("info", "endless-ended completed")
end)

app:get("/empty-stream", function(req)
  req:start(204, nil)
end)
]]

describe("streaming", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("start + write with sleeps gives a chunked response delivered incrementally", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/stream"))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.is_true(res.chunked, "expected Transfer-Encoding: chunked:\n" .. res.raw_head)
    assert.are.equal("one\ntwo\nthree\n", res.body)
    assert.are.equal("text/plain", res.headers["content-type"])
    assert.is_nil(res.headers["content-length"])
    -- the first chunk must arrive before the handler's 300 ms sleep ends
    local first, last = res.chunk_times[1], res.t_done
    assert.truthy(last - first >= 0.25,
      ("first chunk arrived only %.3fs before the end: not streamed"):format(last - first))
    -- the connection is reusable after the terminating chunk
    c:write(helper.request("GET", "/stream-cl"))
    local res2 = c:response()
    assert.are.equal("hello world", res2.body)
    c:close()
  end)

  it("start with a Content-Length header is not chunked", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/stream-cl"))
    local res = c:response()
    assert.are.equal(200, res.status)
    assert.is_nil(res.headers["transfer-encoding"], res.raw_head)
    assert.are.equal("11", res.headers["content-length"])
    assert.are.equal("hello world", res.body)
    c:write(helper.request("GET", "/stream-cl"))
    assert.are.equal("hello world", c:response().body)
    c:close()
  end)

  it("streams 5 MB with backpressure, intact", function()
    local expected = helper.payload(64 * 1024 * 80, "S")
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/big-stream"))
    -- let the server run into a full socket buffer before reading
    helper.sleep(0.3)
    local res = c:response({ timeout = 20 })
    assert.are.equal(200, res.status)
    assert.is_true(res.chunked)
    assert.are.equal(#expected, #res.body)
    assert.is_true(res.body == expected, helper.diff(expected, res.body))
    assert.is_falsy(srv:stderr():find("big-stream write failed", 1, true), srv:stderr())
    -- connection still in sync
    c:write(helper.request("GET", "/stream-cl"))
    assert.are.equal("hello world", c:response().body)
    c:close()
  end)

  it("two concurrent 5 MB streams are both intact", function()
    local expected = helper.payload(64 * 1024 * 80, "S")
    local a, b = helper.connect(srv:port()), helper.connect(srv:port())
    a:write(helper.request("GET", "/big-stream"))
    b:write(helper.request("GET", "/big-stream"))
    local rb = b:response({ timeout = 20 })
    local ra = a:response({ timeout = 20 })
    assert.is_true(ra.body == expected, "a: " .. helper.diff(expected, ra.body))
    assert.is_true(rb.body == expected, "b: " .. helper.diff(expected, rb.body))
    a:close()
    b:close()
  end)

  it("start without writes ends with an empty body", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/empty-stream"))
    local res = c:response()
    assert.are.equal(204, res.status)
    assert.are.equal("", res.body)
    c:write(helper.request("GET", "/stream-cl"))
    assert.are.equal("hello world", c:response().body)
    c:close()
  end)

  it("a writer blocked on a client that has gone is abandoned, not resumed", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/endless"))
    local res_head = c:read_available(0.2)
    assert.truthy(res_head:match("^HTTP/1%.1 200"), ("%q"):format(res_head:sub(1, 100)))
    c:close()
    -- the server must notice the close and keep serving others meanwhile
    for _ = 1, 5 do
      assert.are.equal(200, helper.get(srv:port(), "/stream-cl").status)
    end
    -- the handler was parked in req:write (output above the high-water
    -- mark); after the disconnect it is dropped at that yield: the code
    -- after it never runs, so a loop ignoring write() errors can't spin
    assert.is_nil(srv:stderr():find("endless-ended", 1, true),
      "handler ran on after its client closed:\n" .. srv:stderr())
  end)

  it("an HTTP/1.0 client's stream ends with the close as soon as the handler returns (RFC 9112 §6.3 (8))", function()
    -- the last write is out before the handler returns: nothing is left
    -- to send, and the close must come anyway (it waited for send_timeout)
    local c = helper.connect(srv:port())
    c:write("GET /stream-pause HTTP/1.0\r\n\r\n")
    local t0 = helper.now()
    local res = c:response{ timeout = 5 }
    c:close()
    assert.is_true(res.until_close)
    assert.are.equal("sent\n", res.body)
    assert.is_true(helper.now() - t0 < 2, ("closed after %.1f s"):format(helper.now() - t0))
  end)

  it("HEAD on a streaming GET route sends no body", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("HEAD", "/stream-cl") .. helper.request("GET", "/stream-cl"))
    local head = c:response({ method = "HEAD" })
    assert.are.equal(200, head.status)
    local res, err = c:read_response()
    assert.is_not_nil(res, "response after HEAD: " .. tostring(err))
    assert.are.equal("hello world", res.body)
    c:close()
  end)

  it("no crash reports in the log", function()
    assert.is_nil(helper.crash_report(srv:stderr()))
    assert.is_true(srv:alive())
  end)
end)
