-- Captures real Tarantool 2.6.0 swim datagrams for node's codec tests (run: tarantool capture.lua).
-- A swim instance A (127.0.0.1:3330) gossips to two plain UDP sockets, SPY (:3331, never answers
-- pings, so A suspects it and sends indirect pings through HELPER) and HELPER (:3332). SPY also
-- sends A one hand-made ping to get an ack back, then A quits. Then one instance per algo/mode
-- pings SPY with a known key. Every datagram is printed as `kind src_port hex`.
local swim = require('swim')
local socket = require('socket')
local fiber = require('fiber')

local function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end
local function unhex(h) return (h:gsub('%x%x', function(x) return string.char(tonumber(x, 16)) end)) end
local function udp(port)
    local s = socket('AF_INET', 'SOCK_DGRAM', 'udp')
    assert(s:bind('127.0.0.1', port))
    return s
end
local spy, helper = udp(3331), udp(3332)
local seen = {}
local function drain(s, name, secs)
    local deadline = fiber.clock() + secs
    while fiber.clock() < deadline do
        if s:readable(0.01) then
            local data, from = s:recvfrom(2000)
            if data then
                local ack = data:find('\x02\x83\x00\x01', 1, true) and 'ack' or ''
                local key = name .. ' ' .. from.port .. ' ' .. #data .. ack
                if not seen[key] then
                    seen[key] = true
                    print(string.format('%s from=%d len=%d %s', name, from.port, #data, hex(data)))
                end
            end
        end
    end
end

local A = swim.new({generation = 7})
assert(A:cfg({uuid = '804f00ed-271c-47fa-844e-df4c6e0d3301', uri = '127.0.0.1:3330',
              heartbeat_rate = 0.1, ack_timeout = 0.1, gc_mode = 'off'}))
A:set_payload_raw('hello')
A:add_member({uuid = '0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9', uri = '127.0.0.1:3331'})
A:add_member({uuid = 'fedcba98-7654-3210-0123-456789abcdef', uri = '127.0.0.1:3332'})
fiber.create(drain, helper, 'HELPER', 2)
drain(spy, 'SPY', 1.2)
-- A hand-made ping from SPY (minimal-width MessagePack): {0: 0x20600, 1: 127.0.0.1, 2: 3331}
-- {0: uuid 0a1b2c3d-... (GUID order), 2: {0: 0, 1: 3, 2: 4}}
spy:sendto('127.0.0.1', 3330, unhex('8300ce0002060001ce7f00000102cd0d03' ..
    '8200c4103d2c1b0a5f4e71608293a4b5c6d7e8f9' .. '0283000001030204'))
drain(spy, 'SPY', 0.5)
A:quit()
drain(spy, 'SPY', 0.3)

-- The biggest payload (1200 bytes, bin16 with length 0x04b0).
local B = swim.new()
assert(B:cfg({uuid = '00000000-0000-4000-8000-000000003335', uri = 3335, heartbeat_rate = 0.1}))
B:set_payload_raw(string.rep('x', 1200))
B:add_member({uuid = '0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9', uri = '127.0.0.1:3331'})
seen = {}
drain(spy, 'BIG', 0.15)
B:delete()

local keys = {aes128 = '0123456789abcdef', aes192 = '0123456789abcdef01234567',
              aes256 = '0123456789abcdef0123456789abcdef', des = '12345678'}
local port = 3340
for _, algo in ipairs({'aes128', 'aes192', 'aes256', 'des'}) do
    for _, mode in ipairs({'ecb', 'cbc', 'cfb', 'ofb'}) do
        port = port + 1
        local s = swim.new({generation = 1})
        assert(s:set_codec({algo = algo, mode = mode, key = keys[algo]}))
        assert(s:cfg({uuid = string.format('00000000-0000-4000-8000-0000000033%02d', port - 3300),
                      uri = port, heartbeat_rate = 0.1, ack_timeout = 5}))
        s:add_member({uuid = '0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9', uri = '127.0.0.1:3331'})
        seen = {}
        io.write(string.format('# %s %s key=%s\n', algo, mode, hex(keys[algo])))
        drain(spy, algo .. ':' .. mode, 0.3)
        s:delete()
    end
end
-- Key-size errors of set_codec.
local s = swim.new()
for _, c in ipairs({{'aes128', ''}, {'aes128', '0123456789abcdef0'}, {'aes192', '0123456789abcdef'},
                    {'aes256', '0123456789abcdef'}, {'des', '1234567'}, {'des', '123456789'},
                    {'none', 'whatever'}}) do
    print('set_codec', c[1], #c[2], s:set_codec({algo = c[1], mode = 'cbc', key = c[2]}))
end
print('set_codec des ecb no key', s:set_codec({algo = 'des', mode = 'ecb'}))
print('set_codec aes128 default mode', s:set_codec({algo = 'aes128', key = keys.aes128}))
os.exit(0)
