//! The console on a real terminal: `script` (util-linux) gives node a pseudo-terminal, so
//! rustyline runs as it does for a user. Checks Tab completion of globals, fields and
//! methods, evaluation, and the history file.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn tab_completes_fields_and_methods_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is missing: scripts/setup.sh installs it");
    }
    let home = std::env::temp_dir().join(format!("node-tty-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).expect("temp home");
    let init = home.join("init.lua");
    std::fs::write(
        &init,
        "swim = setmetatable({}, {__index = {probe_member = function() return 'probed' end, size = function(self) return 3 end}})\n",
    )
    .expect("script written");
    let command = format!("{} -i {}", env!("CARGO_BIN_EXE_node"), init.display());
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("HOME", &home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script starts");
    let mut input = child.stdin.take().expect("stdin");
    let keys: [&[u8]; 5] = [b"swim.pr\t", b"()\r", b"swim:si\t", b"()\r", b"os.exit(0)\r"];
    for k in keys {
        std::thread::sleep(Duration::from_millis(400));
        input.write_all(k).expect("keys sent");
        input.flush().expect("flushed");
    }
    std::thread::sleep(Duration::from_millis(400));
    drop(input);
    let out = child.wait_with_output().expect("output");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("swim.probe_member"), "{screen}");
    assert!(screen.contains("- probed"), "{screen}");
    assert!(screen.contains("swim:size"), "{screen}");
    assert!(screen.contains("- 3"), "{screen}");
    let history = std::fs::read_to_string(home.join(".node_history")).unwrap_or_default();
    assert!(history.contains("swim.probe_member()"), "history: {history}");
    let _ = std::fs::remove_dir_all(&home);
}
