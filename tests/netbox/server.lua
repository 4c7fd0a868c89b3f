-- The server side of the net.box checks: run by `tarantool` or by `node` (the same script),
-- with arg[1] = listen URI (a port or unix/:/path) and arg[2] = an empty work directory.
box.cfg{listen = arg[1], work_dir = arg[2], log_level = 1, wal_mode = 'none'}

box.schema.user.create('test', {password = 'pass'})
box.schema.user.grant('test', 'read,write,execute,create,drop,alter', 'universe')

local s = box.schema.space.create('tester', {format = {{name = 'id', type = 'unsigned'},
                                                       {name = 'name', type = 'string'}}})
s:create_index('primary', {type = 'tree', parts = {1, 'unsigned'}})
s:create_index('byname', {type = 'hash', parts = {2, 'string'}})
s:insert{1, 'one'}
s:insert{2, 'two'}
local nopk = box.schema.space.create('nopk')
local _ = nopk

box.schema.func.create('add')
box.schema.user.grant('guest', 'execute', 'function', 'add')

function add(a, b) return a + b end
function multi() return 1, 'two', {3}, nil, {k = 'v'} end
function fails() error('boom') end
function fails_box() box.error(box.error.NO_SUCH_USER, 'ghost') end
function pusher(n)
    for i = 1, n do box.session.push('p' .. i) end
    return 'final'
end
function slow(t) require('fiber').sleep(t) return 'slept' end
function echo(...) return ... end
