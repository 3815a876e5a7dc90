-- luring.timer: at(delay, fn, ...) and every(interval, fn, ...) run
-- fn(premature, ...) on a coroutine of its own, outside any request (as
-- OpenResty's ngx.timer.at / every); the C side is src/lua/l_timer.c, the
-- contract docs/API.md "Timers".
local core = require "luring.core"

local type = type
local select = select
local error = error
local unpack = unpack
local xpcall = xpcall
local traceback = debug.traceback
local setmetatable = setmetatable
local timer_new = core._timer_new
local timer_cancel = core._timer_cancel
local timer_counts = core._timer_counts

local _M = {}

local handle = {}
local handle_mt = { __index = handle }


-- The coroutine's body (l_timer.c calls it with the table _new made):
-- ok, ... | false, message with its traceback, as luring._entry.
local function run(t, premature)
    return xpcall(t.fn, traceback, premature, unpack(t, 1, t.n))
end


local function new(name, delay, interval, fn, ...)
    if type(delay) ~= "number" or not (delay >= 0 and delay <= 31536000) then
        error("bad argument #1 to '" .. name .. "' (seconds from 0 to 31536000 expected, got "
              .. (type(delay) == "number" and delay or type(delay)) .. ")", 3)
    end
    if name == "every" and not (delay >= 0.001) then
        error("bad argument #1 to 'every' (the interval must be at least 0.001 s)", 3)
    end
    if type(fn) ~= "function" then
        error("bad argument #2 to '" .. name .. "' (function expected, got "
              .. type(fn) .. ")", 3)
    end
    local t = { ... }
    t.n = select("#", ...)
    t.fn = fn
    t.run = run
    local idx, gen, id = timer_new(delay, interval, t)
    if not idx then
        return nil, gen
    end
    return setmetatable({ idx, gen, id = id }, handle_mt)
end


-- luring.timer.at(delay, fn, ...) -> handle | nil, err: fn(premature, ...)
-- once, delay seconds from now.
function _M.at(delay, fn, ...)
    return new("at", delay, 0, fn, ...)
end


-- luring.timer.every(interval, fn, ...) -> handle | nil, err: fn(premature,
-- ...) every interval seconds, the first run one interval from now.
function _M.every(interval, fn, ...)
    return new("every", interval, interval, fn, ...)
end


-- handle:cancel() -> true | nil, "running" | nil, "done"
function handle.cancel(self)
    return timer_cancel(self[1], self[2])
end


-- luring.timer.pending_count(), running_count(): this worker's timers.
function _M.pending_count()
    local pending = timer_counts()
    return pending
end


function _M.running_count()
    local _, running = timer_counts()
    return running
end


return _M
