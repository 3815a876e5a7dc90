-- Install (issue 14, point 5): `cmake --install` of the build the specs run
-- puts luring in bin, its man page in share/man/man1, the examples (scripts,
-- a Lua policy, a systemd unit) in share/luring/examples and the docs in
-- share/doc/luring; the installed binary serves an installed example, and
-- --help and the man page name every option the binary accepts.
local helper = require "helper"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

describe("cmake --install", function()
  local prefix, build
  lazy_setup(function()
    local bin = helper.BIN
    if bin:sub(1, 1) ~= "/" then bin = helper.repo_root() .. "/" .. bin end
    build = bin:match("^(.*)/[^/]+$")
    prefix = helper.mktempdir()
  end)
  lazy_teardown(function()
    helper.stop_all()
    os.execute("rm -rf " .. helper.shquote(prefix))
  end)

  it("installs the binary, man page, examples and docs under the prefix", function()
    local rc, out = sh("cmake --install " .. helper.shquote(build) .. " --prefix "
      .. helper.shquote(prefix))
    assert.are.equal(0, rc, out)
    for _, f in ipairs({ "bin/luring", "share/man/man1/luring.1",
        "share/luring/examples/hello.lua", "share/luring/examples/proxy.lua",
        "share/luring/examples/cache.lua", "share/luring/examples/policies/lru.lua",
        "share/luring/examples/luring.service", "share/doc/luring/API.md",
        "share/doc/luring/README.md" }) do
      assert.truthy(helper.readfile(prefix .. "/" .. f), "missing " .. f)
    end
    local rc2, v = sh(helper.shquote(prefix .. "/bin/luring") .. " --version")
    assert.are.equal(0, rc2, v)
    assert.truthy(v:match("^luring %d+%.%d+%.%d+"), v)
  end)

  it("the installed binary serves an installed example", function()
    local srv = helper.start(nil, { file = prefix .. "/share/luring/examples/hello.lua",
      listen = true, bin = prefix .. "/bin/luring" })
    local res = helper.get(srv:port(), "/")
    assert.are.equal(200, res.status)
    assert.are.equal("Hello, World!", res.body)
  end)

  it("--help and the man page name every long option main.c accepts", function()
    local src = helper.readfile(helper.repo_root() .. "/src/app/main.c")
    local _, help = sh(helper.shquote(prefix .. "/bin/luring") .. " --help")
    local man = helper.readfile(prefix .. "/share/man/man1/luring.1"):gsub("\\%-", "-")
    local n = 0
    for opt in src:gmatch('{"([%w-]+)", [%w_]+_argument') do
      n = n + 1
      assert.truthy(help:find("--" .. opt, 1, true), "--help lacks --" .. opt .. ":\n" .. help)
      assert.truthy(man:find("-" .. opt, 1, true), "luring.1 lacks --" .. opt)
    end
    assert.truthy(n >= 5, "found only " .. n .. " options in main.c")
  end)
end)
