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
