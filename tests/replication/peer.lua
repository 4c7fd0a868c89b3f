-- A member of a node replica set: arg[1] = port, arg[2] = work dir, arg[3] = the members'
-- ports, comma-separated (its own among them), arg[4] = 'ro' for a read-only member,
-- arg[5] = its instance uuid (random if absent).
local port, dir = arg[1], arg[2]
local peers = {}
for p in string.gmatch(arg[3], '%d+') do table.insert(peers, '127.0.0.1:' .. p) end
require('fio').mktree(dir)
box.cfg{
    listen = '127.0.0.1:' .. port,
    work_dir = dir,
    replication = peers,
    read_only = arg[4] == 'ro',
    instance_uuid = arg[5],
    replication_timeout = 0.2,
    replication_connect_timeout = 10,
    log = 'replica.log',
}
if not box.info.ro then
    box.once('setup', function()
        box.schema.user.passwd('admin', 'test')
        box.schema.user.grant('guest', 'replication')
        box.schema.space.create('test'):create_index('pk')
    end)
end
