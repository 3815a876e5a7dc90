-- README.md as a new user reads it (issue 14: "tried as a new user would"):
-- its commands run as written, and what it says a log line looks like is
-- what the binary writes.  The nginx block is run by bash with only its two
-- ports changed to free ones and scripts/run's binary (build-release/luring)
-- to the one under test.
local helper = require "helper"

local function readme()
  local f = assert(io.open(helper.repo_root() .. "/README.md", "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The indented block that starts with `D=$(mktemp -d)`, unindented.
local function nginx_block(text)
  local out, inside = {}, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if not inside and line:match("^    D=%$%(mktemp %-d%)") then inside = true end
    if inside then
      if not line:match("^    ") then break end
      out[#out + 1] = line:sub(5)
    end
  end
  return table.concat(out, "\n") .. "\n"
end

describe("README.md", function()
  it("the local-nginx example runs as written: MISS, HIT, PASS", function()
    local block = nginx_block(readme())
    assert.truthy(block:find("/usr/sbin/nginx", 1, true), "block not found:\n" .. block)
    -- a new user has built with scripts/run (the first set-up command)
    local sr = assert(io.open(helper.repo_root() .. "/scripts/run", "rb")):read("*a")
    local built = sr:match("exec (build%-release/luring)")
    assert.are.equal("build-release/luring", built)
    assert.truthy(block:find(built .. " ", 1, true),
                  "the block does not run scripts/run's binary " .. built .. ":\n" .. block)
    local po, pl = helper.free_port(), helper.free_port()
    local run = block:gsub("127%.0%.0%.1:9000", "127.0.0.1:" .. po)
                     :gsub("127%.0%.0%.1:8080", "127.0.0.1:" .. pl)
                     :gsub(built:gsub("%-", "%%-"), function() return helper.shquote(helper.BIN) end)
    local dir = os.tmpname()
    local sh = assert(io.open(dir, "wb"))
    -- the block leaves nginx and luring in the background: stop them after
    sh:write("set -u\ncd " .. helper.shquote(helper.repo_root()) .. "\n", run,
             "kill -INT $(jobs -p) 2>/dev/null; wait\n")
    sh:close()
    local p = assert(io.popen("timeout -k 2 30 bash " .. helper.shquote(dir) .. " 2>/dev/null"))
    local out = p:read("*a")
    p:close()
    os.remove(dir)
    local seen = {}
    for v in out:gmatch("X%-Cache: (%u+)") do seen[#seen + 1] = v end
    assert.are.same({ "MISS", "HIT", "PASS" }, seen, out)
  end)

  it("describes the error log line as the binary writes it", function()
    local text = readme()
    -- the example line README gives, as a pattern: digits stand for digits
    local example = text:match("`(%d%d%d%d%-%d%d%-%d%dT[^`]* %[info%] luring w0: listening on [^`]*)`")
    assert.truthy(example, "README gives no example log line")
    local pat = "^" .. example:gsub(":%d+$", ":PORT"):gsub("[%%%-%.%[%]%(%)%+%*%?%^%$]", "%%%0")
                              :gsub("%d", "%%d"):gsub("PORT", "%%d+") .. "$"
    local srv = helper.start([[
local app = luring.app()
app:listen("127.0.0.1:0")
app:get("/", function() return "ok" end)
]])
    local first
    helper.wait_until(function()
      first = srv:stderr():match("([^\n]*listening on[^\n]*)")
      return first ~= nil
    end, 5)
    srv:stop()
    assert.truthy(first and first:match(pat), ("README: %s\nbinary: %s"):format(example, tostring(first)))
  end)
end)
