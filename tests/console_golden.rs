//! Console output against real Tarantool 2.6: each `tests/console/NAME.in` is piped into a
//! console that a script starts, and the output must equal `NAME.out`, which
//! `scripts/golden/console.sh` produced with tarantool. Only the prompt word differs:
//! `tarantool> ` is `node> `, and the continuation prompt is as wide as the prompt.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    let mut list: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/console exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "in"))
        .collect();
    list.sort();
    list
}

/// Tarantool's transcript rewritten with node's prompts.
fn expected(tarantool: &str) -> String {
    tarantool
        .replace("tarantool> ", "node> ")
        .lines()
        .map(|l| match l.strip_prefix("         > ") {
            Some(rest) => format!("    > {rest}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if tarantool.ends_with('\n') { "\n" } else { "" }
}

fn run(input: &Path, dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_node"))
        .arg("con.lua")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let text = std::fs::read(input).expect("input is readable");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&text)
        .expect("stdin accepts input");
    let out = child.wait_with_output().expect("node finishes");
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    all
}

#[test]
fn console_output_matches_tarantool() {
    let dir = std::env::temp_dir().join(format!("node-console-golden-{}", std::process::id()));
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 40, "the golden corpus has {} cases", cases.len());
    for input in &cases {
        let golden = input.with_extension("out");
        let want = expected(&std::fs::read_to_string(&golden).expect("golden output exists"));
        // A directory per case: cases that call box.cfg{} leave files behind.
        let case_dir = dir.join(input.file_stem().expect("case has a name"));
        std::fs::create_dir_all(&case_dir).expect("temp dir");
        std::fs::write(case_dir.join("con.lua"), "require('console').start() os.exit(0)\n").expect("script");
        let got = run(input, &case_dir);
        if got != want {
            failures.push(format!("{}\n--- expected\n{want}\n--- got\n{got}", input.display()));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
