//! The IPROTO wire codec (spec/box.md §1): greeting, framing, request decoding and response
//! encoding, as Tarantool 2.6 does them, over plain byte slices.
//!
//! Decoding mirrors `xrow_header_decode`, `xrow_decode_dml`, `xrow_decode_call` and
//! `xrow_decode_auth` of 2.6.0 rule for rule (which MessagePack types are accepted where,
//! which key is reported missing, the error texts), because clients and tests see those
//! texts. Decode errors carry the source location 2.6.0 reports in the 0x52 error stack.
//!
//! Nothing here panics on input: every read is bounds-checked (see the fuzz test).

use std::fmt;
use std::ops::Range;

use uuid::Uuid;

use crate::box_::errcode::{
    ER_INVALID_MSGPACK, ER_MISSING_REQUEST_FIELD, ER_UNKNOWN_REQUEST_TYPE, ER_WRONG_SCHEMA_VERSION,
};
use crate::box_::error::ClientError;
use crate::box_::mp::{self, Mp};
use crate::client_error;
use crate::modules::digest::{base64_decode, base64_encode, Base64Options};

/// IPROTO map keys (header and body).
pub mod keys {
    pub const REQUEST_TYPE: u8 = 0x00;
    pub const SYNC: u8 = 0x01;
    pub const REPLICA_ID: u8 = 0x02;
    pub const LSN: u8 = 0x03;
    pub const TIMESTAMP: u8 = 0x04;
    pub const SCHEMA_VERSION: u8 = 0x05;
    pub const SERVER_VERSION: u8 = 0x06;
    pub const GROUP_ID: u8 = 0x07;
    pub const TSN: u8 = 0x08;
    pub const FLAGS: u8 = 0x09;
    pub const SPACE_ID: u8 = 0x10;
    pub const INDEX_ID: u8 = 0x11;
    pub const LIMIT: u8 = 0x12;
    pub const OFFSET: u8 = 0x13;
    pub const ITERATOR: u8 = 0x14;
    pub const INDEX_BASE: u8 = 0x15;
    pub const KEY: u8 = 0x20;
    pub const TUPLE: u8 = 0x21;
    pub const FUNCTION_NAME: u8 = 0x22;
    pub const USER_NAME: u8 = 0x23;
    pub const INSTANCE_UUID: u8 = 0x24;
    pub const CLUSTER_UUID: u8 = 0x25;
    pub const VCLOCK: u8 = 0x26;
    pub const EXPR: u8 = 0x27;
    pub const OPS: u8 = 0x28;
    pub const BALLOT: u8 = 0x29;
    pub const TUPLE_META: u8 = 0x2a;
    pub const OPTIONS: u8 = 0x2b;
    pub const DATA: u8 = 0x30;
    pub const ERROR_24: u8 = 0x31;
    pub const ERROR: u8 = 0x52;
    /// One past the last key 2.6 knows (`IPROTO_KEY_MAX`).
    pub const KEY_MAX: u8 = 0x53;
}

/// Response types (header key 0x00 of a response).
pub const IPROTO_OK: u32 = 0;
pub const IPROTO_CHUNK: u32 = 0x80;
pub const IPROTO_TYPE_ERROR: u32 = 0x8000;
/// NOP rows carry no body; the header decoder does not look past their header.
const IPROTO_NOP: u32 = 12;

// ---------------------------------------------------------------------------------------
// Greeting

pub const GREETING_SIZE: usize = 128;
const GREETING_LINE: usize = GREETING_SIZE / 2;
/// Bytes of random salt a server puts in its greeting (CHAP-SHA1 uses the first 20).
pub const SALT_SIZE: usize = 32;
/// The fewest salt bytes a client accepts (`SCRAMBLE_SIZE`).
const SALT_MIN: usize = 20;
/// `GREETING_SALT_LEN_MAX`: a client keeps at most this much decoded salt.
const SALT_MAX: usize = 44;
const PROTOCOL_LEN_MAX: usize = 32;
const UUID_STR_LEN: usize = 36;

/// `major.minor.patch` packed as Tarantool's `version_id` (2.6.3 = 0x020603).
pub const fn version_id(major: u32, minor: u32, patch: u32) -> u32 {
    ((major & 0xff) << 16) | ((minor & 0xff) << 8) | (patch & 0xff)
}

/// The 128-byte greeting a server sends on accept: `Tarantool <version> (Binary) <uuid>` and
/// the base64 salt, each line space-padded to 63 bytes and ended by `\n`. `version` should be
/// `X.Y.Z` (what clients parse to pick their handshake); an over-long line is cut at 63.
pub fn greeting(version: &str, instance_uuid: &Uuid, salt: &[u8; SALT_SIZE]) -> [u8; GREETING_SIZE] {
    let mut out = [b' '; GREETING_SIZE];
    let line1 = format!("Tarantool {version} (Binary) {instance_uuid}");
    let n = line1.len().min(GREETING_LINE - 1);
    out[..n].copy_from_slice(&line1.as_bytes()[..n]);
    out[GREETING_LINE - 1] = b'\n';
    let opts = Base64Options {
        nowrap: true,
        ..Base64Options::default()
    };
    let line2 = base64_encode(salt, opts);
    let n = line2.len().min(GREETING_LINE - 1);
    out[GREETING_LINE..GREETING_LINE + n].copy_from_slice(&line2[..n]);
    out[GREETING_SIZE - 1] = b'\n';
    out
}

/// A parsed server greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The version token as sent (`2.6.0`, or `1.6.6-83-gc6b2129` from old servers).
    pub version: String,
    /// `major.minor.patch` of `version`, packed by [`version_id`].
    pub version_id: u32,
    /// `Binary`, or e.g. `Lua console` (then `uuid` is nil and `salt` empty).
    pub protocol: String,
    pub uuid: Uuid,
    /// The decoded salt (32 bytes from 2.x servers).
    pub salt: Vec<u8>,
}

/// The greeting is not one a Tarantool client accepts; the text says what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreetingError(pub &'static str);

impl fmt::Display for GreetingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invalid greeting: {}", self.0)
    }
}

impl std::error::Error for GreetingError {}

/// Parses `%u.%u.%u` at the start of `s` (trailing text such as `-83-gHASH` is allowed).
fn parse_version_triple(s: &[u8]) -> Option<(u32, u32, u32)> {
    let mut parts = [0u32; 3];
    let mut pos = 0;
    for (i, part) in parts.iter_mut().enumerate() {
        if i > 0 {
            if s.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let start = pos;
        while let Some(d) = s.get(pos).filter(|c| c.is_ascii_digit()) {
            *part = part.checked_mul(10)?.checked_add((d - b'0') as u32)?;
            pos += 1;
        }
        if pos == start {
            return None;
        }
    }
    Some((parts[0], parts[1], parts[2]))
}

/// Parses a greeting as net.box does (`greeting_decode`): `Tarantool ` magic, `\n` at 63 and
/// 127, a version token, `(protocol)`; for `Binary` the instance UUID and at least 20 bytes
/// of base64 salt.
pub fn parse_greeting(buf: &[u8; GREETING_SIZE]) -> Result<Greeting, GreetingError> {
    const MAGIC: &[u8] = b"Tarantool ";
    if !buf.starts_with(MAGIC) || buf[GREETING_LINE - 1] != b'\n' || buf[GREETING_SIZE - 1] != b'\n' {
        return Err(GreetingError("no 'Tarantool' banner"));
    }
    let line = &buf[..GREETING_LINE];
    let skip_spaces = |mut pos: usize| {
        while line.get(pos) == Some(&b' ') {
            pos += 1;
        }
        pos
    };
    let mut pos = skip_spaces(MAGIC.len());
    let vlen = line[pos..]
        .iter()
        .position(|&c| c == b' ')
        .filter(|&n| n < 20)
        .ok_or(GreetingError("bad version"))?;
    let version_bytes = &line[pos..pos + vlen];
    let (major, minor, patch) = parse_version_triple(version_bytes).ok_or(GreetingError("bad version"))?;
    let vid = version_id(major, minor, patch);
    pos = skip_spaces(pos + vlen + 1);
    let mut greeting = Greeting {
        version: String::from_utf8_lossy(version_bytes).into_owned(),
        version_id: vid,
        protocol: String::new(),
        uuid: Uuid::nil(),
        salt: Vec::new(),
    };
    if line.get(pos) == Some(&b'(') {
        let plen = line[pos + 1..]
            .iter()
            .position(|&c| c == b')')
            .filter(|&n| n <= PROTOCOL_LEN_MAX)
            .ok_or(GreetingError("bad protocol"))?;
        greeting.protocol = String::from_utf8_lossy(&line[pos + 1..pos + 1 + plen]).into_owned();
        pos += plen + 2;
        if greeting.protocol != "Binary" {
            // A console greeting: nothing more to read (net.box switches to text mode).
            return Ok(greeting);
        }
        if vid >= version_id(1, 6, 7) {
            if line.get(pos) != Some(&b' ') {
                return Err(GreetingError("bad uuid"));
            }
            pos = skip_spaces(pos + 1);
            let text = line.get(pos..pos + UUID_STR_LEN).ok_or(GreetingError("bad uuid"))?;
            let text = std::str::from_utf8(text).map_err(|_| GreetingError("bad uuid"))?;
            greeting.uuid = Uuid::parse_str(text).map_err(|_| GreetingError("bad uuid"))?;
        }
    } else if vid < version_id(1, 6, 7) {
        // Before 1.6.7 the banner had no "(Binary)".
        greeting.protocol = "Binary".into();
    } else {
        return Err(GreetingError("no protocol"));
    }
    let mut salt = base64_decode(&buf[GREETING_LINE..GREETING_SIZE - 1]);
    salt.truncate(SALT_MAX);
    if salt.len() < SALT_MIN {
        return Err(GreetingError("salt too short"));
    }
    greeting.salt = salt;
    Ok(greeting)
}

// ---------------------------------------------------------------------------------------
// Framing

/// `IPROTO_PACKET_SIZE_MAX`: the largest length prefix 2.6 accepts (2 GiB).
pub const PACKET_SIZE_MAX: u64 = 2 * 1024 * 1024 * 1024;

/// One complete packet in the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Header + body: what [`decode_request`] / [`decode_header`] take.
    pub packet: Range<usize>,
    /// Bytes to drop from the front of the buffer (length prefix + packet).
    pub consumed: usize,
}

/// The stream cannot be framed any more: the server sends [`FrameError::to_client_error`]
/// (sync 0) and closes the connection, as 2.6 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is not a MessagePack unsigned integer.
    Length,
    /// The length prefix exceeds the limit.
    TooBig(u64),
}

impl FrameError {
    pub fn to_client_error(&self) -> ClientError {
        match self {
            FrameError::Length => client_error!(ER_INVALID_MSGPACK, "packet length"),
            FrameError::TooBig(n) => {
                client_error!(ER_INVALID_MSGPACK, format!("too big packet size in the header: {n}"))
            }
        }
    }

    /// The error as a full response (sync 0, `iproto.cc` line of 2.6.0).
    pub fn encode(&self, schema_version: u32) -> Vec<u8> {
        let e = self.to_client_error();
        encode_error_stack(0, schema_version, &[ErrorInfo::client(&e, IPROTO_CC, 826)])
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_client_error().message)
    }
}

impl std::error::Error for FrameError {}

/// MessagePack type families as `mp_typeof` reports them (by the first byte only: a
/// positive number in a signed encoding is `Int`, and 2.6 rejects it where it wants `Uint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MpType {
    Nil,
    Uint,
    Int,
    Str,
    Bin,
    Array,
    Map,
    Bool,
    Float,
    Double,
    Ext,
}

fn mp_type(b: u8) -> MpType {
    match b {
        0x00..=0x7f | 0xcc..=0xcf => MpType::Uint,
        0x80..=0x8f | 0xde | 0xdf => MpType::Map,
        0x90..=0x9f | 0xdc | 0xdd => MpType::Array,
        0xa0..=0xbf | 0xd9..=0xdb => MpType::Str,
        0xc0 => MpType::Nil,
        0xc2 | 0xc3 => MpType::Bool,
        0xc4..=0xc6 => MpType::Bin,
        0xca => MpType::Float,
        0xcb => MpType::Double,
        0xd0..=0xd3 | 0xe0..=0xff => MpType::Int,
        0xc1 | 0xc7..=0xc9 | 0xd4..=0xd8 => MpType::Ext,
    }
}

fn type_at(data: &[u8], pos: usize) -> Option<MpType> {
    data.get(pos).map(|&b| mp_type(b))
}

/// Finds the next complete packet at the front of `buf`. `Ok(None)`: read more bytes.
/// The prefix may use any unsigned encoding (`05`, `cc ..`, `ce .. .. .. ..`).
pub fn next_packet(buf: &[u8], max_packet_size: u64) -> Result<Option<Frame>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if mp_type(first) != MpType::Uint {
        return Err(FrameError::Length);
    }
    let (len, start) = match mp::read(buf, 0) {
        Ok((Mp::UInt(len), start)) => (len, start),
        // A uint whose bytes have not all arrived.
        _ => return Ok(None),
    };
    if len > max_packet_size {
        return Err(FrameError::TooBig(len));
    }
    // len <= max_packet_size fits usize on 64-bit targets; saturate elsewhere.
    let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
    if end > buf.len() {
        return Ok(None);
    }
    Ok(Some(Frame {
        packet: start..end,
        consumed: end,
    }))
}

// ---------------------------------------------------------------------------------------
// Request decoding

const XROW_C: &str = "./src/box/xrow.c";
const IPROTO_CC: &str = "./src/box/iproto.cc";

/// A request that cannot be served: the server answers `error` with `sync` (what the header
/// decoder had read before it failed, else 0) and goes on with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub sync: u64,
    pub error: ClientError,
    /// Where 2.6.0 raises it (goes into the 0x52 error stack).
    pub file: &'static str,
    pub line: u32,
}

impl RequestError {
    fn new(sync: u64, error: ClientError, file: &'static str, line: u32) -> RequestError {
        RequestError {
            sync,
            error,
            file,
            line,
        }
    }

    fn msgpack(sync: u64, what: &str, line: u32) -> RequestError {
        RequestError::new(sync, client_error!(ER_INVALID_MSGPACK, what), XROW_C, line)
    }

    fn missing(sync: u64, key: u8, line: u32) -> RequestError {
        RequestError::new(
            sync,
            client_error!(ER_MISSING_REQUEST_FIELD, key_name(key)),
            XROW_C,
            line,
        )
    }

    /// The error response Tarantool sends for it.
    pub fn encode(&self, schema_version: u32) -> Vec<u8> {
        encode_error_stack(
            self.sync,
            schema_version,
            &[ErrorInfo::client(&self.error, self.file, self.line)],
        )
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error.message)
    }
}

impl std::error::Error for RequestError {}

/// `iproto_key_type`: the type a key's value must have; `None` past the last known key.
/// Keys 0x2c..0x52 have no entry in 2.6's table, which leaves them at `MP_NIL`.
fn key_type(key: u64) -> Option<MpType> {
    Some(match key {
        0x00..=0x03 | 0x05..=0x1f => MpType::Uint,
        0x04 => MpType::Double,
        0x20 | 0x21 | 0x28 => MpType::Array,
        0x22..=0x25 | 0x27 => MpType::Str,
        0x26 | 0x29..=0x2b => MpType::Map,
        0x2c..=0x52 => MpType::Nil,
        _ => return None,
    })
}

/// `iproto_key_name` for the keys a request may miss.
fn key_name(key: u8) -> &'static str {
    match key {
        keys::SPACE_ID => "space id",
        keys::INDEX_ID => "index id",
        keys::LIMIT => "limit",
        keys::OFFSET => "offset",
        keys::ITERATOR => "iterator",
        keys::INDEX_BASE => "index base",
        keys::KEY => "key",
        keys::TUPLE => "tuple",
        keys::FUNCTION_NAME => "function name",
        keys::USER_NAME => "user name",
        keys::EXPR => "expression",
        keys::OPS => "operations",
        keys::TUPLE_META => "tuple meta",
        _ => "",
    }
}

/// A packet header. Replication rows use the other fields; clients and servers need `kind`,
/// `sync` and `schema_version`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Header {
    /// Request type, or in a response 0 / 0x80 / 0x8000|code (`uint32_t` in 2.6: truncated).
    pub kind: u32,
    pub sync: u64,
    pub replica_id: u32,
    pub lsn: u64,
    pub timestamp: f64,
    /// Absent and 0 both mean "do not check".
    pub schema_version: Option<u64>,
    pub group_id: u32,
    pub tsn: Option<u64>,
    pub flags: u32,
}

fn read_uint(data: &[u8], pos: usize) -> Option<u64> {
    match mp::read(data, pos) {
        Ok((Mp::UInt(v), _)) => Some(v),
        _ => None,
    }
}

/// Splits a packet into its header and the byte range of its body (`None`: no body), with
/// `xrow_header_decode`'s checks: the header is a map of uint keys with values of the types
/// 2.6 expects, the body one valid MessagePack value, nothing after it.
pub fn decode_header(packet: &[u8]) -> Result<(Header, Option<Range<usize>>), RequestError> {
    let (h, header_end) = match plain_header(packet) {
        Some(read) => read,
        None => checked_header(packet)?,
    };
    let mut end = header_end;
    let mut body = None;
    if end < packet.len() && h.kind != IPROTO_NOP {
        // msgpuck's mp_check passes the reserved byte 0xc1 as a one-byte value: 2.6 takes
        // it as a body (which a ping never reads).
        let body_end = match packet[end] {
            0xc1 => end + 1,
            _ => mp::skip(packet, end).map_err(|_| RequestError::msgpack(h.sync, "packet body", 209))?,
        };
        body = Some(end..body_end);
        end = body_end;
    }
    if end < packet.len() {
        return Err(RequestError::msgpack(h.sync, "packet body", 217));
    }
    Ok((h, body))
}

/// The header as net.box and most clients write it, read in one pass: a fixmap whose keys
/// are the header's uint keys (fixints) with uint values. None for anything else (a double
/// timestamp, another key, any error), which [`checked_header`] reads with all its checks;
/// what this accepts passes those checks, with the same outcome.
#[inline]
fn plain_header(packet: &[u8]) -> Option<(Header, usize)> {
    let first = *packet.first()?;
    if !(0x80..=0x8f).contains(&first) {
        return None;
    }
    let mut h = Header::default();
    let mut pos = 1;
    for _ in 0..first & 0x0f {
        let key = *packet.get(pos)?;
        let (value, next) = plain_uint(packet, pos + 1)?;
        match key {
            keys::REQUEST_TYPE => h.kind = value as u32,
            keys::SYNC => h.sync = value,
            keys::REPLICA_ID => h.replica_id = value as u32,
            keys::GROUP_ID => h.group_id = value as u32,
            keys::LSN => h.lsn = value,
            keys::SCHEMA_VERSION => h.schema_version = Some(value),
            keys::TSN => h.tsn = Some(value),
            keys::FLAGS => h.flags = value as u32,
            _ => return None,
        }
        pos = next;
    }
    Some((h, pos))
}

/// `xrow_header_decode`'s checks: the header is a map of uint keys with values of the types
/// 2.6 expects. Returns the header and where it ends.
fn checked_header(packet: &[u8]) -> Result<(Header, usize), RequestError> {
    let mut h = Header::default();
    let header_end = mp::skip(packet, 0).map_err(|_| RequestError::msgpack(0, "packet header", 142))?;
    let count = match mp::read(packet, 0) {
        Ok((Mp::Map(n), _)) if type_at(packet, 0) == Some(MpType::Map) => n,
        _ => return Err(RequestError::msgpack(0, "packet header", 142)),
    };
    // `pos` always stays inside the header, which mp::skip has validated as a whole.
    let mut pos = match mp::read(packet, 0) {
        Ok((_, p)) => p,
        Err(_) => return Err(RequestError::msgpack(0, "packet header", 142)),
    };
    for _ in 0..count {
        // Errors past this point answer with the sync read so far, as 2.6 does.
        let bad = |h: &Header| RequestError::msgpack(h.sync, "packet header", 142);
        if type_at(packet, pos) != Some(MpType::Uint) {
            return Err(bad(&h));
        }
        let (key, value_pos) = match mp::read(packet, pos) {
            Ok((Mp::UInt(k), p)) => (k, p),
            _ => return Err(bad(&h)),
        };
        let want = key_type(key).ok_or_else(|| bad(&h))?;
        if type_at(packet, value_pos) != Some(want) {
            return Err(bad(&h));
        }
        let next = mp::skip(packet, value_pos).map_err(|_| bad(&h))?;
        let uint = || read_uint(packet, value_pos).unwrap_or(0);
        match key as u8 {
            keys::REQUEST_TYPE => h.kind = uint() as u32,
            keys::SYNC => h.sync = uint(),
            keys::REPLICA_ID => h.replica_id = uint() as u32,
            keys::GROUP_ID => h.group_id = uint() as u32,
            keys::LSN => h.lsn = uint(),
            keys::TIMESTAMP => {
                if let Ok((Mp::F64(t), _)) = mp::read(packet, value_pos) {
                    h.timestamp = t;
                }
            }
            keys::SCHEMA_VERSION => h.schema_version = Some(uint()),
            keys::TSN => h.tsn = Some(uint()),
            keys::FLAGS => h.flags = uint() as u32,
            _ => {}
        }
        pos = next;
    }
    Ok((h, header_end))
}

/// The request types 2.6 accepts on a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RequestType {
    Select = 1,
    Insert = 2,
    Replace = 3,
    Update = 4,
    Delete = 5,
    Call16 = 6,
    Auth = 7,
    Eval = 8,
    Upsert = 9,
    Call = 10,
    Execute = 11,
    Prepare = 13,
    Ping = 64,
    Join = 65,
    Subscribe = 66,
    VoteDeprecated = 67,
    Vote = 68,
    FetchSnapshot = 69,
    Register = 70,
}

impl RequestType {
    pub fn from_code(code: u8) -> Option<RequestType> {
        use RequestType::*;
        Some(match code {
            1 => Select,
            2 => Insert,
            3 => Replace,
            4 => Update,
            5 => Delete,
            6 => Call16,
            7 => Auth,
            8 => Eval,
            9 => Upsert,
            10 => Call,
            11 => Execute,
            13 => Prepare,
            64 => Ping,
            65 => Join,
            66 => Subscribe,
            67 => VoteDeprecated,
            68 => Vote,
            69 => FetchSnapshot,
            70 => Register,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// `iproto_body_key_map`: the keys a DML request must carry.
    fn mandatory_keys(self) -> &'static [u8] {
        use keys::*;
        match self {
            RequestType::Select => &[SPACE_ID, LIMIT, KEY],
            RequestType::Insert | RequestType::Replace => &[SPACE_ID, TUPLE],
            RequestType::Update => &[SPACE_ID, KEY, TUPLE],
            RequestType::Delete => &[SPACE_ID, KEY],
            RequestType::Upsert => &[SPACE_ID, TUPLE, OPS],
            _ => &[],
        }
    }
}

/// SELECT/INSERT/REPLACE/UPDATE/DELETE/UPSERT fields. Numbers are truncated to 32 bits as
/// in 2.6's `struct request`; MessagePack values are borrowed whole (header included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dml<'a> {
    pub space_id: u32,
    pub index_id: u32,
    pub limit: u32,
    pub offset: u32,
    /// Raw iterator code (0 = EQ when absent); the server validates it.
    pub iterator: u32,
    pub index_base: u32,
    pub key: Option<&'a [u8]>,
    /// The tuple, or for UPDATE the operations (legacy naming).
    pub tuple: Option<&'a [u8]>,
    /// UPSERT operations.
    pub ops: Option<&'a [u8]>,
    pub tuple_meta: Option<&'a [u8]>,
}

/// A decoded request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    Dml(Dml<'a>),
    /// CALL and CALL_16: the name's bytes (a MessagePack str, not necessarily UTF-8) and the
    /// argument array (`[]` when absent).
    Call {
        function_name: &'a [u8],
        args: &'a [u8],
    },
    Eval {
        expr: &'a [u8],
        args: &'a [u8],
    },
    Auth(Auth<'a>),
    Ping,
    /// SQL and replication requests: 2.6 decodes their bodies elsewhere; here they stay raw.
    Raw(Option<&'a [u8]>),
}

/// AUTH fields. `tuple` is the raw array, normally `['chap-sha1', scramble]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    pub user_name: &'a [u8],
    pub tuple: &'a [u8],
}

impl<'a> Auth<'a> {
    /// Items in the tuple (0 lets guest authenticate without a password).
    pub fn part_count(&self) -> u32 {
        mp::read_array(self.tuple, 0).map_or(0, |(n, _)| n)
    }

    /// The scramble, checked as 2.6's `authenticate` does (the mechanism name is not looked
    /// at): at least 2 items, the second a str or bin of 20 bytes.
    pub fn scramble(&self) -> Result<&'a [u8], ClientError> {
        let tuple = self.tuple;
        let (n, pos) = mp::read_array(tuple, 0).unwrap_or((0, 0));
        if n < 2 {
            return Err(client_error!(ER_INVALID_MSGPACK, "authentication request body"));
        }
        let bad_scramble = || client_error!(ER_INVALID_MSGPACK, "authentication scramble");
        let pos = mp::skip(tuple, pos).map_err(|_| bad_scramble())?;
        let scramble = match mp::read(tuple, pos) {
            Ok((Mp::Str(s) | Mp::Bin(s), _)) => s,
            _ => return Err(bad_scramble()),
        };
        if scramble.len() != crate::box_::chap_sha1::SCRAMBLE_SIZE {
            return Err(client_error!(ER_INVALID_MSGPACK, "invalid scramble size"));
        }
        Ok(scramble)
    }
}

/// A decoded client request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request<'a> {
    pub sync: u64,
    pub schema_version: Option<u64>,
    pub kind: RequestType,
    pub body: Body<'a>,
    /// The whole header, for the rarely used fields.
    pub header: Header,
}

impl Request<'_> {
    /// `tx_check_schema`: a non-zero version that differs from the server's is error 109.
    /// 2.6 passes the two numbers swapped, so "current" is the client's; mirrored.
    pub fn check_schema_version(&self, current: u32) -> Result<(), ClientError> {
        let requested = self.schema_version.unwrap_or(0) as u32;
        if requested != 0 && requested != current {
            return Err(client_error!(ER_WRONG_SCHEMA_VERSION, requested, current));
        }
        Ok(())
    }
}

/// Checks a body is a map and returns its entry count and the first key's position.
fn body_map(body: &[u8], sync: u64, line: u32) -> Result<(u32, usize), RequestError> {
    match mp::read(body, 0) {
        Ok((Mp::Map(n), pos)) if type_at(body, 0) == Some(MpType::Map) => Ok((n, pos)),
        _ => Err(RequestError::msgpack(sync, "packet body", line)),
    }
}

/// `xrow_decode_dml`: only fixint keys of the DML set are looked at (others, whatever their
/// type, are skipped); their values must have the table's type; the lowest missing
/// mandatory key is reported.
fn decode_dml<'a>(kind: RequestType, sync: u64, body: Option<&'a [u8]>) -> Result<Dml<'a>, RequestError> {
    use keys::*;
    let mut dml = Dml::default();
    let mut seen: u64 = 0;
    if let Some(body) = body {
        let bad = || RequestError::msgpack(sync, "packet body", 715);
        let (count, mut pos) = body_map(body, sync, 715)?;
        for _ in 0..count {
            let k = *body.get(pos).ok_or_else(bad)?;
            let is_dml_key = matches!(k, SPACE_ID..=INDEX_BASE | KEY | TUPLE | OPS | TUPLE_META);
            if !is_dml_key {
                pos = mp::skip(body, pos).map_err(|_| bad())?;
                pos = mp::skip(body, pos).map_err(|_| bad())?;
                continue;
            }
            let value_pos = pos + 1;
            let next = mp::skip(body, value_pos).map_err(|_| bad())?;
            if type_at(body, value_pos) != key_type(k as u64) {
                return Err(bad());
            }
            seen |= 1 << k;
            let value = &body[value_pos..next];
            // Keys up to INDEX_BASE are uints (checked above); C stores them in 32 bits.
            let uint = || read_uint(body, value_pos).unwrap_or(0) as u32;
            match k {
                SPACE_ID => dml.space_id = uint(),
                INDEX_ID => dml.index_id = uint(),
                LIMIT => dml.limit = uint(),
                OFFSET => dml.offset = uint(),
                ITERATOR => dml.iterator = uint(),
                INDEX_BASE => dml.index_base = uint(),
                KEY => dml.key = Some(value),
                TUPLE => dml.tuple = Some(value),
                OPS => dml.ops = Some(value),
                _ => dml.tuple_meta = Some(value),
            }
            pos = next;
        }
        if pos != body.len() {
            return Err(RequestError::msgpack(sync, "packet end", 775));
        }
    }
    // Mandatory keys are listed lowest first, which is the one 2.6 reports.
    if let Some(&k) = kind.mandatory_keys().iter().find(|&&k| seen & (1 << k) == 0) {
        return Err(RequestError::missing(sync, k, 782));
    }
    Ok(dml)
}

/// The requests clients send most (PING, the DML requests, CALL and EVAL) as net.box
/// writes them, read in one pass: [`plain_header`], then a body that is a fixmap of the
/// request's own fixint keys with values of their types, ending the packet. None for
/// anything else (another key, a missing one, any error), which the checked decoder reads
/// with all its checks and error texts; what this accepts passes them with the same outcome.
fn plain_request(packet: &[u8]) -> Option<Request<'_>> {
    let (header, end) = plain_header(packet)?;
    let kind = RequestType::from_code(header.kind as u8)?;
    let body = &packet[end..];
    let body = match kind {
        RequestType::Ping if body.is_empty() => Body::Ping,
        RequestType::Select
        | RequestType::Insert
        | RequestType::Replace
        | RequestType::Update
        | RequestType::Delete
        | RequestType::Upsert => Body::Dml(plain_dml(kind, body)?),
        RequestType::Call | RequestType::Call16 | RequestType::Eval => plain_call(kind, body)?,
        _ => return None,
    };
    Some(Request {
        sync: header.sync,
        schema_version: header.schema_version,
        kind,
        body,
        header,
    })
}

/// An uint at `pos` and the position after it.
#[inline]
fn plain_uint(data: &[u8], pos: usize) -> Option<(u64, usize)> {
    let be = |n: usize| -> Option<u64> {
        let bytes = data.get(pos + 1..pos + 1 + n)?;
        Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    };
    match *data.get(pos)? {
        b @ 0x00..=0x7f => Some((u64::from(b), pos + 1)),
        0xcc => Some((be(1)?, pos + 2)),
        0xcd => Some((be(2)?, pos + 3)),
        0xce => Some((be(4)?, pos + 5)),
        0xcf => Some((be(8)?, pos + 9)),
        _ => None,
    }
}

/// A whole value of type `want` at `pos` and the position after it.
#[inline]
fn plain_value(data: &[u8], pos: usize, want: MpType) -> Option<usize> {
    if type_at(data, pos)? != want {
        return None;
    }
    mp::skip(data, pos).ok()
}

fn plain_dml(kind: RequestType, body: &[u8]) -> Option<Dml<'_>> {
    use keys::*;
    let first = *body.first()?;
    if !(0x80..=0x8f).contains(&first) {
        return None;
    }
    let mut dml = Dml::default();
    let mut seen: u64 = 0;
    let mut pos = 1;
    for _ in 0..first & 0x0f {
        let k = *body.get(pos)?;
        let at = pos + 1;
        match k {
            SPACE_ID..=INDEX_BASE => {
                let (v, next) = plain_uint(body, at)?;
                let v = v as u32;
                match k {
                    SPACE_ID => dml.space_id = v,
                    INDEX_ID => dml.index_id = v,
                    LIMIT => dml.limit = v,
                    OFFSET => dml.offset = v,
                    ITERATOR => dml.iterator = v,
                    _ => dml.index_base = v,
                }
                pos = next;
            }
            KEY | TUPLE | OPS => {
                let next = plain_value(body, at, MpType::Array)?;
                let value = Some(&body[at..next]);
                match k {
                    KEY => dml.key = value,
                    TUPLE => dml.tuple = value,
                    _ => dml.ops = value,
                }
                pos = next;
            }
            _ => return None,
        }
        seen |= 1 << k;
    }
    if pos != body.len() || kind.mandatory_keys().iter().any(|&k| seen & (1 << k) == 0) {
        return None;
    }
    Some(dml)
}

fn plain_call(kind: RequestType, body: &[u8]) -> Option<Body<'_>> {
    let first = *body.first()?;
    if !(0x80..=0x8f).contains(&first) {
        return None;
    }
    let (mut name, mut expr, mut args) = (None, None, None);
    let mut pos = 1;
    for _ in 0..first & 0x0f {
        let k = *body.get(pos)?;
        let at = pos + 1;
        let (slot, want) = match k {
            keys::FUNCTION_NAME => (&mut name, MpType::Str),
            keys::EXPR => (&mut expr, MpType::Str),
            keys::TUPLE => (&mut args, MpType::Array),
            _ => return None,
        };
        let next = plain_value(body, at, want)?;
        *slot = Some(&body[at..next]);
        pos = next;
    }
    if pos != body.len() {
        return None;
    }
    let args = args.unwrap_or(EMPTY_ARRAY);
    Some(if kind == RequestType::Eval {
        Body::Eval {
            expr: str_payload(expr?),
            args,
        }
    } else {
        Body::Call {
            function_name: str_payload(name?),
            args,
        }
    })
}

/// Source lines of one of `xrow_decode_call` / `xrow_decode_auth` (2.6.0).
struct Lines {
    no_body: u32,
    body: u32,
    end: u32,
}

/// The common loop of `xrow_decode_call` and `xrow_decode_auth`: any uint key (any width),
/// values of the known keys type-checked, unknown keys skipped. Returns the values of
/// `wanted` keys as (key, payload-or-value).
fn decode_keyed<'a, const N: usize>(
    sync: u64,
    body: Option<&'a [u8]>,
    wanted: [(u8, MpType); N],
    lines: &Lines,
) -> Result<[Option<&'a [u8]>; N], RequestError> {
    let body = body.ok_or_else(|| RequestError::msgpack(sync, "missing request body", lines.no_body))?;
    let bad = || RequestError::msgpack(sync, "packet body", lines.body);
    let (count, mut pos) = body_map(body, sync, lines.body)?;
    let mut out = [None; N];
    for _ in 0..count {
        if type_at(body, pos) != Some(MpType::Uint) {
            return Err(bad());
        }
        let (key, value_pos) = match mp::read(body, pos) {
            Ok((Mp::UInt(k), p)) => (k, p),
            _ => return Err(bad()),
        };
        let next = mp::skip(body, value_pos).map_err(|_| bad())?;
        if let Some(i) = wanted.iter().position(|&(k, _)| k as u64 == key) {
            if type_at(body, value_pos) != Some(wanted[i].1) {
                return Err(bad());
            }
            out[i] = Some(&body[value_pos..next]);
        }
        pos = next;
    }
    if pos != body.len() {
        return Err(RequestError::msgpack(sync, "packet end", lines.end));
    }
    Ok(out)
}

/// The payload of a MessagePack str value (already type-checked).
fn str_payload(value: &[u8]) -> &[u8] {
    match mp::read(value, 0) {
        Ok((Mp::Str(s), _)) => s,
        _ => &[],
    }
}

const EMPTY_ARRAY: &[u8] = &[0x90];

/// Decodes one packet (as framed by [`next_packet`]) into a request, with 2.6's checks and
/// error texts. An unknown type is error 48 `Unknown request type %u` (of the low 8 bits of
/// the type: 2.6 dispatches on a `uint8_t`).
pub fn decode_request(packet: &[u8]) -> Result<Request<'_>, RequestError> {
    match plain_request(packet) {
        Some(request) => Ok(request),
        None => checked_request(packet),
    }
}

fn checked_request(packet: &[u8]) -> Result<Request<'_>, RequestError> {
    let (header, body_range) = decode_header(packet)?;
    let sync = header.sync;
    let body = body_range.map(|r| &packet[r]);
    // 2.6 dispatches on `uint8_t type`: 0x101 is SELECT there, and so here.
    let code = header.kind as u8;
    let kind = RequestType::from_code(code).ok_or_else(|| {
        RequestError::new(
            sync,
            client_error!(ER_UNKNOWN_REQUEST_TYPE, code as u32),
            IPROTO_CC,
            1313,
        )
    })?;
    let body = match kind {
        RequestType::Select
        | RequestType::Insert
        | RequestType::Replace
        | RequestType::Update
        | RequestType::Delete
        | RequestType::Upsert => Body::Dml(decode_dml(kind, sync, body)?),
        RequestType::Call16 | RequestType::Call | RequestType::Eval => {
            let lines = Lines {
                no_body: 1028,
                body: 1040,
                end: 1080,
            };
            let wanted = [
                (keys::FUNCTION_NAME, MpType::Str),
                (keys::EXPR, MpType::Str),
                (keys::TUPLE, MpType::Array),
            ];
            let [name, expr, args] = decode_keyed(sync, body, wanted, &lines)?;
            let args = args.unwrap_or(EMPTY_ARRAY);
            if kind == RequestType::Eval {
                let expr = expr.ok_or_else(|| RequestError::missing(sync, keys::EXPR, 1086))?;
                Body::Eval {
                    expr: str_payload(expr),
                    args,
                }
            } else {
                let name = name.ok_or_else(|| RequestError::missing(sync, keys::FUNCTION_NAME, 1093))?;
                Body::Call {
                    function_name: str_payload(name),
                    args,
                }
            }
        }
        RequestType::Auth => {
            let lines = Lines {
                no_body: 1109,
                body: 1121,
                end: 1154,
            };
            let wanted = [(keys::USER_NAME, MpType::Str), (keys::TUPLE, MpType::Array)];
            let [user, tuple] = decode_keyed(sync, body, wanted, &lines)?;
            let user = user.ok_or_else(|| RequestError::missing(sync, keys::USER_NAME, 1159))?;
            let tuple = tuple.ok_or_else(|| RequestError::missing(sync, keys::TUPLE, 1164))?;
            Body::Auth(Auth {
                user_name: str_payload(user),
                tuple,
            })
        }
        RequestType::Ping => Body::Ping,
        _ => Body::Raw(body),
    };
    Ok(Request {
        sync,
        schema_version: header.schema_version,
        kind,
        body,
        header,
    })
}

// ---------------------------------------------------------------------------------------
// Response encoding

/// Length prefix + header of every response: `ce <len u32>` and
/// `83 00 ce <type u32> 01 cf <sync u64> 05 ce <schema_version u32>`, fixed widths as 2.6.
pub const HEADER_LEN: usize = 28;

fn write_header(out: &mut Vec<u8>, kind: u32, sync: u64, schema_version: u32) {
    out.push(0xce);
    out.extend_from_slice(&[0; 4]); // patched by `finish`
    out.extend_from_slice(&[0x83, keys::REQUEST_TYPE, 0xce]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&[keys::SYNC, 0xcf]);
    out.extend_from_slice(&sync.to_be_bytes());
    out.extend_from_slice(&[keys::SCHEMA_VERSION, 0xce]);
    out.extend_from_slice(&schema_version.to_be_bytes());
}

/// Writes the length prefix once the body is in place.
fn finish(mut out: Vec<u8>) -> Vec<u8> {
    patch_length(&mut out, 0);
    out
}

/// The length prefix of the response that begins at `start` and ends `out`.
fn patch_length(out: &mut [u8], start: usize) {
    // Packets are far below 4 GiB (the length limit is 2 GiB); saturate rather than panic.
    let len = u32::try_from(out.len() - start - 5).unwrap_or(u32::MAX);
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn response(kind: u32, sync: u64, schema_version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    write_header(&mut out, kind, sync, schema_version);
    out.extend_from_slice(body);
    finish(out)
}

/// A success response; `body` is an encoded map, `None` is the empty map (PING, AUTH).
pub fn encode_ok(sync: u64, schema_version: u32, body: Option<&[u8]>) -> Vec<u8> {
    response(IPROTO_OK, sync, schema_version, body.unwrap_or(&[0x80]))
}

/// `{0x30: [items]}` as 2.6 writes it (array32 header): `items` is `count` encoded values.
pub fn encode_data(sync: u64, schema_version: u32, count: u32, items: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 7 + items.len());
    append_data(&mut out, sync, schema_version, count, items);
    out
}

/// [`encode_ok`] of an empty body appended to `out` (PING's reply).
pub fn append_ok(out: &mut Vec<u8>, sync: u64, schema_version: u32) {
    let start = out.len();
    write_header(out, IPROTO_OK, sync, schema_version);
    out.push(0x80);
    patch_length(out, start);
}

/// Begins a `{0x30: [...]}` reply in `out`; its items follow, then [`end_data`] with the
/// returned position and their count.
pub fn begin_data(out: &mut Vec<u8>, sync: u64, schema_version: u32) -> usize {
    begin_data_of(out, IPROTO_OK, sync, schema_version)
}

fn begin_data_of(out: &mut Vec<u8>, kind: u32, sync: u64, schema_version: u32) -> usize {
    let start = out.len();
    write_header(out, kind, sync, schema_version);
    out.extend_from_slice(&[0x81, keys::DATA, 0xdd, 0, 0, 0, 0]);
    start
}

pub fn end_data(out: &mut [u8], start: usize, count: u32) {
    out[start + HEADER_LEN + 3..start + HEADER_LEN + 7].copy_from_slice(&count.to_be_bytes());
    patch_length(out, start);
}

/// [`encode_data`] appended to `out` (a connection's output buffer).
pub fn append_data(out: &mut Vec<u8>, sync: u64, schema_version: u32, count: u32, items: &[u8]) {
    let start = begin_data(out, sync, schema_version);
    out.extend_from_slice(items);
    end_data(out, start, count);
}

/// A CHUNK message (`box.session.push`): `{0x30: [value]}` with the request's sync, sent
/// before the final response.
pub fn encode_push(sync: u64, schema_version: u32, value: &[u8]) -> Vec<u8> {
    let mut r = DataResponse::with_type(IPROTO_CHUNK, sync, schema_version);
    r.push(value);
    r.finish()
}

/// Builds a `{0x30: [...]}` response one value at a time (select results).
pub struct DataResponse {
    buf: Vec<u8>,
    count: u32,
}

impl DataResponse {
    pub fn new(sync: u64, schema_version: u32) -> DataResponse {
        DataResponse::with_type(IPROTO_OK, sync, schema_version)
    }

    fn with_type(kind: u32, sync: u64, schema_version: u32) -> DataResponse {
        let mut buf = Vec::with_capacity(64);
        begin_data_of(&mut buf, kind, sync, schema_version);
        DataResponse { buf, count: 0 }
    }

    /// Appends one encoded value.
    pub fn push(&mut self, value: &[u8]) {
        self.buf.extend_from_slice(value);
        self.count = self.count.saturating_add(1);
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn finish(mut self) -> Vec<u8> {
        end_data(&mut self.buf, 0, self.count);
        self.buf
    }
}

/// Type-specific payload of an error-stack entry (key 0x06).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorFields<'a> {
    #[default]
    None,
    AccessDenied {
        object_type: &'a str,
        object_name: &'a str,
        access_type: &'a str,
    },
    Custom {
        custom_type: &'a str,
    },
}

/// One entry of the 0x52 error stack (`mp_encode_error_one`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorInfo<'a> {
    /// `ClientError`, `AccessDeniedError`, `LuajitError`, `CustomError`, ...
    pub type_name: &'a str,
    pub file: &'a str,
    pub line: u32,
    pub message: &'a str,
    pub errno: u32,
    pub code: u32,
    pub fields: ErrorFields<'a>,
}

impl<'a> ErrorInfo<'a> {
    /// A ClientError raised at `file:line` (use `""`, 0 when there is no meaningful place).
    pub fn client(e: &'a ClientError, file: &'a str, line: u32) -> ErrorInfo<'a> {
        ErrorInfo {
            type_name: "ClientError",
            file,
            line,
            message: &e.message,
            errno: 0,
            code: e.code,
            fields: ErrorFields::None,
        }
    }
}

fn write_error_entry(out: &mut Vec<u8>, e: &ErrorInfo) {
    // 2.6 writes the line (key 2) before the file (key 1).
    let extra = !matches!(e.fields, ErrorFields::None);
    mp::write_map_header(out, if extra { 7 } else { 6 });
    mp::write_uint(out, 0x00);
    mp::write_str(out, e.type_name.as_bytes());
    mp::write_uint(out, 0x02);
    mp::write_uint(out, e.line as u64);
    mp::write_uint(out, 0x01);
    mp::write_str(out, e.file.as_bytes());
    mp::write_uint(out, 0x03);
    mp::write_str(out, e.message.as_bytes());
    mp::write_uint(out, 0x04);
    mp::write_uint(out, e.errno as u64);
    mp::write_uint(out, 0x05);
    mp::write_uint(out, e.code as u64);
    match e.fields {
        ErrorFields::None => {}
        ErrorFields::AccessDenied {
            object_type,
            object_name,
            access_type,
        } => {
            mp::write_uint(out, 0x06);
            mp::write_map_header(out, 3);
            for (k, v) in [
                ("object_type", object_type),
                ("object_name", object_name),
                ("access_type", access_type),
            ] {
                mp::write_str(out, k.as_bytes());
                mp::write_str(out, v.as_bytes());
            }
        }
        ErrorFields::Custom { custom_type } => {
            mp::write_uint(out, 0x06);
            mp::write_map_header(out, 1);
            mp::write_str(out, b"custom_type");
            mp::write_str(out, custom_type.as_bytes());
        }
    }
}

/// An error response for a stack of errors (the first is the one raised, the rest its
/// causes): header type `0x8000 | code`, body `{0x31: message, 0x52: {0: [entries]}}`.
/// An empty stack is encoded as `ER_UNKNOWN` with an empty message.
pub fn encode_error_stack(sync: u64, schema_version: u32, stack: &[ErrorInfo]) -> Vec<u8> {
    let (code, message) = stack.first().map_or((0, ""), |e| (e.code, e.message));
    let mut out = Vec::with_capacity(HEADER_LEN + 64 + 2 * message.len());
    write_header(&mut out, IPROTO_TYPE_ERROR | code, sync, schema_version);
    out.extend_from_slice(&[0x82, keys::ERROR_24]);
    mp::write_str(&mut out, message.as_bytes());
    out.extend_from_slice(&[keys::ERROR, 0x81, 0x00]);
    mp::write_array_header(&mut out, stack.len() as u32);
    for e in stack {
        write_error_entry(&mut out, e);
    }
    finish(out)
}

/// An error response for a ClientError raised from Rust (no Tarantool source location: file
/// `""`, line 0 in the stack).
pub fn encode_error(sync: u64, schema_version: u32, e: &ClientError) -> Vec<u8> {
    encode_error_stack(sync, schema_version, &[ErrorInfo::client(e, "", 0)])
}

// ---------------------------------------------------------------------------------------
// Response decoding (the client side)

/// A decoded response, as net.box reads one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Response<'a> {
    pub header: Header,
    pub sync: u64,
    pub schema_version: u64,
    /// `None` for OK and CHUNK; the error code for `0x8000 | code`.
    pub error_code: Option<u32>,
    pub is_push: bool,
    /// The body map (absent bodies are empty maps to clients).
    pub body: Option<&'a [u8]>,
}

impl<'a> Response<'a> {
    /// The value of body key `key`, whole (header included).
    pub fn body_value(&self, key: u8) -> Option<&'a [u8]> {
        let body = self.body?;
        let (n, mut pos) = match mp::read(body, 0) {
            Ok((Mp::Map(n), pos)) => (n, pos),
            _ => return None,
        };
        for _ in 0..n {
            let (k, value_pos) = match mp::read(body, pos) {
                Ok((k, p)) => (k, p),
                Err(_) => return None,
            };
            let next = mp::skip(body, value_pos).ok()?;
            if k == Mp::UInt(key as u64) {
                return Some(&body[value_pos..next]);
            }
            pos = next;
        }
        None
    }

    /// The `{0x30: [...]}` array of a data or push response.
    pub fn data(&self) -> Option<&'a [u8]> {
        self.body_value(keys::DATA)
    }

    /// The message of an error response: key 0x31's text (the 0x52 stack repeats it).
    pub fn error_message(&self) -> Option<&'a [u8]> {
        match mp::read(self.body_value(keys::ERROR_24)?, 0) {
            Ok((Mp::Str(s), _)) => Some(s),
            _ => None,
        }
    }
}

/// Decodes a framed response packet (header checks as for requests).
pub fn decode_response(packet: &[u8]) -> Result<Response<'_>, RequestError> {
    let (header, body) = decode_header(packet)?;
    let kind = header.kind;
    Ok(Response {
        header,
        sync: header.sync,
        schema_version: header.schema_version.unwrap_or(0),
        error_code: (kind & IPROTO_TYPE_ERROR != 0).then_some(kind & !IPROTO_TYPE_ERROR),
        is_push: kind == IPROTO_CHUNK,
        body: body.map(|r| &packet[r]),
    })
}

// ---------------------------------------------------------------------------------------
// Fuzzing entry point

/// What [`decode_any`] found in a buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeSummary {
    pub requests: usize,
    pub request_errors: usize,
    pub frame_error: Option<FrameError>,
    /// Bytes left over (an incomplete packet).
    pub rest: usize,
}

/// Frames and decodes every packet in `buf` as the server would; never panics (a fuzz
/// target). Encodes each outcome too, so the error paths are exercised end to end.
pub fn decode_any(buf: &[u8]) -> DecodeSummary {
    let mut summary = DecodeSummary::default();
    let mut pos = 0;
    loop {
        match next_packet(&buf[pos..], PACKET_SIZE_MAX) {
            Ok(Some(frame)) => {
                let packet = &buf[pos + frame.packet.start..pos + frame.packet.end];
                match decode_request(packet) {
                    Ok(req) => {
                        summary.requests += 1;
                        if let Body::Auth(a) = req.body {
                            let _ = a.scramble();
                        }
                        let _ = req.check_schema_version(1);
                    }
                    Err(e) => {
                        summary.request_errors += 1;
                        let _ = e.encode(1);
                    }
                }
                pos += frame.consumed;
            }
            Ok(None) => break,
            Err(e) => {
                let _ = e.encode(1);
                summary.frame_error = Some(e);
                break;
            }
        }
    }
    summary.rest = buf.len() - pos;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_appended_to_a_buffer_are_the_encoded_ones() {
        let mut out = vec![7u8];
        append_ok(&mut out, 5, 80);
        assert_eq!(out[1..], encode_ok(5, 80, None)[..]);
        let mut out = vec![7u8];
        let start = begin_data(&mut out, 9, 81);
        out.extend_from_slice(&[0x91, 0x01, 0x92, 0x02, 0x03]);
        end_data(&mut out, start, 2);
        let mut expected = DataResponse::new(9, 81);
        expected.push(&[0x91, 0x01]);
        expected.push(&[0x92, 0x02, 0x03]);
        assert_eq!(out[1..], expected.finish()[..]);
        let mut out = vec![7u8];
        append_data(&mut out, 9, 81, 1, &[0x05]);
        assert_eq!(out[1..], encode_data(9, 81, 1, &[0x05])[..]);
    }

    #[test]
    fn plain_requests_read_as_the_checked_decoder_reads_them() {
        let header = |kind: u8| vec![0x83, 0x00, kind, 0x01, 0xcd, 0x01, 0x02, 0x05, 0x00];
        let with_body = |kind: u8, body: &[u8]| {
            let mut p = header(kind);
            p.extend_from_slice(body);
            p
        };
        let valid = [
            header(0x40),
            // select {space_id: 512, index_id: 0, limit: 2^32-1, offset: 0, iterator: 0, key: [7]}
            with_body(
                0x01,
                &[
                    0x86, 0x10, 0xcd, 0x02, 0x00, 0x11, 0x00, 0x12, 0xce, 0xff, 0xff, 0xff, 0xff, 0x13, 0x00, 0x14,
                    0x00, 0x20, 0x91, 0x07,
                ],
            ),
            // replace {space_id: 512, tuple: [1, "ab"]}
            with_body(
                0x03,
                &[0x82, 0x10, 0xcd, 0x02, 0x00, 0x21, 0x92, 0x01, 0xa2, b'a', b'b'],
            ),
            // upsert {space_id, tuple, ops, index_base: 1}
            with_body(
                0x09,
                &[
                    0x84, 0x10, 0x05, 0x21, 0x91, 0x01, 0x28, 0x91, 0x93, 0xa1, b'+', 0x01, 0x01, 0x15, 0x01,
                ],
            ),
            // call {function_name: "echo", tuple: [1]}
            with_body(0x0a, &[0x82, 0x22, 0xa4, b'e', b'c', b'h', b'o', 0x21, 0x91, 0x01]),
            // eval {expr: "return", tuple: []}
            with_body(
                0x08,
                &[0x82, 0x27, 0xa6, b'r', b'e', b't', b'u', b'r', b'n', 0x21, 0x90],
            ),
        ];
        let mut accepted = 0;
        let mut check = |p: &[u8]| {
            if let Some(plain) = plain_request(p) {
                accepted += 1;
                assert_eq!(checked_request(p).as_ref(), Ok(&plain), "{p:x?}");
            }
        };
        for p in &valid {
            check(p);
            // Every truncation, and every byte changed to each of a set of values.
            for len in 0..p.len() {
                check(&p[..len]);
            }
            for i in 0..p.len() {
                for b in [
                    0x00, 0x01, 0x10, 0x15, 0x20, 0x21, 0x22, 0x28, 0x2a, 0x7f, 0x80, 0x81, 0x90, 0xa0, 0xc0, 0xc1,
                    0xcc, 0xcf, 0xd0, 0xdc, 0xff,
                ] {
                    let mut m = p.clone();
                    m[i] = b;
                    check(&m);
                }
            }
        }
        assert!(accepted > valid.len() * 10, "the plain reader took only {accepted}");
        for p in &valid {
            assert!(plain_request(p).is_some(), "{p:x?}");
        }
    }

    #[test]
    fn plain_headers_read_as_the_checked_reader_reads_them() {
        let headers: &[&[u8]] = &[
            &[0x83, 0x00, 0x40, 0x01, 0x07, 0x05, 0x00],
            &[
                0x83, 0x00, 0x0a, 0x01, 0xcf, 1, 2, 3, 4, 5, 6, 7, 8, 0x05, 0xce, 0, 0, 0, 80,
            ],
            &[0x82, 0x01, 0xcd, 0x12, 0x34, 0x00, 0xcc, 0xff],
            &[0x85, 0x02, 0x01, 0x03, 0xcc, 9, 0x07, 0x01, 0x08, 0x02, 0x09, 0x01],
            &[0x82, 0x00, 0x01, 0x00, 0x02],
            &[0x80],
        ];
        for &h in headers {
            assert_eq!(plain_header(h), checked_header(h).ok(), "{h:x?}");
        }
        // Left to the checked reader: a double timestamp, an unknown or non-fixint key,
        // a value of another type, a truncated value, a non-fixmap header.
        let others: &[&[u8]] = &[
            &[0x81, 0x04, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x81, 0x06, 0x01],
            &[0x81, 0xcc, 0x01, 0x01],
            &[0x81, 0x01, 0xa1, b'x'],
            &[0x81, 0x01, 0xce, 0, 0],
            &[0x81, 0x01],
            &[0xde, 0x00, 0x01, 0x01, 0x01],
        ];
        for &h in others {
            assert_eq!(plain_header(h), None, "{h:x?}");
        }
    }

    /// Raw captures from a real 2.6.0 server (spec/box-observed/iproto/capture_260.txt).
    const CAPTURE: &str = include_str!("../../tests/data/iproto/capture_260.txt");

    /// One `### title` section of the capture: the request and response bytes.
    struct Section {
        title: String,
        request: Vec<u8>,
        response: Vec<u8>,
    }

    /// Hex-dump lines are `<prefix>%04x  <47 columns of hex>  |ascii|`.
    fn hex_of_line(line: &str, prefix: &str) -> Vec<u8> {
        let hex = &line[prefix.len() + 6..(prefix.len() + 6 + 47).min(line.len())];
        hex.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn sections() -> Vec<Section> {
        let mut out: Vec<Section> = Vec::new();
        for line in CAPTURE.lines() {
            if let Some(title) = line.strip_prefix("### ") {
                out.push(Section {
                    title: title.to_string(),
                    request: Vec::new(),
                    response: Vec::new(),
                });
            } else if let Some(s) = out.last_mut() {
                if line.starts_with(">> ") {
                    s.request.extend(hex_of_line(line, ">> "));
                } else if line.starts_with("<< ") {
                    s.response.extend(hex_of_line(line, "<< "));
                } else if line.len() > 6 && line.as_bytes()[4] == b' ' && line.contains('|') {
                    // The greeting's dump has no prefix.
                    s.response.extend(hex_of_line(line, ""));
                }
            }
        }
        out
    }

    fn section(title: &str) -> Section {
        sections()
            .into_iter()
            .find(|s| s.title.starts_with(title))
            .unwrap_or_else(|| panic!("no section {title}"))
    }

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    const SV: u32 = 81;

    /// The request packet of a captured section, framed.
    fn packet(s: &Section) -> &[u8] {
        let f = next_packet(&s.request, PACKET_SIZE_MAX).unwrap().unwrap();
        assert_eq!(f.consumed, s.request.len(), "{}", s.title);
        &s.request[f.packet]
    }

    fn capture_uuid() -> Uuid {
        Uuid::parse_str("41a9f292-46b1-4b6d-9542-e7bad0c9b5d1").unwrap()
    }

    #[test]
    fn greeting_is_byte_exact() {
        let captured = section("GREETING").response;
        assert_eq!(captured.len(), GREETING_SIZE);
        let salt: [u8; 32] = base64_decode(b"1aaQFi0HmrsWbrOi1HBHpqrRvJsXCjB7rFCRkZm7vDY=")
            .try_into()
            .unwrap();
        let g = greeting("2.6.0", &capture_uuid(), &salt);
        assert_eq!(&g[..], &captured[..]);

        let parsed = parse_greeting(&g).unwrap();
        assert_eq!(parsed.version, "2.6.0");
        assert_eq!(parsed.version_id, 0x020600);
        assert_eq!(parsed.protocol, "Binary");
        assert_eq!(parsed.uuid, capture_uuid());
        assert_eq!(parsed.salt, salt);
    }

    #[test]
    fn greeting_parse_accepts_what_netbox_accepts_and_rejects_the_rest() {
        let pad = |l1: &str, l2: &str| -> [u8; 128] {
            let mut g = [b' '; 128];
            g[..l1.len()].copy_from_slice(l1.as_bytes());
            g[63] = b'\n';
            g[64..64 + l2.len()].copy_from_slice(l2.as_bytes());
            g[127] = b'\n';
            g
        };
        let salt = "1aaQFi0HmrsWbrOi1HBHpqrRvJsXCjB7rFCRkZm7vDY=";
        let uuid = "41a9f292-46b1-4b6d-9542-e7bad0c9b5d1";
        // Extra spaces between the parts are skipped.
        let g = parse_greeting(&pad(&format!("Tarantool 1.10.3 (Binary)  {uuid}"), salt)).unwrap();
        assert_eq!((g.version.as_str(), g.version_id), ("1.10.3", version_id(1, 10, 3)));
        assert_eq!(g.uuid.to_string(), uuid);
        // The console banner parses, without uuid or salt.
        let g = parse_greeting(&pad(
            "Tarantool 2.6.0 (Lua console)",
            "type 'help' for interactive help",
        ))
        .unwrap();
        assert_eq!(g.protocol, "Lua console");
        assert!(g.salt.is_empty());
        // Pre-1.6.7 servers have no protocol part.
        assert_eq!(
            parse_greeting(&pad("Tarantool 1.6.6", salt)).unwrap().protocol,
            "Binary"
        );
        for (l1, l2) in [
            (format!("Tarantul 2.6.0 (Binary) {uuid}"), salt),
            (format!("Tarantool x.6.0 (Binary) {uuid}"), salt),
            (format!("Tarantool 2.6 (Binary) {uuid}"), salt),
            ("Tarantool 2.6.0 (Binary) not-a-uuid".to_string(), salt),
            (format!("Tarantool 2.6.0 {uuid}"), salt),
            (format!("Tarantool 2.6.0 (Binary) {uuid}"), "c2hvcnQ="),
        ] {
            assert!(parse_greeting(&pad(&l1, l2)).is_err(), "{l1} / {l2}");
        }
        let mut g = pad(&format!("Tarantool 2.6.0 (Binary) {uuid}"), salt);
        g[63] = b' ';
        assert!(parse_greeting(&g).is_err());
    }

    #[test]
    fn framing_accepts_any_uint_prefix_and_waits_for_more() {
        // Python's smallest prefix and net.box's ce prefix frame the same packet.
        let body = hex("82 00 40 01 01");
        for prefix in [
            hex("05"),
            hex("cc 05"),
            hex("cd 00 05"),
            hex("ce 00 00 00 05"),
            hex("cf 0 0 0 0 0 0 0 5"),
        ] {
            let mut buf = prefix.clone();
            buf.extend(&body);
            buf.extend(&body[..2]); // the start of the next packet
            let f = next_packet(&buf, PACKET_SIZE_MAX).unwrap().unwrap();
            assert_eq!(f.packet, prefix.len()..prefix.len() + 5);
            assert_eq!(f.consumed, prefix.len() + 5);
            for cut in 0..prefix.len() + 5 {
                assert_eq!(next_packet(&buf[..cut], PACKET_SIZE_MAX), Ok(None), "cut {cut}");
            }
        }
        for bad in [hex("d0 05"), hex("a1 05"), hex("80"), hex("c0"), hex("ff"), hex("c1")] {
            let e = next_packet(&bad, PACKET_SIZE_MAX).unwrap_err();
            assert_eq!(e, FrameError::Length);
            assert_eq!(e.to_client_error().message, "Invalid MsgPack - packet length");
        }
        let e = next_packet(&hex("ce 00 01 00 00"), 1000).unwrap_err();
        assert_eq!(e, FrameError::TooBig(65536));
        assert_eq!(
            e.to_string(),
            "Invalid MsgPack - too big packet size in the header: 65536"
        );
        assert_eq!(
            next_packet(&hex("cf ff ff ff ff ff ff ff ff"), PACKET_SIZE_MAX),
            Err(FrameError::TooBig(u64::MAX))
        );
        // A zero-length packet frames; decoding it is a request error, not a framing one.
        let f = next_packet(&hex("00 05"), PACKET_SIZE_MAX).unwrap().unwrap();
        assert_eq!((f.packet, f.consumed), (1..1, 1));
        assert_eq!(
            decode_request(&[]).unwrap_err().error.message,
            "Invalid MsgPack - packet header"
        );
    }

    #[test]
    fn captured_requests_decode() {
        let req = |title: &str| {
            let s = section(title);
            let p = packet(&s).to_vec();
            (s, p)
        };
        let (_, p) = req("PING (no body)");
        let r = decode_request(&p).unwrap();
        assert_eq!(
            (r.kind, r.sync, r.body, r.schema_version),
            (RequestType::Ping, 1, Body::Ping, None)
        );
        let (_, p) = req("PING (empty body map)");
        assert_eq!(decode_request(&p).unwrap().body, Body::Ping);

        let (_, p) = req("CALL add(1,2)");
        let r = decode_request(&p).unwrap();
        assert_eq!(r.kind, RequestType::Call);
        assert_eq!(
            r.body,
            Body::Call {
                function_name: b"add",
                args: &hex("92 01 02")
            }
        );
        let (_, p) = req("CALL_16 multi()");
        assert_eq!(decode_request(&p).unwrap().kind, RequestType::Call16);

        let (_, p) = req("EVAL return ...");
        let r = decode_request(&p).unwrap();
        assert_eq!(
            r.body,
            Body::Eval {
                expr: b"return ...",
                args: &hex("93 01 a1 78 c0")
            }
        );

        let (_, p) = req("AUTH test/pass");
        let r = decode_request(&p).unwrap();
        let Body::Auth(auth) = r.body else { panic!() };
        assert_eq!(auth.user_name, b"test");
        assert_eq!(auth.part_count(), 2);
        assert_eq!(
            auth.scramble().unwrap(),
            &hex("bb ac 08 47 2e 5f ef a8 0b 7c e2 24 c3 6c fd 7e 30 f7 4c 60")[..]
        );

        let (_, p) = req("SELECT tester key [2]");
        let r = decode_request(&p).unwrap();
        assert_eq!(r.sync, 13);
        let Body::Dml(d) = r.body else { panic!() };
        assert_eq!(
            (d.space_id, d.index_id, d.limit, d.offset, d.iterator),
            (512, 0, u32::MAX, 0, 0)
        );
        assert_eq!(d.key, Some(&[0x91, 0x02][..]));

        let (_, p) = req("UPDATE [3]");
        let Body::Dml(d) = decode_request(&p).unwrap().body else {
            panic!()
        };
        assert_eq!(d.key, Some(&[0x91, 0x03][..]));
        assert_eq!(d.tuple, Some(&hex("91 93 a1 3d 01 a4 74 72 65 73")[..]));

        let (_, p) = req("UPSERT [4,four]");
        let r = decode_request(&p).unwrap();
        assert_eq!(r.kind, RequestType::Upsert);
        let Body::Dml(d) = r.body else { panic!() };
        assert_eq!(d.tuple, Some(&hex("92 04 a4 66 6f 75 72")[..]));
        assert_eq!(d.ops, Some(&hex("91 93 a1 3d 01 a6 63 75 61 74 72 6f")[..]));

        for (title, kind) in [
            ("INSERT [3,three]", RequestType::Insert),
            ("REPLACE [3,THREE]", RequestType::Replace),
            ("DELETE [4]", RequestType::Delete),
            ("SELECT _vindex", RequestType::Select),
        ] {
            let (_, p) = req(title);
            assert_eq!(decode_request(&p).unwrap().kind, kind, "{title}");
        }

        // Every captured request except the ID one decodes.
        for s in sections().iter().filter(|s| !s.request.is_empty()) {
            let r = decode_request(packet(s));
            assert_eq!(r.is_err(), s.title.starts_with("ID request"), "{}", s.title);
        }
    }

    /// Items of a captured `{0x30: [...]}` response: what the server would have pushed.
    fn data_items(response: &[u8]) -> (u32, &[u8]) {
        assert_eq!(&response[HEADER_LEN..HEADER_LEN + 3], &[0x81, 0x30, 0xdd]);
        let count = u32::from_be_bytes(response[HEADER_LEN + 3..HEADER_LEN + 7].try_into().unwrap());
        (count, &response[HEADER_LEN + 7..])
    }

    #[test]
    fn ok_and_data_responses_are_byte_exact() {
        for (title, sync) in [
            ("PING (no body)", 1),
            ("PING (empty body map)", 2),
            ("AUTH test/pass", 6),
        ] {
            assert_eq!(encode_ok(sync, SV, None), section(title).response, "{title}");
        }
        let mut n = 0;
        for s in sections() {
            let Ok(req) = decode_request(packet_or_empty(&s)) else {
                continue;
            };
            if s.response.get(HEADER_LEN + 1) != Some(&keys::DATA) {
                continue;
            }
            let (count, items) = data_items(&s.response);
            assert_eq!(encode_data(req.sync, SV, count, items), s.response, "{}", s.title);
            // The same, value by value.
            let mut r = DataResponse::new(req.sync, SV);
            let mut pos = 0;
            while pos < items.len() {
                let next = mp::skip(items, pos).unwrap();
                r.push(&items[pos..next]);
                pos = next;
            }
            assert_eq!(r.count(), count);
            assert_eq!(r.finish(), s.response, "{}", s.title);
            n += 1;
        }
        assert!(n >= 12, "only {n} data responses checked");
        // encode_ok with a ready body is the same packet.
        let s = section("CALL add(1,2)");
        assert_eq!(encode_ok(3, SV, Some(&s.response[HEADER_LEN..])), s.response);
    }

    fn packet_or_empty(s: &Section) -> &[u8] {
        if s.request.is_empty() {
            &[]
        } else {
            packet(s)
        }
    }

    #[test]
    fn captured_responses_decode_for_a_client() {
        let mut errors = Vec::new();
        for s in sections().iter().filter(|s| !s.request.is_empty()) {
            let f = next_packet(&s.response, PACKET_SIZE_MAX).unwrap().unwrap();
            assert_eq!(f.consumed, s.response.len());
            let r = decode_response(&s.response[f.packet]).unwrap();
            let req = decode_request(packet(s)).map(|q| q.sync).unwrap_or_else(|e| e.sync);
            assert_eq!((r.sync, r.schema_version, r.is_push), (req, 81, false), "{}", s.title);
            match r.error_code {
                Some(code) => {
                    assert!(r.error_message().is_some() && r.data().is_none(), "{}", s.title);
                    errors.push((s.title.split(' ').take(2).collect::<Vec<_>>().join(" "), code));
                }
                None => assert!(r
                    .data()
                    .map_or(r.body == Some(&[0x80]), |d| mp::read_array(d, 0).is_some())),
            }
        }
        let want = [
            ("EVAL as", 42),
            ("AUTH test", 47),
            ("CALL fails()", 32),
            ("CALL unknown", 33),
            ("INSERT duplicate", 3),
            ("SELECT unknown", 36),
            ("ID request", 48),
        ];
        assert_eq!(errors, want.map(|(t, c)| (t.to_string(), c)));
        let sel = section("SELECT tester key [2]").response;
        let r = decode_response(&sel[5..]).unwrap();
        assert_eq!(r.data(), Some(&hex("dd 00 00 00 01 92 02 a3 74 77 6f")[..]));
        let dup = section("INSERT duplicate").response;
        let r = decode_response(&dup[5..]).unwrap();
        assert_eq!(r.error_code, Some(3));
        assert_eq!(
            r.error_message(),
            Some(&b"Duplicate key exists in unique index 'primary' in space 'tester'"[..])
        );
        let push = encode_push(4, SV, &[0x01]);
        let r = decode_response(&push[5..]).unwrap();
        assert!(r.is_push && r.error_code.is_none());
        assert_eq!(r.data(), Some(&hex("dd 00 00 00 01 01")[..]));
    }

    #[test]
    fn push_and_final_response_are_byte_exact() {
        // spec/box.md §1.10: box.session.push('pushed'), then return 'final', sync 4 (the
        // elided sync bytes are zeros).
        let push = hex(
            "ce 00 00 00 25 83 00 ce 00 00 00 80 01 cf 00 00 00 00 00 00 00 04 05 ce 00 00 00 51
             81 30 dd 00 00 00 01 a6 70 75 73 68 65 64",
        );
        let fin = hex(
            "ce 00 00 00 24 83 00 ce 00 00 00 00 01 cf 00 00 00 00 00 00 00 04 05 ce 00 00 00 51
             81 30 dd 00 00 00 01 a5 66 69 6e 61 6c",
        );
        let mut v = Vec::new();
        mp::write_str(&mut v, b"pushed");
        assert_eq!(encode_push(4, SV, &v), push);
        let mut v = Vec::new();
        mp::write_str(&mut v, b"final");
        assert_eq!(encode_data(4, SV, 1, &v), fin);
    }

    #[test]
    fn error_responses_are_byte_exact() {
        let check = |title: &str, sync: u64, info: ErrorInfo| {
            assert_eq!(
                encode_error_stack(sync, SV, &[info]),
                section(title).response,
                "{title}"
            );
        };
        let msg = "Execute access to universe '' is denied for user 'guest'";
        check(
            "EVAL as guest",
            4,
            ErrorInfo {
                type_name: "AccessDeniedError",
                file: "./src/box/session.cc",
                line: 332,
                message: msg,
                errno: 0,
                code: 42,
                fields: ErrorFields::AccessDenied {
                    object_type: "universe",
                    object_name: "",
                    access_type: "Execute",
                },
            },
        );
        let e = ClientError::with_message(47, "Incorrect password supplied for user 'test'");
        check(
            "AUTH test wrong",
            5,
            ErrorInfo::client(&e, "./src/box/authentication.cc", 96),
        );
        check(
            "CALL fails()",
            10,
            ErrorInfo {
                type_name: "LuajitError",
                file: "./src/lua/utils.c",
                line: 1005,
                message: "server.lua:17: boom",
                errno: 0,
                code: 32,
                fields: ErrorFields::None,
            },
        );
        let e = client_error!(crate::box_::errcode::ER_NO_SUCH_PROC, 10, "nosuchfunc");
        check(
            "CALL unknown function",
            11,
            ErrorInfo::client(&e, "./src/box/lua/call.c", 116),
        );
        let e = client_error!(crate::box_::errcode::ER_TUPLE_FOUND, "primary", "tester");
        check(
            "INSERT duplicate",
            15,
            ErrorInfo::client(&e, "./src/box/memtx_tree.c", 577),
        );
        let e = client_error!(crate::box_::errcode::ER_NO_SUCH_SPACE, "999");
        check(
            "SELECT unknown space",
            20,
            ErrorInfo::client(&e, "./src/box/schema.h", 84),
        );

        // The codec's own error for the ID request is what 2.6.0 sent, location included.
        let s = section("ID request");
        let err = decode_request(packet(&s)).unwrap_err();
        assert_eq!(err.sync, 21);
        assert_eq!(err.error.message, "Unknown request type 73");
        assert_eq!(err.encode(SV), s.response);

        // Without a location: same body shape, empty file, line 0.
        let e = ClientError::with_message(3, "x");
        let out = encode_error(7, SV, &e);
        assert_eq!(
            &out[HEADER_LEN - 23..],
            &hex("83 00 ce 00 00 80 03 01 cf 00 00 00 00 00 00 00 07 05 ce 00 00 00 51
                 82 31 a1 78 52 81 00 91 86 00 ab 43 6c 69 65 6e 74 45 72 72 6f 72
                 02 00 01 a0 03 a1 78 04 00 05 03")[..]
        );
        assert_eq!(
            u32::from_be_bytes(out[1..5].try_into().unwrap()) as usize,
            out.len() - 5
        );
    }

    /// Builds a packet from a header and an optional body (both MessagePack hex).
    /// Leaked so that decoded requests can borrow it in one expression.
    fn pkt(header: &str, body: Option<&str>) -> &'static [u8] {
        let mut p = hex(header);
        if let Some(b) = body {
            p.extend(hex(b));
        }
        Box::leak(p.into_boxed_slice())
    }

    fn err_of(header: &str, body: Option<&str>) -> (u64, String) {
        let e = decode_request(pkt(header, body)).unwrap_err();
        (e.sync, e.error.message)
    }

    #[test]
    fn malformed_requests_get_tarantools_errors() {
        let missing = |f: &str| format!("Missing mandatory field '{f}' in request");
        // SELECT with no body, or without LIMIT; the lowest missing key is reported.
        assert_eq!(err_of("82 00 01 01 07", None), (7, missing("space id")));
        assert_eq!(
            err_of("82 00 01 01 07", Some("82 10 cd 02 00 20 90")),
            (7, missing("limit"))
        );
        assert_eq!(err_of("82 00 01 01 07", Some("82 10 01 12 01")), (7, missing("key")));
        assert_eq!(err_of("82 00 09 01 07", Some("81 10 01")), (7, missing("tuple")));
        assert_eq!(
            err_of("82 00 09 01 07", Some("82 10 01 21 90")),
            (7, missing("operations"))
        );
        assert_eq!(err_of("82 00 04 01 07", Some("82 10 01 21 90")), (7, missing("key")));
        // A DML key written wider than a fixint is not recognised, just skipped.
        assert_eq!(
            err_of("82 00 05 01 07", Some("82 cc 10 01 20 90")),
            (7, missing("space id"))
        );
        // ...while unknown keys of any type are skipped.
        let r = decode_request(pkt("82 00 05 01 07", Some("84 10 01 20 90 a1 78 c0 7f 93 01 02 03"))).unwrap();
        assert_eq!(r.kind, RequestType::Delete);
        // Wrong value types.
        let body = "Invalid MsgPack - packet body";
        assert_eq!(err_of("82 00 01 01 07", Some("81 10 a1 78")).1, body);
        assert_eq!(err_of("82 00 01 01 07", Some("81 10 d0 05")).1, body); // int8 is not MP_UINT
        assert_eq!(err_of("82 00 02 01 07", Some("82 10 01 21 a1 78")).1, body);
        assert_eq!(err_of("82 00 02 01 07", Some("92 10 01")).1, body);
        assert_eq!(err_of("82 00 0a 01 07", Some("81 22 01")).1, body);
        assert_eq!(err_of("82 00 0a 01 07", Some("81 a1 78 01")).1, body); // call keys must be uints
        assert_eq!(err_of("82 00 07 01 07", Some("82 23 01 21 90")).1, body);
        // CALL/EVAL/AUTH need a body and their keys.
        let no_body = "Invalid MsgPack - missing request body";
        assert_eq!(err_of("82 00 0a 01 07", None).1, no_body);
        assert_eq!(err_of("82 00 08 01 07", None).1, no_body);
        assert_eq!(err_of("82 00 07 01 07", None).1, no_body);
        assert_eq!(err_of("82 00 0a 01 07", Some("80")).1, missing("function name"));
        assert_eq!(
            err_of("82 00 06 01 07", Some("81 27 a1 78")).1,
            missing("function name")
        );
        assert_eq!(err_of("82 00 08 01 07", Some("81 22 a1 78")).1, missing("expression"));
        assert_eq!(err_of("82 00 07 01 07", Some("81 21 90")).1, missing("user name"));
        assert_eq!(err_of("82 00 07 01 07", Some("81 23 a1 78")).1, missing("tuple"));
        // A call key may be any uint width; args default to [].
        let r = decode_request(pkt("82 00 0a 01 07", Some("81 cc 22 a1 66"))).unwrap();
        assert_eq!(
            r.body,
            Body::Call {
                function_name: b"f",
                args: &[0x90]
            }
        );
        // Header problems: not a map, a bad key, a value of the wrong type. The sync read
        // before the failure is kept.
        let header = "Invalid MsgPack - packet header";
        assert_eq!(err_of("92 00 40", None), (0, header.into()));
        assert_eq!(err_of("82 01 09 a1 78 01", None), (9, header.into()));
        assert_eq!(err_of("82 01 09 00 d0 40", None), (9, header.into()));
        assert_eq!(err_of("82 01 09 53 00", None), (9, header.into())); // key past IPROTO_KEY_MAX
        assert_eq!(err_of("82 01 09 30 00", None), (9, header.into())); // 0x30 is MP_NIL in the table
        assert_eq!(err_of("82 01 09 04 ca 00 00 00 00", None), (9, header.into())); // float timestamp
        assert_eq!(err_of("83 00 40 01", None), (0, header.into())); // truncated
                                                                     // ...and unknown uint-valued header keys are fine, including nil past 0x2b.
        assert!(decode_request(pkt("84 00 40 01 09 0a 05 30 c0", None)).is_ok());
        // Body problems: invalid, or something after it.
        // (msgpuck passes the reserved 0xc1 as a value: a real 2.6 answers this ping,
        // tests/iproto_bad_input.rs)
        assert!(decode_request(pkt("82 00 40 01 09", Some("c1"))).is_ok());
        assert_eq!(err_of("82 00 40 01 09", Some("80 80")), (9, body.into()));
        assert_eq!(err_of("82 00 40 01 09", Some("81 10")), (9, body.into()));
        // NOP rows never have a body: trailing bytes are an error; NOP itself is unknown.
        assert_eq!(err_of("82 00 0c 01 09", Some("80")), (9, body.into()));
        assert_eq!(err_of("82 00 0c 01 09", None), (9, "Unknown request type 12".into()));
        // Unknown types, and 2.6's dispatch on the low 8 bits.
        assert_eq!(
            err_of("82 00 49 01 09", Some("80")),
            (9, "Unknown request type 73".into())
        );
        assert_eq!(err_of("81 01 09", None), (9, "Unknown request type 0".into()));
        assert_eq!(
            err_of("82 00 cd 01 80 01 09", None),
            (9, "Unknown request type 128".into())
        );
        assert_eq!(
            decode_request(pkt("82 00 cd 01 40 01 09", None)).unwrap().kind,
            RequestType::Ping
        );
        // Replication and SQL requests come through raw.
        let r = decode_request(pkt("82 00 44 01 09", None)).unwrap();
        assert_eq!((r.kind, r.body), (RequestType::Vote, Body::Raw(None)));
        let r = decode_request(pkt("82 00 42 01 09", Some("81 24 a1 78"))).unwrap();
        assert_eq!(
            (r.kind, r.body),
            (RequestType::Subscribe, Body::Raw(Some(&hex("81 24 a1 78")[..])))
        );
    }

    #[test]
    fn auth_scramble_and_schema_checks() {
        let auth = |tuple: &str| Auth {
            user_name: b"test",
            tuple: Box::leak(hex(tuple).into_boxed_slice()),
        };
        assert_eq!(auth("90").part_count(), 0);
        let text = |t: &str| auth(t).scramble().unwrap_err().message;
        assert_eq!(text("90"), "Invalid MsgPack - authentication request body");
        assert_eq!(text("91 a1 78"), "Invalid MsgPack - authentication request body");
        assert_eq!(text("92 a1 78 01"), "Invalid MsgPack - authentication scramble");
        assert_eq!(text("92 a1 78 c4 01 00"), "Invalid MsgPack - invalid scramble size");
        // net.box sends the scramble as a (non-UTF-8) str; the mechanism is not checked.
        let mut t = hex("92 01 b4");
        t.extend([0xff; 20]);
        let a = Auth {
            user_name: b"test",
            tuple: &t,
        };
        assert_eq!(a.scramble().unwrap(), &[0xff; 20][..]);

        let r = decode_request(pkt("83 00 40 01 01 05 05", None)).unwrap();
        assert_eq!(r.schema_version, Some(5));
        assert_eq!(r.check_schema_version(5), Ok(()));
        assert_eq!(
            r.check_schema_version(81).unwrap_err().message,
            "Wrong schema version, current: 5, in request: 81"
        );
        let r = decode_request(pkt("83 00 40 01 01 05 00", None)).unwrap();
        assert_eq!(r.check_schema_version(81), Ok(()));
    }

    #[test]
    fn decode_any_handles_pipelines_and_never_panics() {
        // All captured requests back to back, as a pipelining client sends them.
        let requests: Vec<Vec<u8>> = sections()
            .into_iter()
            .map(|s| s.request)
            .filter(|r| !r.is_empty())
            .collect();
        let stream: Vec<u8> = requests.concat();
        let s = decode_any(&stream);
        assert_eq!(
            (s.requests, s.request_errors, s.frame_error, s.rest),
            (requests.len() - 1, 1, None, 0)
        );

        // Every truncation of every request: nothing decoded, the bytes wait.
        for r in &requests {
            for cut in 0..r.len() {
                assert_eq!(decode_any(&r[..cut]).rest, cut);
            }
            // Every truncation of the packet itself (a lying length prefix seen from inside).
            let f = next_packet(r, PACKET_SIZE_MAX).unwrap().unwrap();
            for cut in f.packet.start..f.packet.end {
                let _ = decode_request(&r[f.packet.start..cut]);
            }
        }

        use rand::rngs::SmallRng;
        use rand::{RngExt, SeedableRng};
        let mut rng = SmallRng::seed_from_u64(0x1be0);
        // Random bytes, and random mutations of real requests (which get much deeper).
        for i in 0..20_000 {
            let buf: Vec<u8> = if i % 2 == 0 {
                let n = rng.random_range(0..64);
                (0..n).map(|_| rng.random::<u8>()).collect()
            } else {
                let mut b = requests[rng.random_range(0..requests.len())].clone();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random::<u8>();
                }
                b
            };
            let _ = decode_any(&buf);
            let _ = decode_request(&buf);
            let _ = decode_response(&buf).map(|r| (r.data(), r.error_message()));
        }
    }
}
