-- Failover time of a 4-instance replica set: kill -9 the leader, time until the one other
-- candidate is leader and writable (spec §4.5's scenario), ROUNDS times.
--   node failover.lua BINARY RT ROUNDS [FAST_FAILOVER]
-- Prints "failover_rt<RT>_median<TAB>seconds<TAB>s" and the p90 likewise.
local fiber = require('fiber')
local fio = require('fio')
local clock = require('clock')
local net = require('net.box')

local binary, rt, rounds = arg[1], tonumber(arg[2]), tonumber(arg[3] or 20)
local fast = arg[4] ~= 'false'
local here = fio.dirname(fio.abspath(debug.getinfo(1, 'S').source:sub(2)))
local root = fio.tempdir()
local ports = {}
math.randomseed(os.time() * 1000 + math.floor(clock.realtime() * 1000) % 1000)
local base = 20000 + math.random(0, 20000)
for i = 1, 4 do ports[i] = base + i end
local peers = table.concat(ports, ',')

local function start(i, mode)
    local dir = fio.pathjoin(root, tostring(i))
    os.execute(string.format("%s %s/raft_instance.lua %s %d %s %s 'N / 2 + 1' %s >%s/out%d.txt 2>&1 &",
        binary, here, dir, ports[i], peers, rt, mode, root, i))
end

local function pid(i)
    local f = fio.open(fio.pathjoin(root, tostring(i), 'pid'))
    if f == nil then return nil end
    local p = tonumber(f:read())
    f:close()
    return p
end

local conns = {}
local function conn(i)
    if conns[i] == nil or not conns[i]:is_connected() then
        conns[i] = net.connect('127.0.0.1:' .. ports[i], {wait_connected = 1})
    end
    return conns[i]
end

local function eval(i, expr, ...)
    local ok, a, b = pcall(function(...) return conn(i):eval(expr, {...}, {timeout = 2}) end, ...)
    if ok then return a, b end
    return nil
end

local function wait(cond, timeout, what)
    local deadline = clock.monotonic() + timeout
    while not cond() do
        if clock.monotonic() > deadline then error('timed out waiting for ' .. what) end
        fiber.sleep(0.005)
    end
end

for i = 1, 4 do start(i, 'off') end
wait(function() for i = 1, 4 do if eval(i, 'return box.info.status') ~= 'running' then return false end end return true end,
    60, 'bootstrap')
for i = 1, 4 do eval(i, "box.cfg{election_mode = 'voter', election_fast_failover = ...}", fast) end
eval(1, "box.cfg{election_mode = 'candidate', read_only = false}")
wait(function() return eval(1, 'return box.info.election.state') == 'leader' end, 30, 'the first leader')
local leader = 1
local times = {}
for round = 1, rounds do
    local next = leader % 4 + 1
    -- A restarted node comes back with the default fast failover: set it every round.
    eval(next, "box.cfg{election_mode = 'candidate', read_only = false, election_fast_failover = ...}", fast)
    -- A random phase against the heartbeats, as a real crash has.
    fiber.sleep(rt + math.random() * rt)
    local t0 = clock.monotonic()
    os.execute('kill -9 ' .. pid(leader))
    wait(function()
        local state, ro = eval(next, 'return box.info.election.state, box.info.ro')
        return state == 'leader' and ro == false
    end, 60, 'the new leader')
    table.insert(times, clock.monotonic() - t0)
    conns[leader] = nil
    start(leader, 'voter')
    local old = leader
    wait(function() return eval(old, 'return box.info.election.leader') == eval(next, 'return box.info.id') end,
        60, 'the old leader to follow')
    leader = next
end
table.sort(times)
print(string.format('failover_rt%s_median\t%.3f\ts', rt, times[math.ceil(#times / 2)]))
print(string.format('failover_rt%s_p90\t%.3f\ts', rt, times[math.ceil(#times * 0.9)]))
for i = 1, 4 do
    local p = pid(i)
    if p then os.execute('kill -9 ' .. p .. ' 2>/dev/null') end
end
os.exit(0)
