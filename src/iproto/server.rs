//! The IPROTO server behind `box.cfg{listen = ...}`.
//!
//! Tarantool reads sockets in a network thread and hands each request to a fiber of the TX
//! thread. Here both live on the Lua thread: a connection task reads a batch of packets and
//! serves each at once, so there is no hand-over between threads. Requests that touch
//! only data (PING, AUTH, SELECT, DML on spaces without Lua triggers) are served in Rust;
//! CALL, EVAL and DML that must run Lua triggers get a fiber each, started at once so
//! they run in arrival order until they yield. A write waiting for the WAL waits in its own
//! small task, so later requests on the connection go on. Replies go to an output buffer
//! that a writer task sends in as few writes as possible.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::task::Poll;

use std::ffi::c_int;

use mlua::ffi;
use mlua::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::codec::{self, Body, Dml, ErrorInfo, RequestType};
use super::workers;
use crate::box_::db::Request as WriteRequest;
use crate::box_::errcode::*;
use crate::box_::error::ClientError;
use crate::box_::index::IterType;
use crate::box_::lua as box_lua;
use crate::box_::session::{self, Session, SessionKind};
use crate::box_::tuple::Tuple;
use crate::client_error;
use crate::modules::log::{self, Level};
use crate::replication::{join, relay};
use crate::runtime::errors::{BoxError, ErrorObject};
use crate::runtime::fiber;

/// Unsent replies past which a connection is not read (a client that sends and never
/// reads must not make the server buffer without bound).
const MAX_UNSENT: usize = 16 * 1024 * 1024;
/// Requests served between two looks at the clock (see `read_loop`).
const FLUSH_CHECK: u32 = 4;
/// How long a batch is served before what is ready is sent: long enough that a batch of
/// cheap requests (PING, SELECT) goes in one `send`, short enough that the client is not
/// left idle while a batch of costly ones (CALL) is served.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_micros(20);
/// Requests served before the first replies of a batch are sent, whatever the clock says:
/// the client starts decoding them while the rest is served, and the ping-pong of whole
/// batches becomes a stream (`scripts/bench/iproto.sh`: 3-5% more SELECTs and PINGs/s
/// than sending only on the clock).
const FIRST_FLUSH_AFTER: u32 = 16;
/// The fiber id statements of Rust-served requests run under: no fiber has it, so they
/// never join a fiber's transaction.
const NO_FIBER: u64 = u64::MAX;

/// Where to listen, parsed from a `listen` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(String, u16),
    Unix(PathBuf),
}

/// Parses Tarantool's `listen` forms: `3301`, `'3301'`, `'host:port'`, `'[::1]:3301'`,
/// `'unix/:/path'`, each optionally with `login:password@` in front (ignored).
pub fn parse_listen(uri: &str) -> Option<ListenAddr> {
    let uri = uri.trim();
    let uri = match uri.rfind('@') {
        Some(at) if !uri.starts_with("unix/:") => &uri[at + 1..],
        _ => uri,
    };
    if let Some(path) = uri.strip_prefix("unix/:") {
        return (!path.is_empty()).then(|| ListenAddr::Unix(PathBuf::from(path)));
    }
    if let Ok(port) = uri.parse::<u16>() {
        return Some(ListenAddr::Tcp("0.0.0.0".into(), port));
    }
    let (host, port) = uri.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Some(ListenAddr::Tcp("0.0.0.0".into(), port));
    }
    Some(ListenAddr::Tcp(host.to_string(), port))
}

enum BoundSocket {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

/// The active listener: dropping it closes the socket at once (a rebind to the same port
/// right after must work).
struct Active {
    uri: String,
    socket: Rc<RefCell<Option<BoundSocket>>>,
    stop: Rc<Notify>,
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(BoundSocket::Unix(_, path)) = self.socket.borrow_mut().take() {
            let _ = std::fs::remove_file(path);
        }
        self.stop.notify_one();
    }
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
    /// Requests served by fibers, by token: the connection and how to reply.
    static IN_FIBERS: RefCell<hashbrown::HashMap<i64, FiberRequest>> = RefCell::new(hashbrown::HashMap::new());
    static NEXT_TOKEN: Cell<i64> = const { Cell::new(1) };
    /// The Lua handlers (lua/box/iproto.lua): call, eval, dml.
    static HANDLERS: RefCell<Option<Handlers>> = const { RefCell::new(None) };
    /// Counters for `box.stat.net()`.
    static NET_STAT: RefCell<NetStat> = RefCell::new(NetStat::default());
    static NET_SAMPLES: RefCell<std::collections::VecDeque<(std::time::Instant, NetStat)>> =
        const { RefCell::new(std::collections::VecDeque::new()) };
    static SAMPLING: Cell<bool> = const { Cell::new(false) };
    /// Requests of one connection being served at once (box.cfg `net_msg_max`): past it
    /// the connection is not read until some finish.
    static NET_MSG_MAX: Cell<u32> = const { Cell::new(768) };
    /// The least free space of a connection's input buffer before a read (`readahead`).
    static READAHEAD: Cell<usize> = const { Cell::new(16320) };
    static SESSION_TRIGGERS: Cell<SessionTriggers> = const {
        Cell::new(SessionTriggers { connect: false, disconnect: false, auth: false })
    };
}

/// `box.stat.net()`'s counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetStat {
    pub sent: u64,
    pub received: u64,
    pub connections: u64,
    pub requests: u64,
    /// Packets that could not be decoded (answered with an error, or the connection closed).
    pub malformed: u64,
    pub open_connections: u64,
    /// Requests still being served (in fibers or waiting for the WAL).
    pub requests_in_progress: u64,
}

pub fn net_stat() -> NetStat {
    NET_STAT.with(|s| *s.borrow())
}

/// A packet that could not be decoded arrived on another binary connection (a replication
/// upstream): `box.stat.net().MALFORMED` counts it too.
pub fn count_malformed() {
    count(|s| s.malformed += 1);
}

fn count(f: impl FnOnce(&mut NetStat)) {
    NET_STAT.with(|s| f(&mut s.borrow_mut()));
}

/// Samples of the counters a second apart, newest last, for the rates over 5 seconds that
/// `box.stat.net()` reports (as Tarantool's rmean does).
const RATE_WINDOW: usize = 5;

async fn sample_net_stat() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = (std::time::Instant::now(), net_stat());
        NET_SAMPLES.with(|h| {
            let mut h = h.borrow_mut();
            h.push_back(now);
            while h.len() > RATE_WINDOW + 1 {
                h.pop_front();
            }
        });
    }
}

/// Per-second rate of a counter over the sampled window.
fn rate(field: fn(&NetStat) -> u64) -> f64 {
    NET_SAMPLES.with(|h| {
        let h = h.borrow();
        let (Some(first), Some(last)) = (h.front(), h.back()) else {
            return 0.0;
        };
        let secs = last.0.duration_since(first.0).as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        (field(&last.1).saturating_sub(field(&first.1))) as f64 / secs
    })
}

/// Registry references of the handlers, pushed straight onto a worker's stack.
struct Handlers {
    call: LuaRegistryKey,
    eval: LuaRegistryKey,
    dml: LuaRegistryKey,
    session: LuaRegistryKey,
}

struct FiberRequest {
    conn: Rc<Conn>,
    sync: u64,
    kind: RequestType,
    fid: u64,
    /// Set when the fiber runs session triggers rather than a request.
    event: Option<SessionEvent>,
}

/// Session triggers run in a fiber of the session, like requests.
enum SessionEvent {
    /// on_connect: success sends the greeting and starts reading; an error is sent instead
    /// and the connection closed, as in Tarantool.
    Connect,
    /// on_auth: the login's own outcome, applied once the triggers pass.
    Auth(Result<u32, ClientError>),
    Disconnect,
}

/// Which session trigger lists are not empty (box.session.on_connect/on_disconnect/on_auth).
#[derive(Default, Clone, Copy)]
struct SessionTriggers {
    connect: bool,
    disconnect: bool,
    auth: bool,
}

/// Logs why `place` could not be bound, as Tarantool does, and returns the error it raises.
fn bind_failed(lua: &Lua, place: &str, e: &io::Error) -> LuaError {
    log::write(
        lua,
        Level::Error,
        &format!("binary: failed to bind on {place}: {}", os_error_text(e)),
    );
    BoxError::system("binary: failed to bind, called on fd -1", e.raw_os_error().unwrap_or(0)).into_lua_err()
}

fn os_error_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => crate::modules::errno::strerror(n),
        None => e.to_string(),
    }
}

fn bind(lua: &Lua, addr: &ListenAddr) -> LuaResult<BoundSocket> {
    match addr {
        ListenAddr::Tcp(host, port) => {
            let listener = std::net::TcpListener::bind((host.as_str(), *port))
                .map_err(|e| bind_failed(lua, &format!("{host}:{port}"), &e))?;
            listener.set_nonblocking(true).map_err(LuaError::external)?;
            let listener = tokio::net::TcpListener::from_std(listener).map_err(LuaError::external)?;
            if let Ok(a) = listener.local_addr() {
                log::write(lua, Level::Info, &format!("binary: bound to {a}"));
            }
            Ok(BoundSocket::Tcp(listener))
        }
        ListenAddr::Unix(path) => {
            // A socket file left by a dead process is taken over, a live one is not.
            if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| bind_failed(lua, &format!("unix/:{}", path.display()), &e))?;
            log::write(lua, Level::Info, &format!("binary: bound to unix/:{}", path.display()));
            Ok(BoundSocket::Unix(listener, path.clone()))
        }
    }
}

/// `box.cfg{listen = uri}`: binds the new address before closing the old one, so a
/// failed rebind leaves the old listener serving. `None` or `''` stops listening.
pub fn listen(lua: &Lua, uri: Option<String>) -> LuaResult<()> {
    let uri = uri.filter(|u| !u.is_empty());
    let same = ACTIVE.with(|a| a.borrow().as_ref().map(|a| a.uri.clone()) == uri);
    if same {
        return Ok(());
    }
    let Some(uri) = uri else {
        ACTIVE.with(|a| a.borrow_mut().take());
        return Ok(());
    };
    let addr = parse_listen(&uri)
        .ok_or_else(|| client_error!(ER_CFG, "listen", "expected host:service or /unix.socket").into_lua_err())?;
    let new_addr = addr.clone();
    // Rebinding the port we hold: close ours first.
    let holds_it = ACTIVE.with(|a| {
        a.borrow()
            .as_ref()
            .and_then(|a| parse_listen(&a.uri))
            .is_some_and(|old| old == new_addr)
    });
    if holds_it {
        ACTIVE.with(|a| a.borrow_mut().take());
    }
    let socket = Rc::new(RefCell::new(Some(bind(lua, &addr)?)));
    let stop = Rc::new(Notify::new());
    if !SAMPLING.with(|s| s.replace(true)) {
        tokio::task::spawn_local(sample_net_stat());
    }
    let sched = fiber::scheduler(lua);
    sched.pin();
    tokio::task::spawn_local(accept_loop(lua.weak(), socket.clone(), stop.clone(), sched));
    let previous = ACTIVE.with(|a| a.borrow_mut().replace(Active { uri, socket, stop }));
    drop(previous);
    Ok(())
}

/// The address the server listens on (`host:port` or the socket path), for tests and logs.
pub fn bound_address() -> Option<String> {
    ACTIVE.with(|a| {
        let a = a.borrow();
        let a = a.as_ref()?;
        let s = a.socket.borrow();
        match s.as_ref()? {
            BoundSocket::Tcp(l) => l.local_addr().ok().map(|a| a.to_string()),
            BoundSocket::Unix(_, p) => Some(p.display().to_string()),
        }
    })
}

async fn accept_loop(
    lua: mlua::WeakLua,
    socket: Rc<RefCell<Option<BoundSocket>>>,
    stop: Rc<Notify>,
    sched: Rc<fiber::Scheduler>,
) {
    enum Accepted {
        Tcp(tokio::net::TcpStream, String),
        Unix(tokio::net::UnixStream),
    }
    loop {
        let accept = std::future::poll_fn(|cx| match &*socket.borrow() {
            Some(BoundSocket::Tcp(l)) => l
                .poll_accept(cx)
                .map(|r| Some(r.map(|(s, peer)| Accepted::Tcp(s, peer.to_string())))),
            Some(BoundSocket::Unix(l, _)) => l.poll_accept(cx).map(|r| Some(r.map(|(s, _)| Accepted::Unix(s)))),
            None => Poll::Ready(None),
        });
        let accepted = tokio::select! {
            _ = stop.notified() => break,
            r = accept => r,
        };
        match accepted {
            None => break,
            Some(Ok(Accepted::Tcp(stream, peer))) => {
                let _ = stream.set_nodelay(true);
                let socket_name = match stream.local_addr() {
                    Ok(local) => format!("fd {}, aka {local}, peer of {peer}", stream.as_raw_fd()),
                    Err(_) => format!("fd {}", stream.as_raw_fd()),
                };
                let fd = stream.as_raw_fd();
                let (rd, wr) = stream.into_split();
                start_connection(&lua, rd, wr, fd, peer, socket_name);
            }
            Some(Ok(Accepted::Unix(stream))) => {
                let socket_name = format!("fd {}", stream.as_raw_fd());
                let fd = stream.as_raw_fd();
                let (rd, wr) = stream.into_split();
                start_connection(&lua, rd, wr, fd, "unix/:".into(), socket_name);
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                if let Some(lua) = lua.try_upgrade() {
                    log::write(
                        &lua,
                        Level::Error,
                        &format!("binary: accept failed: {}", os_error_text(&e)),
                    );
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    sched.unpin();
}

/// One client connection: its session, its unsent replies, and how busy it is.
struct Conn {
    session: Rc<Session>,
    salt: [u8; codec::SALT_SIZE],
    out: RefCell<Vec<u8>>,
    writer_wake: Notify,
    /// The socket, which the reader writes to itself at its flush points (see `flush`).
    fd: RawFd,
    /// The writer task holds bytes it has not sent all of: nobody else may write now.
    writer_busy: Cell<bool>,
    /// The reader is serving a batch and flushes at its end: replies need not wake the
    /// writer meanwhile.
    batching: Cell<bool>,
    /// Woken when replies were sent or requests finished (the reader may go on).
    progress: Notify,
    in_flight: Cell<u32>,
    closed: Cell<bool>,
    /// Writes waiting for the WAL, in commit order, and whether a task waits for them.
    wal_waits: RefCell<std::collections::VecDeque<WalWait>>,
    wal_waiting: Cell<bool>,
    /// Malformed packets from this client: the first is logged, the count at close.
    malformed: Cell<u64>,
    /// None while on_connect triggers run; then whether to serve the connection.
    accepted: Cell<Option<bool>>,
    /// The greeting, held back while on_connect triggers run.
    greeting: RefCell<Option<[u8; codec::GREETING_SIZE]>>,
    /// `fd N, aka LOCAL, peer of PEER`, as Tarantool names a socket in its log.
    socket_name: String,
}

/// A relay writes to the connection it took over through its output buffer.
impl relay::Downlink for Conn {
    fn send(&self, bytes: &[u8]) {
        Conn::send(self, bytes)
    }

    fn unsent(&self) -> usize {
        self.out.borrow().len()
    }

    fn progress(&self) -> &Notify {
        &self.progress
    }

    fn is_closed(&self) -> bool {
        self.closed.get()
    }
}

impl Conn {
    fn send(&self, reply: &[u8]) {
        self.append(|out| out.extend_from_slice(reply));
    }

    /// Sends what is ready right from the reader: a non-blocking `send` saves the writer
    /// task's wakeup and poll. Whatever the socket does not take (or all of it, while the
    /// writer is sending older bytes) is left to the writer.
    fn flush(&self) {
        let mut out = self.out.borrow_mut();
        if out.is_empty() || self.closed.get() {
            return;
        }
        if !self.writer_busy.get() {
            // Safety: `fd` is the connection's socket, open while the writer task (which
            // owns its write half) lives, and the writer lives until `closed` is set.
            let sent = unsafe {
                libc::send(
                    self.fd,
                    out.as_ptr().cast(),
                    out.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            // An error (EAGAIN, a reset) is the writer's to find out about.
            if sent > 0 {
                let sent = sent as usize;
                count(|s| s.sent += sent as u64);
                out.drain(..sent);
            }
        }
        if !out.is_empty() {
            drop(out);
            self.writer_wake.notify_one();
        }
    }

    /// The reader begins (`true`) or ends a synchronous stretch of serving; at the end,
    /// what is ready is sent.
    fn set_batching(&self, on: bool) {
        self.batching.set(on);
        if !on {
            self.flush();
        }
    }

    /// A data reply of `count` encoded `items`, written straight into the output buffer.
    fn send_data(&self, sync: u64, count: u32, items: &[u8]) {
        self.append(|out| codec::append_data(out, sync, schema_version(), count, items));
    }

    /// A reply that `write` appends straight into the output buffer.
    fn append(&self, write: impl FnOnce(&mut Vec<u8>)) {
        let _ = self.write_reply(|out| {
            write(out);
            Ok::<(), ()>(())
        });
    }

    /// A reply that `write` puts straight into the output buffer (no buffer of its own to
    /// make and copy); on an error, what it wrote is taken back and the error returned.
    fn write_reply<E>(&self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        if self.closed.get() {
            return Ok(());
        }
        let mut out = self.out.borrow_mut();
        let start = out.len();
        if let Err(e) = write(&mut out) {
            out.truncate(start);
            return Err(e);
        }
        drop(out);
        if start == 0 && !self.batching.get() {
            self.writer_wake.notify_one();
        }
        Ok(())
    }

    fn start_one(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
        count(|s| s.requests_in_progress += 1);
    }

    fn finish_one(&self) {
        self.in_flight.set(self.in_flight.get().saturating_sub(1));
        count(|s| s.requests_in_progress = s.requests_in_progress.saturating_sub(1));
        self.progress.notify_one();
    }
}

fn schema_version() -> u32 {
    box_lua::with_runtime(|rt| rt.db.schema.version as u32).unwrap_or(0)
}

/// The UUID the greeting shows: known from the start of box.cfg, before box runs.
fn instance_uuid() -> uuid::Uuid {
    box_lua::with_runtime(|rt| rt.persist.as_ref().map(|p| p.instance_uuid))
        .flatten()
        .or_else(crate::box_::status::instance_uuid)
        .unwrap_or_default()
}

fn start_connection<R, W>(lua: &mlua::WeakLua, rd: R, wr: W, fd: RawFd, peer: String, socket_name: String)
where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let mut salt = [0u8; codec::SALT_SIZE];
    salt[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    salt[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let conn = Rc::new_cyclic(|weak: &Weak<Conn>| {
        let weak = weak.clone();
        let push: session::PushSink = Box::new(move |sync, value| {
            if let Some(conn) = weak.upgrade() {
                conn.send(&codec::encode_push(sync, schema_version(), value));
            }
        });
        Conn {
            session: Session::new(SessionKind::Binary, crate::box_::access::GUEST, peer, Some(push)),
            salt,
            out: RefCell::new(Vec::with_capacity(4096)),
            writer_wake: Notify::new(),
            fd,
            writer_busy: Cell::new(false),
            batching: Cell::new(false),
            progress: Notify::new(),
            in_flight: Cell::new(0),
            wal_waits: RefCell::new(std::collections::VecDeque::new()),
            wal_waiting: Cell::new(false),
            closed: Cell::new(false),
            malformed: Cell::new(0),
            accepted: Cell::new(Some(true)),
            greeting: RefCell::new(None),
            socket_name,
        }
    });
    count(|s| {
        s.connections += 1;
        s.open_connections += 1;
    });
    let greeting = codec::greeting(crate::box_::VERSION_SHORT, &instance_uuid(), &salt);
    // With on_connect triggers the greeting waits for them (an error goes instead).
    let connect_triggers = SESSION_TRIGGERS.with(Cell::get).connect;
    match lua.try_upgrade().filter(|_| connect_triggers) {
        Some(lua) => {
            conn.accepted.set(None);
            *conn.greeting.borrow_mut() = Some(greeting);
            let args = session_event_args(&lua, "connect");
            let started = start_fiber(
                &lua,
                &conn,
                RequestType::Ping,
                0,
                |h| &h.session,
                Args::values(args),
                Some(SessionEvent::Connect),
            );
            if let Err(e) = started {
                session_event_done(&lua, &conn, 0, SessionEvent::Connect, Some(e));
            }
        }
        None => conn.send(&greeting),
    }
    tokio::task::spawn_local(write_loop(conn.clone(), wr));
    tokio::task::spawn_local(read_loop(lua.clone(), conn, rd));
}

async fn write_loop<W: AsyncWrite + Unpin>(conn: Rc<Conn>, mut wr: W) {
    let mut spare = Vec::with_capacity(4096);
    loop {
        std::mem::swap(&mut spare, &mut *conn.out.borrow_mut());
        if spare.is_empty() {
            if conn.closed.get() {
                break;
            }
            conn.writer_wake.notified().await;
            continue;
        }
        conn.writer_busy.set(true);
        let result = wr.write_all(&spare).await;
        conn.writer_busy.set(false);
        count(|s| s.sent += spare.len() as u64);
        spare.clear();
        // A reply burst must not keep a huge buffer for the connection's lifetime.
        if spare.capacity() > 1 << 20 {
            spare = Vec::with_capacity(4096);
        }
        conn.progress.notify_one();
        if result.is_err() {
            conn.closed.set(true);
            conn.out.borrow_mut().clear();
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Waits while the connection may take no more requests: `net_msg_max` of them being
/// served, or too many replies unsent. False once the connection is closed.
async fn room_for_requests(conn: &Conn) -> bool {
    while !conn.closed.get()
        && (conn.in_flight.get() >= NET_MSG_MAX.with(Cell::get) || conn.out.borrow().len() > MAX_UNSENT)
    {
        conn.progress.notified().await;
    }
    !conn.closed.get()
}

async fn read_loop<R: AsyncRead + Unpin>(weak_lua: mlua::WeakLua, conn: Rc<Conn>, mut rd: R) {
    let lua = &weak_lua;
    while conn.accepted.get().is_none() {
        conn.progress.notified().await;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    'read: loop {
        if conn.accepted.get() == Some(false) {
            break;
        }
        if !room_for_requests(&conn).await {
            break;
        }
        let readahead = READAHEAD.with(Cell::get);
        if buf.capacity() - buf.len() < readahead / 4 {
            buf.reserve(buf.capacity().max(readahead));
        }
        let n = match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count(|s| s.received += n as u64);
        let Some(mut lua) = weak_lua.try_upgrade() else { break };
        let mut pos = 0;
        let mut served = 0u32;
        let mut flushed_at = std::time::Instant::now();
        conn.set_batching(true);
        loop {
            match codec::next_packet(&buf[pos..], codec::PACKET_SIZE_MAX) {
                Ok(Some(frame)) => {
                    // The limit holds inside a batch too: the rest waits in the buffer.
                    if conn.in_flight.get() >= NET_MSG_MAX.with(Cell::get) {
                        box_lua::flush_wal();
                        conn.set_batching(false);
                        if !room_for_requests(&conn).await {
                            break 'read;
                        }
                        conn.set_batching(true);
                    }
                    let packet = &buf[pos + frame.packet.start..pos + frame.packet.end];
                    let takeover = serve(&lua, &conn, packet);
                    pos += frame.consumed;
                    served += 1;
                    if let Some(request) = takeover {
                        // JOIN or SUBSCRIBE: the relay reads and writes the socket now.
                        buf.drain(..pos);
                        pos = 0;
                        box_lua::flush_wal();
                        drop(lua);
                        conn.set_batching(false);
                        if !replicate(&weak_lua, &conn, request, &mut rd, &mut buf).await {
                            break 'read;
                        }
                        conn.set_batching(true);
                        match weak_lua.try_upgrade() {
                            Some(l) => lua = l,
                            None => break 'read,
                        }
                        continue;
                    }
                    let flush_now = served == FIRST_FLUSH_AFTER
                        || (served.is_multiple_of(FLUSH_CHECK) && flushed_at.elapsed() >= FLUSH_AFTER);
                    if flush_now && pos < buf.len() {
                        // Send what is ready while the rest is served: the client starts
                        // on those replies meanwhile (2 cores work at once).
                        box_lua::flush_wal();
                        conn.flush();
                        if conn.in_flight.get() > 0 {
                            // Replies wait in other tasks (the WAL's, yielded fibers).
                            conn.set_batching(false);
                            tokio::task::yield_now().await;
                            conn.set_batching(true);
                        }
                        flushed_at = std::time::Instant::now();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be framed any more: answer and close, as 2.6 does.
                    note_malformed(&lua, &conn, &e.to_string());
                    conn.send(&e.encode(schema_version()));
                    break 'read;
                }
            }
        }
        buf.drain(..pos);
        // The batch's commits go to the WAL thread together.
        box_lua::flush_wal();
        conn.set_batching(false);
        if buf.is_empty() && buf.capacity() > 1 << 20 {
            buf = Vec::with_capacity(16 * 1024);
        }
    }
    // Replies already queued are still sent; fibers still running reply into nothing.
    conn.set_batching(false);
    conn.closed.set(true);
    count(|s| s.open_connections = s.open_connections.saturating_sub(1));
    // on_disconnect runs once the connection's requests are done, in its session.
    if SESSION_TRIGGERS.with(Cell::get).disconnect || conn.session.storage_used.get() {
        while conn.in_flight.get() > 0 {
            conn.progress.notified().await;
        }
        if let Some(lua) = lua.try_upgrade() {
            let args = session_event_args(&lua, "disconnect");
            if let Err(e) = start_fiber(
                &lua,
                &conn,
                RequestType::Ping,
                0,
                |h| &h.session,
                Args::values(args),
                Some(SessionEvent::Disconnect),
            ) {
                log::write(&lua, Level::Error, &format!("binary: on_disconnect: {e}"));
            }
        }
    }
    conn.writer_wake.notify_one();
    let count = conn.malformed.get();
    if count > 1 {
        if let Some(lua) = lua.try_upgrade() {
            log::write(
                &lua,
                Level::Error,
                &format!("binary: {count} malformed packets from {}", conn.session.peer),
            );
        }
    }
}

fn note_malformed(lua: &Lua, conn: &Conn, what: &str) {
    count(|s| s.malformed += 1);
    let n = conn.malformed.get() + 1;
    conn.malformed.set(n);
    if n == 1 {
        log::write(
            lua,
            Level::Error,
            &format!("binary: malformed packet from {}: {what}", conn.session.peer),
        );
    }
}

/// A request after which the connection belongs to a relay (JOIN, SUBSCRIBE).
struct Takeover {
    kind: RequestType,
    sync: u64,
    body: Option<Vec<u8>>,
}

/// Serves one packet; a JOIN or SUBSCRIBE is handed back for the relay.
fn serve(lua: &Lua, conn: &Rc<Conn>, packet: &[u8]) -> Option<Takeover> {
    count(|s| s.requests += 1);
    let req = match codec::decode_request(packet) {
        Ok(r) => r,
        Err(e) => {
            note_malformed(lua, conn, &e.to_string());
            conn.send(&e.encode(schema_version()));
            return None;
        }
    };
    let sync = req.sync;
    let version = schema_version();
    if let Err(e) = req.check_schema_version(version) {
        conn.send(&codec::encode_error(sync, version, &e));
        return None;
    }
    let result = match (req.kind, req.body) {
        (RequestType::Ping, _) => {
            conn.append(|out| codec::append_ok(out, sync, version));
            Ok(None)
        }
        (RequestType::Auth, Body::Auth(auth)) => authenticate(lua, conn, sync, auth),
        (RequestType::Select, Body::Dml(dml)) => select(conn, sync, &dml).map(|()| None),
        (
            RequestType::Insert
            | RequestType::Replace
            | RequestType::Update
            | RequestType::Delete
            | RequestType::Upsert,
            Body::Dml(dml),
        ) => write(lua, conn, req.kind, sync, &dml),
        (RequestType::Call | RequestType::Call16, Body::Call { function_name, args }) => {
            call(lua, conn, req.kind, sync, function_name, args).map(|()| None)
        }
        (RequestType::Eval, Body::Eval { expr, args }) => eval(lua, conn, sync, expr, args).map(|()| None),
        (RequestType::Vote, _) => Ok(Some(relay::current_ballot().encode_reply(sync, version))),
        (RequestType::VoteDeprecated, _) => {
            let mut body = vec![0x81, codec::keys::VCLOCK];
            crate::replication::proto::put_vclock(&mut body, &relay::current_vclock());
            Ok(Some(codec::encode_ok(sync, version, Some(&body))))
        }
        (kind @ (RequestType::Join | RequestType::Subscribe), Body::Raw(body)) => {
            return Some(Takeover {
                kind,
                sync,
                body: body.map(<[u8]>::to_vec),
            })
        }
        (kind, _) => Err(client_error!(ER_UNKNOWN_REQUEST_TYPE, kind.code() as u32)),
    };
    match result {
        Ok(Some(reply)) => conn.send(&reply),
        Ok(None) => {}
        Err(e) => conn.send(&encode_client_error(sync, &e)),
    }
    None
}

/// Runs a JOIN or SUBSCRIBE on the connection; false when the connection must close
/// (a subscription always ends so, as 2.6's relay does).
async fn replicate<R: AsyncRead + Unpin>(
    lua: &mlua::WeakLua,
    conn: &Rc<Conn>,
    request: Takeover,
    rd: &mut R,
    buf: &mut Vec<u8>,
) -> bool {
    let peer = relay::Peer {
        uid: conn.session.uid.get(),
        socket_name: conn.socket_name.clone(),
    };
    let body = request.body.as_deref();
    conn.start_one();
    let (error, keep_open) = if request.kind == RequestType::Join {
        // After a JOIN the replica goes on with SUBSCRIBE on the same connection.
        (
            join::join(lua, conn.as_ref(), &peer, request.sync, body).await.err(),
            true,
        )
    } else {
        let e = relay::subscribe(lua, conn.as_ref(), &peer, request.sync, body, rd, buf).await;
        (Some(e), false)
    };
    if let Some(e) = error {
        // A request or ack that could not be decoded counts as a malformed packet.
        if e.code == ER_INVALID_MSGPACK {
            if let Some(lua) = lua.try_upgrade() {
                note_malformed(&lua, conn, &e.message);
            }
        }
        conn.send(&e.encode(request.sync, schema_version()));
    }
    conn.finish_one();
    keep_open
}

fn encode_client_error(sync: u64, e: &ClientError) -> Vec<u8> {
    encode_error(sync, "ClientError", e.code, &e.message)
}

/// An error reply. Access errors travel as AccessDeniedError with their three fields, which
/// net.box requires of that type; they are read back from Tarantool's message
/// (`Read access to space 'x' is denied for user 'y'`).
fn encode_error(sync: u64, type_name: &str, code: u32, message: &str) -> Vec<u8> {
    let mut info = ErrorInfo {
        type_name,
        file: "",
        line: 0,
        message,
        errno: 0,
        code,
        fields: codec::ErrorFields::None,
    };
    if code == ER_ACCESS_DENIED {
        if let Some((access_type, object_type, object_name)) = access_denied_fields(message) {
            info.type_name = "AccessDeniedError";
            info.fields = codec::ErrorFields::AccessDenied {
                object_type,
                object_name,
                access_type,
            };
        }
    }
    codec::encode_error_stack(sync, schema_version(), &[info])
}

fn access_denied_fields(message: &str) -> Option<(&str, &str, &str)> {
    let (access_type, rest) = message.split_once(" access to ")?;
    let (object_type, rest) = rest.split_once(" '")?;
    let (object_name, _) = rest.rsplit_once("' is denied for user '")?;
    Some((access_type, object_type, object_name))
}

fn not_ready() -> ClientError {
    client_error!(ER_LOADING)
}

/// AUTH; with on_auth triggers the outcome waits for them (they run in a fiber).
fn authenticate(lua: &Lua, conn: &Rc<Conn>, sync: u64, auth: codec::Auth<'_>) -> Result<Option<Vec<u8>>, ClientError> {
    let user = String::from_utf8_lossy(auth.user_name).into_owned();
    let outcome = crate::box_::access::AuthTuple::from_msgpack(auth.tuple).and_then(|tuple| {
        box_lua::with_runtime(|rt| {
            rt.db
                .schema
                .access
                .authenticate(&user, &conn.salt[..crate::box_::chap_sha1::SCRAMBLE_SIZE], &tuple)
        })
        .ok_or_else(not_ready)?
    });
    if !SESSION_TRIGGERS.with(Cell::get).auth {
        conn.session.uid.set(outcome?);
        return Ok(Some(codec::encode_ok(sync, schema_version(), None)));
    }
    let mut args = session_event_args(lua, "auth");
    args.push_back(lua_str(lua, user.as_bytes())?);
    args.push_back(LuaValue::Boolean(outcome.is_ok()));
    start_fiber(
        lua,
        conn,
        RequestType::Auth,
        sync,
        |h| &h.session,
        Args::values(args),
        Some(SessionEvent::Auth(outcome)),
    )?;
    Ok(None)
}

fn session_event_args(lua: &Lua, kind: &str) -> LuaMultiValue {
    let mut args = LuaMultiValue::new();
    if let Ok(s) = lua.create_string(kind) {
        args.push_back(LuaValue::String(s));
    }
    args
}

/// The triggers of `event` finished (`error`: one raised).
fn session_event_done(lua: &Lua, conn: &Rc<Conn>, sync: u64, event: SessionEvent, error: Option<ClientError>) {
    match event {
        SessionEvent::Connect => {
            match error {
                None => {
                    if let Some(g) = conn.greeting.borrow_mut().take() {
                        conn.send(&g);
                    }
                    conn.accepted.set(Some(true));
                }
                Some(e) => {
                    // Tarantool closes without a word to the client; the log says why.
                    log::write(
                        lua,
                        Level::Error,
                        &format!("binary: on_connect trigger failed: {}", e.message),
                    );
                    conn.accepted.set(Some(false));
                }
            }
            conn.progress.notify_one();
        }
        SessionEvent::Auth(outcome) => match (outcome, error) {
            (Ok(uid), None) => {
                conn.session.uid.set(uid);
                conn.send(&codec::encode_ok(sync, schema_version(), None));
            }
            (Err(e), _) | (Ok(_), Some(e)) => conn.send(&encode_client_error(sync, &e)),
        },
        SessionEvent::Disconnect => {}
    }
}

fn iterator(code: u32) -> Result<IterType, ClientError> {
    IterType::from_code(code as i64).ok_or_else(|| client_error!(ER_ILLEGAL_PARAMS, "Invalid iterator type"))
}

const EMPTY_ARRAY: &[u8] = &[0x90];

/// SELECT: the tuples go straight into the connection's output buffer.
fn select(conn: &Conn, sync: u64, dml: &Dml<'_>) -> Result<(), ClientError> {
    let uid = conn.session.uid.get();
    box_lua::with_runtime(|rt| {
        let q = box_lua::Select {
            space_id: dml.space_id,
            index_id: dml.index_id,
            iterator: iterator(dml.iterator)?,
            offset: dml.offset as u64,
            limit: dml.limit as u64,
            key: dml.key.unwrap_or(EMPTY_ARRAY),
        };
        rt.db.stats.select += 1;
        let version = rt.db.schema.version as u32;
        conn.write_reply(|out| {
            let start = codec::begin_data(out, sync, version);
            let mut count = 0u32;
            box_lua::select_each(rt, uid, &q, |t| {
                out.extend_from_slice(t.data());
                count = count.saturating_add(1);
            })?;
            codec::end_data(out, start, count);
            Ok(())
        })
    })
    .ok_or_else(not_ready)?
}

fn write(
    lua: &Lua,
    conn: &Rc<Conn>,
    kind: RequestType,
    sync: u64,
    dml: &Dml<'_>,
) -> Result<Option<Vec<u8>>, ClientError> {
    let uid = conn.session.uid.get();
    let space_id = dml.space_id;
    let has_triggers = box_lua::with_runtime(|rt| rt.spaces_with_triggers.contains(&space_id)).ok_or_else(not_ready)?;
    if has_triggers {
        return write_through_lua(lua, conn, kind, sync, dml).map(|()| None);
    }
    let tuple = || Tuple::new(dml.tuple.unwrap_or(EMPTY_ARRAY));
    let key = dml.key.unwrap_or(EMPTY_ARRAY);
    let index_base = dml.index_base as i64;
    let req = match kind {
        RequestType::Insert => WriteRequest::Insert {
            space_id,
            tuple: tuple()?,
        },
        RequestType::Replace => WriteRequest::Replace {
            space_id,
            tuple: tuple()?,
        },
        RequestType::Update => WriteRequest::Update {
            space_id,
            index_id: dml.index_id,
            key,
            ops: dml.tuple.unwrap_or(EMPTY_ARRAY),
            index_base,
        },
        RequestType::Upsert => WriteRequest::Upsert {
            space_id,
            tuple: tuple()?,
            ops: dml.ops.unwrap_or(EMPTY_ARRAY),
            index_base,
        },
        _ => WriteRequest::Delete {
            space_id,
            index_id: dml.index_id,
            key,
        },
    };
    let (shown, ticket) = box_lua::with_runtime(|rt| {
        let (shown, stmt) = rt.db.execute(NO_FIBER, uid, req, true)?;
        let ticket = match stmt {
            Some(stmt) => box_lua::commit_stmt(rt, stmt)?,
            None => None,
        };
        Ok::<_, ClientError>((shown, ticket))
    })
    .ok_or_else(not_ready)??;
    if crate::box_::schema::Schema::is_system(space_id) {
        // DDL over IPROTO: box.space must follow.
        if let Err(e) = box_lua::after_write(lua) {
            log::write(lua, Level::Error, &format!("binary: schema reload failed: {e}"));
        }
    }
    // UPSERT answers with no tuple, as in Tarantool.
    let shown = if kind == RequestType::Upsert { None } else { shown };
    let reply = move |shown: Option<Tuple>| {
        let mut reply = codec::DataResponse::new(sync, schema_version());
        if let Some(t) = &shown {
            reply.push(t.data());
        }
        reply.finish()
    };
    match ticket {
        None => Ok(Some(reply(shown))),
        Some(ticket) => {
            conn.start_one();
            wait_for_wal(conn, WalWait { ticket, sync, shown });
            Ok(None)
        }
    }
}

/// A write whose reply waits for its commit to be written.
struct WalWait {
    ticket: u64,
    sync: u64,
    shown: Option<Tuple>,
}

/// Replies to `wait` once the WAL has its commit. One task per connection waits for all of
/// the connection's writes, in commit order (a task per write cost a spawn, a waker and a
/// drop each): commits are written in order, so when the first of a group is done the
/// rest are too and are answered without waiting again.
fn wait_for_wal(conn: &Rc<Conn>, wait: WalWait) {
    conn.wal_waits.borrow_mut().push_back(wait);
    if conn.wal_waiting.replace(true) {
        return;
    }
    let conn = conn.clone();
    tokio::task::spawn_local(async move {
        loop {
            let next = conn.wal_waits.borrow_mut().pop_front();
            let Some(w) = next else { break };
            match box_lua::wal_written(w.ticket).await {
                Ok(()) => {
                    let shown = w.shown.as_ref().map_or(&[][..], |t| t.data());
                    conn.send_data(w.sync, u32::from(w.shown.is_some()), shown);
                }
                Err(e) => conn.send(&encode_client_error(w.sync, &e)),
            }
            conn.finish_one();
        }
        conn.wal_waiting.set(false);
    });
}

/// Starts the Lua handler `which` in a fiber (a worker) bound to the connection's session,
/// with `args` after the request's token.
fn start_fiber(
    lua: &Lua,
    conn: &Rc<Conn>,
    kind: RequestType,
    sync: u64,
    which: fn(&Handlers) -> &LuaRegistryKey,
    args: Args<'_>,
    event: Option<SessionEvent>,
) -> Result<(), ClientError> {
    let handler = HANDLERS.with(|h| h.borrow().as_ref().map(|h| which(h).id()));
    let handler = handler.ok_or_else(not_ready)?;
    let token = NEXT_TOKEN.with(|t| {
        let id = t.get();
        t.set(id + 1);
        id
    });
    conn.start_one();
    IN_FIBERS.with(|f| {
        f.borrow_mut().insert(
            token,
            FiberRequest {
                conn: conn.clone(),
                sync,
                kind,
                fid: 0,
                event,
            },
        )
    });
    // The fiber is bound before it runs: box.session.* must see the connection.
    let mut bound = 0;
    let bind = |fid: u64| {
        bound = fid;
        session::bind(fid, conn.session.clone(), sync);
        IN_FIBERS.with(|f| {
            if let Some(r) = f.borrow_mut().get_mut(&token) {
                r.fid = fid;
            }
        });
    };
    let work = workers::Work {
        handler,
        token,
        leading: args.leading,
        msgpack_items: args.msgpack_items,
        values: args.values,
    };
    match workers::run(lua, work, bind) {
        Ok(()) => Ok(()),
        Err(e) => {
            if IN_FIBERS.with(|f| f.borrow_mut().remove(&token)).is_some() {
                if bound != 0 {
                    session::unbind(bound);
                }
                conn.finish_one();
            }
            Err(ClientError::with_message(ER_PROC_LUA, e.to_string()))
        }
    }
}

/// A handler's arguments after the token: `leading`, then the items of a MessagePack
/// array, then `values`.
#[derive(Default)]
struct Args<'a> {
    leading: &'a [workers::Leading<'a>],
    msgpack_items: Option<&'a [u8]>,
    values: LuaMultiValue,
}

impl Args<'_> {
    fn values(values: LuaMultiValue) -> Args<'static> {
        Args {
            values,
            ..Args::default()
        }
    }
}

/// CALL and EVAL arguments: plain scalars go raw onto the worker's stack, anything else
/// through the full decoder.
fn lua_args<'a>(lua: &Lua, leading: &'a [workers::Leading<'a>], args: &'a [u8]) -> Result<Args<'a>, ClientError> {
    if workers::plain_scalars(args) {
        return Ok(Args {
            leading,
            msgpack_items: Some(args),
            values: LuaMultiValue::new(),
        });
    }
    let mut values = LuaMultiValue::new();
    crate::box_::lua_tuple::decode_array_items(lua, args, &mut values)
        .map_err(|e| ClientError::with_message(ER_INVALID_MSGPACK, e.to_string()))?;
    Ok(Args {
        leading,
        msgpack_items: None,
        values,
    })
}

fn lua_str(lua: &Lua, bytes: &[u8]) -> Result<LuaValue, ClientError> {
    lua.create_string(bytes)
        .map(LuaValue::String)
        .map_err(|e| ClientError::with_message(ER_PROC_LUA, e.to_string()))
}

/// CALL: the function must be in `_func` with execute granted, or the user needs execute
/// on universe (then any Lua function is reachable by its path).
fn call(lua: &Lua, conn: &Rc<Conn>, kind: RequestType, sync: u64, name: &[u8], args: &[u8]) -> Result<(), ClientError> {
    let uid = conn.session.uid.get();
    let text = String::from_utf8_lossy(name);
    let setuid_owner = box_lua::with_runtime(|rt| {
        let schema = &rt.db.schema;
        match schema.funcs.values().find(|f| f.name == text) {
            Some(f) => {
                schema.access.check_function(uid, f.id, &f.name, f.owner)?;
                Ok(f.setuid.then_some(f.owner))
            }
            None => schema
                .access
                .check_universe_object(
                    uid,
                    crate::box_::access::PRIV_EXECUTE,
                    crate::box_::access::ObjectType::Function,
                    &text,
                )
                .map(|()| None),
        }
    })
    .ok_or_else(not_ready)??;
    let leading = [
        workers::Leading::Str(name),
        workers::Leading::Int(setuid_owner.map_or(-1, |o| o as i64)),
    ];
    start_fiber(lua, conn, kind, sync, |h| &h.call, lua_args(lua, &leading, args)?, None)
}

/// EVAL needs execute on universe.
fn eval(lua: &Lua, conn: &Rc<Conn>, sync: u64, expr: &[u8], args: &[u8]) -> Result<(), ClientError> {
    let uid = conn.session.uid.get();
    box_lua::with_runtime(|rt| {
        rt.db
            .schema
            .access
            .check_universe(uid, crate::box_::access::PRIV_EXECUTE)
    })
    .ok_or_else(not_ready)??;
    let leading = [workers::Leading::Str(expr)];
    start_fiber(
        lua,
        conn,
        RequestType::Eval,
        sync,
        |h| &h.eval,
        lua_args(lua, &leading, args)?,
        None,
    )
}

/// DML on a space with Lua triggers runs through box's Lua API in a fiber.
fn write_through_lua(
    lua: &Lua,
    conn: &Rc<Conn>,
    kind: RequestType,
    sync: u64,
    dml: &Dml<'_>,
) -> Result<(), ClientError> {
    let decode = |raw: Option<&[u8]>| -> Result<LuaValue, ClientError> {
        match raw {
            Some(raw) => crate::box_::lua_tuple::decode_to_lua(lua, raw)
                .map_err(|e| ClientError::with_message(ER_PROC_LUA, e.to_string())),
            None => Ok(LuaValue::Nil),
        }
    };
    let mut values = LuaMultiValue::new();
    values.push_back(LuaValue::Integer(kind.code() as i64));
    values.push_back(LuaValue::Integer(dml.space_id as i64));
    values.push_back(LuaValue::Integer(dml.index_id as i64));
    values.push_back(decode(dml.key)?);
    values.push_back(decode(dml.tuple)?);
    values.push_back(decode(dml.ops)?);
    values.push_back(LuaValue::Integer(dml.index_base as i64));
    start_fiber(lua, conn, kind, sync, |h| &h.dml, Args::values(values), None)
}

fn take_request(token: i64) -> Option<FiberRequest> {
    let r = IN_FIBERS.with(|f| f.borrow_mut().remove(&token))?;
    session::unbind(r.fid);
    r.conn.finish_one();
    Some(r)
}

/// CALL and EVAL must not leave a transaction open (the fiber serves other requests
/// next): it is rolled back and the request fails, as in Tarantool.
fn left_a_transaction(lua: &Lua, r: &FiberRequest) -> bool {
    r.event.is_none()
        && matches!(r.kind, RequestType::Call | RequestType::Call16 | RequestType::Eval)
        && box_lua::rollback_left_open(lua, r.fid)
}

/// `box.internal.iproto_reply(token, ...)`: the handler's results as the reply.
fn reply(lua: &Lua, (token, values): (i64, LuaMultiValue)) -> LuaResult<()> {
    let Some(r) = take_request(token) else { return Ok(()) };
    if let Some(event) = r.event {
        session_event_done(lua, &r.conn, r.sync, event, None);
        return Ok(());
    }
    if left_a_transaction(lua, &r) {
        r.conn
            .send(&encode_client_error(r.sync, &client_error!(ER_FUNCTION_TX_ACTIVE)));
        return Ok(());
    }
    let encoded = match r.kind {
        RequestType::Call16 => encode_call16(lua, r.sync, &values),
        RequestType::Upsert => encode_values(lua, r.sync, &[]),
        RequestType::Insert | RequestType::Replace | RequestType::Update | RequestType::Delete => {
            // A write returns its tuple (or nothing).
            let values: Vec<LuaValue> = values.into_iter().filter(|v| !v.is_nil()).take(1).collect();
            encode_values(lua, r.sync, &values)
        }
        _ => {
            let values = values.into_vec();
            encode_values(lua, r.sync, &values)
        }
    };
    match encoded {
        Ok(bytes) => r.conn.send(&bytes),
        Err(e) => {
            let e = ClientError::with_message(ER_PROC_LUA, e.to_string());
            r.conn.send(&encode_client_error(r.sync, &e));
        }
    }
    Ok(())
}

fn encode_values(lua: &Lua, sync: u64, values: &[LuaValue]) -> LuaResult<Vec<u8>> {
    let mut items = Vec::with_capacity(64);
    crate::box_::lua_tuple::append_msgpack(lua, values.iter(), &mut items)?;
    Ok(codec::encode_data(sync, schema_version(), values.len() as u32, &items))
}

fn is_tuple_like(lua: &Lua, v: &LuaValue) -> bool {
    match v {
        LuaValue::Table(_) => true,
        LuaValue::UserData(_) => crate::box_::lua_tuple::is_tuple(lua, v),
        _ => false,
    }
}

/// CALL_16 (1.6's call): every result is a tuple; a scalar `x` becomes `[x]`, and a lone
/// table of tables or tuples is unpacked into its elements.
fn encode_call16(lua: &Lua, sync: u64, values: &LuaMultiValue) -> LuaResult<Vec<u8>> {
    let mut reply = codec::DataResponse::new(sync, schema_version());
    let as_tuple = |v: &LuaValue| -> LuaResult<Vec<u8>> {
        if is_tuple_like(lua, v) {
            Ok(crate::box_::lua_tuple::tuple_from_lua(lua, v)?.data().to_vec())
        } else {
            let mut out = vec![0x91];
            out.extend_from_slice(&crate::box_::lua_tuple::value_to_msgpack(lua, v)?);
            Ok(out)
        }
    };
    if let (1, Some(LuaValue::Table(t))) = (values.len(), values.front()) {
        let first = t.clone().pairs::<LuaValue, LuaValue>().next();
        if let Some(Ok((_, first))) = first {
            if is_tuple_like(lua, &first) {
                for pair in t.clone().pairs::<LuaValue, LuaValue>() {
                    let (_, v) = pair?;
                    reply.push(&as_tuple(&v)?);
                }
                return Ok(reply.finish());
            }
        }
    }
    for v in values {
        reply.push(&as_tuple(v)?);
    }
    Ok(reply.finish())
}

// {{{ `reply` as a raw C function: the results encoded straight off the Lua stack into the
// connection's output buffer, for the common replies (CALL and EVAL results the raw
// encoder takes); anything else goes to the mlua version, before anything is changed.

/// Upvalues of [`raw_reply`].
const UV_NULL: c_int = ffi::lua_upvalueindex(1);
const UV_ARRAY_MT: c_int = ffi::lua_upvalueindex(2);
const UV_TUPLE_MT: c_int = ffi::lua_upvalueindex(3);
const UV_SLOW: c_int = ffi::lua_upvalueindex(4);

thread_local! {
    /// The encoded results of the reply being made, reused.
    static REPLY_ITEMS: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

/// `box.internal.iproto_reply(token, ...)`.
unsafe extern "C-unwind" fn raw_reply(l: *mut ffi::lua_State) -> c_int {
    // Safety: Lua calls this with the token and the results, and the upvalues `install`
    // gives it; nothing below raises a Lua error until the mlua version is called, and
    // nothing owned is alive then.
    let top = ffi::lua_gettop(l);
    if raw_reply_done(l, top) {
        return 0;
    }
    crate::box_::lua_tuple::call_with_args(l, UV_SLOW, top)
}

/// Sends the reply if the raw way can; false (nothing changed) if not.
///
/// # Safety
/// As for [`raw_reply`].
unsafe fn raw_reply_done(l: *mut ffi::lua_State, top: c_int) -> bool {
    if top < 1 || ffi::lua_type(l, 1) != ffi::LUA_TNUMBER {
        return false;
    }
    let token = ffi::lua_tointeger(l, 1) as i64;
    let plain = IN_FIBERS.with(|f| {
        f.borrow().get(&token).is_some_and(|r| {
            r.event.is_none()
                && matches!(r.kind, RequestType::Call | RequestType::Eval)
                && !box_lua::with_runtime(|rt| rt.db.in_txn(r.fid)).unwrap_or(true)
        })
    });
    if !plain {
        return false;
    }
    let cx = crate::box_::lua_tuple::RawCx::from_slots(
        UV_NULL,
        UV_ARRAY_MT,
        UV_TUPLE_MT,
        crate::box_::lua_tuple::SPARSE_RATIO,
    );
    REPLY_ITEMS.with(|items| {
        let Ok(mut items) = items.try_borrow_mut() else {
            return false;
        };
        items.clear();
        for i in 2..=top {
            if crate::box_::lua_tuple::raw_value(l, i, &mut items, 0, &cx).is_err() {
                return false;
            }
        }
        let Some(r) = take_request(token) else { return false };
        r.conn.send_data(r.sync, (top - 1) as u32, &items);
        // A burst of big replies must not keep a big buffer.
        if items.capacity() > 1 << 20 {
            *items = Vec::with_capacity(256);
        }
        true
    })
}

// }}}

/// `box.internal.iproto_reply_error(token, err)`: a Lua error as the reply: box.error
/// objects keep their code and type, anything else is a Lua error (code 32).
fn reply_error(lua: &Lua, (token, err): (i64, LuaValue)) -> LuaResult<()> {
    let Some(r) = take_request(token) else { return Ok(()) };
    if r.event.is_none() {
        // Its transaction goes with it, before the next request on its fiber.
        box_lua::rollback_left_open(lua, r.fid);
    }
    let as_text = |v: &LuaValue| match v {
        LuaValue::Table(_) | LuaValue::UserData(_) => lua
            .globals()
            .get::<LuaFunction>("tostring")
            .and_then(|f| f.call::<String>(v.clone()))
            .unwrap_or_else(|_| "unknown exception".into()),
        _ => lua_error_text(v),
    };
    let (type_name, code, message) = match &err {
        LuaValue::UserData(ud) => match ud.borrow::<ErrorObject>() {
            Ok(e) => (e.0.kind, e.0.code.unwrap_or(0), e.0.message.clone()),
            Err(_) => ("LuajitError", ER_PROC_LUA, as_text(&err)),
        },
        _ => ("LuajitError", ER_PROC_LUA, as_text(&err)),
    };
    if let Some(event) = r.event {
        let e = ClientError::with_message(code, message);
        session_event_done(lua, &r.conn, r.sync, event, Some(e));
        return Ok(());
    }
    r.conn.send(&encode_error(r.sync, type_name, code, &message));
    Ok(())
}

fn lua_error_text(v: &LuaValue) -> String {
    match v {
        LuaValue::String(s) => s.to_string_lossy(),
        LuaValue::Nil => "nil".into(),
        LuaValue::Integer(i) => i.to_string(),
        LuaValue::Number(n) => n.to_string(),
        LuaValue::Boolean(b) => b.to_string(),
        LuaValue::Error(e) => e.to_string(),
        _ => "unknown exception".into(),
    }
}

/// Functions lua/box/iproto.lua uses, and where it registers its handlers.
pub fn install(lua: &Lua, internal: &LuaTable) -> LuaResult<()> {
    let [null, array_mt, tuple_mt] = crate::box_::lua_tuple::raw_cx_values(lua)?;
    let slow = LuaValue::Function(lua.create_function(reply)?);
    internal.set(
        "iproto_reply",
        crate::box_::lua_tuple::c_closure(lua, raw_reply, &[null, array_mt, tuple_mt, slow])?,
    )?;
    internal.set("iproto_reply_error", lua.create_function(reply_error)?)?;
    internal.set(
        "iproto_set_handlers",
        lua.create_function(
            |lua, (call, eval, dml, session): (LuaFunction, LuaFunction, LuaFunction, LuaFunction)| {
                let h = Handlers {
                    call: lua.create_registry_value(call)?,
                    eval: lua.create_registry_value(eval)?,
                    dml: lua.create_registry_value(dml)?,
                    session: lua.create_registry_value(session)?,
                };
                HANDLERS.with(|x| *x.borrow_mut() = Some(h));
                Ok(())
            },
        )?,
    )?;
    internal.set(
        "iproto_cfg",
        lua.create_function(|_, (net_msg_max, readahead): (Option<f64>, Option<f64>)| {
            if let Some(n) = net_msg_max.filter(|n| *n >= 1.0) {
                NET_MSG_MAX.with(|c| c.set(n.min(u32::MAX as f64) as u32));
            }
            if let Some(n) = readahead.filter(|n| *n >= 128.0) {
                READAHEAD.with(|c| c.set(n.min(1e9) as usize));
            }
            Ok(())
        })?,
    )?;
    internal.set(
        "set_session_triggers",
        lua.create_function(|_, (kind, has): (String, bool)| {
            let mut t = SESSION_TRIGGERS.with(Cell::get);
            match kind.as_str() {
                "on_connect" => t.connect = has,
                "on_disconnect" => t.disconnect = has,
                _ => t.auth = has,
            }
            SESSION_TRIGGERS.with(|x| x.set(t));
            Ok(())
        })?,
    )?;
    internal.set(
        "session_storage_used",
        lua.create_function(|_, ()| {
            if let Some(s) = session::of_fiber(fiber::current_id()) {
                s.storage_used.set(true);
            }
            Ok(())
        })?,
    )?;
    internal.set(
        "listen",
        lua.create_function(|lua, uri: LuaValue| {
            let uri = match uri {
                LuaValue::Nil => None,
                LuaValue::Integer(i) => Some(i.to_string()),
                LuaValue::Number(n) => Some((n as i64).to_string()),
                LuaValue::String(s) => Some(s.to_string_lossy()),
                _ if crate::runtime::cdata::is_nil_or_null(lua, &uri) => None,
                other => Some(lua_error_text(&other)),
            };
            listen(lua, uri)
        })?,
    )?;
    internal.set(
        "net_stat",
        lua.create_function(|lua, ()| {
            let s = net_stat();
            let entry = |pairs: &[(&str, f64)]| -> LuaResult<LuaTable> {
                let t = lua.create_table()?;
                for (k, v) in pairs {
                    t.set(*k, *v)?;
                }
                Ok(t)
            };
            let t = lua.create_table()?;
            t.set("SENT", entry(&[("total", s.sent as f64), ("rps", rate(|s| s.sent))])?)?;
            t.set(
                "RECEIVED",
                entry(&[("total", s.received as f64), ("rps", rate(|s| s.received))])?,
            )?;
            t.set(
                "CONNECTIONS",
                entry(&[
                    ("total", s.connections as f64),
                    ("current", s.open_connections as f64),
                    ("rps", rate(|s| s.connections)),
                ])?,
            )?;
            t.set(
                "REQUESTS",
                entry(&[
                    ("total", s.requests as f64),
                    ("current", s.requests_in_progress as f64),
                    ("rps", rate(|s| s.requests)),
                ])?,
            )?;
            // node's own: packets that could not be decoded.
            t.set("MALFORMED", entry(&[("total", s.malformed as f64)])?)?;
            Ok(t)
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let tcp = |h: &str, p| Some(ListenAddr::Tcp(h.into(), p));
        assert_eq!(parse_listen("3301"), tcp("0.0.0.0", 3301));
        assert_eq!(parse_listen("localhost:3301"), tcp("localhost", 3301));
        assert_eq!(parse_listen("127.0.0.1:3301"), tcp("127.0.0.1", 3301));
        assert_eq!(parse_listen("[::1]:3301"), tcp("::1", 3301));
        assert_eq!(parse_listen("user:pass@127.0.0.1:3301"), tcp("127.0.0.1", 3301));
        assert_eq!(
            parse_listen("unix/:/tmp/x.sock"),
            Some(ListenAddr::Unix(PathBuf::from("/tmp/x.sock")))
        );
        assert_eq!(parse_listen("unix/:"), None);
        assert_eq!(parse_listen("nonsense"), None);
        assert_eq!(parse_listen("host:99999"), None);
    }

    #[test]
    fn rates_are_per_second_over_the_sampled_window() {
        assert_eq!(rate(|s| s.requests), 0.0, "no samples yet");
        let t0 = std::time::Instant::now();
        for (secs, requests) in [(0, 100), (1, 400), (2, 700)] {
            let stat = NetStat {
                requests,
                ..NetStat::default()
            };
            NET_SAMPLES.with(|h| {
                h.borrow_mut()
                    .push_back((t0 + std::time::Duration::from_secs(secs), stat))
            });
        }
        assert_eq!(rate(|s| s.requests), 300.0);
        assert_eq!(rate(|s| s.sent), 0.0);
    }

    #[test]
    fn access_denied_fields_from_the_message() {
        assert_eq!(
            access_denied_fields("Execute access to universe '' is denied for user 'guest'"),
            Some(("Execute", "universe", ""))
        );
        assert_eq!(
            access_denied_fields("Create access to space 'a b' is denied for user 'x'"),
            Some(("Create", "space", "a b"))
        );
        assert_eq!(access_denied_fields("Something else"), None);
    }
}
