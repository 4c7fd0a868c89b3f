-- SWIM benchmark: runs unchanged on tarantool and on node.
--   <runtime> scripts/bench/swim.lua N [port_base]
-- N instances in one process on 127.0.0.1 (heartbeat 0.1, ack_timeout 0.1, gc off) join by
-- probing instance 1. Prints, one `name<TAB>value<TAB>unit` line each: the time until every
-- instance sees all N members, the time until every other instance sees a deleted
-- one dead (the median over five deleted instances, one after another, polled every
-- 10 ms), and the process CPU (core-seconds per second) over 5 s of steady state (the
-- median of SWIM_BENCH_CPU_WINDOWS such windows, default 1; -1 when the join did not finish).
-- A phase that does not finish within its limit prints -1. BENCH_VERBOSE=1 prints each
-- victim's time and each CPU window (with its user and system parts) to stderr.
local swim = require('swim')
local fiber = require('fiber')
local ffi = require('ffi')

ffi.cdef[[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct bench_timespec *tp);
struct bench_timeval { long tv_sec; long tv_usec; };
struct bench_rusage { struct bench_timeval utime, stime; long rest[14]; };
int getrusage(int who, struct bench_rusage *usage);
]]
local ts = ffi.new('struct bench_timespec')
local function clock(id)
    ffi.C.clock_gettime(id, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end
local function now() return clock(1) end          -- CLOCK_MONOTONIC
local function cpu() return clock(2) end          -- CLOCK_PROCESS_CPUTIME_ID
local usage = ffi.new('struct bench_rusage')
local function user_and_system()                  -- RUSAGE_SELF
    ffi.C.getrusage(0, usage)
    local function s(tv) return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6 end
    return s(usage.utime), s(usage.stime)
end
local VERBOSE = os.getenv('BENCH_VERBOSE')

local N = tonumber(arg[1]) or 10
local BASE = tonumber(arg[2]) or 34000
local LIMIT = tonumber(os.getenv('SWIM_BENCH_LIMIT') or 120)

local function uuid_of(i) return string.format('00000000-0000-1000-8000-%012d', i) end

local function report(name, value, unit)
    io.write(string.format('%s\t%.3f\t%s\n', name, value, unit))
    io.flush()
end

local inst = {}
for i = 1, N do
    local s, err = swim.new({ uuid = uuid_of(i), uri = BASE + i, heartbeat_rate = 0.1,
                              ack_timeout = 0.1, gc_mode = 'off' })
    if s == nil then error('swim.new failed: ' .. tostring(err)) end
    inst[i] = s
end

local function wait_until(pred, poll)
    local t0 = now()
    while not pred() do
        if now() - t0 > LIMIT then return -1 end
        fiber.sleep(poll or 0.05)
    end
    return now() - t0
end

-- "Sees all N members": every member table is complete (statuses may flap under load).
local function all_joined()
    for i = 1, N do
        if inst[i]:size() ~= N then return false end
    end
    return true
end

for i = 2, N do inst[i]:probe_member(BASE + 1) end
local joined = wait_until(all_joined)
report(string.format('join N=%d', N), joined, 's')

-- Steady state CPU, before anything is deleted. A cluster that did not join has no steady
-- state (its instances know fewer members and send shorter packets): -1.
local windows = {}
for w = 1, joined < 0 and 0 or tonumber(os.getenv('SWIM_BENCH_CPU_WINDOWS') or 1) do
    local c0, w0 = cpu(), now()
    local u0, s0 = user_and_system()
    fiber.sleep(5)
    local wall = now() - w0
    windows[w] = (cpu() - c0) / wall
    if VERBOSE then
        local u1, s1 = user_and_system()
        io.stderr:write(string.format('CPU window %d: %.4f (user %.4f, system %.4f)\n', w,
            windows[w], (u1 - u0) / wall, (s1 - s0) / wall))
    end
end
table.sort(windows)
local steady_cpu = windows[math.ceil(#windows / 2)] or -1

-- A deleted instance sends nothing more (no quit): the others must detect it.
local function detect(v)
    local victim = uuid_of(v)
    inst[v]:delete()
    inst[v] = nil
    return wait_until(function()
        for i = 1, v - 1 do
            local m = inst[i]:member_by_uuid(victim)
            if m == nil or m:status() ~= 'dead' then return false end
        end
        return true
    end, 0.01)
end
local VICTIMS = math.min(5, N - 2)
local took = {}
for v = N, N - (VICTIMS - 1), -1 do
    took[#took + 1] = detect(v)
    if VERBOSE then io.stderr:write(string.format('victim %d: %.3f\n', v, took[#took])) end
    if took[#took] < 0 then break end
    -- The next victim is deleted at another phase of the rounds.
    fiber.sleep(0.5 + 0.037 * v % 0.1)
end
table.sort(took)
report(string.format('detect dead N=%d', N), took[1] < 0 and -1 or took[math.ceil(#took / 2)], 's')
report(string.format('steady CPU N=%d', N), steady_cpu, 'core-s/s')
os.exit(0)
