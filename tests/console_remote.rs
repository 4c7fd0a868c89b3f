//! The remote text console against real Tarantool 2.6, both ways round.
//!
//! `tests/console_remote/*.out` were produced by Tarantool serving
//! `tests/console_remote/server.lua` (`scripts/golden/console_remote.sh`):
//! - `raw_*`: the bytes of `.in` sent on one connection at once; the server's whole answer
//!   (greeting included) must equal `.out` byte for byte;
//! - `client_*`: `.in` piped into a console connected to the server; stdout must equal
//!   `.out` with `{addr}` replaced by the server's address. Checked for node's server with
//!   Tarantool's client, node's `--connect` and node's `console.connect`, and for
//!   Tarantool's server with node's `--connect`;
//! - `ctl_*`: `.in` piped into `tarantoolctl connect` against node's server.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, temp_dir, wait_listening, KillOnDrop, NODE};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console_remote")
}

fn cases(prefix: &str) -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/console_remote exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "in")
                && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    list.sort();
    assert!(!list.is_empty(), "no {prefix} cases");
    list
}

fn golden(input: &Path) -> Vec<u8> {
    std::fs::read(input.with_extension("out")).expect("golden output exists")
}

fn require_tarantool() {
    if Command::new("tarantool").arg("-v").output().is_err() {
        panic!("tarantool is not installed: scripts/setup.sh installs it");
    }
}

/// A console server (node or Tarantool running server.lua) in its own directory.
struct Server {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Server {
    fn start(program: &str, name: &str) -> Server {
        let dir = temp_dir(name);
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(program)
            .arg(corpus().join("server.lua"))
            .arg(&addr)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let server = Server { child, dir, addr };
        wait_listening(&server.addr, program);
        server
    }

    fn node(name: &str) -> Server {
        Server::start(NODE, name)
    }

    fn tarantool(name: &str) -> Server {
        require_tarantool();
        Server::start("tarantool", name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `input` on one connection, closes the sending side, returns all the server sent.
fn exchange(addr: &str, input: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(input).expect("sends");
    stream.shutdown(Shutdown::Write).expect("half-closes");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("reads to EOF");
    reply
}

/// Runs a command with `input` on stdin; kills it after 20 s.
fn piped(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("input written");
    drop(stdin);
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        // Safety: signals only the child we spawned, if it is still there.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("command finishes");
    drop(watchdog);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A client transcript for this server: its address in the prompt, and continuation
/// prompts as wide as that address.
fn transcript_for(golden: &[u8], addr: &str) -> String {
    text(golden)
        .split('\n')
        .map(|line| {
            let rest = line.trim_start_matches(' ');
            if rest.starts_with("> ") && rest.len() < line.len() {
                format!("{}{rest}", " ".repeat(addr.len()))
            } else {
                line.replace("{addr}", addr)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_all(failures: Vec<String>, total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn node_server_answers_byte_for_byte_as_tarantool() {
    let server = Server::node("raw");
    let mut failures = Vec::new();
    let cases = cases("raw_");
    for input in &cases {
        let got = exchange(&server.addr, &std::fs::read(input).expect("input"));
        let want = golden(input);
        if got != want {
            failures.push(format!(
                "{}\n--- expected\n{}\n--- got\n{}",
                input.display(),
                text(&want),
                text(&got)
            ));
        }
    }
    check_all(failures, cases.len());
}

/// Pipes each client case into `client` (given the server address) and compares stdout.
fn check_clients(server: &Server, what: &str, client: impl Fn(&str) -> Command) -> Vec<String> {
    let mut failures = Vec::new();
    for input in &cases("client_") {
        let out = piped(&mut client(&server.addr), &std::fs::read(input).expect("input"));
        let want = transcript_for(&golden(input), &server.addr);
        let got = text(&out.stdout);
        if got != want || !out.status.success() {
            failures.push(format!(
                "{what}, {}: {}\n--- expected\n{want}\n--- got\n{got}\n--- stderr\n{}",
                input.display(),
                out.status,
                text(&out.stderr)
            ));
        }
    }
    failures
}

#[test]
fn clients_of_node_server_print_what_tarantool_prints() {
    require_tarantool();
    let server = Server::node("clients");
    let client_lua = corpus().join("client.lua");
    let mut failures = check_clients(&server, "tarantool's console.connect", |addr| {
        let mut c = Command::new("tarantool");
        c.arg(&client_lua).arg(addr);
        c
    });
    failures.extend(check_clients(&server, "node --connect", |addr| {
        let mut c = Command::new(NODE);
        c.args(["--connect", addr]);
        c
    }));
    failures.extend(check_clients(&server, "node's console.connect", |addr| {
        let mut c = Command::new(NODE);
        c.arg(&client_lua).arg(addr);
        c
    }));
    check_all(failures, 3 * cases("client_").len());
}

#[test]
fn node_connect_to_tarantool_server_prints_what_tarantool_prints() {
    let server = Server::tarantool("tarantool-server");
    let failures = check_clients(&server, "node --connect", |addr| {
        let mut c = Command::new(NODE);
        c.args(["--connect", addr]);
        c
    });
    check_all(failures, cases("client_").len());
}

#[test]
fn tarantoolctl_connect_works_against_node_server() {
    require_tarantool();
    let server = Server::node("ctl");
    for (input, code) in cases("ctl_").iter().zip([0, 3]) {
        let out = piped(
            Command::new("tarantoolctl").args(["connect", &server.addr]),
            &std::fs::read(input).expect("input"),
        );
        assert_eq!(text(&out.stdout), text(&golden(input)), "{}", input.display());
        assert_eq!(out.status.code(), Some(code), "{}: {out:?}", input.display());
    }
    // A text console ignores credentials, in Tarantool and in node.
    let out = piped(
        Command::new("tarantoolctl").args(["connect", &format!("someone:secret@{}", server.addr)]),
        b"1 + 1\n",
    );
    assert_eq!(text(&out.stdout), "---\n- 2\n...\n\n", "{out:?}");
    let out = piped(
        Command::new(NODE).args(["--connect", &format!("someone:secret@{}", server.addr)]),
        b"1 + 1\n",
    );
    assert!(text(&out.stdout).contains("---\n- 2\n...\n"), "{out:?}");
}

#[test]
fn connect_to_nothing_fails_with_the_reason() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = piped(Command::new(NODE).args(["--connect", &addr]), b"1\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        format!("node: can't connect to {addr}: Connection refused\n")
    );
    assert!(out.stdout.is_empty(), "{out:?}");

    let dir = temp_dir("missing");
    let out = piped(
        Command::new(NODE).args(["--connect", &dir.join("none.sock").to_string_lossy()]),
        b"",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).ends_with(": No such file or directory\n"), "{out:?}");

    let out = piped(Command::new(NODE).args(["--connect", "nowhere"]), b"");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        "node: Usage: console.connect(\"[login:password@][host:]port\")\n"
    );

    // Listeners that are not a Tarantool text console: an HTTP server, a binary port.
    let binary = format!(
        "{:<63}\n{:<63}\n",
        "Tarantool 2.6.0 (Binary) 41a9f292-46b1-4b6d-9542-e7bad0c9b5d1", "1aaQFi0HmrsWbrOi1HBHpqrRvJsXCjB7rFCRkZm7vDY="
    );
    let binary_refused = "it speaks the Binary protocol, node's console speaks only the text one (console.listen)";
    for (greeting, why) in [
        (
            "HTTP/1.1 400 Bad Request\r\n\r\n".to_string(),
            "Invalid greeting: too short",
        ),
        (binary, binary_refused),
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let addr = listener.local_addr().expect("address").to_string();
        let talker = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.write_all(greeting.as_bytes());
            }
        });
        let out = piped(Command::new(NODE).args(["--connect", &addr]), b"1\n");
        let _ = talker.join();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert_eq!(text(&out.stderr), format!("node: can't connect to {addr}: {why}\n"));
    }
}

#[test]
fn local_console_connects_and_comes_back_when_the_server_goes() {
    let server = Server::node("local");
    let input = format!(
        "require('console').connect('{}')\n1\n\\q\n2\nrequire('console').connect('{}')\n",
        server.addr, "127.0.0.1:1"
    );
    let out = piped(
        Command::new(NODE).args(["-e", "require('console').start() os.exit(0)"]),
        input.as_bytes(),
    );
    let addr = &server.addr;
    // Tarantool 2.6 prints the same, with `tarantool> ` for `node> `.
    assert_eq!(
        text(&out.stdout),
        format!(
            "node> require('console').connect('{addr}')\n---\n- true\n...\n\n\
             {addr}> 1\n---\n- 1\n...\n\n\
             {addr}> \\q\n---\n- error: Peer closed\n...\n\n\
             node> 2\n---\n- 2\n...\n\n\
             node> require('console').connect('127.0.0.1:1')\n---\n- error: Connection is not established\n...\n\n\
             node> "
        )
    );
    assert!(text(&out.stderr).contains(&format!("connected to {addr}")), "{out:?}");
}

/// Reads one YAML reply (up to `\n...\n`) from a console connection.
fn reply(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n...\n") {
        match stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            other => panic!("no reply ({other:?}), got {}", text(&got)),
        }
    }
    text(&got)
}

fn console_connection(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut greeting = [0u8; 128];
    stream.read_exact(&mut greeting).expect("greeting");
    assert!(greeting.starts_with(b"Tarantool 2.6.0 (Lua console)"));
    stream
}

#[test]
fn each_connection_has_its_own_fiber_session_and_settings() {
    let server = Server::node("sessions");
    let mut slow = console_connection(&server.addr);
    let mut quick = console_connection(&server.addr);
    slow.write_all(b"require('fiber').sleep(0.3) return 'slow', box.session.id()\n")
        .expect("sends");
    std::thread::sleep(Duration::from_millis(50));
    // The sleeping connection does not hold up the other one, whose output mode is its own.
    let started = Instant::now();
    quick
        .write_all(b"\\set output lua\nbox.session.id(), box.session.type()\n")
        .expect("sends");
    let mut buf = [0u8; 64];
    let mut lua = Vec::new();
    while lua.iter().filter(|&&b| b == b';').count() < 2 {
        let n = quick.read(&mut buf).expect("reads");
        assert!(n > 0, "closed");
        lua.extend_from_slice(&buf[..n]);
    }
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let lua = text(&lua);
    let quick_id: u64 = lua
        .trim_start_matches("true;")
        .split(',')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("an id in {lua}"));
    assert!(lua.ends_with(", \"console\";"), "{lua}");
    let slow_reply = reply(&mut slow);
    assert!(slow_reply.starts_with("---\n- slow\n- "), "{slow_reply}");
    assert!(
        !slow_reply.contains(&format!("- {quick_id}\n")),
        "{slow_reply} vs {quick_id}"
    );
    slow.write_all(b"box.session.exists(box.session.id()), box.session.peer() ~= nil\n")
        .expect("sends");
    assert_eq!(reply(&mut slow), "---\n- true\n- true\n...\n");
}

#[test]
fn listen_takes_tarantools_uri_forms_and_errors() {
    let dir = temp_dir("listen");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let busy_addr = busy.local_addr().expect("address").to_string();
    let sock = dir.join("console.sock");
    let script = format!(
        "local console = require('console')
         print(pcall(console.listen, '{busy_addr}'))
         print(pcall(console.listen, 'nowhere'))
         print(pcall(console.listen, {{}}))
         print(pcall(console.listen, 'unix/:/nonexistent/dir/x.sock'))
         local s = console.listen('127.0.0.1:0')
         print(type(s), s:name().family)
         local port = s:name().port
         print(s:close(), pcall(console.listen, '127.0.0.1:' .. port))
         local u = console.listen('unix/:{path}')
         print(u:name().family, require('fio').path.exists('{path}'))
         os.exit(0)",
        path = sock.display()
    );
    let out = Command::new(NODE)
        .args(["-e", &script])
        .current_dir(&dir)
        .output()
        .expect("node runs");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.get(..4),
        Some(
            &[
                format!("false\tfailed to create server {busy_addr}: Address already in use").as_str(),
                "false\tUsage: console.listen(\"[host:]port\")",
                "false\tUsage: console.listen(\"[host:]port\")",
                "false\tfailed to create server unix/:/nonexistent/dir/x.sock: No such file or directory",
            ][..]
        ),
        "{out:?}"
    );
    assert_eq!(lines.get(4), Some(&"table\tAF_INET"), "{out:?}");
    // Closing frees the port at once; listening there again gives a new socket.
    assert!(lines.get(5).is_some_and(|l| l.starts_with("true\ttrue\t")), "{out:?}");
    assert_eq!(lines.get(6), Some(&"AF_UNIX\ttrue"), "{out:?}");
    drop(busy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connect_over_a_unix_socket() {
    let dir = temp_dir("unix");
    let sock = dir.join("c.sock");
    let _server = KillOnDrop(
        Command::new(NODE)
            .args(["-e", &format!("require('console').listen('unix/:{}')", sock.display())])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    for uri in [sock.display().to_string(), format!("unix/:{}", sock.display())] {
        let out = piped(Command::new(NODE).args(["--connect", &uri]), b"box.session.peer()\n");
        let prompt = format!("unix/:{}> ", sock.display());
        assert_eq!(
            text(&out.stdout),
            format!("{prompt}box.session.peer()\n---\n- unix/:(socket)\n...\n\n{prompt}\n"),
            "{out:?}"
        );
        assert!(out.status.success(), "{out:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn session_triggers_run_for_console_sessions() {
    let dir = temp_dir("triggers");
    let addr = format!("127.0.0.1:{}", free_port());
    let script = format!(
        "events = {{}}
         box.session.on_connect(function()
             if refuse then error('go away') end
             table.insert(events, 'connect ' .. box.session.type() .. ' ' .. box.session.user())
         end)
         box.session.on_auth(function(user, ok) table.insert(events, 'auth ' .. user .. ' ' .. tostring(ok)) end)
         box.session.on_disconnect(function() table.insert(events, 'disconnect ' .. box.session.type()) end)
         require('console').listen('{addr}')"
    );
    let _server = KillOnDrop(
        Command::new(NODE)
            .args(["-e", &script])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Ok(s) = TcpStream::connect(&addr) {
            break s;
        }
        assert!(Instant::now() < deadline, "no server");
        std::thread::sleep(Duration::from_millis(20));
    };
    first.shutdown(Shutdown::Both).expect("closes");
    drop(first);
    std::thread::sleep(Duration::from_millis(100));
    let mut second = console_connection(&addr);
    second
        .write_all(b"#events, events[1], events[2], events[3], events[4]\nrefuse = true\n")
        .expect("sends");
    assert_eq!(
        reply(&mut second),
        "---\n- 5\n- connect console admin\n- auth admin true\n- disconnect console\n- connect console admin\n...\n"
    );
    assert_eq!(reply(&mut second), "---\n...\n");
    // A failing on_connect trigger closes the connection before the greeting.
    let mut third = TcpStream::connect(&addr).expect("connects");
    third.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut got = Vec::new();
    third.read_to_end(&mut got).expect("closed");
    assert!(got.is_empty(), "{}", text(&got));
    let _ = std::fs::remove_dir_all(&dir);
}
