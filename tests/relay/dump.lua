-- Every replicated space's name and rows, sorted by name: what master and replica must
-- agree on.
local names, rows = {}, {}
for _, s in box.space._space:pairs() do
    local sp = box.space[s[1]]
    if sp ~= nil and sp.engine == 'memtx' and not sp.temporary and not sp.is_local then
        table.insert(names, s[3])
        rows[s[3]] = sp:select{}
    end
end
table.sort(names)
local r = {}
for _, n in ipairs(names) do table.insert(r, {n, rows[n]}) end
return r
