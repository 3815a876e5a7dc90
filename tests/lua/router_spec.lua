-- Router and request object: path params, "*" tail, methods, 404, query,
-- headers, version, custom status and headers.
local helper = require "helper"

local SCRIPT = [[
local app = luring.app()
app:listen("@LISTEN@")
app:get("/object/:id", function(req)
  return 200, nil, "object " .. req.params.id
end)
app:get("/a/:x/b/:y", function(req)
  return 200, nil, req.params.x .. "+" .. req.params.y
end)
app:get("/files/*", function(req)
  return 200, nil, "rest=" .. tostring(req.params["*"])
end)
app:put("/object/:id", function(req)
  return 201, { ["X-Put"] = req.params.id }, "put " .. req.params.id .. " " .. req:body()
end)
app:delete("/object/:id", function(req)
  return 200, nil, "deleted " .. req.params.id
end)
app:route("PATCH", "/object/:id", function(req)
  return 200, nil, "patched " .. req.params.id
end)
app:get("/inspect", function(req)
  local names = {}
  for k in pairs(req:headers()) do names[#names + 1] = k end
  table.sort(names)
  local lines = {
    "method=" .. req.method,
    "path=" .. req.path,
    "query=" .. tostring(req.query),
    "version=" .. req.version,
    "x-test=" .. (req:header("X-TEST") or "nil"),
    "x-test-lower=" .. (req:header("x-test") or "nil"),
    "headers-x-test=" .. (req:headers()["x-test"] or "nil"),
    "names=" .. table.concat(names, ","),
  }
  return 200, { ["Content-Type"] = "text/plain" }, table.concat(lines, "\n")
end)
app:get("/missing-header", function(req)
  local n = select("#", req:header("X-Missing"))
  local v = req:header("X-Missing")
  return 200, nil, "count=" .. n .. " isnil=" .. tostring(v == nil)
end)
app:get("/custom", function(req)
  return 418, { ["X-One"] = "1", ["X-Two"] = "two" }, "teapot"
end)
app:get("/nobody", function(req)
  return 204
end)
app:route("LIST", "/*", function(req)
  if req.query == "rewrite" then
    req.path = "/rewritten" -- params stay those of the path routed
    req.query = nil
  end
  req.mine = "kept"
  return 200, nil, table.concat({
    "rest=" .. req.params["*"], "path=" .. req.path,
    "query=" .. tostring(req.query), "method=" .. req.method,
    "version=" .. req.version, "mine=" .. req.mine,
    "raw-mine=" .. tostring(rawget(req, "mine")),
  }, "\n")
end)
]]

local function request(port, method, path, headers, body)
  local c = helper.connect(port)
  c:write(helper.request(method, path, headers, body))
  local res = c:response({ method = method == "HEAD" and "HEAD" or nil })
  c:close()
  return res
end

local function kv(body)
  local t = {}
  for line in (body .. "\n"):gmatch("(.-)\n") do
    local k, v = line:match("^([^=]+)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

describe("router", function()
  local srv

  lazy_setup(function()
    srv = helper.start(SCRIPT)
  end)

  lazy_teardown(function()
    helper.stop_all()
  end)

  it("captures a path parameter", function()
    local res = request(srv:port(), "GET", "/object/42")
    assert.are.equal(200, res.status)
    assert.are.equal("object 42", res.body)
    assert.are.equal("object abc-def", request(srv:port(), "GET", "/object/abc-def").body)
  end)

  it("captures several path parameters", function()
    assert.are.equal("one+two", request(srv:port(), "GET", "/a/one/b/two").body)
  end)

  it("a final * captures the rest of the path", function()
    assert.are.equal("rest=x/y/z.txt", request(srv:port(), "GET", "/files/x/y/z.txt").body)
  end)

  it("path params do not include the query string", function()
    local res = request(srv:port(), "GET", "/object/7?verbose=1")
    assert.are.equal("object 7", res.body)
  end)

  it("returns 404 for an unknown path", function()
    assert.are.equal(404, request(srv:port(), "GET", "/nope").status)
    assert.are.equal(404, request(srv:port(), "GET", "/object").status)
    assert.are.equal(404, request(srv:port(), "GET", "/object/1/extra").status)
    assert.are.equal(404, request(srv:port(), "GET", "/").status)
  end)

  it("does not match a route registered for another method", function()
    local res = request(srv:port(), "POST", "/a/1/b/2", nil, "x")
    assert.truthy(res.status == 404 or res.status == 405, "status " .. res.status)
  end)

  it("dispatches PUT, DELETE and app:route methods", function()
    local put = request(srv:port(), "PUT", "/object/9", nil, "data")
    assert.are.equal(201, put.status)
    assert.are.equal("9", put.headers["x-put"])
    assert.are.equal("put 9 data", put.body)
    assert.are.equal("deleted 9", request(srv:port(), "DELETE", "/object/9").body)
    assert.are.equal("patched 9", request(srv:port(), "PATCH", "/object/9").body)
  end)

  it("exposes method, path, query, version and headers", function()
    local res = request(srv:port(), "GET", "/inspect?a=1&b=two", { ["X-Test"] = "hello" })
    assert.are.equal(200, res.status, res.body)
    local t = kv(res.body)
    assert.are.equal("GET", t.method)
    assert.are.equal("/inspect", t.path)
    assert.are.equal("a=1&b=two", t.query)
    assert.are.equal("1.1", t.version)
    assert.are.equal("hello", t["x-test"])
    assert.are.equal("hello", t["x-test-lower"])
    assert.are.equal("hello", t["headers-x-test"])
    assert.are.equal("host,x-test", t.names)
  end)

  it("req:header returns nil (one value) for a missing header", function()
    local res = request(srv:port(), "GET", "/missing-header")
    assert.are.equal(200, res.status)
    assert.are.equal("count=1 isnil=true", res.body)
  end)

  it("req.query is nil without a query string and version is 1.0 for HTTP/1.0", function()
    local c = helper.connect(srv:port())
    c:write("GET /inspect HTTP/1.0\r\n\r\n")
    local res = c:response()
    assert.are.equal(200, res.status, res.body)
    local t = kv(res.body)
    c:close()
    assert.are.equal("nil", t.query)
    assert.are.equal("1.0", t.version)
  end)

  it("req:header returns the first of repeated headers", function()
    local res = request(srv:port(), "GET", "/inspect", { { "X-Test", "first" }, { "X-Test", "second" } })
    assert.are.equal(200, res.status, res.body)
    assert.are.equal("first", kv(res.body)["x-test"])
  end)

  it("a catch-all /* route gives params and fields, also after stores to them", function()
    local t = kv(request(srv:port(), "LIST", "/x/y.txt").body)
    assert.are.same({ rest = "x/y.txt", path = "/x/y.txt", query = "nil", method = "LIST",
                      version = "1.1", mine = "kept", ["raw-mine"] = "kept" }, t)
    t = kv(request(srv:port(), "LIST", "/x/y?rewrite").body)
    assert.are.same({ rest = "x/y", path = "/rewritten", query = "nil", method = "LIST",
                      version = "1.1", mine = "kept", ["raw-mine"] = "kept" }, t)
    t = kv(request(srv:port(), "LIST", "//a//b/").body) -- empty segments: split
    assert.are.equal("a/b", t.rest)
    assert.are.equal("//a//b/", t.path)
  end)

  it("returns custom status and headers", function()
    local res = request(srv:port(), "GET", "/custom")
    assert.are.equal(418, res.status)
    assert.are.equal("1", res.headers["x-one"])
    assert.are.equal("two", res.headers["x-two"])
    assert.are.equal("teapot", res.body)
  end)

  it("status-only return with nil headers and body", function()
    local c = helper.connect(srv:port())
    c:write(helper.request("GET", "/nobody") .. helper.request("GET", "/object/after"))
    local res = c:response()
    assert.are.equal(204, res.status)
    assert.are.equal("object after", c:response().body)
    c:close()
  end)
end)
