-- A master whose synchronous transactions cannot gather their quorum (2, with no
-- replica): each rolls back after replication_synchro_timeout. arg[1] is the port.
box.cfg{
    listen = '127.0.0.1:' .. arg[1],
    replication_synchro_quorum = 2,
    replication_synchro_timeout = 1,
}
box.schema.user.passwd('admin', 'admin')
box.schema.user.grant('guest', 'replication')
box.schema.space.create('sync', {is_sync = true}):create_index('pk')
