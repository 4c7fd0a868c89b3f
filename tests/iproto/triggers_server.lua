-- Session triggers over the binary port (tests/iproto_clients.rs): runs on node and tarantool.
box.cfg{listen = '127.0.0.1:' .. arg[1], log_level = 1}
box.schema.user.grant('guest', 'read,write,execute', 'universe')
box.schema.user.create('banned', {password = 'x'})
box.schema.user.grant('banned', 'read,write,execute', 'universe')
box.schema.user.create('test', {password = 'pass'})
box.schema.user.grant('test', 'read,write,execute', 'universe')
local events = {}
box.session.on_connect(function()
    table.insert(events, ('connect %s %s %s'):format(box.session.type(), box.session.user(),
        tostring(box.session.peer() ~= nil)))
end)
box.session.on_auth(function(user, ok)
    table.insert(events, ('auth %s %s'):format(user, tostring(ok)))
    if user == 'banned' then error('banned user') end
end)
box.session.on_disconnect(function()
    table.insert(events, ('disconnect %s'):format(box.session.user()))
end)
local reject = false
local rejecter = box.session.on_connect(function() if reject then error('rejected', 0) end end)
-- Waits (5 s at most) for at least `least` events: disconnects arrive on their own time.
function take_events(least)
    local deadline = require('clock').monotonic() + 5
    while #events < (least or 0) and require('clock').monotonic() < deadline do
        require('fiber').sleep(0.01)
    end
    local e = events
    events = {}
    return e
end
function set_reject(v) reject = v end
function remember(v) box.session.storage.v = v return box.session.id() ~= nil end
function recall() return box.session.storage.v end
function drop_rejecter() box.session.on_connect(nil, rejecter) return #box.session.on_connect() end
