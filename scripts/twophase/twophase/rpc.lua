-- Calls to other instances: net.box over their IPROTO ports, opened only when a change
-- needs them (a session per change or per query, closed after it). A call to this
-- instance itself runs the handler directly, with its arguments and result copied through
-- MessagePack as they would be over the network.

local msgpack = require('msgpack')
local creds = require('twophase.creds')

local M = {}

local function netbox()
    local ok, nb = pcall(require, 'net.box')
    if not ok then
        return nil, 'net.box is not available: ' .. tostring(nb):match('^[^\n]*')
    end
    return nb
end

function M.init(topo, me, dispatch)
    M.topo = topo
    M.me = me
    M.dispatch = dispatch
end

local function errtext(e)
    if type(e) == 'cdata' or type(e) == 'table' then
        local ok, msg = pcall(function() return e.message end)
        if ok and msg ~= nil then
            return tostring(msg)
        end
    end
    return tostring(e)
end
M.errtext = errtext

local Session = {}
Session.__index = Session

function M.session()
    return setmetatable({conns = {}}, Session)
end

function Session:connect(n)
    local conn = self.conns[n]
    if conn ~= nil and conn:is_connected() then
        return conn
    end
    local inst = M.topo.instances[n]
    local c, err = creds.wait(n, M.topo.timeouts.connect)
    if c == nil then
        return nil, err
    end
    local nb, nberr = netbox()
    if nb == nil then
        return nil, nberr
    end
    local ok, res = pcall(nb.connect, inst.iproto, {
        user = c.user, password = c.password,
        connect_timeout = M.topo.timeouts.connect, wait_connected = true,
    })
    if not ok then
        return nil, string.format('cannot connect to instance %d (%s): %s', n, inst.iproto, errtext(res))
    end
    if not res:is_connected() then
        local e = res.error
        pcall(res.close, res)
        return nil, string.format('cannot connect to instance %d (%s): %s', n, inst.iproto,
            tostring(e or res.state))
    end
    self.conns[n] = res
    return res
end

-- Calls op(args) on instance n; returns the result, or nil and an error text.
function Session:call(n, op, args, timeout)
    if n == M.me.number then
        local ok, res = pcall(M.dispatch, op, msgpack.decode(msgpack.encode(args)))
        if not ok then
            return nil, errtext(res)
        end
        return msgpack.decode(msgpack.encode(res))
    end
    local conn, err = self:connect(n)
    if conn == nil then
        return nil, err
    end
    local ok, res = pcall(conn.call, conn, 'twophase_rpc', {op, args}, {timeout = timeout})
    if not ok then
        return nil, string.format('instance %d: %s', n, errtext(res))
    end
    return res
end

function Session:close()
    for n, c in pairs(self.conns) do
        pcall(c.close, c)
        self.conns[n] = nil
    end
end

return M
