//! node replicating to node: a master and a replica, and a full mesh of three masters that
//! bootstrap together (the relay serves what the applier asks). The test talks to the
//! instances with Tarantool's net.box, as admin (the password comes with the replica set).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, temp_dir, wait_listening, KillOnDrop, NODE};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/replication")
        .join(name)
}

/// A member `peer.lua` on `port` with the replica set `ports`, in `dir`.
fn start_peer(dir: &Path, port: u16, ports: &[u16], read_only: bool) -> KillOnDrop {
    start_member(dir, port, ports, read_only, None)
}

/// [`start_peer`] with a chosen instance uuid.
fn start_member(dir: &Path, port: u16, ports: &[u16], read_only: bool, uuid: Option<&str>) -> KillOnDrop {
    std::fs::create_dir_all(dir).expect("member dir");
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let child = Command::new(NODE)
        .arg(script("peer.lua"))
        .args([port.to_string(), "data".into(), list.join(",")])
        .arg(if read_only { "ro" } else { "rw" })
        .args(uuid)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log file"))
        .spawn()
        .expect("node starts");
    KillOnDrop(child)
}

/// `code` (a chunk returning one value) on the instance at `port`, as admin through
/// Tarantool's net.box; the value as JSON, or `error: ...`.
fn eval(port: u16, code: &str) -> String {
    let client = format!(
        "local ok, c = pcall(require('net.box').connect, 'admin:test@127.0.0.1:{port}', \
         {{connect_timeout = 2, wait_connected = 2}}) \
         if not ok or not c:is_connected() then print('error: not connected') os.exit(0) end \
         local ok, r = pcall(c.eval, c, [==[{code}]==]) \
         if ok then print(require('json').encode(r)) else print('error: ' .. tostring(r)) end \
         os.exit(0)"
    );
    let out = Command::new("tarantool")
        .args(["-e", &client])
        .stdin(Stdio::null())
        .output()
        .expect("tarantool runs the client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_for(port: u16, code: &str, want: &str, within: Duration) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < within {
        last = eval(port, code);
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("on port {port}, `{code}` gave {last}, not {want}");
}

fn logs(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| {
            let log = std::fs::read_to_string(dir.join(n).join("data/replica.log")).unwrap_or_default();
            format!("--- {n}\n{log}")
        })
        .collect()
}

#[test]
fn a_node_replica_follows_a_node_master() {
    let dir = temp_dir("repl-node-pair");
    let (mport, rport) = (free_port(), free_port());
    let _master = start_peer(&dir.join("master"), mport, &[mport], false);
    wait_listening(&format!("127.0.0.1:{mport}"), "node master");
    wait_for(mport, "return box.info.status", r#""running""#, Duration::from_secs(10));
    eval(
        mport,
        "for i = 1, 50 do box.space.test:insert{i, 'before'} end return true",
    );
    let _replica = start_peer(&dir.join("replica"), rport, &[mport], true);
    wait_listening(&format!("127.0.0.1:{rport}"), "node replica");
    let state = "return {box.space.test:count(), box.info.id, box.info.status, box.info.ro, \
                 box.info.replication[1].upstream.status}";
    wait_for(
        rport,
        state,
        r#"[50,2,"running",true,"follow"]"#,
        Duration::from_secs(10),
    );
    eval(
        mport,
        "box.begin() box.space.test:insert{100, 'txn'} box.space.test:delete{1} box.commit() \
         box.space.test:update(2, {{'=', 2, 'updated'}}) box.schema.space.create('later'):create_index('pk') \
         box.space.later:insert{1} return true",
    );
    let check = "return {box.space.test:count(), box.space.test:get{100}[2], box.space.test:get{2}[2], \
                 box.space.later:count(), box.info.vclock[1]}";
    let want = eval(mport, check);
    wait_for(rport, check, &want, Duration::from_secs(10));
    // The master sees the replica's acks.
    wait_for(
        mport,
        "return box.info.replication[2].downstream.status",
        r#""follow""#,
        Duration::from_secs(10),
    );
}

#[test]
fn three_masters_bootstrap_together_and_converge() {
    let dir = temp_dir("repl-node-mesh");
    let ports = [free_port(), free_port(), free_port()];
    let names = ["a", "b", "c"];
    let members: Vec<KillOnDrop> = ports
        .iter()
        .zip(names)
        .map(|(&p, n)| start_peer(&dir.join(n), p, &ports, false))
        .collect();
    for &p in &ports {
        wait_listening(&format!("127.0.0.1:{p}"), "a member");
    }
    // One of them started the replica set (the lowest UUID: all are writable and empty),
    // the others joined it; every member has every other as a following upstream.
    let started = Instant::now();
    let status = "local n = 0 for _, r in pairs(box.info.replication) do \
                  if r.upstream and r.upstream.status == 'follow' then n = n + 1 end end \
                  return {box.info.status, n}";
    for &p in &ports {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        let got = std::panic::catch_unwind(|| wait_for(p, status, r#"["running",2]"#, left));
        assert!(got.is_ok(), "{}", logs(&dir, &names));
    }
    let uuids: Vec<String> = ports.iter().map(|&p| eval(p, "return box.info.uuid")).collect();
    let mut sorted = uuids.clone();
    sorted.sort();
    let ids = "local t = {} for id, r in pairs(box.info.replication) do t[r.uuid] = id end return t";
    let id_map = eval(ports[0], ids);
    for &p in &ports[1..] {
        assert_eq!(eval(p, ids), id_map, "every member numbers the members alike");
    }
    // The bootstrap leader is the lowest UUID: id 1.
    let leader = uuids.iter().position(|u| *u == sorted[0]).expect("a leader");
    assert_eq!(eval(ports[leader], "return box.info.id"), "1", "{id_map}");
    let log = logs(&dir, &names);
    assert_eq!(log.matches("initializing an empty data directory").count(), 1, "{log}");
    assert_eq!(log.matches("bootstrapping replica from").count(), 2, "{log}");

    // Writes on every member reach every member.
    for (i, &p) in ports.iter().enumerate() {
        let code = format!(
            "for k = 1, 20 do box.space.test:insert{{{} + k, {i}}} end return true",
            (i + 1) * 100
        );
        assert_eq!(eval(p, &code), "true");
    }
    let check = "return {box.space.test:count(), box.space.test:get{120}[2], box.space.test:get{220}[2], \
                 box.space.test:get{320}[2]}";
    for &p in &ports {
        wait_for(p, check, "[60,0,1,2]", Duration::from_secs(10));
    }
    let vclocks: Vec<String> = ports
        .iter()
        .map(|&p| eval(p, "local v = box.info.vclock return {v[1] or 0, v[2] or 0, v[3] or 0}"))
        .collect();
    assert!(vclocks.iter().all(|v| *v == vclocks[0]), "{vclocks:?}");
    drop(members);
}

/// The lecture demo's shape: four members started together, one writable. The writable one
/// has the highest UUID, so only the ballots' `is_ro` (read-only members say so while they
/// load) makes everyone bootstrap from it; ids then follow the UUIDs of the others.
#[test]
fn read_only_members_bootstrap_from_the_writable_one() {
    let dir = temp_dir("repl-node-demo");
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let uuids = [
        "ffffffff-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000003",
        "00000000-0000-4000-8000-000000000002",
        "00000000-0000-4000-8000-000000000004",
    ];
    let names = ["rw", "ro1", "ro2", "ro3"];
    let members: Vec<KillOnDrop> = (0..4)
        .map(|i| start_member(&dir.join(names[i]), ports[i], &ports, i > 0, Some(uuids[i])))
        .collect();
    let started = Instant::now();
    for &p in &ports {
        let left = Duration::from_secs(30).saturating_sub(started.elapsed());
        let got = std::panic::catch_unwind(|| {
            wait_for(
                p,
                "return {box.info.status, box.info.id ~= nil}",
                r#"["running",true]"#,
                left,
            )
        });
        assert!(got.is_ok(), "{}", logs(&dir, &names));
    }
    // The writable one is id 1 and registered the others in UUID order.
    let ids: Vec<String> = ports.iter().map(|&p| eval(p, "return box.info.id")).collect();
    assert_eq!(ids, ["1", "3", "2", "4"], "{}", logs(&dir, &names));
    assert_eq!(eval(ports[1], "return box.info.ro"), "true");
    eval(
        ports[0],
        "box.space.test:insert{1, 'from the writable one'} return true",
    );
    for &p in &ports[1..] {
        wait_for(
            p,
            "return box.space.test:get{1}[2]",
            r#""from the writable one""#,
            Duration::from_secs(10),
        );
    }
    drop(members);
}
