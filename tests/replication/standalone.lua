-- A node instance without upstreams (they are configured later): arg[1] = port, arg[2] = work dir.
local port, dir = arg[1], arg[2]
require('fio').mktree(dir)
box.cfg{listen = '127.0.0.1:' .. port, work_dir = dir, log = 'replica.log', replication_timeout = 0.1}
box.once('setup', function()
    box.schema.user.passwd('admin', 'test')
    box.schema.space.create('test'):create_index('pk')
end)
