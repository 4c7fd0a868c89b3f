#!/usr/bin/env tarantool
-- The fibers that serve IPROTO requests are reused (src/iproto/workers.rs), as Tarantool's
-- request fibers are: a request must not see what an earlier one left in its fiber. Each
-- starts in a fiber named 'main', as in 2.6 (named after the TX cord); node goes one step
-- further than 2.6, which keeps a name an earlier request gave the fiber.
local tap = require('tap')
local fio = require('fio')
local fiber = require('fiber')
local net = require('net.box')

local free_port = require('free_port')

local dir = fio.tempdir()
local port = free_port()
box.cfg{work_dir = dir, log_level = 0, listen = '127.0.0.1:' .. port}
box.schema.user.create('nb', {password = 'secret'})
box.schema.user.grant('nb', 'read,write,execute,create,drop', 'universe')
box.schema.space.create('kv'):create_index('pk')

function state(name, value)
    local f = fiber.self()
    local seen = {id = f:id(), name = f:name(), storage = f.storage.x, sid = box.session.id(),
        user = box.session.user(), in_txn = box.is_in_txn()}
    if name then f:name(name) end
    if value then f.storage.x = value end
    return seen
end
function fail_after_yield()
    fiber.self():name('failing')
    fiber.self().storage.x = 'left by a failure'
    fiber.sleep(0.01)
    error('failed after a yield')
end
function leave_txn()
    box.begin()
    box.space.kv:replace{1, 'uncommitted'}
    return 'left open'
end
function cancel_self()
    fiber.self():cancel()
    fiber.sleep(0)
end
function slow(x) fiber.sleep(0.2) return x end
saved = nil
function save_self() saved = fiber.self() return saved:id() end
function answer() return 1 end

local test = tap.test('iproto fibers')
test:plan(17)

local c = net.connect('nb:secret@127.0.0.1:' .. port)
local guest = net.connect('127.0.0.1:' .. port)
box.schema.user.grant('guest', 'execute', 'universe')

local first = c:call('state', {'renamed', 'kept?'})
test:is(first.name, 'main', 'a request fiber is named main')
local second = c:call('state')
test:is(second.id, first.id, 'a request fiber is reused for the next request')
test:is(second.name, 'main', 'a name given by an earlier request is gone')
test:is(second.storage, nil, 'fiber.self().storage of an earlier request is gone')

local ok, e = pcall(c.call, c, 'fail_after_yield')
test:ok(not ok and tostring(e):find('failed after a yield') ~= nil, 'a failing request replies its error')
local after = c:call('state')
test:is_deeply({after.name, after.storage}, {'main', nil}, 'nothing left by a request that yielded and failed')

local mine, theirs = c:call('state'), guest:call('state')
test:is(theirs.id, mine.id, 'two connections share the reused fiber')
test:is_deeply({mine.user, theirs.user}, {'nb', 'guest'}, 'each request sees its own user')
test:isnt(mine.sid, theirs.sid, 'each request sees its own session id')

ok, e = pcall(c.call, c, 'leave_txn')
test:is(not ok and e.code, box.error.FUNCTION_TX_ACTIVE, 'a call leaving a transaction open fails')
test:is(c:call('state').in_txn, false, 'and the next request is not in that transaction')
test:is(box.space.kv:get{1}, nil, 'the transaction was rolled back')

ok, e = pcall(c.call, c, 'cancel_self')
test:is(not ok and e.message, 'fiber is cancelled', 'a request that cancels its fiber fails')
test:is(c:call('answer'), 1, 'the next request is served (by another fiber)')

-- A wakeup of an idle request fiber (an object kept from a request) is not a request.
local id = c:call('save_self')
saved:wakeup()
fiber.sleep(0)
test:is(c:call('answer'), 1, 'a request after a stray wakeup of its fiber is served')
test:is(fiber.find(id) ~= nil and fiber.find(id):status(), 'suspended', 'the woken fiber stays parked')

-- A slow request holds up nothing: the fast one runs in another fiber meanwhile.
local order = {}
local done = fiber.channel(2)
fiber.create(function() c:call('slow', {'slow'}) table.insert(order, 'slow') done:put(true) end)
fiber.create(function() c:call('answer') table.insert(order, 'fast') done:put(true) end)
done:get(3)
done:get(3)
test:is_deeply(order, {'fast', 'slow'}, 'a fast request overtakes a slow one on the same connection')

c:close()
guest:close()
os.exit(test:check() and 0 or 1)
