-- Commits from many fibers in the same round as box.snapshot(): a restart must recover
-- without applying any of them twice.
local fiber = require('fiber')
local dir = arg[1]
box.cfg{work_dir = dir, log_level = 1}
local s = box.space.t or box.schema.space.create('t')
if s.index.pk == nil then s:create_index('pk') end
if arg[2] == 'fill' then
    for round = 1, 20 do
        for i = 1, 50 do
            fiber.create(function() s:insert{round * 1000 + i} end)
        end
        box.snapshot()
    end
    fiber.sleep(0.1)
    print(s:count())
else
    print(s:count())
end
os.exit()
