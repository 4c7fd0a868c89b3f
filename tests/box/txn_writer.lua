-- Writer for the torn-tail and bit-flip tests of tests/box_crash.rs. Runs unchanged on
-- tarantool and node:
--   <binary> txn_writer.lua <dir> <n> [first]
-- With wal_mode = 'write', commits <n> transactions numbered first, first+1, ... (first
-- defaults to 1) one after another from one fiber, so each lands in its own xlog block;
-- transaction i inserts keys i*10+1, i*10+2, i*10+3. Then exits cleanly with os.exit(0).
local dir, n, first = arg[1], tonumber(arg[2] or '100'), tonumber(arg[3] or '1')
assert(dir ~= nil, 'usage: txn_writer.lua <dir> <n> [first]')

box.cfg{work_dir = dir, wal_mode = 'write', log_level = 4}
local s = box.schema.space.create('test', {if_not_exists = true})
s:create_index('pk', {if_not_exists = true})
for i = first, first + n - 1 do
    box.begin()
    for j = 1, 3 do
        s:insert{i * 10 + j, i, string.rep('x', 20)}
    end
    box.commit()
end
io.stdout:write('done\n')
io.stdout:flush()
os.exit(0)
