-- Failure injection for the tests (and for trying failures by hand); inert unless the
-- environment variables are set.
--   TWOPHASE_CRASH_AT=<point>          SIGKILL this process at that point
--   TWOPHASE_PAUSE_AT=<point>:<secs>   sleep there
-- Points: 'after_first_vote' (coordinator: the lowest-numbered participant is prepared,
-- nobody else asked), 'after_prepare' (coordinator: every vote in, nothing decided),
-- 'after_decision' (coordinator: decision recorded, nobody told), 'participant_prepared'
-- (participant: prepared state recorded, vote not sent).

local fiber = require('fiber')
local log = require('log')

local M = {}

function M.crash(point)
    if os.getenv('TWOPHASE_CRASH_AT') ~= point then
        return
    end
    log.warn('twophase: TWOPHASE_CRASH_AT=%s: killing myself', point)
    local ffi = require('ffi')
    pcall(ffi.cdef, 'int kill(int pid, int sig); int getpid(void);')
    ffi.C.kill(ffi.C.getpid(), 9)
    fiber.sleep(10)
end

function M.pause(point)
    local p, secs = (os.getenv('TWOPHASE_PAUSE_AT') or ''):match('^([%w_]+):([%d.]+)$')
    if p == point then
        fiber.sleep(tonumber(secs))
    end
end

return M
