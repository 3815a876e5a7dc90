-- luring: the module scripts see as the global `luring`.
-- Apps, routes and configuration are declared here in Lua; the C runtime
-- reads luring._apps and luring._config after the script has run, and runs
-- each request as `luring._entry(app, ...)` inside a pooled coroutine.
local core = require "luring.core"
local router = require "luring.router"

local type = type
local pairs = pairs
local xpcall = xpcall
local traceback = debug.traceback
local setmetatable = setmetatable
local error = error

local _M = { _VERSION = "0.1.0", _apps = {}, _config = {} }

for k, v in pairs(core) do
    if k:sub(1, 1) ~= "_" then
        _M[k] = v
    end
end


local config_keys = {
    workers = true, max_connections = true,
    header_timeout = true, idle_timeout = true, body_timeout = true,
    send_timeout = true,
    max_header_size = true, max_uri_size = true, max_body_size = true,
}

-- luring.config{ key = value, ... }: server settings (see docs/API.md).
function _M.config(t)
    if type(t) ~= "table" then
        error("bad argument #1 to 'config': table expected, got " .. type(t), 2)
    end
    for k, v in pairs(t) do
        if not config_keys[k] then
            error("luring.config: unknown option '" .. tostring(k) .. "'", 2)
        end
        if type(v) ~= "number" or v <= 0 then
            error("luring.config: " .. k .. " must be a positive number", 2)
        end
        _M._config[k] = v
    end
end


local app = {}
local app_mt = { __index = app }


function _M.app()
    local self = setmetatable({ router = router.new(), listeners = {} }, app_mt)
    _M._apps[#_M._apps + 1] = self
    return self
end


function app.listen(self, addr)
    if type(addr) ~= "string" then
        error("bad argument #1 to 'listen': string expected, got " .. type(addr), 2)
    end
    self.listeners[#self.listeners + 1] = addr
    return self
end


function app.route(self, method, path, fn)
    local ok, err = self.router:add(method, path, fn)
    if not ok then
        error(err, 3)
    end
    return self
end


for _, m in ipairs({ "get", "post", "put", "delete", "patch", "options", "head" }) do
    local method = m:upper()
    app[m] = function(self, path, fn)
        local ok, err = self.router:add(method, path, fn)
        if not ok then
            error(err, 2)
        end
        return self
    end
end


local not_found_headers = { ["Content-Type"] = "text/plain" }
local METHODS = core._methods
local req_mt = core._req_mt

-- Route, then build the request table: [1] = the C request, [2] = its
-- generation (see lrt_check_req). One constructor, so LuaJIT copies a
-- template that has every key in place instead of inserting them one by one.
local function handle(a, r, gen, m, path, query, minor)
    local method = METHODS[m] or m
    local fn, params = a.router:match(method, path)
    if not fn then
        return 404, not_found_headers, "Not Found\n"
    end
    return fn(setmetatable({
        r, gen,
        method = method, path = path, query = query,
        version = minor ~= 0 and "1.1" or "1.0", params = params,
    }, req_mt))
end


-- Runs in the request coroutine: yields inside pass through xpcall (LuaJIT).
-- Arguments after the app come from the C side (push_req in lua_rt.c).
function _M._entry(a, r, gen, m, path, query, minor)
    return xpcall(handle, traceback, a, r, gen, m, path, query, minor)
end


return _M
