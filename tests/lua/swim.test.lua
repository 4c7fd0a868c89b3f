-- swim: API semantics, error texts and a small cluster in one process, on 127.0.0.1.
local tap = require('tap')
local swim = require('swim')
local fiber = require('fiber')
local uuid = require('uuid')
local test = tap.test('swim')
test:plan(58)

local function U(i) return string.format('00000000-0000-1000-8000-%012d', i) end
local function wait(cond, timeout)
    local deadline = fiber.clock() + (timeout or 5)
    while not cond() do
        if fiber.clock() > deadline then return false end
        fiber.sleep(0.01)
    end
    return true
end
local fast = {heartbeat_rate = 0.05, ack_timeout = 0.1}
local function new(i, extra)
    local cfg = {uuid = U(i), uri = 0, heartbeat_rate = fast.heartbeat_rate,
                 ack_timeout = fast.ack_timeout}
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return swim.new(cfg)
end

-- Unconfigured instances.
local s = swim.new()
test:is(s:is_configured(), false, 'not configured')
test:isnil(s.size, 'no size before cfg')
local ok, err = s:cfg({uuid = U(1)})
test:ok(ok == nil and err.message == 'swim.cfg: UUID and URI are mandatory in a first config',
        'first cfg needs uri')
test:is(select(2, pcall(s.cfg, s, 1)):gsub('^.-: ', '', 1), 'swim:cfg: expected table configuration',
        'cfg table check')
test:ok(s:cfg({uuid = U(1), uri = 0, generation = nil}) == true, 'first cfg')
test:is(s:size(), 1, 'self is a member')
test:is(s:self():uuid(), uuid.fromstr(U(1)), 'uuid is tt_uuid cdata')
test:is(s:self():incarnation().version, 1ULL, 'ephemeral port bumps the version')
test:is(s:self(), s:self(), 'member objects are cached')
test:isnil(s:member_by_uuid(nil), 'member_by_uuid(nil) is nil')
test:is(select(2, pcall(function() s.cfg.uri = 1 end)):match('please, use.*'),
        'please, use swim:cfg{key = value} instead of swim.cfg.key = value', 'cfg is read-only')
ok, err = s:set_payload(string.rep('a', 1198))
test:is(tostring(err), 'Payload should be <= 1200 and >= 0', 'payload limit')
s:set_payload_raw('hello')
test:is(s:self():payload(), 104, "raw 'hello' decodes as 104, as in Tarantool")
test:is(s:self():payload_str(), 'hello', 'payload_str')
local m = s:self()
s:delete()
test:is(m:is_dropped(), true, 'member of a deleted instance is dropped')
test:is(select(2, pcall(function() return s:size() end)):match('the swim instance is deleted'),
        'the swim instance is deleted', 'deleted instance raises')

-- A cluster of three.
local a = new(1, {generation = 1})
local b = new(2)
local c = new(3)
local events = {}
c:on_member_event(function(m, e, ctx)
    table.insert(events, {uuid = m:uuid():str(), status = m:status(), mask = e[1], ctx = ctx})
end, 'ctx!')
test:is(#c:on_member_event(), 1, 'trigger list')
test:ok(b:add_member({uuid = U(1), uri = a:self():uri()}), 'add_member')
test:ok(c:probe_member(a:self():uri()), 'probe_member')
test:ok(wait(function() return a:size() == 3 and b:size() == 3 and c:size() == 3 end),
        'three instances converge')
test:is(c:member_by_uuid(U(1)):incarnation().generation, 1ULL, 'generation option')
local keys = 0
for k, v in c:pairs() do
    if uuid.is_uuid(k) and k == v:uuid() then keys = keys + 1 end
end
test:is(keys, 3, 'pairs gives uuid keys and members')

a:set_payload({role = 'router'})
test:ok(wait(function()
    local p = c:member_by_uuid(U(1)):payload()
    return type(p) == 'table' and p.role == 'router'
end), 'payload propagates')
test:ok(wait(function()
    for _, e in ipairs(events) do
        if e.uuid == U(1) and bit.band(e.mask, 0x20) ~= 0 then return true end
    end
end), 'payload event seen')
test:is(events[1].ctx, 'ctx!', 'ctx is passed to the trigger')

-- Batching: three updates before the event fiber runs give one event for self.
local self_events = {}
local trig = c:on_member_event(function(m, e)
    if m:uuid():str() == U(3) then table.insert(self_events, e) end
end)
c:set_payload(1) c:set_payload(2) c:set_payload(3)
test:ok(wait(function() return #self_events >= 1 end), 'self event delivered')
fiber.sleep(0.05)
test:is(#self_events, 1, 'updates are batched per member')
test:ok(self_events[1]:is_new_payload() and self_events[1]:is_new_version(), 'batched mask')
c:on_member_event(nil, trig)
test:is(#c:on_member_event(), 1, 'trigger removed')

-- An erroring trigger skips the older ones only for that event.
local older = 0
c:on_member_event(function() older = older + 1 end)
local newest = c:on_member_event(function() error('boom') end)
c:set_payload(4)
fiber.sleep(0.1)
test:is(older, 0, 'an error skips the remaining triggers')
c:on_member_event(nil, newest)
c:set_payload(5)
test:ok(wait(function() return older > 0 end), 'later events still delivered')

-- Quit: peers see left, then drop it.
local bm = c:member_by_uuid(U(2))
b:quit()
test:ok(wait(function() return bm:is_dropped() end), 'a quit member is dropped')
test:is(bm:status(), 'left', 'and keeps its last status')
test:ok(wait(function() return c:size() == 2 and a:size() == 2 end), 'both peers drop it')

-- Kill without quit: suspected, then dead.
local am = c:member_by_uuid(U(1))
a:delete()
test:ok(wait(function() return am:status() == 'dead' end), 'a deleted peer becomes dead')
test:ok(c:stat().pings_sent > 0, 'stat counters')
c:delete()

-- Bad datagrams are counted and dropped, never a crash.
do
    local victim = swim.new({ uuid = '00000000-0000-1000-8000-0000000000ed', uri = 0 })
    local port = tonumber(victim:self():uri():match(':(%d+)$'))
    local udp = require('socket')('AF_INET', 'SOCK_DGRAM', 'udp')
    udp:sendto('127.0.0.1', port, 'not a swim packet')
    wait(function() return victim:stat().dropped_decode > 0 end)
    test:is(victim:stat().dropped_decode, 1, 'a malformed datagram is counted as undecodable')
    victim:set_codec({ algo = 'aes128', mode = 'cbc', key = string.rep('k', 16) })
    udp:sendto('127.0.0.1', port, string.rep('x', 40))
    wait(function() return victim:stat().dropped_crypto > 0 end)
    test:is(victim:stat().dropped_crypto, 1, 'a datagram under another key is counted as undecryptable')
    udp:close()
    victim:delete()
end

-- node's opt-in Lifeguard extensions.
local lg = swim.new({ uuid = '00000000-0000-1000-8000-0000000000ee', uri = 0, lifeguard = true })
test:ok(lg ~= nil, 'cfg takes lifeguard = true')
test:is(lg.cfg.lifeguard, true, 'and caches it like any option')
test:is(lg:cfg({ lifeguard = { local_health = true, dynamic_suspicion = false } }), true, 'a table picks the parts')
test:like(select(2, pcall(lg.cfg, lg, { lifeguard = 'yes' })), 'swim:cfg: expected boolean or table lifeguard',
    'a bad lifeguard value is rejected')
lg:delete()

-- node's news pushing: on by default, cfg{push_news = false} turns it off.
do
    local p = new(0xf1, {push_news = false})
    test:is(p.cfg.push_news, false, 'cfg takes push_news = false')
    test:like(select(2, pcall(p.cfg, p, { push_news = 1 })), 'swim:cfg: expected boolean push_news',
        'a bad push_news value is rejected')
    p:delete()
end
-- Survivors with a clean record push their verdict on a deleted peer; with pushing off
-- they send none. A long ack timeout keeps a slow test machine from spoiling the record.
local function pushes_when_a_peer_dies(push_news)
    local opts = {heartbeat_rate = 0.05, ack_timeout = 0.5, push_news = push_news}
    local a, b, c = new(0xf2, opts), new(0xf3, opts), new(0xf4, opts)
    b:probe_member(a:self():uri())
    c:probe_member(a:self():uri())
    wait(function() return a:size() == 3 and b:size() == 3 and c:size() == 3 end)
    fiber.sleep(1.5)
    local dead = U(0xf4)
    c:delete()
    local seen = wait(function()
        return a:member_by_uuid(dead):status() == 'dead' and b:member_by_uuid(dead):status() == 'dead'
    end, 10)
    local pushes = a:stat().pushes_sent + b:stat().pushes_sent
    a:delete()
    b:delete()
    return seen, pushes
end
local seen, pushes = pushes_when_a_peer_dies(true)
test:ok(seen and pushes > 0, 'a death is pushed: '..tostring(pushes)..' pushes')
seen, pushes = pushes_when_a_peer_dies(false)
test:ok(seen and pushes == 0, 'nothing is pushed with push_news = false: '..tostring(pushes))

-- node's count of refused pings: on by default. A deleted peer's closed port refuses our
-- pings (ICMP port unreachable), and each refusal is a miss at once.
do
    local p = new(0xf5, {count_refusals = false})
    test:is(p.cfg.count_refusals, false, 'cfg takes count_refusals = false')
    test:like(select(2, pcall(p.cfg, p, { count_refusals = 'no' })), 'swim:cfg: expected boolean count_refusals',
        'a bad count_refusals value is rejected')
    p:delete()
end
local function refusals_when_a_peer_dies(count_refusals)
    local a, b = new(0xf6, {count_refusals = count_refusals}), new(0xf7)
    b:probe_member(a:self():uri())
    wait(function() return a:size() == 2 and b:size() == 2 end)
    b:delete()
    local seen = wait(function() return a:member_by_uuid(U(0xf7)):status() == 'dead' end)
    local st = a:stat()
    a:delete()
    return string.format('%s, %d refusals, %d pings refused', seen and 'dead' or 'not dead', st.refusals,
        st.pings_refused)
end
test:like(refusals_when_a_peer_dies(nil), '^dead, [1-9]%d* refusals, [5-9] pings refused',
    'each refused ping is a miss: two make a suspect, three more a dead member')
test:like(refusals_when_a_peer_dies(false), '^dead, [1-9]%d* refusals, 0 pings refused',
    'count_refusals = false reads the refusals and waits for the ack timeouts')

-- delete and a rebind free the port at once, as in Tarantool: a new instance binds it
-- without a yield in between.
do
    local s = new(0xfb)
    local uri = s:self():uri()
    s:delete()
    local t, err = swim.new({uuid = U(0xfc), uri = uri})
    test:ok(t ~= nil, 'the port of a deleted instance is free at once: '..tostring(err))
    if t then t:delete() end
    local r = new(0xfd)
    local old = r:self():uri()
    local other = swim.new({uuid = U(0xfe), uri = 0})
    local free = other:self():uri()
    other:delete()
    r:cfg({uri = free})
    t, err = swim.new({uuid = U(0xff), uri = old})
    test:ok(t ~= nil, 'and so is the old port after a rebind: '..tostring(err))
    if t then t:delete() end
    r:delete()
end

-- A refusal makes the socket's next send fail once without sending (IP_RECVERR): the driver
-- sends again. Two probes in one go: the first goes to a closed port, whose refusal comes
-- back during the send on loopback; the second must still reach its live peer.
do
    local closed = new(0xf8)
    local closed_uri = closed:self():uri()
    closed:delete()
    local a, c = new(0xf9), new(0xfa)
    a:probe_member(closed_uri)
    a:probe_member(c:self():uri())
    test:ok(wait(function() return c:size() == 2 end, 1), 'a send right after a refused one goes out')
    test:is(a:stat().send_errors, 0, 'and no send failed')
    a:delete()
    c:delete()
end

-- One timer task serves every instance of the process: a cfg that brings the next round
-- step earlier takes effect at once (with nothing else due sooner), each instance keeps its
-- own pace, and a deleted instance stops nobody else.
do
    local late, partner = new(0xe1, {heartbeat_rate = 30}), new(0xe2, {heartbeat_rate = 30})
    late:add_member({uuid = partner:self():uuid(), uri = partner:self():uri()})
    partner:add_member({uuid = late:self():uuid(), uri = late:self():uri()})
    fiber.sleep(0.1)
    local l0 = late:stat().pings_sent
    late:cfg({heartbeat_rate = 0.05})
    test:ok(wait(function() return late:stat().pings_sent >= l0 + 3 end, 1),
            'a shorter heartbeat takes effect at once, not at the old round step')
    partner:delete()
    local quick, slow = new(0xe3), new(0xe4, {heartbeat_rate = 0.25})
    for _, x in ipairs({quick, slow, late}) do
        for _, y in ipairs({quick, slow, late}) do
            if x ~= y then x:add_member({uuid = y:self():uuid(), uri = y:self():uri()}) end
        end
    end
    local p0 = {quick:stat().pings_sent, slow:stat().pings_sent}
    fiber.sleep(1)
    local q, sl = quick:stat().pings_sent - p0[1], slow:stat().pings_sent - p0[2]
    test:ok(q >= 12 and q <= 22 and sl >= 2 and sl <= 6,
            string.format('each instance pings at its own heartbeat (%d and %d in 1 s)', q, sl))
    quick:delete()
    local s0 = slow:stat().pings_sent
    test:ok(wait(function() return slow:stat().pings_sent >= s0 + 2 end, 2),
            'the others keep pinging after one is deleted')
    slow:delete()
    local m0 = late:stat().pings_sent
    test:ok(wait(function() return late:stat().pings_sent >= m0 + 3 end, 1), 'and the last one too')
    late:delete()
end

os.exit(test:check() and 0 or 1)
