-- The participant: votes in phase 1, applies or drops the change in phase 2, and asks
-- for the outcome when phase 2 does not come.
--
-- State (durable in box, see store.lua): the current HTTP port, the prepared change
-- (which is also the lock: a participant holds at most one), and the outcomes it knows.
-- Every request runs under one mutex, so a prepare, a commit, an abort and an outcome
-- query of the same or another change never interleave.

local fiber = require('fiber')
local log = require('log')
local errno = require('errno')
local ports = require('twophase.ports')
local store = require('twophase.store')
local rpc = require('twophase.rpc')
local hooks = require('twophase.hooks')

local P = {}

local function show(p)
    return ports.show(p)
end

local function failure_line(old, new)
    log.error('Failed to change port from %s to %s', show(old), show(new))
end

function P.init(topo, me, routes)
    P.topo = topo
    P.me = me
    P.routes = routes          -- function(server) adding the HTTP routes
    P.mutex = fiber.channel(1)
    P.port = store.get_port(me.http or false)
    P.prepared = store.get_prepared()
    P.server = nil
    P.reservation = nil
end

local function with_mutex(f, ...)
    if not P.mutex:put(true, P.topo.timeouts.lock) then
        return {ok = false, reason = 'busy: another request of a change is in progress here'}
    end
    local res = {pcall(f, ...)}
    P.mutex:get()
    if not res[1] then
        error(res[2], 0)
    end
    return unpack(res, 2)
end

local function release_reservation()
    if P.reservation ~= nil then
        P.reservation:close()
        P.reservation = nil
    end
end

-- Starts the HTTP server on P.port at start-up, retrying in the background while the port
-- is busy.
function P.start_server()
    if not P.port then
        log.info('twophase: instance %d has no HTTP server', P.me.number)
        return
    end
    local port = P.port
    local server, err = ports.start_http(P.me.host, port, P.routes, fiber.clock() + P.topo.timeouts.release)
    if server ~= nil then
        P.server = server
        log.info('twophase: instance %d serves HTTP on %s:%d', P.me.number, P.me.host, port)
        return
    end
    log.error('twophase: cannot listen on HTTP port %d: %s; retrying in the background', port, err)
    fiber.create(function()
        while P.server == nil and P.port == port do
            fiber.sleep(P.topo.timeouts.retry)
            if P.port ~= port then
                return
            end
            local s = ports.start_http(P.me.host, port, P.routes, 0)
            if s ~= nil and P.port == port and P.server == nil then
                P.server = s
                log.info('twophase: instance %d serves HTTP on %s:%d', P.me.number, P.me.host, port)
            elseif s ~= nil then
                s:stop()
            end
        end
    end)
end

-- Moves the HTTP server from old to new (false = no server). On failure the server is
-- put back on the old port and the failure is logged.
local function switch(old, new)
    if P.server ~= nil then
        P.server:stop()
        P.server = nil
    end
    release_reservation()
    if not new then
        P.port = false
        log.info('twophase: HTTP server on port %s stopped', show(old))
        return true
    end
    local server, err = ports.start_http(P.me.host, new, P.routes, fiber.clock() + P.topo.timeouts.release)
    if server == nil then
        failure_line(old, new)
        log.error('twophase: cannot listen on port %d: %s', new, err)
        if old then
            P.server = ports.start_http(P.me.host, old, P.routes, fiber.clock() + P.topo.timeouts.release)
        end
        P.port = P.server ~= nil and old or false
        store.set_port(P.port)
        return false, string.format('cannot listen on port %d: %s; stayed on %s', new, err, show(P.port))
    end
    P.server = server
    P.port = new
    log.info('twophase: HTTP server moved from port %s to %s', show(old), show(new))
    return true
end

local function entry_of(change, n)
    for _, e in ipairs(change) do
        if e.n == n then
            return e
        end
    end
end

-- The raw value of a change entry, as the coordinator was given it.
local function raw_value(e)
    if e.null then
        return nil
    end
    if e.bad then
        return {}   -- any non-port type; ports.parse names it
    end
    return e.v
end

local decision_watch   -- forward

-- Phase 1. tx = {id, coordinator, participants = {n...}, change = {{n, v | null | bad}...}}
local function prepare(tx)
    local me = P.me.number
    local e = entry_of(tx.change, me)
    if e == nil then
        return {ok = false, reason = 'this instance is not named in the change'}
    end
    local known = store.get_outcome(tx.id)
    if known == 'aborted' then
        return {ok = false, reason = 'the change was already aborted here', port = P.port}
    elseif known == 'committed' then
        return {ok = true, port = P.port, already = true}
    end
    local rec = P.prepared
    if rec ~= nil then
        if rec.id == tx.id then
            return rec.vote
        end
        return {ok = false, locked = true, port = P.port, reason = string.format(
            'locked: instance %d is prepared for change %s of coordinator %d', me, rec.id, rec.coordinator)}
    end
    local old = P.port
    local function no(reason)
        -- Only a changing port can fail validation: the failure line is always due.
        store.outcome:replace{tx.id, 'aborted'}
        failure_line(old, ports.show_entry(e))
        return {ok = false, reason = reason, port = old}
    end
    local new, err = ports.parse(raw_value(e))
    if new == nil then
        return no(err)
    end
    local busy = false
    local reservation
    if new and new ~= old then
        for _, other in ipairs(tx.change) do
            if other.n ~= me and ports.parse(raw_value(other)) == new then
                return no(string.format('port %d is also requested for instance %d', new, other.n))
            end
        end
        for _, n in ipairs(P.topo.numbers) do
            local inst = P.topo.instances[n]
            if inst.iproto_port == new and inst.iproto_host == P.me.host then
                return no(string.format('port %d is the IPROTO port of instance %d', new, n))
            end
        end
        local s, rerr, rerrno = ports.reserve(P.me.host, new)
        if s ~= nil then
            reservation = s
        elseif rerrno == errno.EADDRINUSE then
            -- Acceptable only if an instance of this change gives it up: the coordinator,
            -- who knows every participant's port, decides.
            busy = true
        else
            return no(string.format('cannot listen on port %d: %s', new, rerr))
        end
    end
    local vote = {ok = true, port = old, busy = busy and new or nil}
    rec = {id = tx.id, coordinator = tx.coordinator, participants = tx.participants,
           old = old, new = new, busy = busy, vote = vote, at = fiber.time()}
    P.prepared = rec
    P.reservation = reservation
    local ok, perr = pcall(store.prepared.replace, store.prepared, {tx.id, rec})
    if not ok then
        P.prepared = nil
        release_reservation()
        return {ok = false, reason = 'cannot record the prepared state: ' .. tostring(perr), port = old}
    end
    hooks.crash('participant_prepared')
    decision_watch(rec)
    return vote
end

-- Phase 2, commit. Idempotent.
local function commit(args)
    local id = args.id
    local known = store.get_outcome(id)
    if known == 'committed' then
        return {ok = true, port = P.port, already = true}
    elseif known == 'aborted' then
        return {ok = false, error = 'change ' .. id .. ' was aborted here'}
    end
    local rec = P.prepared
    if rec == nil or rec.id ~= id then
        return {ok = false, error = 'not prepared for change ' .. id}
    end
    box.atomic(function()
        store.outcome:replace{id, 'committed'}
        store.set_port(rec.new)
        store.prepared:delete{id}
    end)
    P.prepared = nil
    if rec.new == rec.old then
        release_reservation()
        return {ok = true, port = P.port, unchanged = true}
    end
    local ok, err = switch(rec.old, rec.new)
    return {ok = ok, port = P.port, error = err}
end

-- Phase 2, abort. Idempotent; an abort of a change this instance never prepared records
-- it, so that a late prepare of it is refused.
local function abort(args)
    local id = args.id
    local known = store.get_outcome(id)
    if known == 'aborted' then
        return {ok = true, already = true}
    elseif known == 'committed' then
        return {ok = false, error = 'change ' .. id .. ' was committed here'}
    end
    local rec = P.prepared
    if rec ~= nil and rec.id == id then
        box.atomic(function()
            store.outcome:replace{id, 'aborted'}
            store.prepared:delete{id}
        end)
        P.prepared = nil
        release_reservation()
        if rec.new ~= rec.old then
            failure_line(rec.old, rec.new)
        end
        return {ok = true}
    end
    store.outcome:replace{id, 'aborted'}
    local e = args.entry
    if e ~= nil then
        local new = ports.parse(raw_value(e))
        if new ~= P.port then
            failure_line(P.port, ports.show_entry(e))
        end
    end
    return {ok = true}
end

-- What this instance knows of change id, as a participant: committed, aborted,
-- uncertain (prepared, waiting), or aborted for a change it never prepared: it refuses
-- it from now on, so the coordinator cannot have committed it.
local function outcome(args)
    local id = args.id
    local known = store.get_outcome(id)
    if known ~= nil then
        return known
    end
    if P.prepared ~= nil and P.prepared.id == id then
        return 'uncertain'
    end
    store.outcome:replace{id, 'aborted'}
    return 'aborted'
end

function P.prepare(tx) return with_mutex(prepare, tx) end
function P.commit(args) return with_mutex(commit, args) end
function P.abort(args) return with_mutex(abort, args) end
function P.outcome(args) return with_mutex(outcome, args) end

-- Asks for the outcome of rec's change until it is known: the coordinator first, then
-- every other participant. Blocks (retrying) while the coordinator is unreachable and
-- every participant that answers is itself uncertain: 2PC's blocking case.
function P.resolve(rec)
    local t = P.topo.timeouts
    local me = P.me.number
    local blocked = false
    while P.prepared ~= nil and P.prepared.id == rec.id do
        local sess = rpc.session()
        local answer, from
        local r, err = sess:call(rec.coordinator, 'outcome', {id = rec.id}, t.connect)
        if r == 'committed' or r == 'aborted' then
            answer, from = r, rec.coordinator
        elseif r ~= 'pending' then
            for _, n in ipairs(rec.participants) do
                if n ~= me and n ~= rec.coordinator then
                    local r2 = sess:call(n, 'outcome', {id = rec.id}, t.connect)
                    if r2 == 'committed' or r2 == 'aborted' then
                        answer, from = r2, n
                        break
                    end
                end
            end
            if answer == nil and not blocked then
                blocked = true
                log.warn('twophase: change %s: blocked: coordinator %d %s and no other participant knows ' ..
                    'the outcome; waiting for it', rec.id, rec.coordinator,
                    r == nil and ('is unreachable (' .. tostring(err) .. ')') or ('answers ' .. tostring(r)))
            end
        end
        sess:close()
        if answer ~= nil then
            log.info('twophase: change %s: learned %s from instance %d', rec.id, answer, from)
            if answer == 'committed' then
                P.commit({id = rec.id})
            else
                P.abort({id = rec.id})
            end
            return
        end
        fiber.sleep(t.retry)
    end
end

-- After a yes vote: if phase 2 has not come within the decision timeout, ask.
decision_watch = function(rec)
    fiber.create(function()
        fiber.sleep(P.topo.timeouts.decision)
        if P.prepared ~= nil and P.prepared.id == rec.id then
            log.warn('twophase: change %s: no decision after %s s; asking for the outcome',
                rec.id, P.topo.timeouts.decision)
            P.resolve(rec)
        end
    end)
end

-- At start-up: a change left prepared is resolved by asking (its reservation, if any, is
-- taken again so the port stays ours).
function P.recover()
    local rec = P.prepared
    if rec == nil then
        return
    end
    log.warn('twophase: restarted while prepared for change %s of coordinator %d; asking for the outcome',
        rec.id, rec.coordinator)
    if rec.new and rec.new ~= rec.old and not rec.busy then
        P.reservation = ports.reserve(P.me.host, rec.new)
    end
    fiber.create(P.resolve, rec)
end

function P.status()
    return {
        port = P.port or ports.NONE,
        prepared = P.prepared and {id = P.prepared.id, coordinator = P.prepared.coordinator,
                                   from = show(P.prepared.old), to = show(P.prepared.new)} or nil,
    }
end

return P
