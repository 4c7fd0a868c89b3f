#!/usr/bin/env tarantool
-- space:on_replace triggers. Runs unchanged on tarantool 2.6.
local tap = require('tap')
local fio = require('fio')

box.cfg{work_dir = fio.tempdir(), log_level = 1}
local s = box.schema.space.create('t')
s:create_index('pk')

local test = tap.test('box_triggers')
test:plan(6)

test:test('on_replace sees old and new', function(t)
    t:plan(6)
    local seen = {}
    local function trig(old, new, space, request)
        table.insert(seen, {old and old[2] or 'nil', new and new[2] or 'nil', space, request})
    end
    s:on_replace(trig)
    s:insert{1, 'a'}
    s:replace{1, 'b'}
    s:update({1}, {{'=', 2, 'c'}})
    s:delete{1}
    s:update({99}, {{'=', 2, 'x'}})
    t:is(#seen, 4, 'one call per change, none for a missing key')
    t:is_deeply(seen[1], {'nil', 'a', 't', 'INSERT'}, 'insert')
    t:is_deeply(seen[2], {'a', 'b', 't', 'REPLACE'}, 'replace')
    t:is_deeply(seen[3], {'b', 'c', 't', 'UPDATE'}, 'update')
    t:is_deeply(seen[4], {'c', 'nil', 't', 'DELETE'}, 'delete')
    s:on_replace(nil, trig)
    s:insert{2, 'z'}
    t:is(#seen, 4, 'trigger removed')
end)

test:test('a failing trigger undoes the statement', function(t)
    t:plan(3)
    local function boom() error('no way') end
    s:on_replace(boom)
    local ok, e = pcall(s.insert, s, {3, 'x'})
    t:is(ok, false, 'the write fails')
    t:ok(tostring(e):find('no way') ~= nil, 'with the trigger error')
    s:on_replace(nil, boom)
    t:is(s:get{3}, nil, 'nothing was written')
end)

test:test('trigger list', function(t)
    t:plan(3)
    local function a() end
    local function b() end
    s:on_replace(a)
    s:on_replace(b)
    t:is(#s:on_replace(), 2, 'two triggers')
    s:on_replace(nil, a)
    t:is(#s:on_replace(), 1, 'one left')
    s:on_replace(nil, b)
    t:is(#s:on_replace(), 0, 'none left')
end)

test:test('triggers inside a transaction', function(t)
    t:plan(2)
    local n = 0
    local function count() n = n + 1 end
    s:on_replace(count)
    box.begin()
    s:insert{10, 'a'}
    s:insert{11, 'b'}
    box.rollback()
    t:is(n, 2, 'triggers ran for both')
    t:is(s:get{10}, nil, 'rolled back with the transaction')
    s:on_replace(nil, count)
end)

test:test('before_replace decides what is written', function(t)
    t:plan(9)
    local b = box.schema.space.create('b', {format = {{'id', 'unsigned'}, {'v', 'string'}}})
    b:create_index('pk')
    b:insert{1, 'a'}
    local seen = {}
    local function trig(old, new, space, request)
        table.insert(seen, request)
        if new == nil then return new end
        if new[2] == 'skip' then return old end
        if new[2] == 'drop' then return nil end
        if new[2] == 'up' then return new:update{{'=', 2, 'UP'}} end
        return new
    end
    b:before_replace(trig)
    t:is(select('#', b:replace{1, 'skip'}), 0, 'returning old skips the change')
    t:is(b:get{1}.v, 'a', 'nothing written')
    t:is(b:replace{1, 'up'}.v, 'UP', 'the returned tuple is written')
    t:is(b:update({1}, {{'=', 2, 'x'}}).v, 'x', 'update goes through')
    t:is(b:replace{1, 'drop'}.v, 'x', 'returning nil deletes the old tuple')
    t:is(b:get{1}, nil, 'deleted')
    t:is(select('#', b:insert{2, 'drop'}), 0, 'nil for a new tuple writes nothing')
    t:is_deeply(seen, {'REPLACE', 'REPLACE', 'UPDATE', 'REPLACE', 'INSERT'}, 'request types')
    b:before_replace(nil, trig)
    t:is(#b:before_replace(), 0, 'trigger removed')
    b:drop()
end)

test:test('a before_replace that returns nothing keeps the tuple', function(t)
    t:plan(3)
    local k = box.schema.space.create('k')
    k:create_index('pk')
    k:insert{1, 'a'}
    local calls = 0
    k:before_replace(function() calls = calls + 1 end)
    t:is(k:update(1, {{'=', 2, 'b'}})[2], 'b', 'the update is written')
    t:is(k:insert{2}[1], 2, 'the insert is written')
    t:is(calls, 2, 'the trigger ran')
    k:drop()
end)

os.exit(test:check() and 0 or 1)
