-- The master's side of replication against tarantool 2.6.0's, run by node:
--   node scripts/bench/relay.lua MASTER_BINARY ROWS
-- A tarantool replica JOINs a master holding ROWS tuples, then goes away while the master
-- writes ROWS more and comes back to catch up from the xlogs. Prints the seconds each took
-- (replica start included) and the master's worst fiber stall meanwhile.
local fio = require('fio')
local fiber = require('fiber')
local clock = require('clock')
local net = require('net.box')

local master_bin, rows = arg[1], tonumber(arg[2] or 1000000)
local here = fio.abspath(fio.dirname(arg[0]))
local dir = fio.tempdir()
local master_port, replica_port = 3491 + math.random(0, 500), 4491 + math.random(0, 500)

local function start(bin, script, sub, ...)
    fio.mkdir(dir .. '/' .. sub)
    local args = table.concat({...}, ' ')
    local pid_file = dir .. '/' .. sub .. '.pid'
    os.execute(('cd %s/%s && %s %s/%s %s >log 2>&1 & echo $! >%s'):format(dir, sub, bin, here, script, args, pid_file))
    local f = io.open(pid_file)
    local pid = f:read('*n')
    f:close()
    return pid
end

local function connect(port, user)
    for _ = 1, 500 do
        local c = net.connect(('%s127.0.0.1:%d'):format(user and 'admin:admin@' or '', port))
        if c:is_connected() then
            local ok = pcall(c.eval, c, 'return box.space.big ~= nil')
            if ok then return c end
        end
        fiber.sleep(0.02)
    end
    error('no instance on ' .. port)
end

local function replica_has(n)
    local deadline = clock.time() + 300
    while clock.time() < deadline do
        local ok, c = pcall(connect, replica_port, true)
        if ok then
            local count = c:eval('return box.space.big:count()')
            c:close()
            if count == n then return end
        end
        fiber.sleep(0.02)
    end
    error('the replica did not catch up')
end

local master_pid = start(master_bin, 'relay_master.lua', 'm', master_port)
local m = connect(master_port, true)
m:call('load', {1, rows})

m:eval('_G.worst = 0')
local t = clock.time()
local replica_pid = start('tarantool', 'relay_replica.lua', 'r', replica_port, master_port)
replica_has(rows)
print(('join %d tuples: %.2f s, master stall %.1f ms'):format(rows, clock.time() - t, m:eval('return _G.worst') * 1000))

os.execute('kill ' .. replica_pid)
fiber.sleep(0.5)
m:call('load', {rows + 1, 2 * rows})
m:eval('_G.worst = 0')
t = clock.time()
replica_pid = start('tarantool', 'relay_replica.lua', 'r', replica_port, master_port)
replica_has(2 * rows)
print(('catch-up %d rows: %.2f s, master stall %.1f ms'):format(rows, clock.time() - t, m:eval('return _G.worst') * 1000))

os.execute('kill ' .. replica_pid .. ' ' .. master_pid)
fiber.sleep(0.5)
os.execute('rm -rf ' .. dir)
os.exit(0)
