//! A data directory made by real Tarantool 2.6: node recovers it, writes to it and
//! snapshots it, and Tarantool reads it back. (scripts/setup.sh installs tarantool.)

use std::path::Path;
use std::process::Command;

fn run(binary: &str, dir: &Path, code: &str) -> String {
    let out = Command::new(binary)
        .args(["-e", code])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{binary} runs: {e}"));
    assert!(out.status.success(), "{binary} -e {code}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn tarantool_data_directory_round_trip() {
    let dir = std::env::temp_dir().join(format!("node-box-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let node = env!("CARGO_BIN_EXE_node");
    run(
        "tarantool",
        &dir,
        "box.cfg{log_level = 1} local s = box.schema.space.create('t') s:create_index('pk') \
         s:insert{1, 'a'} box.snapshot() s:insert{2, 'b'} box.schema.user.create('u', {password = 'p'}) os.exit()",
    );
    let seen = run(
        node,
        &dir,
        "box.cfg{log_level = 1} local s = box.space.t \
         print(#s:select{}, s:get{2}[2], box.schema.user.exists('u')) s:insert{3, 'from node'} os.exit()",
    );
    assert_eq!(seen, "2\tb\ttrue", "node recovers Tarantool's snapshot and xlog");
    run(
        node,
        &dir,
        "box.cfg{log_level = 1} box.space.t:insert{4, 'after restart'} box.snapshot() os.exit()",
    );
    let back = run(
        "tarantool",
        &dir,
        "box.cfg{log_level = 1} local r = {} for _, t in box.space.t:pairs() do table.insert(r, t[2]) end \
         print(table.concat(r, ',')) os.exit()",
    );
    assert_eq!(
        back, "a,b,from node,after restart",
        "Tarantool reads node's rows and snapshot"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
