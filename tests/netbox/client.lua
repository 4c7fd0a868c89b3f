-- net.box checks, run by real `tarantool` and by `node` against the same server
-- (tests/netbox/server.lua); tests/netbox_tarantool.rs compares the two outputs line by
-- line, so every line printed here is a claim that node's net.box behaves as 2.6.0's.
-- arg[1]: the server's port; arg[2]: a unix socket path the server does not listen on;
-- arg[3]: a command that starts a throw-away server (`<cmd> <port> <dir>`);
-- arg[4]: a free port for it; arg[5]: a scratch directory.
-- Nothing printed may depend on addresses, timing or absolute schema versions.
local net = require('net.box')
local fiber = require('fiber')

local port = tonumber(arg[1])
local missing_socket, server_cmd, spare_port, scratch = arg[2], arg[3], tonumber(arg[4]), arg[5]
local uri = 'test:pass@127.0.0.1:' .. port

-- {{{ printing

local function strip(msg)
    -- Positions inside the client library differ between implementations.
    return (tostring(msg):gsub('^builtin/[%w_/%.]+:%d+: ', ''))
end

local function is_error(v)
    local t = type(v)
    if t ~= 'cdata' and t ~= 'userdata' then return false end
    local ok, kind = pcall(function() return v.type end)
    return ok and type(kind) == 'string' and v.message ~= nil
end

local repr

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do table.insert(keys, k) end
    table.sort(keys, function(a, b)
        if type(a) == type(b) and (type(a) == 'number' or type(a) == 'string') then return a < b end
        return type(a) < type(b)
    end)
    return keys
end

repr = function(v)
    if v == nil then return 'nil' end
    local t = type(v)
    if t == 'string' then return string.format('%q', v) end
    if t == 'number' or t == 'boolean' then return tostring(v) end
    if is_error(v) then
        return string.format('error(%s, %s, %q)', v.type, tostring(v.code), strip(v.message))
    end
    if box.tuple.is(v) then return 'tuple' .. repr(v:totable()) end
    if (t == 'cdata' or t == 'userdata') and v == box.NULL then return 'NULL' end
    if t == 'table' then
        local parts = {}
        for _, k in ipairs(sorted_keys(t == 'table' and v or {})) do
            if type(k) == 'number' then
                table.insert(parts, repr(v[k]))
            else
                table.insert(parts, k .. '=' .. repr(v[k]))
            end
        end
        return '{' .. table.concat(parts, ', ') .. '}'
    end
    return t
end

local function show(label, ...)
    local parts = {}
    for i = 1, select('#', ...) do parts[i] = repr((select(i, ...))) end
    print(label .. ': ' .. table.concat(parts, ' '))
end

-- Runs f and shows its results, or its error as `error "text"` / `error(type, code, text)`.
local function try(label, f, ...)
    local res = {pcall(f, ...)}
    if res[1] then
        show(label, unpack(res, 2, table.maxn(res)))
    elseif is_error(res[2]) then
        show(label .. ' raises', res[2])
    else
        print(label .. ' raises: ' .. strip(res[2]))
    end
end

local function section(name) print('--- ' .. name) end

-- Lets other fibers run until cond() holds (at most 5 s).
local function wait_for(cond)
    local deadline = fiber.clock() + 5
    while not cond() and fiber.clock() < deadline do fiber.sleep(0.01) end
end

-- }}}

section('connect')
local c = net.connect(uri)
show('state', c.state, c.error, c:is_connected(), c.protocol, c.peer_version_id)
show('fields', type(c.schema_version), type(c.peer_uuid), #c.peer_uuid, c.host, c.port, c.opts)
show('wait_connected', c:wait_connected(), c:wait_state('active'), c:wait_state({active = true}))
show('wait_state', c:wait_state('closed', 0.01), c:wait_state('zzz', 0.01))

section('calls')
show('ping', c:ping(), c:ping({timeout = 1}))
show('call', c:call('add', {1, 2}))
show('call multi', c:call('multi'))
show('call none', select('#', c:call('echo')))
show('call echo', c:call('echo', {1, 'a', {b = 2}, true}))
show('call dotted', c:call('string.upper', {'abc'}))
show('eval', c:eval('return 1, 2'))
show('eval args', c:eval('return ...', {1, 2, 3}))
show('eval none', select('#', c:eval('local x = 1')))
show('call_16', c:call_16('echo', 1, 'two', {3}))
try('call args not a table', c.call, c, 'add', 1, 2)
try('eval args not a table', c.eval, c, 'return 1', 5)
try('call with a dot', c.call, 'add')
try('eval syntax', c.eval, c, 'x x x')
try('lua error', c.call, c, 'fails')
try('box error', c.call, c, 'fails_box')
try('no such proc', c.call, c, 'nosuch')
try('timeout', c.call, c, 'slow', {1}, {timeout = 0.05})
try('eval error object', c.eval, c, 'box.error(box.error.UNSUPPORTED, "a", "b")')

section('guest')
local g = net.connect('127.0.0.1:' .. port)
show('guest', g.state, g:call('add', {2, 3}))
try('guest eval', g.eval, g, 'return 1')
show('guest space', g.space.tester == nil, g.space._vspace ~= nil)
g:close()

section('space')
local s = c.space.tester
show('by id', c.space[s.id] == s)
show('space', s.id, s.name, s.engine, s.field_count, s.enabled, s.temporary, s.is_sync, s.connection == c)
show('format', s:format())
try('set format', s.format, s, {})
show('no count', s.count, s.len, s.truncate, s.pairs, s.bsize)
local pk = s.index.primary
show('index', pk.id, pk.name, pk.type, pk.unique, pk.parts, pk.space == s, s.index[0] == pk)
show('hash index', s.index.byname.type, s.index.byname.unique, s.index.byname.parts)
show('select all', s:select{})
show('select nil', s:select())
show('select key', s:select{1})
show('select scalar', s:select(2))
show('select limit', s:select({}, {limit = 1}))
show('select offset', s:select({}, {limit = 1, offset = 1}))
show('select GT', s:select({1}, {iterator = 'GT'}))
show('select lt', s:select({2}, {iterator = 'lt'}))
show('select number', s:select({2}, {iterator = box.index.LE}))
try('select bad name', s.select, s, {}, {iterator = 'XX'})
try('select bad number', s.select, s, {}, {iterator = 100})
try('select bad type', s.select, s, {}, {iterator = true})
try('select key parts', s.select, s, {1, 2})
try('select string key', s.select, s, {'x'})
local t = s:get{1}
show('get', t, t.name, t.id, t[2], box.tuple.is(t))
show('get missing', select('#', s:get{42}), s:get{42})
try('get partial', s.get, s, {})
try('space.get', s.get, {1})
try('index.select', pk.select, {1})
show('insert', s:insert{3, 'three'})
try('insert dup', s.insert, s, {1, 'x'})
try('insert bad type', s.insert, s, {'x'})
try('insert scalar', s.insert, s, 7)
show('replace', s:replace{3, 'tres'})
show('update', s:update({3}, {{'=', 2, 'drei'}}))
show('update by field name', s:update(3, {{'=', 'name', 'trois'}}))
show('update missing', select('#', s:update({42}, {{'=', 2, 'x'}})))
try('update bad op', s.update, s, {3}, {{'?', 2, 'x'}})
show('upsert new', select('#', s:upsert({4, 'four'}, {{'=', 2, 'x'}})))
show('upsert old', s:upsert({4, 'four'}, {{'=', 2, 'vier'}}), s:get{4})
show('delete', s:delete{4})
show('delete missing', select('#', s:delete{4}))
show('min max', pk:min(), pk:max(), pk:min({2}), pk:max({2}))
show('by name', s.index.byname:get('two'), s.index.byname:select('three'))
try('hash min', s.index.byname.min, s.index.byname)
show('count', pk:count(), pk:count(1, {iterator = 'GE'}), pk:count({2}))
show('index update', pk:update({3}, {{'=', 2, 'iii'}}))
show('index delete', s.index.byname:delete('iii'), pk:get{3})
try('no primary key', c.space.nopk.select, c.space.nopk)
show('nopk', c.space.nopk.index[0], c.space.nopk.id == c.space.nopk.id)
show('system', c.space._vspace.id, c.space._vindex.index.primary.parts)
try('timeout option', s.select, s, {}, {timeout = 1})
try('space update no ops', s.update, s, {1})

section('futures')
local f = c:call('slow', {0.2}, {is_async = true})
show('not ready', f:is_ready(), f:result())
show('wait short', f:wait_result(0.01))
show('wait', f:wait_result())
show('ready', f:is_ready(), f:result())
f = c:call('slow', {0.2}, {is_async = true})
f:discard()
show('discarded', f:is_ready(), f:result())
show('discarded wait', f:wait_result())
f = c:call('fails', {}, {is_async = true})
show('failed', f:wait_result(1))
show('failed result', f:result())
try('wait negative', f.wait_result, f, -1)
try('wait string', f.wait_result, f, 'x')
try('pairs negative', f.pairs, f, -1)
try('async on_push', c.call, c, 'pusher', {1}, {is_async = true, on_push = print})
f = c:call('pusher', {3}, {is_async = true})
for i, m in f:pairs() do show('iter', i, m) end
show('after pairs', f:is_ready(), f:result())
f = c:call('fails', {}, {is_async = true})
for i, m in f:pairs() do show('iter error', i, m) end
f = c:call('slow', {0.3}, {is_async = true})
for i, m in f:pairs(0.01) do show('iter timeout', i, m) end
f = c.space.tester:select({}, {is_async = true})
show('async select', f:wait_result())
f = c:eval('return 1, 2', {}, {is_async = true})
show('async eval', f:wait_result())
f = c.space.tester:get({1}, {is_async = true})
show('async get', f:wait_result())
local pushed = {}
show('sync on_push', c:call('pusher', {2}, {on_push = function(ctx, msg) table.insert(pushed, {ctx, msg}) end,
                                            on_push_ctx = 'CTX'}))
show('pushed', pushed)
show('sync pushes ignored', c:call('pusher', {2}))

section('pipelining')
local done, results, fibers = 0, {}, 20
for i = 1, fibers do
    fiber.create(function()
        local sum = 0
        for j = 1, 25 do sum = sum + c:call('add', {i, j}) end
        results[i] = sum
        done = done + 1
    end)
end
while done < fibers do fiber.sleep(0.01) end
local ok = true
for i = 1, fibers do ok = ok and results[i] == 25 * i + 325 end
show('20 fibers x 25 calls', ok)
local slow_f = c:call('slow', {0.3}, {is_async = true})
local started = fiber.clock()
show('a slow call does not block others', c:call('add', {1, 1}), fiber.clock() - started < 0.25)
slow_f:discard()

section('triggers')
local events = {}
local function log_event(name)
    return function(conn) table.insert(events, {name, conn.state, conn.error, conn.schema_version ~= nil}) end
end
local tc = net.connect(uri, {wait_connected = false})
show('initial', tc.state)
tc:on_connect(log_event('connect'))
tc:on_disconnect(log_event('disconnect'))
tc:on_schema_reload(log_event('schema_reload'))
show('connected', tc:wait_connected())
local version = tc.schema_version
tc:eval("box.schema.space.create('nb_tmp'):create_index('pk')")
show('after ddl', tc.schema_version > version, tc.space.nb_tmp ~= nil, tc.state)
show('new space works', tc.space.nb_tmp:insert{1}, tc.space.nb_tmp:select{})
local kept = tc.space.tester
tc:eval("box.space.nb_tmp:drop()")
show('after drop', tc.space.nb_tmp, tc.space.tester == kept)
tc:close()
show('events', events)
local lister = net.connect(uri)
local trig = function() end
show('trigger set', lister:on_connect(trig))
show('trigger list', #lister:on_connect(), lister:on_connect()[1] == trig)
show('trigger delete', lister:on_connect(nil, trig) == trig, #lister:on_connect())
try('trigger not callable', lister.on_connect, lister, 1)
try('trigger not found', lister.on_connect, lister, nil, trig)
lister:close()

local selfclosing = net.connect(uri, {wait_connected = false})
selfclosing:on_connect(function(conn) conn:close() end)
show('closed by on_connect', selfclosing:wait_state('closed', 5), selfclosing.state, selfclosing.error,
     selfclosing:is_connected())
try('call after on_connect closed', selfclosing.call, selfclosing, 'add', {1, 2})

section('close')
f = c:call('slow', {1}, {is_async = true})
local sync_result
fiber.create(function() sync_result = {pcall(c.call, c, 'slow', {1})} end)
c:close()
show('closed', c.state, c.error, c:is_connected())
show('pending future', f:wait_result())
wait_for(function() return sync_result ~= nil end)
show('pending sync', sync_result[1], sync_result[2])
try('call after close', c.call, c, 'add', {1, 2})
show('ping after close', c:ping())
try('async after close', c.call, c, 'add', {1, 2}, {is_async = true})
try('close again', c.close, c)
show('wait_state closed', c:wait_state('closed'), c:wait_state('active', 0.01))

section('connect errors')
local r = net.connect('127.0.0.1:' .. spare_port)
show('refused', r.state, r.error, r:is_connected())
try('call refused', r.call, r, 'add', {1, 2})
show('ping refused', r:ping())
r = net.connect('unix/:' .. missing_socket)
show('no socket', r.state, r.error)
r = net.connect('test:bad@127.0.0.1:' .. port)
show('bad password', r.state, r.error)
try('call bad password', r.call, r, 'add', {1, 2})
r = net.connect('nobody@127.0.0.1:' .. port)
show('unknown user', r.state, r.error)
r = net.connect('127.0.0.1:' .. port, {user = 'test'})
show('no password', r.state, r.error)
try('password without user', net.connect, '127.0.0.1:' .. port, {password = 'x'})
try('no port', net.connect, 'abc')
try('empty', net.connect, '')
try('table', net.connect, {})
try('nothing', net.connect)
r = net.connect(port)
show('port number', r.state, r.host, r.port, r:call('add', {1, 2}))
r:close()
r = net.connect('localhost:' .. port)
show('localhost', r.state, r.host, r.port)
r:close()
r = net.connect('127.0.0.1', port, {user = 'test', password = 'pass'})
show('host and port', r.state, r.host, r.port, r.opts, r:eval('return box.session.user()'))
r:close()
r = net.new('127.0.0.1', tostring(port))
show('new', r.state, r.port)
r:close()
r = net.connect(uri, {wait_connected = false})
show('not waiting', r.state)
show('then waiting', r:wait_connected(), r.state)
r:close()
r = net.connect(uri, {wait_connected = 0})
show('wait 0', r.state)
r:close()
r = net.connect('127.0.0.1:' .. port, {connect_timeout = 0.00001})
-- A 10 µs connect times out in 2.6 as either of these, at random: accept both.
local connect_timeout_errors = {['Connection timed out'] = true, ['Invalid argument'] = true}
show('connect timeout', r.state, connect_timeout_errors[r.error] and 'timed out' or r.error)
r = net.connect(uri, {fetch_schema = false})
show('no schema', r.state, r:call('add', {1, 2}), r:eval('return 5'))
r:close()

section('reconnect')
local spare_count = 0
local function start_server(listen)
    spare_count = spare_count + 1
    local dir = scratch .. '/spare' .. spare_count
    os.execute('mkdir -p ' .. dir)
    local h = io.popen(server_cmd .. ' ' .. (listen or spare_port) .. ' ' .. dir .. ' > /dev/null 2>&1 & echo $!')
    local pid = h:read('*l')
    h:close()
    return pid
end
local function stop_server(pid) os.execute('kill -9 ' .. pid .. ' 2>/dev/null') end
events = {}
local spare_uri = 'test:pass@127.0.0.1:' .. spare_port
r = net.connect(spare_uri, {reconnect_after = 0.05, wait_connected = false})
r:on_connect(log_event('connect'))
r:on_disconnect(log_event('disconnect'))
show('before server', r:wait_connected(0.2), r.state, r.error)
try('call while reconnecting', r.call, r, 'add', {1, 2}, {timeout = 0.05})
local pid = start_server()
show('server up', r:wait_connected(10), r.state)
f = r:call('slow', {5}, {is_async = true})
local sync_done
fiber.create(function() sync_done = {pcall(r.call, r, 'slow', {5})} end)
fiber.sleep(0.05)
stop_server(pid)
show('server killed', r:wait_state('error_reconnect', 5), r.error)
show('inflight future', f:wait_result(1))
wait_for(function() return sync_done ~= nil end)
show('inflight sync', sync_done[1], sync_done[2])
pid = start_server()
show('server again', r:wait_connected(10), r.state, r:call('add', {2, 2}))
r:close()
stop_server(pid)
show('reconnect events', events)
pid = start_server()
r = net.connect(spare_uri)
while r.state ~= 'active' do
    fiber.sleep(0.05)
    r = net.connect(spare_uri)
end
events = {}
r:on_disconnect(log_event('disconnect'))
stop_server(pid)
show('no reconnect', r:wait_state('error', 5), r.state, r.error, r:is_connected())
show('no reconnect events', events)

section('unix socket')
local socket_path = scratch .. '/nb.sock'
pid = start_server('unix/:' .. socket_path)
r = net.connect('test:pass@unix/:' .. socket_path)
while r.state ~= 'active' do
    fiber.sleep(0.05)
    r = net.connect('test:pass@unix/:' .. socket_path)
end
show('unix', r.state, r.host, r.port == socket_path, r:call('add', {3, 4}), r.space.tester:get{1})
r:close()
stop_server(pid)

section('gc')
local weak = setmetatable({}, {__mode = 'v'})
weak.conn = net.connect(uri)
show('gc connected', weak.conn.state)
collectgarbage()
collectgarbage()
show('gc collected', weak.conn == nil)
local orphan = net.connect(uri):call('slow', {0.5}, {is_async = true})
collectgarbage()
collectgarbage()
show('orphan future', orphan:wait_result(2))

section('timeout module')
r = net.timeout(5).connect(uri)
show('net.box.timeout', r.state)
r:close()

os.exit(0)
