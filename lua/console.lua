-- The console's read-eval-print loop, as Tarantool's console.lua behaves: an expression is
-- tried as `return <line>` first, a chunk that is only incomplete makes the console read
-- more lines, and every evaluation prints one YAML document.
local read, write, format, NULL = ...

local load, pcall, select, type = load, pcall, select, type

local M = {}

local HELP = [[
node's console runs Lua with Tarantool's API (box, fiber, swim, net.box, ...).
An expression prints its value; a statement prints nothing; errors print as error:.

Available backslash commands:

  \set output <format>       -- set output format (lua or yaml)
  \set delimiter <delimiter> -- set expression delimiter
  \help                      -- show this screen
  \quit                      -- quit interactive console
]]

-- Console settings, as Tarantool's \set commands change them.
local settings = { output = 'yaml', delimiter = '' }

-- Lua output mode: values as Lua literals, `v1, v2;` on one line.
local function lua_literal(v, seen)
    local t = type(v)
    if t == 'string' then
        return string.format('%q', v):gsub('\\\n', '\\n')
    elseif t == 'table' then
        if seen[v] then return '{...}' end
        seen[v] = true
        local parts, n = {}, #v
        for i = 1, n do parts[#parts + 1] = lua_literal(v[i], seen) end
        local keys = {}
        for k in pairs(v) do
            if not (type(k) == 'number' and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
        end
        table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
        for _, k in ipairs(keys) do
            local key = (type(k) == 'string' and k:match('^[%a_][%w_]*$')) and k or ('[' .. lua_literal(k, seen) .. ']')
            parts[#parts + 1] = key .. ' = ' .. lua_literal(v[k], seen)
        end
        seen[v] = nil
        return '{' .. table.concat(parts, ', ') .. '}'
    elseif v == nil then
        return 'nil'
    end
    return tostring(v)
end

local function format_lua(values)
    local parts = {}
    for i = 1, values.n do parts[i] = lua_literal(values[i], {}) end
    return table.concat(parts, ', ') .. ';'
end

local yaml_format = format
format = function(values)
    if settings.output == 'lua' then return format_lua(values) end
    return yaml_format(values)
end

-- Backslash commands; returns the text to print, or nil if the line is not one.
local function command(line)
    local cmd = line:match('^%s*\\(.*)$')
    if cmd == nil then
        if line:match('^%s*help%s*$') then cmd = 'help' else return nil end
    end
    local words = {}
    for w in cmd:gmatch('%S+') do words[#words + 1] = w end
    local pack1 = function(v) return format({ n = 1, v }) end
    if words[1] == 'help' or words[1] == 'h' then
        return pack1(HELP)
    elseif words[1] == 'quit' or words[1] == 'q' then
        os.exit(0)
    elseif words[1] == 'set' and words[2] == 'output' and (words[3] == 'lua' or words[3] == 'yaml') then
        settings.output = words[3]
        return pack1(true)
    elseif words[1] == 'set' and words[2] == 'delimiter' then
        settings.delimiter = words[3] or ''
        return format({ n = 0 })
    end
    return pack1({ error = 'Invalid command: \\' .. cmd })
end

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

-- A YAML document ends with a newline already, so this leaves the empty line Tarantool
-- prints after it; a Lua-mode line gets just its newline.
local function show(out)
    write(out .. '\n')
end

-- Runs the loop until the input ends. `prompt` is the prompt word with '> '.
function M.repl(prompt)
    local buffer
    while true do
        local line = read(buffer and continuation(prompt) or prompt)
        if line == nil then
            return
        end
        local out
        if buffer == nil then out = command(line) end
        if out ~= nil then
            show(out)
        else
            buffer = buffer and (buffer .. '\n' .. line) or line
            local delim = settings.delimiter
            if delim == '' then
                out = eval(buffer)
            elseif buffer:sub(-#delim) == delim then
                out = eval(buffer:sub(1, -#delim - 1))
                -- With a delimiter, only the delimiter ends a chunk.
                if out == nil then out = eval(buffer:sub(1, -#delim - 1) .. '\n') or format({ n = 1, { error = 'incomplete chunk' } }) end
            end
            if out ~= nil then
                buffer = nil
                show(out)
            end
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
