-- Runs once in every Lua state before any user code. It makes the standard library behave
-- as it does in Tarantool on top of mlua: caught errors are Tarantool's values (not mlua's
-- userdata), `print` goes through node's single output writer, and a plain coroutine
-- inside a fiber may call yielding functions such as fiber.sleep.
local convert, write, exit, pending, yield_marker = ...

local type, select, tostring = type, select, tostring
local raw_pcall, raw_xpcall, raw_error = pcall, xpcall, error
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local concat = table.concat

local function fix(ok, ...)
    if ok then return ok, ... end
    local e = ...
    if type(e) == 'userdata' then e = convert(e) end
    return false, e
end

pcall = function(f, ...)
    return fix(raw_pcall(f, ...))
end

xpcall = function(f, handler, ...)
    return raw_xpcall(f, function(e)
        if type(e) == 'userdata' then e = convert(e) end
        return handler(e)
    end, ...)
end

-- A fiber suspends by yielding a marker to its driver: mlua's "poll pending" (park until
-- woken) or node's yield marker (back of the ready queue). Inside a plain coroutine such a
-- marker would reach coroutine.resume; pass it further up and resume the inner coroutine
-- once the driver resumes us.
local function step(co, ok, ...)
    if ok and select('#', ...) == 1 then
        local v = ...
        if v == pending or v == yield_marker then
            -- What the driver resumes us with (a park outcome) goes on down.
            return step(co, co_resume(co, co_yield(v)))
        end
    end
    return fix(ok, ...)
end

coroutine.resume = function(co, ...)
    return step(co, co_resume(co, ...))
end

local function unwrap(ok, ...)
    if ok then return ... end
    raw_error((...), 0)
end

coroutine.wrap = function(f)
    local co = co_create(f)
    return function(...)
        return unwrap(coroutine.resume(co, ...))
    end
end

print = function(...)
    local n = select('#', ...)
    local parts = {}
    for i = 1, n do
        parts[i] = tostring((select(i, ...)))
    end
    write(concat(parts, '\t') .. '\n')
end

os.exit = exit

-- io.write and friends go straight to fd 1, so they keep their place among node's output.
io.stdout:setvbuf('no')

-- The unwrapped resume, for the fiber scheduler's own use.
return co_resume
