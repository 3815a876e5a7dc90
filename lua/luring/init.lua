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
local floor = math.floor

local _M = { _VERSION = "0.1.0", _apps = {}, _config = {} }

for k, v in pairs(core) do
    if k:sub(1, 1) ~= "_" then
        _M[k] = v
    end
end

-- luring.timer.at / every (docs/API.md "Timers"); luring.worker.id() and
-- .count(): which of the workers runs this state (each runs the script).
_M.timer = require "luring.timer"
_M.worker = { id = core._worker_id, count = core._worker_count }
-- luring.socket.tcp() (docs/API.md "Cosockets")
_M.socket = require "luring.socket"
-- luring.http.request{} (docs/API.md "HTTP client"): lua/luring/http.lua,
-- loaded on first use (a script that never makes a request loads nothing)
_M.http = setmetatable({}, { __index = function(t, k)
    local m = require "luring.http"
    setmetatable(t, nil)
    for name, v in pairs(m) do
        t[name] = v
    end
    return m[k]
end })


local config_keys = {
    workers = true, max_connections = true,
    header_timeout = true, idle_timeout = true, body_timeout = true,
    send_timeout = true,
    max_header_size = true, max_uri_size = true, max_body_size = true,
    lua_budget = true, lua_max_memory = true, shutdown_timeout = true, drain_timeout = true,
    lua_jit = "boolean",
    conn_buffer_budget = true,
    request_id_header = "header",
    max_timers = true,
    batch_wait = "seconds0", -- 0 allowed: off
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
        if config_keys[k] == "header" then
            if v ~= false and (type(v) ~= "string" or v == ""
                               or v:find("[^%w!#$%%&'*+.^_`|~-]")) then
                error("luring.config: " .. k .. " must be a field name or false", 2)
            end
        elseif config_keys[k] == "boolean" then
            if type(v) ~= "boolean" then
                error("luring.config: " .. k .. " must be true or false", 2)
            end
        elseif config_keys[k] == "seconds0" then
            if type(v) ~= "number" or v < 0 then
                error("luring.config: " .. k .. " must be a number of seconds, 0 or more", 2)
            end
        elseif type(v) ~= "number" or v <= 0 then
            error("luring.config: " .. k .. " must be a positive number", 2)
        end
        _M._config[k] = v
    end
end


local log_formats = { combined = true, luring = true }

-- luring.access_log{ path = "file" | "stderr", format = "combined" |
-- "luring" | "... $variable ..." | function(rec) }: one line per request
-- (see docs/API.md); the C side reads luring._access_log. false: none.
function _M.access_log(t)
    if t == false then
        _M._access_log = nil
        return
    end
    if type(t) ~= "table" then
        error("bad argument #1 to 'access_log': table expected, got " .. type(t), 2)
    end
    for k in pairs(t) do
        if k ~= "path" and k ~= "format" then
            error("luring.access_log: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    local path, format = t.path, t.format
    if type(path) ~= "string" or path == "" then
        error("luring.access_log: path must be a file name or \"stderr\"", 2)
    end
    if format == nil then
        format = "combined"
    elseif type(format) == "string" then
        if not log_formats[format] and not format:find("$", 1, true) then
            error("luring.access_log: format must be \"combined\", \"luring\", "
                  .. "a string with $variables or a function", 2)
        end
    elseif type(format) ~= "function" then
        error("luring.access_log: format must be a string or a function", 2)
    end
    _M._access_log = { path = path, format = format }
end

-- luring.metrics() -> a handler answering the process-wide Prometheus text
-- (every worker's requests, latencies, connections, caches, origins):
-- app:get("/metrics", luring.metrics()). Counting starts once a script
-- calls it (the C side reads luring._metrics).
local function metrics_handler(req)
    return 200, { ["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8" },
        core._metrics()
end

function _M.metrics()
    _M._metrics = true
    return metrics_handler
end

local app = {}
local app_mt = { __index = app }


function _M.app()
    local self = setmetatable({ router = router.new(), listeners = {}, listen_max = {} },
                              app_mt)
    _M._apps[#_M._apps + 1] = self
    return self
end


local listen_keys = { max_connections = true }

-- app:listen(addr [, { max_connections = n }]): n limits this listener's
-- connections (per worker); the others, and max_connections, go on.
function app.listen(self, addr, opts)
    if type(addr) ~= "string" then
        error("bad argument #1 to 'listen': string expected, got " .. type(addr), 2)
    end
    local max = false
    if opts ~= nil then
        if type(opts) ~= "table" then
            error("bad argument #2 to 'listen': table expected, got " .. type(opts), 2)
        end
        for k in pairs(opts) do
            if not listen_keys[k] then
                error("listen: unknown option '" .. tostring(k) .. "'", 2)
            end
        end
        max = opts.max_connections
        if max ~= nil then
            if type(max) ~= "number" or not (max >= 1 and max <= 1e9) then
                error("listen: max_connections must be a number from 1 to 1000000000", 2)
            end
            max = floor(max)
        else
            max = false
        end
    end
    local n = #self.listeners + 1
    self.listeners[n] = addr
    self.listen_max[n] = max
    return self
end


-- app:tcp(addr, handler [, { max_connections = n }]): a raw TCP listener;
-- each connection accepted runs handler(sock) in its own coroutine, sock
-- a cosocket already connected (docs/API.md "Raw TCP handlers"). The
-- connection closes when the handler returns or fails.
function app.tcp(self, addr, fn, opts)
    if type(fn) ~= "function" then
        error("bad argument #2 to 'tcp': function expected, got " .. type(fn), 2)
    end
    local ok, err = pcall(app.listen, self, addr, opts)
    if not ok then
        error((tostring(err):gsub("^[^:]*:%d+: ", ""):gsub("'listen'", "'tcp'")), 2)
    end
    self.tcp_handlers = self.tcp_handlers or {}
    self.tcp_handlers[#self.listeners] = fn
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
local untraced = core._untraced

local function not_found()
    return 404, not_found_headers, "Not Found\n"
end

-- req.method, .path, .query, .version and .params live in the request
-- table's array part (slots 3-7, see route()): a table of array slots
-- only is a fraction of the cost of one with five keys in its hash part
-- (its hash part, and the garbage it makes, on every request), and a
-- handler that only passes the request on (luring.proxy) never reads
-- them. Stores to these names go to their slots, so reads see them. A
-- "/*" route's params (router.REST) become their table on first use,
-- from the path as routed.
local req_methods = req_mt.__index
local peer = core._peer
local req_id = core._req_id
local rawset = rawset
local rawget = rawget
local req_slots = { method = 3, path = 4, query = 5, version = 6, params = 7 }
local REST = router.REST
local make_params = router.params

-- req.remote_addr, req.remote_port: the client's, looked up on first use
-- and then kept in the request table; other keys are the methods.
req_mt.__index = function(t, k)
    local f = req_methods[k]
    if f ~= nil then
        return f
    end
    local i = req_slots[k]
    if i ~= nil then
        local v = rawget(t, i)
        if v == REST then
            v = make_params(v, rawget(t, 4))
            rawset(t, 7, v)
        end
        return v
    end
    if k == "id" then
        local id = req_id(t)
        rawset(t, "id", id)
        return id
    end
    if k ~= "remote_addr" and k ~= "remote_port" then
        return nil
    end
    local addr, port = peer(t)
    rawset(t, "remote_addr", addr or false)
    rawset(t, "remote_port", port or false)
    if k == "remote_addr" then return addr end
    return port
end

req_mt.__newindex = function(t, k, v)
    if k == "path" and rawget(t, 7) == REST then
        rawset(t, 7, make_params(REST, rawget(t, 4))) -- from the path routed
    end
    rawset(t, req_slots[k] or k, v)
end

-- Route, then build the request table: [1] = the C request, [2] = its
-- generation (see lrt_check_req), [3]..[7] = req.method, .path, .query,
-- .version, .params (read through req_mt.__index). One constructor of
-- array slots only: LuaJIT copies a template with the array part sized,
-- and no hash part is made until a script stores a key of its own.
-- Returns the handler and its argument.
local function route(a, r, gen, m, path, query, minor)
    local method = METHODS[m] or m
    local fn, params = a.router:match(method, path)
    if not fn then
        return not_found
    end
    return fn, setmetatable({
        r, gen, method, path, query, minor ~= 0 and "1.1" or "1.0", params,
    }, req_mt)
end

-- With lua_jit = true: one trace can run from the entry into the handler.
local function handle_jit(a, r, gen, m, path, query, minor)
    local fn, req = route(a, r, gen, m, path, query, minor)
    return fn(req)
end

-- Otherwise the script's handler is not to be compiled (_interpret_loaded),
-- and a trace that reaches a call of it aborts: after a few aborts LuaJIT
-- blacklists where the trace started, and routing and the request table
-- (luring's own code) run interpreted too. A trace that reaches a call of a
-- C function whose results are passed on as a variable number of arguments
-- ends there cleanly instead, back to the interpreter (rt.c l_untraced):
-- every trace through route() stops at untraced(), before the handler.
local function handle_interp(a, r, gen, m, path, query, minor)
    local fn, req = route(a, r, gen, m, path, query, minor)
    return fn(untraced(req))
end

local handle = handle_jit


-- Called by the C side before the script runs unless lua_jit = true: the
-- script's chunk is marked not to be JIT-compiled (lua_budget can only stop
-- interpreted code, docs/API.md), and so is every Lua chunk it loads later;
-- requests go through handle_interp.
function _M._interpret_loaded()
    local off = require("jit").off
    local function mark(f, ...)
        if type(f) == "function" then
            off(f, true)
        end
        return f, ...
    end
    local loadstring_, load_, loadfile_ = loadstring, load, loadfile
    loadstring = function(...) return mark(loadstring_(...)) end
    load = function(...) return mark(load_(...)) end
    loadfile = function(...) return mark(loadfile_(...)) end
    dofile = function(name)
        local f = assert(loadfile(name))
        return f()
    end
    local lua_searcher = package.loaders[2] -- the one that loads .lua files
    package.loaders[2] = function(...) return mark(lua_searcher(...)) end
    handle = handle_interp
end


-- Runs in the request coroutine: yields inside pass through xpcall (LuaJIT).
-- Arguments after the app come from the C side (push_req in lua_rt.c).
function _M._entry(a, r, gen, m, path, query, minor)
    return xpcall(handle, traceback, a, r, gen, m, path, query, minor)
end

-- A raw TCP connection's run (app:tcp): the handler and its socket.
function _M._tcp_entry(fn, sock)
    return xpcall(fn, traceback, sock)
end


return _M
