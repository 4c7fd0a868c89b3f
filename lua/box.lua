-- box's Lua API over the Rust primitives in `internal` (src/box/lua.rs), as Tarantool's
-- schema.lua is written over C calls: spaces and indexes are Lua tables whose methods call
-- into Rust; DDL is writes to the system spaces.
local internal, cfg_check = ...

local fiber = require('fiber')
local log = require('log')

local box = box
local type, pairs, ipairs, setmetatable, tostring, tonumber, select, error, pcall =
    type, pairs, ipairs, setmetatable, tostring, tonumber, select, error, pcall

local raise = internal.raise -- raise(code, args...): a box.error of that code
local wal_done, park = internal.wal_done, internal.park_function()

-- Parks until the commit's WAL write is done (raising if it failed); returns nothing for a
-- missing tuple, as Tarantool does (select('#', s:get{42}) == 0). `waiting`: the request
-- already made the fiber the ticket's waiter (insert and replace when asked to).
local function wait(result, ticket, waiting)
    if ticket ~= nil then
        if waiting then park() end
        while not wal_done(ticket) do park() end
    end
    if result == nil then return end
    return result
end

-- A write on a space with triggers runs in a transaction (its own, or a savepoint in the
-- caller's), so that a failing trigger undoes the statement, as in Tarantool.
-- before_replace triggers see (old, new, space name, request type) before the change and
-- return the tuple to write instead: `old` skips the change, nil deletes `old`. `plan`
-- says what the request would do (old, new) without doing it; `fn(...)` does it.
-- on_replace triggers see the change that was made.
-- Whether a call returned anything, and its first value.
local function returned_first(...)
    return select('#', ...) > 0, (...)
end

local function write_with_triggers(trig, space, request, plan, fn, ...)
    local own = not box.is_in_txn()
    if own then box.begin() end
    local sp = not own and box.savepoint() or nil
    local args = {n = select('#', ...), ...}
    local ok, result = pcall(function()
        if trig.before_replace ~= nil then
            local old, new = plan()
            if old == nil and new == nil then return end
            local original = new
            for _, f in ipairs(trig.before_replace) do
                -- Returning nothing keeps the tuple; an explicit nil deletes (as 2.6).
                local returned, result = returned_first(f(old, new, space.name, request))
                if returned then new = result end
            end
            if new == original then
                fn(unpack(args, 1, args.n))
            elseif old ~= nil and new == old then
                internal.last_change_reset()
            elseif new == nil then
                if old ~= nil then
                    internal.delete(space.id, 0, internal.primary_key(space.id, old))
                else
                    internal.last_change_reset()
                end
            elseif request == 'INSERT' then
                internal.insert(space.id, new)
            else
                internal.replace(space.id, new)
            end
        else
            fn(unpack(args, 1, args.n))
        end
    end)
    local changed, old, new = internal.last_change()
    if ok and changed then
        for _, f in ipairs(trig.on_replace or {}) do
            ok, result = pcall(f, old, new, space.name, request)
            if not ok then break end
        end
        if ok then result = new or old end
    elseif ok then
        result = nil
    end
    if not ok then
        if own then box.rollback() else box.rollback_to_savepoint(sp) end
        error(result, 0)
    end
    if own then box.commit() end
    if result == nil then return end
    return result
end

local function flush_logs()
    local msgs = internal.take_logs()
    if msgs ~= nil then
        for _, m in ipairs(msgs) do log.error(m) end
    end
end

-- {{{ iterator names

local iterator_codes = {EQ = 0, REQ = 1, ALL = 2, LT = 3, LE = 4, GE = 5, GT = 6,
    BITS_ALL_SET = 7, BITS_ANY_SET = 8, BITS_ALL_NOT_SET = 9, OVERLAPS = 10, NEIGHBOR = 11}
box.index = {}
for k, v in pairs(iterator_codes) do box.index[k] = v end

local function iterator_code(it)
    if it == nil then return nil end
    if type(it) == 'number' then
        if it < 0 or it > 6 then raise(1, 'Invalid iterator type') end
        return it
    end
    if type(it) == 'string' then
        local code = iterator_codes[it:upper()]
        if code == nil or code > 6 then raise(72, it) end
        return code
    end
    raise(1, 'Invalid iterator type')
end

local function select_opts(opts)
    local it, offset, limit
    if opts ~= nil then
        if type(opts) ~= 'table' then
            raise(1, 'options must be a table')
        end
        it = iterator_code(opts.iterator)
        offset = opts.offset
        limit = opts.limit
        if offset ~= nil and type(offset) ~= 'number' then raise(1, 'options parameter \'offset\' should be of type number') end
        if limit ~= nil and type(limit) ~= 'number' then raise(1, 'options parameter \'limit\' should be of type number') end
    end
    return it, offset or 0, limit or 4294967295
end

-- }}}

-- {{{ index and space objects

-- Space formats, kept beside the space objects (not in them: a space prints its fields).
local space_formats = setmetatable({}, {__mode = 'k'})
-- space id -> {on_replace = {...}, before_replace = {...}}; absent when a space has no
-- triggers (the fast path).
local space_triggers = {}
local plan_write

local index_mt = {}
index_mt.__index = index_mt

local function check_index(idx, method)
    if type(idx) ~= 'table' or idx.space_id == nil then
        error(('Use index:%s(...) instead of index.%s(...)'):format(method, method), 3)
    end
end

function index_mt.get(idx, key)
    check_index(idx, 'get')
    local t = internal.get(idx.space_id, idx.id, key)
    if t == nil then return end
    return t
end

function index_mt.select(idx, key, opts)
    check_index(idx, 'select')
    local it, offset, limit = select_opts(opts)
    return internal.select(idx.space_id, idx.id, it, offset, limit, key)
end

function index_mt.pairs(idx, key, opts)
    check_index(idx, 'pairs')
    local it
    if type(opts) == 'table' then it = iterator_code(opts.iterator)
    elseif opts ~= nil then it = iterator_code(opts) end
    local state = internal.iterator(idx.space_id, idx.id, it, key)
    return internal.iterator_next, state, nil
end
index_mt.__pairs = index_mt.pairs
index_mt.ipairs = index_mt.pairs

function index_mt.count(idx, key, opts)
    check_index(idx, 'count')
    local it
    if type(opts) == 'table' then it = iterator_code(opts.iterator) elseif opts ~= nil then it = iterator_code(opts) end
    return internal.count(idx.space_id, idx.id, it, key)
end

function index_mt.len(idx) check_index(idx, 'len') return internal.len(idx.space_id, idx.id) end
function index_mt.bsize(idx) check_index(idx, 'bsize') return internal.bsize(idx.space_id, idx.id) end
function index_mt.min(idx, key) check_index(idx, 'min') return internal.min(idx.space_id, idx.id, key) end
function index_mt.max(idx, key) check_index(idx, 'max') return internal.max(idx.space_id, idx.id, key) end
function index_mt.random(idx, rnd)
    check_index(idx, 'random')
    return internal.random(idx.space_id, idx.id, rnd or math.random(0, 2^31))
end

function index_mt.update(idx, key, ops)
    check_index(idx, 'update')
    local trig = space_triggers[idx.space_id]
    if trig then
        local plan = function()
            local old = index_mt.get(idx, key)
            if old == nil then return end
            return old, old:update(ops)
        end
        local r = write_with_triggers(trig, box.space[idx.space_id], 'UPDATE', plan, internal.update, idx.space_id,
            idx.id, key, ops)
        flush_logs()
        return r
    end
    local r = wait(internal.update(idx.space_id, idx.id, key, ops))
    flush_logs()
    if r == nil then return end
    return r
end

function index_mt.delete(idx, key)
    check_index(idx, 'delete')
    local trig = space_triggers[idx.space_id]
    if trig then
        local plan = function()
            local old = index_mt.get(idx, key)
            if old == nil then return end
            return old, nil
        end
        return write_with_triggers(trig, box.space[idx.space_id], 'DELETE', plan, internal.delete, idx.space_id,
            idx.id, key)
    end
    return wait(internal.delete(idx.space_id, idx.id, key))
end

function index_mt.drop(idx)
    check_index(idx, 'drop')
    box.schema.index.drop(idx.space_id, idx.id)
end

function index_mt.rename(idx, name)
    check_index(idx, 'rename')
    box.schema.index.rename(idx.space_id, idx.id, name)
end

function index_mt.alter(idx, opts)
    check_index(idx, 'alter')
    box.schema.index.alter(idx.space_id, idx.id, opts)
end

local space_mt = {}
space_mt.__index = space_mt

local function check_space(space, method)
    if type(space) ~= 'table' or space.id == nil then
        error(('Use space:%s(...) instead of space.%s(...)'):format(method, method), 3)
    end
end

local function pk(space)
    local idx = space.index[0]
    if idx == nil then raise(35, 0, space.name) end
    return idx
end

-- What an insert or replace of `tuple` would meet: the tuple with its primary key, if any.
plan_write = function(space, tuple)
    local new = box.tuple.new(tuple)
    local old = internal.get(space.id, 0, internal.primary_key(space.id, new))
    -- As in Tarantool, the new tuple a before_replace trigger sees has no field names.
    return old, new
end

function space_mt.insert(space, tuple)
    check_space(space, 'insert')
    local trig = space_triggers[space.id]
    if trig then
        return write_with_triggers(trig, space, 'INSERT', function() return plan_write(space, tuple) end,
            internal.insert, space.id, tuple)
    end
    return wait(internal.insert(space.id, tuple, true))
end

function space_mt.replace(space, tuple)
    check_space(space, 'replace')
    local trig = space_triggers[space.id]
    if trig then
        return write_with_triggers(trig, space, 'REPLACE', function() return plan_write(space, tuple) end,
            internal.replace, space.id, tuple)
    end
    return wait(internal.replace(space.id, tuple, true))
end
space_mt.put = space_mt.replace

function space_mt.update(space, key, ops)
    check_space(space, 'update')
    return index_mt.update(pk(space), key, ops)
end

function space_mt.upsert(space, tuple, ops)
    check_space(space, 'upsert')
    local trig = space_triggers[space.id]
    if trig then
        local plan = function()
            local old, new = plan_write(space, tuple)
            if old ~= nil then return old, old:upsert(ops) end
            return nil, new
        end
        write_with_triggers(trig, space, 'UPSERT', plan, internal.upsert, space.id, tuple, ops)
        flush_logs()
        return
    end
    wait(internal.upsert(space.id, tuple, ops))
    flush_logs()
end

-- The next primary key after the greatest one, as the tuple's first field.
function space_mt.auto_increment(space, tuple)
    check_space(space, 'auto_increment')
    local max_tuple = pk(space):max()
    local max = max_tuple ~= nil and max_tuple[1] or 0
    table.insert(tuple, 1, max + 1)
    return space:insert(tuple)
end

function space_mt.delete(space, key)
    check_space(space, 'delete')
    return index_mt.delete(pk(space), key)
end

function space_mt.get(space, key)
    check_space(space, 'get')
    return index_mt.get(pk(space), key)
end

function space_mt.select(space, key, opts)
    check_space(space, 'select')
    return index_mt.select(pk(space), key, opts)
end

function space_mt.pairs(space, key, opts)
    check_space(space, 'pairs')
    return index_mt.pairs(pk(space), key, opts)
end
space_mt.__pairs = space_mt.pairs

function space_mt.count(space, key, opts)
    check_space(space, 'count')
    return index_mt.count(pk(space), key, opts)
end

function space_mt.len(space)
    check_space(space, 'len')
    if space.index[0] == nil then return 0 end
    return internal.len(space.id, 0)
end

function space_mt.bsize(space)
    check_space(space, 'bsize')
    return internal.space_bsize(space.id)
end

function space_mt.truncate(space)
    check_space(space, 'truncate')
    wait(internal.truncate(space.id))
end

function space_mt.frommap(space, map, opts)
    check_space(space, 'frommap')
    local t = {}
    for i, f in ipairs(space_formats[space] or {}) do
        local v = map[f.name]
        if v == nil then v = box.NULL end
        t[i] = v
    end
    if opts ~= nil and opts.table then return t end
    return box.tuple.new(t)
end

function space_mt.format(space, format)
    check_space(space, 'format')
    if format == nil then
        return internal.space_format(space.id)
    end
    box.schema.space.format(space.id, format)
end

function space_mt.create_index(space, name, opts)
    check_space(space, 'create_index')
    return box.schema.index.create(space.id, name, opts)
end

function space_mt.drop(space)
    check_space(space, 'drop')
    box.schema.space.drop(space.id, space.name)
end

function space_mt.rename(space, name)
    check_space(space, 'rename')
    box.schema.space.rename(space.id, name)
end

function space_mt.alter(space, opts)
    check_space(space, 'alter')
    box.schema.space.alter(space.id, opts)
end

-- Tarantool's trigger-list API: f adds, (f, old) replaces old, (nil, old) deletes,
-- () lists.
local function trigger_api(list, new, old, name)
    if new ~= nil and type(new) ~= 'function' or old ~= nil and type(old) ~= 'function' then
        error(('trigger reset: incorrect arguments'), 3)
    end
    if new == nil and old == nil then
        local copy = {}
        for i, f in ipairs(list) do copy[i] = f end
        return copy
    end
    if old ~= nil then
        for i, f in ipairs(list) do
            if f == old then
                if new == nil then table.remove(list, i) else list[i] = new end
                return new
            end
        end
        error('trigger reset: Trigger is not found', 3)
    end
    table.insert(list, 1, new)
    local _ = name
    return new
end

local function space_trigger(space, kind, new, old)
    local trig = space_triggers[space.id] or {}
    local list = trig[kind] or {}
    local r = trigger_api(list, new, old, kind)
    trig[kind] = #list > 0 and list or nil
    space_triggers[space.id] = next(trig) ~= nil and trig or nil
    internal.set_space_triggers(space.id, space_triggers[space.id] ~= nil)
    return r
end

function space_mt.on_replace(space, new, old)
    check_space(space, 'on_replace')
    return space_trigger(space, 'on_replace', new, old)
end

function space_mt.before_replace(space, new, old)
    check_space(space, 'before_replace')
    return space_trigger(space, 'before_replace', new, old)
end

-- box.space: name -> space and id -> space, rebuilt in place when the schema changes, so
-- that a space object a script holds stays valid across alters.
local spaces_by_id = {}
box.space = {}

-- Called after every schema change (set in the box.cfg section: _cluster moves the quorums).
local after_schema_change

local function refresh_schema()
    local infos = internal.spaces()
    local alive = {}
    for _, info in ipairs(infos) do
        alive[info.id] = true
        local space = spaces_by_id[info.id]
        if space == nil then
            space = setmetatable({}, space_mt)
            spaces_by_id[info.id] = space
        end
        if space.name ~= nil and box.space[space.name] == space then
            box.space[space.name] = nil
        end
        -- Fields in the order Tarantool's lbox_fillspace sets them, so that a space
        -- prints as Tarantool's does.
        space.field_count = info.field_count
        space.id = info.id
        space.is_local = info.is_local
        space.temporary = info.temporary
        space.name = info.name
        space.engine = info.engine
        space.is_sync = info.is_sync
        space.enabled = info.enabled
        space_formats[space] = info.format
        local index = space.index or {}
        for k in pairs(index) do index[k] = nil end
        for _, ii in ipairs(info.indexes) do
            local idx = setmetatable({}, index_mt)
            idx.unique = ii.unique
            idx.type = ii.type
            idx.id = ii.id
            idx.space_id = info.id
            idx.name = ii.name
            idx.parts = ii.parts
            index[ii.id] = idx
            index[ii.name] = idx
        end
        space.index = index
        box.space[info.id] = space
        box.space[info.name] = space
    end
    for id, space in pairs(spaces_by_id) do
        if not alive[id] then
            spaces_by_id[id] = nil
            if box.space[id] == space then box.space[id] = nil end
            if box.space[space.name] == space then box.space[space.name] = nil end
            space.index = {}
            space.enabled = false
        end
    end
    if after_schema_change ~= nil then after_schema_change() end
end
internal.set_schema_hook(refresh_schema)

-- }}}

-- {{{ DDL

box.schema = {space = {}, index = {}, user = {}, role = {}, func = {}}
box.schema.SYSTEM_ID_MAX = 511
box.schema.SCHEMA_ID = 272
box.schema.SPACE_ID = 280
box.schema.VSPACE_ID = 281
box.schema.INDEX_ID = 288
box.schema.VINDEX_ID = 289
box.schema.FUNC_ID = 296
box.schema.USER_ID = 304
box.schema.PRIV_ID = 312
box.schema.CLUSTER_ID = 320
box.schema.GUEST_ID = 0
box.schema.ADMIN_ID = 1
box.schema.PUBLIC_ROLE_ID = 2
box.schema.SUPER_ROLE_ID = 31

local function sys(name) return box.space[name] end

local function check_opts(opts, allowed)
    if opts == nil then return {} end
    if type(opts) ~= 'table' then raise(1, 'options should be a table') end
    for k, v in pairs(opts) do
        local want = allowed[k]
        if want == nil then raise(1, ("unexpected option '%s'"):format(k)) end
        if want ~= 'any' and type(v) ~= want and not (type(v) == 'cdata' and want == 'number') then
            raise(1, ("options parameter '%s' should be of type %s"):format(k, want))
        end
    end
    return opts
end

local function normalize_format(format)
    if format == nil then return {} end
    if type(format) ~= 'table' then raise(1, 'format should be a table') end
    local result = {}
    for i, f in ipairs(format) do
        if type(f) ~= 'table' then raise(141, i, 'expected a table') end
        local r = {}
        if f.name ~= nil then
            r.name = f.name
            r.type = f.type or 'any'
        else
            r.name = f[1]
            r.type = f[2] or f.type or 'any'
        end
        if type(r.name) ~= 'string' then raise(141, i, 'field name is missing') end
        if f.is_nullable then r.is_nullable = true end
        result[i] = r
    end
    return setmetatable(result, {__serialize = 'seq'})
end

local function next_space_id()
    local max = sys('_schema'):get{'max_id'}
    local id = (max and max[2] or 511) + 1
    while box.space[id] ~= nil do id = id + 1 end
    return id
end

local function resolve_uid(user)
    if user == nil then return box.session.euid() end
    local u = sys('_user').index.name:get{user}
    if u == nil then raise(45, user) end
    return u[1]
end

function box.schema.space.create(name, opts)
    if type(name) ~= 'string' then
        error('Illegal parameters, name should be a string', 2)
    end
    opts = check_opts(opts, {engine = 'string', format = 'table', is_sync = 'boolean', if_not_exists = 'boolean',
        id = 'number', field_count = 'number', temporary = 'boolean', is_local = 'boolean', user = 'string'})
    if box.space[name] ~= nil then
        if opts.if_not_exists then return box.space[name], 'not created' end
        raise(10, name)
    end
    local engine = opts.engine or 'memtx'
    if engine ~= 'memtx' and engine ~= 'vinyl' then raise(57, engine) end
    local id = opts.id
    if id == nil then
        id = next_space_id()
    elseif box.space[id] ~= nil then
        raise(10, box.space[id].name)
    end
    local flags = setmetatable({}, {__serialize = 'map'})
    if opts.temporary then flags.temporary = true end
    if opts.is_sync then flags.is_sync = true end
    if opts.is_local then flags.group_id = 1 end
    local format = normalize_format(opts.format)
    local uid = resolve_uid(opts.user)
    local function ddl()
        if opts.id == nil then
            sys('_schema'):replace{'max_id', id}
        end
        sys('_space'):insert{id, uid, name, 'memtx', opts.field_count or 0, flags, format}
    end
    if box.is_in_txn() then ddl() else box.atomic(ddl) end
    return box.space[id], 'created'
end
box.schema.create_space = box.schema.space.create

function box.schema.space.drop(space_id, space_name, opts)
    local space = box.space[space_id]
    if space == nil then
        if opts and opts.if_exists then return end
        raise(36, space_name or tostring(space_id))
    end
    local function ddl()
        local indexes = {}
        for _, t in sys('_index'):pairs{space_id} do table.insert(indexes, t[2]) end
        for i = #indexes, 1, -1 do
            sys('_index'):delete{space_id, indexes[i]}
        end
        for _, t in sys('_priv').index.object:pairs{'space', space_id} do
            sys('_priv'):delete{t[2], t[3], t[4]}
        end
        sys('_space'):delete{space_id}
    end
    if box.is_in_txn() then ddl() else box.atomic(ddl) end
end

function box.schema.space.rename(space_id, name)
    if type(name) ~= 'string' then raise(1, 'name should be a string') end
    local t = sys('_space'):get{space_id}
    if t == nil then raise(36, tostring(space_id)) end
    sys('_space'):update({space_id}, {{'=', 3, name}})
end

function box.schema.space.format(space_id, format)
    local t = sys('_space'):get{space_id}
    if t == nil then raise(36, tostring(space_id)) end
    sys('_space'):update({space_id}, {{'=', 7, normalize_format(format)}})
end

function box.schema.space.alter(space_id, opts)
    opts = check_opts(opts, {format = 'table', is_sync = 'boolean', name = 'string', field_count = 'number',
        temporary = 'boolean', user = 'string'})
    local t = sys('_space'):get{space_id}
    if t == nil then raise(36, tostring(space_id)) end
    local flags = t[6]
    local f = {}
    for k, v in pairs(flags) do f[k] = v end
    if opts.is_sync ~= nil then f.is_sync = opts.is_sync or nil end
    if opts.temporary ~= nil then f.temporary = opts.temporary or nil end
    setmetatable(f, {__serialize = 'map'})
    sys('_space'):replace{space_id, t[2], opts.name or t[3], t[4], opts.field_count or t[5], f,
        opts.format and normalize_format(opts.format) or t[7]}
end

-- Index parts in all three of Tarantool's forms: {1, 'unsigned', 2, 'string'},
-- {{1, 'unsigned'}, {field = 2, type = 'string', is_nullable = true}}, {'name'}.
local function normalize_parts(space, parts)
    if parts == nil then return {{0, 'unsigned'}} end
    if type(parts) ~= 'table' then raise(1, "options parameter 'parts' should be of type table") end
    local format = space_formats[space] or {}
    local function resolve_field(f)
        if type(f) == 'number' then
            if f < 1 then raise(107, 'invalid field number') end
            return f - 1, format[f] and format[f].type
        end
        if type(f) == 'string' then
            for i, ff in ipairs(format) do
                if ff.name == f then return i - 1, ff.type end
            end
            raise(107, 'field was not found by name \'' .. f .. '\'')
        end
        raise(107, 'field id (number) or name (string) is expected')
    end
    local result = {}
    if type(parts[1]) ~= 'table' then
        local i = 1
        while parts[i] ~= nil do
            local fieldno, ftype = resolve_field(parts[i])
            local t = parts[i + 1]
            if type(t) ~= 'string' or not internal.field_type_ok(t) then
                t = ftype or 'unsigned'
                i = i + 1
            else
                i = i + 2
            end
            table.insert(result, {fieldno, t})
        end
    else
        for _, p in ipairs(parts) do
            local f = p.field or p[1]
            local fieldno, ftype = resolve_field(f)
            local t = p.type or p[2] or ftype
            if t == nil then raise(107, 'field type is missing') end
            local part = {fieldno, t}
            local nullable = p.is_nullable
            if nullable == nil and type(f) == 'string' then
                nullable = format[fieldno + 1] and format[fieldno + 1].is_nullable
            end
            if nullable then
                part = {field = fieldno, type = t, is_nullable = true}
            end
            table.insert(result, part)
        end
    end
    for _, p in ipairs(result) do
        local t = p[2] or p.type
        if internal.field_type_ok(t) == false then raise(107, 'unknown field type') end
        if p[2] then p[2] = t:lower() end
    end
    return result
end

function box.schema.index.create(space_id, name, opts)
    local space = box.space[space_id]
    if space == nil then raise(36, tostring(space_id)) end
    if type(name) ~= 'string' then raise(1, 'name should be a string') end
    opts = check_opts(opts, {type = 'string', parts = 'table', unique = 'boolean', if_not_exists = 'boolean',
        id = 'number', sequence = 'any', hint = 'boolean', func = 'any', distance = 'string', dimension = 'number'})
    if space.index[name] ~= nil then
        if opts.if_not_exists then return space.index[name], 'not created' end
        raise(85, name)
    end
    -- Said plainly rather than ignored: a script relying on them would fail later.
    if opts.sequence ~= nil and opts.sequence ~= false then raise(5, 'node', 'sequences') end
    if opts.func ~= nil then raise(5, 'node', 'functional indexes') end
    local itype = (opts.type or 'tree'):lower()
    if itype ~= 'tree' and itype ~= 'hash' then raise(13, name, space.name) end
    local id = opts.id
    if id == nil then
        id = 0
        while space.index[id] ~= nil do id = id + 1 end
    end
    local unique = opts.unique
    if unique == nil then unique = true end
    local parts = normalize_parts(space, opts.parts)
    sys('_index'):insert{space_id, id, name, itype, setmetatable({unique = unique}, {__serialize = 'map'}), parts}
    return box.space[space_id].index[id]
end

function box.schema.index.drop(space_id, index_id)
    local t = sys('_index'):get{space_id, index_id}
    if t == nil then raise(35, index_id, box.space[space_id] and box.space[space_id].name or '') end
    sys('_index'):delete{space_id, index_id}
end

function box.schema.index.rename(space_id, index_id, name)
    sys('_index'):update({space_id, index_id}, {{'=', 3, name}})
end

function box.schema.index.alter(space_id, index_id, opts)
    local space = box.space[space_id]
    local t = sys('_index'):get{space_id, index_id}
    if t == nil or space == nil then raise(35, index_id, space and space.name or '') end
    opts = check_opts(opts, {type = 'string', parts = 'table', unique = 'boolean', name = 'string', id = 'number',
        hint = 'boolean'})
    local o = {}
    for k, v in pairs(t[5]) do o[k] = v end
    if opts.unique ~= nil then o.unique = opts.unique end
    setmetatable(o, {__serialize = 'map'})
    local parts = opts.parts and normalize_parts(space, opts.parts) or t[6]
    sys('_index'):replace{space_id, index_id, opts.name or t[3], opts.type and opts.type:lower() or t[4], o, parts}
end

-- }}}

-- {{{ transactions

local txn_triggers = {} -- txn id -> {on_commit = {...}, on_rollback = {...}}

local function run_triggers(list, iterator)
    if list == nil then return end
    for _, f in ipairs(list) do
        local ok, err = pcall(f, iterator)
        if not ok then log.error(err) end
    end
end

local function empty_iterator() return function() return nil end end

function box.begin()
    internal.begin()
end

function box.is_in_txn()
    return internal.txn_id() ~= nil
end

function box.commit()
    local id = internal.txn_id()
    local triggers = id and txn_triggers[id]
    if id then txn_triggers[id] = nil end
    local ok, err = pcall(function() return wait(nil, internal.commit()) end)
    if not ok then
        if triggers then run_triggers(triggers.on_rollback, empty_iterator) end
        error(err, 2)
    end
    if triggers then run_triggers(triggers.on_commit, empty_iterator) end
end

function box.rollback()
    local id = internal.txn_id()
    internal.rollback()
    if id and txn_triggers[id] then
        local triggers = txn_triggers[id]
        txn_triggers[id] = nil
        run_triggers(triggers.on_rollback, empty_iterator)
    end
end

local function txn_trigger(kind, new, old)
    local id = internal.txn_id()
    if id == nil then
        error(('Usage inside a transaction: box.%s([function | nil, [function | nil]])'):format(kind), 0)
    end
    local t = txn_triggers[id]
    if t == nil then
        t = {on_commit = {}, on_rollback = {}}
        txn_triggers[id] = t
    end
    local list = t[kind]
    if old ~= nil then
        for i, f in ipairs(list) do
            if f == old then
                if new == nil then table.remove(list, i) else list[i] = new end
                return new
            end
        end
        error('trigger is not found', 2)
    end
    if new ~= nil then table.insert(list, new) end
    return new
end

function box.on_commit(new, old) return txn_trigger('on_commit', new, old) end
function box.on_rollback(new, old) return txn_trigger('on_rollback', new, old) end

function box.savepoint()
    local txn_id, pos = internal.savepoint()
    return {txn_id = txn_id, csavepoint = pos}
end

function box.rollback_to_savepoint(sp)
    if type(sp) ~= 'table' or sp.csavepoint == nil then
        error('Usage: box.rollback_to_savepoint(savepoint)', 0)
    end
    internal.rollback_to(sp.txn_id, sp.csavepoint)
end

local function atomic_tail(ok, ...)
    if not ok then
        box.rollback()
        error((...), 0)
    end
    box.commit()
    return ...
end

function box.atomic(fn, ...)
    box.begin()
    return atomic_tail(pcall(fn, ...))
end

-- }}}

-- {{{ users, roles, functions

local priv = internal.priv

local function object_id(object_type, name)
    if object_type == 'universe' then return 0 end
    if name == nil or name == '' then return '' end
    if object_type == 'space' then
        local s = box.space[name]
        if s == nil then raise(36, tostring(name)) end
        return s.id
    elseif object_type == 'function' then
        local f = type(name) == 'number' and sys('_func'):get{name} or sys('_func').index.name:get{name}
        if f == nil then raise(51, tostring(name)) end
        return f[1]
    elseif object_type == 'role' or object_type == 'user' then
        local u = type(name) == 'number' and sys('_user'):get{name} or sys('_user').index.name:get{name}
        if u == nil then
            if object_type == 'role' then raise(82, tostring(name)) end
            raise(45, tostring(name))
        end
        return u[1]
    end
    raise(49, object_type)
end

local function find_user(name, kind)
    local u = sys('_user').index.name:get{name}
    if u == nil or (kind ~= nil and u[4] ~= kind) then
        return nil
    end
    return u
end

local function new_user_id()
    local max = 31
    for _, t in sys('_user'):pairs() do
        if t[1] > max then max = t[1] end
    end
    return max + 1
end

local function create_principal(kind, name, opts)
    if type(name) ~= 'string' then raise(1, 'name should be a string') end
    opts = check_opts(opts, {password = 'string', if_not_exists = 'boolean'})
    if sys('_user').index.name:get{name} ~= nil then
        if opts.if_not_exists then return end
        if kind == 'role' then raise(83, name) end
        raise(46, name)
    end
    local auth = setmetatable({}, {__serialize = 'map'})
    if kind == 'user' and opts.password ~= nil then
        auth['chap-sha1'] = internal.password_hash(opts.password)
    end
    local uid = new_user_id()
    box.atomic(function()
        sys('_user'):insert{uid, box.session.euid(), name, kind, auth}
        if kind == 'user' then
            -- New users may connect and use what is granted: session and usage on universe.
            sys('_priv'):replace{box.session.euid(), uid, 'universe', 0, priv.SESSION + priv.USAGE}
            sys('_priv'):replace{box.session.euid(), uid, 'role', 2, priv.EXECUTE}
        end
    end)
end

function box.schema.user.create(name, opts) create_principal('user', name, opts) end
function box.schema.role.create(name, opts) create_principal('role', name, opts) end

function box.schema.user.exists(name) return find_user(name, 'user') ~= nil end
function box.schema.role.exists(name) return find_user(name, 'role') ~= nil end

local function drop_principal(kind, name, opts)
    opts = check_opts(opts, {if_exists = 'boolean'})
    local u = find_user(name, kind)
    if u == nil then
        if opts.if_exists then return end
        if kind == 'role' then raise(82, name) end
        raise(45, name)
    end
    local uid = u[1]
    if uid <= 3 or uid == 31 then raise(1, ("Can't drop %s '%s'"):format(kind, name)) end
    box.atomic(function()
        for _, t in sys('_priv'):pairs{uid} do sys('_priv'):delete{t[2], t[3], t[4]} end
        for _, t in sys('_priv').index.object:pairs{'role', uid} do sys('_priv'):delete{t[2], t[3], t[4]} end
        sys('_user'):delete{uid}
    end)
end

function box.schema.user.drop(name, opts) drop_principal('user', name, opts) end
function box.schema.role.drop(name, opts) drop_principal('role', name, opts) end

function box.schema.user.passwd(name, password)
    if password == nil then
        password = name
        name = box.session.user()
    end
    local u = find_user(name, 'user')
    if u == nil then raise(45, name) end
    sys('_user'):update({u[1]}, {{'=', 5, setmetatable({['chap-sha1'] = internal.password_hash(password)},
        {__serialize = 'map'})}})
end

function box.schema.user.password(password)
    return internal.password_hash(password)
end

-- What grant and revoke share: the grantee, the 2-argument role form, and the row of
-- `_priv` (its key, the privilege bits asked for, and the row itself if any).
local function priv_target(kind, name, privileges, object_type, object_name)
    local u = find_user(name, kind == 'role' and 'role' or nil)
    if u == nil then
        if kind == 'role' then raise(82, name) end
        raise(45, name)
    end
    if object_type == nil then
        -- grant(user, role): the "privilege" is a role name.
        object_type = 'role'
        object_name = privileges
        privileges = 'execute'
    end
    local bits = internal.privilege_bits(privileges, object_type)
    local key = {u[1], object_type, object_id(object_type, object_name)}
    return key, bits, sys('_priv'):get(key), object_type, object_name
end

local function grant(kind, name, privileges, object_type, object_name, opts)
    if type(object_name) == 'table' and opts == nil and object_type == 'universe' then
        opts = object_name
        object_name = nil
    end
    local key, bits, existing
    key, bits, existing, object_type, object_name = priv_target(kind, name, privileges, object_type, object_name)
    opts = check_opts(opts, {if_not_exists = 'boolean', grantor = 'string'})
    local old = existing and existing[5] or 0
    if bit.band(old, bits) == bits then
        if opts.if_not_exists then return end
        if object_type == 'role' then raise(90, name, object_name) end
        local where = ''
        if object_type ~= 'universe' then where = (" '%s'"):format(tostring(object_name or '')) end
        raise(89, name, internal.privilege_names(bits), object_type, where)
    end
    sys('_priv'):replace{box.session.euid(), key[1], key[2], key[3], bit.bor(old, bits)}
end

function box.schema.user.grant(...) return grant('user', ...) end
function box.schema.role.grant(...) return grant('role', ...) end

local function revoke(kind, name, privileges, object_type, object_name, opts)
    local key, bits, existing
    key, bits, existing, object_type, object_name = priv_target(kind, name, privileges, object_type, object_name)
    opts = check_opts(opts, {if_exists = 'boolean'})
    if existing == nil or bit.band(existing[5], bits) == 0 then
        if opts.if_exists then return end
        if object_type == 'role' then raise(92, name, object_name) end
        raise(91, name, internal.privilege_names(bits), object_type, tostring(object_name or ''))
    end
    local left = bit.band(existing[5], bit.bnot(bits))
    if left == 0 then
        sys('_priv'):delete(key)
    else
        sys('_priv'):update(key, {{'=', 5, left}})
    end
end

function box.schema.user.revoke(...) return revoke('user', ...) end
function box.schema.role.revoke(...) return revoke('role', ...) end

function box.schema.user.info(name)
    local uid = name == nil and box.session.euid() or (find_user(name) or {})[1]
    if uid == nil then raise(45, name) end
    return internal.user_info(uid)
end
box.schema.role.info = box.schema.user.info

function box.schema.func.create(name, opts)
    if type(name) ~= 'string' then raise(1, 'name should be a string') end
    opts = check_opts(opts, {if_not_exists = 'boolean', setuid = 'boolean', language = 'string', body = 'string',
        is_deterministic = 'boolean', is_sandboxed = 'boolean', returns = 'string', param_list = 'table',
        exports = 'table', comment = 'string', is_multikey = 'boolean', takes_raw_args = 'boolean'})
    if sys('_func').index.name:get{name} ~= nil then
        if opts.if_not_exists then return end
        raise(52, name)
    end
    local id = 1
    for _, t in sys('_func'):pairs() do if t[1] >= id then id = t[1] + 1 end end
    local now = os.date('%Y-%m-%d %H:%M:%S')
    sys('_func'):insert{id, box.session.euid(), name, opts.setuid and 1 or 0, (opts.language or 'LUA'):upper(),
        opts.body or '', 'function', setmetatable({}, {__serialize = 'seq'}), opts.returns or 'any', 'none', 'none',
        opts.is_deterministic or false, opts.is_sandboxed or false, true, {'LUA'},
        setmetatable({}, {__serialize = 'map'}), opts.comment or '', now, now}
end

function box.schema.func.drop(name, opts)
    opts = check_opts(opts, {if_exists = 'boolean'})
    local f = type(name) == 'number' and sys('_func'):get{name} or sys('_func').index.name:get{name}
    if f == nil then
        if opts.if_exists then return end
        raise(51, tostring(name))
    end
    box.atomic(function()
        for _, t in sys('_priv').index.object:pairs{'function', f[1]} do sys('_priv'):delete{t[2], t[3], t[4]} end
        sys('_func'):delete{f[1]}
    end)
end

function box.schema.func.exists(name)
    return (type(name) == 'number' and sys('_func'):get{name} or sys('_func').index.name:get{name}) ~= nil
end

box.func = setmetatable({}, {__index = function(_, name)
    local f = sys('_func') and sys('_func').index.name:get{name}
    if f == nil then return nil end
    return {id = f[1], name = f[3], setuid = f[4] ~= 0, language = f[5],
        call = function(self, args) local fn = loadstring('return ' .. self.name)() return fn(unpack(args or {})) end}
end})

-- }}}

-- {{{ sessions

box.session = {}
function box.session.uid() return internal.session_uid() end
function box.session.euid() return internal.session_euid() end
function box.session.id() return internal.session_id() end
function box.session.user() return internal.user_name(internal.session_uid()) end
function box.session.effective_user() return internal.user_name(internal.session_euid()) end
function box.session.type() return internal.session_type() end
-- Tarantool reads the id with luaL_checkint64 semantics: numbers and numeric strings.
local function session_id_arg(id)
    local n = tonumber(id)
    if n == nil then error('expected int64_t as -1 argument', 0) end
    return n
end
function box.session.exists(id)
    if id == nil then return true end
    return internal.session_exists(session_id_arg(id))
end
function box.session.peer(id)
    if id == nil then
        local _, peer = internal.session_peer()
        return peer
    end
    local found, peer = internal.session_peer(session_id_arg(id))
    if not found then error('session.peer(): session does not exist', 0) end
    return peer
end
function box.session.sync() return internal.session_sync() end
function box.session.push(data, sync) return internal.session_push(data, sync) end
-- Session triggers: lists the IPROTO server runs (lua/box/iproto.lua); Rust is told
-- whether a list is empty, so connections without triggers cost no fiber.
local session_triggers = {on_connect = {}, on_disconnect = {}, on_auth = {}}
box.session.internal_triggers = session_triggers
for kind, list in pairs(session_triggers) do
    box.session[kind] = function(new, old)
        local r = trigger_api(list, new, old, kind)
        internal.set_session_triggers(kind, #list > 0)
        return r
    end
end
-- Each session its own storage table, dropped with the session (the local one is 1).
local session_storage = {}
box.session.internal_storage = session_storage
setmetatable(box.session, {__index = function(_, k)
    if k == 'storage' then
        local id = internal.session_id()
        local t = session_storage[id]
        if t == nil then
            t = {}
            session_storage[id] = t
            internal.session_storage_used()
        end
        return t
    end
end})

local function su_tail(prev, ok, ...)
    internal.set_euid(prev)
    if not ok then error((...), 0) end
    return ...
end

function box.session.su(user, fn, ...)
    local uid = type(user) == 'number' and user or internal.user_id(user)
    if uid == nil or internal.user_name(uid) == nil then raise(45, tostring(user)) end
    if fn == nil then
        internal.set_uid(uid)
        return
    end
    local prev = internal.session_euid()
    internal.set_euid(uid)
    return su_tail(prev, pcall(fn, ...))
end

-- }}}

-- {{{ box.once, box.snapshot, box.info, box.stat, box.slab, box.ctl

function box.once(key, fn, ...)
    if type(key) ~= 'string' or type(fn) ~= 'function' then
        error('Usage: box.once(key, func, ...)', 2)
    end
    local k = 'once' .. key
    if sys('_schema'):get{k} ~= nil then return end
    sys('_schema'):put{k}
    return fn(...)
end

function box.snapshot()
    return internal.snapshot()
end

box.info = setmetatable({}, {
    __call = function() return internal.info() end,
    __index = function(_, k) return internal.info()[k] end,
    __serialize = function() return internal.info() end,
})

box.stat = setmetatable({}, {
    __call = function() return internal.stat() end,
    __index = function(_, k)
        if k == 'net' then return internal.net_stat end
        if k == 'reset' then return function() internal.stat_reset() end end
        return internal.stat()[k]
    end,
})

box.slab = {
    info = function() return internal.slab_info() end,
    stats = function() return {} end,
}

local started = false
local function not_configured() error('Please call box.cfg{} first', 3) end

-- Waits until the instance is read-only (or writable), as box.ctl.wait_ro/wait_rw.
local function wait_mode(ro, timeout)
    if not started then not_configured() end
    if timeout ~= nil and type(timeout) ~= 'number' then
        error(('Usage: box.ctl.wait_%s([timeout])'):format(ro and 'ro' or 'rw'), 3)
    end
    local deadline = timeout and fiber.clock() + timeout
    while internal.info().ro ~= ro do
        if deadline and fiber.clock() >= deadline then box.error(box.error.TIMEOUT) end
        fiber.sleep(0.01)
    end
end

box.ctl = {
    wait_ro = function(timeout) return wait_mode(true, timeout) end,
    wait_rw = function(timeout) return wait_mode(false, timeout) end,
    promote = function() return internal.promote() end,
    demote = function() return internal.demote() end,
}
-- 2.6.1/2.6.2's name for taking the synchronous queue over.
box.ctl.clear_synchro_queue = box.ctl.promote

-- }}}

-- {{{ box.cfg


local function apply_dynamic(values)
    for k, v in pairs(values) do
        internal.cfg_set(k, v)
    end
end

local function apply_log(values)
    local l = {}
    if values.log ~= nil then l.log = values.log end
    if values.log_level ~= nil then l.level = cfg_check.log_level_number(values.log_level) end
    if values.log_format ~= nil then l.format = values.log_format end
    if next(l) ~= nil then log.cfg(l) end
end

-- cfg_check.check returns the new effective table and the changed keys, or nil and a
-- description of the error to raise.
local function checked(opts, current)
    -- Re-setting the instance's own uuids is allowed, as in Tarantool.
    local ctx = {}
    if current ~= nil then
        local info = internal.info()
        ctx = {instance_uuid = info.uuid, replicaset_uuid = info.cluster.uuid}
    end
    local new, changed, warnings = cfg_check.check(opts, current, ctx)
    if new == nil then
        local e = changed
        if e.fatal then
            -- What Tarantool finds only while starting: it logs and exits.
            log.error("can't initialize storage: %s", e.message)
            os.exit(1)
        end
        if e.code == nil then error(e.message, 0) end
        if e.reason == nil then box.error(e.code, e.option) end
        box.error(e.code, e.option, e.reason)
    end
    for _, w in ipairs(warnings or {}) do log.warn(w) end
    return new, changed or {}
end

-- Options the election and synchronous-queue drivers read.
local election_options = {
    election_mode = true, election_timeout = true, replication_timeout = true,
    replication_synchro_quorum = true, replication_synchro_timeout = true,
    election_fencing_mode = true, election_pre_vote = true, election_fast_failover = true,
}

local registered_replicas = 0

-- Hands the election options to the drivers; the quorums follow the number of
-- registered replicas (spec §2.3).
local function apply_election(cfg)
    local n = 0
    for _ in box.space._cluster:pairs() do n = n + 1 end
    local q = cfg.replication_synchro_quorum or 1
    local synchro = cfg_check.quorum_for(q, n) or 1
    if n ~= registered_replicas and registered_replicas ~= 0 and type(q) == 'string' then
        log.info('update replication_synchro_quorum = %d', synchro)
    end
    registered_replicas = n
    internal.election_cfg({
        mode = cfg.election_mode,
        election_timeout = cfg.election_timeout,
        replication_timeout = cfg.replication_timeout,
        election_quorum = cfg_check.election_quorum(q, n) or 1,
        synchro_quorum = synchro,
        synchro_timeout = cfg.replication_synchro_timeout,
        pre_vote = cfg.election_pre_vote == true,
        fencing = cfg.election_fencing_mode == 'soft' or cfg.election_fencing_mode == 'strict',
        fast_failover = cfg.election_fast_failover ~= false,
    })
end

after_schema_change = function()
    if type(box.cfg) ~= 'table' then return end
    local n = 0
    for _ in box.space._cluster:pairs() do n = n + 1 end
    if n ~= registered_replicas then apply_election(box.cfg) end
end

local function reconfigure(cfg, opts)
    local new, changed = checked(opts, cfg)
    local values = {}
    for _, k in ipairs(changed) do values[k] = new[k] end
    internal.iproto_cfg(new.net_msg_max, new.readahead)
    -- A failed bind raises before anything changes; the old port keeps serving.
    for _, k in ipairs(changed) do
        if k == 'listen' then internal.listen(new.listen) end
    end
    apply_log(values)
    apply_dynamic(values)
    for _, k in ipairs(changed) do
        if election_options[k] then apply_election(new) break end
    end
    for k in pairs(cfg) do rawset(cfg, k, nil) end
    for k, v in pairs(new) do rawset(cfg, k, v) end
    -- Last, with every replication_* option in place: it waits for the new upstreams.
    for _, k in ipairs(changed) do
        if k == 'replication' then internal.replication_set(new.replication) end
    end
end

-- Tarantool's checkpoint daemon: a snapshot every checkpoint_interval seconds. It wakes at
-- least once a second, so that a new interval (box.cfg{checkpoint_interval = ...}) takes
-- effect without waiting out the old one.
local function start_checkpoint_daemon()
    fiber.create(function()
        fiber.self():name('checkpoint_daemon')
        local last = fiber.clock()
        while true do
            local interval = box.cfg.checkpoint_interval
            local enabled = type(interval) == 'number' and interval > 0
            local now = fiber.clock()
            if enabled and now - last >= interval then
                last = now
                local ok, e = pcall(box.snapshot)
                if not ok then log.error('checkpoint failed: %s', tostring(e)) end
            else
                fiber.sleep(enabled and math.min(1, last + interval - now) or 1)
            end
        end
    end)
end

-- The first box.cfg yields (recovery, bootstrap, joining peers): a box.cfg called meanwhile
-- (say over IPROTO, once the instance answers) waits for it and then reconfigures, as
-- Tarantool's locked box.cfg does. Otherwise the first call would undo the second's changes.
local configuring = false

local function configure(opts)
    if opts == nil then opts = {} end
    if type(opts) ~= 'table' then error("Usage: box.cfg{key = value, ...}", 2) end
    if configuring then
        while type(box.cfg) == 'function' and configuring do fiber.sleep(0.01) end
        return box.cfg(opts)
    end
    configuring = true
    local ok, err = pcall(function()
        local effective = checked(opts, nil)
        if effective.work_dir ~= nil then
            -- Relative paths (log, pid_file, dirs) are inside work_dir: change to it first.
            internal.chdir(effective.work_dir)
        end
        apply_log(effective)
        -- Listening comes first, as in Tarantool: peers read this instance's ballot while it
        -- bootstraps (every other request is answered "loading" until box runs).
        internal.iproto_cfg(effective.net_msg_max, effective.readahead)
        if effective.listen ~= nil then
            local ok, e = pcall(internal.listen, effective.listen)
            if not ok then
                log.error("can't initialize storage: %s", tostring(e))
                os.exit(1)
            end
        end
        internal.start(effective)
        started = true
        refresh_schema()
        apply_election(effective)
        local cfg_table = {}
        for k, v in pairs(effective) do cfg_table[k] = v end
        box.cfg = setmetatable(cfg_table, {
            __call = function(self, o)
                if o == nil then return end
                if type(o) ~= 'table' then error("Usage: box.cfg{key = value, ...}", 2) end
                reconfigure(self, o)
            end,
        })
        start_checkpoint_daemon()
    end)
    configuring = false
    if not ok then error(err, 0) end
end

box.cfg = configure

-- {{{ replicated transactions on spaces with triggers

-- The applier hands over a transaction that reaches a space with triggers (src/box/apply.rs):
-- its rows run through the spaces' methods, so before_replace and on_replace triggers see
-- them as in Tarantool. Nothing here yields (the transaction stays open until the commit,
-- which only queues the write). Returns the WAL ticket, or the failing row, code, message.
local function rebase_ops(ops, index_base)
    -- Rows number fields from index_base (0 unless the request said otherwise).
    if type(ops) ~= 'table' or index_base == 1 then return ops end
    for _, op in ipairs(ops) do
        if type(op) == 'table' and type(op[2]) == 'number' and op[2] >= 0 then
            op[2] = op[2] + 1 - index_base
        end
    end
    return ops
end

local function apply_replicated_row(i)
    local kind, space_id, index_id, key, tuple, ops, index_base = internal.replicated_row(i)
    if kind == 'NOP' then return end
    local space = box.space[space_id]
    if space == nil then box.error(box.error.NO_SUCH_SPACE, tostring(space_id)) end
    if kind == 'INSERT' then return space:insert(tuple) end
    if kind == 'REPLACE' then return space:replace(tuple) end
    if kind == 'UPSERT' then return space:upsert(tuple, rebase_ops(ops, index_base)) end
    local index = space.index[index_id]
    if index == nil then box.error(box.error.NO_SUCH_INDEX_ID, index_id, space.name) end
    if kind == 'UPDATE' then return index:update(key, rebase_ops(tuple, index_base)) end
    return index:delete(key)
end

internal.set_replicated_applier(function(n, skip_conflict)
    internal.replicated_begin()
    for i = 1, n do
        local sp = box.savepoint()
        local ok, e = pcall(apply_replicated_row, i)
        if not ok then
            local code = type(e) ~= 'string' and e.code or box.error.PROC_LUA
            if skip_conflict and code == box.error.TUPLE_FOUND then
                -- replication_skip_conflict: the row is logged as a NOP.
                box.rollback_to_savepoint(sp)
            else
                internal.replicated_abort()
                return nil, i, code, tostring(e)
            end
        end
    end
    return internal.replicated_commit()
end)

-- }}}

-- Before box.cfg{} the database is not there: Tarantool's message for anything that needs it.
for _, name in ipairs({'begin', 'commit', 'rollback', 'snapshot', 'once', 'savepoint', 'atomic'}) do
    local real = box[name]
    box[name] = function(...)
        if not started then not_configured() end
        return real(...)
    end
end

return {refresh_schema = refresh_schema}
