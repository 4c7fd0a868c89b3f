//! Python 3 (standard library only: `http.client`, `urllib.request`, `http.server`) against
//! node, both ways, on 127.0.0.1: a Python client drives a node `http.server` (routes,
//! stash, query and JSON bodies, concurrent slow handlers, 400/404/413/500, keep-alive),
//! and node's `http.client` calls a Python `http.server` (headers and body, a timeout →
//! 408, a refused port → 595). Python prints what it saw as JSON; the asserts are here.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

/// Kills a child process if the test panics before it ends it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory for this test's scripts.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("node-http-python-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts `cmd`, reads the port it prints on its first stdout line.
fn spawn_with_port(cmd: &mut Command) -> (KillOnDrop, u16) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("process starts");
    let mut guard = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(guard.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port line");
    let port = match line.trim().parse() {
        Ok(p) => p,
        Err(_) => {
            let mut err = String::new();
            let _ = guard.0.stderr.take().expect("stderr").read_to_string(&mut err);
            panic!("no port line: {line:?}\n{err}");
        }
    };
    (guard, port)
}

/// Runs a script to its end and parses the JSON object on its last stdout line.
fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.stdin(Stdio::null()).output().expect("process runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{stderr}", out.status);
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

const NODE_SERVER: &str = r#"
local fiber = require('fiber')
local httpd = require('http.server').new('127.0.0.1', 0, {log_requests = false, max_body_size = 1000})
httpd:route({path = '/hello'}, function() return {status = 200, body = 'hello from node'} end)
httpd:route({path = '/users/:id/files/*path', method = 'GET'}, function(req)
    return req:render{json = {id = req:stash('id'), path = req:stash('path')}}
end)
httpd:route({path = '/query'}, function(req)
    return req:render{json = {q = req:query_param('q'), n = req:query_param('n'), all = req:param()}}
end)
httpd:route({path = '/items/:id', method = 'POST'}, function(req)
    local doc = req:json()
    return {status = 201, headers = {['x-item'] = req:stash('id')},
            body = require('json').encode({id = tonumber(req:stash('id')), name = doc.name,
                                           agent = req.headers['user-agent'], x = req.headers['x-test']})}
end)
httpd:route({path = '/peer'}, function(req) return {body = tostring(req.peer.port)} end)
httpd:route({path = '/boom'}, function() error('deliberate') end)
httpd:route({path = '/slow'}, function() fiber.sleep(0.3) return {body = 'slow'} end)
httpd:start()
print(httpd.tcp_server:name().port)
"#;

const PY_CLIENT: &str = r#"
import http.client, json, socket, sys, threading, time, urllib.error, urllib.request

port = int(sys.argv[1])
base = f"http://127.0.0.1:{port}"
out = {}

def fetch(path, data=None, headers=None, method=None):
    req = urllib.request.Request(base + path, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()

out["hello"] = fetch("/hello")[::2]
out["stash"] = json.loads(fetch("/users/7/files/a/b.txt")[2])
out["post_only"] = fetch("/users/7/files/x", data=b"", method="POST")[0]
out["query"] = json.loads(fetch("/query?q=a%20b&n=1")[2])
status, headers, body = fetch("/items/5", data=json.dumps({"name": "n1"}).encode(),
                              headers={"Content-Type": "application/json", "X-Test": "yes"})
out["json"] = [status, headers.get("x-item"), json.loads(body)]
out["bad_json"] = fetch("/items/5", data=b"{bad", headers={"Content-Type": "application/json"})[0]
out["missing"] = fetch("/missing")[::2]
out["boom"] = fetch("/boom")[::2]
out["too_big"] = fetch("/items/1", data=b"x" * 5000)[0]

# A request hyper can't parse gets 400, and the server keeps serving.
with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
    s.sendall(b"GARBAGE\r\n\r\n")
    out["malformed"] = s.recv(4096).split(b"\r\n", 1)[0].decode()
out["after_malformed"] = fetch("/hello")[0]

# Keep-alive: three requests on one http.client connection reach the server from one port.
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
seen = []
for _ in range(3):
    conn.request("GET", "/peer")
    r = conn.getresponse()
    seen.append((r.status, r.read().decode(), r.getheader("connection")))
out["keepalive"] = {"statuses": [s for s, _, _ in seen], "ports": sorted({p for _, p, _ in seen}),
                    "local_port": str(conn.sock.getsockname()[1]), "closed": [c for _, _, c in seen]}
conn.close()

# Eight 0.3 s handlers at once take about 0.3 s, not 2.4 s.
results = []
def slow():
    results.append(fetch("/slow")[::2])
threads = [threading.Thread(target=slow) for _ in range(8)]
started = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
out["slow"] = {"results": results, "elapsed": time.monotonic() - started}
print(json.dumps(out))
"#;

#[test]
fn python_client_against_a_node_server() {
    let dir = scratch("server");
    let script = dir.join("server.lua");
    std::fs::write(&script, NODE_SERVER).expect("script written");
    let (mut node, port) = spawn_with_port(Command::new(env!("CARGO_BIN_EXE_node")).arg(&script));
    let client = dir.join("client.py");
    std::fs::write(&client, PY_CLIENT).expect("client written");
    let v = run_json(Command::new("python3").arg(&client).arg(port.to_string()));

    assert_eq!(v["hello"], json!([200, "hello from node"]));
    assert_eq!(v["stash"], json!({"id": "7", "path": "a/b.txt"}));
    assert_eq!(v["post_only"], 404, "a GET route does not answer POST");
    assert_eq!(v["query"], json!({"q": "a b", "n": "1", "all": {"q": "a b", "n": "1"}}));
    let agent = v["json"][2]["agent"].as_str().unwrap_or("");
    assert!(
        agent.starts_with("Python-urllib/3."),
        "request headers reach the handler: {v}"
    );
    assert_eq!(
        v["json"],
        json!([201, "5", {"id": 5, "name": "n1", "agent": agent, "x": "yes"}])
    );
    assert_eq!(v["bad_json"], 400);
    assert_eq!(v["missing"], json!([404, ""]));
    assert_eq!(v["boom"], json!([500, "Internal Error"]));
    assert_eq!(v["too_big"], 413);
    assert_eq!(v["malformed"], "HTTP/1.1 400 Bad Request");
    assert_eq!(v["after_malformed"], 200);
    let ka = &v["keepalive"];
    assert_eq!(ka["statuses"], json!([200, 200, 200]));
    assert_eq!(ka["ports"], json!([ka["local_port"].clone()]), "one connection: {ka}");
    assert_eq!(ka["closed"], json!([null, null, null]), "no Connection: close");
    let slow = &v["slow"];
    assert_eq!(slow["results"].as_array().map(Vec::len), Some(8));
    assert!(
        slow["results"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| *r == json!([200, "slow"])),
        "{slow}"
    );
    assert!(
        slow["elapsed"].as_f64().is_some_and(|s| s < 1.2),
        "handlers ran one by one: {slow}"
    );

    assert!(
        node.0.try_wait().expect("wait").is_none(),
        "node exited while listening"
    );
    let _ = node.0.kill();
    let mut err = String::new();
    let _ = node.0.stderr.take().expect("stderr").read_to_string(&mut err);
    assert!(err.contains("unhandled error") && err.contains("deliberate"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

const PY_SERVER: &str = r#"
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body, headers=()):
        data = body.encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def echo(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode() if n else ""
        doc = {"method": self.command, "path": self.path, "body": body,
               "x_test": self.headers.get("X-Test"), "ct": self.headers.get("Content-Type")}
        self.reply(200, json.dumps(doc), [("Content-Type", "application/json"), ("X-Served-By", "python"),
                                          ("Set-Cookie", "a=1; Path=/")])

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(2)
            return self.reply(200, "late")
        if self.path == "/teapot":
            return self.reply(418, "short and stout")
        self.echo()

    do_POST = echo

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

const NODE_CLIENT: &str = r#"
local json = require('json')
local fiber = require('fiber')
local client = require('http.client')
local base = 'http://127.0.0.1:' .. arg[1]
local out = {}

local r = client.get(base .. '/echo?a=1', {headers = {['X-Test'] = 'from node'}, timeout = 5})
out.get = {status = r.status, reason = r.reason, served_by = r.headers['x-served-by'], doc = r:decode(),
           cookie = r.cookies and r.cookies.a and r.cookies.a[1]}
r = client.post(base .. '/echo', json.encode({k = 'v'}),
                {headers = {['Content-Type'] = 'application/json'}, timeout = 5})
out.post = {status = r.status, doc = r:decode()}
r = client.get(base .. '/teapot', {timeout = 5})
out.teapot = {status = r.status, body = r.body, reason = r.reason}

local started = fiber.clock()
r = client.get(base .. '/slow', {timeout = 0.2})
out.timeout = {status = r.status, reason = r.reason, elapsed = fiber.clock() - started}

r = client.get('http://127.0.0.1:' .. arg[2] .. '/', {timeout = 5})
out.refused = {status = r.status, reason = r.reason}
print(json.encode(out))
"#;

#[test]
fn node_client_against_a_python_server() {
    let dir = scratch("client");
    let server = dir.join("server.py");
    std::fs::write(&server, PY_SERVER).expect("server written");
    let (mut py, port) = spawn_with_port(Command::new("python3").arg(&server));
    // A port that was free a moment ago: nothing listens there, so connecting is refused.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let script = dir.join("client.lua");
    std::fs::write(&script, NODE_CLIENT).expect("script written");
    let v = run_json(
        Command::new(env!("CARGO_BIN_EXE_node"))
            .arg(&script)
            .arg(port.to_string())
            .arg(refused.to_string()),
    );

    assert_eq!(
        v["get"],
        json!({"status": 200, "reason": "Ok", "served_by": "python", "cookie": "1",
               "doc": {"method": "GET", "path": "/echo?a=1", "body": "", "x_test": "from node", "ct": null}})
    );
    assert_eq!(
        v["post"],
        json!({"status": 200, "doc": {"method": "POST", "path": "/echo", "body": "{\"k\":\"v\"}",
               "x_test": null, "ct": "application/json"}})
    );
    assert_eq!(
        v["teapot"],
        json!({"status": 418, "body": "short and stout", "reason": "Unknown"})
    );
    assert_eq!(v["timeout"]["status"], 408);
    assert_eq!(v["timeout"]["reason"], "Timeout was reached");
    let elapsed = v["timeout"]["elapsed"].as_f64().unwrap_or(f64::NAN);
    assert!((0.15..1.5).contains(&elapsed), "timeout after {elapsed} s");
    assert_eq!(
        v["refused"],
        json!({"status": 595, "reason": "Couldn't connect to server"})
    );

    assert!(py.0.try_wait().expect("wait").is_none(), "the Python server died");
    let _ = std::fs::remove_dir_all(&dir);
}
