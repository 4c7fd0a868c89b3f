-- A Tarantool master for node replicas: arg[1] = port, arg[2] = work dir.
local port, dir = arg[1], arg[2]
require('fio').mktree(dir)
box.cfg{
    listen = '127.0.0.1:' .. port,
    work_dir = dir,
    replication_timeout = 0.2,
    replication_synchro_quorum = 1,
    log = 'master.log',
}
box.once('setup', function()
    box.schema.user.passwd('admin', 'test')
    box.schema.user.grant('guest', 'replication')
    box.schema.user.create('repl', {password = 'secret'})
    box.schema.user.grant('repl', 'replication')
    local t = box.schema.space.create('test')
    t:create_index('pk')
    t:create_index('name', {parts = {2, 'string'}, unique = false})
    for i = 1, 100 do t:insert{i, 'row ' .. i} end
    box.schema.space.create('sync', {is_sync = true}):create_index('pk')
end)
