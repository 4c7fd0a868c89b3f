-- The server of scripts/bench/iproto.sh: runs unchanged on tarantool and on node.
--   <runtime> scripts/bench/iproto_server.lua PORT DIR
local port, dir = arg[1], arg[2]
box.cfg{listen = '127.0.0.1:' .. port, work_dir = dir, wal_mode = 'write', log_level = 2,
    memtx_memory = 512 * 1024 * 1024}
box.schema.user.grant('guest', 'read,write,execute', 'universe', nil, {if_not_exists = true})
local s = box.schema.space.create('bench', {if_not_exists = true})
s:create_index('pk', {if_not_exists = true})
for i = 1, 1000 do s:replace{i, 'value ' .. i} end
function echo(x) return x end
