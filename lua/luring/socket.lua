-- luring.socket: cosockets, shaped like OpenResty's ngx.socket.tcp
-- (docs/API.md "Cosockets"). The object and its operations are C
-- (src/lua/l_socket.c); the receiveuntil iterator is made here.
local core = require "luring.core"

local until_ = core._socket_methods._until
local type = type

local _M = {}

-- sock:receiveuntil(pattern[, opts]) -> reader: reader(size?) returns
-- the data before the next `pattern` (consumed), or with `size`, that
-- data in pieces of at most size bytes, then nil once the pattern is
-- reached; nil, err, partial on an error. opts.inclusive: the pattern
-- ends the data returned.
local function receiveuntil(sock, pattern, opts)
    if type(pattern) ~= "string" or #pattern == 0 then
        error("sock:receiveuntil: a non-empty pattern string expected", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("sock:receiveuntil: opts must be a table", 2)
    end
    local inclusive = opts and opts.inclusive
    local done = false
    return function(size)
        if size ~= nil and (type(size) ~= "number" or size < 1) then
            error("receiveuntil's reader: a size of 1 or more expected", 2)
        end
        if done then
            done = false
            return nil
        end
        local data, found, partial = until_(sock, pattern, size or 0)
        if data == nil then
            return nil, found, partial
        end
        if found and inclusive then
            data = data .. pattern
        end
        if size and found then
            if data == "" then
                return nil
            end
            done = true
        end
        return data
    end
end
core._socket_methods.receiveuntil = receiveuntil

-- luring.socket.tcp() -> a socket, not connected
_M.tcp = core._socket_tcp

return _M
