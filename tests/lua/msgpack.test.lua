local tap = require('tap')
local msgpack = require('msgpack')
local test = tap.test('msgpack')
test:plan(20)

local function err(f, ...)
    local ok, e = pcall(f, ...)
    return not ok and tostring(e) or 'no error'
end

local function hex(s)
    return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end))
end

test:is(hex(msgpack.encode(1)), '01', 'small integer')
test:is(hex(msgpack.encode(2^53)), 'cf0020000000000000', 'integral double as uint64')
test:is(hex(msgpack.encode(1.5)), 'cb3ff8000000000000', 'double')
test:is(hex(msgpack.encode(-33)), 'd0df', 'negative integer')
test:is(hex(msgpack.encode({1, nil, 3})), '9301c003', 'array with a hole')
test:is(hex(msgpack.encode({a = 1})), '81a16101', 'map')
test:is(hex(msgpack.encode(18446744073709551615ULL)), 'cfffffffffffffffff', 'uint64 cdata')
test:is(hex(msgpack.encode(box.NULL)), 'c0', 'box.NULL')

local v, pos = msgpack.decode(msgpack.encode({1, 'two', {3}}))
test:is_deeply(v, {1, 'two', {3}}, 'round trip')
test:is(pos, 9, 'decode returns the next offset')
test:is(getmetatable(v), msgpack.array_mt, 'decoded arrays carry array_mt')
local a, p = msgpack.decode('\1\2', 2)
test:is(a * 10 + p, 23, 'decode from an offset')
test:is(tostring(msgpack.decode('\207\0\32\0\0\0\0\0\1')), '9007199254740993ULL', 'big uint64 as cdata')
test:is(msgpack.decode('\192'), msgpack.NULL, 'nil decodes to NULL')
test:is(msgpack.decode_unchecked('\5'), 5, 'decode_unchecked')

test:is(err(msgpack.encode), 'msgpack.encode: a Lua object expected', 'encode needs a value')
test:is(err(msgpack.decode, 5), "msgpack.decode: a Lua string or 'char *' expected", 'decode needs a string')
test:is(err(msgpack.decode, ''), 'msgpack.decode: invalid MsgPack', 'empty input')
test:is(err(msgpack.decode, '\1\2', 3), 'msgpack.decode: offset is out of bounds', 'bad offset')
test:is(err(msgpack.encode, print), "unsupported Lua type 'function'", 'functions are refused')
os.exit(test:check() and 0 or 1)
