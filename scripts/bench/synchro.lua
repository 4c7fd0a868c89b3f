-- Synchronous commit latency and throughput: a leader and two replicas on loopback,
-- replication_synchro_quorum = 2, clients inserting into an is_sync space over net.box.
--   node synchro.lua BINARY [SECONDS] [FIBERS]
-- BINARY is the server (tarantool or node); the client is whoever runs this script.
local fiber = require('fiber')
local fio = require('fio')
local clock = require('clock')
local net = require('net.box')

local binary, seconds, fibers = arg[1], tonumber(arg[2] or 5), tonumber(arg[3] or 50)
local here = fio.dirname(fio.abspath(debug.getinfo(1, 'S').source:sub(2)))
local root = fio.tempdir()
math.randomseed(os.time() * 1000 + math.floor(clock.realtime() * 1000) % 1000)
local base = 20000 + math.random(0, 20000)
local ports = {base + 1, base + 2, base + 3}
local peers = table.concat(ports, ',')
for i = 1, 3 do
    os.execute(string.format("%s %s/raft_instance.lua %s/%d %d %s 1 2 >%s/out%d.txt 2>&1 &",
        binary, here, root, i, ports[i], peers, root, i))
end

local function connect(i)
    local deadline = clock.monotonic() + 60
    while clock.monotonic() < deadline do
        local c = net.connect('127.0.0.1:' .. ports[i], {wait_connected = 1})
        if c:is_connected() then
            local ok, status = pcall(c.eval, c, 'return box.info.status')
            if ok and status == 'running' then return c end
        end
        fiber.sleep(0.05)
    end
    error('instance ' .. i .. ' did not start; see ' .. root)
end
local leader = connect(1)
connect(2)
connect(3)
-- Both replicas follow the leader (their relays are up) before the clock starts.
local function following()
    local n = 0
    for _, r in pairs(leader:eval('return box.info.replication')) do
        if r.downstream ~= nil and r.downstream.status == 'follow' then n = n + 1 end
    end
    return n
end
local deadline = clock.monotonic() + 60
while following() < 2 do
    if clock.monotonic() > deadline then error('replicas do not follow; see ' .. root) end
    fiber.sleep(0.05)
end
fiber.sleep(tonumber(os.getenv("SETTLE") or 1))
while not pcall(function() return leader.space.sync end) or leader.space.sync == nil do
    fiber.sleep(0.05)
    leader:reload_schema()
end

-- Single-client latency first, then throughput with many fibers.
-- A commit that times out (replication_synchro_timeout, 2 s here) counts as a failure and
-- its full wait as its latency: Tarantool 2.6.0 stalls now and then (one insert in a few
-- hundred waits out the whole timeout) and the figures must show it.
local failures = 0
local function insert(k)
    local ok = pcall(leader.space.sync.insert, leader.space.sync, {k})
    if not ok then failures = failures + 1 end
    return ok
end
local lat = {}
for i = 1, 500 do
    local t0 = clock.monotonic()
    insert(i)
    lat[i] = clock.monotonic() - t0
end
table.sort(lat)
local count, stop = 0, false
local done = fiber.channel(fibers)
for f = 1, fibers do
    fiber.create(function()
        local k = f * 1000000
        while not stop do
            k = k + 1
            if insert(k) then count = count + 1 end
        end
        done:put(true)
    end)
end
fiber.sleep(tonumber(os.getenv("SETTLE") or 1))
local c0, t0 = count, clock.monotonic()
fiber.sleep(seconds)
local rate = (count - c0) / (clock.monotonic() - t0)
stop = true
for _ = 1, fibers do done:get(5) end
print(string.format('sync_insert_p50_latency\t%.3f\tms', lat[250] * 1000))
print(string.format('sync_insert_p99_latency\t%.3f\tms', lat[495] * 1000))
print(string.format('sync_insert_throughput\t%.0f\trps', rate))
print(string.format('sync_insert_timeouts\t%d\tcount', failures))
for i = 1, 3 do
    local f = fio.open(fio.pathjoin(root, tostring(i), 'pid'))
    if f then os.execute('kill -9 ' .. f:read() .. ' 2>/dev/null') f:close() end
end
os.exit(0)
