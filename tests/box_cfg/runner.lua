-- Runs tests/box_cfg/cases.lua through lua/box/cfg_check.lua (for tests/box_cfg_check.rs):
-- returns the number of cases run and a list of what went wrong.
local M, cases, NIL, which = ...

local function show(v)
    if v == NIL then
        return 'nil'
    end
    if type(v) == 'table' then
        local parts = {}
        for i, x in ipairs(v) do
            parts[i] = show(x)
        end
        return '{' .. table.concat(parts, ', ') .. '}'
    end
    if type(v) == 'string' then
        return string.format('%q', v)
    end
    return tostring(v)
end

local function describe(opts)
    if type(opts) ~= 'table' then
        return tostring(opts)
    end
    local keys = {}
    for k in pairs(opts) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
        return tostring(a) < tostring(b)
    end)
    local parts = {}
    for _, k in ipairs(keys) do
        local v = opts[k]
        if type(v) == 'table' and #v > 4 then
            v = '{...}'
        else
            v = show(v)
        end
        parts[#parts + 1] = tostring(k) .. ' = ' .. v
    end
    return '{' .. table.concat(parts, ', ') .. '}'
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

-- nil, or what is wrong with check()'s answer for the case.
local function judge(case, new, err)
    if case.err ~= nil or case.fatal ~= nil then
        if new ~= nil then
            return 'check() accepted it'
        end
        local want = case.err or case.fatal
        -- Fatal errors but background's are ER_CFG.
        local code = nil
        if want:find("^Can't set option") then
            code = 58
        elseif want:find('^Incorrect value') then
            code = 59
        end
        if err.message ~= want or err.code ~= code or err.fatal ~= (case.fatal ~= nil) then
            return string.format('got code %s, fatal %s: %s', tostring(err.code), tostring(err.fatal), err.message)
        end
        return nil
    end
    if new == nil then
        return string.format('check() failed: %s', err.message)
    end
    for k, v in pairs(case.ok) do
        if not same(new[k], v) then
            return string.format('%s is %s, not %s', k, show(new[k]), show(v))
        end
    end
    return nil
end

local failures = {}
local count = 0
local function run(list, current, ctx, label)
    for i, case in ipairs(list) do
        count = count + 1
        local opts = case[1]
        if type(opts) == 'function' then
            opts = opts(ctx)
        end
        local new, err = M.check(opts, current, ctx)
        local why = judge(case, new, err)
        if why ~= nil then
            failures[#failures + 1] = string.format('%s #%d %s: %s', label, i, describe(opts), why)
        end
        if current ~= nil and new ~= nil then
            current = new
        end
    end
end

if which == 'first' then
    run(cases.first, nil, nil, 'first call')
else
    local ctx = {
        instance_uuid = 'c0ffee00-0000-4000-8000-000000000001',
        replicaset_uuid = 'c0ffee00-0000-4000-8000-000000000002',
    }
    local current = assert(M.check(cases.base))
    run(cases.reloads, current, ctx, 'reload')
end
return count, failures
