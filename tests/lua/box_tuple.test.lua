-- box.tuple without box.cfg: construction, field access, methods, serialization and the
-- error texts, as Tarantool 2.6 gives them.
local tap = require('tap')
local json = require('json')
local yaml = require('yaml')
local msgpack = require('msgpack')
local test = tap.test('box.tuple')
test:plan(48)

local function err(f, ...)
    local ok, e = pcall(f, ...)
    return not ok and tostring(e) or 'no error'
end

local function hex(s)
    return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end))
end

local t = box.tuple.new{1, 'a', {2}, box.NULL, {a = 1}}
test:is(tostring(t), "[1, 'a', [2], null, {'a': 1}]", 'tostring is YAML flow style')
test:is(#t, 5, '#t counts fields')
test:is(t[2], 'a', 't[i] is 1-based')
test:is(t[6], nil, 'nil past the end')
test:is(t[0], nil, 'nil before the start')
test:ok(t[4] == nil and type(t[4]) == 'cdata', 'a nil field is box.NULL')
test:is(getmetatable(t[3]), msgpack.array_mt, 'nested arrays carry array_mt')
test:is(t['[5].a'], 1, 'JSON paths reach into fields')
test:is(t.nope, nil, 'unknown names are nil')
test:is(box.tuple.is(t), true, 'box.tuple.is')
test:is(box.tuple.is({}), false, 'a table is no tuple')

test:is(tostring(box.tuple.new(1, 'x', {3})), "[1, 'x', [3]]", 'several values are fields')
test:is(tostring(box.tuple.new(5)), '[5]', 'one scalar is a field')
test:is(tostring(box.tuple.new()), '[]', 'no arguments: empty tuple')
test:is(#box.tuple.new({[1] = 1, [20] = 2}), 20, 'sparse tables stay arrays')
test:is(err(box.tuple.new, {a = 1}), 'Tuple/Key must be MsgPack array', 'a map is no tuple')
test:is(err(box.tuple.new, {print}), "unsupported Lua type 'function'", 'functions are refused')
test:is(box.tuple.new(t) == t, false, 'a tuple copied is a new tuple')

local u = box.tuple.new{1, 2, 3, 2, 'x', 2}
test:is(u:bsize(), 8, 'bsize')
test:is(table.concat({u:unpack(2, 4)}, ','), '2,3,2', 'unpack a range')
test:is(#u:totable(5), 2, 'totable from a field')
test:is(getmetatable(u:totable()), msgpack.array_mt, 'totable gives a flow-style array')
test:is(err(u.totable, u, 0), 'builtin/box/tuple.lua:178: tuple.totable: invalid second argument', 'totable from 0')
test:is(err(u.unpack, u, 1, 0), 'builtin/box/tuple.lua:187: tuple.totable: invalid third argument', 'unpack to 0')
test:is(u:find(2), 2, 'find')
test:is(u:find(3, 2), 4, 'find after an offset')
test:is(table.concat(u:findall(2), ','), '2,4,6', 'findall')
test:is(err(u.find, u, 10, 2), "builtin/box/tuple.lua:144: error: invalid key to 'next'", 'find past the end')
local keys = {}
for k, v in u:pairs() do keys[#keys + 1] = k .. '=' .. v end
test:is(table.concat(keys, ' '), '1=1 2=2 3=3 4=2 5=x 6=2', 'pairs')
test:is(select('#', u:next(6)), 1, 'next past the end')
test:is(table.concat({u:slice(1, 3)}, ','), '2,3', 'slice')
test:is(err(u.slice, u, 10), 'tuple.slice(): start >= field count', 'slice out of range')

test:is(tostring(u:update{{'+', 1, 10}, {'!', 3, 'y'}}), "[11, 2, 'y', 3, 2, 'x', 2]", 'update')
test:is(tostring(u:upsert{{'=', 2, 'b'}}), "[1, 'b', 3, 2, 'x', 2]", 'upsert')
test:is(err(u.update, u, {{'=', 10, 1}}), 'Field 10 was not found in the tuple', 'update errors are ClientErrors')
test:is(err(u.update, u, 5), 'builtin/box/tuple.lua:230: Usage: tuple:update({ { op, field, arg}+ })', 'update needs a table')
test:is(tostring(u:transform(2, 2, 'a', 'b')), "[1, 'a', 'b', 2, 'x', 2]", 'transform')
test:is(u:transform(2, 0) == u, true, 'transform with nothing to do is the same tuple')
test:is(err(u.transform, u, 0, 1), 'tuple.transform(): offset is out of bound', 'transform at 0')

local m = box.tuple.new{1, {2}}:tomap()
test:is(m[1] == 1 and m[2][1] == 2 and getmetatable(m) == nil, true, 'tomap without format')
test:is(err(box.tuple.tomap, {}), 'Invalid argument #1 (box.tuple expected, got table)', 'tomap checks the tuple')
test:is(err(box.tuple.bsize, {}), 'builtin/box/tuple.lua:106: Usage: tuple:bsize()', 'methods check the tuple')
test:is(err(function() u.x = 1 end):match("'struct tuple' has no member named 'x'"),
    "'struct tuple' has no member named 'x'", 'tuples are read-only')

test:is(json.encode(box.tuple.new{1, 'a', {b = 2}}), '[1,"a",{"b":2}]', 'json.encode')
test:is(yaml.encode(box.tuple.new{1, 'a'}), "--- [1, 'a']\n...\n", 'yaml.encode')
test:is(hex(msgpack.encode(box.tuple.new{1, 'a'})), '9201a161', 'msgpack.encode')
test:is(hex(msgpack.encode({box.tuple.new{1}})), '919101', 'msgpack.encode of a nested tuple')
test:is(type(box.tuple.new{2^50}[1]), 'cdata', 'big integers are 64-bit cdata')
os.exit(test:check() and 0 or 1)
