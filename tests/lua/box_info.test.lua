#!/usr/bin/env tarantool
-- box.info, box.stat, box.slab.info, box.snapshot and checkpoint_count, box.cfg read-back.
-- Runs unchanged on tarantool 2.6.
local tap = require('tap')
local fio = require('fio')

local dir = fio.tempdir()
box.cfg{work_dir = dir, log_level = 1, checkpoint_count = 2}
local s = box.schema.space.create('t')
s:create_index('pk')

local test = tap.test('box_info')
test:plan(5)

test:test('box.info', function(t)
    t:plan(10)
    local info = box.info
    t:is(info.id, 1, 'id')
    t:is(type(info.uuid), 'string', 'uuid')
    t:is(box.cfg.instance_uuid, nil, 'a generated uuid is not read back in box.cfg')
    t:is(info.status, 'running', 'status')
    t:is(info.ro, false, 'ro')
    local lsn = info.lsn
    s:insert{1}
    t:is(box.info.lsn, lsn + 1, 'lsn grows by one per row')
    t:is(box.info.vclock[1], box.info.lsn, 'vclock[id] is the lsn')
    t:is(box.info().pid, box.info.pid, 'box.info() and box.info.x agree')
    -- Rows of local spaces count in component 0, not in the instance's own.
    local loc = box.schema.space.create('local_rows', {is_local = true})
    loc:create_index('pk')
    lsn = box.info.lsn
    local local_lsn = box.info.vclock[0] or 0
    loc:insert{1}
    loc:insert{2}
    t:is(box.info.lsn, lsn, 'local rows leave the lsn alone')
    t:is(box.info.vclock[0], local_lsn + 2, 'and count in vclock[0]')
    loc:drop()
end)

test:test('box.stat', function(t)
    t:plan(3)
    local before = box.stat().INSERT.total
    s:insert{2}
    t:is(box.stat().INSERT.total, before + 1, 'INSERT counted')
    t:is(type(box.stat().SELECT.rps), 'number', 'rps is a number')
    t:ok(box.stat.REPLACE ~= nil, 'box.stat.X')
end)

test:test('box.slab.info', function(t)
    t:plan(3)
    local slab = box.slab.info()
    t:is(type(slab.arena_used), 'number', 'arena_used')
    t:is(type(slab.items_used), 'number', 'items_used')
    t:is(slab.quota_size, box.cfg.memtx_memory, 'quota is memtx_memory')
end)

test:test('snapshots and checkpoint_count', function(t)
    t:plan(3)
    s:replace{101}
    t:is(box.snapshot(), 'ok', 'box.snapshot() says ok')
    for i = 2, 3 do
        s:replace{100 + i}
        box.snapshot()
    end
    t:is(#fio.glob(fio.pathjoin(dir, '*.snap')), 2, 'checkpoint_count snapshots are kept')
    local ok = pcall(box.cfg, {checkpoint_count = 3})
    t:ok(ok, 'checkpoint_count is dynamic')
end)

test:test('box.cfg reads back', function(t)
    t:plan(4)
    t:is(type(box.cfg), 'table', 'box.cfg is a table after the first call')
    t:is(box.cfg.checkpoint_count, 3, 'a changed option')
    t:is(box.cfg.wal_mode, 'write', 'a default')
    t:is(box.cfg.listen, nil, 'an unset option')
end)

os.exit(test:check() and 0 or 1)
