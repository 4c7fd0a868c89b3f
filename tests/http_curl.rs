//! A node process serving `http.server`, driven by Debian's curl (scripts/setup.sh installs
//! it): routes, JSON bodies, error statuses, keep-alive, and that the process stays up
//! while it listens and ends with 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = r#"
local fiber = require('fiber')
local httpd = require('http.server').new('127.0.0.1', 0, {log_requests = true, max_body_size = 1000})
httpd:route({path = '/hello'}, function() return {status = 200, body = 'hello from node'} end)
httpd:route({path = '/items/:id', method = 'POST'}, function(req)
    local doc = req:json()
    return req:render{json = {id = tonumber(req:stash('id')), name = doc.name}}
end)
httpd:route({path = '/boom'}, function() error('deliberate') end)
httpd:route({path = '/slow'}, function() fiber.sleep(0.3) return {body = 'slow'} end)
httpd:start()
print(httpd.tcp_server:name().port)
"#;

/// Kills the node child if the test panics before it ends it.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// curl's output (body, then the status code on the last line) for `args`.
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_owned(), code.to_owned())
}

#[test]
fn curl_against_a_node_server() {
    let dir = std::env::temp_dir().join(format!("node-http-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join("server.lua");
    std::fs::write(&script, SCRIPT).expect("script written");
    let child = Command::new(env!("CARGO_BIN_EXE_node"))
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().expect("child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port line");
    let port: u16 = line.trim().parse().expect("a port number");
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

    assert_eq!(curl(&[&url("/hello")]), ("hello from node".into(), "200".into()));
    let (body, code) = curl(&[
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name":"n1"}"#,
        &url("/items/5"),
    ]);
    assert_eq!(code, "200");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(v, serde_json::json!({"id": 5, "name": "n1"}));
    assert_eq!(curl(&["-d", "{bad", &url("/items/5")]).1, "400");
    assert_eq!(curl(&[&url("/missing")]).1, "404");
    assert_eq!(curl(&[&url("/boom")]), ("Internal Error".into(), "500".into()));
    let big = "x".repeat(5000);
    assert_eq!(curl(&["-d", &big, &url("/items/1")]).1, "413");
    // Two URLs in one curl run share a keep-alive connection (`-w` runs after each).
    let out = Command::new("curl")
        .args(["-s", "-v", "-m", "5", &url("/hello"), &url("/hello")])
        .output()
        .expect("curl runs");
    let verbose = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from nodehello from node");
    assert!(verbose.contains("Re-using existing connection"), "{verbose}");

    // Slow handlers run concurrently: five 0.3 s requests in well under 1.5 s.
    let started = Instant::now();
    let handles: Vec<_> = (0..5)
        .map(|_| {
            let u = url("/slow");
            std::thread::spawn(move || curl(&[&u]))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("curl thread").1, "200");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );

    assert!(child.try_wait().expect("wait").is_none(), "node exited while listening");
    // Safety: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = guard.0.take().expect("child").wait_with_output().expect("output");
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("I> GET /hello"), "{log}");
    assert!(
        log.contains("E> unhandled error:") && log.contains("deliberate"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
