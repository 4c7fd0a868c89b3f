//! Runs every `tests/lua/*.test.lua` TAP script with the built `node` binary.
//!
//! A script passes when it exits 0, prints a plan `1..N`, runs N top-level checks and
//! prints no `not ok` line. Scripts run in parallel, each in its own process with a
//! time limit, and every failure is reported with the script's whole output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIME_LIMIT: Duration = Duration::from_secs(120);

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lua");
    let mut list: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/lua exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.lua"))
        .collect();
    list.sort();
    list
}

/// Runs one script; returns None on success, or a report of what went wrong.
fn run(script: &Path) -> Option<String> {
    let dir = script.parent().expect("script has a folder");
    let mut child = Command::new(env!("CARGO_BIN_EXE_node"))
        .arg(script.file_name().expect("script has a name"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > TIME_LIMIT => {
                let _ = child.kill();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Some(format!("wait failed: {e}")),
        }
    }
    let out = child.wait_with_output().expect("output is readable");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = |why: &str| Some(format!("{why}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"));
    if started.elapsed() > TIME_LIMIT {
        return report("timed out");
    }
    if !out.status.success() {
        return report(&format!("exit status {}", out.status));
    }
    let top: Vec<&str> = stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    let Some(plan) = top
        .iter()
        .find_map(|l| l.strip_prefix("1.."))
        .and_then(|n| n.trim().parse::<usize>().ok())
    else {
        return report("no plan line");
    };
    if top.iter().any(|l| l.starts_with("not ok")) {
        return report("a check failed");
    }
    let ran = top.iter().filter(|l| l.starts_with("ok")).count();
    if ran != plan {
        return report(&format!("planned {plan} checks, ran {ran}"));
    }
    None
}

#[test]
fn lua_tap_scripts_pass() {
    let scripts = scripts();
    assert!(!scripts.is_empty(), "no TAP scripts found");
    let handles: Vec<_> = scripts
        .into_iter()
        .map(|s| std::thread::spawn(move || (s.clone(), run(&s))))
        .collect();
    let mut failures = Vec::new();
    for h in handles {
        let (script, outcome) = h.join().expect("runner thread");
        match outcome {
            None => eprintln!("PASS {}", script.display()),
            Some(report) => failures.push(format!("FAIL {}\n{report}", script.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
