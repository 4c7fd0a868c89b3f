-- The Lua half of the fiber module: sleep, yield, channels and conds.
--
-- They are Lua because a switch between fibers must be cheap. A fiber parks by yielding
-- mlua's "poll pending" marker to the scheduler, which leaves it off the ready queue until
-- `wakeup` (or a cancel, or the park deadline) puts it back. Messages and waiter
-- records stay in Lua tables, so nothing crosses into Rust but a few tiny calls.
-- Semantics and error texts are Tarantool 2.6's (fiber.c, fiber_channel.c, fiber_cond.c).
local M, P, PENDING, YIELD, PARK, raw_resume = ...

local co_yield, co_running = coroutine.yield, coroutine.running
local self_id, now, wakeup, fids = P.self_id, P.now, P.wakeup, P.fids
local park_prepare, park_status = P.park_prepare, P.park_status
local is_cancelled, raise_cancelled = P.is_cancelled, P.raise_cancelled
local type, select, error, setmetatable, getmetatable = type, select, error, setmetatable, getmetatable
local tonumber, huge = tonumber, math.huge

local WOKEN, TIMEOUT, CANCELLED, WAITING = 0, 1, 2, 3

-- The running fiber's id: the trampoline maps each fiber's coroutine to it, and code in a
-- plain coroutine inside a fiber asks Rust.
local function my_fid()
    return fids[co_running()] or self_id()
end

-- Waits, after `prepare`, for a wakeup, the deadline or a cancel, and says which came
-- first. The scheduler resumes a parked fiber with that outcome (nil when the resume came
-- through a path that does not carry it, such as an mlua AsyncThread: then ask).
-- Spurious resumptions park again. The scheduler recognises a Lua-level park by this
-- file's chunk name on the yielding frame.
local function wait_parked()
    -- In its own coroutine a fiber yields straight to the scheduler; elsewhere the park
    -- goes through mlua's marker, which plain coroutines and AsyncThreads pass up.
    local marker = fids[co_running()] and PARK or PENDING
    while true do
        local status = co_yield(marker)
        if status == nil then status = park_status() end
        if status ~= WAITING then return status end
    end
end

-- Registers the park: a deadline (monotonic seconds) is armed in Rust; without one only
-- the fiber id is needed. Returns the id for the waiter record.
local function prepare(deadline)
    local fid = fids[co_running()]
    -- A fiber cancelled earlier would never be woken again: raise before parking. (The
    -- scheduler checks that itself for parks from a fiber's own coroutine.)
    if fid == nil and is_cancelled() then raise_cancelled() end
    if deadline ~= nil then return park_prepare(deadline) end
    return fid or self_id()
end

-- Waiter records are reused: each coroutine waits for one thing at a time, and a record
-- that left its queue is free. Weak keys let finished coroutines go.
local records = setmetatable({}, { __mode = 'k' })

local function waiter(fid, value)
    local co = co_running()
    local w = records[co]
    if w == nil or w.inq then
        w = { fid = fid, value = value, done = false, dead = false, inq = false }
        records[co] = w
        return w
    end
    w.fid, w.value, w.done, w.dead = fid, value, false, false
    return w
end

local function park(deadline)
    prepare(deadline)
    return wait_parked()
end

local function deadline_of(timeout)
    if timeout == nil or timeout == huge then return nil end
    return now() + (timeout > 0 and timeout or 0)
end

-- fiber.create for a plain function: the child is resumed right here from Lua, which
-- saves packing its arguments into Rust and back. Callable tables take the Rust path.
local take, spawn_begin, spawn_end, spawn_attach = P.take, P.spawn_begin, P.spawn_end, P.spawn_attach

-- ===== Fiber objects =====
-- A fiber object is a bare userdata (newproxy) sharing one metatable, with its fiber id in
-- a weak-keyed table: as cheap to make as a table, `type()` is 'userdata' as in
-- Tarantool, and it has no finalizer for the GC to run. Methods call Rust by id.
local PROTO = newproxy(true)
local FIBER_MT = getmetatable(PROTO)
local ids = setmetatable({}, { __mode = 'k' })
local methods = {}

local function id_of(self, name)
    local id = ids[self]
    if id == nil then
        error(string.format("bad argument #1 to '%s' (fiber expected, got %s)", name, type(self)), 0)
    end
    return id
end

local function make_object(fid)
    local object = newproxy(PROTO)
    ids[object] = fid
    return object
end

local obj_name, obj_status, obj_cancel = P.obj_name, P.obj_status, P.obj_cancel
local obj_wakeup, obj_set_joinable, obj_join, obj_storage =
    P.obj_wakeup, P.obj_set_joinable, P.obj_join, P.obj_storage

function methods.id(self) return id_of(self, 'id') end
function methods.name(self, ...) return obj_name(id_of(self, 'name'), ...) end
function methods.status(self) return obj_status(id_of(self, 'status')) end
function methods.cancel(self) return obj_cancel(id_of(self, 'cancel')) end
function methods.wakeup(self) return obj_wakeup(id_of(self, 'wakeup')) end
function methods.set_joinable(self, yes) return obj_set_joinable(id_of(self, 'set_joinable'), yes) end
function methods.join(self) return obj_join(id_of(self, 'join')) end

FIBER_MT.__index = function(self, key)
    local m = methods[key]
    if m ~= nil then return m end
    if key == 'storage' then return obj_storage(id_of(self, 'storage')) end
    return nil
end
FIBER_MT.__tostring = function(self) return 'fiber: ' .. tostring(ids[self]) end
FIBER_MT.__eq = function(a, b) return ids[a] ~= nil and ids[a] == ids[b] end
FIBER_MT.__metatable = false
-- Names the console's Tab completion offers for `f:<Tab>`.
FIBER_MT.__node_names = { 'cancel', 'id', 'join', 'name', 'set_joinable', 'status', 'storage', 'wakeup' }

-- Fiber arguments of module functions may be objects or ids.
local function fiber_id_arg(f)
    local id = ids[f]
    if id ~= nil then return id end
    return f
end

local kill_rust, status_rust = M.kill, M.status
function M.kill(f) return kill_rust(fiber_id_arg(f)) end
function M.status(f)
    if f == nil then return status_rust() end
    return status_rust(fiber_id_arg(f))
end

local create_rust = M.create
function M.create(f, ...)
    if type(f) ~= 'function' then return create_rust(f, ...) end
    local co = take()
    local fid = spawn_begin()
    fids[co] = fid
    if spawn_end(raw_resume(co, fid, f, ...)) then spawn_attach(co) end
    return make_object(fid)
end

function M.yield()
    local status = co_yield(YIELD)
    if status == CANCELLED or (status == nil and is_cancelled()) then raise_cancelled() end
end
local fiber_yield = M.yield

function M.sleep(delay)
    local t = tonumber(delay)
    if t == nil then
        error('fiber.sleep(delay): bad arguments', 0)
    end
    if not (t > 0) then
        return fiber_yield()
    end
    -- A wakeup() ends the sleep early, as in Tarantool.
    if park(now() + t) == CANCELLED then raise_cancelled() end
end

-- ===== Waiter queues =====
-- FIFO queues with lazy removal: a waiter that gives up (timeout, cancel) is marked dead
-- and skipped when it reaches the front, so giving up is O(1).

local function queue_new()
    return { first = 1, last = 0, live = 0 }
end

local function queue_push(q, w)
    local last = q.last + 1
    q.last = last
    q[last] = w
    q.live = q.live + 1
    w.inq = true
end

local function queue_pop(q)
    local first, last = q.first, q.last
    while first <= last do
        local w = q[first]
        q[first] = nil
        first = first + 1
        w.inq = false
        if not w.dead then
            -- Back to the start when empty, so the slots stay in the array part.
            if first > last then first, last = 1, 0 q.last = 0 end
            q.first = first
            q.live = q.live - 1
            return w
        end
    end
    q.first, q.last = 1, 0
    return nil
end

local function queue_drop(q, w)
    if not w.dead then
        w.dead = true
        q.live = q.live - 1
    end
end

-- ===== fiber.channel =====

local Channel = {}
Channel.__index = Channel
Channel.__tostring = function(ch) return 'channel: ' .. ch.n_ end

local PUT_USAGE = 'usage: channel:put(var [, timeout])'
local GET_USAGE = 'usage: channel:get([timeout])'

local function check_timeout(timeout, usage)
    if timeout ~= nil and type(timeout) ~= 'number' then error(usage, 0) end
    return timeout
end

-- Buffered messages: a ring over a table with head/tail counters, so nil is a message too.
local function buffer_push(ch, v)
    local tail = ch.tail + 1
    ch.tail = tail
    ch.buf[tail] = v
    ch.n_ = ch.n_ + 1
end

local function buffer_pop(ch)
    local head = ch.head
    local v = ch.buf[head]
    ch.buf[head] = nil
    ch.head = head + 1
    ch.n_ = ch.n_ - 1
    return v
end

function M.channel(size)
    if size == nil then
        size = 0
    elseif type(size) ~= 'number' then
        error('fiber.channel(size): bad arguments', 0)
    elseif size < 0 then
        error('fiber.channel(size): negative size', 0)
    end
    return setmetatable({
        size_ = math.floor(size), n_ = 0, head = 1, tail = 0, buf = {},
        closed = false, readers = queue_new(), writers = queue_new(),
    }, Channel)
end

-- Parks waiter `w` on queue `q` of `ch` until the other side completes it (true), or the
-- deadline passes or the channel closes (false). A cancel drops the waiter and raises.
local function channel_wait(ch, q, w)
    queue_push(q, w)
    while not w.done and not ch.closed do
        local status = wait_parked()
        if w.done then break end
        if status == CANCELLED then
            queue_drop(q, w)
            raise_cancelled()
        elseif status == TIMEOUT then
            break
        end
    end
    if not w.done then
        queue_drop(q, w)
        return false
    end
    return true
end

-- Completes a waiting writer: its message is taken, and it returns true from put.
local function take_from(writer)
    local v = writer.value
    writer.value, writer.done = nil, true
    wakeup(writer.fid)
    return v
end

function Channel.put(ch, ...)
    if getmetatable(ch) ~= Channel or select('#', ...) == 0 then error(PUT_USAGE, 0) end
    local value, timeout = ...
    check_timeout(timeout, PUT_USAGE)
    if ch.closed then return false end
    local reader = queue_pop(ch.readers)
    if reader ~= nil then
        reader.value, reader.done = value, true
        wakeup(reader.fid)
        return true
    end
    if ch.n_ < ch.size_ then
        buffer_push(ch, value)
        return true
    end
    if timeout ~= nil and timeout <= 0 then return false end
    return channel_wait(ch, ch.writers, waiter(prepare(deadline_of(timeout)), value))
end

function Channel.get(ch, timeout)
    if getmetatable(ch) ~= Channel then error(GET_USAGE, 0) end
    check_timeout(timeout, GET_USAGE)
    if ch.closed then return nil end
    if ch.n_ > 0 then
        local v = buffer_pop(ch)
        -- A writer that waited for room moves its message in.
        local writer = queue_pop(ch.writers)
        if writer ~= nil then buffer_push(ch, take_from(writer)) end
        return v
    end
    local writer = queue_pop(ch.writers)
    if writer ~= nil then
        -- Rendezvous: take the message straight from the waiting writer.
        return take_from(writer)
    end
    if timeout ~= nil and timeout <= 0 then return nil end
    local r = waiter(prepare(deadline_of(timeout)), nil)
    if not channel_wait(ch, ch.readers, r) then return nil end
    local v = r.value
    r.value = nil
    return v
end

function Channel.close(ch)
    if ch.closed then return end
    ch.closed = true
    ch.buf, ch.head, ch.tail, ch.n_ = {}, 1, 0, 0
    for _, q in ipairs({ ch.readers, ch.writers }) do
        local w = queue_pop(q)
        while w ~= nil do
            wakeup(w.fid)
            w = queue_pop(q)
        end
    end
end

function Channel.is_closed(ch) return ch.closed end
function Channel.count(ch) return ch.n_ end
function Channel.size(ch) return ch.size_ end
function Channel.is_full(ch) return ch.n_ >= ch.size_ end
function Channel.is_empty(ch) return ch.n_ == 0 end
function Channel.has_readers(ch) return ch.readers.live > 0 end
function Channel.has_writers(ch) return ch.writers.live > 0 end

-- ===== fiber.cond =====

local Cond = {}
Cond.__index = Cond
Cond.__tostring = function() return 'cond' end

local WAIT_USAGE = 'usage: cond:wait([timeout])'

function M.cond()
    return setmetatable({ waiters = queue_new() }, Cond)
end

function Cond.wait(cond, timeout)
    if getmetatable(cond) ~= Cond then error(WAIT_USAGE, 0) end
    check_timeout(timeout, WAIT_USAGE)
    local deadline = deadline_of(timeout)
    local w = waiter(prepare(deadline), nil)
    queue_push(cond.waiters, w)
    -- As in Tarantool, any wakeup ends the wait with true, a cancel too (without raising);
    -- only the deadline gives false.
    local status = wait_parked()
    if w.done then return true end
    queue_drop(cond.waiters, w)
    return status ~= TIMEOUT
end

function Cond.signal(cond)
    local w = queue_pop(cond.waiters)
    if w ~= nil then
        w.done = true
        wakeup(w.fid)
    end
end

function Cond.broadcast(cond)
    local w = queue_pop(cond.waiters)
    while w ~= nil do
        w.done = true
        wakeup(w.fid)
        w = queue_pop(cond.waiters)
    end
end

-- For box: a park that only a wakeup ends (a commit waiting for its WAL write); the
-- caller loops on its own condition. Returns the park outcome.
P.park_until_woken = function() return park(nil) end

return make_object
