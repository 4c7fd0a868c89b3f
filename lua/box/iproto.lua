-- What the IPROTO server (src/iproto/server.rs) runs in a fiber: CALL, EVAL, and writes to
-- spaces with Lua triggers. Each handler ends by replying, with its results or its error.
local internal = ...

local reply, reply_error = internal.iproto_reply, internal.iproto_reply_error
local type, pcall, loadstring, rawget = type, pcall, loadstring, rawget
local find, sub = string.find, string.sub

local function finish(token, ok, ...)
    if ok then return reply(token, ...) end
    return reply_error(token, (...))
end

local function callable(v)
    if type(v) == 'function' then return true end
    local mt = getmetatable(v)
    return type(v) == 'table' or (mt ~= nil and type(mt) == 'table' and mt.__call ~= nil)
end

local function indexable(v)
    local t = type(v)
    return t == 'table' or t == 'userdata' or t == 'cdata'
end

-- Tarantool's lookup of a CALL name: `a.b.c` walks tables from the globals, `a.b:c` calls
-- method c of a.b with a.b as its first argument. Returns the function and the object.
local function resolve(name)
    -- Plain searches: a pattern match per CALL showed up in profiles.
    if not find(name, '.', 1, true) and not find(name, ':', 1, true) then
        local fn = rawget(_G, name)
        if fn == nil then fn = _G[name] end
        if fn ~= nil and callable(fn) then return fn end
        return nil
    end
    local scope, start = _G, 1
    while true do
        local dot = find(name, '.', start, true)
        if dot == nil then break end
        local v = scope[sub(name, start, dot - 1)]
        if type(v) ~= 'table' then return nil end
        scope, start = v, dot + 1
    end
    local object
    local colon = find(name, ':', start, true)
    if colon ~= nil then
        object = scope[sub(name, start, colon - 1)]
        if not indexable(object) then return nil end
        scope, start = object, colon + 1
    end
    local fn = scope[sub(name, start)]
    if fn == nil or not callable(fn) then return nil end
    return fn, object
end

-- net.box.self calls through the same lookup.
internal.call_resolve = resolve

local function call(token, name, setuid, ...)
    local fn, object = resolve(name)
    if fn == nil then
        return reply_error(token, box.error.new(box.error.NO_SUCH_PROC, #name, name))
    end
    if setuid >= 0 then
        if object ~= nil then
            return finish(token, pcall(box.session.su, setuid, fn, object, ...))
        end
        return finish(token, pcall(box.session.su, setuid, fn, ...))
    end
    if object ~= nil then return finish(token, pcall(fn, object, ...)) end
    return finish(token, pcall(fn, ...))
end

local function eval(token, expr, ...)
    local fn, err = loadstring(expr, '=eval')
    if fn == nil then return reply_error(token, err) end
    return finish(token, pcall(fn, ...))
end

-- IPROTO numbers update fields from index_base (0 by default); box's Lua API from 1.
local function rebase(ops, index_base)
    if type(ops) ~= 'table' or index_base == 1 then return ops end
    for _, op in ipairs(ops) do
        if type(op) == 'table' and type(op[2]) == 'number' and op[2] >= 0 then
            op[2] = op[2] + 1 - index_base
        end
    end
    return ops
end

local REPLACE, INSERT, UPDATE, DELETE, UPSERT = 3, 2, 4, 5, 9

local function dml(token, kind, space_id, index_id, key, tuple, ops, index_base)
    finish(token, pcall(function()
        local space = box.space[space_id]
        if space == nil then box.error(box.error.NO_SUCH_SPACE, tostring(space_id)) end
        if kind == INSERT then return space:insert(tuple) end
        if kind == REPLACE then return space:replace(tuple) end
        if kind == UPSERT then return space:upsert(tuple, rebase(ops, index_base)) end
        local index = space.index[index_id]
        if index == nil then box.error(box.error.NO_SUCH_INDEX_ID, index_id, space.name) end
        if kind == UPDATE then return index:update(key, rebase(tuple, index_base)) end
        if kind == DELETE then return index:delete(key) end
    end))
end

local triggers = box.session.internal_triggers
local storage = box.session.internal_storage

local function run_triggers(list, ...)
    for _, f in ipairs(list) do f(...) end
end

-- kind: 'connect', 'disconnect' or 'auth' (then the user name and whether the password
-- was right). A failing connect or auth trigger fails the connection or the login.
local function session_event(token, kind, user, ok)
    if kind == 'connect' then
        return finish(token, pcall(run_triggers, triggers.on_connect))
    elseif kind == 'auth' then
        return finish(token, pcall(run_triggers, triggers.on_auth, user, ok))
    end
    local done, err = pcall(run_triggers, triggers.on_disconnect)
    storage[box.session.id()] = nil
    if done then return reply(token) end
    return reply_error(token, err)
end

internal.iproto_set_handlers(call, eval, dml, session_event)

-- A worker fiber (src/iproto/workers.rs) serves one request after another: parked, it is
-- resumed with a handler and its arguments as what its yield returns. A wakeup or a
-- cancel resumes it with the park outcome instead; only a cancel ends the wait.
local co_yield = coroutine.yield
local PARK, CANCELLED = internal.iproto_park_marker, 2
local worker_idle = internal.iproto_worker_idle

local function serve(handler, ...)
    if type(handler) == 'function' then
        handler(...)
        return true
    end
    return handler == CANCELLED
end

internal.iproto_set_worker(function()
    repeat
        while not serve(co_yield(PARK)) do end
    until not worker_idle()
end)
