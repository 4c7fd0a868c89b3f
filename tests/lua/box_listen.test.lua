#!/usr/bin/env tarantool
-- box.cfg{listen}: binding, rebinding, a busy port, a unix socket. Runs unchanged on
-- tarantool 2.6.
local tap = require('tap')
local fio = require('fio')
local socket = require('socket')
-- Before box.cfg: its work_dir becomes the current folder.
local free_port = require('free_port')

local dir = fio.tempdir()
box.cfg{work_dir = dir, log_level = 0}

local function greeting(host, port)
    local s = socket.tcp_connect(host, port, 2)
    if s == nil then return nil end
    local g = s:read(128, 2)
    s:close()
    return g
end

local test = tap.test('box_listen')
test:plan(9)

local p1 = free_port()
box.cfg{listen = '127.0.0.1:' .. p1}
local g = greeting('127.0.0.1', p1)
test:ok(g ~= nil and g:match('^Tarantool 2%.6%.%d+ %(Binary%) [0-9a-f-]+ *\n') ~= nil, 'greeting line 1')
test:is(#g, 128, 'greeting is 128 bytes')
test:is(g:sub(65):match('^(%S+)'):len(), 44, 'base64 salt of 32 bytes')

-- A busy port: the error, the option unchanged, the old port still serving.
local holder = socket.tcp_server('127.0.0.1', 0, function() end)
local busy = holder:name().port
local ok, e = pcall(box.cfg, {listen = '127.0.0.1:' .. busy})
test:is(ok, false, 'binding a busy port fails')
test:is(tostring(e), 'binary: failed to bind, called on fd -1', 'with tarantool\'s text')
test:is(box.cfg.listen, '127.0.0.1:' .. p1, 'listen keeps its value')
-- Tarantool 2.6.0 has already closed the old port by then (it rebinds in place); node binds
-- the new address first, so a failed rebind loses nothing.
if box.info.version:match('gnode') then
    test:ok(greeting('127.0.0.1', p1) ~= nil, 'the old port still serves')
else
    test:ok(greeting('127.0.0.1', p1) == nil, 'tarantool 2.6.0 closed the old port')
end
holder:close()

-- Rebind to a unix socket: the TCP port closes.
local path = fio.pathjoin(dir, 'node.sock')
box.cfg{listen = 'unix/:' .. path}
test:ok(greeting('unix/', path) ~= nil, 'unix socket serves')
test:is(greeting('127.0.0.1', p1), nil, 'the old port is closed')

os.exit(test:check() and 0 or 1)
