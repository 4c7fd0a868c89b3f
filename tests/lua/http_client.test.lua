-- http.client (Tarantool's built-in API) against node's own http.server. Only 127.0.0.1.
local tap = require('tap')
local fiber = require('fiber')
local socket = require('socket')
local json = require('json')
local client = require('http.client')

local test = tap.test('http.client')
test:plan(10)

local httpd = require('http.server').new('127.0.0.1', 0, { log_requests = false })
httpd:route({ path = '/echo' }, function(req)
    return req:render({ json = {
        method = req.method, query = req.query, body = req:read_cached(),
        ct = req.headers['content-type'], x = req.headers['x-test'],
    } })
end)
httpd:route({ path = '/sleep' }, function() fiber.sleep(1) return { body = 'late' } end)
httpd:route({ path = '/redirect' }, function() return { status = 302, headers = { location = '/echo?from=r' } } end)
httpd:start()
local base = 'http://127.0.0.1:' .. httpd.tcp_server:name().port

test:test('methods', function(t)
    t:plan(9)
    local r = client.get(base .. '/echo')
    t:is(r.status, 200, 'get status')
    t:is(r.reason, 'Ok', 'reason (as Tarantool 2.6)')
    t:is(r:decode().method, 'GET', 'decode')
    t:is(client.post(base .. '/echo', 'abc'):decode().body, 'abc', 'post body')
    t:is(client.put(base .. '/echo', 'p'):decode().method, 'PUT', 'put')
    t:is(client.patch(base .. '/echo', 'p'):decode().method, 'PATCH', 'patch')
    t:is(client.delete(base .. '/echo'):decode().method, 'DELETE', 'delete')
    t:is(client.options(base .. '/echo'):decode().method, 'OPTIONS', 'options')
    r = client.head(base .. '/echo')
    t:ok(r.status == 200 and r.body == nil, 'head has no body')
end)

test:test('request, headers, params', function(t)
    t:plan(5)
    local r = client.request('POST', base .. '/echo', '{}', { headers = { ['Content-Type'] = 'application/json', ['X-Test'] = 'yes' } })
    local d = r:decode()
    t:is(d.ct, 'application/json', 'content-type sent')
    t:is(d.x, 'yes', 'custom header')
    t:is(client.get(base .. '/echo', { params = { a = 1, b = 'x y' } }):decode().query, 'a=1&b=x%20y', 'params in the query')
    d = client.post(base .. '/echo', nil, { params = { a = 1 } }):decode()
    t:ok(d.body == 'a=1' and d.ct == 'application/x-www-form-urlencoded', 'params as a form body')
    t:is(r.headers['content-type'], 'application/json; charset=utf-8', 'response headers')
end)

test:test('follow_location', function(t)
    t:plan(3)
    local r = client.get(base .. '/redirect')
    t:is(r.status, 200, 'followed by default')
    t:is(r:decode().query, 'from=r', 'to the location')
    t:is(client.get(base .. '/redirect', { follow_location = false }).status, 302, 'not followed when off')
end)

test:test('timeout', function(t)
    t:plan(3)
    local started = fiber.clock()
    local r = client.get(base .. '/sleep', { timeout = 0.1 })
    t:is(r.status, 408, 'status 408')
    t:is(r.reason, 'Timeout was reached', 'reason')
    t:ok(fiber.clock() - started < 0.9, 'returns at the timeout')
end)

test:test('refused port', function(t)
    t:plan(3)
    local s = socket('AF_INET', 'SOCK_STREAM', 'tcp')
    s:bind('127.0.0.1', 0)
    local port = s:name().port
    s:close()
    local ok, r = pcall(client.get, 'http://127.0.0.1:' .. port .. '/')
    t:ok(ok, 'returned, not raised')
    t:is(r.status, 595, 'status 595')
    t:is(r.reason, "Couldn't connect to server", 'reason')
end)

test:test('calls yield the fiber', function(t)
    t:plan(2)
    local ticks = 0
    local f = fiber.create(function()
        while true do
            ticks = ticks + 1
            fiber.sleep(0.01)
        end
    end)
    local r = client.get(base .. '/sleep')
    f:cancel()
    t:is(r.body, 'late', 'answer')
    t:ok(ticks > 10, 'other fibers ran meanwhile')
end)

test:test('new client and stat', function(t)
    t:plan(3)
    local c = client.new({ max_connections = 2 })
    local ch = fiber.channel(10)
    for _ = 1, 10 do
        fiber.create(function() ch:put(c:get(base .. '/echo').status) end)
    end
    local ok = 0
    for _ = 1, 10 do
        if ch:get(5) == 200 then ok = ok + 1 end
    end
    t:is(ok, 10, 'concurrent requests')
    t:is(c:stat().total_requests, 10, 'stat')
    t:is(c:get('ftp://127.0.0.1/').status, 595, 'unsupported protocol is 595')
end)

test:test('errors in arguments raise', function(t)
    t:plan(2)
    t:ok(not pcall(client.get, nil), 'no url')
    t:ok(not pcall(client.post, base .. '/echo', {}), 'table body')
end)

test:test('keep-alive reuses the connection', function(t)
    t:plan(2)
    local peers = {}
    local h = require('http.server').new('127.0.0.1', 0, { log_requests = false })
    h:route({ path = '/p' }, function(req) return { body = tostring(req.peer.port) } end)
    h:start()
    local c = client.new()
    local u = 'http://127.0.0.1:' .. h.tcp_server:name().port .. '/p'
    local ka = { keepalive_idle = 30, keepalive_interval = 60 }
    for _ = 1, 3 do
        peers[c:get(u, ka).body] = true
    end
    local n = 0
    for _ in pairs(peers) do n = n + 1 end
    t:is(n, 1, 'one client port for three requests with keepalive_idle/interval')
    peers = {}
    for _ = 1, 3 do
        peers[c:get(u).body] = true
    end
    n = 0
    for _ in pairs(peers) do n = n + 1 end
    t:is(n, 3, 'Connection: close without them, as in Tarantool 2.6')
    h:stop()
end)

test:test('repeated response headers', function(t)
    t:plan(2)
    local h = require('http.server').new('127.0.0.1', 0, { log_requests = false })
    h:route({ path = '/h' }, function()
        return { headers = { ['x-list'] = { 'a', 'b' }, location = { '/one', '/two' } }, body = '' }
    end)
    h:start()
    local r = client.get('http://127.0.0.1:' .. h.tcp_server:name().port .. '/h', { follow_location = false })
    t:is(r.headers['x-list'], 'a,b', 'joined with commas')
    t:is(r.headers.location, '/one', 'special headers keep the first value')
    h:stop()
end)

httpd:stop()
os.exit(test:check() and 0 or 1)
