//! box as a process: `background = true` with a pid file, and data surviving a SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("node-box-process-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn node(dir: &Path, code: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["-e", code])
        .current_dir(dir)
        .output()
        .expect("node runs")
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // Safety: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn background_instance_detaches_writes_its_pid_and_keeps_data_after_sigterm() {
    let dir = temp_dir("bg");
    let out = node(
        &dir,
        "box.cfg{log = 'node.log', pid_file = 'node.pid', background = true} \
         local s = box.schema.space.create('t') s:create_index('pk') s:insert{1, 'kept'}",
    );
    assert!(out.status.success(), "the parent exits 0: {out:?}");
    let pid_file = dir.join("node.pid");
    wait_for("the pid file", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(alive(pid), "the daemon runs");
    wait_for("the log", || {
        std::fs::read_to_string(dir.join("node.log")).is_ok_and(|l| l.contains("entering the event loop"))
    });
    // Safety: the daemon is our child's child; SIGTERM asks it to exit.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_for("the daemon to exit", || !alive(pid));
    let out = node(&dir, "box.cfg{log_level = 1} print(box.space.t:get{1}[2]) os.exit()");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "kept", "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_box_cfg_gets_tarantools_error() {
    let dir = temp_dir("cfg");
    let out = node(
        &dir,
        "print(pcall(box.cfg, {foo = 1})) print(pcall(box.cfg, {wal_mode = 'x'})) \
         box.cfg{log_level = 1} print(pcall(box.cfg, {wal_mode = 'none'})) os.exit()",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Incorrect value for option 'foo': unexpected option"),
        "{text}"
    );
    assert!(text.contains("Incorrect value for option 'wal_mode'"), "{text}");
    assert!(text.contains("Can't set option 'wal_mode' dynamically"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requests_and_misuse_print_what_tarantool_prints() {
    let dir = temp_dir("differential");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/box");
    let out = Command::new(env!("CARGO_BIN_EXE_node"))
        .arg(root.join("differential.lua"))
        .current_dir(&dir)
        .output()
        .expect("node runs");
    let want = std::fs::read_to_string(root.join("differential.out")).expect("golden output");
    let got = String::from_utf8_lossy(&out.stdout);
    for (i, (w, g)) in want.lines().zip(got.lines()).enumerate() {
        assert_eq!(g, w, "line {} of tests/box/differential.out", i + 1);
    }
    assert_eq!(got.lines().count(), want.lines().count(), "{got}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: commits queued in the same scheduler round as box.snapshot() were in the
/// snapshot's tuples but not in its vclock, so a restart applied them twice and stopped
/// with a duplicate key.
#[test]
fn commits_racing_a_snapshot_are_recovered_once() {
    let dir = temp_dir("snaprace");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/box/snapshot_race.lua");
    let run = |mode: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_node"));
        cmd.arg(&script).arg(&dir);
        if let Some(m) = mode {
            cmd.arg(m);
        }
        cmd.output().expect("node runs")
    };
    let fill = run(Some("fill"));
    assert_eq!(String::from_utf8_lossy(&fill.stdout).trim(), "1000", "{fill:?}");
    let again = run(None);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "1000", "{again:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checkpoint daemon snapshots every `checkpoint_interval` seconds, and box.stat's rps
/// counts the requests of the last seconds.
#[test]
fn checkpoint_interval_snapshots_and_stat_counts_rps() {
    let dir = temp_dir("checkpoint");
    let out = node(
        &dir,
        "local fio = require('fio') local fiber = require('fiber') \
         box.cfg{log_level = 1, checkpoint_count = 2} \
         local s = box.schema.space.create('t') s:create_index('pk') \
         local before = fio.glob('*.snap') table.sort(before) \
         box.cfg{checkpoint_interval = 0.2} \
         for i = 1, 1000 do s:replace{i} end \
         fiber.sleep(1.5) \
         local after = fio.glob('*.snap') table.sort(after) \
         print(before[#before] ~= after[#after], #after, box.stat().REPLACE.rps > 0) os.exit()",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true\t2\ttrue", "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
