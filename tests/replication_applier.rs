//! node as a replica (the applier and bootstrap): of a real Tarantool 2.6 master, of a
//! master that sends garbage, and as an orphan. Each process runs in its own directory;
//! the test talks to them with Tarantool's net.box (as admin, whose password the master
//! sets and replication brings to node).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, temp_dir, wait_listening, KillOnDrop, NODE};

const TARANTOOL: &str = "tarantool";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/replication")
        .join(name)
}

/// `program script args...` in `dir`, its stderr kept in `dir/stderr.log`.
fn spawn(program: &str, dir: &Path, name: &str, args: &[&str]) -> KillOnDrop {
    std::fs::create_dir_all(dir).expect("process dir");
    let child = Command::new(program)
        .arg(script(name))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("{program} starts (scripts/setup.sh installs tarantool): {e}"));
    KillOnDrop(child)
}

fn start_master(dir: &Path, port: u16) -> KillOnDrop {
    let p = spawn(TARANTOOL, dir, "master.lua", &[&port.to_string(), "data"]);
    wait_listening(&format!("127.0.0.1:{port}"), "tarantool master");
    // The port opens before `box.once` has granted replication and written the rows (the
    // space `sync` comes last): a replica that came then was refused, or saw an empty
    // master and, listing itself too, bootstrapped a replica set of its own (flaky: 2 runs
    // in 8 of `tarantool_and_node_replicate_both_ways`).
    wait_for(port, "return box.space.sync ~= nil", "true");
    p
}

fn start_replica(dir: &Path, port: u16, upstream: &str) -> KillOnDrop {
    spawn(NODE, dir, "replica.lua", &[&port.to_string(), "data", upstream])
}

/// Evaluates `code` (a Lua chunk that returns one value) on the instance at `port` as
/// admin, through Tarantool's net.box; the value comes back as JSON, or `error: ...`.
fn eval(port: u16, code: &str) -> String {
    let client = format!(
        "local ok, c = pcall(require('net.box').connect, 'admin:test@127.0.0.1:{port}', \
         {{connect_timeout = 2, wait_connected = 2}}) \
         if not ok or not c:is_connected() then print('error: not connected') os.exit(0) end \
         local ok, r = pcall(c.eval, c, [==[{code}]==]) \
         if ok then print(require('json').encode(r)) else print('error: ' .. tostring(r)) end \
         os.exit(0)"
    );
    let out = Command::new(TARANTOOL)
        .args(["-e", &client])
        .stdin(Stdio::null())
        .output()
        .expect("tarantool runs the client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `eval(port, code)` until it prints `want` (10 s at most).
fn wait_for(port: u16, code: &str, want: &str) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        last = eval(port, code);
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("on port {port}, `{code}` gave {last}, not {want}");
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("data/replica.log")).unwrap_or_default()
}

const SUMMARY: &str = "local t = box.space.test return {box.space.test:count(), \
    t:get{1} and t:get{1}[2] or box.NULL, box.info.id, box.info.status}";

#[test]
fn node_joins_a_tarantool_master_and_follows_it() {
    let dir = temp_dir("repl-tarantool-master");
    let (mport, rport) = (free_port(), free_port());
    let master = start_master(&dir.join("master"), mport);
    let upstream = format!("guest@127.0.0.1:{mport}");
    let replica = start_replica(&dir.join("replica"), rport, &upstream);
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica");

    // The join: every row, the id the master gave it, the upstream followed.
    wait_for(rport, SUMMARY, r#"[100,"row 1",2,"running"]"#);
    wait_for(rport, "return box.info.replication[1].upstream.status", r#""follow""#);
    let master_uuid = eval(mport, "return box.info.uuid");
    assert_eq!(eval(rport, "return box.info.replication[1].uuid"), master_uuid);
    assert_eq!(
        eval(rport, "return box.info.replication[1].upstream.peer"),
        format!("\"guest@127.0.0.1:{mport}\"")
    );
    assert_eq!(
        eval(rport, "return box.info.cluster.uuid"),
        eval(mport, "return box.info.cluster.uuid")
    );
    // The join left a snapshot behind.
    let snaps = std::fs::read_dir(dir.join("replica/data"))
        .expect("replica dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "snap"))
        })
        .count();
    assert_eq!(snaps, 1, "a snapshot after the join");

    // Live changes of every kind.
    eval(
        mport,
        "local t = box.space.test \
         t:insert{101, 'new'} t:replace{2, 'replaced'} t:update(3, {{'=', 2, 'updated'}}) \
         t:delete{4} t:upsert({5, 'x'}, {{'=', 2, 'upserted'}}) t:upsert({102, 'fresh'}, {{'=', 2, 'y'}}) \
         box.begin() t:insert{103, 'txn a'} t:insert{104, 'txn b'} t:delete{6} box.commit() \
         local s = box.schema.space.create('made_later', {format = {{'id', 'unsigned'}, {'v', 'string'}}}) \
         s:create_index('pk') s:create_index('v', {parts = {'v'}}) s:insert{1, 'one'} \
         box.schema.user.create('alice', {password = 'pw'}) box.schema.user.grant('alice', 'read', 'space', 'test') \
         box.space.sync:insert{1, 'synchronous'} \
         return true",
    );
    let changes = "local t = box.space.test return {t:count(), t:get{101}[2], t:get{2}[2], t:get{3}[2], \
        t:get{4} == nil, t:get{5}[2], t:get{102}[2], t:get{103}[2], t:get{104}[2], t:get{6} == nil, \
        box.space.made_later.index.v:get{'one'}.id, box.schema.user.exists('alice'), \
        box.space.sync:get{1}[2], box.info.vclock[1]}";
    let want = eval(mport, changes);
    assert!(
        want.starts_with("[102,\"new\",\"replaced\",\"updated\",true,\"upserted\",\"fresh\""),
        "{want}"
    );
    wait_for(rport, changes, &want);
    // The grant arrived too: alice reads on node, nothing more.
    assert_eq!(
        eval(rport, "return box.schema.user.info('alice')[1][3]"),
        eval(mport, "return box.schema.user.info('alice')[1][3]")
    );
    // Tarantool takes node's ACKs: its downstream follows at node's vclock.
    wait_for(
        mport,
        "local d = box.info.replication[2].downstream \
         return {d.status, d.vclock[1] == box.info.vclock[1]}",
        r#"["follow",true]"#,
    );

    // Restart the replica after the master moved on: it recovers its own files, then
    // catches up.
    drop(replica);
    eval(
        mport,
        "for i = 200, 249 do box.space.test:insert{i, 'while away'} end return true",
    );
    let replica = start_replica(&dir.join("replica"), rport, &upstream);
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica again");
    let count = "return {box.space.test:count(), box.space.test:get{249}[2], box.info.id}";
    wait_for(rport, count, r#"[152,"while away",2]"#);
    assert!(
        log_of(&dir.join("replica")).contains("recovered"),
        "the restart recovered local files"
    );

    // Kill the master: the upstream goes, and comes back with it.
    let before_kill = log_of(&dir.join("replica")).len();
    drop(master);
    wait_for(
        rport,
        "local s = box.info.replication[1].upstream.status return s == 'disconnected' or s == 'connect'",
        "true",
    );
    assert_eq!(eval(rport, "return box.info.status"), r#""running""#);
    // Several reconnects fail meanwhile (one every replication_timeout = 0.2 s).
    std::thread::sleep(Duration::from_millis(1500));
    let _master = start_master(&dir.join("master"), mport);
    wait_for(rport, "return box.info.replication[1].upstream.status", r#""follow""#);
    eval(
        mport,
        "box.space.test:insert{300, 'after the master came back'} return true",
    );
    wait_for(
        rport,
        "return box.space.test:get{300}[2]",
        r#""after the master came back""#,
    );
    let log = log_of(&dir.join("replica"));
    let after_kill = &log[before_kill..];
    assert!(
        after_kill.contains("can't read row"),
        "the broken connection is logged:\n{after_kill}"
    );
    assert_eq!(
        after_kill.matches("SystemError").count(),
        1,
        "failing reconnects are logged once, not at every attempt:\n{after_kill}"
    );
    drop(replica);
}

#[test]
fn credentials_in_the_uri_authenticate_and_a_wrong_password_is_retried() {
    let dir = temp_dir("repl-credentials");
    let (mport, rport, bad_port) = (free_port(), free_port(), free_port());
    let _master = start_master(&dir.join("master"), mport);
    let _replica = start_replica(&dir.join("replica"), rport, &format!("repl:secret@127.0.0.1:{mport}"));
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica");
    wait_for(rport, SUMMARY, r#"[100,"row 1",2,"running"]"#);
    assert_eq!(
        eval(rport, "return box.info.replication[1].upstream.peer"),
        format!("\"repl@127.0.0.1:{mport}\""),
        "the password is not shown"
    );

    // A wrong password: box.cfg cannot join, the applier says why and keeps trying.
    let wrong = spawn(
        NODE,
        &dir.join("wrong"),
        "replica.lua",
        &[&bad_port.to_string(), "data", &format!("repl:oops@127.0.0.1:{mport}")],
    );
    let log = dir.join("wrong/data/replica.log");
    let started = Instant::now();
    let mut text = String::new();
    while started.elapsed() < Duration::from_secs(10) {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("will retry every") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(text.contains("failed to authenticate"), "{text}");
    assert!(text.contains("Incorrect password supplied for user 'repl'"), "{text}");
    assert!(text.contains("will retry every 0.20 second"), "{text}");
    drop(wrong);
}

#[test]
fn an_instance_without_its_upstream_is_an_orphan_until_it_returns() {
    let dir = temp_dir("repl-orphan");
    let (mport, rport) = (free_port(), free_port());
    let master = start_master(&dir.join("master"), mport);
    let upstream = format!("guest@127.0.0.1:{mport}");
    let replica = start_replica(&dir.join("replica"), rport, &upstream);
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica");
    wait_for(rport, SUMMARY, r#"[100,"row 1",2,"running"]"#);
    drop(replica);
    drop(master);

    // Restarted while the master is down: recovered, but synced with nobody.
    let replica = start_replica(&dir.join("replica"), rport, &upstream);
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica again");
    wait_for(rport, "return {box.info.status, box.info.ro}", r#"["orphan",true]"#);
    assert_eq!(
        eval(
            rport,
            "return select(2, pcall(box.space.test.insert, box.space.test, {1000, 'x'}))"
        ),
        r#""Can't modify data because this instance is in read-only mode.""#
    );
    let log = log_of(&dir.join("replica"));
    assert!(log.contains("failed to connect to 1 out of 1 replicas"), "{log}");
    assert!(log.contains("entering orphan mode"), "{log}");

    // The master is back: the replica follows it and leaves orphan mode.
    let _master = start_master(&dir.join("master"), mport);
    wait_for(rport, "return {box.info.status, box.info.ro}", r#"["running",false]"#);
    assert_eq!(eval(rport, "return box.space.test:insert{1000, 'written'}[1]"), "1000");
    drop(replica);
}

#[test]
fn a_conflict_stops_the_upstream_unless_skipped() {
    let dir = temp_dir("repl-conflict");
    let (mport, rport) = (free_port(), free_port());
    let _master = start_master(&dir.join("master"), mport);
    let _replica = start_replica(&dir.join("replica"), rport, &format!("127.0.0.1:{mport}"));
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica");
    wait_for(rport, SUMMARY, r#"[100,"row 1",2,"running"]"#);

    eval(rport, "box.space.test:insert{500, 'replica'} return true");
    eval(
        mport,
        "box.space.test:insert{500, 'master'} box.space.test:insert{501, 'after'} return true",
    );
    wait_for(rport, "return box.info.replication[1].upstream.status", r#""stopped""#);
    assert_eq!(
        eval(rport, "return box.info.replication[1].upstream.message"),
        r#""Duplicate key exists in unique index 'pk' in space 'test'""#
    );
    assert_eq!(
        eval(rport, "return {box.space.test:get{500}[2], box.space.test:get{501}}"),
        r#"["replica"]"#
    );
    let log = log_of(&dir.join("replica"));
    assert!(
        log.contains("error applying row: {type: 'INSERT', replica_id: 1, lsn: "),
        "{log}"
    );
    assert!(log.contains("tuple: [500, \"master\"]}"), "{log}");

    // With replication_skip_conflict the row becomes a NOP and the rest follows.
    eval(
        rport,
        &format!(
            "box.cfg{{replication_skip_conflict = true}} box.cfg{{replication = {{}}}} \
             box.cfg{{replication = '127.0.0.1:{mport}'}} return true"
        ),
    );
    wait_for(rport, "return box.info.replication[1].upstream.status", r#""follow""#);
    wait_for(
        rport,
        "return {box.space.test:get{500}[2], box.space.test:get{501}[2]}",
        r#"["replica","after"]"#,
    );
    let master_lsn = eval(mport, "return box.info.vclock[1]");
    wait_for(rport, "return box.info.vclock[1]", &master_lsn);
}

/// A master that greets properly and then talks nonsense: on the first connection after
/// a SUBSCRIBE answer and a heartbeat, on the others right after the VOTE. Counts
/// connections.
fn garbage_master(listener: std::net::TcpListener, accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    for (n, stream) in listener.incoming().enumerate() {
        let Ok(mut s) = stream else { continue };
        accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut greeting = format!("Tarantool 2.6.0 (Binary) {}", "0d21e70b-8c1d-4b28-b6e3-62b22be0bc0a").into_bytes();
        greeting.resize(63, b' ');
        greeting.push(b'\n');
        let mut salt = b"aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=".to_vec();
        salt.resize(63, b' ');
        salt.push(b'\n');
        greeting.extend(salt);
        let _ = s.write_all(&greeting);
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf); // VOTE
        if n > 0 {
            let _ = s.write_all(b"\xc1\xc1 this is not a packet \xc1");
        } else {
            // OK {BALLOT: {}}, then SUBSCRIBE's OK {VCLOCK: {}} from id 1, a heartbeat, junk.
            let _ = s.write_all(&[0xce, 0, 0, 0, 6, 0x81, 0x00, 0x00, 0x81, 0x29, 0x80]);
            let _ = s.read(&mut buf); // SUBSCRIBE
            let _ = s.write_all(&[0xce, 0, 0, 0, 8, 0x82, 0x00, 0x00, 0x02, 0x01, 0x81, 0x26, 0x80]);
            let _ = s.write_all(&[0xce, 0, 0, 0, 5, 0x82, 0x00, 0x00, 0x02, 0x01]);
            let _ = s.write_all(&[0xce, 0, 0, 0, 3, 0x81, 0x00, 0xc1]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_master_sending_garbage_is_counted_and_retried_while_node_serves() {
    let dir = temp_dir("repl-garbage");
    let rport = free_port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake master binds");
    let fake_port = listener.local_addr().expect("address").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || garbage_master(listener, counter));

    let _node = spawn(NODE, &dir.join("node"), "standalone.lua", &[&rport.to_string(), "data"]);
    wait_listening(&format!("127.0.0.1:{rport}"), "node");
    wait_for(rport, "return box.info.status", r#""running""#);
    let reconfigured = eval(
        rport,
        &format!(
            "box.cfg{{replication = '127.0.0.1:{fake_port}', replication_connect_timeout = 0.5, \
             replication_connect_quorum = 0}} return box.info.status"
        ),
    );
    assert_eq!(reconfigured, r#""running""#);
    let started = Instant::now();
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        assert!(started.elapsed() < Duration::from_secs(10), "the applier reconnects");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still serving, reads and writes.
    assert_eq!(
        eval(rport, "return box.space.test:insert{1, 'still here'}[2]"),
        r#""still here""#
    );
    let malformed: u64 = eval(rport, "return box.stat.net().MALFORMED.total")
        .parse()
        .expect("a count");
    assert!(malformed >= 4, "malformed packets counted: {malformed}");
    let log = log_of(&dir.join("node"));
    assert!(log.contains("malformed packet from 127.0.0.1"), "{log}");
    assert_eq!(
        log.matches("ER_INVALID_MSGPACK").count(),
        1,
        "logged once per kind of error, not per attempt:\n{log}"
    );
    // The replication can be switched off again.
    assert_eq!(
        eval(rport, "box.cfg{replication = {}} return box.info.status"),
        r#""running""#
    );
}

/// A master that answers VOTE and SUBSCRIBE, then says nothing. Records, per connection,
/// how long node kept it open and how many bytes (ACKs) node sent meanwhile.
fn silent_master(listener: std::net::TcpListener, seen: std::sync::Arc<std::sync::Mutex<Vec<(Duration, usize)>>>) {
    use std::io::{Read, Write};
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let mut greeting = b"Tarantool 2.6.0 (Binary) 0d21e70b-8c1d-4b28-b6e3-62b22be0bc0a".to_vec();
        greeting.resize(63, b' ');
        greeting.push(b'\n');
        let mut salt = b"aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=".to_vec();
        salt.resize(63, b' ');
        salt.push(b'\n');
        greeting.extend(salt);
        let _ = s.write_all(&greeting);
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf); // VOTE
        let _ = s.write_all(&[0xce, 0, 0, 0, 6, 0x81, 0x00, 0x00, 0x81, 0x29, 0x80]);
        let _ = s.read(&mut buf); // SUBSCRIBE
        let _ = s.write_all(&[0xce, 0, 0, 0, 8, 0x82, 0x00, 0x00, 0x02, 0x01, 0x81, 0x26, 0x80]);
        let opened = Instant::now();
        let mut acks = 0;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            acks += n;
        }
        seen.lock().expect("lock").push((opened.elapsed(), acks));
    }
}

#[test]
fn a_silent_master_is_dropped_after_four_timeouts_and_acked_meanwhile() {
    let dir = temp_dir("repl-silent");
    let rport = free_port();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake master binds");
    let fake_port = listener.local_addr().expect("address").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || silent_master(listener, record));

    let _node = spawn(NODE, &dir.join("node"), "standalone.lua", &[&rport.to_string(), "data"]);
    wait_listening(&format!("127.0.0.1:{rport}"), "node");
    wait_for(rport, "return box.info.status", r#""running""#);
    // replication_timeout is 0.1 s (standalone.lua): silence ends a connection in 0.4 s.
    eval(
        rport,
        &format!(
            "box.cfg{{replication = '127.0.0.1:{fake_port}', replication_connect_timeout = 0.5, \
             replication_connect_quorum = 0}} return true"
        ),
    );
    let started = Instant::now();
    while seen.lock().expect("lock").len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "node drops the silent master"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for &(open, acked) in seen.lock().expect("lock").iter() {
        assert!(
            open >= Duration::from_millis(350) && open < Duration::from_millis(1500),
            "dropped after {open:?}"
        );
        // An ACK is 13 bytes here ({0: 0}{0x26: {1: lsn}}); one at least every 0.1 s.
        assert!(acked >= 3 * 10, "{acked} bytes of ACKs in {open:?}");
    }
    let log = log_of(&dir.join("node"));
    assert!(log.contains("timed out reading from 127.0.0.1"), "{log}");
}

#[test]
fn space_triggers_see_replicated_rows() {
    let dir = temp_dir("repl-triggers");
    let (mport, rport) = (free_port(), free_port());
    let _master = start_master(&dir.join("master"), mport);
    let upstream = format!("127.0.0.1:{mport}");
    let replica = start_replica(&dir.join("replica"), rport, &upstream);
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica");
    wait_for(rport, SUMMARY, r#"[100,"row 1",2,"running"]"#);

    // A before_replace that rewrites some rows and drops others, an on_replace that
    // records what it sees.
    let triggers = "_G.seen = {} \
        box.space.test:before_replace(function(old, new) \
            if new ~= nil and new[1] >= 2000 then return old end \
            if new ~= nil and new[1] >= 1000 then return box.tuple.new{new[1], 'rewritten'} end \
        end) \
        box.space.test:on_replace(function(old, new, space, request) \
            table.insert(seen, {request, new and new[1] or -old[1], box.session.type()}) \
        end) return true";
    assert_eq!(eval(rport, triggers), "true");
    eval(
        mport,
        "box.space.test:insert{1000, 'a'} box.space.test:delete{1} box.space.test:insert{2000, 'dropped'} \
         box.begin() box.space.test:insert{1001, 'b'} box.space.test:update(2, {{'=', 2, 'two'}}) box.commit() \
         return true",
    );
    let lsn = eval(mport, "return box.info.vclock[1]");
    wait_for(rport, "return box.info.vclock[1]", &lsn);
    assert_eq!(
        eval(
            rport,
            "local t = box.space.test return {t:get{1000}[2], t:get{1} == nil, t:get{2000} == nil, \
             t:get{1001}[2], t:get{2}[2]}"
        ),
        r#"["rewritten",true,true,"rewritten","two"]"#
    );
    assert_eq!(
        eval(rport, "return seen"),
        r#"[["INSERT",1000,"applier"],["DELETE",-1,"applier"],["INSERT",1001,"applier"],["UPDATE",2,"applier"]]"#
    );
    assert_eq!(
        eval(rport, "return box.info.replication[1].upstream.status"),
        r#""follow""#
    );

    // What the triggers made of the rows is what node logged: it survives a restart
    // (without the triggers) and the vclock is the master's.
    drop(replica);
    let _replica = start_replica(&dir.join("replica"), rport, &upstream);
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica again");
    wait_for(
        rport,
        "local t = box.space.test return {t:get{1000}[2], t:get{2000} == nil, box.info.vclock[1]}",
        &format!(r#"["rewritten",true,{lsn}]"#),
    );

    // A trigger that fails stops the upstream with its error.
    eval(
        rport,
        "box.space.test:before_replace(function() error('no, thanks') end) return true",
    );
    eval(mport, "box.space.test:insert{3000, 'refused'} return true");
    wait_for(rport, "return box.info.replication[1].upstream.status", r#""stopped""#);
    let message = eval(rport, "return box.info.replication[1].upstream.message");
    assert!(message.contains("no, thanks"), "{message}");
    assert_eq!(eval(rport, "return box.space.test:get{3000} == nil"), "true");
}

#[test]
fn tarantool_and_node_replicate_both_ways() {
    let dir = temp_dir("repl-two-way");
    let (mport, rport) = (free_port(), free_port());
    let _master = start_master(&dir.join("master"), mport);
    let members = format!("127.0.0.1:{mport},127.0.0.1:{rport}");
    // node lists both members (itself too), as a full mesh does.
    let _node = spawn(
        NODE,
        &dir.join("replica"),
        "replica.lua",
        &[&rport.to_string(), "data", &members],
    );
    wait_listening(&format!("127.0.0.1:{rport}"), "node");
    wait_for(rport, SUMMARY, r#"[100,"row 1",2,"running"]"#);
    // Tarantool now follows node too.
    assert_eq!(
        eval(
            mport,
            &format!(
                "box.cfg{{replication = {{'127.0.0.1:{mport}', '127.0.0.1:{rport}'}}}} \
                 return box.info.replication[2].upstream.status"
            )
        ),
        r#""follow""#
    );
    eval(mport, "box.space.test:insert{1000, 'from tarantool'} return true");
    eval(rport, "box.space.test:insert{2000, 'from node'} return true");
    let check = "local t = box.space.test return {t:count(), t:get{1000}[2], t:get{2000}[2], \
                 box.info.vclock[1], box.info.vclock[2]}";
    let want = r#"[102,"from tarantool","from node",117,1]"#;
    wait_for(mport, check, want);
    wait_for(rport, check, want);
    // Each sees the other follow it, and its own rows did not come back twice.
    assert_eq!(
        eval(rport, "return box.info.replication[1].downstream.status"),
        r#""follow""#
    );
    assert_eq!(
        eval(mport, "return box.info.replication[2].downstream.status"),
        r#""follow""#
    );
}
