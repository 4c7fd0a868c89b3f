-- twophase: a two-phase-commit change of the instances' HTTP ports. See ../README.md.

local fio = require('fio')
local log = require('log')
local topology = require('twophase.topology')
local store = require('twophase.store')
local creds = require('twophase.creds')
local rpc = require('twophase.rpc')
local participant = require('twophase.participant')
local coordinator = require('twophase.coordinator')
local http = require('twophase.http')

local M = {}

-- The IPROTO entry point the other instances call: twophase_rpc(op, args).
local function dispatch(op, args)
    args = args or {}
    if op == 'prepare' then
        return participant.prepare(args)
    elseif op == 'commit' then
        return participant.commit(args)
    elseif op == 'abort' then
        return participant.abort(args)
    elseif op == 'outcome' then
        return coordinator.outcome(args.id) or participant.outcome(args)
    elseif op == 'info' then
        return M.info()
    end
    error('twophase: unknown operation ' .. tostring(op))
end

function M.info()
    local me = M.me
    return {number = me.number, uuid = me.uuid, port = participant.port,
            prepared = participant.prepared and participant.prepared.id or nil}
end

-- The outcome of a change {[n] = port | box.NULL} coordinated by this instance.
function M.apply(change)
    return coordinator.apply(change)
end

function M.status()
    local s = participant.status()
    s.number = M.me.number
    s.uuid = M.me.uuid
    s.credentials = M.topo.credentials
    s.coordinating = coordinator.busy
    s.known_credentials = creds.known()
    return s
end

-- Starts instance n of the topology at topo_path.
function M.start(n, topo_path)
    local topo = topology.load(topo_path)
    local me = topo.instances[n]
    if me == nil then
        error(string.format('twophase: no instance %s in %s', tostring(n), topo.path), 0)
    end
    M.topo, M.me = topo, me
    local work_dir = topology.work_dir(topo, n)
    fio.mktree(work_dir)
    box.cfg({
        listen = me.iproto,
        work_dir = work_dir,
        wal_mode = topo.wal_mode,
        log_level = topo.log_level,
        instance_uuid = me.uuid,
    })
    log.info('twophase: instance %d (%s), topology %s, work_dir %s', n, me.uuid, topo.path, work_dir)
    store.init()
    creds.init(topo, me, work_dir)
    rpc.init(topo, me, dispatch)
    coordinator.init(topo, me)
    participant.init(topo, me, http.routes(me, M))
    rawset(_G, 'twophase_rpc', dispatch)
    -- An admin console on a unix socket in work_dir, for instances in the background:
    -- node --connect <work_dir>/console.sock (cluster.sh console <n>).
    local sock = fio.pathjoin(work_dir, 'console.sock')
    fio.unlink(sock)
    require('console').listen('unix/:' .. sock)
    participant.start_server()
    participant.recover()
    coordinator.recover()
    return M
end

return M
