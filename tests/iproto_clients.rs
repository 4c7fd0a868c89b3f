//! Real clients against node's IPROTO server: tarantool's own net.box and the Python
//! `tarantool` connector from PyPI run the same scripts against a `node` and a `tarantool`
//! serving tests/iproto/server.lua, and must see the same answers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, NODE};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iproto")
}

fn start_script(program: &str, name: &str, script: &str) -> Server {
    let server = Server::start(program, &format!("iproto-{name}"), &scripts().join(script));
    // The script's grants run before listen returns, but let the server finish the script.
    std::thread::sleep(Duration::from_millis(200));
    server
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("client runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {text}");
    text
}

fn compare(client: impl Fn(u16, &Path) -> String, name: &str) -> String {
    compare_with(client, name, "server.lua")
}

fn compare_with(client: impl Fn(u16, &Path) -> String, name: &str, server: &str) -> String {
    let tarantool = start_script("tarantool", &format!("{name}-tarantool"), server);
    let node = start_script(NODE, &format!("{name}-node"), server);
    let expected = client(tarantool.port, &tarantool.dir);
    let got = client(node.port, &node.dir);
    for (i, (e, g)) in expected.lines().zip(got.lines()).enumerate() {
        assert_eq!(
            g,
            e,
            "line {} differs from tarantool's\nnode:\n{got}\ntarantool:\n{expected}",
            i + 1
        );
    }
    assert_eq!(
        got.lines().count(),
        expected.lines().count(),
        "node:\n{got}\ntarantool:\n{expected}"
    );
    got
}

#[test]
fn tarantool_net_box_sees_the_same_answers_from_node() {
    let got = compare(
        |port, dir| {
            run(Command::new("tarantool")
                .arg(scripts().join("client.lua"))
                .arg(port.to_string())
                .current_dir(dir))
        },
        "netbox",
    );
    // What the comparison must have covered (were both servers unreachable, the outputs
    // would match too).
    for line in [
        "--- 1: test 2: active 3: true n: 3 ... ",
        "--- 1: - pushed - [1, 2] n: 1 ... ",
        "--- 1: 4 2: slow n: 2 ... ",
        "--- 1: big and small replies 2: 40 n: 2 ... ",
        "--- 1: pipelined writes 2: 50 3: 51 n: 3 ... ",
        "--- 1: '[1007, ''from trigger'']' n: 1 ... ",
        "--- 1: wrong password 2: error 3: Incorrect password supplied for user 'test' n: 3 ... ",
    ] {
        assert!(got.lines().any(|l| l == line), "missing {line:?} in\n{got}");
    }
    assert!(got.lines().count() > 60, "{got}");
}

/// The virtualenv scripts/setup.sh makes with the connector from PyPI.
fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup.sh", p.display());
    p
}

#[test]
fn python_connector_sees_the_same_answers_from_node() {
    let py = python();
    let got = compare(
        |port, dir| {
            run(Command::new(&py)
                .arg(scripts().join("pyclient.py"))
                .arg(port.to_string())
                .current_dir(dir))
        },
        "python",
    );
    for line in [
        "call [3]",
        "select [[10, 'ten'], [11, 'eleven']]",
        "insert dup DatabaseError 3 Duplicate key exists in unique index 'primary' in space 'tester'",
        "guest call [11]",
    ] {
        assert!(got.lines().any(|l| l == line), "missing {line:?} in\n{got}");
    }
}

#[test]
fn session_triggers_see_what_they_see_on_tarantool() {
    let client = |port: u16, dir: &Path| {
        let out = run(Command::new("tarantool")
            .arg(scripts().join("triggers_client.lua"))
            .arg(port.to_string())
            .current_dir(dir));
        // A connection an on_connect trigger rejects is closed before the greeting; 2.6's
        // net.box words that 'Peer closed', 'Connection reset by peer' or 'Invalid
        // greeting' depending on how the close arrives (it varies on tarantool too).
        ["Invalid greeting", "Connection reset by peer"]
            .iter()
            .fold(out, |o, text| {
                o.replace(
                    &format!("- rejected - error - {text}"),
                    "- rejected - error - Peer closed",
                )
            })
    };
    let got = compare_with(client, "triggers", "triggers_server.lua");
    assert!(got.contains("'auth banned true', 'disconnect guest'"), "{got}");
    assert!(
        got.contains("'connect binary guest true', 'auth test true', 'disconnect test'"),
        "{got}"
    );
    assert!(got.contains("--- - rejected - error - Peer closed ... "), "{got}");
}
