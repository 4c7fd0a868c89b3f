//! The master side of replication (the relay) against real Tarantool 2.6.0: a tarantool
//! replica joins a node master, follows its writes, catches up after a restart (across
//! xlog rotations and garbage collection), and reconnects after the master restarts; bad
//! replication requests get the errors tarantool gives for the same bytes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, temp_dir, wait_listening, KillOnDrop, NODE};
use rmpv::Value;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/relay").join(name)
}

/// `program script args...` in `dir` (stderr appended to `dir/stderr.log`), once it
/// listens on `port`.
fn spawn(program: &str, dir: &Path, script: &Path, args: &[u16], port: u16) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("stderr.log"))
        .expect("log file");
    let child = Command::new(program)
        .arg(script)
        .args(args.iter().map(|a| a.to_string()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} starts (scripts/setup.sh installs tarantool): {e}"));
    let process = KillOnDrop(child);
    wait_listening(&format!("127.0.0.1:{port}"), program);
    process
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
}

/// Polls `f` until it gives something (10 s at most).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mp(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encode");
    out
}

fn map(pairs: &[(u64, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (Value::from(*k), v.clone())).collect())
}

fn get(m: &Value, k: u64) -> Option<Value> {
    m.as_map()?
        .iter()
        .find(|(key, _)| key.as_u64() == Some(k))
        .map(|(_, v)| v.clone())
}

/// A field of a Lua-side map (string keys).
fn field(m: &Value, k: &str) -> Option<Value> {
    m.as_map()?
        .iter()
        .find(|(key, _)| key.as_str() == Some(k))
        .map(|(_, v)| v.clone())
}

fn frame(packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0xce];
    out.extend_from_slice(&(packet.len() as u32).to_be_bytes());
    out.extend_from_slice(packet);
    out
}

/// A binary-protocol client: requests, raw packets, EVAL.
struct Client {
    s: TcpStream,
    salt: Vec<u8>,
}

impl Client {
    fn connect(port: u16) -> Option<Client> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut greeting = [0u8; 128];
        s.read_exact(&mut greeting).ok()?;
        let salt = node::iproto::codec::parse_greeting(&greeting).ok()?.salt;
        Some(Client { s, salt })
    }

    fn login(port: u16, user: &str, password: &str) -> Option<Client> {
        let mut c = Client::connect(port)?;
        let scramble = node::box_::chap_sha1::scramble(&c.salt[..20], password);
        let auth = map(&[
            (0x23, user.into()),
            (
                0x21,
                Value::Array(vec!["chap-sha1".into(), Value::Binary(scramble.to_vec())]),
            ),
        ]);
        let (header, _) = c.request(7, 1, Some(&auth))?;
        (get(&header, 0)?.as_u64() == Some(0)).then_some(c)
    }

    fn send(&mut self, kind: u64, sync: u64, body: Option<&Value>) {
        let mut packet = mp(&map(&[(0, kind.into()), (1, sync.into())]));
        if let Some(b) = body {
            packet.extend(mp(b));
        }
        self.s.write_all(&frame(&packet)).expect("send");
    }

    /// One packet: header and body (None: the server closed the connection).
    fn read(&mut self) -> Option<(Value, Option<Value>)> {
        let mut prefix = [0u8; 5];
        self.s.read_exact(&mut prefix).ok()?;
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        let mut packet = vec![0u8; len];
        self.s.read_exact(&mut packet).ok()?;
        let mut rd = &packet[..];
        let header = rmpv::decode::read_value(&mut rd).expect("header");
        Some((header, rmpv::decode::read_value(&mut rd).ok()))
    }

    fn request(&mut self, kind: u64, sync: u64, body: Option<&Value>) -> Option<(Value, Option<Value>)> {
        self.send(kind, sync, body);
        self.read()
    }

    /// EVAL: the values returned, or the error message.
    fn eval(&mut self, expr: &str) -> Result<Vec<Value>, String> {
        let body = map(&[(0x27, expr.into()), (0x21, Value::Array(vec![]))]);
        let (header, body) = self.request(8, 2, Some(&body)).ok_or("connection closed")?;
        let body = body.unwrap_or(Value::Nil);
        if get(&header, 0).and_then(|k| k.as_u64()) != Some(0) {
            return Err(get(&body, 0x31).map(|m| m.to_string()).unwrap_or_default());
        }
        Ok(get(&body, 0x30).and_then(|d| d.as_array().cloned()).unwrap_or_default())
    }
}

/// The first value `expr` returns on the instance at `port`, as admin.
fn eval(port: u16, expr: &str) -> Value {
    let mut c = Client::login(port, "admin", "admin").unwrap_or_else(|| panic!("login on {port}"));
    c.eval(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .into_iter()
        .next()
        .unwrap_or(Value::Nil)
}

/// `expr`'s first value once the instance answers it (a replica loading answers errors).
fn try_eval(port: u16, expr: &str) -> Option<Value> {
    let mut c = Client::login(port, "admin", "admin")?;
    c.eval(expr).ok()?.into_iter().next()
}

fn dump(port: u16) -> Value {
    let code = std::fs::read_to_string(script("dump.lua")).expect("dump.lua");
    eval(port, &code)
}

/// Waits until the replica at `replica` has everything the master at `master` wrote.
fn wait_synced(master: u16, replica: u16) {
    let lsn = eval(master, "return box.info.lsn");
    wait_for("the replica to catch up", || {
        // A replica that restarts answers while box.cfg still loads: wait for it to run.
        let expr = "return box.info.status == 'running' and box.space._space ~= nil \
                    and box.info.replication[1].lsn";
        let got = try_eval(replica, expr)?;
        (got == lsn).then_some(())
    });
}

fn downstream(master: u16) -> Value {
    eval(master, "return box.info.replication[2].downstream")
}

struct Pair {
    /// The replica's binary: tarantool, or node.
    replica_program: &'static str,
    master: Option<KillOnDrop>,
    master_port: u16,
    master_dir: PathBuf,
    replica: Option<KillOnDrop>,
    replica_port: u16,
    replica_dir: PathBuf,
}

impl Pair {
    fn start(name: &str, replica_program: &'static str) -> Pair {
        let master_dir = temp_dir(&format!("relay-{name}-master"));
        let replica_dir = temp_dir(&format!("relay-{name}-replica"));
        let master_port = free_port();
        let replica_port = free_port();
        let master = spawn(NODE, &master_dir, &script("master.lua"), &[master_port], master_port);
        let replica = spawn(
            replica_program,
            &replica_dir,
            &script("replica.lua"),
            &[replica_port, master_port],
            replica_port,
        );
        let pair = Pair {
            replica_program,
            master: Some(master),
            master_port,
            master_dir,
            replica: Some(replica),
            replica_port,
            replica_dir,
        };
        wait_for("the replica to follow", || {
            let status = try_eval(replica_port, "return box.info.replication[1].upstream.status")?;
            (status.as_str() == Some("follow")).then_some(())
        });
        pair
    }

    fn restart_replica(&mut self) {
        self.replica = Some(spawn(
            self.replica_program,
            &self.replica_dir,
            &script("replica.lua"),
            &[self.replica_port, self.master_port],
            self.replica_port,
        ));
    }

    /// Starts the master again (after a kill -9).
    fn restart_master(&mut self) {
        self.master = Some(spawn(
            NODE,
            &self.master_dir,
            &script("master.lua"),
            &[self.master_port],
            self.master_port,
        ));
    }

    fn assert_same_data(&self) {
        wait_synced(self.master_port, self.replica_port);
        let (m, r) = (dump(self.master_port), dump(self.replica_port));
        assert_eq!(m, r, "master and replica differ");
    }
}

#[test]
fn a_tarantool_replica_joins_follows_catches_up_and_reconnects() {
    joins_follows_catches_up_and_reconnects("tarantool");
}

#[test]
fn a_node_replica_does_the_same_through_the_relay() {
    joins_follows_catches_up_and_reconnects(NODE);
}

fn joins_follows_catches_up_and_reconnects(replica_program: &'static str) {
    let name = if replica_program == NODE {
        "follow-node"
    } else {
        "follow"
    };
    let mut pair = Pair::start(name, replica_program);
    let (m, r) = (pair.master_port, pair.replica_port);
    // Joined: its id from the master's _cluster, every replicated row, none of the
    // local or temporary ones.
    assert_eq!(eval(r, "return box.info.id").as_u64(), Some(2));
    assert_eq!(eval(r, "return box.space.test:count()").as_u64(), Some(100));
    assert_eq!(eval(r, "return box.space.loc:count()").as_u64(), Some(0));
    assert_eq!(eval(r, "return box.space.tmp:count()").as_u64(), Some(0));
    pair.assert_same_data();
    let master_log = log_of(&pair.master_dir);
    for line in [
        "joining replica ",
        "initial data sent.",
        "assigned id 2 to replica ",
        "final data sent.",
    ] {
        assert!(
            master_log.contains(line),
            "{line} not in the master's log:\n{master_log}"
        );
    }
    assert!(master_log.contains("subscribed replica "), "{master_log}");

    // Live traffic of every kind.
    eval(
        m,
        "box.space.test:replace{1, 'replaced'} box.space.test:delete{2} \
         box.space.test:update({3}, {{'=', 2, 'updated'}, {'!', 3, 'more'}}) \
         box.space.test:upsert({4, 'x'}, {{'=', 2, 'upserted'}}) \
         box.space.test:upsert({1000, 'inserted by upsert'}, {{'=', 2, 'no'}}) \
         box.begin() box.space.test:insert{2000, 'a'} box.space.test:insert{2001, 'b'} \
         box.space.test:delete{5} box.commit() \
         local s = box.schema.space.create('ddl', {format = {{'id', 'unsigned'}, {'v', 'string'}}}) \
         s:create_index('pk') s:create_index('v', {parts = {2, 'string'}, unique = false}) \
         s:insert{1, 'one'} box.schema.user.create('reader', {password = 'r'}) \
         box.schema.user.grant('reader', 'read', 'space', 'test') \
         box.space.loc:insert{2, 'still local'}",
    );
    pair.assert_same_data();
    assert_eq!(eval(r, "return box.space.test:get{3}")[1].as_str(), Some("updated"));
    assert_eq!(eval(r, "return #box.space.ddl.index").as_u64(), Some(1));
    assert_eq!(eval(r, "return box.space.loc:count()").as_u64(), Some(0));
    // The replica's acks reach the master's box.info.
    let lsn = eval(m, "return box.info.lsn");
    let d = wait_for("the ack of the last write", || {
        let d = downstream(m);
        let acked = field(&d, "vclock").and_then(|v| get(&v, 1));
        (acked == Some(lsn.clone())).then_some(d)
    });
    assert_eq!(
        field(&d, "status")
            .and_then(|s| s.as_str().map(String::from))
            .as_deref(),
        Some("follow")
    );
    let idle = field(&d, "idle").and_then(|i| i.as_f64()).expect("idle");
    assert!((0.0..1.0).contains(&idle), "idle {idle}");

    // The replica dies: the relay stops with 2.6's message, and says so.
    pair.replica = None;
    let d = wait_for("the relay to stop", || {
        let d = downstream(m);
        (field(&d, "status")?.as_str() == Some("stopped")).then_some(d)
    });
    let message = field(&d, "message")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    assert!(
        message.starts_with("unexpected EOF when reading from socket, called on fd "),
        "{message}"
    );
    assert!(
        message.contains(&format!("aka 127.0.0.1:{m}, peer of 127.0.0.1:")),
        "{message}"
    );
    assert_eq!(
        field(&d, "system_message")
            .and_then(|v| v.as_str().map(String::from))
            .as_deref(),
        Some("Broken pipe")
    );
    assert!(log_of(&pair.master_dir).contains("exiting the relay loop"));

    // Writes while it is away, with two checkpoints between them: with checkpoint_count 1
    // the first xlogs would be gone, but the replica still needs them.
    eval(
        m,
        "for i = 3000, 3999 do box.space.test:insert{i, string.rep('x', 200)} end box.snapshot() \
         for i = 4000, 4099 do box.space.test:insert{i} end box.snapshot() \
         box.space.test:insert{5000}",
    );
    pair.restart_replica();
    pair.assert_same_data();
    // From the xlogs the master kept for it, not by joining anew (which a replica does when
    // the master's ballot says the rows it lacks are gone).
    assert!(
        log_of(&pair.master_dir).contains("recover from `"),
        "the catch-up read no xlogs"
    );
    let replica_log = log_of(&pair.replica_dir);
    assert_eq!(
        replica_log.matches("bootstrapping replica from").count(),
        1,
        "{replica_log}"
    );

    // The master restarts: the replica reconnects and goes on.
    pair.master = None;
    pair.restart_master();
    eval(m, "box.space.test:insert{6000, 'after the restart'}");
    pair.assert_same_data();
    assert_eq!(
        eval(r, "return box.space.test:get{6000}")[1].as_str(),
        Some("after the restart")
    );
}

fn uuid_str() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A response in a comparable form: `ok {keys}` or `error <code> <message>`, with the
/// server's own uuids replaced by names.
fn describe(reply: Option<(Value, Option<Value>)>, names: &[(&str, &str)]) -> String {
    let Some((header, body)) = reply else {
        return "closed".into();
    };
    let kind = get(&header, 0).and_then(|k| k.as_u64()).unwrap_or(u64::MAX);
    let body = body.unwrap_or(Value::Nil);
    let mut text = if kind & 0x8000 != 0 {
        let message = get(&body, 0x31)
            .and_then(|m| m.as_str().map(String::from))
            .unwrap_or_default();
        format!("error {} {message}", kind & 0x7fff)
    } else {
        let keys: Vec<String> = body
            .as_map()
            .map(|m| m.iter().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default();
        format!("type {kind} body keys {keys:?}")
    };
    for (uuid, name) in names {
        text = text.replace(uuid, name);
    }
    text
}

/// Reads a JOIN's answers up to its last OK; false if it ended otherwise.
fn read_join(c: &mut Client) -> bool {
    let mut marks = 0;
    while let Some((header, _)) = c.read() {
        match get(&header, 0).and_then(|k| k.as_u64()) {
            Some(0) => {
                marks += 1;
                if marks == 3 {
                    return true;
                }
            }
            Some(2) => {}
            _ => return false,
        }
    }
    false
}

/// What a server answers to each bad (or borderline) replication request.
fn replication_answers(port: u16) -> Vec<String> {
    let instance = eval(port, "return box.info.uuid")
        .as_str()
        .unwrap_or_default()
        .to_string();
    let replicaset = eval(port, "return box.info.cluster.uuid")
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stranger = uuid_str();
    let names = [
        (instance.as_str(), "<instance>"),
        (replicaset.as_str(), "<replicaset>"),
        (stranger.as_str(), "<stranger>"),
    ];
    let subscribe = |uuid: &str, vclock: Value| {
        map(&[
            (0x25, replicaset.as_str().into()),
            (0x24, uuid.into()),
            (0x26, vclock),
            (0x06, 0x20600.into()),
            (0x50, false.into()),
        ])
    };
    let empty = || Value::Map(vec![]);
    let mut out = Vec::new();
    let mut case = |title: &str, reply: Option<(Value, Option<Value>)>| {
        out.push(format!("{title}: {}", describe(reply, &names)));
    };

    let mut guest = Client::connect(port).expect("connect");
    let vote = guest.request(68, 1, None);
    let ballot = vote.as_ref().and_then(|(_, b)| b.clone()).and_then(|b| get(&b, 0x29));
    let ballot_keys: Vec<String> = ballot
        .as_ref()
        .and_then(|b| {
            b.as_map().map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_bool().map_or("map".into(), |b| b.to_string())))
                    .collect()
            })
        })
        .unwrap_or_default();
    case(&format!("vote {ballot_keys:?}"), vote);
    let join = map(&[(0x24, stranger.as_str().into())]);
    case("join as guest", guest.request(65, 2, Some(&join)));
    case(
        "subscribe as guest",
        guest.request(66, 3, Some(&subscribe(&stranger, empty()))),
    );

    let repl = || Client::login(port, "repl", "pass").expect("login repl");
    case(
        "join self",
        repl().request(65, 4, Some(&map(&[(0x24, instance.as_str().into())]))),
    );
    case(
        "join bad uuid",
        repl().request(65, 5, Some(&map(&[(0x24, "not-a-uuid".into())]))),
    );
    case("join no body", repl().request(65, 6, None));
    case(
        "subscribe unknown",
        repl().request(66, 7, Some(&subscribe(&stranger, empty()))),
    );
    case(
        "subscribe self",
        repl().request(66, 8, Some(&subscribe(&instance, empty()))),
    );
    let garbage = subscribe(&stranger, Value::Array(vec![1.into(), 2.into()]));
    case("subscribe vclock array", repl().request(66, 9, Some(&garbage)));
    let garbage = subscribe(&stranger, map(&[(1, "x".into())]));
    case("subscribe vclock string lsn", repl().request(66, 10, Some(&garbage)));
    case("subscribe no body", repl().request(66, 11, None));
    let bad_filter = map(&[(0x24, stranger.as_str().into()), (0x51, Value::Array(vec![40.into()]))]);
    case("subscribe bad id filter", repl().request(66, 12, Some(&bad_filter)));
    let bad_anon = map(&[(0x24, stranger.as_str().into()), (0x50, 1.into())]);
    case("subscribe bad anon", repl().request(66, 13, Some(&bad_anon)));
    let bad_version = map(&[(0x24, stranger.as_str().into()), (0x06, "2.6".into())]);
    case("subscribe bad version", repl().request(66, 14, Some(&bad_version)));

    // An anonymous replica needs no registration.
    let anon = map(&[(0x24, uuid_str().into()), (0x26, empty()), (0x50, true.into())]);
    case("subscribe anonymous", repl().request(66, 19, Some(&anon)));
    // A registered replica (joined just now) with a replica set uuid that is not the
    // master's: 2.6.0's master leaves that check to the replica and answers.
    let mut joined = repl();
    joined.send(65, 15, Some(&map(&[(0x24, stranger.as_str().into())])));
    assert!(read_join(&mut joined), "the join of a new replica");
    let foreign = map(&[
        (0x25, uuid_str().into()),
        (0x24, stranger.as_str().into()),
        (0x26, empty()),
        (0x06, 0x20600.into()),
    ]);
    let first = joined.request(66, 16, Some(&foreign));
    let master_id = first.as_ref().and_then(|(h, _)| get(h, 2)).and_then(|v| v.as_u64());
    case(
        &format!("subscribe foreign replica set (master id {master_id:?})"),
        first,
    );
    // While it follows, a second subscription of the same replica is refused.
    case(
        "subscribe twice",
        repl().request(66, 17, Some(&subscribe(&stranger, empty()))),
    );
    // It never acks: heartbeats, then after 4 x replication_timeout the relay gives up.
    let mut heartbeats = 0;
    let end = loop {
        match joined.read() {
            Some((h, None)) if get(&h, 0).and_then(|k| k.as_u64()) == Some(0) => heartbeats += 1,
            // The catch-up rows (it said it has nothing).
            Some((h, _)) if get(&h, 0).and_then(|k| k.as_u64()).is_some_and(|k| k < 0x8000) => {}
            other => break other,
        }
    };
    case(&format!("silent replica (heartbeats > 1: {})", heartbeats > 1), end);
    case("then the connection", joined.read());
    let d = eval(
        port,
        &format!("return box.info.replication[{}].downstream", {
            let id = eval(
                port,
                &format!("return box.space._cluster.index.uuid:get{{'{stranger}'}}[1]"),
            );
            id.as_u64().unwrap_or(0)
        }),
    );
    let shown = format!(
        "{:?} {:?} {:?}",
        field(&d, "status").map(|v| v.to_string()),
        field(&d, "message").map(|v| v.to_string()),
        field(&d, "system_message").map(|v| v.to_string())
    );
    case(&format!("downstream {shown}"), Some((map(&[(0, 0.into())]), None)));

    // A malformed ack ends the relay with the decoder's error.
    let mut bad_ack = repl();
    let reply = bad_ack.request(66, 18, Some(&subscribe(&stranger, empty())));
    assert_eq!(
        reply.and_then(|(h, _)| get(&h, 0)).and_then(|k| k.as_u64()),
        Some(0),
        "{out:#?}"
    );
    bad_ack.send(0, 0, Some(&map(&[(0x26, Value::Array(vec![1.into()]))])));
    let end = loop {
        match bad_ack.read() {
            Some((h, _)) if get(&h, 0).and_then(|k| k.as_u64()).is_some_and(|k| k < 0x8000) => {}
            other => break other,
        }
    };
    case("bad ack", end);
    out
}

#[test]
fn bad_replication_requests_get_tarantools_answers() {
    let port_node = free_port();
    let port_tarantool = free_port();
    let dir_node = temp_dir("relay-bad-node");
    let dir_tarantool = temp_dir("relay-bad-tarantool");
    let _node = spawn(NODE, &dir_node, &script("master.lua"), &[port_node], port_node);
    let _tarantool = spawn(
        "tarantool",
        &dir_tarantool,
        &script("master.lua"),
        &[port_tarantool],
        port_tarantool,
    );
    let node_answers = replication_answers(port_node);
    // Each undecodable request or ack is counted as a malformed packet and logged.
    let malformed = eval(port_node, "return box.stat.net().MALFORMED.total").as_u64();
    let expected = node_answers.iter().filter(|a| a.contains("error 20 ")).count() as u64;
    assert_eq!(malformed, Some(expected), "{node_answers:#?}");
    assert!(log_of(&dir_node).contains("binary: malformed packet from "));
    let tarantool_answers = replication_answers(port_tarantool);
    for (n, t) in node_answers.iter().zip(&tarantool_answers) {
        assert_eq!(n, t, "node and tarantool answer differently");
    }
    assert_eq!(node_answers.len(), tarantool_answers.len());
    // Every case was answered by something meaningful.
    assert!(node_answers
        .iter()
        .any(|a| a.contains("error 42 Read access to universe '' is denied for user 'guest'")));
    assert!(node_answers
        .iter()
        .any(|a| a.contains("is not registered with replica set <replicaset>")));
    assert!(
        node_answers.iter().any(|a| a.contains("error 115 timed out")),
        "{node_answers:#?}"
    );
}

#[test]
fn a_replica_far_behind_catches_up_while_the_master_keeps_writing() {
    let mut pair = Pair::start("behind", "tarantool");
    let m = pair.master_port;
    pair.replica = None;
    // 60,000 rows while it is away (zstd-compressed blocks, several xlogs)...
    eval(
        m,
        "for i = 1, 60 do box.begin() for j = 1, 1000 do \
         box.space.test:replace{10000 + i * 1000 + j, string.rep('p', 60), i} end box.commit() \
         if i % 20 == 0 then box.snapshot() end end",
    );
    // ...and more from a fiber while it catches up: the relay moves from the files to the
    // rows being written without losing or repeating one.
    let bulk = eval(m, "return box.info.lsn").as_u64().expect("lsn");
    eval(
        m,
        "_G.stop = false require('fiber').create(function() local i = 0 \
         while not _G.stop do i = i + 1 box.space.test:replace{i % 500, 'moving', i} \
         if i % 50 == 0 then require('fiber').sleep(0.001) end end \
         box.space.test:insert{999999, 'last'} end)",
    );
    pair.restart_replica();
    wait_for("the replica past the backlog", || {
        let lsn = try_eval(pair.replica_port, "return box.info.replication[1].lsn")?.as_u64()?;
        (lsn > bulk + 100).then_some(())
    });
    eval(m, "_G.stop = true");
    wait_for("the writer to finish", || {
        (eval(m, "return box.space.test:get{999999} ~= nil").as_bool() == Some(true)).then_some(())
    });
    pair.assert_same_data();
    assert!(log_of(&pair.master_dir).contains("recover from `"));
}

#[test]
fn a_subscriber_hears_the_election_state_first() {
    let dir = temp_dir("relay-raft");
    let port = free_port();
    let script_path = dir.join("raft.lua");
    std::fs::write(
        &script_path,
        "box.cfg{listen = '127.0.0.1:' .. arg[1], replication_timeout = 0.1, election_mode = 'candidate'}\n\
         box.ctl.wait_rw()\n\
         box.schema.user.grant('guest', 'replication')\n",
    )
    .expect("script");
    let _master = spawn(NODE, &dir, &script_path, &[port], port);
    let stranger = uuid_str();
    let mut c = wait_for("the leader to take grants", || {
        let mut c = Client::connect(port)?;
        c.send(65, 1, Some(&map(&[(0x24, stranger.as_str().into())])));
        read_join(&mut c).then_some(c)
    });
    let sub = map(&[(0x24, stranger.as_str().into()), (0x26, Value::Map(vec![]))]);
    let (ok, _) = c.request(66, 2, Some(&sub)).expect("subscribed");
    assert_eq!(get(&ok, 0).and_then(|k| k.as_u64()), Some(0));
    // `{0: 30, 1: sync, 7: 1}{0: term, 1: vote, 2: state, ...}`, before any row.
    let (header, body) = c.read().expect("the RAFT row");
    assert_eq!(get(&header, 0).and_then(|k| k.as_u64()), Some(30), "{header}");
    assert_eq!(get(&header, 7).and_then(|k| k.as_u64()), Some(1), "{header}");
    assert_eq!(get(&header, 1).and_then(|k| k.as_u64()), Some(2), "{header}");
    let body = body.expect("body");
    assert!(
        get(&body, 0).and_then(|t| t.as_u64()).is_some_and(|term| term >= 2),
        "{body}"
    );
    // A leader (state 3) that voted for itself (id 1).
    assert_eq!(get(&body, 2).and_then(|s| s.as_u64()), Some(3), "{body}");
    assert_eq!(get(&body, 1).and_then(|s| s.as_u64()), Some(1), "{body}");
}

/// What a JOIN gets while a synchronous transaction waits for its quorum in vain.
fn join_during_a_doomed_sync_write(program: &str, name: &str) -> String {
    let dir = temp_dir(name);
    let port = free_port();
    let _server = spawn(program, &dir, &script("sync_master.lua"), &[port], port);
    // The script has run once admin can log in and the space is there.
    wait_for("the script", || {
        try_eval(port, "return box.space.sync ~= nil")?.as_bool()?.then_some(())
    });
    let writer = std::thread::spawn(move || {
        let mut c = Client::login(port, "admin", "admin").expect("login");
        c.eval("box.space.sync:insert{1}")
    });
    // The write is in the queue by now.
    std::thread::sleep(Duration::from_millis(200));
    let mut c = Client::connect(port).expect("connect");
    c.send(65, 3, Some(&map(&[(0x24, uuid_str().into())])));
    let answer = loop {
        match c.read() {
            // The read view must not go before the queue is decided.
            Some((h, _)) if get(&h, 0).and_then(|k| k.as_u64()) == Some(2) => panic!("{program} sent data"),
            Some((h, _)) if get(&h, 0).and_then(|k| k.as_u64()) == Some(0) => {}
            other => break describe(other, &[]),
        }
    };
    let written = writer.join().expect("writer");
    format!("{answer}; the write: {written:?}")
}

#[test]
fn a_join_waits_for_the_synchronous_queue() {
    let node = join_during_a_doomed_sync_write(NODE, "relay-sync-node");
    let tarantool = join_during_a_doomed_sync_write("tarantool", "relay-sync-tarantool");
    assert_eq!(node, tarantool);
    assert!(
        node.starts_with("error 217 A rollback for a synchronous transaction is received"),
        "{node}"
    );
}

#[test]
fn a_tarantool_replicas_acks_commit_synchronous_transactions() {
    let master_dir = temp_dir("relay-acks-master");
    let replica_dir = temp_dir("relay-acks-replica");
    let (m, r) = (free_port(), free_port());
    let _master = spawn(NODE, &master_dir, &script("sync_replicated.lua"), &[m], m);
    let replica = spawn("tarantool", &replica_dir, &script("replica.lua"), &[r, m], r);
    wait_for("the replica to follow", || {
        let status = try_eval(r, "return box.info.replication[1].upstream.status")?;
        (status.as_str() == Some("follow")).then_some(())
    });
    // Committed by the replica's ack (the CONFIRM follows it there), long before the
    // synchro timeout.
    let took = eval(
        m,
        "local t = require('clock').monotonic() box.space.sync:insert{1, 'acked'} \
         return require('clock').monotonic() - t",
    );
    assert!(took.as_f64().is_some_and(|t| t < 0.5), "{took}");
    wait_synced(m, r);
    assert_eq!(eval(r, "return box.space.sync:get{1}")[1].as_str(), Some("acked"));
    // Without the replica nothing gathers the quorum.
    drop(replica);
    let outcome = eval(
        m,
        "local ok, e = pcall(box.space.sync.insert, box.space.sync, {2}) return tostring(e)",
    );
    assert_eq!(
        outcome.as_str(),
        Some("Quorum collection for a synchronous transaction is timed out")
    );
}

#[test]
fn a_relay_does_not_buffer_a_huge_ack() {
    let dir = temp_dir("relay-huge-ack");
    let port = free_port();
    let _master = spawn(NODE, &dir, &script("master.lua"), &[port], port);
    wait_for("the script", || {
        try_eval(port, "return box.space.test ~= nil")?.as_bool()?.then_some(())
    });
    let mut c = Client::login(port, "repl", "pass").expect("login");
    let stranger = uuid_str();
    c.send(65, 1, Some(&map(&[(0x24, stranger.as_str().into())])));
    assert!(read_join(&mut c));
    let sub = map(&[(0x24, stranger.as_str().into()), (0x26, Value::Map(vec![]))]);
    c.send(66, 2, Some(&sub));
    // A length prefix of 100 MB, then a trickle: the relay refuses it at once.
    c.s.write_all(&[0xce, 0x05, 0xf5, 0xe1, 0x00, 0x81]).expect("send");
    let end = loop {
        match c.read() {
            Some((h, _)) if get(&h, 0).and_then(|k| k.as_u64()).is_some_and(|k| k < 0x8000) => {}
            other => break describe(other, &[]),
        }
    };
    assert_eq!(
        end,
        "error 20 Invalid MsgPack - too big packet size in the header: 100000000"
    );
    assert_eq!(c.read(), None, "closed");
}
