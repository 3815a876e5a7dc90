-- Every byte of a cached response reaches the client before the
-- connection is closed (RFC 9112 §9.6: a server that closes after a
-- response sends all of it first), for hits and misses, keep-alive,
-- `Connection: close` and HTTP/1.0 clients, fast and slow readers, and
-- sizes around the 256 KiB output high-water mark, where delivery goes on
-- from a send completion.  Bodies are compared byte for byte with the
-- origin's file (a real nginx serving it).
local helper = require "helper"
local origin = require "origin"
local socket = require "socket"

local now = helper.now

local SIZES = { 1, 262143, 262144, 262145, 300000, 1300000, 5000000 }

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
local o = luring.origin{ name = "o", url = "@ORIGIN@" }
local c = luring.cache{ name = "c", max_bytes = 256 * 1024 * 1024, ttl = 600 }
app:get("/health", function() return "ok" end)
-- req:write in 64 KiB pieces: above 256 KiB queued it yields and resumes
-- from a send completion, as delivery from the cache does
app:get("/w/:n", function(req)
  local n = tonumber(req.params.n)
  req:start(200, { ["Content-Length"] = tostring(n), ["X-Cache"] = "WRITE" })
  local piece = @PAYLOAD@
  local sent = 0
  while sent < n do
    local k = math.min(#piece, n - sent)
    req:write(k == #piece and piece or piece:sub(1, k))
    sent = sent + k
  end
end)
app:get("/f/:name", function(req)
  local key = req.path .. "?" .. (req.query or "")
  return c:fetch(req, key, o, key)
end)
]]

-- One GET; `kind`: "keep-alive" (HTTP/1.1, a second request follows on
-- the same connection), "close" (Connection: close) or "1.0" (HTTP/1.0);
-- `slow`: a 16 KiB receive buffer read 16 KiB at a time with pauses.
-- Returns the head fields, the body, and what followed.
local function fetch(port, path, kind, slow)
  local s = socket.tcp()
  if slow then s:setoption("recv-buffer-size", 16384) end
  s:settimeout(5)
  assert(s:connect("127.0.0.1", port))
  s:settimeout(0)
  local probe = helper.connect(port)
  local c = setmetatable({ sock = s, buf = "", closed = false, timeout = 20 }, getmetatable(probe))
  probe:close()
  local version = kind == "1.0" and "1.0" or "1.1"
  local headers = kind == "close" and { Connection = "close" } or nil
  c:write(helper.request("GET", path, headers, nil, version))
  local deadline = now() + 30
  local head = assert(c:read_until("\r\n\r\n", deadline))
  local h = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do h[name:lower()] = value end
  local len = assert(tonumber(h["content-length"]), "no Content-Length:\n" .. head)
  local parts, have = {}, 0
  while have < len do
    local piece, err, partial = c:read_n(math.min(slow and 16384 or 1048576, len - have), deadline)
    if not piece then
      parts[#parts + 1] = partial or ""
      c:close()
      return h, table.concat(parts), ("closed after %d of %d bytes: %s"):format(
        have + #(partial or ""), len, tostring(err))
    end
    parts[#parts + 1] = piece
    have = have + #piece
    if slow then socket.sleep(0.001) end
  end
  local after
  if kind == "keep-alive" then
    c:write(helper.request("GET", "/health"))
    local res, err = c:read_response()
    after = res and res.body or ("no second response: " .. tostring(err))
  else
    local rest, closed = c:read_available(5)
    after = closed and rest or ("not closed; then " .. #rest .. " bytes")
  end
  c:close()
  return h, table.concat(parts), after
end

describe("close after the last byte (RFC 9112 §9.6)", function()
  local ngx, srv
  local files = {}

  lazy_setup(function()
    local list = {}
    for _, n in ipairs(SIZES) do
      files[n] = helper.payload(n, n)
      list["f/" .. n] = files[n]
    end
    ngx = origin.start{ files = list }
    srv = helper.start((SCRIPT:gsub("@ORIGIN@", ngx:url())
                              :gsub("@PAYLOAD@", ("%q"):format(("x"):rep(65536)))))
  end)
  lazy_teardown(origin.teardown)

  for _, n in ipairs(SIZES) do
    for _, kind in ipairs({ "keep-alive", "close", "1.0" }) do
      it(("%d bytes, %s client: MISS then HIT, fast and slow, every byte"):format(n, kind), function()
        for _, slow in ipairs({ false, true }) do
          local path = ("/f/%d?%s-%s"):format(n, kind, slow and "slow" or "fast")
          for _, want in ipairs({ "MISS", "HIT" }) do
            local h, body, after = fetch(srv:port(), path, kind, slow)
            local what = ("%s %s %s reader"):format(path, want, slow and "slow" or "fast")
            assert.are.equal(want, h["x-cache"], what)
            assert.are.equal(tostring(n), h["content-length"], what)
            if #body ~= n or body ~= files[n] then
              error(("%s: %d of %d bytes, %s; then: %s"):format(what, #body, n,
                body == files[n]:sub(1, #body) and "a prefix" or "different bytes", tostring(after)))
            end
            if kind == "keep-alive" then
              assert.are.equal("ok", after, what .. ": the next response on the connection")
            else
              assert.are.equal("", after, what .. ": nothing after the body, then close")
            end
          end
        end
      end)
    end
  end

  for _, n in ipairs({ 262145, 300000, 1300000 }) do
    it(("a handler's req:write of %d bytes reaches close and HTTP/1.0 clients whole"):format(n), function()
      for _, kind in ipairs({ "keep-alive", "close", "1.0" }) do
        for _, slow in ipairs({ false, true }) do
          local h, body, after = fetch(srv:port(), "/w/" .. n, kind, slow)
          local what = ("%s client, %s reader"):format(kind, slow and "slow" or "fast")
          assert.are.equal(tostring(n), h["content-length"], what)
          assert.are.equal(n, #body, what .. ": " .. tostring(after))
          assert.are.equal(("x"):rep(n), body, what)
          assert.are.equal(kind == "keep-alive" and "ok" or "", after, what)
        end
      end
    end)
  end

  it("kept serving, no sanitizer report", function()
    assert.is_true(srv:alive())
    assert.is_nil(helper.crash_report(srv:stderr()))
  end)
end)
