local tap = require('tap')
local log = require('log')
local fiber = require('fiber')
local test = tap.test('log')
test:plan(9)

local path = os.tmpname()
log.cfg({ log = path })
local function lines()
    local f = io.open(path, 'r')
    local text = f:read('*a')
    f:close()
    local out = {}
    for l in text:gmatch('[^\n]+') do out[#out + 1] = l end
    return out
end

log.info('hello %s %d', 'world', 5)
local l = lines()
test:like(l[1], '^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d %[%d+%] main/%d+/log.test.lua I> hello world 5$',
    'Tarantool line format: time, pid, cord/fiber id/fiber name, level letter')
log.warn('w') log.error('e') log.verbose('hidden') log.debug('hidden')
l = lines()
test:like(l[2], ' W> w$', 'warn letter')
test:like(l[3], ' E> e$', 'error letter')
test:is(#l, 3, 'verbose and debug are below the default level')
log.cfg({ level = 'debug' })
log.debug('shown')
test:like(lines()[4], ' D> shown$', 'debug shown after log.cfg{level}')
log.info({ a = 1 })
test:like(lines()[5], ' I> {"a":1}$', 'a table is logged as JSON')
fiber.create(function() fiber.name('worker') log.info('from fiber') end)
test:like(lines()[6], 'main/%d+/worker I> from fiber$', 'the fiber name is in the line')
log.cfg({ format = 'json' })
log.info('as json')
local last = lines()[7]
test:like(last, '^{"time": "%d+%-%d+%-%d+T[%d:.]+[+-]%d+", "level": "INFO", "message": "as json", "pid": %d+ , "cord_name": "main", "fiber_id": %d+, "fiber_name": "log.test.lua", "file": "log.test.lua", "line": %d+}$', 'json format as Tarantool')
test:is(select(2, pcall(log.cfg, { format = 'xml' })), "log.cfg: 'format' expected json,plain", 'bad format rejected')
os.remove(path)
os.exit(test:check() and 0 or 1)
