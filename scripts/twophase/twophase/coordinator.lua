-- The coordinator: runs one change at a time through the two phases.
--
--   1. record {id, status = 'collecting', participants, change}    (durable)
--   2. prepare the lowest-numbered participant first (it serializes competing
--      coordinators), then the others in parallel; ask the instances the change does not
--      name for their ports, to check duplicates
--   3. decide: commit iff every vote is yes and the cluster-wide checks pass;
--      record the decision (durable) before telling anyone
--   4. send the decision to every participant in parallel; a commit not acknowledged is
--      re-sent in the background (also after a restart) until every participant has it
--
-- A coordinator that restarts finds its log: a change still 'collecting' was never
-- decided, so it is aborted (presumed abort); a decided change is delivered again.

local fiber = require('fiber')
local log = require('log')
local uuid = require('uuid')
local ports = require('twophase.ports')
local store = require('twophase.store')
local rpc = require('twophase.rpc')
local hooks = require('twophase.hooks')

local C = {}

C.live = {}      -- id -> true while this process is collecting votes for it
C.busy = nil     -- id of the change this instance is coordinating

function C.init(topo, me)
    C.topo = topo
    C.me = me
end

local function parallel(list, f)
    local results = {}
    local left = #list
    if left == 0 then
        return results
    end
    local done = fiber.channel(left)
    for _, item in ipairs(list) do
        fiber.create(function()
            local ok, a, b = pcall(f, item)
            if not ok then
                a, b = nil, tostring(a)
            end
            results[item] = {a, b}
            done:put(true)
        end)
    end
    for _ = 1, left do
        done:get()
    end
    return results
end

-- Normalizes a change {[n] = port | box.NULL}: returns a sorted list of entries
-- {n, v | null | bad}, or nil and an error.
local function normalize(change)
    if type(change) ~= 'table' then
        return nil, 'the change must be a map {[instance number] = port or box.NULL}'
    end
    local entries = {}
    for k, v in pairs(change) do
        local n = k
        if type(k) == 'string' and k:match('^%d+$') then
            n = tonumber(k)
        end
        if type(n) ~= 'number' or C.topo.instances[n] == nil then
            return nil, string.format('no instance %s in the topology', tostring(k))
        end
        local e = {n = n}
        if ports.is_null(v) then
            e.null = true
        elseif type(v) == 'number' or type(v) == 'string' then
            e.v = v
        else
            e.bad = type(v)
        end
        table.insert(entries, e)
    end
    if #entries == 0 then
        return nil, 'the change names no instance'
    end
    table.sort(entries, function(a, b) return a.n < b.n end)
    return entries
end

local function entry_value(e)
    if e.null then
        return nil
    end
    return e.v
end

-- Phase 2 delivery of rec's decision to the participants that have not acknowledged it;
-- returns true when every one has.
local function deliver(rec, timeout, session)
    local op = rec.status == 'commit' and 'commit' or 'abort'
    local todo = {}
    for _, n in ipairs(rec.participants) do
        if rec.acked[n] == nil then
            table.insert(todo, n)
        end
    end
    local entries = {}
    for _, e in ipairs(rec.change) do
        entries[e.n] = e
    end
    local sess = session or rpc.session()
    local res = parallel(todo, function(n)
        return sess:call(n, op, {id = rec.id, entry = entries[n]}, timeout)
    end)
    if session == nil then
        sess:close()
    end
    local all = true
    for _, n in ipairs(todo) do
        local r, err = res[n][1], res[n][2]
        if r ~= nil then
            rec.acked[n] = r
        else
            rec.errors = rec.errors or {}
            rec.errors[n] = err
            all = false
        end
    end
    -- An abort is sent once: a participant that missed it asks and learns it.
    if all or op == 'abort' then
        rec.done = true
    end
    store.put_coord(rec)
    return all
end

-- Keeps delivering a commit until every participant has it (aborts are not re-sent: a
-- participant that missed one asks, and learns it is aborted).
local function redeliver(rec)
    fiber.create(function()
        while not rec.done do
            fiber.sleep(C.topo.timeouts.retry)
            if deliver(rec, C.topo.timeouts.commit) then
                log.info('twophase: change %s: every participant has the decision now', rec.id)
            end
        end
    end)
end

-- What this coordinator decided about change id: 'committed', 'aborted', 'pending'
-- (votes being collected), or nil if it did not coordinate it.
function C.outcome(id)
    local rec = store.get_coord(id)
    if rec == nil then
        return nil
    end
    if rec.status == 'commit' then
        return 'committed'
    elseif rec.status == 'abort' then
        return 'aborted'
    elseif C.live[id] then
        return 'pending'
    end
    return 'aborted'
end

local function report(rec, votes, results)
    local out = {
        status = rec.status == 'commit' and 'committed' or 'aborted',
        change = rec.id,
        coordinator = C.me.number,
        participants = {},
    }
    local reasons = {}
    for _, e in ipairs(rec.change) do
        local n = e.n
        local v = votes[n] or {}
        local from = v.port == nil and 'unknown' or ports.show(v.port)
        local p = {instance = n, from = from, to = ports.show_entry(e),
                   vote = v.ok and 'yes' or ('no: ' .. tostring(v.reason))}
        if not v.ok then
            table.insert(reasons, string.format('instance %d: %s', n, tostring(v.reason)))
        end
        if v.locked then
            out.locked = true
        end
        local r = results and results[n]
        if r ~= nil and rec.status == 'abort' then
            p.result = 'aborted'
        elseif r ~= nil then
            if r.ok then
                p.result = ports.show(r.port)
            else
                p.result = 'failed: ' .. tostring(r.error)
                out.failed = true
            end
        elseif rec.status == 'commit' then
            p.result = 'not acknowledged yet: ' .. tostring(rec.errors and rec.errors[n])
        end
        table.insert(out.participants, p)
    end
    if out.status == 'aborted' then
        out.reasons = reasons
    end
    return out
end

-- Runs a change; returns its outcome (a table).
function C.apply(change)
    local entries, err = normalize(change)
    if entries == nil then
        return {status = 'rejected', error = err}
    end
    if C.busy ~= nil then
        return {status = 'aborted', locked = true,
                error = 'locked: this instance is coordinating change ' .. C.busy}
    end
    local t = C.topo.timeouts
    local id = uuid.str()
    C.busy = id
    C.live[id] = true
    local ok, res = pcall(function()
        local participants, named = {}, {}
        for _, e in ipairs(entries) do
            table.insert(participants, e.n)
            named[e.n] = e
        end
        local rec = {id = id, status = 'collecting', participants = participants, change = entries,
                     started = fiber.time(), acked = {}}
        store.put_coord(rec)
        local shown = {}
        for _, e in ipairs(entries) do
            table.insert(shown, string.format('[%d] = %s', e.n, ports.show_entry(e)))
        end
        log.info('twophase: change %s: coordinating {%s}', id, table.concat(shown, ', '))

        local sess = rpc.session()
        local tx = {id = id, coordinator = C.me.number, participants = participants, change = entries}
        local votes = {}
        local function ask(n)
            local v, verr = sess:call(n, 'prepare', tx, t.prepare)
            if v == nil then
                v = {ok = false, reason = verr}
            end
            return v
        end
        -- Phase 1: the lowest-numbered participant first. Two coordinators of changes
        -- with it in common meet there, and one of them gets 'locked' before it has locked
        -- anyone else.
        local first = participants[1]
        votes[first] = ask(first)
        hooks.pause('after_first_vote')
        hooks.crash('after_first_vote')
        -- If it is locked by another change, nobody else is asked (they would be locked for
        -- nothing); any other no still lets every participant give its own reason.
        local others = {}
        if not votes[first].locked then
            for i = 2, #participants do
                table.insert(others, participants[i])
            end
        else
            for i = 2, #participants do
                votes[participants[i]] = {ok = false,
                    reason = string.format('not asked: instance %d is locked', first)}
            end
        end
        local unnamed = {}
        for _, n in ipairs(C.topo.numbers) do
            if named[n] == nil then
                table.insert(unnamed, n)
            end
        end
        local ports_of = {}
        local jobs = {}
        for _, n in ipairs(others) do
            table.insert(jobs, n)
        end
        if not votes[first].locked then
            for _, n in ipairs(unnamed) do
                table.insert(jobs, -n)
            end
        end
        local res = parallel(jobs, function(j)
            if j > 0 then
                return ask(j)
            end
            return sess:call(-j, 'info', {}, t.info)
        end)
        for _, j in ipairs(jobs) do
            if j > 0 then
                votes[j] = res[j][1]
            elseif res[j][1] ~= nil then
                ports_of[-j] = res[j][1].port
            end
        end
        hooks.crash('after_prepare')

        -- Cluster-wide checks the participants cannot make alone.
        local new_of = {}
        for _, n in ipairs(participants) do
            new_of[n] = ports.parse(entry_value(named[n]))
        end
        for _, n in ipairs(participants) do
            local v = votes[n]
            local new = new_of[n]
            local host = C.topo.instances[n].host
            if v.ok and new then
                for _, u in ipairs(unnamed) do
                    if ports_of[u] == new and C.topo.instances[u].host == host then
                        v.ok = false
                        v.reason = string.format('port %d is the port of instance %d, which the change ' ..
                            'does not name', new, u)
                    end
                end
            end
            if v.ok and v.busy then
                local holder
                for _, m in ipairs(participants) do
                    if m ~= n and votes[m].port == v.busy and new_of[m] ~= v.busy and
                            C.topo.instances[m].host == host then
                        holder = m
                    end
                end
                if holder == nil then
                    v.ok = false
                    v.reason = string.format('port %d is in use', v.busy)
                end
            end
        end
        local all = true
        for _, n in ipairs(participants) do
            if not votes[n].ok then
                all = false
            end
        end
        rec.status = all and 'commit' or 'abort'
        rec.votes = votes
        store.put_coord(rec)
        C.live[id] = nil
        if all then
            log.info('twophase: change %s: decided to commit', id)
        else
            local why = {}
            for _, n in ipairs(participants) do
                if not votes[n].ok then
                    table.insert(why, string.format('instance %d: %s', n, tostring(votes[n].reason)))
                end
            end
            log.info('twophase: change %s: decided to abort (%s)', id, table.concat(why, '; '))
        end
        hooks.crash('after_decision')

        -- Phase 2.
        deliver(rec, all and t.commit or t.prepare, sess)
        sess:close()
        if all and not rec.done then
            redeliver(rec)
        end
        return report(rec, votes, rec.acked)
    end)
    C.busy = nil
    C.live[id] = nil
    if not ok then
        log.error('twophase: change %s: %s', id, tostring(res))
        -- What the log says is the outcome: a recorded commit stands (and is delivered),
        -- anything else is aborted.
        local rec = store.get_coord(id)
        if rec ~= nil and rec.status == 'commit' then
            rec.acked = rec.acked or {}
            if not rec.done then
                redeliver(rec)
            end
            return {status = 'committed', change = id, error = tostring(res)}
        end
        return {status = 'aborted', change = id, error = tostring(res)}
    end
    return res
end

-- At start-up: finish what the log says is unfinished.
function C.recover()
    for _, rec in ipairs(store.coord_records()) do
        if rec.status == 'collecting' then
            log.warn('twophase: change %s was not decided before a restart: aborting it', rec.id)
            rec.status = 'abort'
            store.put_coord(rec)
        end
        if not rec.done then
            rec.acked = rec.acked or {}
            log.warn('twophase: change %s: delivering the decision (%s) after a restart', rec.id, rec.status)
            fiber.create(function()
                if not deliver(rec, C.topo.timeouts.commit) and rec.status == 'commit' then
                    redeliver(rec)
                end
            end)
        end
    end
end

function C.status()
    return {coordinating = C.busy}
end

return C
