-- Run by real tarantool against a server.lua on node or tarantool; prints what the
-- server answered. tests/iproto_netbox.rs compares the two outputs.
local port = arg[1]
local nb = require('net.box')
local yaml = require('yaml')
local fiber = require('fiber')
local function show(...)
    local t = {n = select('#', ...), ...}
    for i = 1, t.n do
        if type(t[i]) == 'cdata' or type(t[i]) == 'userdata' then t[i] = tostring(t[i]) end
    end
    print((yaml.encode(t):gsub('\n', ' ')))
end
local function try(f, ...)
    local ok, e = pcall(f, ...)
    if ok then return show(e) end
    if type(e) == 'cdata' or type(e) == 'userdata' then
        local u = e:unpack()
        return show('error', u.code, u.type, u.message)
    end
    return show('error', e)
end
local uri = '127.0.0.1:' .. port
local c = nb.connect(uri)
show('guest', c.state, c:is_connected(), c:ping())
try(c.call, c, 'add', {1, 2})
try(c.call, c, 'multi')
try(c.eval, c, 'return 1')
try(c.call, c, 'nosuch')
show(c.space.tester == nil, c.space._space ~= nil)
c:close()
show('closed', c.state, c:is_connected())

c = nb.connect('test:pass@' .. uri)
show('test', c.state, c:ping())
show(c:call('add', {1, 2}))
show(c:call('multi'))
show(c:call('nothing'))
show(c:call('get_tuple'))
-- CALL_16 (type 6): every result a tuple, scalars wrapped, a table of tables unpacked
show(c:call_16('multi'))
show(c:call_16('get_tuple'))
show(c:call_16('nothing'))
show(c:call_16('add', 1, 2))
show(c:call('obj:method', {5}))
show(c:call('nested.deep.fn'))
show(c:eval('return ...', {1, 'a', {b = 2}}))
show(c:eval('return'))
-- A request fiber is named after the TX cord (no request on this server renames one).
show(c:eval('return require("fiber").name()'))
show(c:call('whoami'))
show(c:call('storage', {'kept'}), c:call('storage'))
-- request fibers are reused (on both): no transaction or fiber storage survives a request
try(c.call, c, 'leave_txn')
show(c:call('in_txn'))
try(c.eval, c, 'box.begin() return 1')
show(c:call('in_txn'))
show(c:call('fiber_storage', {'mine'}), c:call('fiber_storage'))
-- a function redefined between calls answers as redefined; a revoked right is denied
c:eval('function add(a, b) return a * b end')
show(c:call('add', {3, 4}))
c:eval('function add(a, b) return a + b end')
try(c.call, c, 'boom')
try(c.call, c, 'box_boom')
try(c.call, c, 'nosuch')
try(c.call, c, 'nested.nosuch.fn')
try(c.eval, c, 'syntax error here')
try(c.eval, c, 'error(setmetatable({}, {__tostring = function() return "custom tostring" end}))')
local sp = c.space.tester
show(sp:replace{1, 'one'})
show(sp:insert{2, 'two'})
try(sp.insert, sp, {2, 'again'})
try(sp.insert, sp, {'bad', 'type'})
try(sp.insert, sp, {3})
show(sp:select{})
show(sp:select({}, {iterator = 'GT', limit = 1}))
show(sp:select({1}, {iterator = 'GE', offset = 1}))
show(sp:get{2})
show(sp:get{99})
show(sp.index.name:select{'two'})
show(sp:update({2}, {{'=', 2, 'TWO'}}))
show(sp:update({99}, {{'=', 2, 'none'}}))
try(sp.update, sp, {2}, {{'=', 1, 5}})
show(sp:upsert({5, 'five'}, {{'=', 2, 'x'}}))
show(sp:upsert({5, 'five'}, {{'=', 2, 'x'}}))
show(sp:get{5})
show(sp:delete{1})
show(sp:delete{1})
show(sp.index.primary:min(), sp.index.primary:max())
show(sp.index.primary:count({2}, {iterator = 'GE'}))
try(c.space.hashed.index.pk.min, c.space.hashed.index.pk)
local tr = c.space.triggered
show(tr:replace{7, 'orig'})
show(sp:get{1007})
-- pushes
local pushes = {}
show(c:call('pusher', {}, {on_push = function(ctx, x) table.insert(pushes, x) end}))
show(pushes)
-- pipelining: a slow call does not hold up a fast one on the same connection
local done = {}
local ch = fiber.channel(2)
fiber.create(function() ch:put(c:call('slow', {'slow'})) end)
fiber.create(function() ch:put(c:call('add', {2, 2})) end)
show(ch:get(), ch:get())
-- big replies (more than the socket takes at once) pipelined with small ones arrive whole
local whole = fiber.channel(40)
for i = 1, 20 do
    fiber.create(function() whole:put(#c:call('big', {i}) == 1024 * 1024 + i) end)
    fiber.create(function() whole:put(c:call('add', {i, i}) == 2 * i) end)
end
local arrived = 0
for _ = 1, 40 do if whole:get(10) then arrived = arrived + 1 end end
show('big and small replies', arrived)
-- async
local f = c:call('slow', {'async'}, {is_async = true})
show(f:is_ready(), f:wait_result(2))
-- timeouts
try(c.call, c, 'slow', {'late'}, {timeout = 0.05})
-- schema reload after DDL
c:eval("box.schema.space.create('newsp'):create_index('pk')")
c:ping()
fiber.sleep(0.1)
show(c.space.newsp ~= nil)
if c.space.newsp then show(c.space.newsp:insert{7}) end
c:eval("box.space.newsp:drop()")
c:ping()
fiber.sleep(0.1)
show(c.space.newsp == nil)
-- writes pipelined on one connection each get their own reply once written
local written = fiber.channel(50)
for i = 1, 50 do
    fiber.create(function()
        local t = sp:replace{100 + i, 'w' .. i}
        written:put(t ~= nil and t[1] == 100 + i and t[2] == 'w' .. i)
    end)
end
local writes = 0
for _ = 1, 50 do if written:get(10) then writes = writes + 1 end end
-- (51 with the row 1007 that the trigger wrote)
show('pipelined writes', writes, sp.index.primary:count({100}, {iterator = 'GT'}))
c:close()

-- access
c = nb.connect('limited:secret@' .. uri)
show('limited', c.state)
try(c.eval, c, 'return 1')
try(c.call, c, 'whoami')
local admin = nb.connect('test:pass@' .. uri)
admin:call('regrant', {true})
try(c.call, c, 'add', {1, 1})
admin:call('regrant', {false})
try(c.call, c, 'add', {1, 1})
admin:close()
show(c.space._space == nil, c.space.tester == nil)
c:close()
c = nb.connect('test:wrong@' .. uri)
show('wrong password', c.state, c.error)
c = nb.connect('nobody:x@' .. uri)
show('no user', c.state, c.error)
c = nb.connect('admin:x@' .. uri)
show('admin', c.state, c.error)
os.exit(0)
