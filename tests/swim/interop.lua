-- One member of a mixed swim cluster; runs unchanged on tarantool and on node.
--   <runtime> interop.lua <port> <state_dir> [seed_port]
-- Joins through seed_port, sets its payload to 'p<port>', and every 0.1 s writes what it
-- sees to <state_dir>/<port>.json: { [uuid] = {status, generation, payload} }.
local swim = require('swim')
local fiber = require('fiber')
local json = require('json')

local port = tonumber(arg[1])
local dir = arg[2]
local seed = tonumber(arg[3])
local uuid = string.format('00000000-0000-4000-8000-%012d', port)

local s = assert(swim.new({ uuid = uuid, uri = port, heartbeat_rate = 0.1, ack_timeout = 0.1, gc_mode = 'off' }))
-- SWIM_CODEC='algo:mode:key' encrypts the traffic (both runtimes must agree).
local codec = os.getenv('SWIM_CODEC')
if codec ~= nil and codec ~= '' then
    local algo, mode, key = codec:match('^([^:]+):([^:]+):(.+)$')
    assert(s:set_codec({ algo = algo, mode = mode, key = key }))
end
s:set_payload('p' .. port)
-- The seed may not be up yet: probe it until it is in our table.
if seed ~= nil then
    local seed_uuid = string.format('00000000-0000-4000-8000-%012d', seed)
    fiber.create(function()
        while s:member_by_uuid(seed_uuid) == nil do
            s:probe_member(seed)
            fiber.sleep(0.2)
        end
    end)
end

fiber.create(function()
    while true do
        local view = {}
        for _, m in s:pairs() do
            local inc = m:incarnation()
            local payload = m:payload()
            view[tostring(m:uuid())] = {
                status = m:status(),
                generation = tostring(inc.generation):gsub('ULL$', ''),
                payload = type(payload) == 'string' and payload or json.NULL,
            }
        end
        local tmp = dir .. '/' .. port .. '.tmp'
        local f = io.open(tmp, 'w')
        f:write(json.encode(view))
        f:close()
        os.rename(tmp, dir .. '/' .. port .. '.json')
        fiber.sleep(0.1)
    end
end)
