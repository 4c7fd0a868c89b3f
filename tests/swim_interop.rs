//! A mixed swim cluster of `node` and real Tarantool 2.6 processes on 127.0.0.1: each sees
//! the others alive with their payloads, sees a killed member become dead (a Tarantool one
//! and a node one), and sees a restarted one alive again with a newer generation.
//! Every member runs `tests/swim/interop.lua`, which writes what it sees to a JSON file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Member {
    port: u16,
    tarantool: bool,
    seed: Option<u16>,
    child: Option<Child>,
    /// `algo:mode:key` for `set_codec`, empty for plaintext.
    codec: &'static str,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/swim/interop.lua")
}

fn start(m: &mut Member, dir: &Path) {
    let program = if m.tarantool {
        "tarantool".to_string()
    } else {
        env!("CARGO_BIN_EXE_node").to_string()
    };
    let mut cmd = Command::new(program);
    cmd.arg(script()).arg(m.port.to_string()).arg(dir);
    if let Some(seed) = m.seed {
        cmd.arg(seed.to_string());
    }
    cmd.env("SWIM_CODEC", m.codec);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    m.child = Some(
        cmd.spawn()
            .expect("member starts (is tarantool installed? scripts/setup.sh installs it)"),
    );
}

fn kill(m: &mut Member) {
    if let Some(mut c) = m.child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn uuid(port: u16) -> String {
    format!("00000000-0000-4000-8000-{port:012}")
}

/// What member `port` sees: uuid -> (status, generation, payload).
fn view(dir: &Path, port: u16) -> HashMap<String, Seen> {
    let Ok(text) = std::fs::read_to_string(dir.join(format!("{port}.json"))) else {
        return HashMap::new();
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text) else {
        return HashMap::new();
    };
    map.into_iter()
        .map(|(k, v)| {
            let status = v["status"].as_str().unwrap_or("").to_string();
            let generation = v["generation"].as_str().and_then(|g| g.parse().ok()).unwrap_or(0);
            let payload = v["payload"].as_str().map(str::to_string);
            (k, (status, generation, payload))
        })
        .collect()
}

type Seen = (String, u64, Option<String>);

/// True if every observer sees every target and `pred(target_port, seen)` holds.
fn everyone_sees(dir: &Path, observers: &[u16], targets: &[u16], pred: impl Fn(u16, &Seen) -> bool) -> bool {
    observers.iter().all(|&p| {
        let v = view(dir, p);
        targets
            .iter()
            .all(|&q| v.get(&uuid(q)).is_some_and(|seen| pred(q, seen)))
    })
}

fn alive_with_payload(q: u16, (status, _, payload): &Seen) -> bool {
    status == "alive" && payload.as_deref() == Some(&format!("p{q}"))
}

/// Checks that tarantool is there and makes the members' state folder.
fn state_dir(name: &str) -> PathBuf {
    if Command::new("tarantool").arg("-v").output().is_err() {
        panic!("tarantool is not installed: scripts/setup.sh installs it");
    }
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("state dir");
    dir
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn node_and_tarantool_form_one_swim_cluster() {
    let dir = state_dir("node-swim-interop");
    let base = 36000 + (std::process::id() % 400) as u16 * 10;
    let mut members = [
        Member {
            port: base + 1,
            tarantool: true,
            seed: None,
            child: None,
            codec: "",
        },
        Member {
            port: base + 2,
            tarantool: false,
            seed: Some(base + 1),
            child: None,
            codec: "",
        },
        Member {
            port: base + 3,
            tarantool: true,
            seed: Some(base + 2),
            child: None,
            codec: "",
        },
        Member {
            port: base + 4,
            tarantool: false,
            seed: Some(base + 1),
            child: None,
            codec: "",
        },
    ];
    for m in members.iter_mut() {
        start(m, &dir);
    }
    let ports: Vec<u16> = members.iter().map(|m| m.port).collect();

    wait_for(
        "every member sees all four alive with their payloads",
        Duration::from_secs(20),
        || everyone_sees(&dir, &ports, &ports, alive_with_payload),
    );
    let old_generation = view(&dir, base + 1)[&uuid(base + 3)].1;

    // Kill one Tarantool and one node member: the survivors see both dead.
    kill(&mut members[2]);
    kill(&mut members[3]);
    wait_for(
        "the survivors see the killed members dead",
        Duration::from_secs(20),
        || {
            everyone_sees(&dir, &[base + 1, base + 2], &[base + 3, base + 4], |_, seen| {
                seen.0 == "dead"
            })
        },
    );

    // Restart them: alive again everywhere, the Tarantool one with a newer generation.
    start(&mut members[2], &dir);
    start(&mut members[3], &dir);
    wait_for("the restarted members are alive again", Duration::from_secs(20), || {
        everyone_sees(&dir, &ports, &ports, |_, seen| seen.0 == "alive")
    });
    assert!(
        view(&dir, base + 2)[&uuid(base + 3)].1 > old_generation,
        "a restart brings a newer generation"
    );

    for m in members.iter_mut() {
        kill(m);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_encrypted_cluster_mixes_node_and_tarantool() {
    let dir = state_dir("node-swim-interop-aes");
    let base = 37000 + (std::process::id() % 400) as u16 * 10;
    const CODEC: &str = "aes256:cbc:0123456789abcdef0123456789abcdef";
    let mut members: Vec<Member> = (1..=4)
        .map(|i| Member {
            port: base + i,
            tarantool: i % 2 == 1,
            seed: (i > 1).then_some(base + 1),
            child: None,
            codec: CODEC,
        })
        .collect();
    for m in members.iter_mut() {
        start(m, &dir);
    }
    let ports: Vec<u16> = members.iter().map(|m| m.port).collect();
    wait_for(
        "every member of the aes256-cbc cluster sees all four with payloads",
        Duration::from_secs(20),
        || everyone_sees(&dir, &ports, &ports, alive_with_payload),
    );
    for m in members.iter_mut() {
        kill(m);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// node pushes a suspicion or a death in a packet with only a dissemination section
/// (`src/swim/news.rs`), a shape Tarantool never sends itself. Tarantool 2.6 must apply it:
/// here a push names a member it has never heard of as dead, which with `gc_mode = 'off'`
/// it adds, dead (spec §2.5). A receiver that wanted a failure-detection section first
/// would drop the packet and never list the member.
#[test]
fn tarantool_applies_a_pushed_death() {
    use node::swim::proto::{self, Body, Incarnation, MemberRecord, Meta, Packet, Status};
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

    let dir = state_dir("node-swim-interop-push");
    let base = 38000 + (std::process::id() % 400) as u16 * 10;
    let mut member = Member {
        port: base + 1,
        tarantool: true,
        seed: None,
        child: None,
        codec: "",
    };
    start(&mut member, &dir);
    wait_for("the tarantool member writes its view", Duration::from_secs(20), || {
        view(&dir, base + 1).contains_key(&uuid(base + 1))
    });

    let sock = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    let src = match sock.local_addr().expect("bound") {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("not IPv4: {other}"),
    };
    let ghost = base + 7;
    let push = Packet {
        meta: Meta {
            version: proto::TARANTOOL_VERSION,
            src,
            route: None,
        },
        body: Body {
            src_uuid: uuid::Uuid::parse_str(&uuid(base + 2)).expect("uuid"),
            failure_detection: None,
            dissemination: Some(vec![MemberRecord {
                status: Status::Dead,
                addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, ghost),
                uuid: uuid::Uuid::parse_str(&uuid(ghost)).expect("uuid"),
                incarnation: Incarnation::new(5, 1),
                payload: None,
            }]),
            anti_entropy: None,
            quit: None,
        },
    };
    let mut bytes = Vec::new();
    proto::encode(&push, &mut bytes);
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, base + 1);
    // UDP: send it a few times in case the first is lost.
    wait_for(
        "tarantool lists the pushed member as dead",
        Duration::from_secs(10),
        || {
            sock.send_to(&bytes, to).expect("send");
            view(&dir, base + 1)
                .get(&uuid(ghost))
                .is_some_and(|seen| seen.0 == "dead" && seen.1 == 5)
        },
    );

    kill(&mut member);
    let _ = std::fs::remove_dir_all(&dir);
}
