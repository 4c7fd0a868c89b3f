-- A master for tests/replication_relay.rs (run by node, or by tarantool for the
-- comparisons): arg[1] is the port. The tests drive it as admin (password `admin`); `repl`
-- (the replication role) replicates; guest has no grants at all.
box.cfg{
    listen = '127.0.0.1:' .. arg[1],
    replication_timeout = 0.1,
    checkpoint_count = 1,
}
box.once('relay_test', function()
    box.schema.user.passwd('admin', 'admin')
    box.schema.user.create('repl', {password = 'pass'})
    box.schema.user.grant('repl', 'replication')
    local s = box.schema.space.create('test')
    s:create_index('pk')
    for i = 1, 100 do s:insert{i, 'row ' .. i} end
    box.schema.space.create('loc', {is_local = true}):create_index('pk')
    box.space.loc:insert{1, 'local'}
    box.schema.space.create('tmp', {temporary = true}):create_index('pk')
    box.space.tmp:insert{1, 'temporary'}
end)
