#!/usr/bin/env tarantool
-- Spaces, indexes and data requests, with Tarantool's error texts. Runs unchanged on
-- tarantool 2.6 (scripts/tap-on-tarantool.sh).
local tap = require('tap')
local fio = require('fio')

local dir = fio.tempdir()
box.cfg{work_dir = dir, log_level = 1}

local test = tap.test('box_space')
test:plan(12)

local function err(f, ...)
    local ok, e = pcall(f, ...)
    if ok then return 'no error' end
    return tostring(e)
end

test:test('create and drop', function(t)
    t:plan(12)
    local s = box.schema.space.create('test')
    t:is(s.id, 512, 'first user space id is 512')
    t:is(box.space.test, s, 'box.space.NAME')
    t:is(box.space[512], s, 'box.space[id]')
    t:is(err(box.schema.space.create, 'test'), "Space 'test' already exists", 'duplicate name')
    local s2, status = box.schema.space.create('test', {if_not_exists = true})
    t:is(s2, s, 'if_not_exists returns the space')
    t:is(status, 'not created', 'and says so')
    t:is(err(box.schema.space.create, 'q', {foo = 1}), "Illegal parameters, unexpected option 'foo'", 'bad option')
    t:is(err(box.schema.space.create, 'q', {engine = 'nope'}), "Space engine 'nope' does not exist", 'bad engine')
    t:is(s.engine, 'memtx', 'engine')
    s:rename('test2')
    t:is(box.space.test2, s, 'renamed')
    t:is(box.space.test, nil, 'old name gone')
    s:drop()
    t:is(box.space.test2, nil, 'dropped')
end)

test:test('indexes', function(t)
    t:plan(11)
    local s = box.schema.space.create('t', {format = {{'id', 'unsigned'}, {'name', 'string'},
        {'n', 'integer', is_nullable = true}}})
    local pk = s:create_index('pk')
    t:is(pk.id, 0, 'primary is index 0')
    t:is(pk.type, 'TREE', 'TREE by default')
    t:is(pk.unique, true, 'unique by default')
    t:is(err(s.create_index, s, 'pk'), "Index 'pk' already exists", 'duplicate index')
    local sk = s:create_index('sk', {parts = {{2, 'string'}}, unique = false})
    t:is(sk.id, 1, 'secondary is index 1')
    t:is(err(s.create_index, s, 'x', {type = 'hash', unique = false}),
        "Can't create or modify index 'x' in space 't': HASH index must be unique", 'hash must be unique')
    local byname = s:create_index('byname', {parts = {'name', 'id'}})
    t:is(byname.parts[1].fieldno, 2, 'parts by field name')
    t:is(err(s.create_index, s, 'y', {foo = 1}), "Illegal parameters, unexpected option 'foo'", 'bad option')
    local h = s:create_index('h', {type = 'hash', parts = {1, 'unsigned'}})
    t:is(h.type, 'HASH', 'hash index')
    h:drop()
    t:is(s.index.h, nil, 'index dropped')
    local s3 = box.schema.space.create('t3')
    t:is(err(s3.create_index, s3, 'pk', {parts = {{1, 'unsigned'}, {2, 'string', is_nullable = true}}}),
        "Primary index of space 't3' can not contain nullable parts", 'nullable pk')
    s3:drop()
end)

test:test('insert and type errors', function(t)
    local s = box.space.t
    t:plan(8)
    t:is_deeply(s:insert{1, 'one'}:totable(), {1, 'one'}, 'insert returns the tuple')
    t:is(err(s.insert, s, {1, 'uno'}), "Duplicate key exists in unique index 'pk' in space 't'", 'duplicate pk')
    t:is(err(s.insert, s, {'x', 'y'}), 'Tuple field 1 type does not match one required by operation: expected unsigned',
        'field type')
    t:is(err(s.insert, s, {2, 2}), 'Tuple field 2 type does not match one required by operation: expected string',
        'format type')
    t:is(err(s.insert, s, {3}), 'Tuple field 2 required by space format is missing', 'missing field')
    t:is(err(s.insert, s, {3, 'a', 'b'}), 'Tuple field 3 type does not match one required by operation: expected integer',
        'nullable typed field')
    t:is(s:insert{4, 'four', box.NULL}[3], nil, 'nullable field takes null')
    local s2 = box.schema.space.create('fc', {field_count = 2})
    s2:create_index('pk')
    t:is(err(s2.insert, s2, {1}), 'Tuple field count 1 does not match space field count 2', 'field_count')
    s2:drop()
end)

test:test('replace, get, select', function(t)
    local s = box.space.t
    t:plan(12)
    s:replace{2, 'two'}
    s:replace{3, 'three'}
    t:is(s:replace{2, 'TWO'}[2], 'TWO', 'replace overwrites')
    t:is(s:get{2}.name, 'TWO', 'get by key, field by name')
    t:is(s:get(2)[1], 2, 'scalar key')
    t:is(select('#', s:get{42}), 0, 'get of a missing key returns nothing')
    t:is(err(s.get, s, {}), 'Invalid key part count in an exact match (expected 1, got 0)', 'get with empty key')
    t:is(#s:select(), 4, 'select all')
    t:is(#s:select({}, {limit = 2}), 2, 'limit')
    t:is(s:select({}, {offset = 3})[1][1], 4, 'offset')
    t:is(s:select({2}, {iterator = 'GT'})[1][1], 3, 'GT')
    t:is(s:select({3}, {iterator = 'LE'})[2][1], 2, 'LE goes down')
    t:is(err(s.select, s, {}, {iterator = 'FOO'}), "Unknown iterator type 'FOO'", 'bad iterator')
    t:is(err(s.select, s, {'x'}), 'Supplied key type of part 0 does not match index part type: expected unsigned',
        'bad key type')
end)

test:test('secondary indexes', function(t)
    local s = box.space.t
    t:plan(5)
    t:is(s.index.sk:select{'TWO'}[1][1], 2, 'select by secondary')
    s:insert{10, 'TWO'}
    t:is(#s.index.sk:select{'TWO'}, 2, 'non-unique secondary')
    t:is(err(s.index.sk.get, s.index.sk, {'TWO'}), "Get() doesn't support partial keys and non-unique indexes",
        'get on non-unique')
    t:is(err(s.insert, s, {11, 'one'}), 'no error', 'byname is unique on (name, id)')
    t:is(s.index.byname:get{'one', 1}[1], 1, 'multi-part get')
end)

test:test('update and upsert', function(t)
    local s = box.space.t
    t:plan(7)
    t:is_deeply(s:update({1}, {{'=', 2, 'ONE'}, {'!', 3, 100}}):totable(), {1, 'ONE', 100}, 'update ops')
    t:is(s:update({1}, {{'+', 3, 5}})[3], 105, 'arithmetic')
    t:is(select('#', s:update({99}, {{'=', 2, 'x'}})), 0, 'update of a missing key returns nothing')
    t:is(err(s.update, s, {1}, {{'=', 1, 5}}), "Attempt to modify a tuple field which is part of index 'pk' in space 't'",
        'primary key is read-only')
    t:is(select('#', s:upsert({5, 'five'}, {{'=', 2, 'FIVE'}})), 0, 'upsert returns nothing')
    t:is(s:get{5}[2], 'five', 'upsert inserts')
    s:upsert({5, 'five'}, {{'=', 2, 'FIVE'}})
    t:is(s:get{5}[2], 'FIVE', 'upsert updates')
end)

test:test('delete, count, len, min, max, pairs', function(t)
    local s = box.space.t
    t:plan(9)
    t:is(s:delete{5}[2], 'FIVE', 'delete returns the tuple')
    t:is(select('#', s:delete{5}), 0, 'delete of a missing key returns nothing')
    t:is(s:len(), s:count(), 'len = count')
    t:is(s:count({3}, {iterator = 'GE'}), 4, 'count with iterator')
    t:is(s.index.pk:min()[1], 1, 'min')
    t:is(s.index.pk:max()[1], 11, 'max')
    local ids = {}
    for _, tuple in s:pairs() do table.insert(ids, tuple[1]) end
    t:is_deeply(ids, {1, 2, 3, 4, 10, 11}, 'pairs in key order')
    for _, tuple in s:pairs({3}, {iterator = 'GE'}) do s:delete{tuple[1]} end
    t:is(s:len(), 2, 'deleting while iterating')
    s:truncate()
    t:is(s:len(), 0, 'truncate')
end)

test:test('system spaces', function(t)
    t:plan(5)
    local row = box.space._space:get{box.space.t.id}
    t:is(row[3], 't', '_space row name')
    t:is(row[4], 'memtx', '_space row engine')
    t:is(box.space._index:get{box.space.t.id, 0}[3], 'pk', '_index row')
    t:is(box.space._vspace:get{box.space.t.id}[3], 't', '_vspace shows it')
    t:is(box.space._user.index.name:get{'guest'}[1], 0, 'guest is uid 0')
end)

test:test('tuple layout of _index', function(t)
    t:plan(2)
    local s = box.schema.space.create('layout', {is_sync = true})
    s:create_index('pk')
    s:create_index('sk', {parts = {{2, 'string', is_nullable = true}}, unique = false})
    t:is(require('json').encode(box.space._index:get{s.id, 0}), '[' .. s.id .. ',0,"pk","tree",{"unique":true},[[0,"unsigned"]]]',
        'compact parts')
    t:is(require('json').encode(box.space._space:get{s.id}[6]), '{"is_sync":true}', 'is_sync flag stored')
    s:drop()
end)

test:test('hash index', function(t)
    t:plan(4)
    local s = box.schema.space.create('h')
    s:create_index('pk', {type = 'hash'})
    for i = 1, 100 do s:insert{i, tostring(i)} end
    t:is(s:get{42}[2], '42', 'hash get')
    t:is(s:len(), 100, 'hash len')
    t:is(#s:select{}, 100, 'hash select all')
    t:is(err(s.select, s, {1}, {iterator = 'LT'}),
        "Index 'pk' (HASH) of space 'h' (memtx) does not support requested iterator type", 'hash LT')
    s:drop()
end)

test:test('read-only instance', function(t)
    t:plan(2)
    box.cfg{read_only = true}
    t:is(err(box.space.t.insert, box.space.t, {100, 'x'}),
        "Can't modify data because this instance is in read-only mode.", 'writes rejected')
    box.cfg{read_only = false}
    t:is(box.space.t:insert{100, 'x'}[1], 100, 'writable again')
end)

test:test('box.error', function(t)
    t:plan(5)
    t:is(box.error.TUPLE_FOUND, 3, 'code constant')
    local ok, e = pcall(box.error, box.error.NO_SUCH_SPACE, 'zz')
    t:is(ok, false, 'box.error raises')
    t:is(e.message, "Space 'zz' does not exist", 'message from the template')
    t:is(e.code, 36, 'code')
    local e2 = box.error.new({code = 123, reason = 'custom'})
    t:is(tostring(e2), 'custom', 'box.error.new with a table')
end)

os.exit(test:check() and 0 or 1)
