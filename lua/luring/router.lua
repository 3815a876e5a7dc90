-- luring.router: method + path routing. Exact paths are one table lookup;
-- paths with ":name" segments (and a final "*") are tried in the order
-- they were added. HEAD falls back to GET routes; any method falls back to
-- routes added with the method "*".
local type = type
local setmetatable = setmetatable
local str_find = string.find
local str_sub = string.sub
local str_byte = string.byte

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

-- Shared by every exact match: read-only so one request can't leak into
-- the next through it.
local NO_PARAMS = setmetatable({}, {
    __newindex = function() error("req.params is read-only for this route", 2) end,
})


function _M.new()
    return setmetatable({ exact = {}, patterns = {} }, mt)
end


-- The path's segments: its maximal runs of bytes other than "/" (as
-- str_gmatch(path, "[^/]+") gives them, but with string.find, which LuaJIT
-- compiles: a trace aborts at gmatch).
local function split(path)
    local segs, n = {}, 0
    local i, len = 1, #path
    while i <= len do
        local j = str_find(path, "/", i, true) or len + 1
        if j > i then
            n = n + 1
            segs[n] = str_sub(path, i, j - 1)
        end
        i = j + 1
    end
    return segs, n
end


-- Returns true, or nil and a message.
function _M.add(self, method, path, fn)
    if type(method) ~= "string" or method == "" then
        return nil, "route: method must be a string"
    end
    if type(path) ~= "string" or str_sub(path, 1, 1) ~= "/" then
        return nil, "route: path must be a string starting with '/'"
    end
    if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn)
                                        and getmetatable(fn).__call) then
        return nil, "route " .. path .. ": handler must be a function"
    end
    if not str_find(path, "[:*]") then
        local e = self.exact[method] or {}
        self.exact[method] = e
        e[path] = fn
        return true
    end
    local segs, n = split(path)
    local pat = { n = n, fn = fn }
    for i = 1, n do
        local s = segs[i]
        if s == "*" then
            if i ~= n then
                return nil, "route " .. path .. ": '*' must be the last segment"
            end
            pat.star = true
            pat.n = n - 1
        elseif str_sub(s, 1, 1) == ":" then
            if #s == 1 then
                return nil, "route " .. path .. ": parameter needs a name"
            end
            pat[i] = { name = str_sub(s, 2) }
        else
            pat[i] = { lit = s }
        end
    end
    local list = self.patterns[method] or {}
    self.patterns[method] = list
    list[#list + 1] = pat
    return true
end


-- Whether a path's segments joined by "/" (what a "/*" route gives as
-- params["*"]) are the path less its leading "/": it starts with "/", has
-- more, and has no empty segment ("//", a trailing "/").
local function plain_rest(path)
    local len = #path
    return len > 1 and str_byte(path, 1) == 47 and str_byte(path, len) ~= 47 and
           not str_find(path, "//", 1, true)
end


-- What match gives as params for a "/*" route first in its list when the
-- path needs no split (plain_rest): it stands for { ["*"] = the path less
-- its "/" }, which _M.params makes only when a handler reads req.params
-- (a handler that passes every request on never does).
local REST = setmetatable({}, {
    __index = function() error("router.REST: use router.params", 2) end,
})
_M.REST = REST


local function lookup(self, method, path)
    local e = self.exact[method]
    local fn = e and e[path]
    if fn then
        return fn, NO_PARAMS
    end
    local list = self.patterns[method]
    if not list then
        return nil
    end
    local first = list[1]
    if first.n == 0 and first.star then
        -- "/*" first (a catch-all: luring.proxy for every path): when the
        -- path's segments need no splitting, its params without it
        if plain_rest(path) then
            return first.fn, REST
        end
    end
    local segs, n = split(path)
    for k = 1, #list do
        local pat = list[k]
        if n == pat.n or (pat.star and n > pat.n) then
            local params
            local ok = true
            for i = 1, pat.n do
                local p = pat[i]
                if p.lit then
                    if p.lit ~= segs[i] then
                        ok = false
                        break
                    end
                else
                    params = params or {}
                    params[p.name] = segs[i]
                end
            end
            if ok then
                params = params or {}
                if pat.star then
                    local rest = {}
                    for i = pat.n + 1, n do
                        rest[#rest + 1] = segs[i]
                    end
                    params["*"] = table.concat(rest, "/")
                end
                return pat.fn, params
            end
        end
    end
    return nil
end


-- Returns the handler and its params table (or REST: see _M.params), or
-- nil.
function _M.match(self, method, path)
    local fn, params = lookup(self, method, path)
    if not fn and method == "HEAD" then
        fn, params = lookup(self, "GET", path)
    end
    if not fn then -- app:route("*", path, fn): any method
        return lookup(self, "*", path)
    end
    return fn, params
end


-- The params table for what match returned for path: REST made into its
-- table, any other as it is.
function _M.params(params, path)
    if params == REST then
        return { ["*"] = str_sub(path, 2) }
    end
    return params
end


return _M
