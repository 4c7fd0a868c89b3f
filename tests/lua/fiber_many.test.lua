-- 100,000 live fibers at once: far past LuaJIT's 8,000-slot limit on handles held by Rust,
-- which is why parked fibers live in the registry and not in mlua handles.
local tap = require('tap')
local fiber = require('fiber')
local test = tap.test('many fibers')
test:plan(4)

local N = 100000
local release = fiber.cond()
local started, finished = 0, 0
for _ = 1, N do
    fiber.create(function()
        started = started + 1
        release:wait()
        finished = finished + 1
    end)
end
test:is(started, N, 'all fibers started and parked')
local alive = 0
for _, f in pairs(fiber.info()) do
    if f.name == 'lua' then alive = alive + 1 end
end
test:is(alive, N, 'fiber.info sees them all alive')
release:broadcast()
while finished < N do fiber.sleep(0.01) end
test:is(finished, N, 'all of them finished after the broadcast')

local sleepers = 0
for _ = 1, N do
    fiber.create(function() fiber.sleep(0.05) sleepers = sleepers + 1 end)
end
while sleepers < N do fiber.sleep(0.01) end
test:is(sleepers, N, '100,000 sleeping fibers all woke up')
os.exit(test:check() and 0 or 1)
