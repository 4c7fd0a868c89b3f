local tap = require('tap')
local json = require('json')
local test = tap.test('json')
test:plan(30)

local function err(f, ...)
    local ok, e = pcall(f, ...)
    return not ok and tostring(e) or 'no error'
end

test:is(json.encode({1, 2, nil, 4}), '[1,2,null,4]', 'sparse array keeps its holes')
test:is(json.encode({}), '[]', 'empty table is an array')
test:is(json.encode({a = {b = 1}}), '{"a":{"b":1}}', 'nested map')
test:is(json.encode({[0] = 'z'}), '{"0":"z"}', 'key 0 makes a map')
test:is(json.encode({[1] = 1, [20] = 5}):len(), 14, 'an excessively sparse array becomes a map')
test:is(json.encode(2^53), '9007199254740992', 'integral doubles print as integers')
test:is(json.encode(1/3), '0.33333333333333', '14 significant digits')
test:is(json.encode(18446744073709551615ULL), '18446744073709551615', 'uint64 cdata as digits')
test:is(json.encode(-5LL), '-5', 'int64 cdata as digits')
test:is(json.encode(box.NULL), 'null', 'box.NULL is null')
test:is(json.encode('a"b\\c/\n'), '"a\\"b\\\\c\\/\\n"', 'string escapes')
test:is(json.encode(setmetatable({1, 2}, {__serialize = 'map'})), '{"1":1,"2":2}', '__serialize map')
test:is(json.encode(setmetatable({}, {__serialize = function() return 'x' end})), '"x"', '__serialize function')
test:is(err(json.encode, function() end), "unsupported Lua type 'function'", 'functions are refused')
test:is(err(json.encode), "bad argument #1 to '?' (expected 1 or 2 arguments)", 'encode needs a value')
local t = {} t.t = t
test:is(err(json.encode, t), 'Too high nest level', 'recursion is caught')
test:is(json.encode({f = print}, {encode_invalid_as_nil = true}), '{"f":null}', 'encode_invalid_as_nil')
test:is(err(json.encode, {1 / 0}, {encode_invalid_numbers = false}), 'number must not be NaN or Inf',
    'encode_invalid_numbers')
test:is(json.NULL, box.NULL, 'json.NULL is box.NULL')

test:is_deeply(json.decode('{"a":[1,2,{"b":true}]}'), {a = {1, 2, {b = true}}}, 'decode nested')
test:is(json.decode('{"a":null}').a, json.NULL, 'null decodes to json.NULL')
test:is(getmetatable(json.decode('[1]')), json.array_mt, 'decoded arrays carry array_mt')
test:is(tostring(json.decode('9007199254740993')), '9007199254740993LL', 'big integers decode to int64')
test:is(tostring(json.decode('18446744073709551615')), '18446744073709551615ULL', 'past int64 to uint64')
test:is(json.decode('"\\u00e9"'), 'é', 'unicode escapes')
test:is(err(json.decode, '{'), 'Expected object key string but found T_END on line 1 at character 2', 'decode error text')
test:is(err(json.decode, '[1,]'), 'Expected value but found T_ARR_END on line 1 at character 4', 'trailing comma')
test:is(err(json.decode, '{"a":1} x'), 'Expected the end but found invalid token on line 1 at character 9',
    'trailing garbage')

local j = json.new()
j.cfg{encode_use_tostring = true}
test:like(j.encode({print}), '^%["function: ', 'json.new() has its own cfg')
test:is(json.cfg.encode_use_tostring, false, 'the module cfg is untouched')
os.exit(test:check() and 0 or 1)
