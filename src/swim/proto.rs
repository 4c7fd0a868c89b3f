//! SWIM's wire format, as Tarantool 2.6 sends and accepts it (spec §3).
//!
//! ```text
//! datagram (plaintext codec) = META map ++ BODY map                (≤ 1440 bytes)
//! datagram (encrypted)       = IV ++ encrypt(META map ++ BODY map) (≤ 1472 bytes)
//!
//! META = { 0: tarantool version (u32), 1: src ip (u32, host order), 2: src port (u16),
//!          [3: routing { 0: src ip, 1: src port, 2: dst ip, 3: dst port }] }
//! BODY = { 0: src uuid (bin16, first key, GUID byte order),
//!          [2: failure detection { 0: type (0 ping, 1 ack), 1: generation u64, 2: version u64 }],
//!          [3: dissemination [member record...]], [1: anti-entropy [member record...]],
//!          [4: quit { 0: generation u64, 1: version u64 }] }
//! member record = { 0: status, 1: ip, 2: port, 3: uuid, 4: generation, 5: version, [6: payload] }
//! ```
//!
//! Senders use fixed widths (u32 ips, u16 ports, u64 incarnations, array16, bin16 payloads) so
//! the size of a packet is known before it is encoded: the `*_SIZE` constants and
//! [`record_size`] let the protocol core fill a packet up to [`MAX_PACKET_SIZE`] without
//! encoding it twice. Receivers accept any valid MessagePack width.
//!
//! This module holds the decoded values (`*Def` in Tarantool's terms) and the codec; no
//! protocol logic.

use std::net::SocketAddrV4;

use uuid::Uuid;

/// The biggest datagram sent or read: 1500 MTU − 20 IP − 8 UDP.
pub const UDP_PACKET_SIZE: usize = 1472;
/// The biggest plaintext (META + BODY): the datagram minus the largest IV and the largest
/// padding a codec may add (16 + 16).
pub const MAX_PACKET_SIZE: usize = 1440;
/// The biggest user payload.
pub const MAX_PAYLOAD_SIZE: usize = 1200;
/// What 2.6.0 puts in META's version field: `(major << 16) | (minor << 8) | patch`.
pub const TARANTOOL_VERSION: u32 = 0x0002_0600;

/// META without routing: `83 00 ce V*4 01 ce I*4 02 cd P*2`.
pub const META_SIZE: usize = 17;
/// META with routing: 17 + `03 84 00 ce ip 01 cd port 02 ce ip 03 cd port`.
pub const META_ROUTED_SIZE: usize = 39;
/// BODY map header (1) + SRC_UUID (`00 c4 10` + 16).
pub const BODY_HEADER_SIZE: usize = 1 + 19;
/// FAILURE_DETECTION: `02 83 00 <type> 01 cf <u64> 02 cf <u64>`.
pub const FAILURE_DETECTION_SIZE: usize = 24;
/// A DISSEMINATION or ANTI_ENTROPY section with no records: key + array16 header.
pub const SECTION_HEADER_SIZE: usize = 4;
/// QUIT: `04 82 00 cf <u64> 01 cf <u64>`.
pub const QUIT_SIZE: usize = 22;
/// A member record without payload: map header + six fixed-width fields.
pub const RECORD_SIZE: usize = 52;
/// What a payload adds to a record: key 6 + bin16 header.
pub const RECORD_PAYLOAD_OVERHEAD: usize = 4;

/// The encoded size of a member record, as senders lay it out.
pub const fn record_size(payload_len: Option<usize>) -> usize {
    match payload_len {
        Some(n) => RECORD_SIZE + RECORD_PAYLOAD_OVERHEAD + n,
        None => RECORD_SIZE,
    }
}

/// Member statuses with their wire values; at equal incarnations the bigger one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Alive = 0,
    Suspected = 1,
    Dead = 2,
    Left = 3,
}

impl Status {
    pub fn from_wire(v: u64) -> Option<Status> {
        match v {
            0 => Some(Status::Alive),
            1 => Some(Status::Suspected),
            2 => Some(Status::Dead),
            3 => Some(Status::Left),
            _ => None,
        }
    }

    /// The name Lua sees (`m:status()`).
    pub fn name(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Suspected => "suspected",
            Status::Dead => "dead",
            Status::Left => "left",
        }
    }
}

/// `{generation, version}`, compared lexicographically (derive order = field order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Incarnation {
    pub generation: u64,
    pub version: u64,
}

impl Incarnation {
    pub const fn new(generation: u64, version: u64) -> Incarnation {
        Incarnation { generation, version }
    }
}

/// META's optional routing section: the true sender and the final receiver of a packet
/// that travels through a proxy (indirect pings and their acks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// The transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The sender's version field; mandatory and non-zero, otherwise not checked.
    pub version: u32,
    /// The sender's bound address: membership takes addresses from here, never from UDP.
    pub src: SocketAddrV4,
    pub route: Option<Route>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureDetectionKind {
    Ping = 0,
    Ack = 1,
}

/// The failure-detection section: a ping or an ack with the sender's own incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureDetection {
    pub kind: FailureDetectionKind,
    pub incarnation: Incarnation,
}

/// One member as gossiped in DISSEMINATION and ANTI_ENTROPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub status: Status,
    pub addr: SocketAddrV4,
    pub uuid: Uuid,
    pub incarnation: Incarnation,
    /// `None`: the record says nothing about the payload (key 6 absent). `Some(empty)`: the
    /// payload is empty. The two mean different things to the receiver.
    pub payload: Option<Vec<u8>>,
}

/// The body of a packet. `src_uuid` is always present; the sections are optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub src_uuid: Uuid,
    pub failure_detection: Option<FailureDetection>,
    pub dissemination: Option<Vec<MemberRecord>>,
    pub anti_entropy: Option<Vec<MemberRecord>>,
    pub quit: Option<Incarnation>,
}

/// A whole plaintext packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub meta: Meta,
    pub body: Body,
}

// ------------------------------------------------------------------------------------------
// Encoding (sender layout, byte exact)
// ------------------------------------------------------------------------------------------

/// Top-level META keys.
const META_VERSION: u8 = 0;
const META_SRC_ADDRESS: u8 = 1;
const META_SRC_PORT: u8 = 2;
const META_ROUTING: u8 = 3;
/// ROUTING keys.
const ROUTE_SRC_ADDRESS: u8 = 0;
const ROUTE_SRC_PORT: u8 = 1;
const ROUTE_DST_ADDRESS: u8 = 2;
const ROUTE_DST_PORT: u8 = 3;
/// BODY keys; senders write them in the order 0, 2, 3, 1 (then 4).
const BODY_SRC_UUID: u8 = 0;
const BODY_ANTI_ENTROPY: u8 = 1;
const BODY_FAILURE_DETECTION: u8 = 2;
const BODY_DISSEMINATION: u8 = 3;
const BODY_QUIT: u8 = 4;
/// FAILURE_DETECTION keys.
const FD_TYPE: u8 = 0;
const FD_GENERATION: u8 = 1;
const FD_VERSION: u8 = 2;
/// FAILURE_DETECTION always has exactly these many keys (type, generation, version).
const FD_KEY_COUNT: u32 = 3;
/// QUIT keys; QUIT always has exactly these many keys (generation, version).
const QUIT_GENERATION: u8 = 0;
const QUIT_VERSION: u8 = 1;
const QUIT_KEY_COUNT: u32 = 2;
/// Member record keys; any key ≥ `MEMBER_KEY_COUNT` is an error.
const MEMBER_STATUS: u8 = 0;
const MEMBER_ADDRESS: u8 = 1;
const MEMBER_PORT: u8 = 2;
const MEMBER_UUID: u8 = 3;
const MEMBER_GENERATION: u8 = 4;
const MEMBER_VERSION: u8 = 5;
const MEMBER_PAYLOAD: u8 = 6;
const MEMBER_KEY_COUNT: u64 = 7;
/// A UUID is 16 raw bytes on the wire.
const UUID_LEN: usize = 16;

/// MessagePack markers used by the sender layout and read back by the decoder.
mod mp {
    /// fixmap: 0x80 | n for n ≤ 15 (the high nibble tells the type).
    pub const FIXMAP: u8 = 0x80;
    /// fixarray: 0x90 | n for n ≤ 15 (the high nibble tells the type).
    pub const FIXARRAY: u8 = 0x90;
    /// Positive fixint covers 0x00..=0x7f.
    pub const FIXINT_MAX: u8 = 0x7f;
    pub const BIN8: u8 = 0xc4;
    pub const BIN16: u8 = 0xc5;
    pub const BIN32: u8 = 0xc6;
    pub const UINT8: u8 = 0xcc;
    pub const UINT16: u8 = 0xcd;
    pub const UINT32: u8 = 0xce;
    pub const UINT64: u8 = 0xcf;
    pub const ARRAY16: u8 = 0xdc;
    pub const ARRAY32: u8 = 0xdd;
    pub const MAP16: u8 = 0xde;
    pub const MAP32: u8 = 0xdf;
}

fn put_u32(out: &mut Vec<u8>, key: u8, v: u32) {
    out.push(key);
    out.push(mp::UINT32);
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u16(out: &mut Vec<u8>, key: u8, v: u16) {
    out.push(key);
    out.push(mp::UINT16);
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, key: u8, v: u64) {
    out.push(key);
    out.push(mp::UINT64);
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_uuid(out: &mut Vec<u8>, key: u8, uuid: &Uuid) {
    out.push(key);
    out.push(mp::BIN8);
    // UUID_LEN (16) fits the one-byte bin8 length.
    out.push(UUID_LEN as u8);
    // Tarantool copies its in-memory struct: the first three fields little-endian (spec §3.6).
    out.extend_from_slice(&uuid.to_bytes_le());
}

fn put_addr(out: &mut Vec<u8>, ip_key: u8, port_key: u8, addr: &SocketAddrV4) {
    put_u32(out, ip_key, u32::from(*addr.ip()));
    put_u16(out, port_key, addr.port());
}

/// Appends META exactly as Tarantool lays it out ([`META_SIZE`] or [`META_ROUTED_SIZE`] bytes).
pub fn encode_meta(meta: &Meta, out: &mut Vec<u8>) {
    out.push(mp::FIXMAP | if meta.route.is_some() { 4 } else { 3 });
    put_u32(out, META_VERSION, meta.version);
    put_addr(out, META_SRC_ADDRESS, META_SRC_PORT, &meta.src);
    if let Some(route) = &meta.route {
        out.push(META_ROUTING);
        out.push(mp::FIXMAP | 4);
        put_addr(out, ROUTE_SRC_ADDRESS, ROUTE_SRC_PORT, &route.src);
        put_addr(out, ROUTE_DST_ADDRESS, ROUTE_DST_PORT, &route.dst);
    }
}

fn put_incarnation(out: &mut Vec<u8>, gen_key: u8, ver_key: u8, inc: &Incarnation) {
    put_u64(out, gen_key, inc.generation);
    put_u64(out, ver_key, inc.version);
}

/// Appends one member record: `86`/`87`, then keys 0..=5 (and 6) with fixed widths.
pub fn encode_record(rec: &MemberRecord, out: &mut Vec<u8>) {
    // Composed on the stack and appended at once: a packet is mostly records, and byte-wise
    // pushes cost a capacity check each.
    let mut head = [0u8; RECORD_SIZE];
    head[0] = mp::FIXMAP | if rec.payload.is_some() { 7 } else { 6 };
    head[1] = MEMBER_STATUS;
    // Statuses 0..=3 are positive fixints.
    head[2] = rec.status as u8;
    head[3] = MEMBER_ADDRESS;
    head[4] = mp::UINT32;
    head[5..9].copy_from_slice(&u32::from(*rec.addr.ip()).to_be_bytes());
    head[9] = MEMBER_PORT;
    head[10] = mp::UINT16;
    head[11..13].copy_from_slice(&rec.addr.port().to_be_bytes());
    head[13] = MEMBER_UUID;
    head[14] = mp::BIN8;
    // UUID_LEN (16) fits the one-byte bin8 length.
    head[15] = UUID_LEN as u8;
    // Tarantool copies its in-memory struct: the first three fields little-endian (spec §3.6).
    head[16..32].copy_from_slice(&rec.uuid.to_bytes_le());
    head[32] = MEMBER_GENERATION;
    head[33] = mp::UINT64;
    head[34..42].copy_from_slice(&rec.incarnation.generation.to_be_bytes());
    head[42] = MEMBER_VERSION;
    head[43] = mp::UINT64;
    head[44..52].copy_from_slice(&rec.incarnation.version.to_be_bytes());
    out.extend_from_slice(&head);
    if let Some(payload) = &rec.payload {
        // Always bin16, even for short payloads. A payload is at most MAX_PAYLOAD_SIZE; a
        // longer one (a caller bug) is cut to what a bin16 can say so the output stays valid.
        debug_assert!(payload.len() <= MAX_PAYLOAD_SIZE);
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        out.push(MEMBER_PAYLOAD);
        out.push(mp::BIN16);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&payload[..usize::from(len)]);
    }
}

fn put_records(out: &mut Vec<u8>, key: u8, records: &[MemberRecord]) {
    // Always array16, even for 0 or 1 records; a packet holds far fewer than 65535 records
    // (≤ 1440 bytes / 52), so the cut below never happens for a packet that fits.
    debug_assert!(records.len() <= usize::from(u16::MAX));
    let n = u16::try_from(records.len()).unwrap_or(u16::MAX);
    out.push(key);
    out.push(mp::ARRAY16);
    out.extend_from_slice(&n.to_be_bytes());
    for rec in &records[..usize::from(n)] {
        encode_record(rec, out);
    }
}

/// Appends BODY in the sender's key order: 0 (uuid), 2 (failure detection), 3
/// (dissemination), 1 (anti-entropy), 4 (quit). Absent sections are left out.
pub fn encode_body(body: &Body, out: &mut Vec<u8>) {
    let n = 1
        + u8::from(body.failure_detection.is_some())
        + u8::from(body.dissemination.is_some())
        + u8::from(body.anti_entropy.is_some())
        + u8::from(body.quit.is_some());
    out.push(mp::FIXMAP | n);
    put_uuid(out, BODY_SRC_UUID, &body.src_uuid);
    if let Some(fd) = &body.failure_detection {
        out.push(BODY_FAILURE_DETECTION);
        out.push(mp::FIXMAP | 3);
        out.push(FD_TYPE);
        out.push(fd.kind as u8);
        put_incarnation(out, FD_GENERATION, FD_VERSION, &fd.incarnation);
    }
    if let Some(records) = &body.dissemination {
        put_records(out, BODY_DISSEMINATION, records);
    }
    if let Some(records) = &body.anti_entropy {
        put_records(out, BODY_ANTI_ENTROPY, records);
    }
    if let Some(quit) = &body.quit {
        out.push(BODY_QUIT);
        out.push(mp::FIXMAP | 2);
        put_incarnation(out, QUIT_GENERATION, QUIT_VERSION, quit);
    }
}

/// Appends the whole plaintext packet (META ++ BODY) in the sender layout of spec §3.
pub fn encode(packet: &Packet, out: &mut Vec<u8>) {
    encode_meta(&packet.meta, out);
    encode_body(&packet.body, out);
}

/// The encoded size of META.
pub const fn meta_size(meta: &Meta) -> usize {
    if meta.route.is_some() {
        META_ROUTED_SIZE
    } else {
        META_SIZE
    }
}

fn records_size(records: &[MemberRecord]) -> usize {
    SECTION_HEADER_SIZE
        + records
            .iter()
            .map(|r| record_size(r.payload.as_ref().map(Vec::len)))
            .sum::<usize>()
}

/// The encoded size of BODY, computed without encoding it.
pub fn body_size(body: &Body) -> usize {
    BODY_HEADER_SIZE
        + body.failure_detection.map_or(0, |_| FAILURE_DETECTION_SIZE)
        + body.dissemination.as_deref().map_or(0, records_size)
        + body.anti_entropy.as_deref().map_or(0, records_size)
        + body.quit.map_or(0, |_| QUIT_SIZE)
}

/// The encoded size of a packet, computed without encoding it.
pub fn packet_size(packet: &Packet) -> usize {
    meta_size(&packet.meta) + body_size(&packet.body)
}

// ------------------------------------------------------------------------------------------
// Decoding (any valid MessagePack width, every rule of spec §3)
// ------------------------------------------------------------------------------------------

/// Where in a packet a decode error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Meta,
    Route,
    Body,
    FailureDetection,
    Dissemination,
    AntiEntropy,
    Quit,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Meta => "meta",
            Section::Route => "routing",
            Section::Body => "body",
            Section::FailureDetection => "failure detection",
            Section::Dissemination => "dissemination",
            Section::AntiEntropy => "anti-entropy",
            Section::Quit => "quit",
        }
    }
}

/// Why a datagram's plaintext is not a valid SWIM packet. Each variant is one decoder rule,
/// so [`DecodeError::kind`] can label a counter and `Display` a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// More bytes than a datagram can carry ([`UDP_PACKET_SIZE`]).
    TooLong(usize),
    /// The input ended inside a value.
    Truncated,
    /// A map was expected (META, ROUTING, BODY, failure detection, quit, a record).
    ExpectedMap(Section),
    /// A record list was expected.
    ExpectedArray(Section),
    /// An unsigned integer was expected (a key or a numeric field). Signed, float, string
    /// encodings are errors even for non-negative values, as in Tarantool.
    ExpectedUint(Section),
    /// A binary string was expected (a UUID or a payload).
    ExpectedBin(Section),
    /// A key the section does not define (a second SRC_UUID in BODY counts too).
    UnknownKey(Section, u64),
    /// META without a version, or with version 0.
    MissingVersion,
    /// META version above `u32::MAX`.
    VersionTooBig(u64),
    /// An IP address above `u32::MAX`.
    InvalidIp(Section),
    /// A port above 65535.
    InvalidPort(Section),
    /// META's source IP or port is absent or zero.
    MissingSrcAddress,
    /// ROUTING's source or destination IP or port is absent or zero.
    MissingRouteAddress,
    /// BODY is an empty map.
    EmptyBody,
    /// BODY's first key is not SRC_UUID (0).
    FirstKeyNotUuid(u64),
    /// A UUID whose binary length is not 16.
    InvalidUuid(Section),
    /// Failure detection must have exactly 3 keys.
    FailureDetectionKeyCount(u32),
    /// Failure detection without its message type.
    MissingMessageType,
    /// A message type other than ping (0) or ack (1).
    UnknownMessageType(u64),
    /// Quit must have exactly 2 keys.
    QuitKeyCount(u32),
    /// A member status ≥ 4.
    UnknownStatus(u64),
    /// A payload longer than [`MAX_PAYLOAD_SIZE`].
    PayloadTooBig(usize),
    /// A member record without a non-zero IP and port.
    MissingMemberAddress(Section),
    /// A member record without a UUID, or with the nil UUID.
    MissingMemberUuid(Section),
    /// Bytes after BODY.
    TrailingBytes(usize),
}

impl DecodeError {
    /// A short stable name of the rule that failed, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLong(_) => "too_long",
            DecodeError::Truncated => "truncated",
            DecodeError::ExpectedMap(_) => "expected_map",
            DecodeError::ExpectedArray(_) => "expected_array",
            DecodeError::ExpectedUint(_) => "expected_uint",
            DecodeError::ExpectedBin(_) => "expected_bin",
            DecodeError::UnknownKey(..) => "unknown_key",
            DecodeError::MissingVersion => "missing_version",
            DecodeError::VersionTooBig(_) => "version_too_big",
            DecodeError::InvalidIp(_) => "invalid_ip",
            DecodeError::InvalidPort(_) => "invalid_port",
            DecodeError::MissingSrcAddress => "missing_src_address",
            DecodeError::MissingRouteAddress => "missing_route_address",
            DecodeError::EmptyBody => "empty_body",
            DecodeError::FirstKeyNotUuid(_) => "first_key_not_uuid",
            DecodeError::InvalidUuid(_) => "invalid_uuid",
            DecodeError::FailureDetectionKeyCount(_) => "fd_key_count",
            DecodeError::MissingMessageType => "missing_message_type",
            DecodeError::UnknownMessageType(_) => "unknown_message_type",
            DecodeError::QuitKeyCount(_) => "quit_key_count",
            DecodeError::UnknownStatus(_) => "unknown_status",
            DecodeError::PayloadTooBig(_) => "payload_too_big",
            DecodeError::MissingMemberAddress(_) => "missing_member_address",
            DecodeError::MissingMemberUuid(_) => "missing_member_uuid",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLong(n) => write!(f, "packet of {n} bytes exceeds {UDP_PACKET_SIZE}"),
            DecodeError::Truncated => write!(f, "packet is truncated"),
            DecodeError::ExpectedMap(s) => write!(f, "invalid {}: expected a map", s.name()),
            DecodeError::ExpectedArray(s) => write!(f, "invalid {}: expected an array", s.name()),
            DecodeError::ExpectedUint(s) => write!(f, "invalid {}: expected a uint", s.name()),
            DecodeError::ExpectedBin(s) => write!(f, "invalid {}: expected bin", s.name()),
            DecodeError::UnknownKey(s, k) => write!(f, "invalid {}: unknown key {k}", s.name()),
            DecodeError::MissingVersion => write!(f, "invalid meta: version is mandatory"),
            DecodeError::VersionTooBig(v) => write!(f, "invalid meta: version {v} is too big"),
            DecodeError::InvalidIp(s) => write!(f, "invalid {}: invalid IP address", s.name()),
            DecodeError::InvalidPort(s) => write!(f, "invalid {}: invalid port", s.name()),
            DecodeError::MissingSrcAddress => {
                write!(f, "invalid meta: source address is mandatory")
            }
            DecodeError::MissingRouteAddress => {
                write!(f, "invalid routing: source and destination are mandatory")
            }
            DecodeError::EmptyBody => write!(f, "invalid body: empty map"),
            DecodeError::FirstKeyNotUuid(k) => {
                write!(f, "invalid body: first key is {k}, expected the source uuid (0)")
            }
            DecodeError::InvalidUuid(s) => write!(f, "invalid {}: uuid is not 16 bytes", s.name()),
            DecodeError::FailureDetectionKeyCount(n) => {
                write!(f, "invalid failure detection: {n} keys, expected 3")
            }
            DecodeError::MissingMessageType => {
                write!(f, "invalid failure detection: message type is mandatory")
            }
            DecodeError::UnknownMessageType(t) => {
                write!(f, "invalid failure detection: unknown message type {t}")
            }
            DecodeError::QuitKeyCount(n) => write!(f, "invalid quit: {n} keys, expected 2"),
            DecodeError::UnknownStatus(v) => write!(f, "invalid member: unknown status {v}"),
            DecodeError::PayloadTooBig(n) => {
                write!(f, "invalid member: payload of {n} bytes exceeds {MAX_PAYLOAD_SIZE}")
            }
            DecodeError::MissingMemberAddress(s) => {
                write!(f, "invalid {}: member address is mandatory", s.name())
            }
            DecodeError::MissingMemberUuid(s) => {
                write!(f, "invalid {}: member uuid is mandatory", s.name())
            }
            DecodeError::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the body"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A bounds-checked MessagePack reader over one datagram. Every read either succeeds inside
/// the buffer or fails with an error; nothing indexes past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.buf.get(self.pos).copied().ok_or(DecodeError::Truncated)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// A big-endian unsigned number of `n` ≤ 8 bytes.
    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A length of up to u32: fits usize on every platform this runs on (≥ 32-bit).
    fn len(&mut self, n: usize) -> Result<usize, DecodeError> {
        usize::try_from(self.be(n)?).map_err(|_| DecodeError::Truncated)
    }

    fn map(&mut self, s: Section) -> Result<u32, DecodeError> {
        let n = match self.peek()? {
            b if b & 0xf0 == mp::FIXMAP => {
                self.pos += 1;
                u64::from(b & 0x0f)
            }
            mp::MAP16 => {
                self.pos += 1;
                self.be(2)?
            }
            mp::MAP32 => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Err(DecodeError::ExpectedMap(s)),
        };
        // At most 4 bytes were read, so the value fits u32.
        u32::try_from(n).map_err(|_| DecodeError::ExpectedMap(s))
    }

    fn array(&mut self, s: Section) -> Result<u32, DecodeError> {
        let n = match self.peek()? {
            b if b & 0xf0 == mp::FIXARRAY => {
                self.pos += 1;
                u64::from(b & 0x0f)
            }
            mp::ARRAY16 => {
                self.pos += 1;
                self.be(2)?
            }
            mp::ARRAY32 => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Err(DecodeError::ExpectedArray(s)),
        };
        u32::try_from(n).map_err(|_| DecodeError::ExpectedArray(s))
    }

    fn uint(&mut self, s: Section) -> Result<u64, DecodeError> {
        let width = match self.peek()? {
            b @ 0..=mp::FIXINT_MAX => {
                self.pos += 1;
                return Ok(u64::from(b));
            }
            mp::UINT8 => 1,
            mp::UINT16 => 2,
            mp::UINT32 => 4,
            mp::UINT64 => 8,
            _ => return Err(DecodeError::ExpectedUint(s)),
        };
        self.pos += 1;
        self.be(width)
    }

    fn bin(&mut self, s: Section) -> Result<&'a [u8], DecodeError> {
        let width = match self.peek()? {
            mp::BIN8 => 1,
            mp::BIN16 => 2,
            mp::BIN32 => 4,
            _ => return Err(DecodeError::ExpectedBin(s)),
        };
        self.pos += 1;
        let n = self.len(width)?;
        self.take(n)
    }

    fn uuid(&mut self, s: Section) -> Result<Uuid, DecodeError> {
        let bytes = self.bin(s)?;
        let arr: [u8; UUID_LEN] = bytes.try_into().map_err(|_| DecodeError::InvalidUuid(s))?;
        Ok(Uuid::from_bytes_le(arr))
    }

    fn ip(&mut self, s: Section) -> Result<u32, DecodeError> {
        let v = self.uint(s)?;
        u32::try_from(v).map_err(|_| DecodeError::InvalidIp(s))
    }

    fn port(&mut self, s: Section) -> Result<u16, DecodeError> {
        let v = self.uint(s)?;
        u16::try_from(v).map_err(|_| DecodeError::InvalidPort(s))
    }
}

fn addr(ip: u32, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.into(), port)
}

/// An address counts as absent when either its IP or its port is zero.
fn addr_is_empty(ip: u32, port: u16) -> bool {
    ip == 0 || port == 0
}

fn decode_route(r: &mut Reader<'_>) -> Result<Route, DecodeError> {
    let s = Section::Route;
    let n = r.map(s)?;
    let (mut src_ip, mut src_port, mut dst_ip, mut dst_port) = (0, 0, 0, 0);
    for _ in 0..n {
        match r.uint(s)? {
            k if k == u64::from(ROUTE_SRC_ADDRESS) => src_ip = r.ip(s)?,
            k if k == u64::from(ROUTE_SRC_PORT) => src_port = r.port(s)?,
            k if k == u64::from(ROUTE_DST_ADDRESS) => dst_ip = r.ip(s)?,
            k if k == u64::from(ROUTE_DST_PORT) => dst_port = r.port(s)?,
            k => return Err(DecodeError::UnknownKey(s, k)),
        }
    }
    if addr_is_empty(src_ip, src_port) || addr_is_empty(dst_ip, dst_port) {
        return Err(DecodeError::MissingRouteAddress);
    }
    Ok(Route {
        src: addr(src_ip, src_port),
        dst: addr(dst_ip, dst_port),
    })
}

fn decode_meta_from(r: &mut Reader<'_>) -> Result<Meta, DecodeError> {
    let s = Section::Meta;
    let n = r.map(s)?;
    let (mut version, mut ip, mut port, mut route) = (0u32, 0u32, 0u16, None);
    for _ in 0..n {
        match r.uint(s)? {
            k if k == u64::from(META_VERSION) => {
                let v = r.uint(s)?;
                version = u32::try_from(v).map_err(|_| DecodeError::VersionTooBig(v))?;
            }
            k if k == u64::from(META_SRC_ADDRESS) => ip = r.ip(s)?,
            k if k == u64::from(META_SRC_PORT) => port = r.port(s)?,
            k if k == u64::from(META_ROUTING) => route = Some(decode_route(r)?),
            k => return Err(DecodeError::UnknownKey(s, k)),
        }
    }
    if version == 0 {
        return Err(DecodeError::MissingVersion);
    }
    if addr_is_empty(ip, port) {
        return Err(DecodeError::MissingSrcAddress);
    }
    Ok(Meta {
        version,
        src: addr(ip, port),
        route,
    })
}

fn decode_incarnation(
    r: &mut Reader<'_>,
    s: Section,
    gen_key: u8,
    ver_key: u8,
    key: u64,
    inc: &mut Incarnation,
) -> Result<bool, DecodeError> {
    if key == u64::from(gen_key) {
        inc.generation = r.uint(s)?;
    } else if key == u64::from(ver_key) {
        inc.version = r.uint(s)?;
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// A record in the exact layout Tarantool and node send (spec §3.5: keys 0..=5 in order with
/// fixed widths, then an optional bin16 payload), read at fixed offsets. `None` for anything
/// else, including a valid record laid out differently or an invalid one: the general decoder
/// below then reads it, so both accept the same inputs and give the same result; this one
/// only skips the per-key dispatch for the common case.
fn decode_record_fixed(r: &mut Reader<'_>) -> Option<MemberRecord> {
    let b = r.buf.get(r.pos..)?;
    let head: &[u8; RECORD_SIZE] = b.get(..RECORD_SIZE)?.try_into().ok()?;
    let with_payload = match head[0] {
        0x86 => false,
        0x87 => true,
        _ => return None,
    };
    let fixed_bytes_match = head[1] == MEMBER_STATUS
        && head[3] == MEMBER_ADDRESS
        && head[4] == mp::UINT32
        && head[9] == MEMBER_PORT
        && head[10] == mp::UINT16
        && head[13] == MEMBER_UUID
        && head[14] == mp::BIN8
        && usize::from(head[15]) == UUID_LEN
        && head[32] == MEMBER_GENERATION
        && head[33] == mp::UINT64
        && head[42] == MEMBER_VERSION
        && head[43] == mp::UINT64;
    if !fixed_bytes_match {
        return None;
    }
    let status = Status::from_wire(u64::from(head[2]))?;
    let be32 = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let be64 = |at: usize| (u64::from(be32(at)) << 32) | u64::from(be32(at + 4));
    let ip = be32(5);
    let port = u16::from_be_bytes([head[11], head[12]]);
    let uuid_bytes: [u8; UUID_LEN] = head[16..32].try_into().ok()?;
    let uuid = Uuid::from_bytes_le(uuid_bytes);
    if addr_is_empty(ip, port) || uuid.is_nil() {
        return None;
    }
    let incarnation = Incarnation::new(be64(34), be64(44));
    let mut end = RECORD_SIZE;
    let payload = if with_payload {
        let tail = b.get(RECORD_SIZE..RECORD_SIZE + RECORD_PAYLOAD_OVERHEAD)?;
        if tail[0] != MEMBER_PAYLOAD || tail[1] != mp::BIN16 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([tail[2], tail[3]]));
        if len > MAX_PAYLOAD_SIZE {
            return None;
        }
        let start = RECORD_SIZE + RECORD_PAYLOAD_OVERHEAD;
        let bytes = b.get(start..start + len)?;
        end = start + len;
        Some(bytes.to_vec())
    } else {
        None
    };
    r.pos += end;
    Some(MemberRecord {
        status,
        addr: addr(ip, port),
        uuid,
        incarnation,
        payload,
    })
}

fn decode_record(r: &mut Reader<'_>, s: Section) -> Result<MemberRecord, DecodeError> {
    match decode_record_fixed(r) {
        Some(rec) => Ok(rec),
        None => decode_record_general(r, s),
    }
}

/// A record in any valid MessagePack layout, key by key.
fn decode_record_general(r: &mut Reader<'_>, s: Section) -> Result<MemberRecord, DecodeError> {
    let n = r.map(s)?;
    let mut status = Status::Alive;
    let (mut ip, mut port, mut uuid) = (0u32, 0u16, Uuid::nil());
    let mut incarnation = Incarnation::default();
    let mut payload = None;
    for _ in 0..n {
        let key = r.uint(s)?;
        if key >= MEMBER_KEY_COUNT {
            return Err(DecodeError::UnknownKey(s, key));
        }
        if decode_incarnation(r, s, MEMBER_GENERATION, MEMBER_VERSION, key, &mut incarnation)? {
            continue;
        }
        match key {
            k if k == u64::from(MEMBER_STATUS) => {
                let v = r.uint(s)?;
                status = Status::from_wire(v).ok_or(DecodeError::UnknownStatus(v))?;
            }
            k if k == u64::from(MEMBER_ADDRESS) => ip = r.ip(s)?,
            k if k == u64::from(MEMBER_PORT) => port = r.port(s)?,
            k if k == u64::from(MEMBER_UUID) => uuid = r.uuid(s)?,
            _ => {
                // MEMBER_PAYLOAD, the last key below MEMBER_KEY_COUNT.
                let bytes = r.bin(s)?;
                if bytes.len() > MAX_PAYLOAD_SIZE {
                    return Err(DecodeError::PayloadTooBig(bytes.len()));
                }
                payload = Some(bytes.to_vec());
            }
        }
    }
    if addr_is_empty(ip, port) {
        return Err(DecodeError::MissingMemberAddress(s));
    }
    if uuid.is_nil() {
        return Err(DecodeError::MissingMemberUuid(s));
    }
    Ok(MemberRecord {
        status,
        addr: addr(ip, port),
        uuid,
        incarnation,
        payload,
    })
}

/// Reads a record array, pushing each record into `list` as soon as it is decoded, so a
/// partial decode keeps the records before a bad one (Tarantool upserts them one by one).
fn decode_records(r: &mut Reader<'_>, s: Section, list: &mut Vec<MemberRecord>) -> Result<(), DecodeError> {
    let n = r.array(s)?;
    // Every record takes at least one byte: never reserve more than the input could hold.
    list.reserve(usize::try_from(n).unwrap_or(usize::MAX).min(r.remaining()));
    for _ in 0..n {
        list.push(decode_record(r, s)?);
    }
    Ok(())
}

fn decode_failure_detection(r: &mut Reader<'_>) -> Result<FailureDetection, DecodeError> {
    let s = Section::FailureDetection;
    let n = r.map(s)?;
    if n != FD_KEY_COUNT {
        return Err(DecodeError::FailureDetectionKeyCount(n));
    }
    let mut kind = None;
    let mut incarnation = Incarnation::default();
    for _ in 0..n {
        let key = r.uint(s)?;
        if decode_incarnation(r, s, FD_GENERATION, FD_VERSION, key, &mut incarnation)? {
            continue;
        }
        if key != u64::from(FD_TYPE) {
            return Err(DecodeError::UnknownKey(s, key));
        }
        kind = Some(match r.uint(s)? {
            0 => FailureDetectionKind::Ping,
            1 => FailureDetectionKind::Ack,
            t => return Err(DecodeError::UnknownMessageType(t)),
        });
    }
    let kind = kind.ok_or(DecodeError::MissingMessageType)?;
    Ok(FailureDetection { kind, incarnation })
}

fn decode_quit(r: &mut Reader<'_>) -> Result<Incarnation, DecodeError> {
    let s = Section::Quit;
    let n = r.map(s)?;
    if n != QUIT_KEY_COUNT {
        return Err(DecodeError::QuitKeyCount(n));
    }
    let mut incarnation = Incarnation::default();
    for _ in 0..n {
        let key = r.uint(s)?;
        if !decode_incarnation(r, s, QUIT_GENERATION, QUIT_VERSION, key, &mut incarnation)? {
            return Err(DecodeError::UnknownKey(s, key));
        }
    }
    Ok(incarnation)
}

/// Decodes META alone and returns it with the bytes that follow (the BODY, not checked).
/// A proxy uses this to forward a routed packet: it re-encodes META with its own source
/// address ([`encode_meta`]) and appends the body bytes unchanged.
pub fn split_meta(buf: &[u8]) -> Result<(Meta, &[u8]), DecodeError> {
    if buf.len() > UDP_PACKET_SIZE {
        return Err(DecodeError::TooLong(buf.len()));
    }
    let mut r = Reader::new(buf);
    let meta = decode_meta_from(&mut r)?;
    Ok((meta, &buf[r.pos..]))
}

/// Decodes into `out`, section by section, so that on error `out` holds what came before.
fn decode_into(buf: &[u8], out: &mut Option<Packet>) -> Result<(), DecodeError> {
    if buf.len() > UDP_PACKET_SIZE {
        return Err(DecodeError::TooLong(buf.len()));
    }
    let mut r = Reader::new(buf);
    let meta = decode_meta_from(&mut r)?;
    let s = Section::Body;
    let n = r.map(s)?;
    if n == 0 {
        return Err(DecodeError::EmptyBody);
    }
    let first = r.uint(s)?;
    if first != u64::from(BODY_SRC_UUID) {
        return Err(DecodeError::FirstKeyNotUuid(first));
    }
    let src_uuid = r.uuid(s)?;
    let body = Body {
        src_uuid,
        failure_detection: None,
        dissemination: None,
        anti_entropy: None,
        quit: None,
    };
    let body = &mut out.insert(Packet { meta, body }).body;
    for _ in 1..n {
        // A repeated section replaces an earlier failure detection or quit and extends an
        // earlier record list: Tarantool processes each occurrence in turn.
        match r.uint(s)? {
            k if k == u64::from(BODY_FAILURE_DETECTION) => {
                body.failure_detection = Some(decode_failure_detection(&mut r)?);
            }
            k if k == u64::from(BODY_DISSEMINATION) => {
                let list = body.dissemination.get_or_insert_with(Vec::new);
                decode_records(&mut r, Section::Dissemination, list)?;
            }
            k if k == u64::from(BODY_ANTI_ENTROPY) => {
                let list = body.anti_entropy.get_or_insert_with(Vec::new);
                decode_records(&mut r, Section::AntiEntropy, list)?;
            }
            k if k == u64::from(BODY_QUIT) => body.quit = Some(decode_quit(&mut r)?),
            k => return Err(DecodeError::UnknownKey(s, k)),
        }
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(())
}

/// Decodes a plaintext packet, all or nothing: any broken rule rejects the whole packet.
///
/// Tarantool applies sections as it decodes them, so on a bad packet the sections (and
/// records) before the error stay applied (spec §2.10). Real senders never produce such
/// packets; the core applies only fully decoded packets, which is the simpler and safer
/// choice. [`decode_prefix`] gives the Tarantool-like partial result for a core that wants it.
///
/// Not checked here, as they are not wire rules: the META version's value (only non-zero),
/// a nil source UUID in BODY, and whether the sections make sense together (a quit with a
/// ping). Repeated keys: in META and records the last value wins; in BODY a repeated record
/// list extends the earlier one and a repeated failure detection or quit replaces it.
pub fn decode(buf: &[u8]) -> Result<Packet, DecodeError> {
    let mut out = None;
    decode_into(buf, &mut out)?;
    // decode_into always fills `out` before returning Ok.
    out.ok_or(DecodeError::Truncated)
}

/// Decodes as much as possible: the packet as far as it was decoded (once META and the
/// source UUID are valid; sections after the error are absent, a record list cut by the error
/// holds the records before it) and the error, if any. The wire order of sections is not
/// kept: the packet holds what Tarantool would have processed before giving up.
pub fn decode_prefix(buf: &[u8]) -> (Option<Packet>, Option<DecodeError>) {
    let mut out = None;
    let err = decode_into(buf, &mut out).err();
    (out, err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, RngExt, SeedableRng};
    use rmpv::Value;
    use std::net::Ipv4Addr;

    const LOCALHOST: u32 = 0x7f00_0001;

    fn local(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
    }

    fn enc(p: &Packet) -> Vec<u8> {
        let mut out = Vec::new();
        encode(p, &mut out);
        out
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // --- wire_capture.log / wire_craft.log (spec's captures; only their heads were logged) --

    fn u(b: u8) -> Uuid {
        Uuid::from_bytes([b; 16])
    }

    fn rec(status: Status, port: u16, id: u8, g: u64, v: u64, payload: Option<&[u8]>) -> MemberRecord {
        MemberRecord {
            status,
            addr: local(port),
            uuid: u(id),
            incarnation: Incarnation::new(g, v),
            payload: payload.map(<[u8]>::to_vec),
        }
    }

    fn ping(
        kind: FailureDetectionKind,
        route: Option<Route>,
        diss: Vec<MemberRecord>,
        ae: Vec<MemberRecord>,
    ) -> Packet {
        Packet {
            meta: Meta {
                version: TARANTOOL_VERSION,
                src: local(3311),
                route,
            },
            body: Body {
                src_uuid: u(0x11),
                failure_detection: Some(FailureDetection {
                    kind,
                    incarnation: Incarnation::new(7, 1),
                }),
                dissemination: Some(diss),
                anti_entropy: Some(ae),
                quit: None,
            },
        }
    }

    /// The packets of spec/swim-observed/wire_capture.log and wire_craft.log, rebuilt from
    /// their logged decoded values: the encoding must have the logged length and hex head.
    #[test]
    fn spec_captures_reencode_to_the_logged_bytes() {
        use FailureDetectionKind::{Ack, Ping};
        use Status::{Alive, Suspected};
        let a = || rec(Alive, 3311, 0x11, 7, 1, Some(b"hello"));
        let b = |s| rec(s, 3310, 0x22, 0, 0, None);
        let c = |g, v| rec(Alive, 3312, 0x33, g, v, None);
        let head = "8300ce0002060001ce7f00000102cd0cef8400c41011111111111111111111111111111111\
                    0283000001cf0000000000";
        let ack_head = "8300ce0002060001ce7f00000102cd0cef8400c4101111111111111111111111111111\
                        11110283000101cf0000000000";
        let routed_head = "8400ce0002060001ce7f00000102cd0cef038400ce7f00000101cd0cef02ce7f0000\
                           0103cd0cee8400c4101111111111";
        let route = Route {
            src: local(3311),
            dst: local(3310),
        };
        let d = |g, v| rec(Alive, 3310, 0x44, g, v, None);
        let cases = [
            (
                ping(Ping, None, vec![a(), b(Alive), c(0, 0)], vec![c(0, 0), a(), b(Alive)]),
                399,
                head,
            ),
            (
                ping(Ping, None, vec![b(Alive), c(0, 0)], vec![c(0, 0), a(), b(Alive)]),
                338,
                head,
            ),
            (
                ping(
                    Ping,
                    Some(route),
                    vec![c(5, 9), b(Suspected)],
                    vec![c(5, 9), a(), b(Suspected)],
                ),
                360,
                routed_head,
            ),
            (
                ping(Ack, None, vec![d(42, 3)], vec![d(42, 3), a(), b(Suspected), c(5, 9)]),
                338,
                ack_head,
            ),
        ];
        for (p, len, head) in cases {
            let bytes = enc(&p);
            assert_eq!(bytes.len(), len);
            assert_eq!(bytes.len(), packet_size(&p));
            let head = unhex(head);
            assert_eq!(&bytes[..head.len()], &head[..]);
            assert_eq!(decode(&bytes).unwrap(), p);
        }
    }

    /// Spec §3.6: 804f00ed-271c-47fa-844e-df4c6e0d3301 travels as ed004f80 1c27 fa47 844e...
    #[test]
    fn uuid_is_in_guid_byte_order() {
        let mut p = ping(FailureDetectionKind::Ping, None, vec![], vec![]);
        p.body.src_uuid = Uuid::parse_str("804f00ed-271c-47fa-844e-df4c6e0d3301").unwrap();
        let bytes = enc(&p);
        assert_eq!(
            &bytes[META_SIZE + 4..META_SIZE + 20],
            &unhex("ed004f801c27fa47844edf4c6e0d3301")[..]
        );
    }

    // --- size constants against real encodings ----------------------------------------------

    #[test]
    fn size_constants_match_encodings() {
        let meta = Meta {
            version: TARANTOOL_VERSION,
            src: local(1),
            route: None,
        };
        let mut out = Vec::new();
        encode_meta(&meta, &mut out);
        assert_eq!(out.len(), META_SIZE);
        let routed = Meta {
            route: Some(Route {
                src: local(1),
                dst: local(2),
            }),
            ..meta
        };
        out.clear();
        encode_meta(&routed, &mut out);
        assert_eq!(out.len(), META_ROUTED_SIZE);

        let mut body = Body {
            src_uuid: u(1),
            failure_detection: None,
            dissemination: None,
            anti_entropy: None,
            quit: None,
        };
        let size = |b: &Body| {
            let mut out = Vec::new();
            encode_body(b, &mut out);
            assert_eq!(out.len(), body_size(b));
            out.len()
        };
        assert_eq!(size(&body), BODY_HEADER_SIZE);
        body.failure_detection = Some(FailureDetection {
            kind: FailureDetectionKind::Ack,
            incarnation: Incarnation::new(u64::MAX, 1),
        });
        assert_eq!(size(&body), BODY_HEADER_SIZE + FAILURE_DETECTION_SIZE);
        body.dissemination = Some(vec![]);
        assert_eq!(
            size(&body),
            BODY_HEADER_SIZE + FAILURE_DETECTION_SIZE + SECTION_HEADER_SIZE
        );
        body.anti_entropy = Some(vec![rec(Status::Left, 65535, 9, 1, 2, None)]);
        assert_eq!(
            size(&body),
            BODY_HEADER_SIZE + FAILURE_DETECTION_SIZE + 2 * SECTION_HEADER_SIZE + RECORD_SIZE
        );
        // The empty ping of spec §3.5's size budget.
        body.anti_entropy = Some(vec![]);
        assert_eq!(META_SIZE + size(&body), 69);
        body.failure_detection = None;
        body.dissemination = None;
        body.anti_entropy = None;
        body.quit = Some(Incarnation::new(1, 2));
        assert_eq!(size(&body), BODY_HEADER_SIZE + QUIT_SIZE);

        for payload in [
            None,
            Some(&b""[..]),
            Some(&b"hello"[..]),
            Some(&[7u8; MAX_PAYLOAD_SIZE][..]),
        ] {
            let r = rec(Status::Dead, 3, 4, 5, 6, payload);
            let mut out = Vec::new();
            encode_record(&r, &mut out);
            assert_eq!(out.len(), record_size(payload.map(<[u8]>::len)));
        }
        assert_eq!(record_size(Some(5)), RECORD_SIZE + RECORD_PAYLOAD_OVERHEAD + 5);
        // The budget: plaintext + the biggest codec overhead (IV 16 + a padding block 16).
        assert_eq!(MAX_PACKET_SIZE + 16 + 16, UDP_PACKET_SIZE);
    }

    // --- negative tests: one malformed field per case -----------------------------------------

    fn map(pairs: Vec<(u64, Value)>) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
    }

    fn bin(b: &[u8]) -> Value {
        Value::Binary(b.to_vec())
    }

    fn uuid_bin(b: u8) -> Value {
        bin(&[b; 16])
    }

    fn good_meta() -> Vec<(u64, Value)> {
        vec![
            (0, Value::from(0x20600)),
            (1, Value::from(LOCALHOST)),
            (2, Value::from(3311)),
        ]
    }

    fn good_route() -> Vec<(u64, Value)> {
        vec![
            (0, Value::from(LOCALHOST)),
            (1, Value::from(3311)),
            (2, Value::from(LOCALHOST)),
            (3, Value::from(3310)),
        ]
    }

    fn good_record() -> Vec<(u64, Value)> {
        vec![
            (0, Value::from(1)),
            (1, Value::from(LOCALHOST)),
            (2, Value::from(3312)),
            (3, uuid_bin(0x33)),
            (4, Value::from(5)),
            (5, Value::from(9)),
            (6, bin(b"hi")),
        ]
    }

    fn good_fd() -> Vec<(u64, Value)> {
        vec![(0, Value::from(1)), (1, Value::from(7)), (2, Value::from(1))]
    }

    fn good_body() -> Vec<(u64, Value)> {
        vec![
            (0, uuid_bin(0x11)),
            (2, map(good_fd())),
            (3, Value::Array(vec![map(good_record())])),
            (1, Value::Array(vec![map(good_record()), map(good_record())])),
        ]
    }

    fn pack(meta: Value, body: Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &meta).unwrap();
        rmpv::encode::write_value(&mut out, &body).unwrap();
        out
    }

    fn set(pairs: &mut Vec<(u64, Value)>, key: u64, v: Value) {
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(p) => p.1 = v,
            None => pairs.push((key, v)),
        }
    }

    fn without(mut pairs: Vec<(u64, Value)>, key: u64) -> Vec<(u64, Value)> {
        pairs.retain(|(k, _)| *k != key);
        pairs
    }

    fn with(mut pairs: Vec<(u64, Value)>, key: u64, v: Value) -> Vec<(u64, Value)> {
        set(&mut pairs, key, v);
        pairs
    }

    fn meta_err(meta: Vec<(u64, Value)>) -> DecodeError {
        decode(&pack(map(meta), map(good_body()))).unwrap_err()
    }

    fn body_err(body: Vec<(u64, Value)>) -> DecodeError {
        decode(&pack(map(good_meta()), map(body))).unwrap_err()
    }

    fn record_err(record: Vec<(u64, Value)>) -> DecodeError {
        body_err(with(good_body(), 3, Value::Array(vec![map(record)])))
    }

    fn route_err(route: Vec<(u64, Value)>) -> DecodeError {
        meta_err(with(good_meta(), 3, map(route)))
    }

    #[test]
    fn good_minimal_width_packet_decodes_with_defaults() {
        let p = decode(&pack(map(good_meta()), map(good_body()))).unwrap();
        assert_eq!(
            p.meta,
            Meta {
                version: 0x20600,
                src: local(3311),
                route: None
            }
        );
        let r = &p.body.dissemination.as_ref().unwrap()[0];
        assert_eq!(r.status, Status::Suspected);
        assert_eq!(r.payload.as_deref(), Some(&b"hi"[..]));
        assert_eq!(p.body.anti_entropy.as_ref().unwrap().len(), 2);
        // Absent status, generation, version and payload take their defaults.
        let minimal = vec![(1, Value::from(LOCALHOST)), (2, Value::from(1)), (3, uuid_bin(2))];
        let body = with(good_body(), 3, Value::Array(vec![map(minimal)]));
        let p = decode(&pack(map(good_meta()), map(body))).unwrap();
        let r = &p.body.dissemination.unwrap()[0];
        assert_eq!(
            (r.status, r.incarnation, r.payload.clone()),
            (Status::Alive, Incarnation::default(), None)
        );
        // An empty payload is not an absent one.
        let body = with(
            good_body(),
            3,
            Value::Array(vec![map(with(good_record(), 6, bin(b"")))]),
        );
        let p = decode(&pack(map(good_meta()), map(body))).unwrap();
        assert_eq!(p.body.dissemination.unwrap()[0].payload, Some(vec![]));
        // The biggest payload is fine; the routing section decodes.
        let body = with(
            good_body(),
            3,
            Value::Array(vec![map(with(good_record(), 6, bin(&[1; 1200])))]),
        );
        assert!(decode(&pack(map(good_meta()), map(body))).is_ok());
        let p = decode(&pack(map(with(good_meta(), 3, map(good_route()))), map(good_body()))).unwrap();
        assert_eq!(
            p.meta.route,
            Some(Route {
                src: local(3311),
                dst: local(3310)
            })
        );
        // A quit-only body, keys in any order after the uuid.
        let body = vec![
            (0, uuid_bin(4)),
            (4, map(vec![(1, Value::from(3)), (0, Value::from(42))])),
        ];
        let p = decode(&pack(map(good_meta()), map(body))).unwrap();
        assert_eq!(p.body.quit, Some(Incarnation::new(42, 3)));
    }

    #[test]
    fn meta_rules() {
        use DecodeError::*;
        let m = Section::Meta;
        assert_eq!(
            decode(&pack(Value::from(1), map(good_body()))).unwrap_err(),
            ExpectedMap(m)
        );
        assert_eq!(meta_err(with(good_meta(), 4, Value::from(1))), UnknownKey(m, 4));
        let mut string_key = map(good_meta());
        if let Value::Map(pairs) = &mut string_key {
            pairs[0].0 = Value::from("0");
        }
        assert_eq!(
            decode(&pack(string_key, map(good_body()))).unwrap_err(),
            ExpectedUint(m)
        );
        assert_eq!(meta_err(without(good_meta(), 0)), MissingVersion);
        assert_eq!(meta_err(with(good_meta(), 0, Value::from(0))), MissingVersion);
        assert_eq!(
            meta_err(with(good_meta(), 0, Value::from(1u64 << 32))),
            VersionTooBig(1 << 32)
        );
        assert_eq!(meta_err(with(good_meta(), 0, Value::from("2.6"))), ExpectedUint(m));
        assert_eq!(meta_err(without(good_meta(), 1)), MissingSrcAddress);
        assert_eq!(meta_err(with(good_meta(), 1, Value::from(0))), MissingSrcAddress);
        assert_eq!(meta_err(without(good_meta(), 2)), MissingSrcAddress);
        assert_eq!(meta_err(with(good_meta(), 2, Value::from(0))), MissingSrcAddress);
        assert_eq!(meta_err(with(good_meta(), 1, Value::from(1u64 << 32))), InvalidIp(m));
        assert_eq!(meta_err(with(good_meta(), 2, Value::from(65536))), InvalidPort(m));
        // A negative number is not a uint, whatever its value.
        assert_eq!(meta_err(with(good_meta(), 2, Value::from(-1))), ExpectedUint(m));
        // A signed encoding of a positive value (int8 0x05) is not a uint either.
        let mut bytes = pack(map(good_meta()), map(good_body()));
        assert_eq!(&bytes[..3], &[0x83, 0x00, 0xce]);
        bytes.splice(2..7, [0xd0, 0x05]);
        assert_eq!(decode(&bytes).unwrap_err(), ExpectedUint(m));
    }

    #[test]
    fn route_rules() {
        use DecodeError::*;
        let r = Section::Route;
        assert_eq!(meta_err(with(good_meta(), 3, Value::from(1))), ExpectedMap(r));
        assert_eq!(route_err(with(good_route(), 4, Value::from(1))), UnknownKey(r, 4));
        for key in 0..4 {
            assert_eq!(route_err(without(good_route(), key)), MissingRouteAddress, "key {key}");
            assert_eq!(route_err(with(good_route(), key, Value::from(0))), MissingRouteAddress);
        }
        assert_eq!(route_err(with(good_route(), 2, Value::from(1u64 << 32))), InvalidIp(r));
        assert_eq!(route_err(with(good_route(), 3, Value::from(70000))), InvalidPort(r));
    }

    #[test]
    fn body_rules() {
        use DecodeError::*;
        let b = Section::Body;
        assert_eq!(decode(&pack(map(good_meta()), Value::Nil)).unwrap_err(), ExpectedMap(b));
        assert_eq!(body_err(vec![]), EmptyBody);
        let fd_first = vec![(2, map(good_fd())), (0, uuid_bin(1))];
        assert_eq!(body_err(fd_first), FirstKeyNotUuid(2));
        assert_eq!(body_err(with(good_body(), 0, bin(&[1; 15]))), InvalidUuid(b));
        assert_eq!(body_err(with(good_body(), 0, bin(&[1; 17]))), InvalidUuid(b));
        assert_eq!(
            body_err(with(good_body(), 0, Value::from("x".repeat(16)))),
            ExpectedBin(b)
        );
        assert_eq!(body_err(with(good_body(), 5, Value::from(1))), UnknownKey(b, 5));
        let mut twice = good_body();
        twice.push((0, uuid_bin(2)));
        assert_eq!(body_err(twice), UnknownKey(b, 0));
        assert_eq!(
            body_err(with(good_body(), 3, map(vec![]))),
            ExpectedArray(Section::Dissemination)
        );
        assert_eq!(
            body_err(with(good_body(), 1, Value::from(0))),
            ExpectedArray(Section::AntiEntropy)
        );
        // Nothing after the body.
        let mut bytes = pack(map(good_meta()), map(good_body()));
        bytes.push(0xc0);
        assert_eq!(decode(&bytes).unwrap_err(), TrailingBytes(1));
        // No more than a UDP datagram.
        let mut big = pack(map(good_meta()), map(good_body()));
        big.resize(UDP_PACKET_SIZE + 1, 0);
        assert_eq!(decode(&big).unwrap_err(), TooLong(UDP_PACKET_SIZE + 1));
    }

    #[test]
    fn failure_detection_and_quit_rules() {
        use DecodeError::*;
        let fd = Section::FailureDetection;
        let q = Section::Quit;
        assert_eq!(body_err(with(good_body(), 2, Value::from(0))), ExpectedMap(fd));
        assert_eq!(
            body_err(with(good_body(), 2, map(without(good_fd(), 2)))),
            FailureDetectionKeyCount(2)
        );
        assert_eq!(
            body_err(with(good_body(), 2, map(with(good_fd(), 3, Value::from(0))))),
            FailureDetectionKeyCount(4)
        );
        let no_type = vec![(1, Value::from(7)), (2, Value::from(1)), (1, Value::from(8))];
        assert_eq!(body_err(with(good_body(), 2, map(no_type))), MissingMessageType);
        assert_eq!(
            body_err(with(good_body(), 2, map(with(good_fd(), 0, Value::from(2))))),
            UnknownMessageType(2)
        );
        let extra = vec![(0, Value::from(0)), (1, Value::from(7)), (3, Value::from(1))];
        assert_eq!(body_err(with(good_body(), 2, map(extra))), UnknownKey(fd, 3));
        assert_eq!(
            body_err(with(good_body(), 2, map(with(good_fd(), 1, Value::from(-7))))),
            ExpectedUint(fd)
        );
        let quit = |pairs| vec![(0, uuid_bin(1)), (4, map(pairs))];
        assert_eq!(body_err(quit(vec![(0, Value::from(1))])), QuitKeyCount(1));
        let three = vec![(0, Value::from(1)), (1, Value::from(2)), (0, Value::from(3))];
        assert_eq!(body_err(quit(three)), QuitKeyCount(3));
        assert_eq!(
            body_err(quit(vec![(0, Value::from(1)), (2, Value::from(2))])),
            UnknownKey(q, 2)
        );
        assert_eq!(
            body_err(vec![(0, uuid_bin(1)), (4, Value::Array(vec![]))]),
            ExpectedMap(q)
        );
    }

    #[test]
    fn member_record_rules() {
        use DecodeError::*;
        let d = Section::Dissemination;
        assert_eq!(
            body_err(with(good_body(), 3, Value::Array(vec![Value::from(1)]))),
            ExpectedMap(d)
        );
        assert_eq!(record_err(with(good_record(), 7, Value::from(0))), UnknownKey(d, 7));
        assert_eq!(record_err(with(good_record(), 0, Value::from(4))), UnknownStatus(4));
        assert_eq!(record_err(with(good_record(), 6, bin(&[0; 1201]))), PayloadTooBig(1201));
        assert_eq!(record_err(with(good_record(), 6, Value::from("str"))), ExpectedBin(d));
        assert_eq!(record_err(without(good_record(), 1)), MissingMemberAddress(d));
        assert_eq!(
            record_err(with(good_record(), 1, Value::from(0))),
            MissingMemberAddress(d)
        );
        assert_eq!(record_err(without(good_record(), 2)), MissingMemberAddress(d));
        assert_eq!(
            record_err(with(good_record(), 2, Value::from(0))),
            MissingMemberAddress(d)
        );
        assert_eq!(
            record_err(with(good_record(), 1, Value::from(1u64 << 32))),
            InvalidIp(d)
        );
        assert_eq!(record_err(with(good_record(), 2, Value::from(65536))), InvalidPort(d));
        assert_eq!(record_err(without(good_record(), 3)), MissingMemberUuid(d));
        assert_eq!(record_err(with(good_record(), 3, uuid_bin(0))), MissingMemberUuid(d));
        assert_eq!(record_err(with(good_record(), 3, bin(&[1; 4]))), InvalidUuid(d));
        assert_eq!(record_err(with(good_record(), 4, Value::from(1.5))), ExpectedUint(d));
        // The same rules name the anti-entropy section there.
        let bad = Value::Array(vec![map(good_record()), map(with(good_record(), 0, Value::from(9)))]);
        assert_eq!(body_err(with(good_body(), 1, bad)), UnknownStatus(9));
        let bad = Value::Array(vec![map(without(good_record(), 3))]);
        assert_eq!(
            body_err(with(good_body(), 1, bad)),
            MissingMemberUuid(Section::AntiEntropy)
        );
    }

    #[test]
    fn every_strict_prefix_is_rejected() {
        let bytes = pack(map(with(good_meta(), 3, map(good_route()))), map(good_body()));
        assert!(decode(&bytes).is_ok());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        assert_eq!(decode(&[]).unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn decode_prefix_keeps_what_came_before_the_error() {
        // Anti-entropy: one good record, then a bad one.
        let bad = Value::Array(vec![map(good_record()), map(with(good_record(), 0, Value::from(9)))]);
        let bytes = pack(map(good_meta()), map(with(good_body(), 1, bad)));
        let (p, err) = decode_prefix(&bytes);
        assert_eq!(err, Some(DecodeError::UnknownStatus(9)));
        let p = p.unwrap();
        assert!(p.body.failure_detection.is_some());
        assert_eq!(p.body.dissemination.map(|d| d.len()), Some(1));
        assert_eq!(p.body.anti_entropy.map(|d| d.len()), Some(1));
        // A bad META gives nothing.
        let (p, err) = decode_prefix(&pack(map(without(good_meta(), 0)), map(good_body())));
        assert_eq!((p, err), (None, Some(DecodeError::MissingVersion)));
        // A good packet gives the same as decode().
        let bytes = pack(map(good_meta()), map(good_body()));
        assert_eq!(decode_prefix(&bytes), (Some(decode(&bytes).unwrap()), None));
    }

    // --- round trips over random packets -----------------------------------------------------

    fn nonzero_addr(rng: &mut StdRng) -> SocketAddrV4 {
        SocketAddrV4::new(rng.random_range(1..=u32::MAX).into(), rng.random_range(1..=u16::MAX))
    }

    fn random_u64(rng: &mut StdRng) -> u64 {
        // Mix the widths MessagePack would pick: fixint, u8, u16, u32, u64.
        match rng.random_range(0..5) {
            0 => rng.random_range(0..128),
            1 => rng.random_range(0..256),
            2 => rng.random_range(0..65536),
            3 => u64::from(rng.random::<u32>()),
            _ => rng.random(),
        }
    }

    fn random_record(rng: &mut StdRng) -> MemberRecord {
        let mut uuid = [0u8; 16];
        rng.fill_bytes(&mut uuid);
        uuid[0] |= 1; // never nil
        let payload = match rng.random_range(0..10) {
            0..=3 => None,
            4 => Some(Vec::new()),
            5..=8 => Some((0..rng.random_range(0..40)).map(|_| rng.random()).collect()),
            _ => Some(
                (0..rng.random_range(0..=MAX_PAYLOAD_SIZE))
                    .map(|_| rng.random())
                    .collect(),
            ),
        };
        MemberRecord {
            status: Status::from_wire(rng.random_range(0..4)).unwrap(),
            addr: nonzero_addr(rng),
            uuid: Uuid::from_bytes(uuid),
            incarnation: Incarnation::new(random_u64(rng), random_u64(rng)),
            payload,
        }
    }

    fn random_packet(rng: &mut StdRng) -> Packet {
        let records = |rng: &mut StdRng| {
            rng.random_bool(0.7)
                .then(|| (0..rng.random_range(0..6)).map(|_| random_record(rng)).collect())
        };
        let mut src_uuid = [0u8; 16];
        rng.fill_bytes(&mut src_uuid);
        Packet {
            meta: Meta {
                version: rng.random_range(1..=u32::MAX),
                src: nonzero_addr(rng),
                route: rng.random_bool(0.3).then(|| Route {
                    src: nonzero_addr(rng),
                    dst: nonzero_addr(rng),
                }),
            },
            body: Body {
                src_uuid: Uuid::from_bytes(src_uuid),
                failure_detection: rng.random_bool(0.7).then(|| FailureDetection {
                    kind: if rng.random() {
                        FailureDetectionKind::Ping
                    } else {
                        FailureDetectionKind::Ack
                    },
                    incarnation: Incarnation::new(random_u64(rng), random_u64(rng)),
                }),
                dissemination: records(rng),
                anti_entropy: records(rng),
                quit: rng
                    .random_bool(0.2)
                    .then(|| Incarnation::new(random_u64(rng), random_u64(rng))),
            },
        }
    }

    /// Re-encodes MessagePack values with the widest encodings (map32, array32, bin32, u64).
    fn write_wide(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Integer(i) => {
                out.push(mp::UINT64);
                out.extend_from_slice(&i.as_u64().unwrap().to_be_bytes());
            }
            Value::Binary(b) => {
                out.push(mp::BIN32);
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
            Value::Array(a) => {
                out.push(mp::ARRAY32);
                out.extend_from_slice(&(a.len() as u32).to_be_bytes());
                a.iter().for_each(|x| write_wide(x, out));
            }
            Value::Map(m) => {
                out.push(mp::MAP32);
                out.extend_from_slice(&(m.len() as u32).to_be_bytes());
                for (k, x) in m {
                    write_wide(k, out);
                    write_wide(x, out);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The packet's bytes read back as two generic MessagePack values.
    fn values(bytes: &[u8]) -> (Value, Value) {
        let mut cur = bytes;
        let meta = rmpv::decode::read_value(&mut cur).unwrap();
        let body = rmpv::decode::read_value(&mut cur).unwrap();
        assert!(cur.is_empty());
        (meta, body)
    }

    #[test]
    fn random_packets_round_trip_in_every_width() {
        let mut rng = StdRng::seed_from_u64(0x5717_0001);
        for i in 0..3000 {
            let p = random_packet(&mut rng);
            let bytes = enc(&p);
            assert_eq!(bytes.len(), packet_size(&p), "case {i}");
            if bytes.len() <= UDP_PACKET_SIZE {
                assert_eq!(decode(&bytes).as_ref(), Ok(&p), "case {i}");
            } else {
                assert_eq!(decode(&bytes), Err(DecodeError::TooLong(bytes.len())));
            }
            // Any valid width decodes to the same packet: minimal (as msgpack libraries write
            // it) and widest.
            let (meta, body) = values(&bytes);
            let minimal = pack(meta.clone(), body.clone());
            let mut wide = Vec::new();
            write_wide(&meta, &mut wide);
            write_wide(&body, &mut wide);
            for other in [minimal, wide] {
                if other.len() <= UDP_PACKET_SIZE {
                    assert_eq!(decode(&other).as_ref(), Ok(&p), "case {i}");
                }
            }
            if bytes.len() <= UDP_PACKET_SIZE {
                let (m, rest) = split_meta(&bytes).unwrap();
                assert_eq!(m, p.meta);
                assert_eq!(rest.len(), body_size(&p.body));
            }
        }
    }

    /// 200k random and mutated inputs from a seed: the decoder must return, never panic, and
    /// agree with decode_prefix.
    #[test]
    fn decoder_survives_random_and_mutated_input() {
        let mut rng = StdRng::seed_from_u64(0x5717_0002);
        let seeds: Vec<Vec<u8>> = (0..64)
            .map(|_| enc(&random_packet(&mut rng)))
            .filter(|b| b.len() <= UDP_PACKET_SIZE)
            .collect();
        let mut ok = 0;
        for _ in 0..200_000 {
            let input = mutate(&mut rng, &seeds);
            let r = decode(&input);
            let (partial, err) = decode_prefix(&input);
            match &r {
                Ok(p) => {
                    ok += 1;
                    assert_eq!((partial.as_ref(), err), (Some(p), None));
                    // Whatever decodes re-encodes to something that decodes the same.
                    let again = enc(p);
                    if again.len() <= UDP_PACKET_SIZE {
                        assert_eq!(decode(&again).as_ref(), Ok(p));
                    }
                }
                Err(e) => assert_eq!(err, Some(*e)),
            }
        }
        assert!(ok > 1000, "mutations keep some packets valid: {ok}");
    }

    /// The fixed-offset record reader must agree with the key-by-key one on every input it
    /// accepts (same record, same bytes consumed), and accept the sender layout itself.
    #[test]
    fn fixed_layout_record_reader_agrees_with_the_general_one() {
        let mut rng = StdRng::seed_from_u64(0x5717_0003);
        let mut accepted = 0;
        for i in 0..100_000 {
            let rec = &random_record(&mut rng);
            let mut bytes = Vec::new();
            encode_record(rec, &mut bytes);
            bytes.extend_from_slice(&[0xc0, 0xc0]);
            if i % 2 == 1 {
                for _ in 0..rng.random_range(1..3) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = match rng.random_range(0..3) {
                        0 => rng.random(),
                        1 => bytes[at] ^ (1 << rng.random_range(0..8)),
                        _ => [0x00, 0x03, 0x04, 0x07, 0x10, 0x86, 0x87, 0xc4, 0xc5, 0xcf][rng.random_range(0..10)],
                    };
                }
            }
            let mut fixed = Reader::new(&bytes);
            let mut general = Reader::new(&bytes);
            let Some(got) = decode_record_fixed(&mut fixed) else {
                assert!(i % 2 == 1, "case {i}: the sender layout must take the fixed path");
                continue;
            };
            accepted += 1;
            let want = decode_record_general(&mut general, Section::Dissemination);
            assert_eq!(Ok(&got), want.as_ref(), "case {i}: {bytes:02x?}");
            assert_eq!(fixed.pos, general.pos, "case {i}");
            if i % 2 == 0 {
                assert_eq!(&got, rec, "case {i}");
            }
        }
        assert!(accepted > 50_000, "{accepted}");
    }

    pub(crate) fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
        if rng.random_range(0..10) == 0 {
            let n = rng.random_range(0..300);
            return (0..n).map(|_| rng.random()).collect();
        }
        let mut b = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(0..4) {
            if b.is_empty() {
                break;
            }
            let at = rng.random_range(0..b.len());
            match rng.random_range(0..6) {
                0 => b[at] = rng.random(),
                1 => b[at] ^= 1 << rng.random_range(0..8),
                2 => b.truncate(at),
                3 => b.insert(at, rng.random()),
                4 => {
                    b.remove(at);
                }
                // Interesting bytes: markers and boundary values.
                _ => {
                    b[at] = [0x00, 0x7f, 0x80, 0xc4, 0xc5, 0xc6, 0xcf, 0xdc, 0xdd, 0xdf, 0xff][rng.random_range(0..11)]
                }
            }
        }
        b
    }
}
