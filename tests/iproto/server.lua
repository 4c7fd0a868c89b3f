-- The server side of tests/iproto_netbox.rs: the same script runs on node and on tarantool.
local port = arg[1]
box.cfg{listen = '127.0.0.1:' .. port, log_level = 4}
box.schema.user.create('test', {password = 'pass'})
box.schema.user.grant('test', 'read,write,execute,create,drop,alter', 'universe')
box.schema.user.create('limited', {password = 'secret'})
box.schema.func.create('add')
box.schema.user.grant('guest', 'execute', 'function', 'add')
local s = box.schema.space.create('tester', {format = {{'id', 'unsigned'}, {'name', 'string'}}})
s:create_index('primary')
s:create_index('name', {parts = {2, 'string'}, unique = false})
box.schema.space.create('hashed'):create_index('pk', {type = 'hash'})
local t = box.schema.space.create('triggered')
t:create_index('pk')
t:on_replace(function(old, new) box.space.tester:replace{1000 + new[1], 'from trigger'} end)
t:before_replace(function(old, new) return new:update{{'=', 2, 'changed'}} end)
function add(a, b) return a + b end
function multi() return 1, 'two', {3} end
function slow(x) require('fiber').sleep(0.3) return x end
function pusher() box.session.push('pushed') box.session.push({1, 2}) return 'final' end
function boom() error('boom') end
function box_boom() box.error(box.error.PROC_LUA, 'custom') end
function whoami() return box.session.user(), box.session.type(), box.session.peer() ~= nil, box.session.sync() > 0 end
function get_tuple() return box.tuple.new{1, 'x'} end
function nothing() end
function storage(v) if v then box.session.storage.v = v end return box.session.storage.v end
-- Runs as its owner (admin), who may grant and revoke.
box.schema.func.create('regrant', {setuid = true})
function regrant(on)
    local act = on and box.schema.user.grant or box.schema.user.revoke
    act('limited', 'execute', 'function', 'add')
end
function big(n) return string.rep('x', 1024 * 1024 + n) end
function leave_txn() box.begin() return box.is_in_txn() end
function in_txn() return box.is_in_txn() end
function fiber_storage(v)
    local storage = require('fiber').self().storage
    local seen = storage.v
    storage.v = v
    return seen
end
obj = {name = 'object'}
function obj:method(x) return self.name, x end
nested = {deep = {fn = function() return 'deep' end}}
require('log').warn('ready')
