-- Fiber benchmark: runs unchanged on tarantool and on node and prints one line per metric,
-- `name<TAB>value<TAB>unit`. scripts/bench/run.sh runs both runtimes and prints the ratios.
local fiber = require('fiber')

local ffi = require('ffi')

-- A real monotonic clock on both runtimes (fiber.clock() is the cached event loop time in
-- Tarantool, which does not move while fibers switch without the loop).
ffi.cdef[[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct bench_timespec *tp);
]]
local ts = ffi.new('struct bench_timespec')
local function now()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local function rss_kb()
    local f = io.open('/proc/self/statm', 'r')
    if f == nil then return 0 end
    local line = f:read('*l')
    f:close()
    local pages = tonumber(line:match('^%d+%s+(%d+)'))
    return pages * 4
end

local function report(name, value, unit)
    io.write(string.format('%s\t%.1f\t%s\n', name, value, unit))
    io.flush()
end

-- Fibers that are created and finish at once (the common case of a short task).
local function create_finish(n)
    local t0 = now()
    local noop = function() end
    for _ = 1, n do
        fiber.create(noop)
    end
    fiber.yield()
    return n / (now() - t0)
end

-- Two fibers handing control to each other with fiber.yield.
local function yields(n)
    local done = 0
    local function spin()
        for _ = 1, n do fiber.yield() end
        done = done + 1
    end
    local t0 = now()
    fiber.create(spin)
    fiber.create(spin)
    while done < 2 do fiber.sleep(0.001) end
    return 2 * n / (now() - t0)
end

-- Ping-pong over two channels: one round trip is a put and a get each way.
local function channel_round_trips(n)
    local ping, pong = fiber.channel(1), fiber.channel(1)
    fiber.create(function()
        for _ = 1, n do
            pong:put(ping:get())
        end
    end)
    local t0 = now()
    for i = 1, n do
        ping:put(i)
        pong:get()
    end
    return n / (now() - t0)
end

-- Memory of parked fibers: RSS growth divided by the number of sleeping fibers.
local function rss_per_fiber(n)
    collectgarbage('collect')
    local before = rss_kb()
    local release = fiber.cond()
    for _ = 1, n do
        fiber.create(function() release:wait() end)
    end
    local after = rss_kb()
    release:broadcast()
    fiber.sleep(0.01)
    return (after - before) * 1024 / n
end

report('create+finish 10k', create_finish(10000), 'fibers/s')
report('create+finish 100k', create_finish(100000), 'fibers/s')
report('fiber.yield', yields(200000), 'switches/s')
report('channel put/get', channel_round_trips(100000), 'round trips/s')
report('RSS per live fiber (10k)', rss_per_fiber(10000), 'bytes')
os.exit(0)
