//! A leader cut off by a network partition (its link down, in network namespaces joined by
//! a bridge: `../shared/spec/fault-injection.md`): with `election_fencing_mode` it resigns
//! and refuses writes within the death timeout, while the majority elects a new leader;
//! without it (2.6.3) it stays writable beside the new one, and an asynchronous write
//! there succeeds on the minority side. Both come back as followers when the link heals.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{temp_dir, KillOnDrop, NODE};

const PORT: u16 = 3301;

/// Three node namespaces joined by a bridge in a fourth; removed on drop.
struct Network {
    tag: String,
}

fn ip(args: &[&str]) -> bool {
    let ok = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("failed: ip {}", args.join(" "));
    }
    ok
}

impl Network {
    fn new(name: char) -> Option<Network> {
        let tag = format!("{name}{}", std::process::id() % 10_000);
        let net = Network { tag };
        let hub = net.hub();
        let ok = ip(&["netns", "add", &hub])
            && ip(&["-n", &hub, "link", "set", "lo", "up"])
            && ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])
            && ip(&["-n", &hub, "addr", "add", "10.231.0.100/24", "dev", "br0"])
            && ip(&["-n", &hub, "link", "set", "br0", "up"]);
        if !ok {
            return None;
        }
        for i in 1..=3 {
            let ns = net.ns(i);
            let (inner, outer) = (format!("e{i}"), format!("h{i}x{}", net.tag));
            let addr = format!("10.231.0.{i}/24");
            let ok = ip(&["netns", "add", &ns])
                && ip(&["-n", &ns, "link", "set", "lo", "up"])
                && ip(&[
                    "-n", &hub, "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns,
                ])
                && ip(&["-n", &hub, "link", "set", &outer, "master", "br0", "up"])
                && ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner])
                && ip(&["-n", &ns, "link", "set", &inner, "up"]);
            if !ok {
                return None;
            }
        }
        Some(net)
    }

    fn hub(&self) -> String {
        format!("nodehub{}", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("node{i}x{}", self.tag)
    }

    fn set_link(&self, i: usize, up: bool) {
        assert!(ip(&[
            "-n",
            &self.ns(i),
            "link",
            "set",
            &format!("e{i}"),
            if up { "up" } else { "down" }
        ]));
    }

    /// Runs a Lua chunk against node `i` from inside its own namespace (reachable even when
    /// its link is down) and returns what it printed.
    fn query(&self, i: usize, expr: &str) -> String {
        let chunk = format!(
            "local c = require('net.box').connect('10.231.0.{i}:{PORT}', {{wait_connected = 2}}) \
             local ok, r = pcall(function() return c:eval([[{expr}]], {{}}, {{timeout = 3}}) end) \
             print(ok and tostring(r) or 'error: ' .. tostring(r)) os.exit(0)"
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), NODE, "-e", &chunk])
            .output()
            .expect("query runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn start(&self, i: usize, dir: &Path, fencing: &str) -> KillOnDrop {
        let peers = (1..=3)
            .map(|j| format!("10.231.0.{j}:{PORT}"))
            .collect::<Vec<_>>()
            .join(",");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replication/instance.lua");
        let child: Child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i), NODE])
            .arg(script)
            .arg(dir.join(format!("n{i}")))
            .arg(format!("10.231.0.{i}:{PORT}"))
            .arg(peers)
            .args(["0.25", "candidate", fencing])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts");
        KillOnDrop(child)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for i in 1..=3 {
            ip(&["netns", "del", &self.ns(i)]);
        }
        ip(&["netns", "del", &self.hub()]);
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Elected leaders that take writes. (An instance script runs box.cfg with elections off
/// first, and the first member is writable for that moment: that does not count.)
fn writable(net: &Network, among: &[usize]) -> Vec<usize> {
    among
        .iter()
        .copied()
        .filter(|&i| net.query(i, "return box.info.election.state == 'leader' and not box.info.ro") == "true")
        .collect()
}

fn partition_the_leader(fencing: &str) {
    let Some(net) = Network::new(fencing.chars().next().unwrap_or('x')) else {
        eprintln!("SKIPPED: cannot create network namespaces and a bridge (needs root and iproute2)");
        return;
    };
    let dir = temp_dir(&format!("partition-{fencing}"));
    let _nodes: Vec<KillOnDrop> = (1..=3).map(|i| net.start(i, &dir, fencing)).collect();
    wait_for("one writable leader", Duration::from_secs(60), || {
        writable(&net, &[1, 2, 3]).len() == 1
    });
    let leader = writable(&net, &[1, 2, 3])[0];
    let others: Vec<usize> = (1..=3).filter(|&i| i != leader).collect();
    assert_eq!(net.query(leader, "box.space.sync:insert{1} return 'ok'"), "ok");

    net.set_link(leader, false);
    // The majority elects a new leader: the death timeout (4 x 0.25 s) plus a vote round.
    wait_for("a new leader on the majority side", Duration::from_secs(20), || {
        writable(&net, &others).len() == 1
    });
    let fenced = fencing != "off";
    if fenced {
        let took = wait_for("the old leader to resign", Duration::from_secs(5), || {
            net.query(leader, "return box.info.ro") == "true"
        });
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(
            net.query(leader, "return box.space.async:insert{2}"),
            "error: Can't modify data because this instance is in read-only mode."
        );
    } else {
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            net.query(leader, "return box.info.ro"),
            "false",
            "2.6.3: a partitioned leader stays writable"
        );
        // Split brain for asynchronous data: the minority side accepts the write.
        assert_eq!(net.query(leader, "box.space.async:insert{2} return 'ok'"), "ok");
    }
    net.set_link(leader, true);
    let new_leader = writable(&net, &others)[0];
    wait_for("the old leader to follow the new one", Duration::from_secs(20), || {
        net.query(leader, "return box.info.election.state") == "follower" && writable(&net, &[1, 2, 3]) == [new_leader]
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_partitioned_leader_with_fencing_resigns() {
    partition_the_leader("soft");
}

#[test]
fn a_partitioned_leader_without_fencing_stays_writable() {
    partition_the_leader("off");
}
