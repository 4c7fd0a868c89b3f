//! `lua/box/cfg_check.lua`, box.cfg's option table and validation, in a plain LuaJIT state.
//!
//! The cases of `tests/box_cfg/cases.lua` hold Tarantool's answers (every error text, the
//! values box.cfg reads back); `scripts/box-cfg-on-tarantool.lua` runs the same cases on a
//! real Tarantool. The other tests pin the module's own API.

use mlua::{Function, Lua, Table, Value};

const MODULE: &str = include_str!("../lua/box/cfg_check.lua");
const CASES: &str = include_str!("box_cfg/cases.lua");
const RUNNER: &str = include_str!("box_cfg/runner.lua");

/// A LuaJIT state with the module in the global `cfg_check`, `NULL` (box.NULL: a NULL
/// `void *` cdata, so the state needs ffi) and the helpers below.
fn lua() -> Lua {
    // Safety: only this file's Lua code runs in the state; ffi is needed for box.NULL.
    let lua = unsafe { Lua::unsafe_new() };
    let module: Table = lua
        .load(MODULE)
        .set_name("@cfg_check.lua")
        .eval()
        .expect("the module loads");
    lua.globals().set("cfg_check", module).unwrap();
    lua.load(
        r#"
        NULL = require('ffi').cast('void *', 0)
        -- check() as one string: "ok" or "<code> <message>", with "fatal " for fatal ones.
        function try(opts, current, ctx)
            local new, err = cfg_check.check(opts, current, ctx)
            if new ~= nil then
                return 'ok'
            end
            return (err.fatal and 'fatal ' or '') .. tostring(err.code) .. ' ' .. err.message
        end
        "#,
    )
    .exec()
    .unwrap();
    lua
}

fn eval<T: mlua::FromLua>(lua: &Lua, chunk: &str) -> T {
    lua.load(chunk).eval().unwrap_or_else(|e| panic!("{chunk}: {e}"))
}

/// Runs the shared cases of one kind ("first" or "reloads") and fails with every mismatch.
fn run_cases(which: &str) {
    let lua = lua();
    let nil_marker = lua.create_table().unwrap();
    let null: Value = lua.globals().get("NULL").unwrap();
    let cases: Table = lua
        .load(CASES)
        .set_name("@cases.lua")
        .into_function()
        .unwrap()
        .call((null, nil_marker.clone()))
        .expect("the cases load");
    let module: Table = lua.globals().get("cfg_check").unwrap();
    let runner: Function = lua.load(RUNNER).set_name("@runner.lua").into_function().unwrap();
    let (count, failures): (usize, Vec<String>) = runner.call((module, cases, nil_marker, which)).unwrap();
    assert!(count > 50, "only {count} cases ran");
    assert!(
        failures.is_empty(),
        "{} of {count} cases differ from Tarantool:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn first_calls_answer_as_tarantool() {
    run_cases("first");
}

#[test]
fn reconfigurations_answer_as_tarantool() {
    run_cases("reloads");
}

#[test]
fn defaults_types_and_dynamic_options() {
    let lua = lua();
    // Every option of spec §2.2 with its 2.6.3 default.
    let defaults: Vec<(&str, &str)> = vec![
        ("memtx_dir", "'.'"),
        ("wal_dir", "'.'"),
        ("vinyl_dir", "'.'"),
        ("wal_mode", "'write'"),
        ("memtx_memory", "268435456"),
        ("read_only", "false"),
        ("replication_timeout", "1"),
        ("replication_connect_timeout", "30"),
        ("replication_sync_lag", "10"),
        ("replication_sync_timeout", "300"),
        ("replication_skip_conflict", "false"),
        ("replication_anon", "false"),
        ("replication_synchro_quorum", "1"),
        ("replication_synchro_timeout", "5"),
        ("election_mode", "'off'"),
        ("election_timeout", "5"),
        ("log_level", "5"),
        ("log_format", "'plain'"),
        ("background", "false"),
        ("checkpoint_interval", "3600"),
        ("checkpoint_count", "2"),
        ("checkpoint_wal_threshold", "1e18"),
        ("too_long_threshold", "0.5"),
        ("readahead", "16320"),
        ("net_msg_max", "768"),
        ("force_recovery", "false"),
        ("hot_standby", "false"),
        ("coredump", "false"),
        ("strip_core", "true"),
        ("wal_max_size", "268435456"),
        ("memtx_use_mvcc_engine", "false"),
        ("feedback_enabled", "true"),
        ("feedback_host", "'https://feedback.tarantool.io'"),
        ("feedback_interval", "3600"),
    ];
    for (name, value) in defaults {
        let ok: bool = eval(&lua, &format!("return cfg_check.defaults.{name} == {value}"));
        assert!(ok, "default of {name} is not {value}");
    }
    let nil_default = [
        "listen",
        "work_dir",
        "replication",
        "replication_connect_quorum",
        "instance_uuid",
        "replicaset_uuid",
        "log",
        "log_nonblock",
        "pid_file",
        "custom_proc_title",
        "username",
    ];
    for name in nil_default {
        let ok: bool = eval(
            &lua,
            &format!("return cfg_check.defaults.{name} == nil and cfg_check.types.{name} ~= nil"),
        );
        assert!(ok, "{name} is a known option with no default");
    }
    let types: Vec<(&str, &str)> = vec![
        ("listen", "string, number"),
        ("replication", "string, number, table"),
        ("replication_synchro_quorum", "string, number"),
        ("read_only", "boolean"),
        ("election_mode", "string"),
        ("log_level", "module"),
    ];
    for (name, t) in types {
        let got: String = eval(&lua, &format!("return cfg_check.types.{name}"));
        assert_eq!(got, t, "type of {name}");
    }
    for name in [
        "listen",
        "replication",
        "read_only",
        "log_level",
        "log_format",
        "memtx_memory",
        "election_mode",
        "election_timeout",
        "replication_synchro_quorum",
        "replication_anon",
        "checkpoint_count",
        "force_recovery",
        "custom_proc_title",
    ] {
        let d: bool = eval(&lua, &format!("return cfg_check.is_dynamic('{name}')"));
        assert!(d, "{name} is dynamic");
    }
    for name in [
        "work_dir",
        "wal_mode",
        "memtx_dir",
        "wal_dir",
        "background",
        "instance_uuid",
        "replicaset_uuid",
        "log",
        "log_nonblock",
        "wal_max_size",
        "memtx_use_mvcc_engine",
        "username",
        "pid_file",
        "foo",
    ] {
        let d: bool = eval(&lua, &format!("return cfg_check.is_dynamic('{name}')"));
        assert!(!d, "{name} is static");
    }
}

#[test]
fn synchro_quorum_for_n_replicas() {
    let lua = lua();
    // 'N / 2 + 1' floored: the 4-node demo went 1 -> 2 -> 3 (spec §2.3).
    let q: Vec<i64> = eval(
        &lua,
        "local r = {} for n = 1, 5 do r[n] = cfg_check.quorum_for('N / 2 + 1', n) end return r",
    );
    assert_eq!(q, vec![1, 2, 2, 3, 3]);
    let q: Vec<i64> = eval(
        &lua,
        "return {cfg_check.quorum_for(2, 5), cfg_check.quorum_for(2.7, 1), cfg_check.quorum_for('3', 1)}",
    );
    assert_eq!(q, vec![2, 2, 3]);
    // N is at least 1; math is there, nothing else is.
    let q: i64 = eval(&lua, "return cfg_check.quorum_for('N', 0)");
    assert_eq!(q, 1);
    let q: i64 = eval(
        &lua,
        "return cfg_check.quorum_for('math.max(2, math.ceil(N * 0.51))', 7)",
    );
    assert_eq!(q, 4);
    let err: String = eval(
        &lua,
        "local q, err = cfg_check.quorum_for('os.exit()', 3) assert(q == nil) return err",
    );
    assert_eq!(
        err,
        "[string \"return (os.exit())\"]:1: attempt to index global 'os' (a nil value)"
    );
    let err: String = eval(
        &lua,
        "local q, err = cfg_check.quorum_for('N - 3', 3) assert(q == nil) return err",
    );
    assert_eq!(
        err,
        "the formula is evaluated to the quorum 0 for replica number 3, which is out of range [1;31]"
    );
    // Raft's election quorum is capped by the registered replicas.
    let q: Vec<i64> = eval(&lua, "return {cfg_check.election_quorum(3, 1), cfg_check.election_quorum(3, 4), cfg_check.election_quorum('N / 2 + 1', 4)}");
    assert_eq!(q, vec![1, 3, 3]);
}

#[test]
fn log_level_numbers() {
    let lua = lua();
    let levels: Vec<i64> = eval(
        &lua,
        "local r = {} for i, v in ipairs({'fatal', 'syserror', 'error', 'crit', 'warn', 'info', 'verbose', 'debug', 6, 4.9}) do r[i] = cfg_check.log_level_number(v) end return r",
    );
    assert_eq!(levels, vec![0, 1, 2, 3, 4, 5, 6, 7, 6, 4]);
    let none: bool = eval(
        &lua,
        "return cfg_check.log_level_number(nil) == nil and cfg_check.log_level_number('x') == nil",
    );
    assert!(none);
}

#[test]
fn changed_keys_come_in_tarantool_order() {
    let lua = lua();
    // First call: what differs from the defaults.
    let changed: Vec<String> = eval(&lua, "local _, ch = cfg_check.check({read_only = false, listen = 3301, log_level = 'warn', memtx_memory = 268435456}) return ch");
    assert_eq!(changed, vec!["listen", "log_level"]);
    // Reconfiguration: listen, replication_*, replication, anon, election_*, then the rest.
    let changed: Vec<String> = eval(
        &lua,
        r#"
        local cur = cfg_check.check({})
        local _, ch = cfg_check.check({election_mode = 'voter', replication = 'unix/:./a.sock', read_only = true,
            listen = 'unix/:./b.sock', replication_timeout = 2, election_timeout = 3, replication_anon = false,
            checkpoint_count = 2, memtx_memory = 2^29}, cur)
        return ch
        "#,
    );
    assert_eq!(
        changed,
        vec![
            "listen",
            "replication_timeout",
            "replication",
            "election_mode",
            "election_timeout",
            "memtx_memory",
            "read_only"
        ]
    );
    // The new table is a copy; the current one is left alone.
    let ok: bool = eval(
        &lua,
        r#"
        local cur = cfg_check.check({})
        local new = cfg_check.check({read_only = true}, cur)
        return new ~= cur and new.read_only == true and cur.read_only == false and new.memtx_memory == 268435456
        "#,
    );
    assert!(ok);
}

#[test]
fn deprecated_names_warn() {
    let lua = lua();
    let warnings: Vec<String> = eval(
        &lua,
        "local _, _, w = cfg_check.check({snapshot_count = 3, logger = 'x.log'}) return w",
    );
    assert_eq!(
        warnings,
        vec![
            "Deprecated option logger, please use log instead",
            "Deprecated option snapshot_count, please use checkpoint_count instead"
        ]
    );
    let r: String = eval(&lua, "return try({slab_alloc_arena = 'x'})");
    assert_eq!(r, "nil attempt to perform arithmetic on local 'size' (a string value)");
}

#[test]
fn election_aliases_on_request() {
    let lua = lua();
    // Tarantool 2.6.3 knows only election_mode...
    let r: String = eval(&lua, "return try({election_is_enabled = true})");
    assert_eq!(
        r,
        "59 Incorrect value for option 'election_is_enabled': unexpected option"
    );
    // ...the pre-2.6.1 pair maps to it when asked (spec §0).
    let modes: Vec<String> = eval(
        &lua,
        r#"
        local ctx = {election_aliases = true}
        local cur = cfg_check.check({election_is_enabled = true}, nil, ctx)
        local r = {cur.election_mode}
        cur = cfg_check.check({election_is_candidate = true}, cur, ctx)
        r[2] = cur.election_mode
        cur = cfg_check.check({election_is_enabled = false}, cur, ctx)
        r[3] = cur.election_mode
        r[4] = tostring(cur.election_is_enabled)
        return r
        "#,
    );
    assert_eq!(modes, vec!["voter", "candidate", "off", "nil"]);
    let r: String = eval(
        &lua,
        "return try({election_is_enabled = 1}, nil, {election_aliases = true})",
    );
    assert_eq!(
        r,
        "59 Incorrect value for option 'election_is_enabled': should be of type boolean"
    );
    let r: String = eval(
        &lua,
        "return try({election_is_enabled = true, election_mode = 'off'}, nil, {election_aliases = true})",
    );
    assert_eq!(
        r,
        "59 Incorrect value for option 'election_is_enabled': can not override a value for a deprecated option"
    );
}

#[test]
fn uris_parse_as_tarantool() {
    let lua = lua();
    // Tarantool 2.6's uri.parse() on these: service set or not (nil = no parse).
    let accepted = [
        "3301",
        "0",
        "localhost:3301",
        "localhost:abc",
        "*:3301",
        "/tmp/x.sock",
        "/",
        "unix/:/tmp/x.sock",
        "unix/:./x.sock",
        "user:pass@localhost:3301",
        "user@/tmp/x",
        "user@unix/:/tmp/x",
        "[::1]:3301",
        "tcp://localhost:3301",
        "localhost:3301/path",
        "localhost:3301?q",
        "localhost:3301#f",
        "1.2.3.4:5",
        "unix/:/tmp/x:",
        "unix/:/a:b",
        "%41:1",
        "/a//b",
        "/a/:b",
        "abc://unix/:/x:",
    ];
    let rejected = [
        "",
        "localhost",
        "localhost:",
        "localhost:abc1",
        ":3301",
        "/tmp/x?y",
        "unix/:x.sock",
        "unix/:/",
        "[::1]",
        "tcp://localhost",
        "a/b",
        "./x.sock",
        "//",
        "1.2.3.4",
        "x@3301",
        "3301/",
        "a:b:c",
        " 3301",
        "3301 ",
        "%:1",
        "localhost:3301:",
        "abc:/x",
        "-1",
        "1.5",
    ];
    for uri in accepted {
        let ok: bool = lua.load("return cfg_check.uri_has_service(...)").call(uri).unwrap();
        assert!(ok, "{uri:?} names a service");
    }
    for uri in rejected {
        let ok: bool = lua.load("return cfg_check.uri_has_service(...)").call(uri).unwrap();
        assert!(!ok, "{uri:?} names no service");
    }
}

#[test]
fn uuids_parse_as_tarantool() {
    let lua = lua();
    // tt_uuid_from_string: sscanf("%8x-%4hx-...") over exactly 36 characters, then the variant.
    let good = [
        "c0ffee00-0000-4000-8000-000000000001",
        "C0FFEE00-0000-4000-8000-00000000000A",
        "00000000-0000-0000-0000-000000000000",
        "0x000000-0000-0000-0000-000000000000",
        " 1234567-0000-0000-0000-000000000000",
        "+1234567-0000-0000-0000-000000000000",
        "00000000-0000-0000-c000-000000000000",
    ];
    let bad = [
        "c0ffee00-0000-4000-8000-00000000001",
        "c0ffee00-0000-4000-8000-0000000000011",
        "c0ffee00_0000-4000-8000-000000000001",
        "g0ffee00-0000-4000-8000-000000000001",
        "00000000-0000-0000-e000-000000000000",
        "00000000-0000-0000-ff00-000000000000",
    ];
    for u in good {
        let ok: bool = lua.load("return cfg_check.parse_uuid(...) ~= nil").call(u).unwrap();
        assert!(ok, "{u:?} parses");
    }
    for u in bad {
        let ok: bool = lua.load("return cfg_check.parse_uuid(...) ~= nil").call(u).unwrap();
        assert!(!ok, "{u:?} does not parse");
    }
}

#[test]
fn odd_arguments_and_long_values() {
    let lua = lua();
    let r: String = eval(&lua, "return try(5)");
    assert_eq!(r, "nil bad argument #1 to 'pairs' (table expected, got number)");
    let r: String = eval(&lua, "return try(nil)");
    assert_eq!(r, "ok");
    // C reads option values through a 256-byte buffer; messages stop at 511 bytes.
    let r: String = eval(&lua, "return try({instance_uuid = string.rep('x', 300)})");
    assert_eq!(
        r,
        format!("59 Incorrect value for option 'instance_uuid': {}", "x".repeat(255))
    );
    let r: String = eval(
        &lua,
        "return try({replication_synchro_quorum = '1 ' .. string.rep('x', 298)})",
    );
    assert!(
        r.starts_with("59 Incorrect value for option 'replication_synchro_quorum': [string \"local expr = [[1 xxx"),
        "{r}"
    );
    assert_eq!(r.len(), 3 + 511, "{r}");
    // A listen value with a NUL is cut there, as C sees it.
    let r: String = eval(&lua, "return try({listen = '3301\\0junk'})");
    assert_eq!(r, "ok");
}

#[test]
fn log_format_against_the_logger() {
    let lua = lua();
    // 2.6.3's log module parses cfg.log for log_format and re-raises the parser's error,
    // an IllegalParams without a code (2.6.0 only looked for "syslog:").
    let r: String = eval(
        &lua,
        "local _, err = cfg_check.check({log_format = 'json', log = 'a:b'}) return err.type .. ': ' .. err.message",
    );
    assert_eq!(
        r,
        "IllegalParams: expecting a file name or a prefix, such as '|', 'pipe:', 'syslog:'"
    );
    // A reconfiguration looks at the logger box.cfg.log opened.
    let r: String = eval(
        &lua,
        "return try({log_format = 'json'}, cfg_check.check({log = 'syslog:identity=x'}))",
    );
    assert_eq!(
        r,
        "59 Incorrect value for option 'log_format': json can't be used with syslog logger"
    );
    let r: String = eval(
        &lua,
        "return try({log_format = 'json'}, cfg_check.check({log = 'pipe:cat'}))",
    );
    assert_eq!(r, "ok");
    let r: String = eval(&lua, "return try({log_nonblock = true, log = '|cat'})");
    assert_eq!(r, "ok");
}
