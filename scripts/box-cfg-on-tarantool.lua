#!/usr/bin/env tarantool
-- Runs the box.cfg cases of tests/box_cfg/cases.lua through a real Tarantool's box.cfg and
-- prints TAP: the cases' expected texts, which tests/box_cfg_check.rs holds node's
-- lua/box/cfg_check.lua to, are Tarantool's. Not part of the test command.
--
--   tarantool scripts/box-cfg-on-tarantool.lua
--
-- Every first-call case runs in a fresh process in its own temporary directory; the
-- reconfiguration cases run in order in one more. Cases newer than the binary are skipped
-- (Debian's 2.6.0 has no election options and no quorum formula).
local fio = require('fio')
local json = require('json')

local script = fio.abspath(debug.getinfo(1, 'S').source:sub(2))
local root = fio.dirname(fio.dirname(script))
local NIL = setmetatable({}, { __tostring = function()
    return 'nil'
end })
local cases = assert(loadfile(fio.pathjoin(root, 'tests/box_cfg/cases.lua')))(box.NULL, NIL)

local function version_less(a, b)
    local pa = { a:match('^(%d+)%.(%d+)%.(%d+)') }
    local pb = { b:match('^(%d+)%.(%d+)%.(%d+)') }
    for i = 1, 3 do
        if tonumber(pa[i]) ~= tonumber(pb[i]) then
            return tonumber(pa[i]) < tonumber(pb[i])
        end
    end
    return false
end
local version = require('tarantool').version
local function skipped(case)
    return case.since ~= nil and version_less(version, case.since)
end

local function describe(opts)
    if type(opts) == 'function' then
        return '<function of ctx>'
    end
    local ok, s = pcall(json.encode, opts)
    return ok and s or tostring(opts)
end

local function same(a, b)
    if b == NIL then
        return a == nil
    end
    if type(a) == 'table' and type(b) == 'table' then
        if #a ~= #b then
            return false
        end
        for i = 1, #b do
            if a[i] ~= b[i] then
                return false
            end
        end
        return true
    end
    return a == b
end

-- Checks the outcome of pcall(box.cfg, opts) against a case; nil or what is wrong.
local function judge(case, ok, err)
    if case.err ~= nil then
        if ok then
            return 'box.cfg succeeded'
        end
        local code = case.err:find("^Can't set option") and 58 or 59
        if type(err) ~= 'cdata' or err.code ~= code or err.message ~= case.err then
            return string.format('got %s %s', type(err) == 'cdata' and err.code or '-', tostring(err))
        end
        return nil
    end
    if not ok then
        return 'box.cfg failed: ' .. tostring(err)
    end
    for k, v in pairs(case.ok) do
        if not same(box.cfg[k], v) then
            return string.format('box.cfg.%s is %s, not %s', k, describe(box.cfg[k]), describe(v))
        end
    end
    return nil
end

local function ctx()
    return { instance_uuid = box.info.uuid, replicaset_uuid = box.info.cluster.uuid }
end

local function opts_of(case)
    if type(case[1]) == 'function' then
        return case[1](ctx())
    end
    return case[1]
end

local mode = arg[1]
if mode == 'first' then
    local case = cases.first[tonumber(arg[2])]
    io.stdout:setvbuf('no')
    local ok, err = pcall(box.cfg, opts_of(case))
    print('RESULT ' .. (judge(case, ok, err) or 'pass'))
    os.exit(0)
elseif mode == 'reloads' then
    box.cfg(cases.base)
    for i, case in ipairs(cases.reloads) do
        if not skipped(case) then
            local ok, err = pcall(box.cfg, opts_of(case))
            print(string.format('RESULT %d %s', i, judge(case, ok, err) or 'pass'))
        end
    end
    os.exit(0)
end

local function run(args)
    local dir = fio.tempdir()
    local cmd = string.format('cd %s && %s %s %s 2>&1', dir, arg[-1], script, args)
    local pipe = io.popen(cmd)
    local out = pipe:read('*a')
    pipe:close()
    fio.rmtree(dir)
    return out
end

local total = #cases.first + #cases.reloads
print('1..' .. total)
print('# ' .. version)
local n, failed = 0, 0
local function report(passed, desc, why)
    n = n + 1
    if passed then
        print(string.format('ok %d - %s', n, desc))
    else
        failed = failed + 1
        print(string.format('not ok %d - %s', n, desc))
        print('#   ' .. why:gsub('\n', '\n#   '))
    end
end

for i, case in ipairs(cases.first) do
    local desc = 'first box.cfg' .. describe(case[1])
    if skipped(case) then
        report(true, desc .. ' # SKIP since ' .. case.since)
    else
        local out = run('first ' .. i)
        local result = out:match('RESULT ([^\n]*)')
        if case.fatal ~= nil then
            -- F> can't initialize storage: <message>, or the bare message (background).
            local logged = out:find(case.fatal, 1, true)
            report(result == nil and logged, desc, result and ('box.cfg returned: ' .. result) or out)
        else
            report(result == 'pass', desc, result or out)
        end
    end
end

local out = run('reloads')
for i, case in ipairs(cases.reloads) do
    local desc = 'reload box.cfg' .. describe(case[1])
    if skipped(case) then
        report(true, desc .. ' # SKIP since ' .. case.since)
    else
        local result = out:match('RESULT ' .. i .. ' ([^\n]*)')
        report(result == 'pass', desc, result or out)
    end
end
print(string.format('# %d failed', failed))
os.exit(failed == 0 and 0 or 1)
