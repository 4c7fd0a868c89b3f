local tap = require('tap')
local fiber = require('fiber')
local test = tap.test('fiber.channel')
test:plan(22)

local ch = fiber.channel()
test:is(ch:size(), 0, 'default capacity is 0')
test:is(ch:is_full(), true, 'capacity 0 is always full')
test:is(ch:put(1, 0), false, 'rendezvous put without a reader times out')
local got
fiber.create(function() got = ch:get() end)
test:is(ch:has_readers(), true, 'a waiting reader is seen')
test:is(ch:put('x'), true, 'rendezvous put hands the value to the reader')
fiber.yield()
test:is(got, 'x', 'the reader got it')

local writer_done = false
fiber.create(function() writer_done = ch:put('y') end)
test:is(ch:has_writers(), true, 'a waiting writer is seen')
test:is(ch:get(), 'y', 'get takes from a waiting writer')
fiber.yield()
test:is(writer_done, true, 'and the writer returns true')

local b = fiber.channel(2)
test:ok(b:put(1) and b:put(2), 'buffered puts')
test:is(b:put(3, 0.01), false, 'a full channel times out')
test:is(b:count(), 2, 'count')
test:is_deeply({ b:get(), b:get(), b:get(0) }, { 1, 2 }, 'FIFO, then nil on timeout')

local c = fiber.channel(1)
local results = {}
for i = 1, 3 do fiber.create(function() results[i] = c:get() end) end
c:close()
fiber.yield()
test:is(#results, 0, 'close wakes readers with nil')
test:is(c:is_closed(), true, 'is_closed')
test:is(c:put(1), false, 'put on a closed channel is false')

local d = fiber.channel(1)
d:put('kept')
local f = fiber.create(function() d:put('blocked') end)
f:cancel()
fiber.yield()
test:is(f:status(), 'dead', 'cancel ends a writer blocked on a full channel')
test:is(d:get(), 'kept', 'the buffered message is intact')
test:is(d:get(0), nil, 'the cancelled message was not delivered')

test:is(select(2, pcall(d.put, d)), 'usage: channel:put(var [, timeout])', 'put without a value')
test:is(select(2, pcall(d.get, d, 'x')), 'usage: channel:get([timeout])', 'get with a bad timeout')
test:is(select(2, pcall(fiber.channel, -1)), 'fiber.channel(size): negative size', 'negative size')
os.exit(test:check() and 0 or 1)
