-- Credentials for calling other instances.
--
-- credentials = 'file': every instance's user and password are in the topology.
-- credentials = 'swim': the topology holds none. Each instance keeps its own secret in
-- <work_dir>/secret (created at first start, mode 0600), sets it as its user's password,
-- and publishes {n, user, password} as its swim payload. Swim runs encrypted
-- (AES-256-GCM) with a key from the environment (TWOPHASE_SWIM_KEY by default) or a key
-- file named by TWOPHASE_SWIM_KEY_FILE or by the topology (swim.key_file); the key is
-- never written to the log. Without the right key an instance learns nobody's
-- credentials and nobody learns its own.

local fio = require('fio')
local fiber = require('fiber')
local digest = require('digest')
local log = require('log')

local M = {}

local SWIM_USER = 'twophase'

local function hex(s)
    return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end))
end

local function trim(s)
    return (s:gsub('^%s+', ''):gsub('%s+$', ''))
end

local function read_or_create_secret(work_dir)
    local path = fio.pathjoin(work_dir, 'secret')
    local f = fio.open(path, {'O_RDONLY'})
    if f ~= nil then
        local s = trim(f:read() or '')
        f:close()
        if #s >= 16 then
            return s, false
        end
        error('twophase: ' .. path .. ' is not a valid secret (delete it to create a new one)', 0)
    end
    local secret = hex(digest.urandom(16))
    local tmp = path .. '.new'
    f = fio.open(tmp, {'O_WRONLY', 'O_CREAT', 'O_TRUNC'}, tonumber('600', 8))
    if f == nil then
        error('twophase: cannot create ' .. tmp, 0)
    end
    f:write(secret .. '\n')
    f:fsync()
    f:close()
    fio.rename(tmp, path)
    return secret, true
end

-- The swim key and where it came from (the source is logged, the key never).
local function swim_key(topo)
    local cfg = topo.swim
    local v = os.getenv(cfg.key_env)
    if v ~= nil and v ~= '' then
        return v, 'environment variable ' .. cfg.key_env
    end
    local file = os.getenv(cfg.key_file_env)
    local source = 'key file from ' .. cfg.key_file_env
    if file == nil or file == '' then
        file = cfg.key_file
        source = 'key file (topology swim.key_file)'
    end
    if file ~= nil then
        local f = fio.open(file, {'O_RDONLY'})
        if f == nil then
            error('twophase: cannot read the swim key file named by the ' .. source, 0)
        end
        local k = trim(f:read() or '')
        f:close()
        if k == '' then
            error('twophase: the swim key file is empty', 0)
        end
        return k, source
    end
    error(string.format("twophase: credentials = 'swim' needs a swim key: set %s, or %s to a key file",
        cfg.key_env, cfg.key_file_env), 0)
end

-- Creates the local user the others log in as, with execute on twophase_rpc only (a
-- setuid function: it runs with the rights of its owner, admin).
local function ensure_user(user, password)
    if not box.schema.user.exists(user) then
        box.schema.user.create(user, {password = password})
    else
        box.schema.user.passwd(user, password)
    end
    box.schema.func.create('twophase_rpc', {setuid = true, if_not_exists = true})
    box.schema.user.grant(user, 'execute', 'function', 'twophase_rpc', {if_not_exists = true})
end

function M.init(topo, me, work_dir)
    M.topo = topo
    M.me = me
    if topo.credentials == 'file' then
        ensure_user(me.user, me.password)
        return
    end
    local secret, created = read_or_create_secret(work_dir)
    M.own = {user = SWIM_USER, password = secret}
    ensure_user(SWIM_USER, secret)
    log.info('twophase: %s the instance secret in %s', created and 'created' or 'read', work_dir)

    local key, source = swim_key(topo)
    local s = require('swim').new()
    s:cfg({
        uuid = me.uuid,
        uri = me.host .. ':' .. me.swim,
        heartbeat_rate = topo.swim.heartbeat_rate,
        ack_timeout = topo.swim.ack_timeout,
        gc_mode = 'off',
    })
    s:set_codec({algo = 'aes256', mode = 'gcm', key = digest.sha256(key)})
    s:set_payload({n = me.number, u = SWIM_USER, p = secret})
    for _, n in ipairs(topo.numbers) do
        local inst = topo.instances[n]
        if n ~= me.number then
            s:add_member({uuid = inst.uuid, uri = inst.host .. ':' .. inst.swim})
        end
    end
    M.swim = s
    log.info('twophase: swim on %s:%d, encrypted (aes256-gcm) with the key from the %s',
        me.host, me.swim, source)
end

-- {user, password} to log in to instance n, or nil and why not.
function M.get(n)
    local inst = M.topo.instances[n]
    if inst == nil then
        return nil, 'no such instance'
    end
    if M.topo.credentials == 'file' then
        return {user = inst.user, password = inst.password}
    end
    if n == M.me.number then
        return M.own
    end
    local m = M.swim:member_by_uuid(inst.uuid)
    local p = m and m:payload()
    if type(p) == 'table' and p.n == n and type(p.u) == 'string' and type(p.p) == 'string' then
        return {user = p.u, password = p.p}
    end
    return nil, string.format('no credentials for instance %d: not learned from swim', n)
end

-- As get, waiting up to `timeout` seconds for swim to deliver them.
function M.wait(n, timeout)
    local deadline = fiber.clock() + (timeout or 0)
    while true do
        local c, err = M.get(n)
        if c ~= nil or M.topo.credentials == 'file' or fiber.clock() >= deadline then
            return c, err
        end
        fiber.sleep(0.05)
    end
end

-- Numbers of the instances whose credentials this instance knows.
function M.known()
    local list = {}
    for _, n in ipairs(M.topo.numbers) do
        if M.get(n) ~= nil then
            table.insert(list, n)
        end
    end
    return list
end

return M
