//! The lecture's swim demo (`../shared/seed/swim-demo.lua`, unchanged) on three `node`
//! processes driven through their consoles (`node -i swim-demo.lua PORT`, stdin a pipe),
//! with the lecture's trigger script `swim-events.lua` loaded in each: they see each other
//! alive; a killed one becomes suspected, then dead; restarted, it is alive again with a new
//! generation.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Node {
    child: Child,
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seed")
}

impl Node {
    fn start(port: u16) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_node"))
            .args(["-i", "swim-demo.lua", &port.to_string()])
            .current_dir(seed_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            }
        });
        let mut n = Node { child, stdin, lines };
        n.send("dofile('swim-events.lua')");
        n
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("console takes input");
        self.stdin.flush().expect("flush");
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `(uri, status, generation)` of every member, through the console.
    fn members(&mut self, tag: u32) -> Vec<(String, String, String)> {
        let done = format!("DONE{tag}");
        self.send(&format!(
            "for k, v in pairs(get_members()) do print('MEMBER', v:uri(), v:status(), \
             tostring(v:incarnation().generation)) end print('{done}')"
        ));
        let start = Instant::now();
        loop {
            let out = self.output();
            if let Some(end) = out.iter().position(|l| *l == done) {
                let begin = out[..end]
                    .iter()
                    .rposition(|l| l.starts_with("node> for k"))
                    .unwrap_or(0);
                return out[begin..end]
                    .iter()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split('\t').collect();
                        (f.len() == 4 && f[0] == "MEMBER").then(|| (f[1].into(), f[2].into(), f[3].into()))
                    })
                    .collect();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "console answers: {out:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Polls `f` until it is true or the time is up.
fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three free UDP ports with four digits (the demo builds its UUID from the port).
fn free_ports() -> [u16; 3] {
    let seed = std::process::id() as u16;
    for attempt in 0..200u16 {
        let base = 5000 + (seed.wrapping_add(attempt * 7) % 1500) * 3;
        let ports = [base, base + 1, base + 2];
        if ports
            .iter()
            .all(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        {
            return ports;
        }
    }
    panic!("no free ports");
}

fn uuid(port: u16) -> String {
    format!("804f00ed-271c-47fa-844e-df4c6e0d{port}")
}

#[test]
fn lecture_demo_on_three_processes() {
    let [p1, p2, p3] = free_ports();
    let mut n1 = Node::start(p1);
    let mut n2 = Node::start(p2);
    let mut n3 = Node::start(p3);
    // As a user would, probe only once all three consoles answer: a probe sent before n1
    // has bound its socket is lost, and nobody would ever learn about n1.
    let mut tag = 0;
    for n in [&mut n1, &mut n2, &mut n3] {
        tag += 1;
        n.members(tag);
    }
    n3.send(&format!("swim:probe_member({p1})"));
    n3.send(&format!("swim:add_member({{uuid = '{}', uri = {p2}}})", uuid(p2)));

    let all_alive = |n: &mut Node, tag: &mut u32| {
        *tag += 1;
        let m = n.members(*tag);
        m.len() == 3 && m.iter().all(|(_, s, _)| s == "alive")
    };
    eventually("all three see three alive members", 20, || {
        all_alive(&mut n1, &mut tag) && all_alive(&mut n2, &mut tag) && all_alive(&mut n3, &mut tag)
    });
    let uri2 = format!("127.0.0.1:{p2}");
    tag += 1;
    let old_gen = n1
        .members(tag)
        .into_iter()
        .find(|m| m.0 == uri2)
        .expect("n1 knows n2")
        .2;

    // swim-events.lua prints every status change.
    drop(n2);
    let saw = |n: &Node, status: &str| {
        let want = format!("is_new_status:\t{}\t{status}", uuid(p2));
        n.output().contains(&want)
    };
    // Whoever misses n2's acks first suspects it and then declares it dead; the other may
    // learn "dead" straight from gossip (real Tarantool does the same, timing decides).
    eventually("n1 and n3 see n2 dead", 20, || saw(&n1, "dead") && saw(&n3, "dead"));
    assert!(
        saw(&n1, "suspected") || saw(&n3, "suspected"),
        "n2 was suspected before it was declared dead"
    );

    let _n2 = Node::start(p2);
    eventually("n2 is alive again with a new generation", 20, || {
        tag += 1;
        n1.members(tag)
            .into_iter()
            .any(|(uri, status, gen)| uri == uri2 && status == "alive" && gen != old_gen)
    });
    assert!(
        n1.output().iter().any(|l| l.starts_with("is_new_incarnation:")),
        "swim-events.lua prints incarnation changes"
    );
}
