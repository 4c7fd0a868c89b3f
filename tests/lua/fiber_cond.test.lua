local tap = require('tap')
local fiber = require('fiber')
local test = tap.test('fiber.cond')
test:plan(8)

local cond = fiber.cond()
test:is(cond:wait(0.01), false, 'wait times out with false')
local woke = {}
for i = 1, 3 do fiber.create(function() woke[i] = cond:wait() end) end
cond:signal()
fiber.yield()
test:is(#woke, 1, 'signal wakes one waiter')
test:is(woke[1], true, 'wait returns true when signalled')
cond:broadcast()
fiber.yield()
test:is(#woke, 3, 'broadcast wakes the rest')

local waited, cancelled
local f = fiber.create(function()
    waited = { pcall(cond.wait, cond) }
    local ok, err = pcall(fiber.testcancel)
    cancelled = not ok and tostring(err)
end)
f:cancel()
fiber.yield()
test:is_deeply({ waited, cancelled }, { { true, true }, 'fiber is cancelled' },
    'a cancel ends wait with true (as Tarantool 2.6), the next yield point raises')
test:is(select(2, pcall(cond.wait, cond, 'x')), 'usage: cond:wait([timeout])', 'bad timeout')

local sleeper = fiber.create(function() fiber.sleep(10) end)
local t0 = fiber.clock()
sleeper:wakeup()
fiber.yield()
test:is(sleeper:status(), 'dead', 'wakeup ends a sleep early')
test:ok(fiber.clock() - t0 < 1, 'and quickly')
os.exit(test:check() and 0 or 1)
