-- Writer for the kill -9 test of tests/box_crash.rs. Runs unchanged on tarantool and node:
--   <binary> crash_writer.lua <dir> <wal_mode> <round> [keys_per_fiber]
-- 50 fibers write to space 'test' as fast as commits return, each fiber its own key range
-- (unique over rounds too): fiber f's v-th write replaces key base + v % K with
-- {key, f, v, 'payload-<key>-<v>'}, so the first K writes of a fiber insert new keys (the
-- data grows by 50 * K keys a round) and the rest update them with rising versions. After
-- each commit returns, the line `<key> <v>` goes to stdout, flushed at once (io.stdout is
-- buffered when it is a pipe, in both runtimes; one write() per line keeps a line whole
-- even under SIGKILL). A side fiber calls box.snapshot() every 0.1-0.2 s so snapshots and
-- xlog rotation happen under load. The line `started` follows box.cfg. The test kills the
-- process with SIGKILL; nothing here is expected to finish.
local fiber = require('fiber')

local dir, mode, round = arg[1], arg[2] or 'write', tonumber(arg[3] or '0')
local K = tonumber(arg[4] or '40')
assert(dir ~= nil, 'usage: crash_writer.lua <dir> <wal_mode> <round> [keys_per_fiber]')

box.cfg{work_dir = dir, wal_mode = mode, log_level = 4}
local s = box.schema.space.create('test', {if_not_exists = true})
s:create_index('pk', {if_not_exists = true})

local out = io.stdout
local function ack(line)
    out:write(line .. '\n')
    out:flush()
end

-- Keys of fiber f in this round: round * 1e8 + f * 1e6 + (0 .. K-1), all below 2^53.
local FIBERS = 50
for f = 1, FIBERS do
    fiber.create(function()
        local base = round * 100000000 + f * 1000000
        local v = 0
        while true do
            local key = base + v % K
            s:replace{key, f, v, string.format('payload-%d-%d', key, v)}
            ack(string.format('%d %d', key, v))
            v = v + 1
        end
    end)
end

fiber.create(function()
    while true do
        fiber.sleep(0.1 + math.random() * 0.1)
        local ok, err = pcall(box.snapshot)
        if not ok then
            io.stderr:write('snapshot failed: ', tostring(err), '\n')
        end
    end
end)

ack('started')
