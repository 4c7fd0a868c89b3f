-- What the replication test drivers share: background processes by pid file, evaluation
-- on an instance over net.box that reports failure as (nil, error), and waiting.
local fiber = require('fiber')
local clock = require('clock')
local fio = require('fio')
local net = require('net.box')

local M = {}

-- Runs `command` in the background; its pid goes to `pid_file`.
function M.spawn(command, pid_file)
    os.execute(string.format('%s & echo $! >%s', command, pid_file))
end

local function read_pid(pid_file)
    local f = fio.open(pid_file)
    if f == nil then return nil end
    local p = tonumber(f:read())
    f:close()
    return p
end

function M.kill(pid_file)
    local p = read_pid(pid_file)
    if p then os.execute('kill -9 ' .. p .. ' 2>/dev/null') end
end

-- An evaluator on instances named by key: uri_of(key) gives the URI to connect to.
function M.evaluator(uri_of, timeout)
    local conns = {}
    return function(key, expr, ...)
        local c = conns[key]
        if c == nil or not c:is_connected() then
            c = net.connect(uri_of(key), {wait_connected = 0.5})
            conns[key] = c
        end
        local args = {...}
        local ok, a, b = pcall(function() return c:eval(expr, args, {timeout = timeout}) end)
        if ok then return a, b end
        return nil, a
    end
end

-- Polls `cond` every 10 ms for at most `timeout` seconds; true once it holds.
function M.wait(cond, timeout)
    local deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline do
        if cond() then return true end
        fiber.sleep(0.01)
    end
    return false
end

return M
