-- kill -9 of the leader under synchronous write load (three nodes, quorum 2): no
-- acknowledged write is lost, and exactly one node is writable after the failover.
--   node failover_load_driver.lua NODE_BINARY INSTANCE_SCRIPT BASE_PORT
local tap = require('tap')
local fiber = require('fiber')
local clock = require('clock')
local fio = require('fio')
package.path = fio.dirname(arg[0]) .. '/?.lua;' .. package.path
local procs = require('procs')

local binary, instance, base = arg[1], arg[2], tonumber(arg[3])
local uris = {}
for i = 1, 3 do uris[i] = '127.0.0.1:' .. (base + i) end
local peers = table.concat(uris, ',')

-- n1 stands first and leads; then n2 and n3 become candidates too. (With one other
-- candidate only, a voter holding more of the dead leader's rows than that candidate
-- refuses it its vote, rightly, and nobody can win.)
local function start(i, mode)
    procs.spawn(string.format('%s %s n%d %s %s 0.25 %s >n%d.out 2>&1', binary, instance, i, uris[i], peers, mode, i),
        'n' .. i .. '.pid')
end
local function kill(i) procs.kill('n' .. i .. '.pid') end
local eval = procs.evaluator(function(i) return uris[i] end, 15)
local wait = procs.wait
local function writable(alive)
    local w = {}
    for _, i in ipairs(alive) do
        if eval(i, 'return box.info.ro') == false then table.insert(w, i) end
    end
    return w
end

local test = tap.test('failover_under_load')
test:plan(5)
local ok, err = pcall(function()
    start(1, 'candidate')
    start(2, 'voter')
    start(3, 'voter')
    -- Each instance script ends by setting its election mode: wait for that, and for n1 to
    -- win (before its script ends it is writable with elections still off).
    test:ok(wait(function()
        return eval(2, 'return box.cfg.election_mode') == 'voter' and eval(3, 'return box.cfg.election_mode') == 'voter'
            and eval(1, 'return box.info.election.state') == 'leader' and writable({1, 2, 3})[1] == 1
    end, 60), 'n1 is elected the writable leader')
    eval(2, "box.cfg{election_mode = 'candidate'}")
    eval(3, "box.cfg{election_mode = 'candidate'}")
    local leader = 1
    local acked, stop, next_key = {}, false, 0
    local done = fiber.channel(8)
    for _ = 1, 8 do
        fiber.create(function()
            local target = leader
            while not stop do
                next_key = next_key + 1
                local k = next_key
                local r = eval(target, 'return box.space.sync:insert{...}', k)
                if r ~= nil then
                    acked[k] = true
                else
                    -- Not the leader any more, or gone: find the writable one.
                    fiber.sleep(0.01)
                    target = writable({1, 2, 3})[1] or target
                end
            end
            done:put(true)
        end)
    end
    fiber.sleep(1)
    local before = 0
    for _ in pairs(acked) do before = before + 1 end
    kill(leader)
    local t0 = clock.monotonic()
    local alive = {}
    for i = 1, 3 do if i ~= leader then table.insert(alive, i) end end
    local took = wait(function() return #writable(alive) == 1 end, 30) and clock.monotonic() - t0
    fiber.sleep(1.5)
    stop = true
    for _ = 1, 8 do done:get(20) end
    local total = 0
    for _ in pairs(acked) do total = total + 1 end
    test:ok(took and total > before, string.format(
        'a survivor leads after the kill (%.2f s); writes went on: %d acknowledged before, %d in all',
        took or -1, before, total))
    test:is(#writable(alive), 1, 'exactly one survivor is writable')
    start(leader, 'voter')
    local new_leader = writable(alive)[1]
    local keys = {}
    for k in pairs(acked) do table.insert(keys, k) end
    table.sort(keys)
    -- Missing acknowledged keys on node i, and the first of them (-1: the node did not answer).
    local function missing(i)
        local n, first = eval(i, [[
            local n, first = 0
            for _, k in ipairs(...) do
                if box.space.sync:get{k} == nil then n = n + 1 first = first or k end
            end
            return n, first]], keys)
        return n or -1, first
    end
    local function missing_on(i) return (missing(i)) end
    if not test:is(missing_on(new_leader), 0, 'the new leader has every acknowledged write') then
        for _, i in ipairs(alive) do
            local n, first = missing(i)
            test:diag(string.format('node %d (leader %s): %d missing, first %s; synchro %s', i,
                tostring(i == new_leader), n, tostring(first),
                require('json').encode(eval(i, 'return box.info.synchro') or {})))
        end
    end
    -- Its script first runs box.cfg with elections off (writable for a moment), then sets
    -- the election mode: judge once that is done.
    local caught_up = wait(function()
        return eval(leader, 'return box.cfg.election_mode') == 'voter' and missing_on(leader) == 0
    end, 30)
    test:ok(caught_up and #writable({1, 2, 3}) == 1,
        'the old leader restarts as a follower with every acknowledged write; still one writable node')
end)
if not ok then test:fail('driver error: ' .. tostring(err)) end
for i = 1, 3 do kill(i) end
os.exit(test:check() and 0 or 1)
