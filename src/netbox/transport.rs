//! The connection driver under net.box: one socket, a reader task and a writer task, and the
//! requests in flight keyed by sync.
//!
//! ```text
//!  fibers ──send()──▶ out buffer ──writer task──▶ socket
//!    ▲                                              │
//!    └─ Pending.notify ◀─ dispatch ◀─ reader task ◀─┘
//! ```
//!
//! A request is encoded straight into the out buffer and registered as a [`Pending`]; the
//! writer task sends whatever has piled up in one write, so fibers that call at once share
//! writes (pipelining). The reader task frames responses, matches them to their `Pending` by
//! sync and wakes only the fibers waiting on that one. Nothing here knows about connection
//! states or triggers: the worker fiber of lua/net_box.lua drives those, and learns about a
//! broken socket or a new schema version through [`Transport::next_event`].
//!
//! Everything runs on the Lua thread's `LocalSet`, so the shared state is `Rc`/`RefCell`;
//! no borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::uri::UNIX_HOST;
use crate::box_::errcode::ER_NO_SUCH_SPACE;
use crate::box_::lua_tuple::TupleFormat;
use crate::box_::mp::{self, Mp};
use crate::iproto::codec::{self, keys, Greeting, Response, GREETING_SIZE, PACKET_SIZE_MAX};
use crate::iproto::request::{self, Select};
use crate::modules::errno::strerror;
use crate::runtime::errors::BoxError;

/// System views net.box reads its schema from (spec/box.md §1.9).
const VSPACE_ID: u32 = 281;
const VINDEX_ID: u32 = 289;
const VCOLLATION_ID: u32 = 277;
/// `_vcollation` appeared in 2.2.1; older peers are not asked for it.
const VCOLLATION_SINCE: u32 = codec::version_id(2, 2, 1);
/// ITERATOR = ALL and LIMIT = "no limit", as net.box fetches a whole view.
const ITER_ALL: u32 = 2;
const NO_LIMIT: u32 = u32::MAX;

/// Read buffer growth step. Nothing special in this value: big enough that a schema fetch
/// (about 20 KiB from a fresh 2.6 instance) takes a few reads.
const READ_CHUNK: usize = 64 * 1024;

/// net.box wraps its request ids at 31 bits (`next_id` in 2.6's net_box.lua).
const SYNC_MASK: u64 = 0x7FFF_FFFF;

/// How a successful response turns into the caller's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// ping, upsert, auth: nothing.
    Nil,
    /// call, eval: the DATA array as a table.
    Data,
    /// select: a table of tuples.
    Tuples,
    /// insert, replace, update, delete, min, max: the first tuple or nothing.
    FirstTuple,
    /// get: as `FirstTuple`, but more than one tuple is error 41.
    Get,
    /// index:count (an eval): the first value.
    First,
}

/// Where a request stands.
#[derive(Debug, Clone)]
pub enum Outcome {
    Waiting,
    /// The DATA value of the response (empty when there was none) and its schema version.
    Done {
        data: Vec<u8>,
        schema_version: u64,
    },
    /// An error response, or a local reason (connection lost, discarded).
    Failed(BoxError),
}

/// One request in flight, shared by the transport (until its answer comes) and the fibers
/// that wait for it.
pub struct Pending {
    pub sync: u64,
    pub decode: Decode,
    pub format: Option<Rc<TupleFormat>>,
    outcome: RefCell<Outcome>,
    /// DATA arrays of the pushes (IPROTO_CHUNK) received so far, in order.
    pushes: RefCell<Vec<Vec<u8>>>,
    /// Woken on every push and on the final outcome.
    notify: Notify,
    owner: Weak<Inner>,
}

impl Pending {
    pub fn is_ready(&self) -> bool {
        !matches!(*self.outcome.borrow(), Outcome::Waiting)
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome.borrow().clone()
    }

    pub fn push_count(&self) -> usize {
        self.pushes.borrow().len()
    }

    /// The DATA array of push `i` (0-based).
    pub fn push_data(&self, i: usize) -> Option<Vec<u8>> {
        self.pushes.borrow().get(i).cloned()
    }

    fn settle(&self, outcome: Outcome) {
        *self.outcome.borrow_mut() = outcome;
        self.notify.notify_waiters();
    }

    /// Waits until the request is answered or has more than `seen` pushes.
    pub async fn changed(&self, seen: usize) {
        while !self.is_ready() && self.push_count() <= seen {
            self.notify.notified().await;
        }
    }

    /// Forgets the request: its answer, if it comes, is dropped; waiters see `reason`.
    pub fn discard(&self, reason: BoxError) {
        if self.is_ready() {
            return;
        }
        if let Some(inner) = self.owner.upgrade() {
            inner.pending.borrow_mut().remove(&self.sync);
        }
        self.settle(Outcome::Failed(reason));
    }
}

/// What the worker fiber is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The socket failed; the text is what net.box reports (`Peer closed`, a strerror).
    Broken(String),
    /// A response carried a schema version other than the one fetched.
    SchemaChanged,
}

/// The current socket: dropping it stops both tasks, which closes the socket.
struct Link {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

struct Inner {
    next_sync: Cell<u64>,
    pending: RefCell<HashMap<u64, Rc<Pending>>>,
    /// Encoded requests not yet written.
    out: RefCell<Vec<u8>>,
    out_ready: Notify,
    link: RefCell<Option<Link>>,
    /// Why the current socket failed; None while it works.
    broken: RefCell<Option<String>>,
    salt: RefCell<Vec<u8>>,
    /// The schema version fetched last; responses are compared with it while `watching`.
    schema_version: Cell<u64>,
    watching: Cell<bool>,
    last_seen_version: Cell<u64>,
    schema_changed: Cell<bool>,
    /// Woken when `broken` or `schema_changed` is set.
    event: Notify,
}

/// One net.box connection's socket side. Dropping it closes the socket.
pub struct Transport {
    inner: Rc<Inner>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Ok(mut link) = self.inner.link.try_borrow_mut() {
            link.take();
        }
    }
}

impl Default for Transport {
    fn default() -> Self {
        Self::new()
    }
}

/// The schema views' DATA arrays, all read at one schema version.
pub struct Schema {
    pub version: u64,
    pub spaces: Vec<u8>,
    pub indexes: Vec<u8>,
    pub collations: Option<Vec<u8>>,
}

impl Transport {
    pub fn new() -> Transport {
        Transport {
            inner: Rc::new(Inner {
                next_sync: Cell::new(1),
                pending: RefCell::new(HashMap::new()),
                out: RefCell::new(Vec::new()),
                out_ready: Notify::new(),
                link: RefCell::new(None),
                broken: RefCell::new(None),
                salt: RefCell::new(Vec::new()),
                schema_version: Cell::new(0),
                watching: Cell::new(false),
                last_seen_version: Cell::new(0),
                schema_changed: Cell::new(false),
                event: Notify::new(),
            }),
        }
    }

    /// A handle for async calls that must not keep the Lua userdata borrowed.
    pub fn handle(&self) -> TransportHandle {
        TransportHandle(self.inner.clone())
    }
}

/// A clone of a transport's state, for futures (does not close the socket when dropped).
#[derive(Clone)]
pub struct TransportHandle(Rc<Inner>);

pub(crate) type BoxedRead = Box<dyn AsyncRead + Unpin>;
pub(crate) type BoxedWrite = Box<dyn AsyncWrite + Unpin>;

fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => strerror(n),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "Peer closed".into(),
        None => e.to_string(),
    }
}

/// A TCP port from a service as getaddrinfo reads it: a number (cut to 16 bits, as
/// getaddrinfo does) or a name from the services database (`http`).
fn service_port(service: &str) -> Option<u16> {
    if !service.is_empty() && service.bytes().all(|b| b.is_ascii_digit()) {
        return service.parse::<u64>().ok().map(|n| n as u16);
    }
    let name = std::ffi::CString::new(service).ok()?;
    // Safety: both strings are NUL-terminated; the result points into libc's static entry,
    // read at once on this thread (the Lua thread is the only one resolving services).
    let entry = unsafe { libc::getservbyname(name.as_ptr(), c"tcp".as_ptr()) };
    if entry.is_null() {
        return None;
    }
    // Safety: a non-null entry from getservbyname is a valid servent.
    let port = unsafe { (*entry).s_port };
    Some(u16::from_be(port as u16))
}

pub(crate) async fn open(host: Option<&str>, service: &str) -> Result<(BoxedRead, BoxedWrite), String> {
    if host == Some(UNIX_HOST) {
        let stream = tokio::net::UnixStream::connect(service)
            .await
            .map_err(|e| io_text(&e))?;
        let (r, w) = stream.into_split();
        return Ok((Box::new(r), Box::new(w)));
    }
    // getaddrinfo(NULL, port) gives the loopback addresses, as tcp_connect(nil, port) does.
    let host = host.unwrap_or("localhost");
    let invalid = || strerror(libc::EINVAL);
    let port = service_port(service).ok_or_else(invalid)?;
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| match e.raw_os_error() {
            Some(n) => strerror(n),
            // A name that does not resolve: Tarantool's tcp_connect reports EINVAL.
            None => invalid(),
        })?;
    // Requests are small and latency-bound; batching is done by the writer task already.
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    Ok((Box::new(r), Box::new(w)))
}

/// Type names of the error classes that have a `code` (ClientError and its subclasses);
/// other classes (LuajitError, SystemError, ...) show none, as in 2.6.
const CODED_TYPES: &[&str] = &[
    "ClientError",
    "AccessDeniedError",
    "CustomError",
    "XlogGapError",
    "UnsupportedIndexFeature",
    "LoggedError",
];

const OTHER_TYPES: &[&str] = &[
    "LuajitError",
    "SystemError",
    "SocketError",
    "OutOfMemory",
    "TimedOut",
    "ChannelIsClosed",
    "FiberIsCancelled",
    "IllegalParams",
    "CollationError",
    "SwimError",
    "CryptoError",
    "XlogError",
];

thread_local! {
    /// Error type names seen from servers that are not in the lists above, kept for good:
    /// BoxError holds `&'static str`, and a server sends few distinct names.
    static INTERNED: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

fn intern(name: &str) -> &'static str {
    if let Some(n) = CODED_TYPES.iter().chain(OTHER_TYPES).find(|n| **n == name) {
        return n;
    }
    INTERNED.with(|list| {
        let mut list = list.borrow_mut();
        if let Some(n) = list.iter().find(|n| **n == name) {
            return *n;
        }
        let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
        list.push(leaked);
        leaked
    })
}

fn read_str(data: &[u8], pos: usize) -> Option<(String, usize)> {
    match mp::read(data, pos) {
        Ok((Mp::Str(s), next)) => Some((String::from_utf8_lossy(s).into_owned(), next)),
        _ => None,
    }
}

fn read_uint(data: &[u8], pos: usize) -> Option<(u64, usize)> {
    match mp::read(data, pos) {
        Ok((Mp::UInt(n), next)) => Some((n, next)),
        _ => None,
    }
}

/// The top entry of a 0x52 error stack: `{0x00: [{0: type, 3: message, 4: errno, 5: code}]}`.
fn decode_error_stack(stack: &[u8]) -> Option<BoxError> {
    let (Mp::Map(n), mut pos) = mp::read(stack, 0).ok()? else {
        return None;
    };
    for _ in 0..n {
        let (k, value) = read_uint(stack, pos)?;
        if k != 0 {
            pos = mp::skip(stack, value).ok()?;
            continue;
        }
        let (Mp::Array(count), first) = mp::read(stack, value).ok()? else {
            return None;
        };
        if count == 0 {
            return None;
        }
        let (Mp::Map(fields), mut p) = mp::read(stack, first).ok()? else {
            return None;
        };
        let (mut kind, mut message, mut errno, mut code) = (None, String::new(), 0u64, 0u64);
        for _ in 0..fields {
            let (field, v) = read_uint(stack, p)?;
            match field {
                0 => kind = read_str(stack, v).map(|(s, _)| s),
                3 => message = read_str(stack, v).map(|(s, _)| s).unwrap_or_default(),
                4 => errno = read_uint(stack, v).map_or(0, |(n, _)| n),
                5 => code = read_uint(stack, v).map_or(0, |(n, _)| n),
                _ => {}
            }
            p = mp::skip(stack, v).ok()?;
        }
        let kind = intern(kind.as_deref().unwrap_or("ClientError"));
        return Some(BoxError {
            kind,
            code: CODED_TYPES.contains(&kind).then_some(code as u32),
            message,
            errno: (errno != 0).then_some(errno as i32),
        });
    }
    None
}

/// The error an error response stands for: the 0x52 stack's top if present, else a
/// ClientError from the code and the 0x31 text, as 2.6's net.box builds it.
fn remote_error(code: u32, resp: &Response) -> BoxError {
    if let Some(e) = resp.body_value(keys::ERROR).and_then(decode_error_stack) {
        return e;
    }
    let message = resp
        .error_message()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_default();
    BoxError::new("ClientError", code, message)
}

impl Inner {
    fn break_link(&self, why: String) {
        let mut broken = self.broken.borrow_mut();
        if broken.is_none() {
            *broken = Some(why);
            drop(broken);
            self.event.notify_waiters();
        }
    }

    /// Handles one response packet; Err breaks the connection.
    fn dispatch(&self, packet: &[u8]) -> Result<(), String> {
        let resp = codec::decode_response(packet).map_err(|e| e.error.message)?;
        let version = resp.schema_version;
        self.last_seen_version.set(version);
        if self.watching.get() && version > 0 && version != self.schema_version.get() && !self.schema_changed.get() {
            self.schema_changed.set(true);
            self.event.notify_waiters();
        }
        let Some(p) = self.pending.borrow().get(&resp.sync).cloned() else {
            // Nobody waits: a discarded request, or one failed by a reconnect.
            return Ok(());
        };
        let data = || resp.data().map(<[u8]>::to_vec).unwrap_or_default();
        if resp.is_push {
            p.pushes.borrow_mut().push(data());
            p.notify.notify_waiters();
            return Ok(());
        }
        self.pending.borrow_mut().remove(&resp.sync);
        let outcome = match resp.error_code {
            Some(code) => Outcome::Failed(remote_error(code, &resp)),
            None => Outcome::Done {
                data: data(),
                schema_version: version,
            },
        };
        p.settle(outcome);
        Ok(())
    }
}

async fn read_loop(inner: Rc<Inner>, mut rd: BoxedRead) {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let mut start = 0;
        loop {
            match codec::next_packet(&buf[start..], PACKET_SIZE_MAX) {
                Ok(Some(frame)) => {
                    let packet = &buf[start + frame.packet.start..start + frame.packet.end];
                    if let Err(why) = inner.dispatch(packet) {
                        inner.break_link(why);
                        return;
                    }
                    start += frame.consumed;
                }
                Ok(None) => break,
                Err(e) => {
                    inner.break_link(e.to_string());
                    return;
                }
            }
        }
        buf.drain(..start);
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                inner.break_link("Peer closed".into());
                return;
            }
            Ok(_) => {}
            Err(e) => {
                inner.break_link(io_text(&e));
                return;
            }
        }
    }
}

async fn write_loop(inner: Rc<Inner>, mut wr: BoxedWrite) {
    let mut spare = Vec::new();
    loop {
        inner.out_ready.notified().await;
        loop {
            let batch = std::mem::replace(&mut *inner.out.borrow_mut(), std::mem::take(&mut spare));
            if batch.is_empty() {
                spare = batch;
                break;
            }
            if let Err(e) = wr.write_all(&batch).await {
                inner.break_link(io_text(&e));
                return;
            }
            spare = batch;
            spare.clear();
        }
    }
}

impl TransportHandle {
    /// Drops the socket (if any) and everything queued for it.
    pub fn disconnect(&self) {
        self.0.link.borrow_mut().take();
        self.0.out.borrow_mut().clear();
    }

    /// Closes the socket and tells the worker fiber (its next event is `Broken`): on
    /// `close()`, and when the connection object is gone (a GC finaliser, after which the
    /// worker closes the connection in its own fiber). Touches no fiber state itself, as a
    /// finaliser may run in the middle of anything.
    pub fn abandon(&self) {
        self.disconnect();
        self.0.break_link("Connection closed".into());
    }

    /// Connects and reads the greeting, within `timeout`; then starts the socket's tasks.
    /// The error is the text net.box reports (`Connection refused`, ...).
    pub async fn connect(&self, host: Option<&str>, service: &str, timeout: Duration) -> Result<Greeting, String> {
        self.disconnect();
        let handshake = async {
            let (mut rd, wr) = open(host, service).await?;
            let mut raw = [0u8; GREETING_SIZE];
            rd.read_exact(&mut raw).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "Invalid greeting".to_string(),
                _ => io_text(&e),
            })?;
            let greeting = codec::parse_greeting(&raw).map_err(|_| "Invalid greeting".to_string())?;
            Ok::<_, String>((rd, wr, greeting))
        };
        let started = tokio::time::Instant::now();
        let (rd, wr, greeting) = match tokio::time::timeout(timeout, handshake).await {
            // A handshake that finished but only after the deadline (the timer only fires
            // at millisecond steps) is late all the same, as for Tarantool's fiber reads.
            Ok(r) if started.elapsed() <= timeout => r?,
            _ => return Err(strerror(libc::ETIMEDOUT)),
        };
        let inner = &self.0;
        *inner.broken.borrow_mut() = None;
        inner.schema_changed.set(false);
        inner.watching.set(false);
        *inner.salt.borrow_mut() = greeting.salt.clone();
        let reader = tokio::task::spawn_local(read_loop(inner.clone(), rd));
        let writer = tokio::task::spawn_local(write_loop(inner.clone(), wr));
        *inner.link.borrow_mut() = Some(Link { reader, writer });
        Ok(greeting)
    }

    /// Queues a request: `encode(out, sync)` appends the packet. Returns its `Pending`.
    pub fn send(
        &self,
        decode: Decode,
        format: Option<Rc<TupleFormat>>,
        encode: impl FnOnce(&mut Vec<u8>, u64),
    ) -> Rc<Pending> {
        let inner = &self.0;
        let sync = inner.next_sync.get();
        inner.next_sync.set((sync + 1) & SYNC_MASK);
        let was_empty = {
            let mut out = inner.out.borrow_mut();
            let was_empty = out.is_empty();
            encode(&mut out, sync);
            was_empty
        };
        if was_empty {
            inner.out_ready.notify_one();
        }
        let p = Rc::new(Pending {
            sync,
            decode,
            format,
            outcome: RefCell::new(Outcome::Waiting),
            pushes: RefCell::new(Vec::new()),
            notify: Notify::new(),
            owner: Rc::downgrade(inner),
        });
        inner.pending.borrow_mut().insert(sync, p.clone());
        p
    }

    /// Fails every request in flight with `e` (the connection's new error state).
    pub fn fail_all(&self, e: &BoxError) {
        let all: Vec<Rc<Pending>> = self.0.pending.borrow_mut().drain().map(|(_, p)| p).collect();
        for p in all {
            p.settle(Outcome::Failed(e.clone()));
        }
    }

    /// Compares every later response's schema version with `version` (None: stop comparing).
    pub fn watch_schema(&self, version: Option<u64>) {
        let inner = &self.0;
        match version {
            Some(v) => {
                inner.schema_version.set(v);
                inner.watching.set(true);
                let seen = inner.last_seen_version.get();
                inner.schema_changed.set(seen > 0 && seen != v);
            }
            None => {
                inner.watching.set(false);
                inner.schema_changed.set(false);
            }
        }
    }

    /// A response carried a schema version other than the one fetched, and the worker has
    /// not fetched the new schema yet.
    pub fn schema_outdated(&self) -> bool {
        self.0.schema_changed.get()
    }

    /// Waits for the socket to fail or the schema to change.
    pub async fn next_event(&self) -> Event {
        loop {
            if let Some(why) = self.0.broken.borrow().clone() {
                return Event::Broken(why);
            }
            if self.0.schema_changed.get() {
                return Event::SchemaChanged;
            }
            self.0.event.notified().await;
        }
    }

    /// Waits for `p`'s answer, or the socket's failure (Err with its text).
    async fn answer(&self, p: &Pending) -> Result<Outcome, String> {
        loop {
            if p.is_ready() {
                return Ok(p.outcome());
            }
            if let Some(why) = self.0.broken.borrow().clone() {
                return Err(why);
            }
            tokio::select! {
                _ = p.notify.notified() => {}
                _ = self.0.event.notified() => {}
            }
        }
    }

    /// AUTH with the greeting's salt; Err is the server's message or the socket's failure.
    pub async fn auth(&self, user: &[u8], password: &[u8]) -> Result<(), String> {
        let salt = self.0.salt.borrow().clone();
        let p = self.send(Decode::Nil, None, |out, sync| {
            request::auth(out, sync, user, password, &salt)
        });
        match self.answer(&p).await? {
            Outcome::Failed(e) => Err(e.message),
            _ => Ok(()),
        }
    }

    /// Reads `_vspace`, `_vindex` and (from 2.2.1 peers) `_vcollation`, pipelined, again
    /// until all three answers carry the same schema version. A missing `_vcollation`
    /// (error 36) is fine; any other error is the connection's error.
    pub async fn fetch_schema(&self, peer_version_id: u32) -> Result<Schema, String> {
        let mut want_collations = peer_version_id >= VCOLLATION_SINCE;
        loop {
            let select_all = |space_id: u32| {
                self.send(Decode::Data, None, move |out, sync| {
                    let s = Select {
                        space_id,
                        index_id: 0,
                        iterator: ITER_ALL,
                        offset: 0,
                        limit: NO_LIMIT,
                    };
                    request::select(out, sync, &s, &[0x90])
                })
            };
            let spaces = select_all(VSPACE_ID);
            let indexes = select_all(VINDEX_ID);
            let collations = want_collations.then(|| select_all(VCOLLATION_ID));
            let mut version = None;
            let mut consistent = true;
            let mut take = |outcome: Outcome, tolerate_missing: bool| -> Result<Option<Vec<u8>>, String> {
                match outcome {
                    Outcome::Done { data, schema_version } => {
                        if *version.get_or_insert(schema_version) != schema_version {
                            consistent = false;
                        }
                        Ok(Some(data))
                    }
                    Outcome::Failed(e) if tolerate_missing && e.code == Some(ER_NO_SUCH_SPACE) => Ok(None),
                    Outcome::Failed(e) => Err(e.message),
                    Outcome::Waiting => Ok(None),
                }
            };
            let spaces = take(self.answer(&spaces).await?, false)?.unwrap_or_default();
            let indexes = take(self.answer(&indexes).await?, false)?.unwrap_or_default();
            let collations = match collations {
                Some(p) => take(self.answer(&p).await?, true)?,
                None => None,
            };
            // A peer without _vcollation is not asked again on a retry.
            want_collations = collations.is_some();
            if !consistent {
                // The schema changed between the answers: read it again.
                continue;
            }
            return Ok(Schema {
                version: version.unwrap_or(0),
                spaces,
                indexes,
                collations,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_error;
    use crate::iproto::codec::{decode_request, Body, RequestType};
    use tokio::net::TcpListener;

    /// Reads one request from a fake server's socket: (sync, body).
    async fn next_request(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<(u64, Body<'static>)> {
        loop {
            if let Ok(Some(frame)) = codec::next_packet(buf, PACKET_SIZE_MAX) {
                let packet: &'static [u8] = Box::leak(buf[frame.packet.clone()].to_vec().into_boxed_slice());
                buf.drain(..frame.consumed);
                let req = decode_request(packet).ok()?;
                return Some((req.sync, req.body));
            }
            if sock.read_buf(buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    fn space_id(body: &Body) -> u32 {
        match body {
            Body::Dml(d) => d.space_id,
            _ => 0,
        }
    }

    /// A server that answers the first schema fetch with two versions and no _vcollation,
    /// the second consistently; then a call with a push and a newer schema version; then
    /// hangs up.
    async fn fake_server(listener: TcpListener) {
        let (mut sock, _) = listener.accept().await.expect("accepts");
        let greeting = codec::greeting("2.6.0", &uuid::Uuid::nil(), &[7; codec::SALT_SIZE]);
        sock.write_all(&greeting).await.expect("greets");
        let mut buf = Vec::new();
        let one_row = [0x91, 0x91, 0x01];
        for round in 0..2 {
            let wanted = if round == 0 { 3 } else { 2 };
            for _ in 0..wanted {
                let (sync, body) = next_request(&mut sock, &mut buf).await.expect("a select");
                let answer = match (round, space_id(&body)) {
                    (0, VSPACE_ID) => codec::encode_data(sync, 5, 1, &one_row[1..]),
                    (0, VCOLLATION_ID) => codec::encode_error(sync, 6, &client_error!(ER_NO_SUCH_SPACE, "_vcollation")),
                    (_, VCOLLATION_ID) => panic!("asked for _vcollation again"),
                    _ => codec::encode_data(sync, 6, 1, &one_row[1..]),
                };
                sock.write_all(&answer).await.expect("answers");
            }
        }
        let (sync, body) = next_request(&mut sock, &mut buf).await.expect("a call");
        assert!(matches!(
            body,
            Body::Call {
                function_name: b"f",
                ..
            }
        ));
        sock.write_all(&codec::encode_push(sync, 6, &[0xa1, b'p']))
            .await
            .expect("pushes");
        sock.write_all(&codec::encode_data(sync, 7, 1, &[0x2a]))
            .await
            .expect("answers");
        // Hangs up on the next request, unanswered.
        next_request(&mut sock, &mut buf).await.expect("a ping");
    }

    #[test]
    fn schema_fetch_retries_until_versions_agree_and_events_follow_the_socket() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
            let port = listener.local_addr().expect("address").port().to_string();
            let server = tokio::task::spawn_local(fake_server(listener));
            let transport = Transport::new();
            let h = transport.handle();
            let greeting = h
                .connect(Some("127.0.0.1"), &port, Duration::from_secs(5))
                .await
                .expect("connects");
            assert_eq!(greeting.version_id, codec::version_id(2, 6, 0));
            let schema = h.fetch_schema(greeting.version_id).await.expect("fetches");
            assert_eq!((schema.version, schema.collations), (6, None));
            // Servers write DATA arrays with the array32 header.
            assert_eq!(schema.spaces, [0xdd, 0, 0, 0, 1, 0x91, 0x01]);
            h.watch_schema(Some(schema.version));
            assert!(!h.schema_outdated());

            let call = h.send(Decode::Data, None, |out, sync| {
                request::call(out, sync, RequestType::Call, b"f", &[0x90])
            });
            call.changed(0).await;
            assert_eq!((call.push_count(), call.push_data(0)), (1, Some(vec![0xdd, 0, 0, 0, 1, 0xa1, b'p'])));
            call.changed(1).await;
            assert!(matches!(call.outcome(), Outcome::Done { ref data, schema_version: 7 } if data == &[0xdd, 0, 0, 0, 1, 0x2a]));
            assert!(h.schema_outdated(), "version 7 differs from the fetched 6");
            assert_eq!(h.next_event().await, Event::SchemaChanged);
            h.watch_schema(Some(7));
            let unanswered = h.send(Decode::Nil, None, request::ping);
            server.await.expect("the server ran");
            assert_eq!(h.next_event().await, Event::Broken("Peer closed".into()));
            assert!(!unanswered.is_ready(), "requests wait for the state machine to fail them");
            let late = h.send(Decode::Nil, None, request::ping);
            h.fail_all(&BoxError::new("ClientError", 77, "Peer closed"));
            assert!(matches!(late.outcome(), Outcome::Failed(ref e) if e.message == "Peer closed"));
            assert!(unanswered.is_ready());
        });
    }

    #[test]
    fn services_are_read_as_getaddrinfo_reads_them() {
        assert_eq!(service_port("3301"), Some(3301));
        assert_eq!(service_port("99999"), Some(34463), "cut to 16 bits");
        assert_eq!(service_port("no-such-service"), None);
        assert_eq!(service_port(""), None);
    }

    #[test]
    fn error_stack_gives_type_code_and_message() {
        // {0: [{0: 'AccessDeniedError', 3: 'denied', 4: 0, 5: 42}]}
        let mut stack = vec![0x81, 0x00, 0x91, 0x84, 0x00];
        mp::write_str(&mut stack, b"AccessDeniedError");
        stack.push(0x03);
        mp::write_str(&mut stack, b"denied");
        stack.extend_from_slice(&[0x04, 0x00, 0x05, 42]);
        let e = decode_error_stack(&stack).expect("decodes");
        assert_eq!(
            (e.kind, e.code, e.message.as_str(), e.errno),
            ("AccessDeniedError", Some(42), "denied", None)
        );

        let mut stack = vec![0x81, 0x00, 0x91, 0x83, 0x00];
        mp::write_str(&mut stack, b"LuajitError");
        stack.push(0x03);
        mp::write_str(&mut stack, b"x.lua:1: boom");
        stack.extend_from_slice(&[0x05, 32]);
        let e = decode_error_stack(&stack).expect("decodes");
        assert_eq!(
            (e.kind, e.code),
            ("LuajitError", None),
            "LuajitError has no code in 2.6"
        );

        assert!(decode_error_stack(&[0x81, 0x00, 0x90]).is_none());
        assert!(decode_error_stack(&[0x93]).is_none());
        assert_eq!(intern("MyError"), intern("MyError"));
    }
}
