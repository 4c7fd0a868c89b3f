-- Requests and misuse whose results and error texts must be Tarantool's: differential.out
-- is what tarantool 2.6 prints (regenerate: cd tests/box && tarantool differential.lua >
-- differential.out).
box.cfg{work_dir = require('fio').tempdir(), log_level = 1}
-- Each result on one line; table addresses and Tarantool's builtin/*.lua positions are
-- left out, since they cannot match.
local function show(v)
    if type(v) == 'table' then return 'table' end
    return (tostring(v):gsub('^builtin/[%w/_]+%.lua:%d+: ', ''))
end
local function p(...)
    local r = {pcall(...)}
    for i = 1, #r do r[i] = show(r[i]) end
    print(table.concat(r, ' | '))
end
local s = box.schema.space.create('t', {format = {{'id', 'unsigned'}, {'v', 'string'}}})
s:create_index('pk')
p(s.insert, s)
p(s.insert, nil, {1})
p(s.insert, s, {1, 'a'})
p(s.get, s, {1})
p(s.get, s, 'x')
p(s.select, s, 1, {iterator = 'BLAH'})
p(s.select, s, {1}, {limit = -1})
p(s.update, s, {1}, {{'=', 2}})
p(s.update, s, {1}, {{'=', 'v', 'b'}})
p(s.update, s, {1}, {{'=', 'zz', 'b'}})
p(s.update, s, {1}, {{'+', 2, 1}})
p(s.update, s, {1}, {{'#', 1, 1}})
p(s.upsert, s, {1, 'x'}, {{'+', 2, 1}})
p(s.delete, s, {})
p(s.delete, s, {1, 2})
p(box.schema.space.create, 't2', {format = {{'a', 'bogus'}}})
p(s.create_index, s, 'sk', {parts = {{2, 'bogus'}}})
p(s.create_index, s, 'sk', {parts = {{5, 'string'}}})
p(s.create_index, s, 'sk', {type = 'bitset2'})
p(s.create_index, s, 'sk', {parts = {2, 'string'}})
p(box.schema.user.grant, 'guest', 'read', 'space', 'nope')
p(box.schema.user.grant, 'guest', 'bogus', 'universe')
p(box.schema.user.create, 'u', {password = 1})
p(box.schema.role.grant, 'nope', 'read', 'universe')
p(box.schema.user.passwd, 'nope', 'x')
p(box.begin) p(box.begin) p(box.rollback)
p(box.rollback_to_savepoint, {})
p(box.error, box.error.ILLEGAL_PARAMS, 'foo')
p(box.error)
p(function() return box.error.new(1, 'x').type end)
p(function() local e = box.error.new(box.error.TUPLE_FOUND, 'a', 'b') return e.code, e.message end)
p(function() return s:count(1, {iterator = 'GT'}) end)
p(function() return s:len(), s:bsize() > 0 end)
p(function() return #box.space._vspace:select{} > 10 end)
p(s.truncate, s)
p(function() return s:len() end)
p(s.drop, s)
p(function() return box.space.t end)
os.exit()
