-- luring.http: an HTTP/1.1 client for handlers and timers, shaped like
-- lua-resty-http's request (docs/API.md "HTTP client"). The request, the
-- connection pools and the response's stream are C (src/lua/l_origin.c,
-- the same machinery as origin:request); the response object is made here.
local core = require "luring.core"

local request_ = core._http_request
local type = type
local pairs = pairs
local tostring = tostring
local error = error
local setmetatable = setmetatable
local concat = table.concat
local sub = string.sub

local _M = {}

local TIMEOUT_DEFAULT = 60         -- seconds, each wait (OpenResty's 60 s)
local TIMEOUT_MAX = 31536000       -- a year
local READ_BODY_MAX = 16 * 2^20    -- res:read_body()'s default bound

local fields = { url = true, method = true, headers = true, body = true,
                 timeout = true, keepalive = true }

local res_m = {}
local res_mt = { __index = res_m }


-- The next piece of the body (at most `size` bytes when given), nil at the
-- end, nil, err when the response broke.
local function read(res, size)
    local rest = res._rest
    if rest then
        if size and #rest > size then
            res._rest = sub(rest, size + 1)
            return sub(rest, 1, size)
        end
        res._rest = nil
        return rest
    end
    local piece, err = res._reader:read()
    if piece and size and #piece > size then
        res._rest = sub(piece, size + 1)
        return sub(piece, 1, size)
    end
    return piece, err
end


-- res:read_body([max_bytes]) -> the whole body | nil, err. Above max_bytes
-- (default 16 MiB): nil, "body too large", and the response is closed.
function res_m.read_body(res, max)
    if max ~= nil and (type(max) ~= "number" or max < 0) then
        error("res:read_body: max_bytes must be a number of 0 or more", 2)
    end
    max = max or READ_BODY_MAX
    local parts, n, total = {}, 0, 0
    while true do
        local piece, err = read(res)
        if not piece then
            if err then
                return nil, err
            end
            return concat(parts, "", 1, n)
        end
        total = total + #piece
        if total > max then
            res:close()
            return nil, "body too large (more than " .. max .. " bytes)"
        end
        n = n + 1
        parts[n] = piece
    end
end


-- res:read([size]): the next piece (see read above).
res_m.read = read


-- res:close(): abandon the rest of the body (its connection is closed
-- unless the body was read to its end).
function res_m.close(res)
    res._rest = nil
    res._reader:close()
end


-- luring.http.request{ url =, method =, headers =, body =, timeout =,
-- keepalive = } -> res | nil, err
function _M.request(opts)
    if type(opts) ~= "table" then
        error("bad argument #1 to 'request' (table expected, got "
              .. type(opts) .. ")", 2)
    end
    for k in pairs(opts) do
        if not fields[k] then
            error("luring.http.request: unknown field '" .. tostring(k)
                  .. "' (url, method, headers, body, timeout, keepalive)", 2)
        end
    end
    local url, method, headers = opts.url, opts.method, opts.headers
    local body, timeout, keepalive = opts.body, opts.timeout, opts.keepalive
    if type(url) ~= "string" then
        error("luring.http.request: url must be a string", 2)
    end
    if method ~= nil and type(method) ~= "string" then
        error("luring.http.request: method must be a string", 2)
    end
    if headers ~= nil and type(headers) ~= "table" then
        error("luring.http.request: headers must be a table", 2)
    end
    if body ~= nil and type(body) ~= "string" then
        error("luring.http.request: body must be a string", 2)
    end
    if timeout == nil then
        timeout = TIMEOUT_DEFAULT
    elseif type(timeout) ~= "number" or not (timeout >= 0.001
                                             and timeout <= TIMEOUT_MAX) then
        error("luring.http.request: timeout must be seconds, 0.001 to "
              .. TIMEOUT_MAX, 2)
    end
    if keepalive ~= nil and type(keepalive) ~= "boolean" then
        error("luring.http.request: keepalive must be true or false", 2)
    end
    local status, hdrs, reader = request_(url, method or "GET", headers,
                                          body, timeout * 1000,
                                          keepalive ~= false)
    if not status then
        return nil, hdrs
    end
    local res = setmetatable({ status = status, headers = hdrs,
                               _reader = reader }, res_mt)
    -- lua-resty-http's iterator: res.body_reader([size])
    res.body_reader = function(size)
        return read(res, size)
    end
    return res
end


return _M
