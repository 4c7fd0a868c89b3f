//! The `node` binary as a user runs it: command line, `arg`, exit codes, process lifetime,
//! signals and fault cases (errors at load, errors in fibers, `os.exit` in a fiber, a
//! closed stdout).

use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn node() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_node"));
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// A temporary script file, removed on drop.
struct Script(std::path::PathBuf);

impl Script {
    fn new(name: &str, text: &str) -> Script {
        let dir = std::env::temp_dir().join(format!("node-process-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("script written");
        Script(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run_with_timeout(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "node did not exit within {limit:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd.spawn().expect("node starts"), Duration::from_secs(20))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn arg_table_follows_tarantool() {
    let s = Script::new("args.lua", "print(arg[0], arg[1], arg[2], arg[-1] ~= nil, ...)\n");
    let out = run(node().args([s.path(), "3301", "x"]));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), format!("{}\t3301\tx\ttrue\t3301\tx\n", s.path()));
}

#[test]
fn eval_chunks_run_in_order() {
    let out = run(node().args(["-e", "print(1)", "-e", "print(2)"]));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "1\n2\n");
}

#[test]
fn version_and_help() {
    let out = run(node().arg("-v"));
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("node "));
    let out = run(node().arg("-h"));
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("Usage"));
}

#[test]
fn script_error_prints_message_and_traceback_and_exits_1() {
    let s = Script::new("boom.lua", "local x = 1\nerror('boom')\n");
    let out = run(node().arg(s.path()));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("LuajitError: ") && err.contains("boom.lua:2: boom"),
        "{err}"
    );
    assert!(err.contains("stack traceback:"), "{err}");
    assert!(err.contains("fatal error, exiting the event loop"), "{err}");
}

#[test]
fn syntax_error_at_load_exits_1() {
    let s = Script::new("syntax.lua", "x = = 1\n");
    let out = run(node().arg(s.path()));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("syntax.lua:1: unexpected symbol near '='"));
}

#[test]
fn missing_script_exits_2() {
    let out = run(node().arg("/nonexistent/script.lua"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Can't open script /nonexistent/script.lua: No such file or directory"));
}

#[test]
fn stdin_is_the_script_when_it_is_not_a_terminal() {
    let mut child = node().stdin(Stdio::piped()).spawn().expect("node starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"print('from stdin')\n")
        .expect("write");
    let out = run_with_timeout(child, Duration::from_secs(20));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "from stdin\n");
}

#[test]
fn exits_0_when_nothing_is_pending() {
    let s = Script::new("done.lua", "local fiber = require('fiber')\nfiber.create(function() fiber.sleep(0.01) end)\nfiber.sleep(0.05)\nprint('end')\n");
    let out = run(node().arg(s.path()));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "end\n");
}

#[test]
fn an_error_in_a_fiber_is_logged_and_the_process_goes_on() {
    let s = Script::new(
        "fibererr.lua",
        "local fiber = require('fiber')\nfiber.create(function() error('in fiber') end)\nprint('after')\n",
    );
    let out = run(node().arg(s.path()));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "after\n");
    let err = text(&out.stderr);
    assert!(
        err.contains("E> LuajitError: ") && err.contains("fibererr.lua:2: in fiber"),
        "{err}"
    );
    assert!(err.contains("stack traceback:"), "{err}");
}

#[test]
fn os_exit_in_a_fiber_sets_the_code_and_flushes_output() {
    let s = Script::new(
        "exit.lua",
        "local fiber = require('fiber')\nfiber.create(function() fiber.sleep(0.01) io.write('partial') print(' line') os.exit(3) end)\n",
    );
    let out = run(node().arg(s.path()));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "partial line\n");
}

fn spawn_sleeper(name: &str) -> (Script, Child) {
    let s = Script::new(
        name,
        "local fiber = require('fiber')\nfiber.create(function() while true do fiber.sleep(0.01) end end)\nprint('started')\n",
    );
    let mut child = node().arg(s.path()).spawn().expect("node starts");
    let mut buf = [0u8; 8];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut buf)
        .expect("started line");
    assert_eq!(&buf, b"started\n");
    (s, child)
}

#[test]
fn stays_up_while_a_fiber_sleeps_and_sigterm_ends_it_with_0() {
    let (_s, mut child) = spawn_sleeper("sleeper_term.lua");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "node exited while a fiber was sleeping"
    );
    // Safety: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = run_with_timeout(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn sigint_ends_it_with_0() {
    let (_s, child) = spawn_sleeper("sleeper_int.lua");
    // Safety: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = run_with_timeout(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_closed_stdout_does_not_panic() {
    let mut child = node()
        .args(["-e", "for i = 1, 200000 do print(i) end io.stderr:write('done\\n')"])
        .spawn()
        .expect("node starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 2];
    stdout.read_exact(&mut first).expect("first line");
    drop(stdout);
    let out = run_with_timeout(child, Duration::from_secs(30));
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("done"), "{err}");
}

#[test]
fn interactive_console_reads_a_pipe_and_echoes_like_tarantool() {
    let s = Script::new("i.lua", "x = 41\n");
    let mut child = node()
        .args(["-i", s.path()])
        .stdin(Stdio::piped())
        .spawn()
        .expect("node starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"x + 1\nlocal t = {\n1}\n")
        .expect("write");
    let out = run_with_timeout(child, Duration::from_secs(20));
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "node> x + 1\n---\n- 42\n...\n\nnode> local t = {\n    > 1}\n---\n...\n\nnode> "
    );
}

#[test]
fn console_start_returns_at_end_of_input() {
    let s = Script::new("cs.lua", "require('console').start()\nprint('after console')\n");
    let mut child = node().arg(s.path()).stdin(Stdio::piped()).spawn().expect("node starts");
    child.stdin.take().expect("stdin").write_all(b"1\n").expect("write");
    let out = run_with_timeout(child, Duration::from_secs(20));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "node> 1\n---\n- 1\n...\n\nnode> after console\n");
}

#[test]
fn console_quit_returns_from_start_and_ends_an_interactive_node() {
    let s = Script::new("cq.lua", "require('console').start()\nprint('after console')\n");
    let mut child = node().arg(s.path()).stdin(Stdio::piped()).spawn().expect("node starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\\q\n1\n")
        .expect("write");
    let out = run_with_timeout(child, Duration::from_secs(20));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "node> \\q\nafter console\n");
    // With a fiber pending, an interactive node still exits on \q (not on end of input).
    let mut child = node()
        .args([
            "-i",
            "-e",
            "require('fiber').create(function() require('fiber').sleep(60) end)",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"\\q\n").expect("write");
    let out = run_with_timeout(child, Duration::from_secs(20));
    drop(stdin);
    assert!(out.status.success());
}

#[test]
fn a_console_line_may_sleep() {
    let mut child = node().args(["-i"]).stdin(Stdio::piped()).spawn().expect("node starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"require('fiber').sleep(0.05) return 'slept'\nrequire('fiber').channel(1):get(0.01)\n")
        .expect("write");
    let out = run_with_timeout(child, Duration::from_secs(20));
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("---\n- slept\n...\n"), "{stdout}");
    assert!(stdout.contains("get(0.01)\n---\n- null\n...\n"), "{stdout}");
}

#[test]
fn console_backslash_commands_switch_output_and_delimiter() {
    let mut child = node().args(["-i"]).stdin(Stdio::piped()).spawn().expect("node starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\\set output lua\n{1, \"a\", {b = 2}}\n\\set output yaml\n\\set delimiter ;\nx = 5;\nx\n;\n")
        .expect("write");
    let out = run_with_timeout(child, Duration::from_secs(20));
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("node> \\set output lua\ntrue;\nnode> {1, \"a\", {b = 2}}\n{1, \"a\", {b = 2}};\n"),
        "{stdout}"
    );
    assert!(stdout.contains("node> x\n    > ;\n---\n- 5\n...\n"), "{stdout}");
}
