-- One instance of a benchmark replica set; runs unchanged on tarantool and node.
--   <binary> raft_instance.lua DIR PORT PEERS RT QUORUM [ELECTION_MODE]
-- PEERS: comma-separated ports; the first one bootstraps the set. ELECTION_MODE ('off',
-- 'voter', 'candidate') is omitted for Tarantool 2.6.0, which has no elections.
local fio = require('fio')
local dir, port, peers, rt, quorum, mode = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4]), arg[5], arg[6]
fio.mktree(dir)
local replication = {}
local first
for p in peers:gmatch('%d+') do
    first = first or tonumber(p)
    table.insert(replication, '127.0.0.1:' .. p)
end
local cfg = {
    listen = '127.0.0.1:' .. port,
    work_dir = dir,
    log = 'instance.log',
    replication = replication,
    replication_timeout = rt,
    replication_synchro_quorum = tonumber(quorum) or quorum,
    replication_synchro_timeout = 2,
    read_only = port ~= first,
    wal_mode = 'write',
}
if mode ~= nil and mode ~= '' then
    cfg.election_mode = mode
    -- A stale vote from an earlier round must not hold a node back: short rounds.
    cfg.election_timeout = 1
end
box.cfg(cfg)
box.once('bench', function()
    box.schema.user.grant('guest', 'super')
    box.schema.space.create('sync', {is_sync = true}):create_index('pk')
end)
local f = fio.open('pid', {'O_CREAT', 'O_WRONLY', 'O_TRUNC'}, tonumber('644', 8))
f:write(tostring(box.info.pid))
f:close()
