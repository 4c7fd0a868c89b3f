-- swim: the Lua half of node's SWIM module (spec/swim.md §1).
--
-- Argument checks, error texts, the cfg cache, member and event wrappers and triggers live
-- here, as in Tarantool's own builtin/swim.lua; `internal` is the Rust half (src/swim/lua.rs).
-- Error positions matter: Tarantool raises most errors with `return error(...)`, a tail
-- call, so LuaJIT reports the caller's line (or none when the caller is C). The same call
-- shapes are kept here so the `builtin/swim.lua:NNN:` prefixes appear exactly where
-- Tarantool prints them.
local internal = ...
local ffi = require('ffi')
local fiber = require('fiber')
local uuid_mod = require('uuid')
local msgpack = require('msgpack')
local log = require('log')

pcall(ffi.cdef, [[
struct swim_incarnation {
    uint64_t generation;
    uint64_t version;
};
]])

local inc_t = ffi.typeof('struct swim_incarnation')
local uuid_t = ffi.typeof('struct tt_uuid')

local function inc_cmp(a, b)
    if a.generation ~= b.generation then
        return a.generation < b.generation and -1 or 1
    end
    if a.version ~= b.version then
        return a.version < b.version and -1 or 1
    end
    return 0
end

ffi.metatype(inc_t, {
    __eq = function(a, b)
        if not ffi.istype(inc_t, a) or not ffi.istype(inc_t, b) then
            return false
        end
        return inc_cmp(a, b) == 0
    end,
    __lt = function(a, b) return inc_cmp(a, b) < 0 end,
    __le = function(a, b) return inc_cmp(a, b) <= 0 end,
    __tostring = function(i)
        return string.format('cdata {generation = %s, version = %s}',
                             tostring(i.generation), tostring(i.version))
    end,
})

-- Handles known to this module (weak keys): `ptr` fields are checked against them.
local instance_ptrs = setmetatable({}, {__mode = 'k'})
local member_ptrs = setmetatable({}, {__mode = 'k'})
-- Trigger lists by instance ptr.
local trigger_lists = setmetatable({}, {__mode = 'k'})

local function check_uri(value, func_name)
    if value == nil then
        return nil
    end
    if type(value) == 'number' then
        return tostring(value)
    end
    if type(value) == 'string' then
        return value
    end
    return error(func_name..': expected string URI or port number')
end

local function check_timeout(value, func_name, name)
    if value == nil or type(value) == 'number' then
        return value
    end
    return error(func_name..': expected number '..name)
end

local function check_gc_mode(value, func_name)
    if value == nil or value == 'on' or value == 'off' then
        return value
    end
    return error(func_name..': unknown gc_mode')
end

local function check_uuid(value, func_name)
    if value == nil then
        return nil
    end
    if type(value) ~= 'string' then
        if ffi.istype(uuid_t, value) then
            return value
        end
        return error(func_name..': expected string UUID or struct tt_uuid')
    end
    value = uuid_mod.fromstr(value)
    if not value then
        return error(func_name..': invalid UUID')
    end
    return value
end

-- Host-order bytes for the Rust half.
local function uuid_bin(u)
    if u == nil then
        return nil
    end
    return ffi.string(u, 16)
end

-- A string or cdata with a size, as Tarantool's const char * arguments.
local function check_const_char(value, size, func_name, param_name)
    if size ~= nil and type(size) ~= 'number' then
        return error(func_name..': expected number '..param_name..' size')
    end
    if type(value) == 'cdata' then
        if not size then
            return error(func_name..': size is mandatory for cdata '..param_name)
        end
        value = ffi.cast('const char *', value)
    elseif type(value) == 'string' then
        if not size then
            size = value:len()
        elseif size > value:len() then
            return error(func_name..': explicit '..param_name..' size > string length')
        end
    elseif value == nil then
        if size then
            return error(func_name..': size can not be set without '..param_name)
        end
        size = 0
    else
        return error(func_name..': '..param_name..' should be either string or cdata')
    end
    return value, size
end

-- Bytes of a checked const char argument; nil when the size is out of any sane range (the
-- Rust half then reports the size error without reading).
local function const_char_bytes(value, size, limit)
    if value == nil or size < 0 or (limit and size > limit) then
        return nil
    end
    if type(value) == 'string' then
        return value:sub(1, size)
    end
    return ffi.string(value, size)
end

local function check_instance(s, func_name)
    if type(s) == 'table' then
        local ptr = s.ptr
        if ptr ~= nil and instance_ptrs[ptr] then
            return ptr
        end
    end
    return error(func_name..': first argument is not a SWIM instance')
end

local function check_member(m, func_name)
    if type(m) == 'table' then
        local ptr = m.ptr
        if ptr ~= nil and member_ptrs[ptr] then
            return ptr
        end
    end
    return error(func_name..': first argument is not a SWIM member')
end

-- Member objects ------------------------------------------------------------------------

local function member_status(m)
    local ptr = check_member(m, 'member:status()')
    return internal.member_status(ptr)
end

local function member_uri(m)
    local ptr = check_member(m, 'member:uri()')
    return internal.member_uri(ptr)
end

local function member_incarnation(m)
    local ptr = check_member(m, 'member:incarnation()')
    local g, v = internal.member_incarnation(ptr)
    return inc_t(g, v)
end

local function member_is_dropped(m)
    local ptr = check_member(m, 'member:is_dropped()')
    return internal.member_is_dropped(ptr)
end

-- The payload string, kept in the object so a payload_cdata pointer stays valid.
local function member_payload_raw(m, ptr)
    local str = internal.member_payload(ptr)
    if rawget(m, 'ps') ~= str then
        rawset(m, 'ps', str)
    end
    return str
end

local function member_payload_cdata(m)
    local ptr = check_member(m, 'member:payload_cdata()')
    local str = member_payload_raw(m, ptr)
    if #str == 0 then
        return ffi.cast('const char *', nil), 0
    end
    return ffi.cast('const char *', str), #str
end

local function member_payload_str(m)
    local ptr = check_member(m, 'member:payload_str()')
    local str = member_payload_raw(m, ptr)
    if #str > 0 then
        return str
    end
    return nil
end

-- MessagePack-decoded payload, cached per (incarnation, up-to-date flag). Trailing bytes
-- are ignored, as in Tarantool: raw 'hello' decodes to 104 (spec §1.5).
local function member_payload(m)
    local ptr = check_member(m, 'member:payload()')
    local g, v = internal.member_incarnation(ptr)
    local str, up_to_date = internal.member_payload(ptr)
    local key = tostring(g)..'/'..tostring(v)..'/'..tostring(up_to_date)..'/'..#str
    if rawget(m, 'pk') == key then
        return rawget(m, 'p')
    end
    local result
    if #str > 0 then
        local ok
        ok, result = pcall(msgpack.decode, str)
        if not ok then
            result = str
        end
    end
    rawset(m, 'p', result)
    rawset(m, 'pk', key)
    return result
end

local function member_uuid(m)
    local ptr = check_member(m, 'member:uuid()')
    local u = rawget(m, 'u')
    if not u then
        u = uuid_mod.frombin(internal.member_uuid(ptr))
        rawset(m, 'u', u)
    end
    return u
end

local function member_serialize(m)
    local str = internal.member_payload(m.ptr)
    return {
        status = member_status(m),
        uuid = member_uuid(m),
        uri = member_uri(m),
        incarnation = member_incarnation(m),
        payload_size = #str,
    }
end

local member_mt = {
    __index = {
        status = member_status,
        uuid = member_uuid,
        uri = member_uri,
        incarnation = member_incarnation,
        payload_cdata = member_payload_cdata,
        payload_str = member_payload_str,
        payload = member_payload,
        is_dropped = member_is_dropped,
    },
    __serialize = member_serialize,
    __newindex = function()
        return error('swim_member is a read-only object')
    end,
}

-- One table per member object and instance (weak cache), so the same member is the same
-- table.
local function wrap_member(s, id, ptr)
    local cache = rawget(s, 'cache_table')
    local m = cache[id]
    if m == nil then
        member_ptrs[ptr] = true
        m = setmetatable({ptr = ptr}, member_mt)
        cache[id] = m
    end
    return m
end

-- Instances ------------------------------------------------------------------------------

local function error_deleted()
    return error('the swim instance is deleted')
end

local swim_mt_deleted = {
    __index = error_deleted,
}

local function swim_delete(s)
    local ptr = check_instance(s, 'swim:delete')
    internal.delete(ptr)
    s.ptr = nil
    setmetatable(s, swim_mt_deleted)
end

local function swim_quit(s)
    local ptr = check_instance(s, 'swim:quit')
    internal.quit(ptr)
    s.ptr = nil
    setmetatable(s, swim_mt_deleted)
end

local function swim_size(s)
    return internal.size(check_instance(s, 'swim:size'))
end

local function swim_is_configured(s)
    return internal.is_configured(check_instance(s, 'swim:is_configured'))
end

local function swim_serialize(s)
    return s.cfg.index
end

local function swim_probe_member(s, uri)
    local func_name = 'swim:probe_member'
    local ptr = check_instance(s, func_name)
    uri = check_uri(uri, func_name)
    return internal.probe_member(ptr, uri)
end

local function swim_add_member(s, cfg)
    local func_name = 'swim:add_member'
    local ptr = check_instance(s, func_name)
    if type(cfg) ~= 'table' then
        return error(func_name..': expected table member definition')
    end
    local uri = check_uri(cfg.uri, func_name)
    local uuid = check_uuid(cfg.uuid, func_name)
    return internal.add_member(ptr, uri, uuid_bin(uuid))
end

local function swim_remove_member(s, uuid)
    local func_name = 'swim:remove_member'
    local ptr = check_instance(s, func_name)
    uuid = check_uuid(uuid, func_name)
    return internal.remove_member(ptr, uuid_bin(uuid))
end

local function swim_broadcast(s, port)
    local func_name = 'swim:broadcast'
    local ptr = check_instance(s, func_name)
    if port == nil then
        port = -1
    else
        if type(port) == 'string' then
            port = tonumber(port)
        end
        if type(port) ~= 'number' then
            return error(func_name..': expected number port')
        end
    end
    return internal.broadcast(ptr, port)
end

local function swim_self(s)
    local ptr = check_instance(s, 'swim:self')
    local id, mptr = internal.member(ptr, nil)
    return wrap_member(s, id, mptr)
end

local function swim_member_by_uuid(s, uuid)
    local func_name = 'swim:member_by_uuid'
    local ptr = check_instance(s, func_name)
    uuid = check_uuid(uuid, func_name)
    -- Tarantool 2.6.0 crashes on nil here; later versions return nil.
    if uuid == nil then
        return nil
    end
    local id, mptr = internal.member(ptr, uuid_bin(uuid))
    if id == nil then
        return nil
    end
    return wrap_member(s, id, mptr)
end

local function swim_set_payload_raw(s, payload, payload_size)
    local func_name = 'swim:set_payload_raw'
    local ptr = check_instance(s, func_name)
    payload, payload_size = check_const_char(payload, payload_size, func_name, 'payload')
    return internal.set_payload(ptr, const_char_bytes(payload, payload_size, 1200),
                                payload_size)
end

local function swim_set_payload(s, payload)
    local func_name = 'swim:set_payload'
    local ptr = check_instance(s, func_name)
    local data, size = nil, 0
    if payload ~= nil then
        data = msgpack.encode(payload)
        size = #data
    end
    return internal.set_payload(ptr, data, size)
end

local cipher_algos = {none = true, aes128 = true, aes192 = true, aes256 = true, des = true}
-- 'gcm' is node's addition (authenticated); the rest are Tarantool's.
local cipher_modes = {ecb = true, cbc = true, cfb = true, ofb = true, gcm = true}

local function swim_set_codec(s, cfg)
    local func_name = 'swim:set_codec'
    local ptr = check_instance(s, func_name)
    if type(cfg) ~= 'table' then
        error(func_name..': expected table codec configuration')
    end
    local algo = cfg.algo
    if type(algo) ~= 'string' or not cipher_algos[algo] then
        error(func_name..': unknown crypto algorithm')
    end
    local mode = cfg.mode
    if mode == nil then
        mode = 'cbc'
    elseif type(mode) ~= 'string' or not cipher_modes[mode] then
        error(func_name..': unknown crypto algorithm mode')
    end
    local key, key_size = check_const_char(cfg.key, cfg.key_size, func_name, 'key')
    return internal.set_codec(ptr, algo, mode, const_char_bytes(key, key_size, 64))
end

-- Iteration: a snapshot of the UUIDs, each looked up again when reached.
local function swim_pairs(s)
    local ptr = check_instance(s, 'swim:pairs')
    local list = internal.uuids(ptr)
    local i = 0
    local function next_member(ctx)
        local s = ctx.swim
        if rawget(s, 'ptr') == nil then
            return error_deleted()
        end
        while true do
            i = i + 1
            local b = list[i]
            if b == nil then
                return nil
            end
            local id, mptr = internal.member(ptr, b)
            if id ~= nil then
                local m = wrap_member(s, id, mptr)
                return m:uuid(), m
            end
        end
    end
    return next_member, {swim = s}, nil
end

local event_index = {
    is_new = function(self) return bit.band(self[1], 0x01) ~= 0 end,
    is_new_status = function(self) return bit.band(self[1], 0x02) ~= 0 end,
    is_new_uri = function(self) return bit.band(self[1], 0x04) ~= 0 end,
    is_new_generation = function(self) return bit.band(self[1], 0x08) ~= 0 end,
    is_new_version = function(self) return bit.band(self[1], 0x10) ~= 0 end,
    is_new_incarnation = function(self) return bit.band(self[1], 0x18) ~= 0 end,
    is_new_payload = function(self) return bit.band(self[1], 0x20) ~= 0 end,
    is_update = function(self) return bit.band(self[1], 0x3E) ~= 0 end,
    is_drop = function(self) return bit.band(self[1], 0x40) ~= 0 end,
}

local event_mt = {
    __index = event_index,
    __serialize = function(self)
        local res = {}
        for k, f in pairs(event_index) do
            if f(self) then
                res[k] = true
            end
        end
        return res
    end,
}

-- The trigger wrapper holds the instance weakly: no cycle through the trigger list.
local function on_member_event_new(s, callback, ctx)
    local ref = setmetatable({s}, {__mode = 'v'})
    return function(id, ptr, mask)
        local s = ref[1]
        if s then
            local m = wrap_member(s, id, ptr)
            local event = setmetatable({mask}, event_mt)
            return callback(m, event, ctx)
        end
    end
end

-- Tarantool's trigger reset on the C trigger list: newest first.
local function trigger_reset(ptr, new, old)
    local list = trigger_lists[ptr]
    if new == nil and old == nil then
        local res = {}
        for i = #list, 1, -1 do
            table.insert(res, list[i])
        end
        return res
    end
    if old ~= nil then
        local found = false
        for i, f in ipairs(list) do
            if f == old then
                table.remove(list, i)
                found = true
                break
            end
        end
        if not found then
            error('trigger reset: Trigger is not found')
        end
    end
    if new ~= nil then
        table.insert(list, new)
    end
    internal.set_collect(ptr, #list > 0)
    if new ~= nil then
        return new
    end
end

local function swim_on_member_event(s, new, old, ctx)
    local ptr = check_instance(s, 'swim:on_member_event')
    if type(old) ~= 'function' then
        ctx = old
        old = nil
    end
    if new ~= nil then
        new = on_member_event_new(s, new, ctx)
    end
    return trigger_reset(ptr, new, old)
end

-- The event fiber: waits for batched events and runs the triggers, newest first; an error
-- is logged and skips the rest of the triggers for that event only. It holds no strong
-- reference to the instance, so a forgotten instance is still collected.
local function event_loop(watch, list)
    local name
    while true do
        local fd = internal.fd(watch)
        if fd ~= name then
            name = fd
            fiber.name('SWIM event handler '..fd)
        end
        local events = internal.wait_events(watch)
        if events == nil then
            return
        end
        for _, e in ipairs(events) do
            for i = #list, 1, -1 do
                local ok, err = pcall(list[i], e[1], e[3], e[2])
                if not ok then
                    log.error('LuajitError: %s', tostring(err))
                    break
                end
            end
        end
    end
end

local swim_mt = {
    __index = {
        delete = swim_delete,
        quit = swim_quit,
        size = swim_size,
        is_configured = swim_is_configured,
        probe_member = swim_probe_member,
        add_member = swim_add_member,
        remove_member = swim_remove_member,
        broadcast = swim_broadcast,
        self = swim_self,
        member_by_uuid = swim_member_by_uuid,
        set_payload_raw = swim_set_payload_raw,
        set_payload = swim_set_payload,
        set_codec = swim_set_codec,
        pairs = swim_pairs,
        on_member_event = swim_on_member_event,
        -- node's addition: protocol and driver counters.
        stat = function(s)
            return internal.stat(check_instance(s, 'swim:stat'))
        end,
    },
    __serialize = swim_serialize,
}

local cfg_options = {
    uri = true, heartbeat_rate = true, ack_timeout = true, gc_mode = true, uuid = true,
    -- node's additions: lifeguard is off by default, so plain configs keep Tarantool 2.6's
    -- rules; push_news and count_refusals (on by default) only act on news sooner.
    lifeguard = true, push_news = true, count_refusals = true,
}

local function check_boolean(value, func_name, option)
    if value == nil or type(value) == 'boolean' then return value end
    return error(func_name..': expected boolean '..option)
end

-- `lifeguard = true|false` switches both Lifeguard extensions; a table picks them one by
-- one: `{local_health = true, dynamic_suspicion = false}`.
local function check_lifeguard(value, func_name)
    if value == nil then return nil, nil end
    if type(value) == 'boolean' then return value, value end
    if type(value) == 'table' then
        for k, v in pairs(value) do
            if (k ~= 'local_health' and k ~= 'dynamic_suspicion') or type(v) ~= 'boolean' then
                return error(func_name..': lifeguard expects local_health and dynamic_suspicion booleans')
            end
        end
        return value.local_health == true, value.dynamic_suspicion == true
    end
    return error(func_name..': expected boolean or table lifeguard')
end

local function swim_cfg_call(c, s, cfg)
    local func_name = 'swim:cfg'
    local ptr = check_instance(s, func_name)
    if type(cfg) ~= 'table' then
        return error(func_name..': expected table configuration')
    end
    for k in pairs(cfg) do
        if not cfg_options[k] then
            return error(func_name..': unknown option '..tostring(k))
        end
    end
    local uri = check_uri(cfg.uri, func_name)
    local heartbeat_rate = check_timeout(cfg.heartbeat_rate, func_name, 'heartbeat_rate')
    local ack_timeout = check_timeout(cfg.ack_timeout, func_name, 'ack_timeout')
    local gc_mode = check_gc_mode(cfg.gc_mode, func_name)
    local uuid = check_uuid(cfg.uuid, func_name)
    local local_health, dynamic_suspicion = check_lifeguard(cfg.lifeguard, func_name)
    local push_news = check_boolean(cfg.push_news, func_name, 'push_news')
    local count_refusals = check_boolean(cfg.count_refusals, func_name, 'count_refusals')
    local ok, err = internal.cfg(ptr, uri, uuid_bin(uuid), heartbeat_rate, ack_timeout,
                                 gc_mode, local_health, dynamic_suspicion, push_news,
                                 count_refusals)
    if not ok then
        return nil, err
    end
    local index = c.index
    for k, v in pairs(cfg) do
        index[k] = v
    end
    return true
end

local swim_cfg_mt = {
    __call = swim_cfg_call,
    __index = function(c, k)
        return c.index[k]
    end,
    __serialize = function(c)
        return c.index
    end,
    __newindex = function()
        return error('please, use swim:cfg{key = value} instead of swim.cfg.key = value')
    end,
}

-- The first successful cfg gives the instance its full method set and starts the event
-- fiber.
local function swim_cfg_first_call(c, s, cfg)
    local ok, err = swim_cfg_call(c, s, cfg)
    if not ok then
        return ok, err
    end
    setmetatable(c, swim_cfg_mt)
    setmetatable(s, swim_mt)
    local ptr = rawget(s, 'ptr')
    fiber.new(event_loop, internal.watch(ptr), trigger_lists[ptr])
    return ok
end

local swim_not_configured_mt = {
    __index = {
        delete = swim_delete,
        is_configured = swim_is_configured,
        set_codec = swim_set_codec,
        on_member_event = swim_on_member_event,
    },
    __serialize = swim_serialize,
}

local swim_cfg_not_configured_mt = {}
for k, v in pairs(swim_cfg_mt) do
    swim_cfg_not_configured_mt[k] = v
end
swim_cfg_not_configured_mt.__call = swim_cfg_first_call

local cache_table_mt = {__mode = 'v'}

local function swim_new(cfg)
    local generation
    if cfg and type(cfg) == 'table' and cfg.generation then
        generation = cfg.generation
        if type(generation) ~= 'number' or generation < 0 or
           math.floor(generation) ~= generation then
            return error('swim.new: generation should be non-negative integer')
        end
        local copy = {}
        for k, v in pairs(cfg) do
            copy[k] = v
        end
        cfg = copy
        cfg.generation = nil
        if next(cfg) == nil then
            cfg = nil
        end
    else
        generation = fiber.time64()
    end
    local ptr = internal.new(generation)
    instance_ptrs[ptr] = true
    trigger_lists[ptr] = {}
    local s = setmetatable({
        ptr = ptr,
        cfg = setmetatable({index = {}}, swim_cfg_not_configured_mt),
        cache_table = setmetatable({}, cache_table_mt),
    }, swim_not_configured_mt)
    if cfg then
        local ok, err = s:cfg(cfg)
        if not ok then
            s:delete()
            return ok, err
        end
    end
    return s
end

return {
    new = swim_new,
}
