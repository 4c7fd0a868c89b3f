-- Drives the lecture's raft-demo.lua, unchanged, on four node processes (spec §4.5's
-- transcript): bootstrap, an election, a synchronous write, failover after kill -9, the old
-- leader back as a follower, a quorum timeout. Run inside a network namespace of its own
-- (tests/replication_demo.rs), because the demo's ports are fixed: 3301..3304.
--   node raft_demo_driver.lua NODE_BINARY DEMO_SCRIPT
local tap = require('tap')
local fiber = require('fiber')
local clock = require('clock')
local fio = require('fio')
package.path = fio.dirname(arg[0]) .. '/?.lua;' .. package.path
local procs = require('procs')

local binary, demo = arg[1], arg[2]
local ports = {3301, 3302, 3303, 3304}

local function start(port)
    procs.spawn(string.format('%s %s %d </dev/null >%d.out 2>&1', binary, demo, port, port), port .. '.pid')
end
local function kill(port) procs.kill(port .. '.pid') end
local eval = procs.evaluator(function(port) return 'admin:test@127.0.0.1:' .. port end, 5)
local wait = procs.wait

local test = tap.test('raft_demo')
test:plan(9)

local ok, err = pcall(function()
    for _, p in ipairs(ports) do start(p) end

    test:ok(wait(function()
        for _, p in ipairs(ports) do
            if eval(p, 'return box.info.status') ~= 'running' then return false end
        end
        return true
    end, 60), 'four instances bootstrap one replica set')

    local ids = {}
    for _, p in ipairs(ports) do ids[p] = eval(p, 'return box.info.id') end
    test:is(ids[3301], 1, '3301 bootstrapped it: id 1')
    local ro = {}
    for _, p in ipairs(ports) do ro[#ro + 1] = eval(p, 'return box.info.ro') end
    test:is_deeply(ro, {false, true, true, true}, 'only 3301 is writable')

    eval(3301, "box.cfg{election_mode = 'candidate'}")
    for _, p in ipairs({3302, 3303, 3304}) do eval(p, "box.cfg{election_mode = 'voter'}") end
    local function show_all()
        for _, p in ipairs(ports) do
            local e = eval(p, 'return box.info.election') or {}
            local v = eval(p, 'return box.info.vclock') or {}
            local vs = {}
            for k, x in pairs(v) do table.insert(vs, k .. ':' .. x) end
            test:diag(string.format('%d: mode %s state %s term %s vote %s leader %s vclock {%s}', p,
                tostring(eval(p, 'return box.cfg.election_mode')), tostring(e.state), tostring(e.term),
                tostring(e.vote), tostring(e.leader), table.concat(vs, ', ')))
        end
    end
    if not test:ok(wait(function()
        return eval(3301, 'return box.info.election.state') == 'leader' and eval(3301, 'return box.info.ro') == false
    end, 20), '3301 is elected and writable') then show_all() end

    local _, create_err = eval(3301, "box.schema.space.create('sync', {is_sync = true}):create_index('pk')")
    local inserted, insert_err = eval(3301, "return box.space.sync:insert{1, 'first'}")
    wait(function() return eval(3303, 'return box.space.sync ~= nil') end, 5)
    local _, voter_err = eval(3303, "return box.space.sync:insert{2, 'voter'}")
    test:ok(inserted ~= nil and tostring(voter_err):find('read%-only') ~= nil,
        string.format('a synchronous insert on the leader commits, a voter refuses writes (%s / %s / %s)',
            tostring(create_err), tostring(insert_err), tostring(voter_err)))

    eval(3302, "box.cfg{election_mode = 'candidate', read_only = false}")
    fiber.sleep(0.5)
    local t0 = clock.monotonic()
    kill(3301)
    local became = wait(function()
        local state, r = eval(3302, 'return box.info.election.state, box.info.ro')
        return state == 'leader' and r == false
    end, 20)
    test:ok(became, string.format('after kill -9 of 3301, 3302 leads and is writable (%.2f s)', clock.monotonic() - t0))
    if not became then
        show_all()
        test:diag('3302 synchro: ' .. require('json').encode(eval(3302, 'return box.info.synchro') or {}))
    end

    local after, after_err = eval(3302, "return box.space.sync:insert{3, 'after failover'}")
    if after == nil then test:diag('insert after failover: ' .. tostring(after_err)) end
    start(3301)
    -- The demo's box.cfg says election_mode = 'off': the restarted node is a follower that
    -- replicates what was written meanwhile (2.6.3 too: spec §4.2).
    test:ok(after ~= nil and wait(function()
        return eval(3301, 'return box.info.election.state') == 'follower'
            and eval(3301, 'return box.space.sync:get{3} ~= nil') == true
    end, 30), '3301 restarted comes back as a follower with the new rows')

    kill(3304)
    eval(3302, 'box.cfg{replication_synchro_timeout = 1}')
    -- With 3304 gone, 3 of 4 remain: still a quorum ('N / 2 + 1' = 3). Take 3303 too.
    kill(3303)
    local t1 = clock.monotonic()
    local _, timeout_err = eval(3302, "return box.space.sync:insert{4, 'no quorum'}")
    local waited = clock.monotonic() - t1
    test:ok(tostring(timeout_err):find('Quorum collection for a synchronous transaction is timed out', 1, true)
        and waited > 0.9 and waited < 3, string.format('without a quorum the insert times out (%.2f s)', waited))
    local rows = eval(3302, 'return box.space.sync:select()') or {}
    test:is(#rows, 2, 'the timed-out row was rolled back')
end)
if not ok then test:fail('driver error: ' .. tostring(err)) end
for _, p in ipairs(ports) do kill(p) end
os.exit(test:check() and 0 or 1)
