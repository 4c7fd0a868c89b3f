-- A node (or Tarantool) replica: arg[1] = port, arg[2] = work dir, arg[3] = upstream URIs
-- (comma-separated), arg[4] = replication_timeout (default 0.2), arg[5] =
-- replication_connect_quorum.
local port, dir, upstream = arg[1], arg[2], arg[3]
if upstream:find(',') then
    -- Several members, comma-separated.
    local list = {}
    for uri in upstream:gmatch('[^,]+') do table.insert(list, uri) end
    upstream = list
end
require('fio').mktree(dir)
box.cfg{
    listen = '127.0.0.1:' .. port,
    work_dir = dir,
    replication = upstream,
    replication_timeout = tonumber(arg[4]) or 0.2,
    replication_connect_timeout = 2,
    replication_connect_quorum = tonumber(arg[5]),
    replication_sync_timeout = 2,
    log = 'replica.log',
}
