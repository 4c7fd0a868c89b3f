-- A replica set member for process tests.
--   node instance.lua DIR LISTEN PEERS RT [MODE] [FENCING]
-- LISTEN: host:port; PEERS: comma-separated host:port list, the first one bootstraps.
local fio = require('fio')
local dir, listen, peers, rt, mode, fencing = arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5], arg[6]
fio.mktree(dir)
local replication = {}
for uri in peers:gmatch('[^,]+') do table.insert(replication, uri) end
box.cfg({
    listen = listen,
    work_dir = dir,
    log = 'instance.log',
    replication = replication,
    replication_timeout = rt,
    replication_synchro_quorum = 'N / 2 + 1',
    replication_synchro_timeout = 10,
    -- Two candidates that lose the leader together may split the vote: a short round.
    election_timeout = 1,
    read_only = replication[1] ~= listen,
    election_fencing_mode = fencing or 'off',
})
box.once('test', function()
    box.schema.user.grant('guest', 'super')
    box.schema.space.create('sync', {is_sync = true}):create_index('pk')
    box.schema.space.create('async'):create_index('pk')
end)
-- Elections start once the set exists; every member may then lead and write.
if mode ~= nil and mode ~= '' then box.cfg({election_mode = mode, read_only = false}) end
local f = fio.open('pid', {'O_CREAT', 'O_WRONLY', 'O_TRUNC'}, tonumber('644', 8))
f:write(tostring(box.info.pid))
f:close()
