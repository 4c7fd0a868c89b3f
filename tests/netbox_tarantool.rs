//! net.box against Tarantool 2.6's own: the same check script (tests/netbox/client.lua) runs
//! under real `tarantool` and under `node`, both against one server, and the two outputs
//! must be equal line for line. The server is a real `tarantool` in one test and `node` in
//! the other (tests/netbox/server.lua), so the client is checked against both servers.
//! The script covers connecting (URIs, options, states, errors), every request kind, space
//! and index objects, futures and pushes, pipelining, triggers, schema reload, close,
//! reconnect (it starts and kills servers of its own) and GC; tests/netbox/self.lua covers
//! `net.box.self`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{free_port, temp_dir, wait_listening, KillOnDrop as Server, NODE};
const TARANTOOL: &str = "tarantool";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/netbox").join(name)
}

fn start_server(program: &str, port: u16, dir: &Path) -> Server {
    let work = dir.join("server");
    std::fs::create_dir_all(&work).expect("server dir");
    let child = Command::new(program)
        .arg(script("server.lua"))
        .arg(port.to_string())
        .arg(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts (is tarantool installed? scripts/setup.sh installs it)");
    let server = Server(child);
    wait_listening(&format!("127.0.0.1:{port}"), program);
    server
}

/// Runs the check script under `client` against the server on `port`; returns its stdout.
fn run_client(client: &str, server_program: &str, port: u16, dir: &Path) -> String {
    let scratch = dir.join(format!("scratch-{}", client.rsplit('/').next().unwrap_or(client)));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let server_cmd = format!("{server_program} {}", script("server.lua").display());
    let out = Command::new(client)
        .arg(script("client.lua"))
        .arg(port.to_string())
        .arg(dir.join("nobody-listens.sock"))
        .arg(server_cmd)
        .arg(free_port().to_string())
        .arg(&scratch)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{client} failed: {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Fails at the first differing line, showing both and where it is.
fn assert_same_lines(expected: &str, actual: &str) {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    for (i, (want, got)) in e.iter().zip(a.iter()).enumerate() {
        assert_eq!(
            got,
            want,
            "line {}: node printed the first, tarantool the second\n{actual}",
            i + 1
        );
    }
    assert_eq!(
        a.len(),
        e.len(),
        "line counts differ\n--- tarantool\n{expected}\n--- node\n{actual}"
    );
}

fn check_against(server_program: &str, name: &str) {
    let dir = temp_dir(name);
    let port = free_port();
    let _server = start_server(server_program, port, &dir);
    let expected = run_client(TARANTOOL, server_program, port, &dir);
    let actual = run_client(NODE, server_program, port, &dir);
    assert!(
        expected.contains("--- timeout module"),
        "the script ran to its end:\n{expected}"
    );
    assert_same_lines(&expected, &actual);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn node_net_box_prints_what_tarantool_net_box_prints_with_a_tarantool_server() {
    check_against(TARANTOOL, "tt");
}

#[test]
fn node_net_box_prints_what_tarantool_net_box_prints_with_a_node_server() {
    check_against(NODE, "node");
}

#[test]
fn net_box_self_serves_calls_from_the_local_box_as_tarantool_does() {
    let dir = temp_dir("self");
    let run = |program: &str| {
        let work = dir.join(program.rsplit('/').next().unwrap_or(program));
        std::fs::create_dir_all(&work).expect("work dir");
        let out = Command::new(program)
            .arg(script("self.lua"))
            .arg(&work)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        assert!(out.status.success(), "{program}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expected = run(TARANTOOL);
    assert!(expected.contains("timeout:"), "{expected}");
    assert_same_lines(&expected, &run(NODE));
    let _ = std::fs::remove_dir_all(&dir);
}
