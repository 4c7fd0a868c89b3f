//! The two-phase-commit port change of `scripts/twophase/` (issue 7, the lecture's homework):
//! clusters of four `node` instances on 127.0.0.1, each test with its own ports and
//! directory, driven over HTTP (`POST /config`, `GET /`) and one through the console.
//! The topology uses short timeouts so that every failure case ends in a few seconds.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn node() -> &'static str {
    env!("CARGO_BIN_EXE_node")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/twophase/instance.lua")
}

/// Ports below the ephemeral range (so that no outgoing connection takes one meanwhile),
/// each checked free for TCP and UDP; a per-process start so parallel test binaries differ.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20000 + (std::process::id() % 400) as u16 * 25,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let mut p = NEXT.fetch_add(1, Ordering::SeqCst);
        if p >= 32000 {
            NEXT.store(20000, Ordering::SeqCst);
            p = 20000;
        }
        let tcp = TcpListener::bind(("127.0.0.1", p));
        let udp = UdpSocket::bind(("127.0.0.1", p));
        if tcp.is_ok() && udp.is_ok() {
            return p;
        }
    }
}

/// A minimal HTTP/1.1 client: `(status, body)`, or None if nobody answers on the port.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let addr = ("127.0.0.1", port);
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.1)),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut r = rest;
        while let Some((size, tail)) = r.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            r = &tail[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    Some((status, body))
}

/// The instance number served on `port` (GET / answers `{"number": n, "uuid": ...}`).
fn who(port: u16) -> Option<u64> {
    let (status, body) = http(port, "GET", "/", "")?;
    assert_eq!(status, 200, "GET / on {port}: {body}");
    let v: Value = serde_json::from_str(&body).expect("GET / is JSON");
    assert!(
        v["uuid"].as_str().is_some_and(|u| u.len() == 36),
        "GET / has the uuid: {body}"
    );
    v["number"].as_u64()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Inst {
    n: usize,
    uuid: String,
    iproto: u16,
    http: u16,
    swim: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

struct Console {
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

struct Cluster {
    dir: PathBuf,
    topo: PathBuf,
    insts: Vec<Inst>,
    console: Option<Console>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in &mut self.insts {
            if let Some(mut c) = i.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

struct Opts {
    swim: bool,
    console_on: Option<usize>,
}

const FILE: Opts = Opts {
    swim: false,
    console_on: None,
};

impl Cluster {
    fn new(name: &str, n: usize, opts: Opts) -> Cluster {
        let dir = std::env::temp_dir().join(format!("twophase-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let insts: Vec<Inst> = (1..=n)
            .map(|i| Inst {
                n: i,
                uuid: format!("bbbbbbbb-0000-4000-a000-{i:012}"),
                iproto: free_port(),
                http: free_port(),
                swim: free_port(),
                env: vec![],
                child: None,
            })
            .collect();
        let mut topo = String::from("return {\n");
        topo += &format!("    credentials = '{}',\n", if opts.swim { "swim" } else { "file" });
        topo += &format!("    work_dir = '{}/{{n}}',\n", dir.display());
        topo += "    wal_mode = 'write',\n";
        topo += "    swim = {heartbeat_rate = 0.1, ack_timeout = 0.1},\n";
        topo += "    timeouts = {connect = 0.5, prepare = 1.5, commit = 4, release = 2, decision = 1.5, \
                 retry = 0.2, lock = 1, info = 0.5},\n";
        topo += "    instances = {\n";
        for i in &insts {
            topo += &format!(
                "        {{number = {}, uuid = '{}', iproto = '127.0.0.1:{}', http = {}, swim = {}",
                i.n, i.uuid, i.iproto, i.http, i.swim
            );
            if !opts.swim {
                topo += &format!(", user = 'twophase', password = 'pw-{}'", i.n);
            }
            topo += "},\n";
        }
        topo += "    },\n}\n";
        let path = dir.join("topology.lua");
        fs::write(&path, topo).unwrap();
        let mut c = Cluster {
            dir,
            topo: path,
            insts,
            console: None,
        };
        if opts.swim {
            for i in &mut c.insts {
                i.env.push(("TWOPHASE_SWIM_KEY".into(), "the right key".into()));
            }
        }
        for i in 1..=n {
            if opts.console_on == Some(i) {
                c.start_console(i);
            }
        }
        c
    }

    fn inst(&self, n: usize) -> &Inst {
        &self.insts[n - 1]
    }

    fn port(&self, n: usize) -> u16 {
        self.inst(n).http
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("{n}.log"))
    }

    fn log(&self, n: usize) -> String {
        fs::read_to_string(self.log_path(n)).unwrap_or_default()
    }

    fn command(&self, n: usize) -> Command {
        let mut cmd = Command::new(node());
        cmd.current_dir(&self.dir);
        for (k, v) in &self.inst(n).env {
            cmd.env(k, v);
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(n))
            .unwrap();
        cmd.stderr(log);
        cmd
    }

    /// Starts instance n (stdout and stderr to <dir>/<n>.log) and waits for its event loop.
    fn start(&mut self, n: usize) {
        let before = self.log(n).matches("entering the event loop").count();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(n))
            .unwrap();
        let child = self
            .command(n)
            .arg(script())
            .arg(n.to_string())
            .arg(&self.topo)
            .stdin(Stdio::null())
            .stdout(log)
            .spawn()
            .expect("node starts");
        self.insts[n - 1].child = Some(child);
        self.wait_started(n, before);
    }

    fn wait_started(&mut self, n: usize, before: usize) {
        let limit = Instant::now() + Duration::from_secs(10);
        while self.log(n).matches("entering the event loop").count() <= before {
            if let Some(c) = self.insts[n - 1].child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("instance {n} exited with {st}:\n{}", self.log(n));
                }
            }
            assert!(Instant::now() < limit, "instance {n} did not start:\n{}", self.log(n));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts instance n with a console on a pipe (`node -i`).
    fn start_console(&mut self, n: usize) {
        let mut child = self
            .command(n)
            .arg("-i")
            .arg(script())
            .arg(n.to_string())
            .arg(&self.topo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            }
        });
        self.insts[n - 1].child = Some(child);
        self.console = Some(Console { stdin, lines });
        // The console prints the prompt once the script has run.
        self.console_eval("'ready'");
    }

    /// Sends a line to the console and returns its YAML answer (the lines up to `...`).
    fn console_eval(&mut self, line: &str) -> String {
        let c = self.console.as_mut().expect("a console");
        let from = c.lines.lock().unwrap().len();
        writeln!(c.stdin, "{line}").unwrap();
        c.stdin.flush().unwrap();
        let limit = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let lines = c.lines.lock().unwrap();
                let new = &lines[from..];
                if let Some(start) = new.iter().position(|l| l == "---") {
                    if let Some(end) = new[start..].iter().position(|l| l == "...") {
                        return new[start..start + end].join("\n");
                    }
                }
            }
            assert!(Instant::now() < limit, "no console answer to {line}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_all(&mut self) {
        for n in 1..=self.insts.len() {
            if self.insts[n - 1].child.is_none() {
                self.start(n);
            }
        }
    }

    fn kill(&mut self, n: usize) {
        if let Some(mut c) = self.insts[n - 1].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// POST /config to instance `via` (on its current HTTP port `port`): the HTTP status
    /// and the outcome.
    fn apply(&self, port: u16, change: &str) -> (u16, Value) {
        let (status, body) = http(port, "POST", "/config", change).expect("POST /config answers");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("outcome is JSON ({e}): {body}"));
        (status, v)
    }

    fn assert_serving(&self, expect: &[(u16, Option<u64>)]) {
        for (port, n) in expect {
            assert_eq!(who(*port), *n, "port {port} should be served by {n:?}");
        }
    }
}

fn failure_line(old: impl std::fmt::Display, new: impl std::fmt::Display) -> String {
    format!("Failed to change port from {old} to {new}")
}

fn reasons(outcome: &Value) -> String {
    outcome["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The lecture's table through instance 1's console, `box.NULL` included:
/// {[1] = P1, [2] = P4, [3] = P3, [4] = box.NULL}: 1 and 3 keep their ports, 4 stops
/// serving, and 2 takes 4's port, which 4 gives up in the same change.
#[test]
fn the_lecture_table_through_the_console() {
    let mut c = Cluster::new(
        "lecture",
        4,
        Opts {
            swim: false,
            console_on: Some(1),
        },
    );
    c.start_all();
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    c.assert_serving(&[(p1, Some(1)), (p2, Some(2)), (p3, Some(3)), (p4, Some(4))]);
    let out = c.console_eval(&format!(
        "twophase.apply{{[1] = '{p1}', [2] = '{p4}', [3] = '{p3}', [4] = box.NULL}}"
    ));
    assert!(out.contains("status: committed"), "{out}");
    c.assert_serving(&[(p1, Some(1)), (p2, None), (p3, Some(3)), (p4, Some(2))]);
    let first = out;
    let id = first
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("- change: ")
                .or_else(|| l.trim().strip_prefix("change: "))
        })
        .expect("the outcome names the change")
        .to_string();
    // The instances whose port did not change did nothing.
    for n in [1, 3] {
        assert!(
            !c.log(n).contains("HTTP server moved"),
            "instance {n} moved:\n{}",
            c.log(n)
        );
    }
    assert!(
        c.log(4).contains(&format!("HTTP server on port {p4} stopped")),
        "{}",
        c.log(4)
    );
    // A later change gives instance 4 a server again.
    let p5 = free_port();
    let out = c.console_eval(&format!("twophase.apply{{[4] = {p5}}}"));
    assert!(out.contains("status: committed"), "{out}");
    assert_eq!(who(p5), Some(4));

    // Commit and abort are idempotent (what a re-sent decision meets: 1 took part in the
    // first change), and an abort of a change never prepared here makes a late prepare of
    // it a no.
    let again = c.console_eval(&format!("twophase_rpc('commit', {{id = '{id}'}})"));
    assert!(again.contains("already: true") && again.contains("ok: true"), "{again}");
    let abort = c.console_eval("twophase_rpc('abort', {id = 'never-prepared'})");
    assert!(abort.contains("ok: true") && !abort.contains("already"), "{abort}");
    let abort = c.console_eval("twophase_rpc('abort', {id = 'never-prepared'})");
    assert!(abort.contains("already: true"), "{abort}");
    let late = c.console_eval(
        "twophase_rpc('prepare', {id = 'never-prepared', coordinator = 2, participants = {1}, \
         change = {{n = 1, v = 1234}}})",
    );
    assert!(late.contains("the change was already aborted here"), "{late}");
    let wrong = c.console_eval(&format!("twophase_rpc('abort', {{id = '{id}'}})"));
    assert!(wrong.contains("was committed here"), "{wrong}");
    c.assert_serving(&[(p1, Some(1)), (p3, Some(3)), (p4, Some(2)), (p5, Some(4))]);
}

/// Two instances swap ports: each one's new port is held by the other until phase 2.
#[test]
fn a_swap_commits() {
    let mut c = Cluster::new("swap", 4, FILE);
    c.start_all();
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    let (status, out) = c.apply(p3, &format!(r#"{{"1": "{p2}", "2": {p1}}}"#));
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "committed", "{out}");
    c.assert_serving(&[(p1, Some(2)), (p2, Some(1)), (p3, Some(3)), (p4, Some(4))]);
    // And back, coordinated by an instance that moves itself (its answer still arrives).
    let (status, out) = c.apply(p2, &format!(r#"{{"1": {p1}, "2": {p2}}}"#));
    assert_eq!((status, out["status"].as_str()), (200, Some("committed")), "{out}");
    c.assert_serving(&[(p1, Some(1)), (p2, Some(2))]);
}

/// A port held by a process outside the cluster: instance 1 votes no, the change aborts,
/// every instance the change would have moved logs the failure line, nobody moves.
#[test]
fn a_port_taken_by_an_outside_process_aborts() {
    let mut c = Cluster::new("taken", 4, FILE);
    c.start_all();
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    let outside = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let q = outside.local_addr().unwrap().port();
    let r = free_port();
    let (status, out) = c.apply(p2, &format!(r#"{{"1": "{q}", "3": "{r}", "4": {p4}}}"#));
    assert_eq!(status, 409, "{out}");
    assert_eq!(out["status"], "aborted", "{out}");
    let why = reasons(&out);
    assert!(why.contains(&format!("instance 1: port {q} is in use")), "{why}");
    assert!(c.log(1).contains(&failure_line(p1, q)), "{}", c.log(1));
    assert!(c.log(3).contains(&failure_line(p3, r)), "{}", c.log(3));
    // Instance 4's port does not change: it is not affected and logs nothing.
    assert!(!c.log(4).contains("Failed to change port"), "{}", c.log(4));
    c.assert_serving(&[(p1, Some(1)), (p2, Some(2)), (p3, Some(3)), (p4, Some(4)), (r, None)]);
    // r was reserved by instance 3 during phase 1 and is free again.
    drop(TcpListener::bind(("127.0.0.1", r)).expect("the reservation is released"));
    drop(outside);
}

/// Validation: two instances on one port, a non-numeric port, a port out of range, a port
/// of an instance the change does not name: each aborts with its reason.
#[test]
fn invalid_changes_are_rejected_in_validation() {
    let mut c = Cluster::new("invalid", 4, FILE);
    c.start_all();
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    let r = free_port();
    let (status, out) = c.apply(p1, &format!(r#"{{"1": {r}, "2": "{r}"}}"#));
    assert_eq!((status, out["status"].as_str()), (409, Some("aborted")), "{out}");
    let why = reasons(&out);
    assert!(
        why.contains(&format!("instance 1: port {r} is also requested for instance 2")),
        "{why}"
    );
    assert!(
        why.contains(&format!("instance 2: port {r} is also requested for instance 1")),
        "{why}"
    );
    assert!(c.log(2).contains(&failure_line(p2, r)), "{}", c.log(2));

    let (_, out) = c.apply(p1, r#"{"3": "80a"}"#);
    assert_eq!(out["status"], "aborted", "{out}");
    assert!(
        reasons(&out).contains(r#"instance 3: port "80a" is not a number"#),
        "{out}"
    );
    assert!(c.log(3).contains(&failure_line(p3, "80a")), "{}", c.log(3));

    let (_, out) = c.apply(p1, r#"{"3": 70000, "4": 0}"#);
    assert!(
        reasons(&out).contains("instance 3: port 70000 is out of range 1..65535"),
        "{out}"
    );
    assert!(
        reasons(&out).contains("instance 4: port 0 is out of range 1..65535"),
        "{out}"
    );

    // Instance 4 keeps p4: nobody else may end up on it.
    let (_, out) = c.apply(p1, &format!(r#"{{"3": {p4}}}"#));
    assert!(
        reasons(&out).contains(&format!(
            "instance 3: port {p4} is the port of instance 4, which the change does not name"
        )),
        "{out}"
    );
    // The IPROTO port of an instance.
    let (_, out) = c.apply(p1, &format!(r#"{{"3": {}}}"#, c.inst(2).iproto));
    assert!(reasons(&out).contains("is the IPROTO port of instance 2"), "{out}");
    // Not a change at all.
    let (status, out) = c.apply(p1, r#"{"9": 1234}"#);
    assert_eq!((status, out["status"].as_str()), (400, Some("rejected")), "{out}");
    let (status, _) = http(p1, "POST", "/config", "not json").unwrap();
    assert_eq!(status, 400);
    c.assert_serving(&[(p1, Some(1)), (p2, Some(2)), (p3, Some(3)), (p4, Some(4))]);
}

/// A participant that is down cannot vote: it votes no by the timeout, the change aborts.
#[test]
fn a_participant_killed_before_prepare_aborts() {
    let mut c = Cluster::new("killed", 4, FILE);
    c.start_all();
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    c.kill(3);
    let (r1, r3) = (free_port(), free_port());
    let start = Instant::now();
    let (status, out) = c.apply(p2, &format!(r#"{{"1": {r1}, "3": {r3}}}"#));
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert_eq!((status, out["status"].as_str()), (409, Some("aborted")), "{out}");
    assert!(
        reasons(&out).contains("instance 3: cannot connect to instance 3"),
        "{out}"
    );
    assert!(c.log(1).contains(&failure_line(p1, r1)), "{}", c.log(1));
    c.assert_serving(&[(p1, Some(1)), (p2, Some(2)), (p3, None), (p4, Some(4)), (r1, None)]);
    // Back up, it is a participant like any other.
    c.start(3);
    let (_, out) = c.apply(p2, &format!(r#"{{"1": {r1}, "3": {r3}}}"#));
    assert_eq!(out["status"], "committed", "{out}");
    c.assert_serving(&[(r1, Some(1)), (r3, Some(3))]);
}

/// The coordinator dies right after recording its decision (commit), before telling
/// anyone: the participants stay prepared (they cannot guess), and when it is back it
/// completes the change.
#[test]
fn the_coordinator_killed_after_its_decision_completes_after_restart() {
    let mut c = Cluster::new("coordcrash", 4, FILE);
    c.insts[0]
        .env
        .push(("TWOPHASE_CRASH_AT".into(), "after_decision".into()));
    c.start_all();
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    let (r2, r3) = (free_port(), free_port());
    // The coordinator kills itself: the request gets no answer.
    assert!(http(
        p1,
        "POST",
        "/config",
        &format!(r#"{{"2": {r2}, "3": {r3}, "4": null}}"#)
    )
    .is_none());
    assert!(c.log(1).contains("decided to commit"), "{}", c.log(1));
    let _ = c.insts[0].child.take().map(|mut ch| ch.wait());
    // Participants time out waiting for phase 2 and ask: the coordinator is unreachable and
    // every other participant is prepared too, so they wait.
    wait_until("participants blocked", Duration::from_secs(8), || {
        [2, 3, 4].iter().all(|&n| c.log(n).contains("blocked: coordinator 1"))
    });
    c.assert_serving(&[(p2, Some(2)), (p3, Some(3)), (p4, Some(4)), (r2, None), (r3, None)]);
    c.insts[0].env.clear();
    c.start(1);
    wait_until("the change completes", Duration::from_secs(8), || {
        who(r2) == Some(2) && who(r3) == Some(3) && who(p4).is_none()
    });
    c.assert_serving(&[(p1, Some(1)), (p2, None), (p3, None)]);
    assert!(
        c.log(1).contains("delivering the decision (commit) after a restart"),
        "{}",
        c.log(1)
    );
}

/// A coordinator that dies before deciding leaves its participants prepared; back up, it
/// finds the change undecided and aborts it (presumed abort), which releases their locks.
#[test]
fn an_undecided_change_of_a_dead_coordinator_is_aborted_after_restart() {
    let mut c = Cluster::new("undecided", 4, FILE);
    c.insts[3]
        .env
        .push(("TWOPHASE_CRASH_AT".into(), "after_prepare".into()));
    c.start_all();
    let (p1, p2, p4) = (c.port(1), c.port(2), c.port(4));
    let (r1, r2) = (free_port(), free_port());
    assert!(http(p4, "POST", "/config", &format!(r#"{{"1": {r1}, "2": {r2}}}"#)).is_none());
    let _ = c.insts[3].child.take().map(|mut ch| ch.wait());
    // Locked meanwhile: another coordinator's change naming 1 is refused.
    let (_, out) = c.apply(p2, &format!(r#"{{"1": {}}}"#, free_port()));
    assert_eq!(out["locked"], true, "{out}");
    assert!(reasons(&out).contains("locked"), "{out}");
    c.insts[3].env.clear();
    c.start(4);
    wait_until("the locks are released", Duration::from_secs(8), || {
        c.log(1).contains(&failure_line(p1, r1)) && c.log(2).contains(&failure_line(p2, r2))
    });
    c.assert_serving(&[(p1, Some(1)), (p2, Some(2)), (r1, None), (r2, None)]);
    let (_, out) = c.apply(p2, &format!(r#"{{"1": {r1}}}"#));
    assert_eq!(out["status"], "committed", "{out}");
}

/// A coordinator that dies having locked only the lowest-numbered participant: that
/// participant times out waiting for phase 2, finds the coordinator gone, and asks the
/// other participants, who never prepared the change and so refuse it: the change is
/// aborted and the lock is gone without the coordinator.
#[test]
fn a_dead_coordinators_lock_expires() {
    let mut c = Cluster::new("expire", 4, FILE);
    c.insts[3]
        .env
        .push(("TWOPHASE_CRASH_AT".into(), "after_first_vote".into()));
    c.start_all();
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    let (r1, r2) = (free_port(), free_port());
    assert!(http(p4, "POST", "/config", &format!(r#"{{"1": {r1}, "2": {r2}}}"#)).is_none());
    let _ = c.insts[3].child.take().map(|mut ch| ch.wait());
    // The failure line follows the abort's WAL write: wait for both, not just the first.
    wait_until("instance 1 learns the abort", Duration::from_secs(8), || {
        let log = c.log(1);
        log.contains("learned aborted from instance 2") && log.contains(&failure_line(p1, r1))
    });
    let (status, out) = c.apply(p3, &format!(r#"{{"1": {r1}, "2": {r2}}}"#));
    assert_eq!((status, out["status"].as_str()), (200, Some("committed")), "{out}");
    c.assert_serving(&[
        (r1, Some(1)),
        (r2, Some(2)),
        (p1, None),
        (p2, None),
        (p3, Some(3)),
        (p4, None),
    ]);
}

/// A participant that dies after recording its prepared state, before voting: the
/// coordinator aborts; restarted, the participant finds itself prepared, asks the
/// coordinator, learns the abort and takes part in the next change.
#[test]
fn a_participant_restarted_while_prepared_asks_for_the_outcome() {
    let mut c = Cluster::new("restarted", 4, FILE);
    c.insts[1]
        .env
        .push(("TWOPHASE_CRASH_AT".into(), "participant_prepared".into()));
    c.start_all();
    let (p1, p2, p3) = (c.port(1), c.port(2), c.port(3));
    let (r2, r3) = (free_port(), free_port());
    let (status, out) = c.apply(p1, &format!(r#"{{"2": {r2}, "3": {r3}}}"#));
    assert_eq!((status, out["status"].as_str()), (409, Some("aborted")), "{out}");
    assert!(reasons(&out).contains("instance 2:"), "{out}");
    let _ = c.insts[1].child.take().map(|mut ch| ch.wait());
    c.insts[1].env.clear();
    c.start(2);
    // The failure line follows the abort's WAL write: wait for both, not just the first.
    wait_until("instance 2 learns the abort", Duration::from_secs(8), || {
        let log = c.log(2);
        log.contains("learned aborted from instance 1") && log.contains(&failure_line(p2, r2))
    });
    assert!(c.log(2).contains("restarted while prepared"), "{}", c.log(2));
    assert!(c.log(3).contains(&failure_line(p3, r3)), "{}", c.log(3));
    let (_, out) = c.apply(p1, &format!(r#"{{"2": {r2}, "3": {r3}}}"#));
    assert_eq!(out["status"], "committed", "{out}");
    c.assert_serving(&[(r2, Some(2)), (r3, Some(3))]);
}

/// Two coordinators at once with overlapping changes: exactly one commits, the other is
/// told the cluster is locked.
#[test]
fn two_coordinators_at_once_one_wins() {
    let mut c = Cluster::new("race", 4, FILE);
    for i in &mut c.insts {
        i.env.push(("TWOPHASE_PAUSE_AT".into(), "after_first_vote:0.5".into()));
    }
    c.start_all();
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    let a: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let b: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let body = |v: &[u16]| format!(r#"{{"1": {}, "2": {}, "3": {}, "4": {}}}"#, v[0], v[1], v[2], v[3]);
    let (ba, bb) = (body(&a), body(&b));
    let ta = std::thread::spawn(move || http(p3, "POST", "/config", &ba).unwrap());
    let tb = std::thread::spawn(move || http(p4, "POST", "/config", &bb).unwrap());
    let (sa, oa) = ta.join().unwrap();
    let (sb, ob) = tb.join().unwrap();
    let oa: Value = serde_json::from_str(&oa).unwrap();
    let ob: Value = serde_json::from_str(&ob).unwrap();
    let (won, lost, ports) = match (sa, sb) {
        (200, 409) => (&oa, &ob, &a),
        (409, 200) => (&ob, &oa, &b),
        _ => panic!("one must win: {sa} {oa} / {sb} {ob}"),
    };
    assert_eq!(won["status"], "committed");
    assert_eq!(lost["locked"], true, "{lost}");
    assert!(
        reasons(lost).contains("locked: instance 1 is prepared for change"),
        "{lost}"
    );
    for (n, port) in ports.iter().enumerate() {
        assert_eq!(who(*port), Some(n as u64 + 1));
    }
    c.assert_serving(&[(p1, None), (p2, None), (p3, None), (p4, None)]);
}

/// credentials = 'swim': the topology holds no logins or passwords; the instances learn
/// them from each other's payloads over encrypted swim. An instance with a wrong key
/// learns nothing and is known by nobody: a change naming it aborts at once.
#[test]
fn credentials_only_through_swim() {
    let mut c = Cluster::new(
        "swim",
        4,
        Opts {
            swim: true,
            console_on: None,
        },
    );
    c.insts[3].env = vec![("TWOPHASE_SWIM_KEY".into(), "a wrong key".into())];
    c.start_all();
    let topo = fs::read_to_string(&c.topo).unwrap();
    assert!(!topo.contains("password") && !topo.contains("user"), "{topo}");
    let (p1, p2, p3, p4) = (c.port(1), c.port(2), c.port(3), c.port(4));
    wait_until("swim spreads the credentials", Duration::from_secs(10), || {
        let (_, s) = http(p1, "GET", "/status", "").unwrap();
        let v: Value = serde_json::from_str(&s).unwrap();
        v["known_credentials"] == serde_json::json!([1, 2, 3])
    });
    // Secrets are in each work_dir, not in logs.
    let secret = fs::read_to_string(c.dir.join("2/secret")).unwrap();
    for n in 1..=4 {
        assert!(!c.log(n).contains(secret.trim()), "instance {n} logged a secret");
        assert!(!c.log(n).contains("the right key"), "instance {n} logged the key");
    }
    let r2 = free_port();
    let (status, out) = c.apply(p1, &format!(r#"{{"1": {p1}, "2": {r2}, "3": {p3}}}"#));
    assert_eq!((status, out["status"].as_str()), (200, Some("committed")), "{out}");
    assert_eq!(who(r2), Some(2));
    // Instance 4 (wrong key) is unknown to 1, and knows nobody.
    let (_, s) = http(p4, "GET", "/status", "").unwrap();
    assert!(s.contains(r#""known_credentials":[4]"#), "{s}");
    let start = Instant::now();
    let (status, out) = c.apply(p1, &format!(r#"{{"2": {p2}, "4": {}}}"#, free_port()));
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    assert_eq!((status, out["status"].as_str()), (409, Some("aborted")), "{out}");
    assert!(
        reasons(&out).contains("instance 4: no credentials for instance 4: not learned from swim"),
        "{out}"
    );
    c.assert_serving(&[(r2, Some(2)), (p4, Some(4))]);
}
