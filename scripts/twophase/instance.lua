-- One instance of the two-phase-commit demo:
--   node scripts/twophase/instance.lua <n> [topology]        (in the background)
--   node -i scripts/twophase/instance.lua <n> [topology]     (with a console:
--       twophase.apply{[1] = '8080', [2] = '8083', [3] = '8082', [4] = box.NULL})
-- The topology defaults to $TWOPHASE_TOPOLOGY, then cluster.lua beside this script.

local fio = require('fio')
local dir = fio.dirname(fio.abspath(arg[0]))
package.path = dir .. '/?.lua;' .. dir .. '/?/init.lua;' .. package.path

local n = tonumber(arg[1])
if n == nil then
    io.stderr:write('usage: node instance.lua <instance number> [topology file]\n')
    os.exit(2)
end
local topo = arg[2] or os.getenv('TWOPHASE_TOPOLOGY') or fio.pathjoin(dir, 'cluster.lua')

_G.twophase = require('twophase').start(n, fio.abspath(topo))
