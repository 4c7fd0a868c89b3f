//! swim's codec and packet crypto against real Tarantool 2.6.0 datagrams.
//!
//! `tests/data/swim/capture.out` was printed by `tests/data/swim/capture.lua` run on the real
//! `tarantool` 2.6.0 (see the script's header; DES needs OpenSSL's legacy provider, hence
//! `openssl-legacy.cnf`). Each plaintext datagram must decode to the scenario's values and
//! re-encode to the same bytes; each encrypted one must decrypt with the known key.

use std::net::{Ipv4Addr, SocketAddrV4};

use node::swim::crypto::{Algo, Codec, CryptoError, Mode};
use node::swim::proto::{self, FailureDetectionKind, Incarnation, Packet, Status};
use uuid::Uuid;

const CAPTURE: &str = include_str!("data/swim/capture.out");

/// The instance that sent the plaintext captures (capture.lua's `A`).
const A_UUID: &str = "804f00ed-271c-47fa-844e-df4c6e0d3301";
const SPY_UUID: &str = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
const HELPER_UUID: &str = "fedcba98-7654-3210-0123-456789abcdef";

struct Captured {
    /// `SPY`, `HELPER`, `BIG` or `algo:mode`.
    name: String,
    from: u16,
    data: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn captures() -> Vec<Captured> {
    let mut out = Vec::new();
    for line in CAPTURE.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 || !f[1].starts_with("from=") {
            continue;
        }
        let data = unhex(f[3]);
        assert_eq!(f[2], format!("len={}", data.len()));
        out.push(Captured {
            name: f[0].into(),
            from: f[1][5..].parse().unwrap(),
            data,
        });
    }
    out
}

fn local(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

fn reencode(p: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode(p, &mut out);
    out
}

fn plaintext_captures() -> Vec<(Captured, Packet)> {
    captures()
        .into_iter()
        .filter(|c| !c.name.contains(':'))
        .map(|c| {
            let p = proto::decode(&c.data).unwrap_or_else(|e| panic!("{}: {e}", c.name));
            (c, p)
        })
        .collect()
}

#[test]
fn real_plaintext_packets_decode_and_reencode_byte_exact() {
    let all = plaintext_captures();
    assert!(all.len() >= 12, "capture.out has the plaintext scenario");
    for (c, p) in &all {
        assert_eq!(reencode(p), c.data, "{} {} bytes", c.name, c.data.len());
        assert_eq!(proto::packet_size(p), c.data.len());
        assert_eq!(p.meta.version, proto::TARANTOOL_VERSION);
        assert_eq!(p.meta.src, local(c.from));
        if c.name != "BIG" {
            // GUID byte order: the wire has ed004f80 1c27 fa47 ...
            assert_eq!(p.body.src_uuid, uuid(A_UUID));
            let at = proto::meta_size(&p.meta) + 4; // after `8x 00 c4 10`
            assert_eq!(&c.data[at..at + 4], &[0xed, 0x00, 0x4f, 0x80]);
        }
        assert!(c.data.len() <= proto::MAX_PACKET_SIZE);
    }
}

#[test]
fn real_ping_has_the_scenario_values() {
    let all = plaintext_captures();
    let (_, p) = all
        .iter()
        .find(|(c, _)| c.data.len() == 399)
        .expect("the first, full ping");
    assert_eq!(p.meta.route, None);
    let fd = p.body.failure_detection.unwrap();
    assert_eq!(fd.kind, FailureDetectionKind::Ping);
    assert_eq!(fd.incarnation, Incarnation::new(7, 1));
    let diss = p.body.dissemination.as_ref().unwrap();
    let ae = p.body.anti_entropy.as_ref().unwrap();
    assert_eq!(diss.len(), 3);
    assert_eq!(ae.len(), 3);
    let me = diss.iter().find(|r| r.uuid == uuid(A_UUID)).unwrap();
    assert_eq!(me.addr, local(3330));
    assert_eq!(me.status, Status::Alive);
    assert_eq!(me.incarnation, Incarnation::new(7, 1));
    assert_eq!(me.payload.as_deref(), Some(&b"hello"[..]));
    let spy = diss.iter().find(|r| r.uuid == uuid(SPY_UUID)).unwrap();
    assert_eq!((spy.addr, spy.payload.as_ref()), (local(3331), None));
    let helper = diss.iter().find(|r| r.uuid == uuid(HELPER_UUID)).unwrap();
    assert_eq!(helper.addr, local(3332));
    // 69 bytes of ping + 6 records of 52 + the payload twice (4 + 5).
    assert_eq!(399, 69 + 6 * 52 + 2 * 9);
}

#[test]
fn real_ack_routed_ping_quit_and_big_payload() {
    let all = plaintext_captures();
    let ack = all
        .iter()
        .find(|(_, p)| p.body.failure_detection.map(|f| f.kind) == Some(FailureDetectionKind::Ack));
    assert_eq!(
        ack.unwrap().1.body.failure_detection.unwrap().incarnation,
        Incarnation::new(7, 1)
    );

    let (c, routed) = all.iter().find(|(_, p)| p.meta.route.is_some()).unwrap();
    assert_eq!(proto::meta_size(&routed.meta), proto::META_ROUTED_SIZE);
    let route = routed.meta.route.unwrap();
    assert_eq!(route.src, local(3330));
    assert!(route.dst == local(3331) || route.dst == local(3332));
    assert_ne!(route.dst, local(c.from), "sent to a helper, not to the target");
    // A proxy forwards the body bytes unchanged with its own META.
    let (meta, body) = proto::split_meta(&c.data).unwrap();
    assert_eq!(meta, routed.meta);
    assert_eq!(body.len(), c.data.len() - proto::META_ROUTED_SIZE);

    let (_, quit) = all.iter().find(|(c, _)| c.data.len() == 59).unwrap();
    assert_eq!(quit.body.quit, Some(Incarnation::new(7, 1)));
    assert_eq!(quit.body.failure_detection, None);
    assert_eq!(quit.body.dissemination, None);
    assert_eq!(59, proto::META_SIZE + proto::BODY_HEADER_SIZE + proto::QUIT_SIZE);

    let (_, big) = all.iter().find(|(c, _)| c.name == "BIG").unwrap();
    let records = big
        .body
        .anti_entropy
        .iter()
        .chain(big.body.dissemination.iter())
        .flatten();
    let payloads: Vec<_> = records.filter_map(|r| r.payload.as_ref()).collect();
    assert!(!payloads.is_empty());
    for p in payloads {
        assert_eq!(p.len(), proto::MAX_PAYLOAD_SIZE);
        assert!(p.iter().all(|b| *b == b'x'));
    }
}

/// An "RNG" that hands out fixed bytes: the IV of a captured datagram.
struct Replay(Vec<u8>);

impl rand::TryRng for Replay {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unimplemented!()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unimplemented!()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.copy_from_slice(&self.0.drain(..dst.len()).collect::<Vec<u8>>());
        Ok(())
    }
}

fn key_of(header: &str) -> (Algo, Mode, Vec<u8>) {
    // "# aes128 cbc key=3031..."
    let f: Vec<&str> = header.split(' ').collect();
    (
        Algo::parse(f[1]).unwrap(),
        Mode::parse(f[2]).unwrap(),
        unhex(&f[3][4..]),
    )
}

#[test]
fn real_encrypted_packets_decrypt_for_every_algo_and_mode() {
    let mut codec = None;
    let mut seen = std::collections::BTreeSet::new();
    for line in CAPTURE.lines() {
        if line.starts_with("# ") {
            let (algo, mode, key) = key_of(line);
            codec = Some(Codec::new(algo, mode, &key).unwrap());
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 || !f[0].contains(':') {
            continue;
        }
        let codec = codec.as_ref().unwrap();
        assert_eq!(f[0], format!("{}:{}", codec.algo().name(), codec.mode().name()));
        let from: u16 = f[1][5..].parse().unwrap();
        let data = unhex(f[3]);
        let plain = codec.decrypt(&data).unwrap_or_else(|e| panic!("{line}: {e}"));
        let p = proto::decode(&plain).unwrap_or_else(|e| panic!("{}: {e}", f[0]));
        assert_eq!(p.meta.src, local(from));
        let expect_uuid = format!("00000000-0000-4000-8000-0000000033{:02}", from - 3300);
        assert_eq!(p.body.src_uuid, uuid(&expect_uuid));
        assert_eq!(reencode(&p), plain);
        // The datagram length follows the EVP rules of spec §3.2.
        let bs = codec.algo().block_size();
        let ct_len = match codec.mode() {
            Mode::Ecb | Mode::Cbc => (plain.len() / bs + 1) * bs,
            _ => plain.len(),
        };
        assert_eq!(data.len(), codec.iv_size() + ct_len, "{}", f[0]);
        assert!(data.len() <= codec.iv_size() + plain.len() + codec.overhead());
        // Encrypting Tarantool's plaintext again with the same IV gives its exact datagram.
        let mut again = Vec::new();
        codec.encrypt(&plain, &mut again, &mut Replay(data[..codec.iv_size()].to_vec()));
        assert_eq!(again, data, "{}", f[0]);
        seen.insert(f[0].to_string());
    }
    assert_eq!(seen.len(), 16, "4 algos x 4 modes: {seen:?}");
}

#[test]
fn key_size_errors_match_tarantool_text() {
    let mut n = 0;
    for line in CAPTURE.lines() {
        // "set_codec\taes128\t17\tnil\tkey size expected 16, got 17" (or "...\ttrue")
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 || f[0] != "set_codec" {
            continue;
        }
        let algo = Algo::parse(f[1]).unwrap();
        let len: usize = f[2].parse().unwrap();
        let r = Codec::new(algo, Mode::Cbc, &vec![b'k'; len]);
        match f[3] {
            "true" => assert!(r.is_ok(), "{line}"),
            _ => assert_eq!(r.unwrap_err().to_string(), f[4], "{line}"),
        }
        n += 1;
    }
    assert!(n >= 7);
    assert_eq!(
        Codec::new(Algo::Des, Mode::Ecb, b"").unwrap_err(),
        CryptoError::KeySize { expected: 8, got: 0 }
    );
}
