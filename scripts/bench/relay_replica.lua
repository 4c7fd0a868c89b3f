-- The replica of scripts/bench/relay.lua: arg[1] its port, arg[2] the master's.
box.cfg{
    listen = '127.0.0.1:' .. arg[1],
    replication = '127.0.0.1:' .. arg[2],
    read_only = true,
    replication_timeout = 0.5,
}
