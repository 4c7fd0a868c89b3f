#!/usr/bin/env tarantool
-- net.box to this very instance's binary port: calls, spaces, futures, many fibers on one
-- connection, schema reload, close. Runs unchanged on tarantool 2.6.
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
local s = box.schema.space.create('kv', {format = {{'k', 'unsigned'}, {'v', 'string'}}})
s:create_index('pk')
function double(x) return x * 2 end
function pushes(n)
    for i = 1, n do box.session.push(i) end
    return n
end

local test = tap.test('netbox')
test:plan(14)

local c = net.connect('nb:secret@127.0.0.1:' .. port)
test:is(c.state, 'active', 'connected and authenticated')
test:is(c:call('double', {21}), 42, 'call')
test:is(c:eval('return box.session.user()'), 'nb', 'eval runs as the user')
test:is(c.space.kv:insert{1, 'one'}.v, 'one', 'insert returns a tuple with field names')
test:is(c.space.kv.index.pk:get(1)[2], 'one', 'get by index')
local ok, e = pcall(c.space.kv.insert, c.space.kv, {1, 'again'})
test:is(ok == false and e.code, box.error.TUPLE_FOUND, 'duplicate key error code')

local f = c:call('pushes', {3}, {is_async = true})
local seen = {}
for _, v in f:pairs(5) do table.insert(seen, v) end
test:is_deeply(seen, {1, 2, 3, {3}}, 'future pairs: pushes then the result')

local done, sums = 0, {}
for i = 1, 10 do
    fiber.create(function()
        local sum = 0
        for j = 1, 50 do sum = sum + c:call('double', {j}) end
        sums[i] = sum
        done = done + 1
    end)
end
local deadline = fiber.clock() + 10
while done < 10 and fiber.clock() < deadline do fiber.sleep(0.01) end
local all = done == 10
for i = 1, 10 do all = all and sums[i] == 2550 end
test:ok(all, '10 fibers pipeline 50 calls each')

local reloaded = 0
c:on_schema_reload(function() reloaded = reloaded + 1 end)
c:eval("box.schema.space.create('fresh'):create_index('pk')")
test:ok(c.space.fresh ~= nil and reloaded == 1, 'DDL over the connection reloads its schema')
box.space.fresh:drop()
c:ping()
test:is(c.space.fresh, nil, 'a local drop is seen at the next response')

local bad = net.connect('nb:wrong@127.0.0.1:' .. port)
test:is(bad.error, "Incorrect password supplied for user 'nb'", 'bad password')

c:close()
test:is(c.state, 'closed', 'closed')
ok, e = pcall(c.call, c, 'double', {1})
test:is(not ok and e.message, 'Connection closed', 'a call on a closed connection')
test:is(net.self:call('double', {4}), 8, 'net.box.self')

os.exit(test:check() and 0 or 1)
