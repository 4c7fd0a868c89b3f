//! The lecture's Raft demo (`../shared/seed/raft-demo.lua`, unchanged) on four node
//! processes, driven by `tests/replication/raft_demo_driver.lua`. The demo's ports are fixed
//! (3301..3304), so it runs in a network namespace of its own: nothing else on the machine
//! can hold them, and its traffic stays on that namespace's loopback.

mod common;

use std::path::Path;
use std::process::Command;

use common::{temp_dir, NODE};

/// A network namespace with its loopback up, deleted on drop; None where namespaces cannot
/// be made (not root, no `ip`).
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Option<Netns> {
        let name = format!("{name}-{}", std::process::id());
        let ok = |args: &[&str]| Command::new("ip").args(args).status().is_ok_and(|s| s.success());
        if !ok(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns(name);
        ok(&["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"]).then_some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn raft_demo_runs_unchanged_on_four_nodes() {
    let Some(ns) = Netns::new("node-raft-demo") else {
        eprintln!("SKIPPED: cannot create a network namespace (needs root and iproute2)");
        return;
    };
    let dir = temp_dir("raft-demo");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = manifest.join("../shared/seed/raft-demo.lua");
    let demo = if demo.exists() {
        demo
    } else {
        manifest.join("tests/replication/raft-demo.lua")
    };
    let driver = manifest.join("tests/replication/raft_demo_driver.lua");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, NODE])
        .arg(&driver)
        .arg(NODE)
        .arg(&demo)
        .current_dir(&dir)
        .output()
        .expect("driver runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut logs = String::new();
    for port in 3301..=3304 {
        let log = std::fs::read_to_string(dir.join(format!("data/{port}/tarantool.log")))
            .or_else(|_| std::fs::read_to_string(dir.join(format!("{port}.out"))))
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        logs += &format!(
            "--- {port}\n{}\n",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{logs}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killing_the_leader_under_synchronous_load_loses_no_acknowledged_write() {
    let dir = temp_dir("failover-load");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The driver's instances listen on base + 1 ..= base + 3.
    let base = common::free_port_block(4);
    let out = Command::new(NODE)
        .arg(manifest.join("tests/replication/failover_load_driver.lua"))
        .arg(NODE)
        .arg(manifest.join("tests/replication/instance.lua"))
        .arg(base.to_string())
        .current_dir(&dir)
        .output()
        .expect("driver runs");
    let mut logs = String::new();
    for i in 1..=3 {
        let log = std::fs::read_to_string(dir.join(format!("n{i}/instance.log"))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(12).collect();
        logs += &format!("--- n{i}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    assert!(
        out.status.success(),
        "{}\n{}\n{logs}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
