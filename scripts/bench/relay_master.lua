-- The master of scripts/bench/relay.lua: arg[1] port. The driver loads it over net.box;
-- `_G.worst` is how late (s) a fiber sleeping 5 ms at a time woke, at worst.
box.cfg{listen = '127.0.0.1:' .. arg[1], replication_timeout = 0.5}
box.once('bench', function()
    box.schema.user.passwd('admin', 'admin')
    box.schema.user.grant('guest', 'replication')
    box.schema.space.create('big'):create_index('pk')
end)
_G.worst = 0
local fiber = require('fiber')
fiber.create(function()
    while true do
        local t0 = fiber.clock()
        fiber.sleep(0.005)
        _G.worst = math.max(_G.worst, fiber.clock() - t0 - 0.005)
    end
end)
function load(from, to)
    local s = box.space.big
    for i = from, to, 1000 do
        box.begin()
        for j = i, math.min(i + 999, to) do s:replace{j, string.rep('v', 80)} end
        box.commit()
    end
end
