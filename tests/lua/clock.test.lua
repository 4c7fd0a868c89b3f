local tap = require('tap')
local clock = require('clock')
local ffi = require('ffi')
local test = tap.test('clock')
test:plan(10)

for _, name in ipairs({ 'realtime', 'monotonic', 'proc', 'thread', 'time' }) do
    local ok = type(clock[name]()) == 'number' and ffi.istype('uint64_t', clock[name .. '64']())
    test:ok(ok, name .. ' is a number and ' .. name .. '64 is uint64_t')
end
local t, t64 = clock.time(), clock.time64()
test:ok(math.abs(tonumber(t64) / 1e9 - t) < 1, 'time64 is nanoseconds of time')
local a = clock.monotonic64()
test:ok(clock.monotonic64() >= a, 'monotonic64 does not go back')
local r = clock.bench(function(x, y) return x + y, 'z' end, 1, 2)
test:is_deeply({ type(r[1]), r[2], r[3] }, { 'number', 3, 'z' }, 'bench returns the time and the results')
test:is(select(2, pcall(clock.bench)), "builtin/clock.lua:35: attempt to call local 'fun' (a nil value)",
    'bench needs a function')
test:is(select(2, pcall(clock.time, 1)), 'wrong number of arguments for function call', 'clocks take no arguments')
os.exit(test:check() and 0 or 1)
