-- box.cfg's option table, defaults and validation, as Tarantool 2.6.3 does them
-- (spec/box.md §2; facts from 2.6.3's src/box/lua/load_cfg.lua, src/box/box.cc,
-- src/lua/log.lua, src/lib/core/say.c, src/lib/uri/uri.rl, src/cfg.c).
--
-- Pure Lua, no dependency on the rest of box: the caller (box.cfg) validates with
-- `check`, raises the box.error it returns, and applies the values.
--
--   local new, changed, warnings = cfg_check.check(opts, current, ctx)
--
-- `opts` is the user's table; `current` is nil on the first call, else the table of
-- effective values (what box.cfg reads back). `ctx` is optional:
--   ctx.instance_uuid, ctx.replicaset_uuid   box.info.uuid and box.info.cluster.uuid (a
--                                            reconfiguration may "change" instance_uuid only
--                                            to the instance's real uuid)
--   ctx.election_aliases                     accept election_is_enabled/election_is_candidate
--                                            (spec §0; Tarantool 2.6.3 rejects them)
-- On success: `new` is the whole table of effective values after this call (defaults
-- filled in on the first call), `changed` the keys whose value changed, in the order
-- Tarantool applies them, and `warnings` the log lines Tarantool prints for deprecated
-- options (log.warn). On failure: nil and an error table
--   {type = 'ClientError', code = 59 (ER_CFG) or 58 (ER_RELOAD_CFG), message = text,
--    option = name, reason = second template argument (ER_CFG only), fatal = bool}
-- so `box.error(err.code, err.option, err.reason)` (or `box.error{code = err.code,
-- reason = err.message}`) raises what Tarantool raises. `fatal` marks what Tarantool
-- finds only while starting (net_msg_max, replication_anon, too many replicas,
-- background): 2.6.3 does not return these from box.cfg but logs
-- `F> can't initialize storage: <message>` (for background, whose error has no code,
-- prints the bare message to stderr) and exits with status 1.
--
-- Order of the checks, as Tarantool: deprecated names are translated first; then each key
-- is checked for being known, its type and (log_*) its value; on the first call the
-- values are then checked in box_check_config's fixed order; on a later call, a static
-- option whose raw value differs is ER_RELOAD_CFG, then the dynamic options are checked
-- one by one in Tarantool's application order (listen, replication_* , replication,
-- replication_anon, wal_cleanup_delay, election_mode, election_timeout, the rest), each
-- against the values applied before it. Tarantool walks the user's table with pairs();
-- here keys are walked sorted, so when several keys are wrong the first reported may
-- differ from Tarantool's. Tarantool applies the options that come before a failing one;
-- `check` applies nothing.
--
-- Values read back as given, with Tarantool's three normalisations: `listen` becomes a
-- string (3301 -> '3301'), `replication` a table of strings ('a:1' -> {'a:1'}), and ''
-- or box.NULL means the default (''/NULL for `replication` gives {}). log_level reads
-- back as given ('warn'); `log_level_number` gives the level to use.

local M = {}

local ER_RELOAD_CFG = 58
local ER_CFG = 59
M.ER_RELOAD_CFG = ER_RELOAD_CFG
M.ER_CFG = ER_CFG

local VCLOCK_MAX = 32
local QUOTA_MAX = 4398046510080 -- small's quota limit: 1024 * UINT32_MAX
local QUOTA_UNIT = 1024
local INT64_MIN = -2 ^ 63
-- Option values reach Tarantool's C code through cfg_gets(), which copies them into a
-- 256-byte buffer; error messages are cut at DIAG_ERRMSG_MAX - 1 bytes.
local MAX_OPT_VAL_LEN = 255
local ERRMSG_MAX = 511

-- {{{ Options

-- Types: a Lua type, several separated by ', ' or 'module' (the log_* options, which
-- Tarantool's log module checks itself and which accept any type).
local types = {
    listen = 'string, number',
    memtx_memory = 'number',
    strip_core = 'boolean',
    memtx_min_tuple_size = 'number',
    memtx_max_tuple_size = 'number',
    slab_alloc_factor = 'number',
    work_dir = 'string',
    memtx_dir = 'string',
    wal_dir = 'string',
    vinyl_dir = 'string',
    vinyl_memory = 'number',
    vinyl_cache = 'number',
    vinyl_max_tuple_size = 'number',
    vinyl_read_threads = 'number',
    vinyl_write_threads = 'number',
    vinyl_timeout = 'number',
    vinyl_run_count_per_level = 'number',
    vinyl_run_size_ratio = 'number',
    vinyl_range_size = 'number',
    vinyl_page_size = 'number',
    vinyl_bloom_fpr = 'number',
    log = 'module',
    log_nonblock = 'module',
    log_level = 'module',
    log_format = 'module',
    io_collect_interval = 'number',
    readahead = 'number',
    snap_io_rate_limit = 'number',
    too_long_threshold = 'number',
    wal_mode = 'string',
    wal_max_size = 'number',
    wal_dir_rescan_delay = 'number',
    wal_queue_max_size = 'number',
    wal_cleanup_delay = 'number',
    force_recovery = 'boolean',
    replication = 'string, number, table',
    instance_uuid = 'string',
    replicaset_uuid = 'string',
    custom_proc_title = 'string',
    pid_file = 'string',
    background = 'boolean',
    username = 'string',
    coredump = 'boolean',
    checkpoint_interval = 'number',
    checkpoint_wal_threshold = 'number',
    checkpoint_count = 'number',
    read_only = 'boolean',
    hot_standby = 'boolean',
    memtx_use_mvcc_engine = 'boolean',
    worker_pool_threads = 'number',
    election_mode = 'string',
    election_timeout = 'number',
    -- Beyond 2.6 (docs/raft.md): 2.11's fencing option, and node's pre-vote switch.
    election_fencing_mode = 'string',
    election_pre_vote = 'boolean',
    election_fast_failover = 'boolean',
    replication_timeout = 'number',
    replication_sync_lag = 'number',
    replication_sync_timeout = 'number',
    replication_synchro_quorum = 'string, number',
    replication_synchro_timeout = 'number',
    replication_connect_timeout = 'number',
    replication_connect_quorum = 'number',
    replication_skip_conflict = 'boolean',
    replication_anon = 'boolean',
    feedback_enabled = 'boolean',
    feedback_host = 'string',
    feedback_interval = 'number',
    net_msg_max = 'number',
    sql_cache_size = 'number',
}
M.types = types

-- Defaults of 2.6.3. Options missing here default to nil: listen, work_dir,
-- vinyl_range_size, io_collect_interval, snap_io_rate_limit, replication, instance_uuid,
-- replicaset_uuid, custom_proc_title, pid_file, username, replication_connect_quorum
-- (= all peers), log (stderr), log_nonblock.
local box_defaults = {
    memtx_memory = 256 * 1024 * 1024,
    strip_core = true,
    memtx_min_tuple_size = 16,
    memtx_max_tuple_size = 1024 * 1024,
    slab_alloc_factor = 1.05,
    memtx_dir = '.',
    wal_dir = '.',
    vinyl_dir = '.',
    vinyl_memory = 128 * 1024 * 1024,
    vinyl_cache = 128 * 1024 * 1024,
    vinyl_max_tuple_size = 1024 * 1024,
    vinyl_read_threads = 1,
    vinyl_write_threads = 4,
    vinyl_timeout = 60,
    vinyl_run_count_per_level = 2,
    vinyl_run_size_ratio = 3.5,
    vinyl_page_size = 8 * 1024,
    vinyl_bloom_fpr = 0.05,
    readahead = 16320,
    too_long_threshold = 0.5,
    wal_mode = 'write',
    wal_max_size = 256 * 1024 * 1024,
    wal_dir_rescan_delay = 2,
    wal_queue_max_size = 16 * 1024 * 1024,
    wal_cleanup_delay = 4 * 3600,
    force_recovery = false,
    background = false,
    coredump = false,
    read_only = false,
    hot_standby = false,
    memtx_use_mvcc_engine = false,
    checkpoint_interval = 3600,
    checkpoint_wal_threshold = 1e18,
    checkpoint_count = 2,
    worker_pool_threads = 4,
    election_mode = 'off',
    election_timeout = 5,
    replication_timeout = 1,
    replication_sync_lag = 10,
    replication_sync_timeout = 300,
    replication_synchro_quorum = 1,
    replication_synchro_timeout = 5,
    replication_connect_timeout = 30,
    replication_skip_conflict = false,
    replication_anon = false,
    feedback_enabled = true,
    feedback_host = 'https://feedback.tarantool.io',
    feedback_interval = 3600,
    net_msg_max = 768,
    sql_cache_size = 5 * 1024 * 1024,
}

-- What the log module reports for the options it owns when the user gave none.
local module_defaults = {
    log_level = 5,
    log_format = 'plain',
}

local defaults = {}
for k, v in pairs(box_defaults) do
    defaults[k] = v
end
for k, v in pairs(module_defaults) do
    defaults[k] = v
end
M.defaults = defaults

-- Options box.cfg{} may change after the first call (load_cfg.lua's dynamic_cfg).
-- instance_uuid and replicaset_uuid are in Tarantool's list too, but only to allow
-- "setting" the value the instance already has; is_dynamic() says false for them.
local dynamic = {
    listen = true,
    replication = true,
    log_level = true,
    log_format = true,
    io_collect_interval = true,
    readahead = true,
    too_long_threshold = true,
    snap_io_rate_limit = true,
    read_only = true,
    memtx_memory = true,
    memtx_max_tuple_size = true,
    vinyl_memory = true,
    vinyl_max_tuple_size = true,
    vinyl_cache = true,
    vinyl_timeout = true,
    checkpoint_count = true,
    checkpoint_interval = true,
    checkpoint_wal_threshold = true,
    wal_queue_max_size = true,
    worker_pool_threads = true,
    feedback_enabled = true,
    feedback_host = true,
    feedback_interval = true,
    wal_dir_rescan_delay = true,
    wal_cleanup_delay = true,
    custom_proc_title = true,
    force_recovery = true,
    election_mode = true,
    election_timeout = true,
    election_fencing_mode = true,
    election_pre_vote = true,
    election_fast_failover = true,
    replication_timeout = true,
    replication_connect_timeout = true,
    replication_connect_quorum = true,
    replication_sync_lag = true,
    replication_sync_timeout = true,
    replication_synchro_quorum = true,
    replication_synchro_timeout = true,
    replication_skip_conflict = true,
    replication_anon = true,
    instance_uuid = true,
    replicaset_uuid = true,
    net_msg_max = true,
    sql_cache_size = true,
}

function M.is_dynamic(name)
    return dynamic[name] == true and name ~= 'instance_uuid' and name ~= 'replicaset_uuid'
end

-- The order a reconfiguration applies options in (load_cfg.lua's dynamic_cfg_order);
-- options without a number come after, here sorted by name.
local apply_order = {
    listen = 100,
    replication_timeout = 150,
    replication_sync_lag = 150,
    replication_sync_timeout = 150,
    replication_synchro_quorum = 150,
    replication_synchro_timeout = 150,
    replication_connect_timeout = 150,
    replication_connect_quorum = 150,
    replication = 200,
    replication_anon = 250,
    wal_cleanup_delay = 260,
    election_mode = 300,
    election_timeout = 320,
}

local function sort_keys(keys, by_order)
    table.sort(keys, function(a, b)
        if by_order then
            local oa, ob = apply_order[a] or math.huge, apply_order[b] or math.huge
            if oa ~= ob then
                return oa < ob
            end
        end
        local ta, tb = type(a), type(b)
        if ta ~= tb then
            return ta < tb
        end
        if ta == 'string' or ta == 'number' then
            return a < b
        end
        return tostring(a) < tostring(b)
    end)
    return keys
end

-- }}} Options

-- {{{ Errors and C conversions

local function truncate(s, n)
    if #s > n then
        return s:sub(1, n)
    end
    return s
end

local function cfg_error(option, reason, fatal)
    option = tostring(option)
    return {
        type = 'ClientError',
        code = ER_CFG,
        name = 'ER_CFG',
        option = option,
        reason = reason,
        message = truncate(string.format("Incorrect value for option '%s': %s", option, reason), ERRMSG_MAX),
        fatal = fatal or false,
    }
end

local function reload_error(option)
    return {
        type = 'ClientError',
        code = ER_RELOAD_CFG,
        name = 'ER_RELOAD_CFG',
        option = option,
        message = truncate(string.format("Can't set option '%s' dynamically", option), ERRMSG_MAX),
        fatal = false,
    }
end

-- What C reads with cfg_gets(): tostring() of a string or number, cut at the first NUL
-- and at 255 bytes; other types give printf's "(null)".
local function cstr(v)
    if v == nil then
        return nil
    end
    local t = type(v)
    if t ~= 'string' and t ~= 'number' then
        return '(null)'
    end
    local s = tostring(v)
    s = s:match('^[^%z]*')
    return truncate(s, MAX_OPT_VAL_LEN)
end

-- (int64_t) of a double, as x86-64 converts: toward zero; NaN and out of range give
-- INT64_MIN.
local function to_i64(x)
    if x ~= x or x >= 2 ^ 63 or x < INT64_MIN then
        return INT64_MIN
    end
    if x >= 0 then
        return math.floor(x)
    end
    return math.ceil(x)
end

-- cfg_geti(): lua_tointeger() (an int64 on x86-64) cast to a 32-bit int.
local function to_int(x)
    local w = to_i64(x) % 2 ^ 32
    if w >= 2 ^ 31 then
        w = w - 2 ^ 32
    end
    return w
end

-- C's %lld of an int64 held in a double.
local function fmt_i64(x)
    return string.format('%.0f', x)
end

-- cfg_geti64() of a string: strtoll(s, 10), 0 when nothing parses or on overflow.
local function strtoll(s)
    local sign, digits = s:match('^[ \t\n\v\f\r]*([+-]?)(%d+)')
    if digits == nil then
        return 0
    end
    local v = tonumber(digits)
    if v >= 2 ^ 63 then
        return 0
    end
    return sign == '-' and -v or v
end

-- }}} Errors and C conversions

-- {{{ URIs: src/lib/uri/uri.rl
--
-- listen and every replication source must parse as Tarantool's URI and name a service
-- (a port, a service name or a unix socket path). The grammar below is uri.rl's:
-- RFC 3986 without the scheme requirement, plus a bare port, an absolute path and
-- `unix/:<path>`. A matcher takes (s, i) and returns the set of positions just past
-- every match starting at i.

local function one(class)
    return function(s, i)
        local c = s:sub(i, i)
        if c ~= '' and c:find(class) then
            return { [i + 1] = true }
        end
        return {}
    end
end

local function lit(str)
    return function(s, i)
        if s:sub(i, i + #str - 1) == str then
            return { [i + #str] = true }
        end
        return {}
    end
end

local function seq(...)
    local parts = { ... }
    return function(s, i)
        local cur = { [i] = true }
        for _, f in ipairs(parts) do
            local nxt = {}
            for p in pairs(cur) do
                for q in pairs(f(s, p)) do
                    nxt[q] = true
                end
            end
            cur = nxt
            if next(cur) == nil then
                break
            end
        end
        return cur
    end
end

local function alt(...)
    local parts = { ... }
    return function(s, i)
        local res = {}
        for _, f in ipairs(parts) do
            for q in pairs(f(s, i)) do
                res[q] = true
            end
        end
        return res
    end
end

-- f repeated min..max times (max nil: unbounded; then min must be 0 or 1).
local function rep(f, min, max)
    return function(s, i)
        local res = {}
        if min == 0 then
            res[i] = true
        end
        local cur, seen, n = { [i] = true }, { [i] = true }, 0
        while next(cur) ~= nil and (max == nil or n < max) do
            n = n + 1
            local nxt = {}
            for p in pairs(cur) do
                for q in pairs(f(s, p)) do
                    if max ~= nil or not seen[q] then
                        seen[q] = true
                        nxt[q] = true
                        if n >= min then
                            res[q] = true
                        end
                    end
                end
            end
            cur = nxt
        end
        return res
    end
end

local function star(f)
    return rep(f, 0)
end
local function plus(f)
    return rep(f, 1)
end
local function opt(f)
    return rep(f, 0, 1)
end
local empty = lit('')

local alpha = one('^[A-Za-z]$')
local digit = one('^[0-9]$')
local xdigit = '[0-9A-Fa-f]'
local unreserved = one("^[A-Za-z0-9_~.-]$")
local sub_delims = one("^[!$&'()*+,;=]$")
local pct_encoded = alt(lit('%%'), seq(lit('%'), one('^' .. xdigit .. '$'), opt(one('^' .. xdigit .. '$'))),
    seq(lit('%u'), rep(one('^' .. xdigit .. '$'), 4, 4)))
local name_char = alt(unreserved, pct_encoded, sub_delims)
local pchar_nc = alt(name_char, lit('@'))
local pchar = alt(pchar_nc, lit(':'), lit('|'))
local query = star(alt(pchar, lit('/'), lit('?')))
local segment = star(pchar)
local segment_nz = plus(pchar)
local segment_nz_nc = plus(pchar_nc)
local path_abempty = star(seq(lit('/'), segment))
local path_absolute = seq(lit('/'), opt(seq(segment_nz, star(seq(lit('/'), segment)))))
local path_rootless = seq(pchar_nc, star(seq(lit('/'), segment)))
local socket_path_absolute = plus(seq(lit('/'), segment_nz_nc))
local socket_path = alt(socket_path_absolute, seq(lit('.'), socket_path_absolute))
local reg_name = plus(name_char)
-- uri.rl spells the hex class [0-9a-fa-f]: lower case only.
local hex1_4 = rep(one('^[0-9a-f]$'), 1, 4)
local octet = rep(digit, 1, 3)
local ip4addr = seq(octet, rep(seq(lit('.'), octet), 3, 3))
local ip6 = seq(lit('['), alt(seq(opt(hex1_4), rep(seq(lit(':'), opt(hex1_4)), 1, 8)),
    seq(lit('::ffff:'), ip4addr)), lit(']'))
local unix = seq(lit('unix/:'), socket_path)
local service = alt(plus(digit), star(alpha))
local service_nz = alt(plus(digit), plus(alpha))
local host = alt(ip4addr, ip6, reg_name)
local userinfo = seq(plus(name_char), opt(seq(lit(':'), star(name_char))))
local user_at = opt(seq(userinfo, lit('@')))
local scheme = seq(alpha, star(one('^[A-Za-z0-9+.-]$')))
local scheme_prefix = alt(seq(scheme, lit('://')), empty)
local tail = seq(opt(seq(lit('?'), query)), opt(seq(lit('#'), query)))

local function hier(authority)
    return alt(seq(userinfo, lit('@'), unix), seq(authority, opt(path_abempty)), opt(path_absolute),
        opt(path_rootless), unix)
end

-- Every URI uri_parse() accepts, and those of them that set a service.
local uri_any = seq(scheme_prefix, hier(seq(user_at, alt(seq(host, opt(seq(lit(':'), service))),
    seq(unix, lit(':'))))), tail)
local uri_with_service = seq(scheme_prefix, alt(seq(userinfo, lit('@'), unix),
    seq(user_at, alt(seq(host, lit(':'), service_nz), seq(unix, lit(':'))), opt(path_abempty)), unix), tail)
-- uri.rl runs all the alternatives at once, so the action that records a unix socket
-- path fires as soon as `[scheme://][user@]unix/:<path>:` has been read, even when that
-- alternative dies later and the string is accepted by another one ("unix/:/a:b").
local unix_colon_prefix = seq(scheme_prefix, user_at, unix, lit(':'))
local port = plus(digit)
local path = seq(user_at, path_absolute)

local function full(f, s)
    return f(s, 1)[#s + 1] == true
end

-- True when uri_parse() accepts `s` and finds a service in it (box_check_uri).
local function uri_has_service(s)
    s = s:match('^[^%z]*')
    if s == '' then
        return false
    end
    if full(port, s) or full(path, s) then
        return true
    end
    if not full(uri_any, s) then
        return false
    end
    return full(uri_with_service, s) or next(unix_colon_prefix(s, 1)) ~= nil
end
M.uri_has_service = uri_has_service

-- }}} URIs

-- {{{ UUIDs: tt_uuid_from_string()

-- sscanf's %<width>x: leading white space, then up to `width` characters of an optional
-- sign, an optional 0x and hex digits; the value wraps to `bits`.
local function scan_hex(s, pos, width, bits)
    pos = s:match('^[ \t\n\v\f\r]*()', pos)
    local stop = pos + width
    local neg = false
    local c = s:sub(pos, pos)
    if c == '+' or c == '-' then
        neg = c == '-'
        pos = pos + 1
    end
    local digits
    if pos + 1 < stop and s:sub(pos, pos + 1):lower() == '0x' then
        -- glibc takes "0x" as the prefix even when no digit follows: the value is 0.
        pos = pos + 2
        digits = s:sub(pos, stop - 1):match('^' .. xdigit .. '*')
    else
        digits = s:sub(pos, stop - 1):match('^' .. xdigit .. '+')
        if digits == nil then
            return nil
        end
    end
    local v = (tonumber(digits, 16) or 0) % 2 ^ bits
    if neg then
        v = (2 ^ bits - v) % 2 ^ bits
    end
    return v, pos + #digits
end

local uuid_format = { { 8, 32 }, '-', { 4, 16 }, '-', { 4, 16 }, '-', { 2, 8 }, { 2, 8 }, '-', { 2, 8 }, { 2, 8 },
    { 2, 8 }, { 2, 8 }, { 2, 8 }, { 2, 8 } }

-- The fields of a UUID string, or nil when Tarantool would not parse it.
local function parse_uuid(s)
    if #s ~= 36 then
        return nil
    end
    local fields, pos = {}, 1
    for _, f in ipairs(uuid_format) do
        if type(f) == 'string' then
            if s:sub(pos, pos) ~= f then
                return nil
            end
            pos = pos + 1
        else
            local v
            v, pos = scan_hex(s, pos, f[1], f[2])
            if v == nil then
                return nil
            end
            fields[#fields + 1] = v
        end
    end
    -- The variant must be NCS, RFC 4122 or Microsoft: not 111xxxxx.
    if fields[4] >= 0xe0 then
        return nil
    end
    return fields
end

M.parse_uuid = parse_uuid

local function check_uuid(cfg, name)
    local s = cstr(cfg[name])
    if s == nil then
        return nil
    end
    local fields = parse_uuid(s)
    if fields == nil then
        return cfg_error(name, s)
    end
    for _, v in ipairs(fields) do
        if v ~= 0 then
            return nil
        end
    end
    return cfg_error(name, 'nil UUID is reserved')
end

-- }}} UUIDs

-- {{{ replication_synchro_quorum

-- box_eval_replication_synchro_quorum() builds this chunk and runs it with lua_pcall;
-- its error messages carry the chunk as their source name, so it is rebuilt here text for
-- text.
local QUORUM_CHUNK = "local expr = [[%s]]\n"
    .. "local f, err = loadstring('return ('..expr..')')\n"
    .. "if not f then error(string.format('Failed to load %%s:%%s', expr, err)) end\n"
    .. "setfenv(f, {N = %d, math = {ceil = math.ceil,floor = math.floor,abs = math.abs,random = math.random,"
    .. "min = math.min,max = math.max,sqrt = math.sqrt,fmod = math.fmod,}})\n"
    .. "local res = f()\n"
    .. "if type(res) ~= 'number' then\n"
    .. "error('Expression should return a number')\n"
    .. "end\n"
    .. "return math.floor(res)\n"

local quorum_env = {
    loadstring = loadstring,
    error = error,
    string = string,
    setfenv = setfenv,
    type = type,
    math = math,
}

-- The quorum a formula gives for n replicas (int64 as C reads it), or nil and the
-- message Tarantool puts after "Incorrect value for option 'replication_synchro_quorum': ".
local function eval_formula(expr, n)
    local chunk = string.format(QUORUM_CHUNK, expr, n)
    local f = loadstring(chunk)
    if f == nil then
        -- Tarantool does not check luaL_loadstring's result and calls the message.
        return nil, 'attempt to call a string value'
    end
    setfenv(f, quorum_env)
    local ok, res = pcall(f)
    if not ok then
        return nil, tostring(res)
    end
    local quorum = type(res) == 'number' and to_i64(res) or -1
    if quorum <= 0 or quorum >= VCLOCK_MAX then
        return nil, string.format('the formula is evaluated to the quorum %s for replica number %d, '
            .. 'which is out of range [%d;%d]', fmt_i64(quorum), n, 1, VCLOCK_MAX - 1)
    end
    return quorum
end

-- Whether Tarantool reads the option as a number: lua_isnumber() is true for numeric
-- strings too, which then go through strtoll().
local function quorum_number(q)
    if type(q) == 'number' then
        return to_i64(q)
    end
    if type(q) == 'string' and tonumber(q) ~= nil then
        return strtoll(q)
    end
    return nil
end

local function check_synchro_quorum(cfg)
    local q = cfg.replication_synchro_quorum
    local num = quorum_number(q)
    if num == nil then
        local expr = cstr(q) or '(null)'
        for n = 1, VCLOCK_MAX - 1 do
            local quorum, err = eval_formula(expr, n)
            if quorum == nil then
                return cfg_error('replication_synchro_quorum', err)
            end
        end
        return nil
    end
    if num <= 0 or num >= VCLOCK_MAX then
        return cfg_error('replication_synchro_quorum',
            'the value must be greater than zero and less than maximal number of replicas')
    end
    return nil
end

-- The synchronous quorum for `n` registered replicas (at least 1): a number option as
-- is (truncated), a formula evaluated with N = n and floored. Returns nil and the error
-- text for a bad formula.
function M.quorum_for(q, n)
    n = math.max(1, n or 1)
    if type(q) == 'number' then
        return to_int(q)
    end
    if type(q) == 'string' and tonumber(q) ~= nil then
        return to_int(tonumber(q))
    end
    return eval_formula(cstr(q) or '(null)', n)
end

-- The Raft election quorum: the synchronous quorum, at most the number of registered
-- replicas (spec §2.3).
function M.election_quorum(q, n)
    local quorum, err = M.quorum_for(q, n)
    if quorum == nil then
        return nil, err
    end
    return math.min(quorum, math.max(n or 1, 1))
end

-- }}} replication_synchro_quorum

-- {{{ The log module's options: src/lua/log.lua and box_check_say()

local log_levels = {
    fatal = 0,
    syserror = 1,
    error = 2,
    crit = 3,
    warn = 4,
    info = 5,
    verbose = 6,
    debug = 7,
}
-- The lists are built with pairs() in Tarantool; this is the order its LuaJIT gives.
local LOG_LEVEL_LIST = 'crit,warn,info,debug,syserror,verbose,fatal,error'
local LOG_FORMAT_LIST = 'json,plain'
local log_formats = { plain = true, json = true }

-- The level number a log_level value means (a name or a number), nil for nil.
function M.log_level_number(v)
    if type(v) == 'string' then
        return log_levels[v]
    end
    if type(v) == 'number' then
        return to_int(v)
    end
    return nil
end

local LOGGER_SYNTAX = "expecting a file name or a prefix, such as '|', 'pipe:', 'syslog:'"

-- say_parse_logger_type(): 'stderr' for nil, 'pipe', 'file', 'syslog' (and the rest of the
-- string after the prefix), or nil for a bad one.
local function logger_type(log)
    if log == nil then
        return 'stderr', nil
    end
    for _, p in ipairs({ { '|', 'pipe' }, { 'file:', 'file' }, { 'pipe:', 'pipe' }, { 'syslog:', 'syslog' } }) do
        if log:sub(1, #p[1]) == p[1] then
            return p[2], log:sub(#p[1] + 1)
        end
    end
    if not log:find(':', 1, true) then
        return 'file', log
    end
    return nil
end

local syslog_facilities = {}
for _, f in ipairs({ 'kern', 'user', 'mail', 'daemon', 'auth', 'intern', 'lpr', 'news', 'uucp', 'clock', 'authpriv',
    'ftp', 'ntp', 'audit', 'alert', 'cron', 'local0', 'local1', 'local2', 'local3', 'local4', 'local5', 'local6',
    'local7' }) do
    syslog_facilities[f] = true
end

-- say_parse_syslog_opts(): nil, or the IllegalParams text.
local function syslog_opts_error(str)
    local seen = {}
    local pos = 1
    while pos <= #str + 1 do
        local comma = str:find(',', pos, true)
        local option = str:sub(pos, (comma or #str + 1) - 1)
        if option == '' then
            break
        end
        local key, value = option:match('^(%a+)=(.*)$')
        if key == 'server' or key == 'identity' or key == 'facility' then
            if seen[key] then
                return string.format("duplicate option '%s'", key)
            end
            seen[key] = true
            if key == 'facility' and not syslog_facilities[value] then
                return string.format("bad syslog facility option '%s'", value)
            end
        else
            return string.format("bad option '%s'", option)
        end
        if comma == nil then
            break
        end
        pos = comma + 1
    end
    return nil
end

-- The type of the logger `log` (a box.cfg.log value) opens; 'file' for a bad one.
local function current_logger_type(log)
    return logger_type(cstr(log)) or 'file'
end

-- The log module's own check of a value (log.lua's verify_option), run while the user's
-- table is read. `cfg` is the user's table, `current` the effective one (nil on the first
-- call, when the logger is not set up yet).
local function verify_module(k, v, cfg, current)
    if k == 'log' or k == 'log_nonblock' then
        if current ~= nil and current[k] ~= v then
            return cfg_error(k, "can't be set dynamically")
        end
    elseif k == 'log_level' then
        if type(v) == 'string' then
            if log_levels[v] == nil then
                return cfg_error(k, 'expected ' .. LOG_LEVEL_LIST)
            end
        elseif type(v) ~= 'number' then
            return cfg_error(k, 'must be a number or a string')
        end
    elseif k == 'log_format' then
        if not (type(v) == 'string' and log_formats[v]) then
            return cfg_error(k, 'expected ' .. LOG_FORMAT_LIST)
        end
        local ltype
        if cfg.log ~= nil and type(cfg.log) == 'string' then
            ltype = logger_type(cstr(cfg.log))
            if ltype == nil then
                -- log.lua re-raises the parser's IllegalParams error as is.
                return { type = 'IllegalParams', message = LOGGER_SYNTAX, fatal = false }
            end
        elseif current ~= nil then
            ltype = current_logger_type(current.log)
        end
        if v == 'json' and ltype == 'syslog' then
            return cfg_error(k, "json can't be used with syslog logger")
        end
    end
    return nil
end

-- box_check_say(), on the first call.
local function check_say(cfg)
    local log = cstr(cfg.log)
    local ltype, rest = logger_type(log)
    if ltype == nil then
        return cfg_error('log', LOGGER_SYNTAX)
    end
    if ltype == 'syslog' then
        local err = syslog_opts_error(rest)
        if err ~= nil then
            return cfg_error('log', err)
        end
    end
    local format = cstr(cfg.log_format)
    if not log_formats[format] then
        return cfg_error('log_format', "expected 'plain' or 'json'")
    end
    if ltype == 'syslog' and format == 'json' then
        return cfg_error('log_format', "'json' can't be used with syslog logger")
    end
    -- cfg_getb(): Lua truthiness, -1 for nil.
    local nonblock = cfg.log_nonblock
    if nonblock ~= nil and nonblock ~= false and (ltype == 'file' or ltype == 'stderr') then
        return cfg_error('log_nonblock', 'the option is incompatible with file/stderr logger')
    end
    return nil
end

-- }}} The log module's options

-- {{{ Value checks of box.cc

local function check_uri(cfg, name)
    local s = cstr(cfg[name])
    if s ~= nil and not uri_has_service(s) then
        return cfg_error(name, 'expected host:service or /unix.socket')
    end
    return nil
end

local function check_replication(cfg)
    local r = cfg.replication
    if type(r) ~= 'table' then
        local s = cstr(r)
        if s ~= nil and not uri_has_service(s) then
            return cfg_error('replication', 'expected host:service or /unix.socket')
        end
        return nil
    end
    for i = 1, #r do
        local s = cstr(r[i]) or '(null)'
        if not uri_has_service(s) then
            return cfg_error('replication', 'expected host:service or /unix.socket')
        end
    end
    return nil
end

-- cfg_get_replication(): once the instance connects to its peers.
local function check_replication_count(cfg, fatal)
    local r = cfg.replication
    local count = type(r) == 'table' and #r or (r == nil and 0 or 1)
    if count >= VCLOCK_MAX then
        return cfg_error('replication', 'too many replicas', fatal)
    end
    return nil
end

local function positive(name, reason)
    return function(cfg)
        if (cfg[name] or 0) <= 0 then
            return cfg_error(name, reason)
        end
        return nil
    end
end

local function not_negative_int(name, reason)
    return function(cfg)
        if cfg[name] ~= nil and to_int(cfg[name]) < 0 then
            return cfg_error(name, reason)
        end
        return nil
    end
end

local function check_election_mode(cfg)
    local mode = cstr(cfg.election_mode)
    if mode ~= 'off' and mode ~= 'voter' and mode ~= 'manual' and mode ~= 'candidate' then
        return cfg_error('election_mode',
            "the value must be one of the following strings: 'off', 'voter', 'candidate', 'manual'")
    end
    return nil
end

local function check_fencing_mode(cfg)
    local mode = cfg.election_fencing_mode
    if mode ~= nil and mode ~= 'off' and mode ~= 'soft' and mode ~= 'strict' then
        return cfg_error('election_fencing_mode',
            "the value must be one of the following strings: 'off', 'soft', 'strict'")
    end
    return nil
end

local function check_sync_lag(cfg)
    -- cfg_getd_default(): nil reads as infinity.
    local lag = cfg.replication_sync_lag
    if lag ~= nil and lag <= 0 then
        return cfg_error('replication_sync_lag', 'the value must be greater than 0')
    end
    return nil
end

local function check_readahead(cfg)
    local r = to_int(cfg.readahead or 0)
    if r < 128 or r > 2147483647 then
        return cfg_error('readahead', 'specified value is out of bounds')
    end
    return nil
end

local function check_checkpoint_count(cfg)
    if to_int(cfg.checkpoint_count or 0) < 1 then
        return cfg_error('checkpoint_count', 'the value must not be less than one')
    end
    return nil
end

local function check_wal_max_size(cfg)
    if to_i64(cfg.wal_max_size or 0) <= 1 then
        return cfg_error('wal_max_size', 'the value must be greater than one')
    end
    return nil
end

local function check_wal_mode(cfg)
    local mode = cstr(cfg.wal_mode) or '(null)'
    if mode ~= 'none' and mode ~= 'write' and mode ~= 'fsync' then
        return cfg_error('wal_mode', mode)
    end
    return nil
end

local function check_wal_queue_max_size(cfg)
    if to_i64(cfg.wal_queue_max_size or 0) < 0 then
        return cfg_error('wal_queue_max_size', 'wal_queue_max_size must be >= 0')
    end
    return nil
end

local function check_wal_cleanup_delay(cfg)
    if (cfg.wal_cleanup_delay or 0) < 0 then
        return cfg_error('wal_cleanup_delay', 'value must be >= 0')
    end
    return nil
end

local function memory_quota(name)
    return function(cfg)
        local size = to_i64(cfg[name] or 0)
        if size >= 0 and size <= QUOTA_MAX then
            return nil
        end
        return cfg_error(name, string.format('must be >= 0 and <= %s, but it is %s', fmt_i64(QUOTA_MAX),
            fmt_i64(size)))
    end
end
local check_memtx_memory = memory_quota('memtx_memory')
local check_vinyl_memory = memory_quota('vinyl_memory')

local function check_memtx_min_tuple_size(cfg)
    local size = to_i64(cfg.memtx_min_tuple_size or 0)
    if size < 8 or size > 1048280 then
        return cfg_error('memtx_min_tuple_size', 'specified value is out of bounds')
    end
    return nil
end

local function check_vinyl(cfg)
    local err = check_vinyl_memory(cfg)
    if err ~= nil then
        return err
    end
    if to_int(cfg.vinyl_read_threads or 0) < 1 then
        return cfg_error('vinyl_read_threads', 'must be greater than or equal to 1')
    end
    if to_int(cfg.vinyl_write_threads or 0) < 2 then
        return cfg_error('vinyl_write_threads', 'must be greater than or equal to 2')
    end
    local range_size = to_i64(cfg.vinyl_range_size or 0)
    local page_size = to_i64(cfg.vinyl_page_size or 0)
    if page_size <= 0 or (range_size > 0 and page_size > range_size) then
        return cfg_error('vinyl_page_size', 'must be greater than 0 and less than or equal to vinyl_range_size')
    end
    if to_int(cfg.vinyl_run_count_per_level or 0) <= 0 then
        return cfg_error('vinyl_run_count_per_level', 'must be greater than 0')
    end
    if (cfg.vinyl_run_size_ratio or 0) <= 1 then
        return cfg_error('vinyl_run_size_ratio', 'must be greater than 1')
    end
    local fpr = cfg.vinyl_bloom_fpr or 0
    if fpr <= 0 or fpr > 1 then
        return cfg_error('vinyl_bloom_fpr', 'must be greater than 0 and less than or equal to 1')
    end
    return nil
end

local function check_sql_cache_size(cfg)
    if to_int(cfg.sql_cache_size or 0) < 0 then
        return cfg_error('sql_cache_size', 'must be non-negative')
    end
    return nil
end

local function check_net_msg_max(cfg, fatal)
    if to_int(cfg.net_msg_max or 0) < 2 then
        return cfg_error('net_msg_max', 'minimal value is 2', fatal)
    end
    return nil
end

local function check_anon(cfg, fatal)
    if cfg.replication_anon and not cfg.read_only then
        return cfg_error('replication_anon', 'the value may be set to true only when the instance is read-only', fatal)
    end
    return nil
end

local check_replication_timeout = positive('replication_timeout', 'the value must be greather than 0')
local check_connect_timeout = positive('replication_connect_timeout', 'the value must be greather than 0')
local check_connect_quorum = not_negative_int('replication_connect_quorum', 'the value must be greater or equal to 0')
local check_synchro_timeout = positive('replication_synchro_timeout', 'the value must be greater than zero')
local check_sync_timeout = positive('replication_sync_timeout', 'the value must be greater than 0')
local check_election_timeout = positive('election_timeout', 'the value must be a positive number')

-- box_check_config(): the first call, in this order.
local first_checks = {
    check_say,
    function(cfg)
        return check_uri(cfg, 'listen')
    end,
    function(cfg)
        return check_uuid(cfg, 'instance_uuid')
    end,
    function(cfg)
        return check_uuid(cfg, 'replicaset_uuid')
    end,
    check_election_mode,
    check_election_timeout,
    check_fencing_mode,
    check_replication,
    check_replication_timeout,
    check_connect_timeout,
    check_connect_quorum,
    check_sync_lag,
    check_synchro_quorum,
    check_synchro_timeout,
    check_sync_timeout,
    check_readahead,
    check_checkpoint_count,
    check_wal_max_size,
    check_wal_mode,
    check_wal_queue_max_size,
    check_wal_cleanup_delay,
    check_memtx_memory,
    check_memtx_min_tuple_size,
    check_vinyl,
    check_sql_cache_size,
}

-- What stops the instance while it starts (main.cc's load_cfg, then box_cfg_xc).
local function first_fatal(cfg)
    if cfg.background then
        for _, name in ipairs({ 'log', 'pid_file' }) do
            if cfg[name] == nil then
                local msg = string.format("'background' requires '%s' configuration option to be set", name)
                return { type = 'fatal', message = msg, fatal = true }
            end
        end
    end
    return check_net_msg_max(cfg, true) or check_anon(cfg, true) or check_replication_count(cfg, true)
end

-- The memtx quota counts in 1 KB units, rounded up.
local function quota_total(v)
    return math.ceil(to_i64(v or 0) / QUOTA_UNIT) * QUOTA_UNIT
end

-- What the setters of a reconfiguration check (box_set_* and load_cfg.lua's own), given
-- the values applied so far (`cfg`) and those before this call (`old`).
local reload_checks = {
    listen = function(cfg)
        return check_uri(cfg, 'listen')
    end,
    replication = function(cfg)
        return check_replication(cfg) or check_replication_count(cfg, false)
    end,
    readahead = check_readahead,
    read_only = function(cfg)
        if cfg.replication_anon and not cfg.read_only then
            return cfg_error('read_only', 'the value may be set to false only when replication_anon is false')
        end
        return nil
    end,
    memtx_memory = function(cfg, old)
        local err = check_memtx_memory(cfg)
        if err == nil and to_i64(cfg.memtx_memory) < quota_total(old.memtx_memory) then
            err = cfg_error('memtx_memory', 'cannot decrease memory size at runtime')
        end
        return err
    end,
    vinyl_memory = function(cfg, old)
        local err = check_vinyl_memory(cfg)
        if err == nil and to_i64(cfg.vinyl_memory) < to_i64(old.vinyl_memory or 0) then
            err = cfg_error('vinyl_memory', 'cannot decrease memory size at runtime')
        end
        return err
    end,
    checkpoint_count = check_checkpoint_count,
    wal_queue_max_size = check_wal_queue_max_size,
    wal_cleanup_delay = check_wal_cleanup_delay,
    election_mode = check_election_mode,
    election_timeout = check_election_timeout,
    election_fencing_mode = check_fencing_mode,
    replication_timeout = check_replication_timeout,
    replication_connect_timeout = check_connect_timeout,
    replication_connect_quorum = check_connect_quorum,
    replication_sync_lag = check_sync_lag,
    replication_synchro_quorum = check_synchro_quorum,
    replication_synchro_timeout = check_synchro_timeout,
    replication_sync_timeout = check_sync_timeout,
    replication_anon = function(cfg, old)
        local err = check_anon(cfg, false)
        if err == nil and cfg.replication_anon and not old.replication_anon then
            err = cfg_error('replication_anon', 'cannot be turned on after bootstrap has finished')
        end
        return err
    end,
    instance_uuid = function(cfg, _, ctx)
        if cfg.instance_uuid ~= ctx.instance_uuid then
            return reload_error('instance_uuid')
        end
        return nil
    end,
    replicaset_uuid = function(cfg, _, ctx)
        if cfg.replicaset_uuid ~= ctx.replicaset_uuid then
            return reload_error('replicaset_uuid')
        end
        return nil
    end,
    net_msg_max = function(cfg)
        return check_net_msg_max(cfg, false)
    end,
    sql_cache_size = check_sql_cache_size,
}

-- }}} Value checks of box.cc

-- {{{ check()

-- Old names (load_cfg.lua's translate_cfg): new name and, when the value changes, how.
-- A transform returns the value left under the old name and the one for the new name.
local function convert_gb(size)
    if type(size) ~= 'number' and tonumber(size) == nil then
        return nil, nil, string.format("attempt to perform arithmetic on local 'size' (a %s value)", type(size))
    end
    return nil, math.floor(tonumber(size) * 1024 * 1024 * 1024)
end

local function negate(old)
    return nil, not old
end

local translations = {
    snapshot_count = { 'checkpoint_count' },
    snapshot_period = { 'checkpoint_interval' },
    slab_alloc_arena = { 'memtx_memory', convert_gb },
    slab_alloc_minimal = { 'memtx_min_tuple_size' },
    slab_alloc_maximal = { 'memtx_max_tuple_size' },
    snap_dir = { 'memtx_dir' },
    logger = { 'log' },
    logger_nonblock = { 'log_nonblock' },
    panic_on_snap_error = { 'force_recovery', negate },
    panic_on_wal_error = { 'force_recovery', negate },
    replication_source = { 'replication' },
    -- Kept under its own name, which is then an unexpected option.
    rows_per_wal = {
        'wal_max_size',
        function(old, new)
            return old, new
        end,
    },
}

-- The pre-2.6.1 election switches (spec §0), translated when ctx.election_aliases is set.
local function translate_election(cfg, current, result, warnings)
    local enabled, candidate = cfg.election_is_enabled, cfg.election_is_candidate
    if enabled == nil and candidate == nil then
        return nil
    end
    local mode_now = (current and current.election_mode) or 'off'
    for _, k in ipairs({ 'election_is_candidate', 'election_is_enabled' }) do
        if cfg[k] ~= nil then
            if type(cfg[k]) ~= 'boolean' then
                return cfg_error(k, 'should be of type boolean')
            end
            warnings[#warnings + 1] = string.format('Deprecated option %s, please use election_mode instead', k)
        end
    end
    if enabled == nil then
        enabled = mode_now ~= 'off'
    end
    if candidate == nil then
        candidate = mode_now == 'candidate'
    end
    local mode = not enabled and 'off' or (candidate and 'candidate' or 'voter')
    if cfg.election_mode ~= nil and cfg.election_mode ~= mode then
        return cfg_error(cfg.election_is_enabled ~= nil and 'election_is_enabled' or 'election_is_candidate',
            'can not override a value for a deprecated option')
    end
    result.election_is_enabled, result.election_is_candidate = nil, nil
    result.election_mode = mode
    return nil
end

-- load_cfg.lua's upgrade_cfg(): a copy of the user's table with old names translated.
local function upgrade(opts, current, ctx, warnings)
    local result = {}
    local keys = {}
    for k in pairs(opts) do
        keys[#keys + 1] = k
    end
    for _, k in ipairs(sort_keys(keys)) do
        local v = opts[k]
        local tr = translations[k]
        if tr ~= nil then
            local new_key, transform = tr[1], tr[2]
            warnings[#warnings + 1] = string.format('Deprecated option %s, please use %s instead', k, new_key)
            local new_orig = opts[new_key]
            local old_val, new_val, lua_err
            if transform == nil then
                new_val = v
            else
                old_val, new_val, lua_err = transform(v, new_orig)
            end
            if lua_err ~= nil then
                return nil, { type = 'LuajitError', message = lua_err, fatal = false }
            end
            if new_orig ~= nil and new_orig ~= new_val then
                return nil, cfg_error(k, 'can not override a value for a deprecated option')
            end
            result[k] = old_val
            result[new_key] = new_val
        else
            result[k] = v
        end
    end
    if ctx.election_aliases then
        local err = translate_election(opts, current, result, warnings)
        if err ~= nil then
            return nil, err
        end
    end
    return result
end

local function normalize_uri(v)
    if v == nil or type(v) == 'table' then
        return v
    end
    return tostring(v)
end

local function normalize_uri_list(v)
    local result = {}
    if type(v) == 'table' then
        for _, uri in ipairs(v) do
            result[#result + 1] = normalize_uri(uri)
        end
    elseif v ~= nil then
        result[1] = normalize_uri(v)
    end
    return result
end

local normalizers = {
    listen = normalize_uri,
    replication = normalize_uri_list,
}

-- load_cfg.lua's prepare_cfg(): known names, types, the log module's checks and the
-- normalisations. Returns the normalised values (nil for "the default") and the keys.
local function prepare(cfg, current)
    local keys = {}
    for k in pairs(cfg) do
        keys[#keys + 1] = k
    end
    sort_keys(keys)
    local new = {}
    for _, k in ipairs(keys) do
        local v = cfg[k]
        local template = types[k]
        if template == nil then
            return nil, cfg_error(k, 'unexpected option')
        elseif v == '' or v == nil then
            -- '' and box.NULL (== nil) mean the default.
            v = box_defaults[k]
        elseif template == 'module' then
            local err = verify_module(k, v, cfg, current)
            if err ~= nil then
                return nil, err
            end
        elseif not template:find(',', 1, true) then
            if type(v) ~= template then
                return nil, cfg_error(k, 'should be of type ' .. template)
            end
        elseif not (',' .. template:gsub(' ', '') .. ','):find(',' .. type(v) .. ',', 1, true) then
            return nil, cfg_error(k, 'should be one of types ' .. template)
        end
        if normalizers[k] ~= nil then
            v = normalizers[k](v)
        end
        new[k] = v
    end
    return new, keys
end

-- load_cfg.lua's compare_cfg(): tables compare by their array part.
local function same(a, b)
    if type(a) ~= type(b) then
        return false
    end
    if type(a) ~= 'table' then
        return a == b
    end
    if #a ~= #b then
        return false
    end
    for i, v in ipairs(a) do
        if v ~= b[i] then
            return false
        end
    end
    return true
end

local function copy(t)
    local c = {}
    for k, v in pairs(t) do
        c[k] = v
    end
    return c
end

local function check_first(cfg, ctx)
    local new, err = prepare(cfg, nil)
    if new == nil then
        return nil, err
    end
    local effective = copy(new)
    for k, v in pairs(defaults) do
        if effective[k] == nil then
            effective[k] = v
        end
    end
    for _, f in ipairs(first_checks) do
        err = f(effective, ctx)
        if err ~= nil then
            return nil, err
        end
    end
    err = first_fatal(effective)
    if err ~= nil then
        return nil, err
    end
    local changed = {}
    for k, v in pairs(effective) do
        if not same(v, defaults[k]) then
            changed[#changed + 1] = k
        end
    end
    return effective, sort_keys(changed, true)
end

local function check_reload(cfg, current, ctx)
    local new, keys = prepare(cfg, current)
    if new == nil then
        return nil, keys
    end
    -- A static option may be "set" only to the value it has, compared as given.
    for _, k in ipairs(keys) do
        if not dynamic[k] and current[k] ~= cfg[k] then
            return nil, reload_error(k)
        end
    end
    local uuids = {
        instance_uuid = ctx.instance_uuid or current.instance_uuid,
        replicaset_uuid = ctx.replicaset_uuid or current.replicaset_uuid,
    }
    local effective = copy(current)
    local changed = {}
    for _, k in ipairs(sort_keys(keys, true)) do
        if not same(new[k], current[k]) then
            effective[k] = new[k]
            local f = reload_checks[k]
            local err = f and f(effective, current, uuids)
            if err ~= nil then
                return nil, err
            end
            changed[#changed + 1] = k
        end
    end
    return effective, changed
end

function M.check(opts, current, ctx)
    ctx = ctx or {}
    if opts == nil then
        opts = {}
    end
    if type(opts) ~= 'table' then
        return nil, {
            type = 'LuajitError',
            message = string.format("bad argument #1 to 'pairs' (table expected, got %s)", type(opts)),
            fatal = false,
        }
    end
    local warnings = {}
    local cfg, err = upgrade(opts, current, ctx, warnings)
    if cfg == nil then
        return nil, err
    end
    local new, changed
    if current == nil then
        new, changed = check_first(cfg, ctx)
    else
        new, changed = check_reload(cfg, current, ctx)
    end
    if new == nil then
        return nil, changed
    end
    return new, changed, warnings
end

-- }}} check()

return M
