-- box benchmark: runs unchanged on tarantool and on node and prints one line per metric,
-- `name<TAB>value<TAB>unit`, as scripts/bench/fibers.lua does. scripts/bench/box.sh runs
-- both runtimes and prints the ratios.
--
--   tarantool scripts/bench/box.lua          every case, each in a child process of the same
--   node scripts/bench/box.lua               binary with a fresh temp dir (box.cfg can be
--                                            called once per process)
--   <binary> scripts/bench/box.lua <case> <dir> [args]   one case (what the driver runs)
--
-- Cases: replace <wal_mode> <fibers> <seconds> | memory_select | fill <snapshot|xlog> |
-- recover. Times come from clock.monotonic() (a real clock on both runtimes).
local fiber = require('fiber')
local clock = require('clock')
local fio = require('fio')

local TUPLES = 1000000 -- memory, selects and recovery work on 1M tuples {i, 'some string'}

local function report(name, value, unit)
    io.write(string.format('%s\t%.1f\t%s\n', name, value, unit))
    io.flush()
end

local function rss_bytes()
    local f = io.open('/proc/self/statm', 'r')
    if f == nil then return 0 end
    local line = f:read('*l')
    f:close()
    return tonumber(line:match('^%d+%s+(%d+)')) * 4096
end

local function start(dir, mode)
    box.cfg{work_dir = dir, wal_mode = mode, log_level = 2}
    local s = box.schema.space.create('bench', {if_not_exists = true})
    s:create_index('pk', {if_not_exists = true})
    return s
end

-- Replaces per second from `nfibers` fibers for `seconds`, over 100k keys. With one fiber
-- each commit waits for its own WAL write; with many, commits that arrive together share a
-- write (and an fsync): group commit.
local function replace_rate(s, nfibers, seconds)
    local KEYS = 100000
    local ops, running, t_end = 0, nfibers, 0
    local t0 = clock.monotonic()
    local deadline = t0 + seconds
    for f = 1, nfibers do
        fiber.create(function()
            local i = 0
            while clock.monotonic() < deadline do
                for _ = 1, 10 do
                    s:replace{(i * nfibers + f) % KEYS, 'some string', i}
                    i = i + 1
                end
            end
            ops = ops + i
            running = running - 1
            if running == 0 then t_end = clock.monotonic() end
        end)
    end
    while running > 0 do fiber.sleep(0.01) end
    return ops / (t_end - t0)
end

local function fill(s, n, batch)
    for i = 1, n, batch do
        box.begin()
        for k = i, math.min(i + batch - 1, n) do
            s:insert{k, 'some string'}
        end
        box.commit()
        if i % 100000 == 1 then collectgarbage('step', 1000) end
    end
end

local function timed(seconds, body)
    local n = 0
    local t0 = clock.monotonic()
    local deadline = t0 + seconds
    repeat
        for _ = 1, 100 do body() end
        n = n + 100
    until clock.monotonic() >= deadline
    return n / (clock.monotonic() - t0)
end

local cases = {}

function cases.replace(dir, mode, nfibers, seconds)
    nfibers, seconds = tonumber(nfibers), tonumber(seconds)
    local s = start(dir, mode)
    local name = string.format('replace %d fiber%s wal=%s', nfibers, nfibers > 1 and 's' or '', mode)
    report(name, replace_rate(s, nfibers, seconds), 'replaces/s')
end

-- RSS growth for 1M small tuples (wal_mode none), then point and range reads on them.
function cases.memory_select(dir)
    local s = start(dir, 'none')
    collectgarbage('collect')
    local before = rss_bytes()
    local slab_before = box.slab.info()
    fill(s, TUPLES, 1000)
    collectgarbage('collect')
    local after = rss_bytes()
    local slab = box.slab.info()
    report('RSS per tuple (1M)', (after - before) / TUPLES, 'bytes')
    report('arena_used per tuple (1M)', (slab.arena_used - slab_before.arena_used) / TUPLES, 'bytes info')
    report('items_used per tuple (1M)', (slab.items_used - slab_before.items_used) / TUPLES, 'bytes info')

    local random = math.random
    report('get by pk (1M)', timed(1, function() s:get(random(TUPLES)) end), 'gets/s')
    report('select 100 by range (1M)', timed(1, function()
        s:select(random(TUPLES - 100), {iterator = 'GE', limit = 100})
    end), 'selects/s')
end

-- 1M tuples written through the WAL (transactions of 1000 rows, one xlog row per tuple),
-- then a snapshot or not, then exit: the recover case times start-up on what is left.
function cases.fill(dir, kind)
    local s = start(dir, 'write')
    fill(s, TUPLES, 1000)
    if kind == 'snapshot' then box.snapshot() end
    os.exit(0)
end

function cases.recover(dir, kind)
    local t0 = clock.monotonic()
    box.cfg{work_dir = dir, log_level = 2}
    local t = clock.monotonic() - t0
    local n = box.space.bench:len()
    if n ~= TUPLES then
        io.stderr:write(string.format('recovered %d tuples, expected %d\n', n, TUPLES))
        os.exit(1)
    end
    report(string.format('recovery 1M from %s', kind), t * 1000, 'ms')
end

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Driver: each case in its own process of this binary with a fresh temp dir.
local function run_all()
    local self = {arg[-1], arg[0]}
    local function child(args, dir)
        local cmd = {}
        for _, a in ipairs(self) do table.insert(cmd, shell_quote(a)) end
        table.insert(cmd, args[1])
        table.insert(cmd, shell_quote(dir))
        for i = 2, #args do table.insert(cmd, shell_quote(tostring(args[i]))) end
        local p = io.popen(table.concat(cmd, ' '), 'r')
        for line in p:lines() do
            io.write(line, '\n')
            io.flush()
        end
        p:close()
    end
    local function with_dir(body)
        local dir = fio.tempdir()
        body(dir)
        fio.rmtree(dir)
    end
    local runs = {
        {'replace', 'none', 1, 1},
        {'replace', 'write', 1, 1},
        {'replace', 'fsync', 1, 1},
        {'replace', 'write', 100, 1},
        {'replace', 'fsync', 100, 1},
        {'memory_select'},
    }
    for _, args in ipairs(runs) do
        with_dir(function(dir) child(args, dir) end)
    end
    for _, kind in ipairs({'snapshot', 'xlog'}) do
        with_dir(function(dir)
            child({'fill', kind}, dir)
            child({'recover', kind}, dir)
        end)
    end
end

local case = arg[1]
if case == nil then
    run_all()
elseif cases[case] ~= nil then
    cases[case](select(2, ...))
else
    io.stderr:write('unknown case ', tostring(case), '\n')
    os.exit(2)
end
os.exit(0)
