-- Port values, port reservations and the instance's HTTP server.

local socket = require('socket')
local errno = require('errno')
local fiber = require('fiber')
local log = require('log')

local M = {}

-- The spelling of "no HTTP server" (box.NULL in a change) in messages and logs.
M.NONE = 'none'

local function is_null(v)
    return v == nil or (type(v) == 'cdata' and v == nil)
end
M.is_null = is_null

-- A port value of a change: a number or a string of digits, 1..65535; box.NULL / nil
-- means "no server". Returns the port (or false for no server), or nil and a reason.
function M.parse(v)
    if is_null(v) then
        return false
    end
    local n
    if type(v) == 'number' then
        n = v
    elseif type(v) == 'string' then
        if not v:match('^%d+$') then
            return nil, string.format("port %q is not a number", v)
        end
        n = tonumber(v)
    else
        return nil, string.format('port must be a number or a string of digits, got %s', type(v))
    end
    if n ~= n or n == math.huge or n == -math.huge or math.floor(n) ~= n then
        return nil, string.format('port %s is not an integer', tostring(v))
    end
    if n < 1 or n > 65535 then
        return nil, string.format('port %s is out of range 1..65535', tostring(v))
    end
    return n
end

-- How a port (or the raw value of a change) is written in messages.
function M.show(v)
    if v == false or is_null(v) then
        return M.NONE
    end
    return tostring(v)
end

-- How one entry of a change ({n, v | null | bad}) is written in messages and logs.
function M.show_entry(e)
    if e.null then
        return M.NONE
    end
    if e.bad then
        return e.bad
    end
    return tostring(e.v)
end

-- Listens on host:port so that nobody else takes the port between the vote and phase 2
-- (a client that connects meanwhile is closed at once). Returns the listening socket, or
-- nil, the error text and errno. socket.tcp_server sets SO_REUSEADDR, as http.server does,
-- so a port with only TIME_WAIT connections left counts as free.
function M.reserve(host, port)
    local s = socket.tcp_server(host, port, function(client) client:close() end)
    if s == nil then
        local e = errno()
        return nil, errno.strerror(e), e
    end
    return s
end

-- Starts an http.server on host:port with `setup(server)` adding its routes, retrying
-- while the port is busy until `deadline` (fiber.clock()). Returns the server, or nil
-- and the last error.
function M.start_http(host, port, setup, deadline)
    local last
    local logged = false
    while true do
        local server = require('http.server').new(host, port, {log_requests = false})
        setup(server)
        local ok, err = pcall(server.start, server)
        if ok then
            return server
        end
        last = tostring(err)
        if fiber.clock() >= (deadline or 0) then
            return nil, last
        end
        if not logged then
            log.info('port %d is still busy (%s), retrying', port, last)
            logged = true
        end
        fiber.sleep(0.02)
    end
end

return M
