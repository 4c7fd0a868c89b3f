-- Durable state in box spaces (work_dir, WAL in the topology's wal_mode, 'fsync' by
-- default): every record below is written and made durable before the instance acts on it.
--
--   tp_kv       {key, value}        'port' -> current HTTP port (0 = no server)
--   tp_prepared {txid, record}      the participant's prepared change (at most one: the lock)
--   tp_outcome  {txid, outcome}     outcomes this participant knows: committed / aborted
--   tp_coord    {txid, record}      the coordinator's log: collecting -> commit|abort -> done

local M = {}

local function space(name)
    local s = box.schema.space.create(name, {if_not_exists = true})
    s:create_index('pk', {type = 'TREE', parts = {1, 'string'}, if_not_exists = true})
    return s
end

function M.init()
    M.kv = space('tp_kv')
    M.prepared = space('tp_prepared')
    M.outcome = space('tp_outcome')
    M.coord = space('tp_coord')
end

-- Current HTTP port: a number, or nil for "no server". `default` is used until the first
-- change is committed (the topology's port).
function M.get_port(default)
    local t = M.kv:get{'port'}
    if t == nil then
        return default
    end
    if t[2] == 0 then
        return nil
    end
    return t[2]
end

function M.set_port(port)
    M.kv:replace{'port', port or 0}
end

function M.get_prepared()
    -- at most one tuple
    for _, t in M.prepared:pairs() do
        return t[2]
    end
    return nil
end

function M.get_outcome(txid)
    local t = M.outcome:get{txid}
    return t and t[2]
end

function M.coord_records()
    local list = {}
    for _, t in M.coord:pairs() do
        table.insert(list, t[2])
    end
    return list
end

function M.get_coord(txid)
    local t = M.coord:get{txid}
    return t and t[2]
end

function M.put_coord(rec)
    M.coord:replace{rec.id, rec}
end

-- Runs f in one box transaction (one WAL write).
function M.atomic(f, ...)
    return box.atomic(f, ...)
end

return M
