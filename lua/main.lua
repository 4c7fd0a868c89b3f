-- The main fiber: `-e` chunks, then the script (or stdin), then the console with `-i`.
-- Errors propagate to the fiber trampoline, which reports them and ends the process.
local opts, console_start = ...

return function()
    for _, text in ipairs(opts.eval) do
        local chunk, err = load(text, '=(command line)')
        if chunk == nil then error(err, 0) end
        chunk()
    end

    if opts.script ~= nil then
        local chunk, err
        if opts.script == '-' then
            chunk, err = load(io.read('*a'), '=stdin')
        else
            chunk, err = loadfile(opts.script)
        end
        if chunk == nil then error(err, 0) end
        chunk(unpack(opts.args))
    end

    if opts.interactive then
        -- `\quit` ends an interactive node, as it ends interactive Tarantool.
        if console_start() then os.exit(0) end
    end
end
