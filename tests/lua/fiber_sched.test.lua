-- Scheduler semantics that the fast paths must keep: channels, conds, cancel at every
-- yield point, timeouts, many live fibers. Runs unchanged on Tarantool 2.6.
local tap = require('tap')
local fiber = require('fiber')
local test = tap.test('fiber_sched')
test:plan(37)

-- Rendezvous: with capacity 0 a put waits for a reader.
do
    local ch = fiber.channel(0)
    local log = {}
    local w = fiber.create(function()
        table.insert(log, 'put')
        local ok = ch:put('x')
        table.insert(log, 'put done ' .. tostring(ok))
    end)
    test:is(table.concat(log, ','), 'put', 'put on a rendezvous channel waits')
    test:ok(ch:has_writers(), 'the writer is waiting')
    test:is(ch:get(), 'x', 'get takes the value from the writer')
    fiber.yield()
    test:is(table.concat(log, ','), 'put,put done true', 'the writer is released')
    test:is(w:status(), 'dead', 'and finished')
end

-- Timeouts on put and get.
do
    local ch = fiber.channel(0)
    local t0 = fiber.clock()
    test:is(ch:get(0.02), nil, 'get times out with nil')
    test:ok(fiber.clock() - t0 >= 0.015, 'after the timeout')
    test:is(ch:put(1, 0.01), false, 'put on a full channel times out with false')
    test:is(ch:has_writers(), false, 'a timed-out writer is gone')
    test:is(ch:get(0), nil, 'get(0) does not wait')
end

-- close wakes all readers and writers.
do
    local ch = fiber.channel(0)
    local got = {}
    for i = 1, 3 do
        fiber.create(function() local v = tostring(ch:get()) got[#got + 1] = v end)
    end
    local full = fiber.channel(1)
    full:put(0)
    fiber.create(function() local v = tostring(full:put(1)) got[#got + 1] = v end)
    ch:close()
    full:close()
    fiber.yield()
    table.sort(got)
    test:is(table.concat(got, ','), 'false,nil,nil,nil', 'close wakes readers with nil, writers with false')
    test:is(ch:put(1), false, 'put on a closed channel is false')
    test:ok(ch:is_closed(), 'is_closed')
end

-- Buffered channel keeps order and passes nil.
do
    local ch = fiber.channel(3)
    ch:put(1) ch:put(nil) ch:put(3)
    test:ok(ch:is_full(), 'full at capacity')
    local a, b, c = ch:get(), ch:get(), ch:get()
    test:is_deeply({ a, b, c }, { 1, nil, 3 }, 'FIFO with nil')
end

-- Cancel at every kind of yield point raises 'fiber is cancelled'.
local function cancelled_at(name, wait)
    local res
    local f = fiber.create(function()
        local ok, err = pcall(wait)
        res = (not ok) and tostring(err) or 'returned'
    end)
    f:cancel()
    fiber.sleep(0.001)
    test:is(res, 'fiber is cancelled', 'cancel during ' .. name)
end
cancelled_at('sleep', function() fiber.sleep(100) end)
cancelled_at('channel get', function() fiber.channel(0):get() end)
cancelled_at('channel put', function() fiber.channel(0):put(1) end)

-- Tarantool 2.6 quirks: a cancel ends a cond wait as a wakeup (true, no error), and join
-- does not react to a cancel at all.
do
    local res
    local f = fiber.create(function() res = { pcall(fiber.cond().wait, fiber.cond(), 10) } end)
    f:cancel()
    fiber.sleep(0.001)
    test:is_deeply(res, { true, true }, 'a cancel ends a cond wait like a wakeup')
    local joined
    local g = fiber.create(function()
        local j = fiber.new(function() fiber.sleep(0.01) return 7 end)
        j:set_joinable(true)
        joined = { pcall(j.join, j) }
    end)
    g:cancel()
    fiber.sleep(0.03)
    test:is_deeply(joined, { true, true, 7 }, 'join ignores a cancel')
end

-- cond: signal wakes one, broadcast wakes all, wait times out, wakeup ends a wait.
do
    local cond = fiber.cond()
    local woke = 0
    for _ = 1, 3 do
        fiber.create(function() if cond:wait() then woke = woke + 1 end end)
    end
    cond:signal()
    fiber.yield()
    test:is(woke, 1, 'signal wakes one waiter')
    cond:broadcast()
    fiber.yield()
    test:is(woke, 3, 'broadcast wakes the rest')
    test:is(cond:wait(0.01), false, 'wait times out with false')
    local res
    local w = fiber.create(function() res = cond:wait(10) end)
    w:wakeup()
    fiber.yield()
    test:is(res, true, 'wakeup ends a cond wait with true')
end

-- wakeup ends a sleep early.
do
    local done = false
    local f = fiber.create(function() fiber.sleep(100) done = true end)
    f:wakeup()
    fiber.yield()
    test:ok(done, 'wakeup ends a sleep')
end

-- Sleeping fibers wake in deadline order.
do
    local order = {}
    for _, d in ipairs({ 0.03, 0.01, 0.02 }) do
        fiber.create(function() fiber.sleep(d) order[#order + 1] = d end)
    end
    fiber.sleep(0.06)
    test:is(table.concat(order, ','), '0.01,0.02,0.03', 'sleepers wake in deadline order')
end

-- fiber.yield lets other ready fibers run, round robin.
do
    local log = {}
    for i = 1, 2 do
        fiber.create(function()
            for j = 1, 3 do log[#log + 1] = i .. j fiber.yield() end
        end)
    end
    fiber.sleep(0.001)
    test:is(table.concat(log, ' '), '11 21 12 22 13 23', 'yield is round robin')
end

-- A join that waits wakes exactly when the joined fiber ends.
do
    local j = fiber.new(function() fiber.sleep(0.01) return 'r' end)
    j:set_joinable(true)
    local ok, r = j:join()
    test:is_deeply({ ok, r }, { true, 'r' }, 'join waits for a sleeping fiber')
    local e = fiber.new(function() error('boom', 0) end)
    e:set_joinable(true)
    local ok2, err = e:join()
    test:is_deeply({ ok2, tostring(err) }, { false, 'boom' }, 'join returns the error')
end

-- A sleep inside a plain coroutine inside a fiber, interleaved with another fiber.
do
    local log = {}
    local gen = coroutine.wrap(function()
        for i = 1, 2 do fiber.sleep(0.001) coroutine.yield(i) end
    end)
    fiber.create(function() log[#log + 1] = 'other' end)
    log[#log + 1] = gen()
    log[#log + 1] = gen()
    test:is(table.concat(log, ','), 'other,1,2', 'sleep in a coroutine generator')
end

-- fiber.self inside a fiber, fiber.id, status from outside.
do
    local inner
    local f = fiber.create(function() inner = fiber.self():id() fiber.sleep(0.01) end)
    test:is(inner, f:id(), 'fiber.self inside the fiber')
    test:is(f:status(), 'suspended', 'a parked fiber is suspended')
    test:isnt(fiber.id(), f:id(), 'the creator has its own id')
end

-- 100,000 live fibers at once, then all released.
do
    local n = 100000
    local cond = fiber.cond()
    local started, finished = 0, 0
    for _ = 1, n do
        fiber.create(function()
            started = started + 1
            cond:wait()
            finished = finished + 1
        end)
    end
    test:is(started, n, '100,000 fibers are alive at once')
    cond:broadcast()
    while finished < n do fiber.sleep(0.001) end
    test:is(finished, n, 'and all of them finish')
end

-- 10,000 sleepers with the same deadline.
do
    local n, done = 10000, 0
    for _ = 1, n do fiber.create(function() fiber.sleep(0.005) done = done + 1 end) end
    fiber.sleep(0.05)
    test:is(done, n, '10,000 sleepers wake')
end

-- fiber.create inside fiber.create runs depth first.
do
    local log = {}
    fiber.create(function()
        log[#log + 1] = 'a'
        fiber.create(function() log[#log + 1] = 'b' fiber.yield() log[#log + 1] = 'd' end)
        log[#log + 1] = 'c'
    end)
    fiber.sleep(0.001)
    test:is(table.concat(log), 'abcd', 'nested create is eager')
end

os.exit(test:check() and 0 or 1)
