-- Checker for tests/box_crash.rs. Runs unchanged on tarantool and node:
--   <binary> check_keys.lua <dir> list [force]         print every key of space 'test', one a line
--   <binary> check_keys.lua <dir> check <file> [force]  check the writes listed in <file>
-- <file> has lines `<key> <v>`: the newest acknowledged write of crash_writer.lua to <key>
-- was version <v>, so the tuple must be there with a version >= v (a later write may have
-- committed without being acknowledged) and a payload matching its key and version.
-- check prints `missing <key>` / `stale <key> <v> <tuple>` / `bad <key> <tuple>` for the
-- first problems and a last line `checked <n> missing <m> stale <s> bad <b> total <len>`.
-- 'force' recovers with force_recovery = true. Exits 0 after a successful start-up
-- whatever it found; the test judges the output.
local json = require('json')

local dir, what = arg[1], arg[2] or 'list'
local file = what == 'check' and arg[3] or nil
local force = arg[#arg] == 'force'
assert(dir ~= nil, 'usage: check_keys.lua <dir> list|check <file> [force]')

box.cfg{work_dir = dir, wal_mode = 'write', force_recovery = force, log_level = 5}
local s = box.space.test
local out = io.stdout
if s == nil then
    out:write('no space\n')
    out:flush()
    os.exit(0)
end

if what == 'list' then
    for _, t in s:pairs() do
        out:write(string.format('%d', t[1]), '\n')
    end
else
    local f = assert(io.open(file, 'r'))
    local n, missing, stale, bad = 0, 0, 0, 0
    local function report(count, text)
        if count <= 20 then
            out:write(text, '\n')
        end
    end
    for line in f:lines() do
        local key, v = line:match('^(%d+) (%d+)$')
        if key ~= nil then
            key, v = tonumber(key), tonumber(v)
            n = n + 1
            local t = s:get(key)
            if t == nil then
                missing = missing + 1
                report(missing, string.format('missing %d', key))
            elseif t[4] ~= string.format('payload-%d-%d', key, t[3]) then
                bad = bad + 1
                report(bad, string.format('bad %d %s', key, json.encode(t:totable())))
            elseif t[3] < v then
                stale = stale + 1
                report(stale, string.format('stale %d %d %s', key, v, json.encode(t:totable())))
            end
        end
    end
    f:close()
    out:write(string.format('checked %d missing %d stale %d bad %d total %d\n', n, missing, stale, bad, s:len()))
end
out:flush()
os.exit(0)
