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
    out.push(mp::FIXMAP | if rec.payload.is_some() { 7 } else { 6 });
    out.push(MEMBER_STATUS);
    // Statuses 0..=3 are positive fixints.
    out.push(rec.status as u8);
    put_addr(out, MEMBER_ADDRESS, MEMBER_PORT, &rec.addr);
    put_uuid(out, MEMBER_UUID, &rec.uuid);
    put_incarnation(out, MEMBER_GENERATION, MEMBER_VERSION, &rec.incarnation);
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

fn decode_record(r: &mut Reader<'_>, s: Section) -> Result<MemberRecord, DecodeError> {
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
