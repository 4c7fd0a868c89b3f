-- box.cfg cases with what Tarantool answers, shared by tests/box_cfg_check.rs (which runs
-- them through lua/box/cfg_check.lua) and scripts/box-cfg-on-tarantool.lua (which runs them
-- through a real Tarantool's box.cfg, to show the expectations are Tarantool's).
--
-- Called with box.NULL and NIL, a marker for "reads back as nil".
-- A case is {opts, <outcome>, since = 'x.y.z'} where opts is the box.cfg argument (or a
-- function of ctx = {instance_uuid = box.info.uuid, replicaset_uuid = ...} giving it) and
-- the outcome one of:
--   err = message       box.cfg raises it: code 58 for "Can't set option ...", else 59
--   fatal = message     the first box.cfg does not return: the instance logs
--                       "can't initialize storage: <message>" (or the message itself) and exits
--   ok = {k = v, ...}   box.cfg succeeds and box.cfg.k reads back v (NIL: nil)
-- `since` is the first Tarantool version with the behaviour (the harness skips the case on an
-- older binary; Debian's 2.6.0 has no election options and no quorum formula).
local NULL, NIL = ...

local unexpected = "Incorrect value for option '%s': unexpected option"
local bad_uri = "Incorrect value for option '%s': expected host:service or /unix.socket"
local function cfgerr(name, reason)
    return string.format("Incorrect value for option '%s': %s", name, reason)
end
local function reload(name)
    return string.format("Can't set option '%s' dynamically", name)
end

local LEVELS = 'expected crit,warn,info,debug,syserror,verbose,fatal,error'
local many = {}
for i = 1, 32 do
    many[i] = 'unix/:./nobody' .. i .. '.sock'
end

-- Each on a fresh instance.
local first = {
    -- names and types
    { { foo = 1 }, err = unexpected:format('foo') },
    { { [1] = 2 }, err = unexpected:format('1') },
    { { rows_per_wal = 10 }, err = unexpected:format('rows_per_wal') },
    { { election_is_enabled = true }, err = unexpected:format('election_is_enabled'), since = '2.6.1' },
    { { read_only = 'x' }, err = cfgerr('read_only', 'should be of type boolean') },
    { { work_dir = 1 }, err = cfgerr('work_dir', 'should be of type string') },
    { { too_long_threshold = 'x' }, err = cfgerr('too_long_threshold', 'should be of type number') },
    { { instance_uuid = 1 }, err = cfgerr('instance_uuid', 'should be of type string') },
    { { wal_mode = 1 }, err = cfgerr('wal_mode', 'should be of type string') },
    { { listen = {} }, err = cfgerr('listen', 'should be one of types string, number') },
    { { listen = true }, err = cfgerr('listen', 'should be one of types string, number') },
    { { replication = true }, err = cfgerr('replication', 'should be one of types string, number, table') },
    { { replication_synchro_quorum = true }, err = cfgerr('replication_synchro_quorum',
        'should be one of types string, number'), since = '2.6.2' },
    { { election_mode = 1 }, err = cfgerr('election_mode', 'should be of type string'), since = '2.6.1' },
    { { election_timeout = '1' }, err = cfgerr('election_timeout', 'should be of type number'), since = '2.6.1' },
    -- deprecated names
    { { snap_dir = 'x', memtx_dir = 'y' }, err = cfgerr('snap_dir', 'can not override a value for a deprecated option') },
    { { slab_alloc_arena = -1 }, err = cfgerr('memtx_memory',
        'must be >= 0 and <= 4398046510080, but it is -1073741824') },
    { { snapshot_count = 3 }, ok = { checkpoint_count = 3, snapshot_count = NIL } },
    { { panic_on_wal_error = false }, ok = { force_recovery = true } },
    -- listen and replication URIs
    { { listen = 'abc' }, err = bad_uri:format('listen') },
    { { listen = 'localhost' }, err = bad_uri:format('listen') },
    { { listen = 'localhost:' }, err = bad_uri:format('listen') },
    { { listen = ':3301' }, err = bad_uri:format('listen') },
    { { listen = 'localhost:abc1' }, err = bad_uri:format('listen') },
    { { listen = './x.sock' }, err = bad_uri:format('listen') },
    { { listen = '/tmp/x?y' }, err = bad_uri:format('listen') },
    { { listen = -1 }, err = bad_uri:format('listen') },
    { { listen = 1.5 }, err = bad_uri:format('listen') },
    { { listen = 'unix/:/a:b', wal_mode = 'bad' }, err = cfgerr('wal_mode', 'bad') },
    { { listen = '/tmp/x.sock', wal_mode = 'bad' }, err = cfgerr('wal_mode', 'bad') },
    { { listen = 'localhost:3301', wal_mode = 'bad' }, err = cfgerr('wal_mode', 'bad') },
    { { listen = 'user:pass@localhost:3301', wal_mode = 'bad' }, err = cfgerr('wal_mode', 'bad') },
    { { listen = '[::1]:3301', wal_mode = 'bad' }, err = cfgerr('wal_mode', 'bad') },
    { { listen = 'localhost:http', wal_mode = 'bad' }, err = cfgerr('wal_mode', 'bad') },
    { { listen = 3301, wal_mode = 'bad' }, err = cfgerr('wal_mode', 'bad') },
    { { listen = '*:3301', wal_mode = 'bad' }, err = cfgerr('wal_mode', 'bad') },
    { { listen = 'unix/:./x.sock' }, ok = { listen = 'unix/:./x.sock' } },
    { { listen = '' }, ok = { listen = NIL } },
    { { listen = NULL }, ok = { listen = NIL } },
    { { replication = 'abc' }, err = bad_uri:format('replication') },
    { { replication = { 'abc' } }, err = bad_uri:format('replication') },
    { { replication = { 'localhost:3301', 'abc' } }, err = bad_uri:format('replication') },
    { { replication = { {} } }, err = bad_uri:format('replication') },
    { { replication = { 1, {} } }, err = bad_uri:format('replication') },
    { { replication = 3301.5 }, err = bad_uri:format('replication') },
    { { replication = {} }, ok = { replication = {} } },
    { { replication = '' }, ok = { replication = {} } },
    -- log_*
    { { log_level = 'foo' }, err = cfgerr('log_level', LEVELS) },
    { { log_level = true }, err = cfgerr('log_level', 'must be a number or a string') },
    { { log_level = {} }, err = cfgerr('log_level', 'must be a number or a string') },
    { { log_format = 'foo' }, err = cfgerr('log_format', 'expected json,plain') },
    { { log_format = 1 }, err = cfgerr('log_format', 'expected json,plain') },
    { { log_format = 'json', log = 'syslog:identity=x' }, err = cfgerr('log_format',
        "json can't be used with syslog logger") },
    { { log = 'abc:def' }, err = cfgerr('log', "expecting a file name or a prefix, such as '|', 'pipe:', 'syslog:'") },
    { { log = 'syslog:foo=1' }, err = cfgerr('log', "bad option 'foo=1'") },
    { { log = 'syslog:identity' }, err = cfgerr('log', "bad option 'identity'") },
    { { log = 'syslog:identity=a,identity=b' }, err = cfgerr('log', "duplicate option 'identity'") },
    { { log = 'syslog:facility=foo' }, err = cfgerr('log', "bad syslog facility option 'foo'") },
    { { log_nonblock = true }, err = cfgerr('log_nonblock', 'the option is incompatible with file/stderr logger') },
    { { log_nonblock = 'x' }, err = cfgerr('log_nonblock', 'the option is incompatible with file/stderr logger') },
    { { log_nonblock = true, log = 'file:x.log' }, err = cfgerr('log_nonblock',
        'the option is incompatible with file/stderr logger') },
    { { log_level = 'warn' }, ok = { log_level = 'warn' } },
    { { log_level = 4.5 }, ok = { log_level = 4.5 } },
    { { log_level = '' }, ok = { log_level = 5 } },
    { { log_format = 'json' }, ok = { log_format = 'json' } },
    { { log = 'x.log', log_nonblock = false }, ok = { log = 'x.log', log_nonblock = false } },
    -- uuids
    { { instance_uuid = 'not-a-uuid' }, err = cfgerr('instance_uuid', 'not-a-uuid') },
    { { instance_uuid = '00000000-0000-0000-0000-000000000000' }, err = cfgerr('instance_uuid',
        'nil UUID is reserved') },
    { { instance_uuid = 'ffffffff-ffff-ffff-ffff-ffffffffffff' }, err = cfgerr('instance_uuid',
        'ffffffff-ffff-ffff-ffff-ffffffffffff') },
    { { replicaset_uuid = 'zz' }, err = cfgerr('replicaset_uuid', 'zz') },
    { { instance_uuid = 'A0000000-0000-4000-8000-00000000000B' }, ok = {
        instance_uuid = 'A0000000-0000-4000-8000-00000000000B' } },
    -- replication_*
    { { replication_timeout = 0 }, err = cfgerr('replication_timeout', 'the value must be greather than 0') },
    { { replication_timeout = -1 }, err = cfgerr('replication_timeout', 'the value must be greather than 0') },
    { { replication_connect_timeout = 0 }, err = cfgerr('replication_connect_timeout',
        'the value must be greather than 0') },
    { { replication_connect_quorum = -1 }, err = cfgerr('replication_connect_quorum',
        'the value must be greater or equal to 0') },
    { { replication_sync_lag = 0 }, err = cfgerr('replication_sync_lag', 'the value must be greater than 0') },
    { { replication_sync_timeout = 0 }, err = cfgerr('replication_sync_timeout', 'the value must be greater than 0') },
    { { replication_synchro_timeout = 0 }, err = cfgerr('replication_synchro_timeout',
        'the value must be greater than zero') },
    { { replication_synchro_quorum = 0 }, err = cfgerr('replication_synchro_quorum',
        'the value must be greater than zero and less than maximal number of replicas') },
    { { replication_synchro_quorum = 32 }, err = cfgerr('replication_synchro_quorum',
        'the value must be greater than zero and less than maximal number of replicas') },
    { { replication_synchro_quorum = 0.5 }, err = cfgerr('replication_synchro_quorum',
        'the value must be greater than zero and less than maximal number of replicas') },
    { { replication_synchro_quorum = 31.5 }, ok = { replication_synchro_quorum = 31.5 } },
    -- the quorum formula (2.6.2)
    { { replication_synchro_quorum = 'N / 2 +' }, err = cfgerr('replication_synchro_quorum',
        '[string "local expr = [[N / 2 +]]..."]:3: Failed to load N / 2 +:[string "return (N / 2 +)"]:1: '
            .. "unexpected symbol near ')'"), since = '2.6.2' },
    { { replication_synchro_quorum = 'N - 1' }, err = cfgerr('replication_synchro_quorum',
        'the formula is evaluated to the quorum 0 for replica number 1, which is out of range [1;31]'),
        since = '2.6.2' },
    { { replication_synchro_quorum = 'N * 2' }, err = cfgerr('replication_synchro_quorum',
        'the formula is evaluated to the quorum 32 for replica number 16, which is out of range [1;31]'),
        since = '2.6.2' },
    { { replication_synchro_quorum = 'x' }, err = cfgerr('replication_synchro_quorum',
        '[string "local expr = [[x]]..."]:7: Expression should return a number'), since = '2.6.2' },
    { { replication_synchro_quorum = 'foo()' }, err = cfgerr('replication_synchro_quorum',
        '[string "return (foo())"]:1: attempt to call global \'foo\' (a nil value)'), since = '2.6.2' },
    { { replication_synchro_quorum = ']]' }, err = cfgerr('replication_synchro_quorum',
        'attempt to call a string value'), since = '2.6.2' },
    { { replication_synchro_quorum = '0' }, err = cfgerr('replication_synchro_quorum',
        'the value must be greater than zero and less than maximal number of replicas'), since = '2.6.2' },
    { { replication_synchro_quorum = 'N / 2 + 1' }, ok = { replication_synchro_quorum = 'N / 2 + 1' },
        since = '2.6.2' },
    { { replication_synchro_quorum = 'math.max(1, math.floor(N * 0.6))' }, ok = {
        replication_synchro_quorum = 'math.max(1, math.floor(N * 0.6))' }, since = '2.6.2' },
    { { replication_synchro_quorum = '3' }, ok = { replication_synchro_quorum = '3' }, since = '2.6.2' },
    -- election (2.6.1; the 2.6.3 texts)
    { { election_mode = 'x' }, err = cfgerr('election_mode',
        "the value must be one of the following strings: 'off', 'voter', 'candidate', 'manual'"), since = '2.6.3' },
    { { election_timeout = 0 }, err = cfgerr('election_timeout', 'the value must be a positive number'),
        since = '2.6.1' },
    { { election_mode = 'candidate', election_timeout = 0.5 }, ok = { election_mode = 'candidate',
        election_timeout = 0.5 }, since = '2.6.1' },
    { { election_mode = 'manual' }, ok = { election_mode = 'manual' }, since = '2.6.3' },
    -- sizes and counts
    { { memtx_memory = -1 }, err = cfgerr('memtx_memory', 'must be >= 0 and <= 4398046510080, but it is -1') },
    { { memtx_memory = 1e300 }, err = cfgerr('memtx_memory',
        'must be >= 0 and <= 4398046510080, but it is -9223372036854775808') },
    { { memtx_memory = 4398046510081 }, err = cfgerr('memtx_memory',
        'must be >= 0 and <= 4398046510080, but it is 4398046510081') },
    { { checkpoint_count = 0 }, err = cfgerr('checkpoint_count', 'the value must not be less than one') },
    { { checkpoint_count = 0.5 }, err = cfgerr('checkpoint_count', 'the value must not be less than one') },
    { { checkpoint_count = 2 ^ 32 }, err = cfgerr('checkpoint_count', 'the value must not be less than one') },
    { { readahead = 1 }, err = cfgerr('readahead', 'specified value is out of bounds') },
    { { readahead = 2 ^ 31 }, err = cfgerr('readahead', 'specified value is out of bounds') },
    { { wal_max_size = 1 }, err = cfgerr('wal_max_size', 'the value must be greater than one') },
    { { wal_mode = 'foo' }, err = cfgerr('wal_mode', 'foo') },
    { { wal_queue_max_size = -1 }, err = cfgerr('wal_queue_max_size', 'wal_queue_max_size must be >= 0'),
        since = '2.6.3' },
    { { wal_cleanup_delay = -1 }, err = cfgerr('wal_cleanup_delay', 'value must be >= 0'), since = '2.6.3' },
    { { sql_cache_size = -1 }, err = cfgerr('sql_cache_size', 'must be non-negative') },
    { { memtx_min_tuple_size = 4 }, err = cfgerr('memtx_min_tuple_size', 'specified value is out of bounds') },
    { { memtx_min_tuple_size = 1048281 }, err = cfgerr('memtx_min_tuple_size', 'specified value is out of bounds') },
    { { vinyl_memory = -1 }, err = cfgerr('vinyl_memory', 'must be >= 0 and <= 4398046510080, but it is -1') },
    { { vinyl_read_threads = 0 }, err = cfgerr('vinyl_read_threads', 'must be greater than or equal to 1') },
    { { vinyl_write_threads = 1 }, err = cfgerr('vinyl_write_threads', 'must be greater than or equal to 2') },
    { { vinyl_page_size = 0 }, err = cfgerr('vinyl_page_size',
        'must be greater than 0 and less than or equal to vinyl_range_size') },
    { { vinyl_range_size = 100, vinyl_page_size = 200 }, err = cfgerr('vinyl_page_size',
        'must be greater than 0 and less than or equal to vinyl_range_size') },
    { { vinyl_run_count_per_level = 0 }, err = cfgerr('vinyl_run_count_per_level', 'must be greater than 0') },
    { { vinyl_run_size_ratio = 1 }, err = cfgerr('vinyl_run_size_ratio', 'must be greater than 1') },
    { { vinyl_bloom_fpr = 0 }, err = cfgerr('vinyl_bloom_fpr', 'must be greater than 0 and less than or equal to 1') },
    { { vinyl_bloom_fpr = 1.5 }, err = cfgerr('vinyl_bloom_fpr',
        'must be greater than 0 and less than or equal to 1') },
    { { readahead = 16320.7, memtx_dir = '' }, ok = { readahead = 16320.7, memtx_dir = '.' } },
    -- values reach C through a 256-byte buffer; messages stop at 511 bytes
    { { wal_mode = string.rep('w', 600) }, err = cfgerr('wal_mode', string.rep('w', 255)) },
    { { [string.rep('k', 600)] = 1 }, err = unexpected:format(string.rep('k', 600)):sub(1, 511) },
    -- box_check_config's order: say, listen, uuids, election, replication, ...
    { { listen = 'bad', log = 'abc:def' }, err = cfgerr('log',
        "expecting a file name or a prefix, such as '|', 'pipe:', 'syslog:'") },
    { { listen = 'bad', instance_uuid = 'bad' }, err = bad_uri:format('listen') },
    { { replication_timeout = 0, readahead = 1 }, err = cfgerr('replication_timeout',
        'the value must be greather than 0') },
    -- found only while the instance starts
    { { net_msg_max = 1 }, fatal = cfgerr('net_msg_max', 'minimal value is 2') },
    { { replication_anon = true }, fatal = cfgerr('replication_anon',
        'the value may be set to true only when the instance is read-only') },
    { { background = true }, fatal = "'background' requires 'log' configuration option to be set" },
    { { background = true, log = 'x.log' }, fatal = "'background' requires 'pid_file' configuration option to be set" },
    -- defaults
    { {}, ok = {
        listen = NIL, work_dir = NIL, memtx_dir = '.', wal_dir = '.', vinyl_dir = '.', wal_mode = 'write',
        memtx_memory = 268435456, read_only = false, replication = NIL, replication_timeout = 1,
        replication_connect_timeout = 30, replication_connect_quorum = NIL, replication_sync_lag = 10,
        replication_sync_timeout = 300, replication_skip_conflict = false, replication_anon = false,
        replication_synchro_quorum = 1, replication_synchro_timeout = 5, instance_uuid = NIL,
        replicaset_uuid = NIL, log = NIL, log_level = 5, log_format = 'plain', log_nonblock = NIL,
        background = false, pid_file = NIL, custom_proc_title = NIL, username = NIL, checkpoint_interval = 3600,
        checkpoint_count = 2, checkpoint_wal_threshold = 1e18, too_long_threshold = 0.5, readahead = 16320,
        net_msg_max = 768, force_recovery = false, hot_standby = false, coredump = false, strip_core = true,
        wal_max_size = 268435456, feedback_enabled = true, feedback_host = 'https://feedback.tarantool.io',
        feedback_interval = 3600, memtx_min_tuple_size = 16, memtx_max_tuple_size = 1048576,
        slab_alloc_factor = 1.05, vinyl_memory = 134217728, vinyl_cache = 134217728,
        vinyl_max_tuple_size = 1048576, vinyl_read_threads = 1, vinyl_write_threads = 4, vinyl_timeout = 60,
        vinyl_run_count_per_level = 2, vinyl_run_size_ratio = 3.5, vinyl_range_size = NIL,
        vinyl_page_size = 8192, vinyl_bloom_fpr = 0.05, io_collect_interval = NIL, snap_io_rate_limit = NIL,
        wal_dir_rescan_delay = 2, worker_pool_threads = 4, sql_cache_size = 5242880,
    } },
    { {}, ok = { election_mode = 'off', election_timeout = 5 }, since = '2.6.1' },
    { {}, ok = { memtx_use_mvcc_engine = false, wal_queue_max_size = 16777216, wal_cleanup_delay = 14400 },
        since = '2.6.3' },
}

-- In this order on one instance configured with `base`.
local base = {}
local reloads = {
    -- static options: the same raw value only
    { { work_dir = 'x' }, err = reload('work_dir') },
    { { work_dir = NULL }, ok = { work_dir = NIL } },
    { { memtx_dir = '.' }, ok = { memtx_dir = '.' } },
    { { memtx_dir = '' }, err = reload('memtx_dir') },
    { { memtx_dir = NULL }, err = reload('memtx_dir') },
    { { wal_mode = 'write' }, ok = { wal_mode = 'write' } },
    { { wal_mode = 'fsync' }, err = reload('wal_mode') },
    { { wal_mode = 'bad' }, err = reload('wal_mode') },
    { { wal_max_size = 1 }, err = reload('wal_max_size') },
    { { background = false }, ok = { background = false } },
    { { background = true }, err = reload('background') },
    { { vinyl_read_threads = 0 }, err = reload('vinyl_read_threads') },
    { { foo = 1, work_dir = 'x' }, err = unexpected:format('foo') },
    { { work_dir = 'x', read_only = 'x' }, err = cfgerr('read_only', 'should be of type boolean') },
    { { custom_proc_title = 1 }, err = cfgerr('custom_proc_title', 'should be of type string') },
    -- log_*
    { { log_level = 'debug' }, ok = { log_level = 'debug' } },
    { { log_level = 6 }, ok = { log_level = 6 } },
    { { log_level = 'bad' }, err = cfgerr('log_level', LEVELS) },
    { { log_level = '' }, ok = { log_level = NIL } },
    { { log_level = 5 }, ok = { log_level = 5 } },
    { { log_format = 'json' }, ok = { log_format = 'json' } },
    { { log_format = 'bad' }, err = cfgerr('log_format', 'expected json,plain') },
    { { log_format = 'plain' }, ok = { log_format = 'plain' } },
    { { log = 'x.log' }, err = cfgerr('log', "can't be set dynamically") },
    { { log_nonblock = false }, err = cfgerr('log_nonblock', "can't be set dynamically") },
    { { log = '' }, err = reload('log') },
    { { log = NULL }, ok = { log = NIL } },
    -- uuids: only the instance's own
    { function(ctx)
        return { instance_uuid = ctx.instance_uuid }
    end, ok = {} },
    { { instance_uuid = '11111111-1111-1111-1111-111111111111' }, err = reload('instance_uuid') },
    { { instance_uuid = 'bad' }, err = reload('instance_uuid') },
    { function(ctx)
        return { replicaset_uuid = ctx.replicaset_uuid }
    end, ok = {} },
    { { replicaset_uuid = '11111111-1111-1111-1111-111111111111' }, err = reload('replicaset_uuid') },
    -- listen
    { { listen = 'unix/:./r.sock' }, ok = { listen = 'unix/:./r.sock' } },
    { { listen = '' }, ok = { listen = NIL } },
    { { listen = 'bad' }, err = bad_uri:format('listen') },
    { { listen = 0 }, ok = { listen = '0' } },
    { { listen = NULL }, ok = { listen = NIL } },
    -- read_only and replication_anon: anon is applied first
    { { read_only = 'x' }, err = cfgerr('read_only', 'should be of type boolean') },
    { { read_only = true }, ok = { read_only = true } },
    { { read_only = false }, ok = { read_only = false } },
    { { replication_anon = true }, err = cfgerr('replication_anon',
        'the value may be set to true only when the instance is read-only') },
    { { replication_anon = true, read_only = true }, err = cfgerr('replication_anon',
        'the value may be set to true only when the instance is read-only') },
    { { read_only = true }, ok = { read_only = true } },
    { { replication_anon = true }, err = cfgerr('replication_anon', 'cannot be turned on after bootstrap has finished') },
    { { replication_anon = false, read_only = false }, ok = { read_only = false, replication_anon = false } },
    -- memory: grow only, memtx in 1 KB steps
    { { memtx_memory = 128 * 1024 * 1024 }, err = cfgerr('memtx_memory', 'cannot decrease memory size at runtime') },
    { { memtx_memory = -1 }, err = cfgerr('memtx_memory', 'must be >= 0 and <= 4398046510080, but it is -1') },
    { { memtx_memory = 268435456 + 1 }, ok = { memtx_memory = 268435457 } },
    { { memtx_memory = 268435456 + 2 }, err = cfgerr('memtx_memory', 'cannot decrease memory size at runtime') },
    { { memtx_memory = 268435456 + 1024 }, ok = { memtx_memory = 268436480 } },
    { { vinyl_memory = -1 }, err = cfgerr('vinyl_memory', 'must be >= 0 and <= 4398046510080, but it is -1') },
    { { vinyl_memory = 1 }, err = cfgerr('vinyl_memory', 'cannot decrease memory size at runtime') },
    { { vinyl_memory = 134217728 + 1 }, ok = { vinyl_memory = 134217729 } },
    { { vinyl_memory = 134217728 }, err = cfgerr('vinyl_memory', 'cannot decrease memory size at runtime') },
    { { vinyl_cache = 1 }, ok = { vinyl_cache = 1 } },
    -- the setters' checks
    { { net_msg_max = 1 }, err = cfgerr('net_msg_max', 'minimal value is 2') },
    { { net_msg_max = 1024 }, ok = { net_msg_max = 1024 } },
    { { readahead = 1 }, err = cfgerr('readahead', 'specified value is out of bounds') },
    { { checkpoint_count = 0 }, err = cfgerr('checkpoint_count', 'the value must not be less than one') },
    { { sql_cache_size = -1 }, err = cfgerr('sql_cache_size', 'must be non-negative') },
    { { replication_timeout = 0 }, err = cfgerr('replication_timeout', 'the value must be greather than 0') },
    { { replication_synchro_quorum = 0 }, err = cfgerr('replication_synchro_quorum',
        'the value must be greater than zero and less than maximal number of replicas') },
    { { replication_synchro_quorum = 2 }, ok = { replication_synchro_quorum = 2 } },
    { { replication_connect_quorum = -1 }, err = cfgerr('replication_connect_quorum',
        'the value must be greater or equal to 0') },
    { { replication_connect_quorum = 0 }, ok = { replication_connect_quorum = 0 } },
    { { replication_synchro_quorum = 'N/2+1' }, ok = { replication_synchro_quorum = 'N/2+1' }, since = '2.6.2' },
    { { replication_synchro_quorum = 'N - 1' }, err = cfgerr('replication_synchro_quorum',
        'the formula is evaluated to the quorum 0 for replica number 1, which is out of range [1;31]'),
        since = '2.6.2' },
    { { election_mode = 'candidate' }, ok = { election_mode = 'candidate' }, since = '2.6.1' },
    { { election_mode = 'x' }, err = cfgerr('election_mode',
        "the value must be one of the following strings: 'off', 'voter', 'candidate', 'manual'"), since = '2.6.3' },
    { { election_timeout = 0 }, err = cfgerr('election_timeout', 'the value must be a positive number'),
        since = '2.6.1' },
    { { election_mode = 'off', election_timeout = 1 }, ok = { election_mode = 'off', election_timeout = 1 },
        since = '2.6.1' },
    -- replication
    { { replication = 'bad' }, err = bad_uri:format('replication') },
    { { replication = many }, err = cfgerr('replication', 'too many replicas') },
    -- (nobody listens there; quorum 0 and a short timeout let box.cfg return at once)
    { { replication_connect_quorum = 0, replication_connect_timeout = 0.1, replication = { 'unix/:./nobody.sock', 1 } },
        ok = { replication = { 'unix/:./nobody.sock', '1' } } },
    { { replication = 1 }, ok = { replication = { '1' } } },
    { { replication = {} }, ok = { replication = {} } },
    { { replication = 'unix/:./nobody.sock' }, ok = { replication = { 'unix/:./nobody.sock' } } },
    { { replication = '' }, ok = { replication = {} } },
    -- old names
    { { snapshot_count = 3 }, ok = { checkpoint_count = 3, snapshot_count = NIL } },
    { { snapshot_count = 4, checkpoint_count = 5 }, err = cfgerr('snapshot_count',
        'can not override a value for a deprecated option') },
}

return { first = first, base = base, reloads = reloads }
