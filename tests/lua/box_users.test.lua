#!/usr/bin/env tarantool
-- Users, roles, privileges, sessions and functions. Runs unchanged on tarantool 2.6.
local tap = require('tap')
local fio = require('fio')

box.cfg{work_dir = fio.tempdir(), log_level = 1}

local test = tap.test('box_users')
test:plan(6)

local function err(f, ...)
    local ok, e = pcall(f, ...)
    if ok then return 'no error' end
    return tostring(e)
end

test:test('users', function(t)
    t:plan(9)
    t:is(box.session.user(), 'admin', 'the local session is admin')
    t:is(box.session.uid(), 1, 'admin uid')
    box.schema.user.create('alice', {password = 'secret'})
    t:is(box.schema.user.exists('alice'), true, 'exists')
    t:is(err(box.schema.user.create, 'alice'), "User 'alice' already exists", 'duplicate user')
    t:is(err(box.schema.user.create, 'alice', {if_not_exists = true}), 'no error', 'if_not_exists')
    local row = box.space._user.index.name:get{'alice'}
    t:is(row[4], 'user', 'stored as a user')
    t:is(row[5]['chap-sha1'], box.schema.user.password('secret'), 'password stored as its hash')
    t:ok(row[1] >= 32, 'new users get ids from 32')
    t:is(err(box.schema.user.drop, 'nobody'), "User 'nobody' is not found", 'drop of an unknown user')
end)

test:test('grants', function(t)
    t:plan(6)
    box.schema.user.grant('alice', 'read,write', 'universe')
    t:is(err(box.schema.user.grant, 'alice', 'read,write', 'universe'),
        "User 'alice' already has read,write access on universe", 'granted twice')
    t:is(err(box.schema.user.grant, 'alice', 'read,write', 'universe', nil, {if_not_exists = true}), 'no error',
        'if_not_exists')
    t:is(err(box.schema.user.grant, 'nobody', 'read', 'universe'), "User 'nobody' is not found", 'unknown user')
    box.schema.user.grant('guest', 'replication', nil, nil, {if_not_exists = true})
    t:ok(box.space._priv:get{0, 'role', 3} ~= nil, 'the seed grants the replication role to guest')
    box.schema.user.revoke('alice', 'write', 'universe')
    local found
    for _, p in ipairs(box.schema.user.info('alice')) do
        if p[2] == 'universe' then found = p[1] end
    end
    t:ok(found ~= nil and found:find('read') ~= nil and found:find('write') == nil, 'revoke removes one privilege')
    t:is(err(box.schema.user.revoke, 'alice', 'write', 'universe'),
        "User 'alice' does not have write access on universe ''", 'revoke twice')
end)

test:test('roles', function(t)
    t:plan(4)
    box.schema.role.create('readers')
    t:is(box.schema.role.exists('readers'), true, 'role exists')
    t:is(err(box.schema.role.create, 'readers'), "Role 'readers' already exists", 'duplicate role')
    box.schema.user.grant('alice', 'readers')
    t:is(err(box.schema.user.grant, 'alice', 'readers'), "User 'alice' already has role 'readers'", 'role granted twice')
    box.schema.role.drop('readers')
    t:is(box.schema.role.exists('readers'), false, 'role dropped')
end)

test:test('access checks', function(t)
    t:plan(5)
    local s = box.schema.space.create('secret')
    s:create_index('pk')
    s:insert{1}
    box.schema.user.create('bob')
    t:is(err(box.session.su, 'bob', function() return s:select{} end),
        "Read access to space 'secret' is denied for user 'bob'", 'read denied')
    t:is(err(box.session.su, 'bob', function() return s:insert{2} end),
        "Write access to space 'secret' is denied for user 'bob'", 'write denied')
    local denied = 0
    for _, m in ipairs({'count', 'len', 'min', 'max', 'random', 'bsize'}) do
        local e = err(box.session.su, 'bob', function() return s.index.pk[m](s.index.pk) end)
        if e == "Read access to space 'secret' is denied for user 'bob'" then denied = denied + 1 end
    end
    t:is(denied, 6, 'count, len, min, max, random and bsize need read access too')
    box.schema.user.grant('bob', 'read', 'space', 'secret')
    t:is(box.session.su('bob', function() return #s:select{} end), 1, 'read granted')
    t:is(box.session.su('bob', box.session.effective_user), 'bob', 'su changes the effective user for the call')
end)

test:test('functions', function(t)
    t:plan(3)
    box.schema.func.create('add')
    t:is(box.schema.func.exists('add'), true, 'function registered')
    t:is(err(box.schema.func.create, 'add'), "Function 'add' already exists", 'duplicate function')
    box.schema.func.drop('add')
    t:is(box.schema.func.exists('add'), false, 'dropped')
end)

test:test('box.once', function(t)
    t:plan(2)
    local n = 0
    box.once('init', function() n = n + 1 end)
    box.once('init', function() n = n + 1 end)
    t:is(n, 1, 'runs once')
    t:ok(box.space._schema:get{'onceinit'} ~= nil, 'remembered in _schema')
end)

os.exit(test:check() and 0 or 1)
