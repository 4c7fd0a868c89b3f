-- A master whose synchronous transactions need one replica's ack (quorum 2).
-- arg[1] is the port.
box.cfg{
    listen = '127.0.0.1:' .. arg[1],
    replication_synchro_quorum = 2,
    replication_synchro_timeout = 1,
    replication_timeout = 0.1,
}
box.once('relay_sync', function()
    box.schema.user.passwd('admin', 'admin')
    box.schema.user.create('repl', {password = 'pass'})
    box.schema.user.grant('repl', 'replication')
    box.schema.space.create('sync', {is_sync = true}):create_index('pk')
end)
