//! Bad input on the binary port: each malformed packet gets Tarantool's error (checked
//! against a real tarantool given the same bytes) or a closed connection, is counted, and
//! never disturbs the server or its other clients.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, NODE};

use rmpv::Value;

fn start(program: &str, name: &str) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iproto/server.lua");
    let server = Server::start(program, &format!("iproto-bad-{name}"), &script);
    // The script's grants run before listen returns, but let the server finish the script.
    std::thread::sleep(Duration::from_millis(200));
    server
}

fn connect(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut greeting = [0u8; 128];
    s.read_exact(&mut greeting).expect("greeting");
    assert!(
        greeting.starts_with(b"Tarantool 2.6"),
        "{:?}",
        String::from_utf8_lossy(&greeting)
    );
    s
}

fn mp(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("encode");
    out
}

fn map(pairs: &[(u64, Value)]) -> Value {
    Value::Map(pairs.iter().map(|(k, v)| (Value::from(*k), v.clone())).collect())
}

/// A length-prefixed packet of `body` bytes (header and body already encoded).
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xce];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A request packet: header `{type, sync}` and `body`.
fn request(kind: u64, sync: u64, body: &Value) -> Vec<u8> {
    frame(&[mp(&map(&[(0, kind.into()), (1, sync.into())])), mp(body)].concat())
}

fn get(m: &Value, k: u64) -> Option<Value> {
    m.as_map()?
        .iter()
        .find(|(key, _)| key.as_u64() == Some(k))
        .map(|(_, v)| v.clone())
}

/// Reads one packet: header and body. None when the server closed.
fn read_packet(s: &mut TcpStream) -> Option<(Value, Option<Value>)> {
    let mut prefix = [0u8; 5];
    s.read_exact(&mut prefix).ok()?;
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    let mut packet = vec![0u8; len];
    s.read_exact(&mut packet).ok()?;
    let mut rd = &packet[..];
    let header = rmpv::decode::read_value(&mut rd).expect("header");
    Some((header, rmpv::decode::read_value(&mut rd).ok()))
}

/// Reads one response: (type, sync, message of 0x31 if any). None when the server closed.
fn response(s: &mut TcpStream) -> Option<(u64, u64, Option<String>)> {
    let (header, body) = read_packet(s)?;
    let kind = get(&header, 0).and_then(|v| v.as_u64()).unwrap_or(0);
    let sync = get(&header, 1).and_then(|v| v.as_u64()).unwrap_or(0);
    let message = body
        .and_then(|b| get(&b, 0x31))
        .and_then(|v| v.as_str().map(str::to_string));
    Some((kind, sync, message))
}

/// A connection logged in as tests/iproto/server.lua's user `test`.
fn login_as_test(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut greeting = [0u8; 128];
    s.read_exact(&mut greeting).expect("greeting");
    let salt = node::iproto::codec::parse_greeting(&greeting).expect("greeting").salt;
    let scramble = node::box_::chap_sha1::scramble(&salt[..20], "pass");
    let auth = map(&[
        (0x23, "test".into()),
        (
            0x21,
            Value::Array(vec!["chap-sha1".into(), Value::Binary(scramble.to_vec())]),
        ),
    ]);
    s.write_all(&request(7, 1, &auth)).expect("auth");
    assert_eq!(response(&mut s).map(|(k, _, m)| (k, m)), Some((0, None)));
    s
}

/// EVAL `expr` on `s`; returns the reply's first value.
fn eval(s: &mut TcpStream, expr: &str) -> Value {
    let body = map(&[(0x27, expr.into()), (0x21, Value::Array(vec![]))]);
    s.write_all(&request(8, 2, &body)).expect("eval");
    let (_, body) = read_packet(s).expect("reply");
    let data = body.as_ref().and_then(|b| get(b, 0x30));
    data.and_then(|d| d.as_array()?.first().cloned()).unwrap_or(Value::Nil)
}

fn ping(sync: u64) -> Vec<u8> {
    frame(&mp(&map(&[(0, 64.into()), (1, sync.into())])))
}

/// What each bad packet gets, then a ping on the same connection (None: it was closed).
fn answers(port: u16) -> Vec<String> {
    let header = |kind: u64, sync: u64| mp(&map(&[(0, kind.into()), (1, sync.into())]));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header not a map", frame(&mp(&Value::from(5)))),
        ("body not a map", frame(&[header(1, 2), mp(&Value::from("x"))].concat())),
        (
            "space id as a string",
            frame(
                &[
                    header(1, 3),
                    mp(&map(&[
                        (0x10, "x".into()),
                        (0x12, 1.into()),
                        (0x20, Value::Array(vec![])),
                    ])),
                ]
                .concat(),
            ),
        ),
        (
            "select without a key",
            frame(&[header(1, 4), mp(&map(&[(0x10, 512.into()), (0x12, 1.into())]))].concat()),
        ),
        ("unknown request type", frame(&header(99, 5))),
        ("truncated body", frame(&[header(64, 6), vec![0xa5, b'x']].concat())),
        ("two bodies", frame(&[header(64, 6), vec![0x80, 0x80]].concat())),
        ("body of a reserved byte", frame(&[header(64, 6), vec![0xc1]].concat())),
        ("truncated header", frame(&[0x82, 0x00])),
        (
            "tuple not an array",
            frame(&[header(2, 7), mp(&map(&[(0x10, 512.into()), (0x21, 1.into())]))].concat()),
        ),
        (
            "no such space",
            frame(
                &[
                    header(2, 8),
                    mp(&map(&[(0x10, 9999.into()), (0x21, Value::Array(vec![1.into()]))])),
                ]
                .concat(),
            ),
        ),
        (
            "call without a name",
            frame(&[header(10, 9), mp(&map(&[(0x21, Value::Array(vec![]))]))].concat()),
        ),
        (
            "auth for a missing user",
            frame(
                &[
                    header(7, 10),
                    mp(&map(&[
                        (0x23, "nobody".into()),
                        (0x21, Value::Array(vec!["chap-sha1".into(), Value::Binary(vec![0; 20])])),
                    ])),
                ]
                .concat(),
            ),
        ),
        (
            "auth with a short scramble",
            frame(
                &[
                    header(7, 11),
                    mp(&map(&[
                        (0x23, "test".into()),
                        (0x21, Value::Array(vec!["chap-sha1".into(), Value::Binary(vec![0; 5])])),
                    ])),
                ]
                .concat(),
            ),
        ),
        (
            "wrong schema version",
            frame(&mp(&map(&[(0, 64.into()), (1, 12.into()), (5, 999_999.into())]))),
        ),
        ("length prefix not a number", b"\xa1x".to_vec()),
        // (2.6 looks at the length only once more bytes than the prefix have come)
        (
            "length beyond 2 GiB",
            [&b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"[..], &[0; 16]].concat(),
        ),
    ];
    let mut out = Vec::new();
    for (name, bytes) in cases {
        let mut s = connect(port);
        s.write_all(&bytes).expect("send");
        // Schema versions count differently (node's bootstrap makes fewer changes).
        let first = response(&mut s).map(|(kind, sync, m)| {
            let m = m.map(|m| match m.split_once(", in request: ") {
                Some((head, _)) => head.to_string(),
                None => m,
            });
            (kind, sync, m)
        });
        let _ = s.write_all(&ping(77));
        let after = response(&mut s).map(|(kind, sync, _)| (kind, sync));
        out.push(format!("{name}: {first:?} then {after:?}"));
    }
    out
}

#[test]
fn malformed_packets_get_tarantools_errors() {
    let tarantool = start("tarantool", "tarantool");
    let node = start(NODE, "node");
    let expected = answers(tarantool.port);
    let got = answers(node.port);
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(g, e);
    }
    assert_eq!(got.len(), expected.len());
    // Counted: box.stat.net().MALFORMED, read over the port as user test.
    let malformed = eval(&mut login_as_test(node.port), "return box.stat.net().MALFORMED.total");
    assert!(malformed.as_u64().is_some_and(|n| n >= 10), "{malformed}");
    // Each bad client was logged once, not once per packet.
    let log = std::fs::read_to_string(node.dir.join("stderr.log")).expect("log");
    assert!(log.matches("malformed packet").count() >= 5, "{log}");
}

#[test]
fn a_client_that_vanishes_mid_packet_or_floods_disturbs_nobody() {
    node::runtime::raise_open_files_limit(); // this test holds 1,000 sockets
    let node = start(NODE, "flood");
    // Half a packet, then gone.
    let mut s = connect(node.port);
    s.write_all(&ping(1)[..4]).expect("send");
    drop(s);
    // A flood of pipelined calls whose replies are never read.
    let mut flood = connect(node.port);
    flood
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let call = frame(
        &[
            mp(&map(&[(0, 10.into()), (1, 5.into())])),
            mp(&map(&[
                (0x22, "add".into()),
                (0x21, Value::Array(vec![1.into(), 2.into()])),
            ])),
        ]
        .concat(),
    );
    let burst: Vec<u8> = call.iter().copied().cycle().take(call.len() * 20_000).collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if flood.write_all(&burst).is_err() {
            break; // the server stopped reading us: backpressure
        }
    }
    // 1,000 idle connections.
    let idle: Vec<TcpStream> = (0..1000).map(|_| connect(node.port)).collect();
    // Another client is served promptly all along.
    let mut other = connect(node.port);
    let t0 = Instant::now();
    for sync in 0..100 {
        other.write_all(&ping(sync)).expect("send");
        let (kind, got, _) = response(&mut other).expect("a reply");
        assert_eq!((kind, got), (0, sync));
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "100 pings took {:?}",
        t0.elapsed()
    );
    // The flooding client still gets its replies once it reads.
    let (kind, sync, _) = response(&mut flood).expect("flood reply");
    assert_eq!((kind, sync), (0, 5));
    drop(idle);
    drop(flood);
    let mut last = connect(node.port);
    last.write_all(&ping(9)).expect("send");
    assert_eq!(response(&mut last).map(|(k, s, _)| (k, s)), Some((0, 9)));
}

#[test]
fn net_msg_max_bounds_the_requests_served_at_once() {
    let node = start(NODE, "net-msg-max");
    let slow_calls = |s: &mut TcpStream| {
        let call = map(&[(0x22, "slow".into()), (0x21, Value::Array(vec!["x".into()]))]);
        let burst: Vec<u8> = (10..13).flat_map(|sync| request(10, sync, &call)).collect();
        let started = Instant::now();
        s.write_all(&burst).expect("calls");
        for _ in 0..3 {
            assert_eq!(response(s).map(|(kind, _, _)| kind), Some(0));
        }
        started.elapsed()
    };
    let mut s = login_as_test(node.port);
    // slow() sleeps 0.3 s: three at once take one sleep, two at a time take two.
    assert!(slow_calls(&mut s) < Duration::from_millis(550));
    eval(&mut s, "box.cfg{net_msg_max = 2}");
    assert!(slow_calls(&mut s) >= Duration::from_millis(550));
}
