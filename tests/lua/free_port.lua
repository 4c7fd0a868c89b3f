-- A TCP port on 127.0.0.1 that nothing listens on right now, for the TAP scripts here
-- (`local free_port = require('free_port')`; they run from this folder).
local socket = require('socket')

return function()
    local s = socket('AF_INET', 'SOCK_STREAM', 'tcp')
    assert(s:bind('127.0.0.1', 0))
    local port = s:name().port
    s:close()
    return port
end
