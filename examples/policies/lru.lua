-- examples/policies/lru.lua - least recently used, written as a Lua eviction
-- policy for the trace simulator; it makes the same decisions as the
-- built-in "lru":
--
--     luring sim --policy examples/policies/lru.lua,lru --size 5% trace.csv
--
-- A policy file returns a table of functions, or (as here) a function that
-- receives the capacity (objects, or bytes with --bytes) and returns one:
--
--   insert(key, size)  a missed object is admitted; the simulator has
--                      already evicted enough to make it fit
--   hit(key, size)     a resident object was requested again
--   evict() -> key     pick a resident victim; it leaves the cache
--   remove(key)        a resident object left for another reason
--   miss(key, size)    optional: every miss, before insert
--
-- Keys are opaque strings (a hash of the trace's key); sizes are numbers.

return function(capacity)
  -- A doubly linked list of the resident keys, most recent at the head.
  local newer, older = {}, {}   -- key -> neighbouring key (nil at the ends)
  local head, tail

  local function unlink(key)
    local n, o = newer[key], older[key]
    if n then older[n] = o else head = o end
    if o then newer[o] = n else tail = n end
    newer[key], older[key] = nil, nil
  end

  local function push_head(key)
    older[key] = head
    if head then newer[head] = key else tail = key end
    head = key
  end

  return {
    insert = function(key, size)
      push_head(key)
    end,

    hit = function(key, size)
      unlink(key)
      push_head(key)
    end,

    evict = function()
      local key = tail
      unlink(key)
      return key
    end,

    remove = function(key)
      unlink(key)
    end,
  }
end
