-- net.box: Tarantool 2.6's IPROTO client, over the Rust transport of src/netbox/.
--
-- The Rust side owns the socket, encodes requests and decodes answers; this file is the
-- API: connection objects and their state machine, triggers, space and index objects,
-- futures and net.box.self. Behaviour and texts follow 2.6.0's net_box.lua (checked against
-- the real binary, see tests/netbox_tarantool.rs):
--
--   initial -> auth -> fetch_schema <-> active
--   (any state, on error) -> error_reconnect -> auth -> ... (with reconnect_after)
--                                            -> error        (without)
--   (any state but error) -> closed                          (close, or the object's GC)
--
-- A worker fiber per connection connects, authenticates, fetches the schema and then
-- waits for the socket to fail or a response to carry a new schema version. It holds the
-- connection object only weakly, so a connection nobody references is closed by the GC.
local lib = require('net.box.lib')
local fiber = require('fiber')
local log = require('log')
local msgpack = require('msgpack')

local type, pairs, ipairs, setmetatable, tostring, tonumber, error, pcall, select, unpack =
    type, pairs, ipairs, setmetatable, tostring, tonumber, error, pcall, select, unpack
local max = math.max
local clock = fiber.clock

-- A "forever" that fits a timer: 500 years, as net.box has it.
local TIMEOUT_INFINITY = 500 * 365 * 86400
local DEFAULT_CONNECT_TIMEOUT = 10
-- Waiting for a call's answer must not wake on pushes nobody handles.
local NO_PUSHES = 2 ^ 31

local E_UNKNOWN = box.error.UNKNOWN
local E_NO_CONNECTION = box.error.NO_CONNECTION
local E_TIMEOUT = box.error.TIMEOUT
local E_PROC_LUA = box.error.PROC_LUA

local is_final_state = {closed = true, error = true}

-- {{{ triggers (internal.trigger of 2.6)

local function is_callable(v)
    if type(v) == 'function' then return true end
    if type(v) == 'table' then
        local mt = getmetatable(v)
        return mt ~= nil and type(mt.__call) == 'function'
    end
    return false
end

local trigger_list_mt = {
    __call = function(self, new, old)
        if new ~= nil and not is_callable(new) then
            error(string.format('Usage: %s(callable)', self.name))
        end
        if old ~= nil and not is_callable(old) then
            error('Usage: trigger(new_callable, old_callable)')
        end
        if new == nil and old == nil then
            local list = {}
            for i, f in ipairs(self) do list[i] = f end
            return list
        elseif old == nil then
            table.insert(self, new)
            return
        end
        for pos, f in ipairs(self) do
            if f == old then
                if new == nil then table.remove(self, pos) else self[pos] = new end
                return old
            end
        end
        error(string.format('%s: trigger is not found', self.name))
    end,
    __index = {
        run = function(self, ...)
            for _, f in ipairs(self) do f(...) end
        end,
    },
}

local function new_trigger_list(name)
    return setmetatable({name = name}, trigger_list_mt)
end

-- }}}

-- {{{ futures

local future_methods = {}
local future_mt = {__index = future_methods}

local function new_future(sm, request)
    return setmetatable({_request = request, _sm = sm}, future_mt)
end

function future_methods:is_ready()
    return self._request:is_ready() or self._sm.worker == nil
end

function future_methods:result()
    local ok, value = self._request:result()
    if ok then
        return value
    elseif ok == false then
        return nil, value
    elseif self._sm.worker == nil then
        return nil, box.error.new(E_NO_CONNECTION)
    end
    return nil, box.error.new(E_PROC_LUA, 'Response is not ready')
end

function future_methods:wait_result(timeout)
    if timeout then
        if type(timeout) ~= 'number' or timeout < 0 then
            error('Usage: future:wait_result(timeout)')
        end
    else
        timeout = TIMEOUT_INFINITY
    end
    while timeout > 0 and not self:is_ready() do
        local started = clock()
        self._request:wait(timeout, NO_PUSHES)
        timeout = timeout - (clock() - started)
    end
    if not self:is_ready() then
        return nil, box.error.new(E_TIMEOUT)
    end
    return self:result()
end

function future_methods:discard()
    self._request:discard()
end

-- The pushes, then the answer; on an error the key is box.NULL (nil would end a for loop
-- before the error is seen) and the next step ends the iteration.
local function future_next(iterator, i)
    if type(i) ~= 'number' then return nil, nil end
    i = i + 1
    local future = iterator.future
    local request = future._request
    ::retry::
    local count = request:push_count()
    if i <= count then
        return i, request:push(i)
    end
    if future:is_ready() then
        if i > count + 1 then return nil, nil end
        local response, err = future:result()
        if err then return box.NULL, err end
        return i, response
    end
    local timeout = iterator.timeout
    repeat
        local started = clock()
        request:wait(timeout, count)
        timeout = timeout - (clock() - started)
        if future:is_ready() or request:push_count() ~= count then goto retry end
    until timeout <= 0
    return box.NULL, box.error.new(E_TIMEOUT)
end

function future_methods:pairs(timeout)
    if timeout then
        if type(timeout) ~= 'number' or timeout < 0 then
            error('Usage: future:pairs(timeout)')
        end
    else
        timeout = TIMEOUT_INFINITY
    end
    return future_next, {future = self, timeout = timeout}, 0
end

-- }}}

-- {{{ the state machine (sm): what the worker fiber and the connection object share

local function reconnect_timeout(sm)
    local after = sm.opts.reconnect_after
    if type(after) == 'number' and after > 0 then return after end
end

-- Runs the connection object's side of a state change: triggers first (they see the old
-- state and error, as in 2.6), then the new state, then the reconnect warning.
local function on_state_changed(sm, remote, state, err)
    local was_connected = remote._is_connected
    if state == 'active' then
        if not was_connected then
            remote._is_connected = true
            remote._on_connect:run(remote)
        end
    elseif state == 'error' or state == 'error_reconnect' or state == 'closed' then
        if was_connected then
            remote._is_connected = false
            remote._on_disconnect:run(remote)
        end
    end
    remote.state, remote.error = state, err
    if state == 'error_reconnect' then
        -- The same error again goes to the verbose log only, not to clog the log.
        local host, port = sm.host or '', sm.port or ''
        if err ~= sm.last_reconnect_error then
            log.warn('%s:%s: %s', host, port, err)
            sm.last_reconnect_error = err
        else
            log.verbose('%s:%s: %s', host, port, err)
        end
    end
end

local function set_state(sm, state, errno, err)
    sm.state, sm.errno, sm.error = state, errno, err
    local remote = sm.ref.remote
    if remote ~= nil then on_state_changed(sm, remote, state, err) end
    sm.cond:broadcast()
    if state == 'error' or state == 'error_reconnect' or state == 'closed' then
        sm.transport:fail_all(errno or E_UNKNOWN, tostring(err))
    end
end

local function wait_state(sm, target, timeout)
    local deadline = clock() + (timeout or TIMEOUT_INFINITY)
    local function reached()
        return sm.state == target or (type(target) == 'table' and target[sm.state]) or false
    end
    repeat until reached() or is_final_state[sm.state] or
                 not sm.cond:wait(max(0, deadline - clock()))
    return reached()
end

-- After a response that carried a new schema version, the caller waits for the new schema
-- (2.6's worker switches to fetch_schema before the caller runs; here the two are woken
-- together, so the caller also checks the transport's flag).
local function wait_schema(sm, deadline)
    while sm.state == 'fetch_schema' or (sm.state == 'active' and sm.transport:schema_outdated()) do
        local left = deadline and deadline - clock() or TIMEOUT_INFINITY
        if left <= 0 then return end
        sm.cond:wait(left)
    end
end

local function error_sm(sm, errno, err)
    sm.transport:disconnect()
    if sm.state ~= 'closed' then
        if reconnect_timeout(sm) then
            set_state(sm, 'error_reconnect', errno, err)
        else
            set_state(sm, 'error', errno, err)
        end
    end
end

local function fetch_schema(sm, greeting)
    set_state(sm, 'fetch_schema')
    local version, spaces, indexes, collations = sm.transport:fetch_schema(greeting.version_id)
    if version == nil then return nil, spaces end
    local remote = sm.ref.remote
    if remote ~= nil then remote:_install_schema(version, spaces, indexes, collations) end
    sm.transport:watch_schema(version)
    return true
end

-- One established connection, from the greeting until the socket fails.
local function serve(sm, greeting)
    if greeting.protocol ~= 'Binary' then
        return error_sm(sm, E_NO_CONNECTION, 'Unsupported protocol: ' .. greeting.protocol)
    end
    local remote = sm.ref.remote
    if remote == nil then return end -- collected while connecting
    do
        remote.protocol = greeting.protocol
        remote.peer_uuid = greeting.uuid
        remote.peer_version_id = greeting.version_id
    end
    remote = nil -- luacheck: ignore (the worker must not keep the object alive)
    set_state(sm, 'auth')
    if sm.user ~= nil and sm.password ~= nil then
        local ok, err = sm.transport:auth(sm.user, sm.password)
        if not ok then return error_sm(sm, E_NO_CONNECTION, err) end
    end
    if sm.opts.fetch_schema ~= false then
        local ok, err = fetch_schema(sm, greeting)
        if not ok then return error_sm(sm, E_NO_CONNECTION, err) end
    end
    set_state(sm, 'active')
    while true do
        local event, err = sm.transport:next_event()
        if event == 'error' then return error_sm(sm, E_NO_CONNECTION, err) end
        if sm.opts.fetch_schema ~= false then
            local ok, fetch_err = fetch_schema(sm, greeting)
            if not ok then return error_sm(sm, E_NO_CONNECTION, fetch_err) end
            set_state(sm, 'active')
        end
    end
end

local stop

local function worker(sm)
    sm.worker = fiber.self()
    fiber.self():name(string.format('%s:%s (net.box)', sm.host, sm.port), {truncate = true})
    while true do
        -- The connection object was collected: close (see the GC hook in new_sm).
        if sm.ref.remote == nil then sm.worker = nil return stop(sm) end
        local timeout = sm.opts.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        local greeting, err = sm.transport:connect(sm.host, tostring(sm.port), timeout)
        if greeting ~= nil then
            local ok, serve_err = pcall(serve, sm, greeting)
            if not ok and not is_final_state[sm.state] then
                set_state(sm, 'error', E_UNKNOWN, serve_err)
            end
            sm.transport:disconnect()
            if sm.ref.remote == nil then sm.worker = nil return stop(sm) end
        elseif reconnect_timeout(sm) then
            set_state(sm, 'error_reconnect', E_NO_CONNECTION, err)
        else
            set_state(sm, 'error', E_NO_CONNECTION, err)
        end
        if not reconnect_timeout(sm) or sm.state ~= 'error_reconnect' then break end
        fiber.sleep(reconnect_timeout(sm))
        if not reconnect_timeout(sm) or sm.state ~= 'error_reconnect' then break end
    end
    sm.worker = nil
end

stop = function(sm)
    if not is_final_state[sm.state] then
        set_state(sm, 'closed', E_NO_CONNECTION, 'Connection closed')
    end
    local w = sm.worker
    sm.worker = nil
    -- Drops the socket and wakes the worker, wherever it waits.
    sm.transport:abandon()
    if w ~= nil and w:status() ~= 'dead' then
        w:cancel()
        -- Closed from the worker itself (a trigger): Tarantool's cancel of the running
        -- fiber raises at once, which ends the worker's step.
        if w == fiber.self() then fiber.testcancel() end
    end
end

-- Queues a request: `method` is the transport's encoder, `...` its arguments.
local function perform_async_request(sm, method, ...)
    if sm.state ~= 'active' and sm.state ~= 'fetch_schema' then
        return nil, box.error.new({code = sm.errno or E_NO_CONNECTION, reason = sm.error})
    end
    return new_future(sm, sm.transport[method](sm.transport, ...))
end

-- }}}

-- {{{ connection objects

local remote_methods = {}

local function remote_serialize(self)
    return {
        host = self.host,
        port = self.port,
        opts = next(self.opts) and self.opts,
        state = self.state,
        error = self.error,
        protocol = self.protocol,
        schema_version = self.schema_version,
        peer_uuid = self.peer_uuid,
        peer_version_id = self.peer_version_id,
    }
end

local remote_mt = {__index = remote_methods, __serialize = remote_serialize, __metatable = false}

local space_metatable, index_metatable

local function new_sm(host, port, opts)
    local user, password = opts.user, opts.password
    opts.password = nil
    if user == nil and password ~= nil then
        box.error(E_PROC_LUA, 'net.box: user is not defined')
    end
    if user ~= nil and password == nil then password = '' end

    local remote = {host = host, port = port, opts = opts, state = 'initial'}
    setmetatable(remote, remote_mt)
    -- @deprecated since 1.7.4: conn:timeout(t) deadlines, per fiber.
    remote._deadlines = setmetatable({}, {__mode = 'k'})
    remote._space_mt = space_metatable(remote)
    remote._index_mt = index_metatable(remote)
    if opts.call_16 then
        remote.call = remote.call_16
        remote.eval = remote.eval_16
    end
    remote._on_schema_reload = new_trigger_list('on_schema_reload')
    remote._on_disconnect = new_trigger_list('on_disconnect')
    remote._on_connect = new_trigger_list('on_connect')
    remote._is_connected = false

    local sm = {
        host = host, port = port, opts = opts, user = user, password = password,
        state = 'initial', cond = fiber.cond(), transport = lib.new_transport(),
        ref = setmetatable({remote = remote}, {__mode = 'v'}),
    }
    remote._sm = sm
    -- Closes the connection when its object is collected: the finaliser only drops the
    -- socket; the worker fiber, woken by that, does the rest.
    local gc_hook = newproxy(true)
    getmetatable(gc_hook).__gc = function() pcall(sm.transport.abandon, sm.transport) end
    remote._gc_hook = gc_hook

    fiber.create(worker, sm)
    if opts.wait_connected ~= false then
        wait_state(sm, 'active', tonumber(opts.wait_connected))
    end
    return remote
end

local function parse_connect_params(host_or_uri, ...)
    local port, opts = ...
    if type(host_or_uri) == 'table' then host_or_uri, port, opts = ... end
    if type(port) == 'table' then opts = port; port = nil end
    local copy = {}
    if opts ~= nil then
        for k, v in pairs(opts) do copy[k] = v end
    end
    opts = copy
    local host = host_or_uri
    if port == nil then
        local url = lib.parse_uri(tostring(host))
        if url == nil or url.service == nil then
            box.error(E_PROC_LUA, 'usage: connect(uri[, opts] | host, port[, opts])')
        end
        host, port = url.host, url.service
        if opts.user == nil and opts.password == nil then
            opts.user, opts.password = url.login, url.password
        end
    end
    return host, port, opts
end

local function connect(...)
    return new_sm(parse_connect_params(...))
end

local function check_remote_arg(remote, method)
    if type(remote) ~= 'table' then
        box.error(E_PROC_LUA, string.format('Use remote:%s(...) instead of remote.%s(...):', method, method))
    end
end

local function check_call_args(args)
    if args ~= nil and type(args) ~= 'table' then
        error('Use remote:call(func_name, {arg1, arg2, ...}, opts) ' ..
              'instead of remote:call(func_name, arg1, arg2, ...)')
    end
end

local function check_eval_args(args)
    if args ~= nil and type(args) ~= 'table' then
        error('Use remote:eval(expression, {arg1, arg2, ...}, opts) ' ..
              'instead of remote:eval(expression, arg1, arg2, ...)')
    end
end

function remote_methods:close()
    check_remote_arg(self, 'close')
    stop(self._sm)
end

function remote_methods:on_schema_reload(...)
    check_remote_arg(self, 'on_schema_reload')
    return self._on_schema_reload(...)
end

function remote_methods:on_disconnect(...)
    check_remote_arg(self, 'on_disconnect')
    return self._on_disconnect(...)
end

function remote_methods:on_connect(...)
    check_remote_arg(self, 'on_connect')
    return self._on_connect(...)
end

function remote_methods:is_connected()
    check_remote_arg(self, 'is_connected')
    return self.state == 'active' or self.state == 'fetch_schema'
end

function remote_methods:wait_connected(timeout)
    check_remote_arg(self, 'wait_connected')
    return wait_state(self._sm, 'active', timeout)
end

function remote_methods:wait_state(state, timeout)
    check_remote_arg(self, 'wait_state')
    if timeout == nil then
        local deadline = self._deadlines[fiber.self()]
        timeout = deadline and max(0, deadline - clock())
    end
    return wait_state(self._sm, state, timeout)
end

-- Waits for a synchronous request's answer, handing pushes to on_push on the way.
local function wait_answer(sm, future, deadline, on_push, on_push_ctx)
    local request = future._request
    local seen = 0
    while true do
        if on_push ~= nil then
            local count = request:push_count()
            while seen < count do
                seen = seen + 1
                on_push(on_push_ctx, request:push(seen))
            end
        end
        if future:is_ready() then return future:result() end
        local left = deadline and deadline - clock() or TIMEOUT_INFINITY
        if left <= 0 then return nil, box.error.new(E_TIMEOUT) end
        request:wait(left, on_push ~= nil and seen or NO_PUSHES)
    end
end

function remote_methods:_request(method, opts, ...)
    local sm = self._sm
    local deadline, on_push, on_push_ctx
    if opts then
        if opts.is_async then
            if opts.on_push or opts.on_push_ctx then
                error('To handle pushes in an async request use future:pairs()')
            end
            local future, err = perform_async_request(sm, method, ...)
            if err then box.error(err) end
            return future
        end
        if opts.timeout then
            deadline = clock() + opts.timeout
        else
            deadline = self._deadlines[fiber.self()]
        end
        on_push, on_push_ctx = opts.on_push, opts.on_push_ctx
    else
        deadline = self._deadlines[fiber.self()]
    end
    if sm.state ~= 'active' then
        wait_state(sm, 'active', deadline and max(0, deadline - clock()))
    end
    local future, err = perform_async_request(sm, method, ...)
    if err then box.error(err) end
    local res
    res, err = wait_answer(sm, future, deadline, on_push, on_push_ctx)
    if err then box.error(err) end
    -- Whatever the reload gives, the answer stands: it does not depend on the schema.
    wait_schema(sm, deadline)
    return res
end

function remote_methods:ping(opts)
    check_remote_arg(self, 'ping')
    return (pcall(self._request, self, 'ping', opts))
end

function remote_methods:reload_schema()
    check_remote_arg(self, 'reload_schema')
    self:ping()
end

-- @deprecated since 1.7.4
function remote_methods:call_16(func_name, ...)
    check_remote_arg(self, 'call')
    return (self:_request('call', nil, tostring(func_name), {...}, true))
end

function remote_methods:call(func_name, args, opts)
    check_remote_arg(self, 'call')
    check_call_args(args)
    local res = self:_request('call', opts, tostring(func_name), args or {})
    if type(res) ~= 'table' or opts and opts.is_async then
        return res
    end
    return unpack(res)
end

-- @deprecated since 1.7.4
function remote_methods:eval_16(code, ...)
    check_remote_arg(self, 'eval')
    return unpack((self:_request('eval', nil, code, {...})))
end

function remote_methods:eval(code, args, opts)
    check_remote_arg(self, 'eval')
    check_eval_args(args)
    local res = self:_request('eval', opts, code, args or {})
    if type(res) ~= 'table' or opts and opts.is_async then
        return res
    end
    return unpack(res)
end

local timeout_warned = false

-- @deprecated since 1.7.4
function remote_methods:timeout(timeout)
    check_remote_arg(self, 'timeout')
    if not timeout_warned then
        timeout_warned = true
        log.warn('netbox:timeout(timeout) is deprecated since 1.7.4, ' ..
                 'please use space:<request>(..., {timeout = t}) instead.')
    end
    self._deadlines[fiber.self()] = timeout and clock() + timeout
    return self
end

-- Builds conn.space from _vspace / _vindex / _vcollation rows. Space objects that exist
-- already are refilled in place, so a script's reference stays valid across reloads.
function remote_methods:_install_schema(schema_version, spaces, indices, collations)
    local sl, space_mt, index_mt = {}, self._space_mt, self._index_mt
    for _, space in pairs(spaces) do
        local name, id = space[3], space[1]
        local format = space[7] or {}
        local s = self.space ~= nil and self.space[id] or setmetatable({}, space_mt)
        s.id = id
        s.name = name
        s.engine = space[4]
        s.field_count = space[5]
        s.enabled = true
        s.index = {}
        s.temporary = false
        s.is_sync = false
        s._format = format
        s._format_cdata = lib.new_format(format)
        s.connection = self
        if #space > 5 then
            local opts = space[6]
            if type(opts) == 'table' then
                s.temporary = not not opts.temporary
                s.is_sync = not not opts.is_sync
            elseif type(opts) == 'string' then
                -- Tarantool < 1.7.0 kept space flags in a string.
                s.temporary = string.match(opts, 'temporary') ~= nil
            end
        end
        sl[id] = s
        sl[name] = s
    end
    for _, index in pairs(indices) do
        local idx = {
            space = index[1],
            id = index[2],
            name = index[3],
            type = string.upper(index[4]),
            parts = {},
        }
        local opts, parts = index[5], index[6]
        if type(opts) == 'number' then
            -- Tarantool < 1.7: unique flag, part count, then field/type pairs.
            idx.unique = opts == 1
            for k = 0, parts - 1 do
                idx.parts[k + 1] = {type = index[7 + k * 2 + 1], fieldno = index[7 + k * 2] + 1}
            end
        else
            for k = 1, #parts do
                local part = parts[k]
                local collation_id = part.collation
                local pk = {
                    type = part[2] or part.type,
                    fieldno = (part[1] or part.field) + 1,
                    is_nullable = part.is_nullable or false,
                }
                if collations == nil then
                    pk.collation_id = collation_id
                elseif collation_id ~= nil then
                    pk.collation = collations[collation_id + 1][2]
                end
                idx.parts[k] = pk
            end
            idx.unique = not not opts.unique
        end
        local s = sl[idx.space]
        if s ~= nil then
            s.index[idx.id] = idx
            s.index[idx.name] = idx
            idx.space = s
            setmetatable(idx, index_mt)
        end
    end
    self.schema_version = schema_version
    self.space = sl
    self._on_schema_reload:run(self)
end

-- }}}

-- {{{ space and index objects

local function check_space_arg(space, method)
    if type(space) ~= 'table' or space.id == nil then
        error(string.format('Use space:%s(...) instead of space.%s(...)', method, method))
    end
end

local function check_index_arg(index, method)
    if type(index) ~= 'table' or index.id == nil then
        error(string.format('Use index:%s(...) instead of index.%s(...)', method, method))
    end
end

local function check_primary_index(space)
    local pk = space.index[0]
    if pk == nil then
        box.error(box.error.NO_SUCH_INDEX_ID, 0, space.name)
    end
    return pk
end

-- The iterator of a select: a number as is (the server checks it), a name, or ALL for an
-- empty key and EQ otherwise.
local function check_iterator_type(opts, key_is_nil)
    local itype
    if opts and opts.iterator then
        if type(opts.iterator) == 'number' then
            itype = opts.iterator
        elseif type(opts.iterator) == 'string' then
            itype = box.index[string.upper(opts.iterator)]
            if itype == nil then box.error(box.error.ITERATOR_TYPE, opts.iterator) end
        else
            box.error(box.error.ITERATOR_TYPE, tostring(opts.iterator))
        end
    elseif opts and type(opts) == 'string' then
        itype = box.index[string.upper(opts)]
        if itype == nil then box.error(box.error.ITERATOR_TYPE, opts) end
    else
        itype = key_is_nil and box.index.ALL or box.index.EQ
    end
    return itype
end

local function nothing_or_data(value)
    if value ~= nil then return value end
end

space_metatable = function(remote)
    local methods = {}

    function methods:insert(tuple, opts)
        check_space_arg(self, 'insert')
        return remote:_request('insert', opts, self.id, tuple, self._format_cdata)
    end

    function methods:replace(tuple, opts)
        check_space_arg(self, 'replace')
        return remote:_request('replace', opts, self.id, tuple, self._format_cdata)
    end

    function methods:select(key, opts)
        check_space_arg(self, 'select')
        return check_primary_index(self):select(key, opts)
    end

    function methods:delete(key, opts)
        check_space_arg(self, 'delete')
        return check_primary_index(self):delete(key, opts)
    end

    function methods:update(key, oplist, opts)
        check_space_arg(self, 'update')
        return check_primary_index(self):update(key, oplist, opts)
    end

    function methods:upsert(key, oplist, opts)
        check_space_arg(self, 'upsert')
        return nothing_or_data(remote:_request('upsert', opts, self.id, key, oplist))
    end

    function methods:get(key, opts)
        check_space_arg(self, 'get')
        return check_primary_index(self):get(key, opts)
    end

    function methods:format(format)
        if format == nil then return self._format end
        box.error(box.error.UNSUPPORTED, 'net.box', 'setting space format')
    end

    return {__index = methods, __metatable = false}
end

index_metatable = function(remote)
    local methods = {}

    function methods:select(key, opts)
        check_index_arg(self, 'select')
        local key_is_nil = key == nil or (type(key) == 'table' and #key == 0)
        local iterator = check_iterator_type(opts, key_is_nil)
        local offset = tonumber(opts and opts.offset) or 0
        local limit = tonumber(opts and opts.limit) or 0xFFFFFFFF
        return (remote:_request('select', opts, self.space.id, self.id, iterator, offset, limit, key,
                                self.space._format_cdata))
    end

    function methods:get(key, opts)
        check_index_arg(self, 'get')
        if opts and opts.buffer then error("index:get() doesn't support `buffer` argument") end
        return nothing_or_data(remote:_request('select', opts, self.space.id, self.id, box.index.EQ, 0, 2, key,
                                               self.space._format_cdata, 'get'))
    end

    function methods:min(key, opts)
        check_index_arg(self, 'min')
        if opts and opts.buffer then error("index:min() doesn't support `buffer` argument") end
        return nothing_or_data(remote:_request('select', opts, self.space.id, self.id, box.index.GE, 0, 1, key,
                                               self.space._format_cdata, 'first'))
    end

    function methods:max(key, opts)
        check_index_arg(self, 'max')
        if opts and opts.buffer then error("index:max() doesn't support `buffer` argument") end
        return nothing_or_data(remote:_request('select', opts, self.space.id, self.id, box.index.LE, 0, 1, key,
                                               self.space._format_cdata, 'first'))
    end

    function methods:count(key, opts)
        check_index_arg(self, 'count')
        if opts and opts.buffer then error("index:count() doesn't support `buffer` argument") end
        local code = string.format('box.space.%s.index.%s:count', self.space.name, self.name)
        return remote:_request('count', opts, code, {key, opts})
    end

    function methods:delete(key, opts)
        check_index_arg(self, 'delete')
        return nothing_or_data(remote:_request('delete', opts, self.space.id, self.id, key,
                                               self.space._format_cdata))
    end

    function methods:update(key, oplist, opts)
        check_index_arg(self, 'update')
        return nothing_or_data(remote:_request('update', opts, self.space.id, self.id, key, oplist,
                                               self.space._format_cdata))
    end

    return {__index = methods, __metatable = false}
end

-- }}}

-- {{{ the module

local this_module = {
    connect = connect,
    new = connect, -- Tarantool < 1.7.1 compatibility
}

-- @deprecated: net.box.timeout(t).connect(...) waits at most t for the connection.
function this_module.timeout(timeout, ...)
    if type(timeout) == 'table' then timeout = ... end
    if not timeout then return this_module end
    local function timed_connect(...)
        local host, port, opts = parse_connect_params(...)
        if opts.wait_connected ~= false then opts.wait_connected = timeout end
        return new_sm(host, port, opts)
    end
    return setmetatable({connect = timed_connect, new = timed_connect}, {__index = this_module})
end

local function rollback()
    -- A failed local call must not leave its transaction open.
    if rawget(box, 'rollback') ~= nil then box.rollback() end
end

local function handle_eval_result(status, ...)
    if not status then
        rollback()
        return box.error(E_PROC_LUA, tostring((...)))
    end
    local n = select('#', ...)
    local results = {...}
    for i = 1, n do
        -- Results leave as a remote call's would: tuples and cdata become plain values.
        local t = type(results[i])
        if t == 'cdata' or (t == 'userdata' and box.tuple.is(results[i])) then
            results[i] = msgpack.decode(msgpack.encode(results[i]))
        end
    end
    return unpack(results, 1, n)
end

-- net.box.self: the same API, served by the local box.
this_module.self = {
    ping = function() return true end,
    reload_schema = function() end,
    close = function() end,
    timeout = function(self) return self end,
    wait_connected = function() return true end,
    is_connected = function() return true end,
    call = function(_box, proc_name, args)
        check_remote_arg(_box, 'call')
        check_call_args(args)
        args = args or {}
        proc_name = tostring(proc_name)
        local fn, obj = box.internal.call_resolve(proc_name)
        if fn == nil then
            rollback()
            box.error(box.error.NO_SUCH_PROC, #proc_name, proc_name)
        end
        if obj ~= nil then
            return handle_eval_result(pcall(fn, obj, unpack(args)))
        end
        return handle_eval_result(pcall(fn, unpack(args)))
    end,
    eval = function(_box, expr, args)
        check_remote_arg(_box, 'eval')
        check_eval_args(args)
        args = args or {}
        local proc, errmsg = loadstring(expr)
        if not proc then
            proc, errmsg = loadstring('return ' .. expr)
        end
        if not proc then
            rollback()
            return box.error(E_PROC_LUA, errmsg)
        end
        return handle_eval_result(pcall(proc, unpack(args)))
    end,
}

setmetatable(this_module.self, {
    __index = function(_, key)
        if key == 'space' then return box.space end
    end,
})

return this_module

-- }}}
