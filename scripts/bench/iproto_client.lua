-- The load of scripts/bench/iproto.sh, always run by real tarantool: net.box with FIBERS
-- fibers sharing one connection (so requests pipeline), REQUESTS requests per case (only
-- case number ONLY when given). Prints `case<TAB>requests/s<TAB>p99 ms`.
--   tarantool scripts/bench/iproto_client.lua PORT [REQUESTS] [FIBERS] [ONLY]
local port, total, nfibers = arg[1], tonumber(arg[2] or 200000), tonumber(arg[3] or 100)
local only = tonumber(arg[4])
local fiber = require('fiber')
local clock = require('clock')
local conn = require('net.box').connect('127.0.0.1:' .. port)
assert(conn:ping(), 'server not reachable')
local space = conn.space.bench

local cases = {
    {'ping', function() conn:ping() end},
    {'call echo(x)', function(i) conn:call('echo', {i}) end},
    {'select by pk', function(i) space:select({i % 1000 + 1}) end},
    {'replace (wal write)', function(i) space:replace({i % 1000 + 1, 'updated'}) end},
}

local function run_case(name, request)
    for i = 1, 1000 do request(i) end -- warm-up
    local per_fiber = math.floor(total / nfibers)
    -- Preallocated, and the garbage of the warm-up collected: growing a 200,000-entry
    -- table inside the timed loop stalled the client's event loop for both servers and
    -- made p99 a figure of the client (0.46-0.62 ms against 0.45-0.47 without).
    local latencies = require('table.new')(per_fiber * nfibers, 0)
    local count = 0
    collectgarbage()
    local done = fiber.channel(nfibers)
    local started = clock.monotonic()
    for f = 1, nfibers do
        fiber.create(function()
            local base = f * per_fiber
            for i = 1, per_fiber do
                local t0 = clock.monotonic()
                request(base + i)
                count = count + 1
                latencies[count] = clock.monotonic() - t0
            end
            done:put(true)
        end)
    end
    for _ = 1, nfibers do done:get() end
    local elapsed = clock.monotonic() - started
    table.sort(latencies)
    local p99 = latencies[math.ceil(#latencies * 0.99)]
    print(string.format('%s\t%.0f\t%.3f', name, #latencies / elapsed, p99 * 1000))
end

for i, case in ipairs(cases) do
    if only == nil or only == i then run_case(case[1], case[2]) end
end
os.exit(0)
