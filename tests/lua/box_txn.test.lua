#!/usr/bin/env tarantool
-- Transactions: begin/commit/rollback, atomic, savepoints, triggers, yields. Runs
-- unchanged on tarantool 2.6.
local tap = require('tap')
local fio = require('fio')
local fiber = require('fiber')

box.cfg{work_dir = fio.tempdir(), log_level = 1}
local s = box.schema.space.create('t')
s:create_index('pk')

local test = tap.test('box_txn')
test:plan(7)

local function err(f, ...)
    local ok, e = pcall(f, ...)
    if ok then return 'no error' end
    return tostring(e)
end

test:test('commit and rollback', function(t)
    t:plan(6)
    t:is(box.is_in_txn(), false, 'not in a transaction')
    box.begin()
    t:is(box.is_in_txn(), true, 'in a transaction')
    s:insert{1}
    s:insert{2}
    box.commit()
    t:is(s:len(), 2, 'committed')
    box.begin()
    s:insert{3}
    s:delete{1}
    box.rollback()
    t:is(s:len(), 2, 'rolled back')
    t:ok(s:get{1} ~= nil and s:get{3} == nil, 'both statements undone')
    box.begin()
    t:is(err(box.begin), 'Operation is not permitted when there is an active transaction ', 'nested begin')
    box.rollback()
end)

test:test('a failed statement rolls back only itself', function(t)
    t:plan(3)
    box.begin()
    s:insert{10}
    t:is(err(s.insert, s, {10}), "Duplicate key exists in unique index 'pk' in space 't'", 'statement fails')
    s:insert{11}
    box.commit()
    t:ok(s:get{10} ~= nil, 'earlier statement kept')
    t:ok(s:get{11} ~= nil, 'later statement kept')
end)

test:test('box.atomic', function(t)
    t:plan(4)
    t:is(box.atomic(function(a) s:insert{a} return 'done' end, 20), 'done', 'returns the function result')
    t:ok(s:get{20} ~= nil, 'committed')
    local ok = pcall(box.atomic, function() s:insert{21} error('boom') end)
    t:is(ok, false, 'error propagates')
    t:is(s:get{21}, nil, 'rolled back')
end)

test:test('savepoints', function(t)
    t:plan(4)
    box.begin()
    s:insert{30}
    local sp = box.savepoint()
    s:insert{31}
    box.rollback_to_savepoint(sp)
    s:insert{32}
    box.commit()
    t:ok(s:get{30} ~= nil, 'before the savepoint kept')
    t:is(s:get{31}, nil, 'after the savepoint undone')
    t:ok(s:get{32} ~= nil, 'transaction went on')
    t:is(err(box.savepoint), 'No active transaction', 'savepoint outside a transaction')
end)

test:test('on_commit and on_rollback', function(t)
    t:plan(3)
    local log = {}
    box.begin()
    box.on_commit(function() table.insert(log, 'commit') end)
    s:insert{40}
    box.commit()
    box.begin()
    box.on_rollback(function() table.insert(log, 'rollback') end)
    s:insert{41}
    box.rollback()
    t:is_deeply(log, {'commit', 'rollback'}, 'triggers ran')
    t:is(err(box.on_commit, function() end),
        'Usage inside a transaction: box.on_commit([function | nil, [function | nil]])', 'trigger outside a transaction')
    t:is(s:get{41}, nil, 'rolled back')
end)

test:test('a yield aborts the transaction', function(t)
    t:plan(5)
    box.begin()
    fiber.sleep(0)
    t:is(err(box.commit), 'no error', 'an empty transaction survives a yield')
    box.begin()
    s:replace{50}
    fiber.sleep(0)
    t:is(err(box.commit), 'Transaction has been aborted by a fiber yield', 'commit fails')
    t:is(box.is_in_txn(), false, 'transaction is over')
    t:is(s:get{50}, nil, 'its statement is undone')
    t:is(s:insert{50}[1], 50, 'next statement works')
end)

test:test('transactions of different fibers', function(t)
    t:plan(2)
    local done = fiber.channel(1)
    fiber.create(function()
        box.begin()
        s:insert{60}
        box.commit()
        done:put(true)
    end)
    done:get()
    t:ok(s:get{60} ~= nil, 'a fiber commits its own transaction')
    t:is(box.is_in_txn(), false, 'the main fiber has none')
end)

os.exit(test:check() and 0 or 1)
