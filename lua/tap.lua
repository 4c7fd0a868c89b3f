-- tap: Tarantool's Test Anything Protocol module, with the same output shape:
-- `TAP version 13`, a plan `1..N`, `ok - name` / `not ok - name` lines with a YAML block of
-- diagnostics, subtests indented by four spaces, and `check()` reporting the outcome.

local function indent_of(level)
    return string.rep(' ', 4 * level)
end

local function scalar(v)
    if type(v) == 'string' then
        return string.format('%q', v)
    end
    return tostring(v)
end

-- A small YAML-ish dump of the diagnostics table (got/expected may be tables).
local function dump(value, pad, out, seen)
    if type(value) ~= 'table' or seen[value] then
        return scalar(value)
    end
    seen[value] = true
    local keys = {}
    for k in pairs(value) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    if #keys == 0 then return '[]' end
    local lines = {}
    for _, k in ipairs(keys) do
        local v = value[k]
        if type(v) == 'table' and not seen[v] then
            lines[#lines + 1] = pad .. tostring(k) .. ':'
            lines[#lines + 1] = pad .. '  ' .. dump(v, pad .. '  ', out, seen):gsub('^%s+', '')
        else
            lines[#lines + 1] = pad .. tostring(k) .. ': ' .. scalar(v)
        end
    end
    return table.concat(lines, '\n')
end

local Test = {}
Test.__index = Test

local function new(parent, name)
    return setmetatable({
        parent = parent,
        name = name,
        level = parent and parent.level + 1 or 0,
        planned = nil,
        total = 0,
        failed = 0,
    }, Test)
end

function Test:_print(text)
    local pad = indent_of(self.level)
    print(pad .. text:gsub('\n', '\n' .. pad))
end

function Test:diag(fmt, ...)
    local msg = select('#', ...) > 0 and string.format(fmt, ...) or tostring(fmt)
    self:_print('# ' .. msg)
end

function Test:plan(n)
    if type(n) ~= 'number' then
        error('usage: test:plan(count)', 2)
    end
    self.planned = n
    self:_print('1..' .. n)
end

function Test:ok(cond, name, extra)
    self.total = self.total + 1
    name = name or ''
    if cond then
        self:_print('ok - ' .. name)
        return true
    end
    self.failed = self.failed + 1
    self:_print('not ok - ' .. name)
    -- Report the first frame outside this module: the line of the failed check.
    local level, info = 2, nil
    repeat
        info = debug.getinfo(level, 'Sl')
        level = level + 1
    until info == nil or not info.source:find('builtin/tap.lua', 1, true)
    info = info or {}
    local diag = { filename = info.short_src, line = info.currentline }
    for k, v in pairs(extra or {}) do diag[k] = v end
    self:_print('  ---\n' .. dump(diag, '  ', {}, {}) .. '\n  ...')
    return false
end

function Test:fail(name)
    return self:ok(false, name)
end

function Test:skip(name)
    self.total = self.total + 1
    self:_print('ok - ' .. (name or '') .. ' # skip')
    return true
end

function Test:is(got, expected, name)
    return self:ok(got == expected, name, { got = got, expected = expected })
end

function Test:isnt(got, unexpected, name)
    return self:ok(got ~= unexpected, name, { got = got, unexpected = unexpected })
end

local function deep_equal(a, b, path, strict)
    if type(a) ~= 'table' or type(b) ~= 'table' then
        if a == b then return true end
        if not strict and (a == nil) == (b == nil) and a == nil then return true end
        return false, path, a, b
    end
    for k, v in pairs(a) do
        local ok, p, x, y = deep_equal(v, b[k], path .. '/' .. tostring(k), strict)
        if not ok then return false, p, x, y end
    end
    for k, v in pairs(b) do
        if a[k] == nil then
            return false, path .. '/' .. tostring(k), nil, v
        end
    end
    return true
end

function Test:is_deeply(got, expected, name)
    local ok, path, x, y = deep_equal(got, expected, '/', false)
    if ok then return self:ok(true, name) end
    return self:ok(false, name, { path = path, got = x, expected = y })
end

function Test:like(str, pattern, name)
    local ok = type(str) == 'string' and string.find(str, pattern) ~= nil
    return self:ok(ok, name, { got = str, expected = pattern })
end

function Test:unlike(str, pattern, name)
    local ok = type(str) ~= 'string' or string.find(str, pattern) == nil
    return self:ok(ok, name, { got = str, unexpected = pattern })
end

function Test:isnil(v, name) return self:is(v, nil, name) end
function Test:isstring(v, name) return self:ok(type(v) == 'string', name, { got = type(v), expected = 'string' }) end
function Test:isnumber(v, name) return self:ok(type(v) == 'number', name, { got = type(v), expected = 'number' }) end
function Test:istable(v, name) return self:ok(type(v) == 'table', name, { got = type(v), expected = 'table' }) end
function Test:isboolean(v, name) return self:ok(type(v) == 'boolean', name, { got = type(v), expected = 'boolean' }) end
function Test:isfunction(v, name) return self:ok(type(v) == 'function', name, { got = type(v), expected = 'function' }) end
function Test:isudata(v, name) return self:ok(type(v) == 'userdata', name, { got = type(v), expected = 'userdata' }) end
function Test:iscdata(v, ctype, name)
    local ffi = require('ffi')
    return self:ok(type(v) == 'cdata' and ffi.istype(ctype, v), name, { got = type(v), expected = tostring(ctype) })
end

function Test:test(name, fn, ...)
    local sub = new(self, name)
    sub:_print('# ' .. name)
    fn(sub, ...)
    sub:_print('# ' .. name .. ': end')
    local passed = sub:check_quiet()
    if passed then
        return self:ok(true, name)
    end
    return self:ok(false, 'failed subtests', { planned = sub.planned, failed = sub.failed })
end

function Test:check_quiet()
    if self.planned ~= nil and self.planned ~= self.total then
        return false
    end
    return self.failed == 0
end

function Test:check()
    if self.planned ~= nil and self.planned ~= self.total then
        self:diag('bad plan: planned %d run %d', self.planned, self.total)
        return false
    end
    if self.failed > 0 then
        self:diag('failed subtest: %d', self.failed)
        return false
    end
    return true
end

local function test(name)
    local t = new(nil, name)
    if t.level == 0 then print('TAP version 13') end
    return t
end

return { test = test }
