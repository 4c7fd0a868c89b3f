-- net.box.self: the connection API served by the local box. Run by `tarantool` and by
-- `node` in an empty directory (arg[1]); the outputs must be equal.
box.cfg{work_dir = arg[1], log_level = 1, wal_mode = 'none'}
local net = require('net.box')

local function strip(msg)
    return (tostring(msg):gsub('^builtin/[%w_/%.]+:%d+: ', ''):gsub('^%[string "[^"]*"%]:%d+: ', 'chunk: '))
end

local function show(label, ...)
    local parts = {}
    for i = 1, select('#', ...) do
        local v = select(i, ...)
        if type(v) == 'table' then v = require('json').encode(v) end
        parts[i] = tostring(v)
    end
    print(label .. ': ' .. table.concat(parts, ' '))
end

local function try(label, f, ...)
    local ok, e = pcall(f, ...)
    if ok then return show(label, 'ok') end
    if type(e) == 'string' then return print(label .. ' raises: ' .. strip(e)) end
    print(string.format('%s raises: %s %s %s', label, e.type, tostring(e.code), strip(e.message)))
end

local s = net.self
function sum(a, b) return a + b, {x = 1} end
obj = {k = 10}
function obj.get(self, d) return self.k + (d or 0) end
local space = box.schema.space.create('t')
space:create_index('pk')
space:insert{1, 'a'}

show('call', s:call('sum', {1, 2}))
show('call method', s:call('obj:get', {5}))
show('call dotted', s:call('string.upper', {'abc'}))
show('call tuple', type(s:call('box.space.t:get', {1})), s:call('box.space.t:get', {1}))
try('call missing', s.call, s, 'nosuch')
try('call not callable', s.call, s, 'obj.k')
try('call raises', s.call, s, 'error', {'boom'})
try('call box error', s.call, s, 'box.error', {box.error.NO_SUCH_USER, 'x'})
try('call args', s.call, s, 'sum', 1, 2)
try('call with a dot', s.call, 'sum')
show('eval', s:eval('return 1 + ...', {2}))
show('eval expression', s:eval('1 + 2'))
show('eval tuple', type(s:eval('return box.tuple.new{1, 2}')), s:eval('return box.tuple.new{1, 2}'))
try('eval syntax', s.eval, s, 'x x')
try('eval raises', s.eval, s, 'error("boom", 0)')
show('state', s:ping(), s:is_connected(), s:wait_connected(), s.state)
show('space', s.space == box.space, s.space.t:get{1}, s.space._space.id)
show('timeout', s:timeout(1) == s, s:close(), s:reload_schema())
os.exit(0)
