-- The lecture's hint (shared/seed/can-use-port.lua) runs unchanged: false and an error for
-- a port that a listening socket holds, true for a free one.
local tap = require('tap')
local socket = require('socket')

local test = tap.test('can_use_port')
test:plan(5)

local SEED = '../../../shared/seed/can-use-port.lua'
local found, can_use_port = pcall(dofile, SEED)
if not found then
    test:fail(string.format('cannot load %s (the shared/ folder must sit beside the repository): %s',
        SEED, tostring(can_use_port)))
    os.exit(1)
end
test:is(type(can_use_port), 'function', 'the seed file returns a function')

local holder = socket('AF_INET', 'SOCK_STREAM', 'tcp')
assert(holder:bind('127.0.0.1', 0) and holder:listen())
local taken = holder:name().port

local ok, err = can_use_port(taken)
test:is(ok, false, 'a port held by a listening socket cannot be used')
test:is(err, 'Address already in use', 'and the error says why')

holder:close()
test:is(can_use_port(taken), true, 'once the listener is closed the port is free')

-- A port that was never taken: ask the kernel for one, release it, then check it.
local probe = socket('AF_INET', 'SOCK_STREAM', 'tcp')
probe:bind('127.0.0.1', 0)
local free = probe:name().port
probe:close()
test:is(can_use_port(free), true, 'a free port can be used')

os.exit(test:check() and 0 or 1)
