-- Topology file: load, check and normalize.
--
-- The file is Lua returning a table (cluster.lua) or YAML (cluster.yml) with the same
-- fields; see ../README.md for the format.

local fio = require('fio')
local yaml = require('yaml')

local M = {}

local DEFAULT_TIMEOUTS = {
    connect = 1,      -- net.box connect_timeout to a peer
    prepare = 3,      -- phase 1: a participant that has not voted by then votes no
    commit = 10,      -- phase 2 call timeout (a participant may retry a port up to `release`)
    release = 5,      -- phase 2: how long to retry a port its previous owner still holds
    decision = 10,    -- a prepared participant asks for the outcome after this long
    retry = 1,        -- interval of outcome queries and of re-sent decisions
    lock = 1,         -- how long a request waits for the participant's mutex
    info = 1,         -- coordinator's query of instances the change does not name
}

local function fail(path, fmt, ...)
    error(string.format('topology %s: ' .. fmt, path, ...), 0)
end

local function read_file(path)
    local f, err = fio.open(path, {'O_RDONLY'})
    if f == nil then
        return nil, err
    end
    local data = f:read()
    f:close()
    return data
end
M.read_file = read_file

local function parse_addr(s)
    -- 'host:port' or a bare port (host defaults to 127.0.0.1)
    if type(s) == 'number' then
        return '127.0.0.1', s
    end
    if type(s) ~= 'string' then
        return nil
    end
    local host, port = s:match('^(.*):(%d+)$')
    if host == nil then
        port = s:match('^(%d+)$')
        host = '127.0.0.1'
    end
    port = tonumber(port)
    if port == nil or port < 1 or port > 65535 then
        return nil
    end
    return host, port
end

local function is_port(v)
    return type(v) == 'number' and v >= 1 and v <= 65535 and math.floor(v) == v
end

-- Loads and checks a topology; returns a normalized table:
--   {path, credentials = 'file'|'swim', timeouts = {...}, swim = {...},
--    instances = {[n] = {number, uuid, host, iproto_host, iproto_port, iproto, http, swim,
--                        user, password}}, numbers = {sorted n}, count}
function M.load(path)
    path = fio.abspath(path)
    local raw
    if path:match('%.ya?ml$') then
        local text, err = read_file(path)
        if text == nil then
            fail(path, 'cannot read: %s', tostring(err))
        end
        local ok, t = pcall(yaml.decode, text)
        if not ok then
            fail(path, 'invalid YAML: %s', tostring(t))
        end
        raw = t
    else
        local chunk, err = loadfile(path)
        if chunk == nil then
            fail(path, '%s', tostring(err))
        end
        local ok, t = pcall(chunk)
        if not ok then
            fail(path, '%s', tostring(t))
        end
        raw = t
    end
    if type(raw) ~= 'table' then
        fail(path, 'must be a table')
    end

    local topo = {path = path, instances = {}, numbers = {}, timeouts = {}}
    topo.credentials = raw.credentials or 'file'
    if topo.credentials ~= 'file' and topo.credentials ~= 'swim' then
        fail(path, "credentials must be 'file' or 'swim', got %s", tostring(topo.credentials))
    end
    for k, v in pairs(DEFAULT_TIMEOUTS) do
        topo.timeouts[k] = v
    end
    for k, v in pairs(raw.timeouts or {}) do
        if DEFAULT_TIMEOUTS[k] == nil then
            fail(path, 'unknown timeout %s', tostring(k))
        end
        if type(v) ~= 'number' or v <= 0 then
            fail(path, 'timeout %s must be a positive number', k)
        end
        topo.timeouts[k] = v
    end
    local sw = raw.swim or {}
    topo.swim = {
        key_env = sw.key_env or 'TWOPHASE_SWIM_KEY',
        key_file_env = sw.key_file_env or 'TWOPHASE_SWIM_KEY_FILE',
        key_file = sw.key_file,
        heartbeat_rate = sw.heartbeat_rate or 1,
        ack_timeout = sw.ack_timeout or 0.5,
    }
    if sw.key ~= nil then
        fail(path, 'swim.key must not be in the topology: use the environment variable %s or a key file',
             topo.swim.key_env)
    end
    topo.work_dir = raw.work_dir or 'twophase-data/{n}'
    topo.wal_mode = raw.wal_mode or 'fsync'
    topo.log_level = raw.log_level or 5
    topo.user = raw.user
    topo.password = raw.password

    if type(raw.instances) ~= 'table' then
        fail(path, 'instances must be a table')
    end
    local seen_uuid, seen_tcp, seen_udp = {}, {}, {}
    for key, inst in pairs(raw.instances) do
        if type(inst) ~= 'table' then
            fail(path, 'instance %s must be a table', tostring(key))
        end
        local n = inst.number or key
        if type(n) ~= 'number' or n < 1 or math.floor(n) ~= n then
            fail(path, 'instance %s: number must be a positive integer', tostring(key))
        end
        if topo.instances[n] ~= nil then
            fail(path, 'instance number %d is used twice', n)
        end
        if type(inst.uuid) ~= 'string' or not inst.uuid:match(
            '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$') then
            fail(path, 'instance %d: uuid must be a UUID string', n)
        end
        if seen_uuid[inst.uuid] then
            fail(path, 'uuid %s is used twice', inst.uuid)
        end
        seen_uuid[inst.uuid] = true
        local ihost, iport = parse_addr(inst.iproto)
        if ihost == nil then
            fail(path, "instance %d: iproto must be 'host:port' or a port", n)
        end
        local host = inst.host or ihost
        local http = inst.http
        if http ~= nil then
            http = tonumber(http)
            if not is_port(http) then
                fail(path, 'instance %d: http must be a port (1..65535)', n)
            end
        end
        local swim_port = inst.swim
        if swim_port ~= nil and not is_port(swim_port) then
            fail(path, 'instance %d: swim must be a port (1..65535)', n)
        end
        if topo.credentials == 'swim' and swim_port == nil then
            fail(path, "instance %d: credentials = 'swim' needs a swim port", n)
        end
        for _, p in ipairs({iport, http}) do
            local k = host .. ':' .. p
            if seen_tcp[k] then
                fail(path, 'TCP port %s is used twice', k)
            end
            seen_tcp[k] = true
        end
        if swim_port ~= nil then
            local k = host .. ':' .. swim_port
            if seen_udp[k] then
                fail(path, 'swim port %s is used twice', k)
            end
            seen_udp[k] = true
        end
        local user = inst.user or topo.user
        local password = inst.password or topo.password
        if topo.credentials == 'swim' then
            if inst.password ~= nil or topo.password ~= nil or inst.user ~= nil or topo.user ~= nil then
                fail(path, "credentials = 'swim': the file must hold no users or passwords")
            end
        elseif user == nil or password == nil then
            fail(path, "instance %d: credentials = 'file' needs user and password", n)
        end
        topo.instances[n] = {
            number = n, uuid = inst.uuid, host = host,
            iproto_host = ihost, iproto_port = iport, iproto = ihost .. ':' .. iport,
            http = http, swim = swim_port, user = user, password = password,
            work_dir = inst.work_dir,
        }
        table.insert(topo.numbers, n)
    end
    table.sort(topo.numbers)
    topo.count = #topo.numbers
    if topo.count == 0 then
        fail(path, 'no instances')
    end
    return topo
end

-- The instance's work_dir: TWOPHASE_WORK_DIR, the instance's own work_dir, or the
-- topology's template with {n} replaced; relative paths are relative to the current
-- directory at start-up.
function M.work_dir(topo, n)
    local dir = os.getenv('TWOPHASE_WORK_DIR') or topo.instances[n].work_dir or
        topo.work_dir:gsub('{n}', tostring(n))
    return fio.abspath(dir)
end

return M
