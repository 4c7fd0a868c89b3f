#!/usr/bin/env tarantool
-- Elections and the synchronous queue on one instance (2.6.3 semantics; node only:
-- Debian's 2.6.0 has no election options). Replica sets are tested by process tests.
local tap = require('tap')
local fio = require('fio')
local fiber = require('fiber')

box.cfg{work_dir = fio.tempdir(), log_level = 1, replication_timeout = 0.05,
        election_mode = 'candidate', replication_synchro_timeout = 0.2}

local test = tap.test('box_synchro')
test:plan(5)

local function err(f, ...)
    local ok, e = pcall(f, ...)
    if ok then return 'no error' end
    return tostring(e)
end

test:test('a lone candidate elects itself after the death timeout', function(t)
    t:plan(6)
    t:is(box.info.election.state, 'follower', 'follower at start')
    t:is(box.info.ro, true, 'read-only while not the leader')
    t:is(err(box.schema.space.create, 'x'), "Can't modify data because this instance is in read-only mode.",
        'writes refused')
    local t0 = fiber.clock()
    box.ctl.wait_rw(5)
    local waited = fiber.clock() - t0
    t:ok(waited >= 0.15 and waited < 2, 'writable after about 4 x replication_timeout: ' .. waited)
    local e = box.info.election
    t:is_deeply({e.state, e.term, e.vote, e.leader}, {'leader', 2, box.info.id, box.info.id}, 'leader of term 2')
    t:is(box.info.election.leader_idle, 0, 'a leader does not wait for itself')
end)

local s = box.schema.space.create('sync', {is_sync = true})
s:create_index('pk')
local a = box.schema.space.create('async')
a:create_index('pk')

test:test('quorum 1 confirms at once', function(t)
    t:plan(3)
    t:is(s:replace{1, 'one'}[2], 'one', 'committed')
    t:is_deeply(box.info.synchro, {queue = {owner = box.info.id, len = 0}, quorum = 1}, 'queue empty, owned')
    t:is(box.info.ro, false, 'still writable')
end)

test:test('a missing quorum rolls back at replication_synchro_timeout', function(t)
    t:plan(6)
    box.cfg{replication_synchro_quorum = 2}
    local t0 = fiber.clock()
    t:is(err(s.replace, s, {2}), 'Quorum collection for a synchronous transaction is timed out', 'timed out')
    local waited = fiber.clock() - t0
    t:ok(waited >= 0.19 and waited < 1, 'after the timeout: ' .. waited)
    t:is(s:get{2}, nil, 'rolled back')
    -- An asynchronous transaction behind a synchronous one shares its fate.
    local sync_result
    fiber.create(function() sync_result = err(s.replace, s, {3}) end)
    t:is(err(a.replace, a, {1}), 'A rollback for a synchronous transaction is received', 'async rolled back too')
    fiber.sleep(0.05)
    t:is(sync_result, 'Quorum collection for a synchronous transaction is timed out', 'the sync one timed out')
    t:is_deeply({s:get{3}, a:get{1}}, {}, 'neither is there')
end)

test:test('lowering the quorum confirms what waits', function(t)
    t:plan(3)
    local result
    fiber.create(function() result = err(s.replace, s, {4}) end)
    fiber.sleep(0.02)
    t:is(box.info.synchro.queue.len, 1, 'waiting in the queue')
    box.cfg{replication_synchro_quorum = 1}
    fiber.sleep(0.02)
    t:is(result, 'no error', 'committed')
    t:is(s:get{4}[1], 4, 'there')
end)

test:test('a voter is read-only, a candidate again leads', function(t)
    t:plan(4)
    box.cfg{election_mode = 'voter'}
    t:is(box.info.election.state, 'follower', 'a voter never leads')
    t:is(box.info.ro, true, 'read-only')
    box.cfg{election_mode = 'off'}
    t:is(box.info.ro, false, 'writable with elections off')
    local term = box.info.election.term
    box.cfg{election_mode = 'manual'}
    box.ctl.promote()
    t:ok(box.info.election.state == 'leader' and box.info.election.term > term, 'promoted in a new term')
end)

os.exit(test:check() and 0 or 1)
