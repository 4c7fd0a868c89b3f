-- The console's read-eval-print loop, as Tarantool's console.lua behaves: an expression is
-- tried as `return <line>` first, a chunk that is only incomplete makes the console read
-- more lines, and every evaluation prints one YAML document.
local read, write, format, NULL = ...

local load, pcall, select, type = load, pcall, select, type

local M = {}

-- Tarantool's continuation prompt is spaces as wide as the prompt word plus '> '.
local function continuation(prompt)
    return string.rep(' ', #prompt - 2) .. '> '
end

local function is_incomplete(err)
    return type(err) == 'string' and err:find("'<eof>'$") ~= nil
end

local function pack(...)
    return { n = select('#', ...), ... }
end

-- Returns the text to print, or nil when the chunk is incomplete.
local function eval(text)
    local fn = load('return ' .. text)
    local err
    if fn == nil then
        fn, err = load(text)
        if fn == nil then
            if is_incomplete(err) then return nil end
            return format(pack({ error = err }))
        end
    end
    local result = pack(pcall(fn))
    if not result[1] then
        -- `error()` raises nil; Tarantool prints it as `- error: null`.
        local err = result[2]
        if err == nil then err = NULL end
        return format(pack({ error = err }))
    end
    return format({ n = result.n - 1, select(2, unpack(result, 1, result.n)) })
end
M.eval = eval

-- Runs the loop until the input ends. `prompt` is the prompt word with '> '.
function M.repl(prompt)
    local buffer
    while true do
        local line = read(buffer and continuation(prompt) or prompt)
        if line == nil then
            return
        end
        if buffer then
            buffer = buffer .. '\n' .. line
        else
            buffer = line
        end
        local out = eval(buffer)
        if out ~= nil then
            buffer = nil
            write(out .. '\n')
        end
    end
end

-- Tab completion: the candidates that complete the last name in `text`.
local function keys_of(value, want_methods, seen, out, prefix, base)
    local t = type(value)
    if t == 'table' then
        for k, v in pairs(value) do
            if type(k) == 'string' and k:sub(1, #prefix) == prefix then
                if not want_methods or type(v) == 'function' then
                    out[base .. k] = true
                end
            end
        end
    end
    local mt = (t == 'table' or t == 'userdata' or t == 'cdata') and getmetatable(value) or nil
    if type(mt) == 'table' and not seen[mt] then
        seen[mt] = true
        local index = rawget(mt, '__index')
        if type(index) == 'table' then
            keys_of(index, want_methods, seen, out, prefix, base)
        end
        local names = rawget(mt, '__node_names')
        if type(names) == 'table' then
            for _, k in ipairs(names) do
                if k:sub(1, #prefix) == prefix then out[base .. k] = true end
            end
        end
    end
end

function M.complete(text)
    local word = text:match('[%w_%.:]*$') or ''
    local start = #text - #word
    local path, sep, prefix = word:match('^(.*)([%.:])([%w_]*)$')
    local value, base, want_methods
    if path == nil then
        value, base, prefix = _G, '', word
    else
        value = _G
        for name in path:gmatch('[^%.:]+') do
            local ok, v = pcall(function() return value[name] end)
            if not ok or v == nil then return start, {} end
            value = v
        end
        base = path .. sep
        want_methods = sep == ':'
    end
    local found = {}
    keys_of(value, want_methods, {}, found, prefix, base)
    local list = {}
    for k in pairs(found) do list[#list + 1] = k end
    table.sort(list)
    return start, list
end

return M
