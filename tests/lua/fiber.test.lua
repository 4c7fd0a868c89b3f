local tap = require('tap')
local fiber = require('fiber')
local test = tap.test('fiber')
test:plan(14)

local order = {}
local f = fiber.create(function() table.insert(order, 'child') fiber.sleep(10) end)
table.insert(order, 'parent')
test:is(table.concat(order, ','), 'child,parent', 'fiber.create runs the child at once')
test:is(f:status(), 'suspended', 'a sleeping child is suspended')
test:is(fiber.self():status(), 'running', 'self is running')

local ran = false
fiber.new(function() ran = true end)
test:is(ran, false, 'fiber.new only schedules')
fiber.yield()
test:is(ran, true, 'the new fiber ran after a yield')

test:is(select(2, pcall(fiber.sleep, 'x')), 'fiber.sleep(delay): bad arguments', 'sleep checks its argument')
test:is(select(2, pcall(fiber.create)), 'fiber.create(function, ...): bad arguments', 'create checks its argument')

local cleanup = false
local c = fiber.create(function()
    local ok, err = pcall(fiber.sleep, 10)
    cleanup = not ok and tostring(err) == 'fiber is cancelled'
end)
c:cancel()
fiber.sleep(0)
test:ok(cleanup, 'a cancelled fiber gets fiber is cancelled at its yield')
test:is(c:status(), 'dead', 'and finishes')

local j = fiber.new(function(a, b) return a + b, 'x' end, 1, 2)
j:set_joinable(true)
local ok, sum, x = j:join()
test:is_deeply({ ok, sum, x }, { true, 3, 'x' }, 'join returns the results')

local co = coroutine.wrap(function() fiber.sleep(0.001) return 'slept' end)
test:is(co(), 'slept', 'fiber.sleep works inside a plain coroutine')

test:is(select(2, pcall(f.name, fiber.find(999999) or f)), 'lua', 'name of a live fiber')
-- A fiber that cancels itself stops at once (cancel and kill alike).
local after = {}
for _, how in ipairs({'cancel', 'kill'}) do
    local f = fiber.create(function()
        local ok, e = pcall(function()
            if how == 'cancel' then fiber.self():cancel() else fiber.kill(fiber.id()) end
            after[how] = 'went on'
        end)
        after[how] = after[how] or (not ok and tostring(e))
    end)
    local _ = f
end
test:is(after.cancel, 'fiber is cancelled', 'self-cancel raises at once')
test:is(after.kill, 'fiber is cancelled', 'self-kill raises at once')
os.exit(test:check() and 0 or 1)
