//! `socket`: Tarantool's BSD socket module.
//!
//! As in Tarantool, a socket is a Lua table `{ _gc_socket = <handle>, itype = <type> }`
//! with a shared metatable, so scripts may store their own fields in it and override
//! methods (`s.close = ...`), and the descriptor is closed when the handle is collected.
//! The handle owns a nonblocking descriptor registered with tokio through [`AsyncFd`].
//!
//! Syscall-style methods (`sysread`, `syswrite`, `send`, `recv`, `accept`, `sysconnect`)
//! never wait: they return nil/false and set the socket's errno (`EAGAIN`,
//! `EINPROGRESS`, ...), exactly as in Tarantool. Waiting methods (`read`, `write`,
//! `readable`, `writable`, `wait`, `connect`, `tcp_connect`) yield only the calling fiber:
//! they check real readiness with a zero-timeout `poll` (level-triggered, like libev) and
//! otherwise sleep on tokio's readiness, a timer and the socket's close notification, all
//! through [`fiber::cancellable`] so `fiber:cancel()` interrupts them.
//!
//! Errors that Tarantool returns are returned; wrong arguments raise Tarantool's texts,
//! without the `builtin/socket.lua:NN:` prefix that Tarantool's Lua `error()` adds.

pub mod sys;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};
use std::task::Poll;

use mlua::prelude::*;
use socket2::SockAddr;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::modules::log::{self, Level};
use crate::runtime::fiber;
use sys::{Errno, LIMIT_INFINITY, READAHEAD};

/// Tarantool's stand-in for "no timeout": 500 years.
const TIMEOUT_INFINITY: f64 = 500.0 * 365.0 * 86400.0;

/// `listen()` backlog when none is given (Tarantool's).
const DEFAULT_BACKLOG: i32 = 256;

/// A datagram socket's `recv()` without a size reads at most this much from a stream.
const STREAM_RECV_SIZE: usize = 512;

/// The largest buffer one `sysread`/`recv` allocates: a huge size from a script must not
/// allocate gigabytes; a stream read may return less anyway, and a datagram is < 64 KiB.
const MAX_SYSCALL_BUFFER: usize = 16 << 20;

/// Readiness bits, as `iowait` numbers them.
const READ: u8 = 1;
const WRITE: u8 = 2;

const CLOSED_SOCKET: &str = "attempt to use closed socket";
const READ_USAGE: &str = "Usage: s:read(delimiter|chunk|{delimiter = x, chunk = x}, timeout)";
const IOWAIT_USAGE: &str = "Usage: iowait(fd, 1 | 'r' | 2 | 'w' | 3 | 'rw' [, timeout])";
const TCP_SERVER_USAGE: &str = "Usage: socket.tcp_server(host, port, handler | opts)";

// ===== The socket =====

/// Bytes read ahead by `read()` and not yet handed out.
#[derive(Default)]
struct ReadBuf {
    data: Vec<u8>,
    pos: usize,
}

impl ReadBuf {
    fn pending(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.len());
        let out = self.data[self.pos..self.pos + n].to_vec();
        self.pos += n;
        if self.pos == self.data.len() {
            self.data.clear();
            self.pos = 0;
        } else if self.pos > READAHEAD && self.pos * 2 > self.data.len() {
            // Keep the buffer from growing without bound on a long stream.
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        out
    }
}

/// One open (or closed) socket.
pub struct Sock {
    /// None once closed. Dropping the AsyncFd deregisters and closes the descriptor.
    afd: RefCell<Option<AsyncFd<OwnedFd>>>,
    itype: i32,
    /// The last error of this socket; 0 means none (`sock:error()` is nil).
    errno: Cell<Errno>,
    /// What `nonblock()` reports. The descriptor itself always stays nonblocking so the
    /// thread never blocks; "blocking" mode makes syscall methods wait instead of EAGAIN.
    nonblock: Cell<bool>,
    rbuf: RefCell<ReadBuf>,
    /// Wakes every fiber waiting on this socket when it is closed.
    closed: Notify,
    /// tokio's `poll_*_ready` remembers one waker per direction, so with several fibers
    /// waiting on one socket only the last one would wake. The one that wakes (or leaves)
    /// rings this so the others poll again and re-register.
    io_notify: Notify,
    /// A unix socket path that `close()` removes (set by `tcp_server`).
    unlink_on_close: RefCell<Option<String>>,
}

impl Sock {
    fn raw_fd(&self) -> Option<RawFd> {
        self.afd
            .borrow()
            .as_ref()
            .map(|a| std::os::fd::AsRawFd::as_raw_fd(a.get_ref()))
    }

    fn is_closed(&self) -> bool {
        self.afd.borrow().is_none()
    }

    fn fail(&self, e: Errno) {
        self.errno.set(e);
    }

    /// Closes the descriptor now and wakes the fibers that wait on it.
    fn close(&self) -> Result<(), Errno> {
        let Some(afd) = self.afd.borrow_mut().take() else {
            return Err(libc::EBADF);
        };
        if let Some(path) = self.unlink_on_close.borrow_mut().take() {
            let _ = std::fs::remove_file(path);
        }
        let fd = afd.into_inner().into_raw_fd();
        self.closed.notify_waiters();
        // Safety: we owned fd and give it up here, once.
        if unsafe { libc::close(fd) } != 0 {
            return Err(sys::last_errno());
        }
        Ok(())
    }
}

/// The userdata in `_gc_socket`; the descriptor closes when the last reference goes.
struct Handle(Rc<Sock>);

impl LuaUserData for Handle {}

/// Per-state data: the socket metatable, the `name()` metatable, live sockets by fd (for
/// `socket.iowait`), and the Lua wrapper run by every `tcp_server` handler fiber.
struct SocketState {
    socket_mt: LuaRegistryKey,
    soname_mt: LuaRegistryKey,
    handler_wrapper: LuaRegistryKey,
    by_fd: RefCell<HashMap<RawFd, Weak<Sock>>>,
}

fn state(lua: &Lua) -> LuaResult<mlua::AppDataRef<'_, SocketState>> {
    lua.app_data_ref::<SocketState>()
        .ok_or_else(|| LuaError::runtime("socket module is not loaded"))
}

/// Wraps a new descriptor into a socket table.
fn make_socket(lua: &Lua, fd: RawFd, itype: i32) -> LuaResult<(LuaTable, Rc<Sock>)> {
    // Safety: fd was just returned by socket()/accept() and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Safety: the OwnedFd stays inside the AsyncFd until `Sock::close` takes it back out
    // with `into_inner`; nothing replaces or closes the descriptor meanwhile.
    let afd = unsafe { AsyncFd::register(owned) }.map_err(|e| LuaError::runtime(format!("socket: {e}")))?;
    let sock = Rc::new(Sock {
        afd: RefCell::new(Some(afd)),
        itype,
        errno: Cell::new(0),
        nonblock: Cell::new(true),
        rbuf: RefCell::new(ReadBuf::default()),
        closed: Notify::new(),
        io_notify: Notify::new(),
        unlink_on_close: RefCell::new(None),
    });
    let st = state(lua)?;
    st.by_fd.borrow_mut().insert(fd, Rc::downgrade(&sock));
    let t = lua.create_table_with_capacity(0, 2)?;
    t.raw_set("_gc_socket", Handle(sock.clone()))?;
    t.raw_set("itype", itype)?;
    t.set_metatable(Some(lua.registry_value::<LuaTable>(&st.socket_mt)?))?;
    Ok((t, sock))
}

/// Tarantool's `check_socket`: the socket behind `self`, or the usage error.
fn check_socket(v: &LuaValue) -> LuaResult<Rc<Sock>> {
    let handle = match v {
        LuaValue::Table(t) => match t.raw_get::<LuaValue>("_gc_socket")? {
            LuaValue::UserData(ud) => ud.borrow::<Handle>().ok().map(|h| h.0.clone()),
            _ => None,
        },
        _ => None,
    };
    match handle {
        Some(s) if s.is_closed() => Err(LuaError::runtime(CLOSED_SOCKET)),
        Some(s) => Ok(s),
        None if matches!(v, LuaValue::Nil) => Err(LuaError::runtime("Usage: socket:method()")),
        None => Err(LuaError::runtime("Usage: socket:method(), called with non-socket")),
    }
}

/// The descriptor of an open socket (raises if it was closed meanwhile).
fn fd_of(sock: &Sock) -> LuaResult<RawFd> {
    sock.raw_fd().ok_or_else(|| LuaError::runtime(CLOSED_SOCKET))
}

// ===== Argument helpers =====

/// Lua's `tostring`, which Tarantool applies to hosts and ports.
fn lua_tostring(lua: &Lua, v: &LuaValue) -> LuaResult<String> {
    match v {
        LuaValue::String(s) => Ok(s.to_string_lossy()),
        LuaValue::Integer(i) => Ok(i.to_string()),
        LuaValue::Nil => Ok("nil".into()),
        other => lua.globals().get::<LuaFunction>("tostring")?.call(other.clone()),
    }
}

/// Lua's `type()` name (mlua calls integers "integer").
fn lua_type(v: &LuaValue) -> &'static str {
    match v {
        LuaValue::Integer(_) | LuaValue::Number(_) => "number",
        other => other.type_name(),
    }
}

fn number_arg(v: &LuaValue) -> Option<f64> {
    match v {
        LuaValue::Integer(i) => Some(*i as f64),
        LuaValue::Number(n) => Some(*n),
        LuaValue::String(s) => s.to_str().ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// A timeout in seconds (nil: forever) turned into a deadline (None: forever).
fn deadline_arg(v: &LuaValue, method: &str) -> LuaResult<Option<Instant>> {
    if matches!(v, LuaValue::Nil) {
        return Ok(None);
    }
    let secs = number_arg(v).ok_or_else(|| {
        LuaError::runtime(format!(
            "bad argument to '{method}' (timeout: number expected, got {})",
            lua_type(v)
        ))
    })?;
    Ok(deadline_after(secs))
}

fn deadline_after(secs: f64) -> Option<Instant> {
    if secs.is_nan() || secs >= TIMEOUT_INFINITY {
        return None;
    }
    Instant::now().checked_add(fiber::duration_from_secs(secs))
}

fn secs_left(deadline: Option<Instant>) -> f64 {
    match deadline {
        None => TIMEOUT_INFINITY,
        Some(d) => d.saturating_duration_since(Instant::now()).as_secs_f64(),
    }
}

/// Tarantool's `get_iflags`: a name or a list of names OR-ed together; None if any is
/// unknown.
fn flags_arg(table: &[(&str, i32)], v: &LuaValue) -> LuaResult<Option<i32>> {
    let one = |v: &LuaValue| -> Option<i32> {
        match v {
            LuaValue::String(s) => sys::lookup(table, &s.to_str().ok()?),
            _ => None,
        }
    };
    match v {
        LuaValue::Nil => Ok(Some(0)),
        LuaValue::Table(t) => {
            let mut out = 0;
            for pair in t.pairs::<LuaValue, LuaValue>() {
                let (_, f) = pair?;
                match one(&f) {
                    Some(bits) => out |= bits,
                    None => return Ok(None),
                }
            }
            Ok(Some(out))
        }
        other => Ok(one(other)),
    }
}

/// A domain or type given by name or number.
fn named_int(table: &[(&str, i32)], v: &LuaValue) -> Option<i32> {
    match v {
        LuaValue::Integer(i) => i32::try_from(*i).ok(),
        LuaValue::Number(n) if n.fract() == 0.0 && n.abs() < i32::MAX as f64 => Some(*n as i32),
        LuaValue::String(s) => sys::lookup(table, &s.to_str().ok()?),
        _ => None,
    }
}

/// Tarantool's `getprotobyname`: a number as is, a name through the protocol table.
fn protocol_arg(v: &LuaValue) -> Result<i32, Errno> {
    match v {
        LuaValue::Integer(_) | LuaValue::Number(_) => named_int(&[], v).ok_or(libc::EINVAL),
        LuaValue::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| sys::protocol_by_name(&s))
            .ok_or(libc::EPROTOTYPE),
        _ => Err(libc::EINVAL),
    }
}

// ===== Waiting =====

enum Waited {
    /// Ready bits (READ/WRITE).
    Ready(u8),
    TimedOut,
    Closed,
}

/// Waits until the socket is readable/writable (`want` bits), the deadline passes or the
/// socket is closed. Level-triggered: a socket that is ready now returns at once.
async fn wait_io(lua: &Lua, sock: &Rc<Sock>, want: u8, deadline: Option<Instant>) -> LuaResult<Waited> {
    loop {
        let Some(fd) = sock.raw_fd() else {
            return Ok(Waited::Closed);
        };
        match sys::poll_now(fd, want) {
            None => return Ok(Waited::Closed),
            Some(0) => {}
            Some(ready) => return Ok(Waited::Ready(ready)),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Waited::TimedOut);
        }
        let closed = sock.closed.notified();
        let others = sock.io_notify.notified();
        let registered = Cell::new(false);
        let ready = readiness(sock, want, &registered);
        // Whatever ends this wait (readiness, timeout, cancel), except a wake-up from
        // another waiter, hands tokio's waker slot back to the others.
        let guard = RingOnDrop {
            notify: &sock.io_notify,
            armed: &registered,
        };
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        fiber::cancellable(lua, async {
            tokio::select! {
                _ = closed => {},
                _ = ready => {},
                _ = timer => {},
                _ = others => registered.set(false),
            }
        })
        .await?;
        drop(guard);
    }
}

struct RingOnDrop<'a> {
    notify: &'a Notify,
    armed: &'a Cell<bool>,
}

impl Drop for RingOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed.get() {
            self.notify.notify_waiters();
        }
    }
}

/// Resolves when tokio sees new readiness for `want`. The cached readiness is cleared
/// first: the caller has just seen with `poll` that the socket is not ready, and on this
/// single thread no event can slip in between.
async fn readiness(sock: &Rc<Sock>, want: u8, registered: &Cell<bool>) {
    let mut cleared = false;
    std::future::poll_fn(|cx| {
        let guard = sock.afd.borrow();
        let Some(afd) = guard.as_ref() else {
            return Poll::Ready(());
        };
        if !cleared {
            cleared = true;
            if want & READ != 0 {
                if let Poll::Ready(Ok(mut g)) = afd.poll_read_ready(cx) {
                    g.clear_ready();
                }
            }
            if want & WRITE != 0 {
                if let Poll::Ready(Ok(mut g)) = afd.poll_write_ready(cx) {
                    g.clear_ready();
                }
            }
        }
        let mut ready = false;
        if want & READ != 0 && afd.poll_read_ready(cx).is_ready() {
            ready = true;
        }
        if want & WRITE != 0 && afd.poll_write_ready(cx).is_ready() {
            ready = true;
        }
        if ready {
            Poll::Ready(())
        } else {
            registered.set(true);
            Poll::Pending
        }
    })
    .await
}

/// Tarantool's `do_wait`: the ready bits, or 0 with ETIMEDOUT. A close counts as ready,
/// so a waiter wakes up and its next call reports the closed socket.
async fn do_wait(lua: &Lua, sock: &Rc<Sock>, want: u8, deadline: Option<Instant>) -> LuaResult<u8> {
    sock.errno.set(0);
    match wait_io(lua, sock, want, deadline).await? {
        Waited::Ready(bits) => Ok(bits),
        Waited::Closed => Ok(want),
        Waited::TimedOut => {
            sock.fail(libc::ETIMEDOUT);
            Ok(0)
        }
    }
}

/// For a socket put in "blocking" mode with `nonblock(false)`: waits instead of returning
/// EAGAIN. Returns false if the caller should give up with its errno.
async fn block_if_needed(lua: &Lua, sock: &Rc<Sock>, e: Errno, want: u8) -> LuaResult<bool> {
    if sock.nonblock.get() || !sys::is_transient(e) {
        return Ok(false);
    }
    match wait_io(lua, sock, want, None).await? {
        Waited::Ready(_) => Ok(true),
        Waited::Closed => Err(LuaError::runtime(CLOSED_SOCKET)),
        Waited::TimedOut => Ok(false),
    }
}

// ===== Addresses as Lua tables =====

fn port_value(lua: &Lua, p: &sys::Port) -> LuaResult<LuaValue> {
    match p {
        sys::Port::Number(n) => Ok(LuaValue::Integer(*n as i64)),
        sys::Port::Path(s) => lua.create_string(s).map(LuaValue::String),
    }
}

fn family_value(lua: &Lua, family: i32) -> LuaResult<LuaValue> {
    match sys::name_of(sys::DOMAINS, family) {
        Some(n) => lua.create_string(n).map(LuaValue::String),
        None => Ok(LuaValue::Integer(family as i64)),
    }
}

fn type_value(lua: &Lua, ty: i32) -> LuaResult<LuaValue> {
    match sys::name_of(sys::TYPES, ty) {
        Some(n) => lua.create_string(n).map(LuaValue::String),
        None => Ok(LuaValue::Integer(ty as i64)),
    }
}

fn protocol_value(lua: &Lua, proto: i32) -> LuaResult<LuaValue> {
    match sys::protocol_name(proto) {
        Some(n) => lua.create_string(n).map(LuaValue::String),
        None => Ok(LuaValue::Integer(proto as i64)),
    }
}

/// `{host, family, port}`: what `accept` and `recvfrom` give as the peer.
fn from_table(lua: &Lua, addr: Option<&SockAddr>) -> LuaResult<LuaValue> {
    let Some(ep) = addr.and_then(sys::endpoint) else {
        return Ok(LuaValue::Nil);
    };
    let t = lua.create_table_with_capacity(0, 3)?;
    t.set("host", ep.host.as_str())?;
    t.set("family", family_value(lua, ep.family)?)?;
    t.set("port", port_value(lua, &ep.port)?)?;
    Ok(LuaValue::Table(t))
}

/// `{host, port, family, type, protocol}` for `name()`/`peer()`, printable as host:port.
fn soname_table(lua: &Lua, fd: RawFd, addr: &SockAddr) -> LuaResult<LuaValue> {
    let Some(ep) = sys::endpoint(addr) else {
        return Ok(LuaValue::Nil);
    };
    let t = lua.create_table_with_capacity(0, 5)?;
    t.set("host", ep.host.as_str())?;
    t.set("family", family_value(lua, ep.family)?)?;
    t.set("port", port_value(lua, &ep.port)?)?;
    if let Ok(ty) = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) {
        t.set("type", type_value(lua, ty)?)?;
    }
    if let Ok(p) = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL) {
        t.set("protocol", protocol_value(lua, p)?)?;
    }
    t.set_metatable(Some(lua.registry_value::<LuaTable>(&state(lua)?.soname_mt)?))?;
    Ok(LuaValue::Table(t))
}

fn addrinfo_table(lua: &Lua, ai: &sys::AddrInfo) -> LuaResult<LuaTable> {
    let t = lua.create_table_with_capacity(0, 5)?;
    t.set("host", ai.endpoint.host.as_str())?;
    t.set("family", family_value(lua, ai.endpoint.family)?)?;
    t.set("type", type_value(lua, ai.socktype)?)?;
    t.set("protocol", protocol_value(lua, ai.protocol)?)?;
    t.set("port", port_value(lua, &ai.endpoint.port)?)?;
    Ok(t)
}

fn endpoint_text(ep: &sys::Endpoint) -> String {
    match &ep.port {
        sys::Port::Number(n) => format!("{}:{}", ep.host, n),
        sys::Port::Path(p) => format!("{}:{}", ep.host, p),
    }
}

// ===== Methods =====

type Args = LuaMultiValue;

fn arg(args: &Args, i: usize) -> LuaValue {
    args.get(i).cloned().unwrap_or(LuaValue::Nil)
}

fn ok_or_errno<T>(sock: &Sock, r: Result<T, Errno>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            sock.fail(e);
            None
        }
    }
}

fn m_close(_: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    Ok(ok_or_errno(&sock, sock.close()).is_some())
}

fn m_errno(_: &Lua, args: Args) -> LuaResult<i32> {
    Ok(check_socket(&arg(&args, 0))?.errno.get())
}

fn m_error(_: &Lua, args: Args) -> LuaResult<Option<String>> {
    let sock = check_socket(&arg(&args, 0))?;
    Ok(match sock.errno.get() {
        0 => None,
        e => Some(sys::strerror(e)),
    })
}

fn m_fd(_: &Lua, args: Args) -> LuaResult<RawFd> {
    let sock = check_socket(&arg(&args, 0))?;
    fd_of(&sock)
}

fn resolve_args(lua: &Lua, host: &LuaValue, port: &LuaValue) -> LuaResult<Result<SockAddr, Errno>> {
    Ok(sys::local_resolve(&lua_tostring(lua, host)?, &lua_tostring(lua, port)?))
}

fn m_bind(lua: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    let fd = fd_of(&sock)?;
    let r = resolve_args(lua, &arg(&args, 1), &arg(&args, 2))?.and_then(|a| sys::bind(fd, &a));
    Ok(ok_or_errno(&sock, r).is_some())
}

fn m_listen(_: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    let backlog = match number_arg(&arg(&args, 1)) {
        Some(n) => n as i32,
        None => DEFAULT_BACKLOG,
    };
    Ok(ok_or_errno(&sock, sys::listen(fd_of(&sock)?, backlog)).is_some())
}

fn m_sysconnect(lua: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    let fd = fd_of(&sock)?;
    let r = resolve_args(lua, &arg(&args, 1), &arg(&args, 2))?.and_then(|a| sys::connect(fd, &a));
    Ok(ok_or_errno(&sock, r).is_some())
}

/// Connects and waits for the connection: true, or false with the socket's errno set.
async fn connect_wait(
    lua: &Lua,
    sock: &Rc<Sock>,
    to: Result<SockAddr, Errno>,
    deadline: Option<Instant>,
) -> LuaResult<bool> {
    sock.errno.set(0);
    let fd = fd_of(sock)?;
    let r = to.and_then(|a| sys::connect(fd, &a));
    match r {
        Ok(()) => return Ok(true),
        Err(e) if e != libc::EINPROGRESS => {
            sock.fail(e);
            return Ok(false);
        }
        Err(_) => {}
    }
    // Connected or failed, the socket becomes writable; SO_ERROR tells which.
    if do_wait(lua, sock, WRITE, deadline).await? != 0 {
        let fd = fd_of(sock)?;
        match sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
            Ok(e) => sock.errno.set(e),
            Err(e) => sock.fail(e),
        }
    }
    Ok(sock.errno.get() == 0)
}

/// `sock:connect(host, port[, timeout])`: not in Tarantool 2.6's socket object, which
/// only has `sysconnect`; this is the waiting connect `tcp_connect` uses, returning true or
/// nil like it.
async fn m_connect(lua: Lua, args: Args) -> LuaResult<Option<bool>> {
    let sock = check_socket(&arg(&args, 0))?;
    let to = resolve_args(&lua, &arg(&args, 1), &arg(&args, 2))?;
    let deadline = deadline_arg(&arg(&args, 3), "connect")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    Ok(connect_wait(&lua, &sock, to, deadline).await?.then_some(true))
}

fn m_nonblock(_: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    match arg(&args, 1) {
        LuaValue::Nil => {}
        LuaValue::Boolean(false) => sock.nonblock.set(false),
        _ => sock.nonblock.set(true),
    }
    Ok(sock.nonblock.get())
}

async fn m_readable(lua: Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    let deadline = deadline_arg(&arg(&args, 1), "readable")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    Ok(do_wait(&lua, &sock, READ, deadline).await? != 0)
}

async fn m_writable(lua: Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    let deadline = deadline_arg(&arg(&args, 1), "writable")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    Ok(do_wait(&lua, &sock, WRITE, deadline).await? != 0)
}

fn rw_text(bits: u8) -> &'static str {
    match bits {
        READ => "R",
        WRITE => "W",
        _ => "RW",
    }
}

/// `sock:wait([timeout])`: 'R', 'W' or 'RW', or 0 on timeout.
async fn m_wait(lua: Lua, args: Args) -> LuaResult<LuaValue> {
    let sock = check_socket(&arg(&args, 0))?;
    let deadline = deadline_arg(&arg(&args, 1), "wait")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    match do_wait(&lua, &sock, READ | WRITE, deadline).await? {
        0 => Ok(LuaValue::Integer(0)),
        bits => lua.create_string(rw_text(bits)).map(LuaValue::String),
    }
}

fn m_shutdown(_: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    let how = match arg(&args, 1) {
        LuaValue::String(s) => match &*s.as_bytes() {
            b"R" | b"READ" | b"receive" => libc::SHUT_RD,
            b"W" | b"WRITE" | b"send" => libc::SHUT_WR,
            _ => libc::SHUT_RDWR,
        },
        LuaValue::Integer(0) => libc::SHUT_RD,
        LuaValue::Integer(1) => libc::SHUT_WR,
        LuaValue::Number(0.0) => libc::SHUT_RD,
        LuaValue::Number(1.0) => libc::SHUT_WR,
        _ => libc::SHUT_RDWR,
    };
    sock.errno.set(0);
    Ok(ok_or_errno(&sock, sys::shutdown(fd_of(&sock)?, how)).is_some())
}

/// Tarantool's `getsol`: a level number or name (`SOL_SOCKET`, `socket`, `IPPROTO_TCP`,
/// `SOL_TCP`, `tcp`, ...).
fn level_arg(v: &LuaValue) -> Result<i32, Errno> {
    match v {
        LuaValue::Integer(_) | LuaValue::Number(_) => named_int(&[], v).ok_or(libc::EINVAL),
        LuaValue::String(s) => {
            let s = s.to_str().map_err(|_| libc::EINVAL)?.to_string();
            if s == "SOL_SOCKET" || s == "socket" {
                return Ok(libc::SOL_SOCKET);
            }
            let short = s
                .strip_prefix("IPPROTO_")
                .or_else(|| s.strip_prefix("SOL_"))
                .unwrap_or(&s)
                .to_ascii_lowercase();
            sys::protocol_by_name(&short).ok_or(libc::EPROTOTYPE)
        }
        _ => Err(libc::EINVAL),
    }
}

/// The option named by `name` at `level`; a number is taken as a raw integer option.
fn option_arg(lua: &Lua, level: i32, name: &LuaValue) -> LuaResult<sys::SockOpt> {
    if let Some(n) = named_int(&[], name) {
        return Ok(sys::SockOpt {
            name: "?",
            level,
            iname: n,
            rw: true,
            kind: sys::OptKind::Int,
        });
    }
    let text = lua_tostring(lua, name)?;
    sys::find_opt(level, &text).ok_or_else(|| LuaError::runtime(format!("Unknown socket option name: {text}")))
}

fn m_setsockopt(lua: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    let level = match level_arg(&arg(&args, 1)) {
        Ok(l) => l,
        Err(e) => {
            sock.fail(e);
            return Ok(false);
        }
    };
    let opt = option_arg(lua, level, &arg(&args, 2))?;
    if !opt.rw {
        return Err(LuaError::runtime(format!("Socket option {} is read only", opt.name)));
    }
    sock.errno.set(0);
    if opt.kind != sys::OptKind::Int {
        if opt.name == "SO_LINGER" {
            return Err(LuaError::runtime("Use s:linger(active[, timeout])"));
        }
        return Err(LuaError::runtime(format!("Unsupported socket option: {}", opt.name)));
    }
    let value = match arg(&args, 3) {
        LuaValue::Boolean(b) => b as i32,
        v => match number_arg(&v) {
            Some(n) => n as i32,
            None => {
                return Err(LuaError::runtime(format!(
                    "bad argument #3 to 'setsockopt' (number expected, got {})",
                    lua_type(&v)
                )))
            }
        },
    };
    let r = sys::setsockopt_int(fd_of(&sock)?, opt.level, opt.iname, value);
    Ok(ok_or_errno(&sock, r).is_some())
}

fn m_getsockopt(lua: &Lua, args: Args) -> LuaResult<LuaValue> {
    let sock = check_socket(&arg(&args, 0))?;
    let level = match level_arg(&arg(&args, 1)) {
        Ok(l) => l,
        Err(e) => {
            sock.fail(e);
            return Ok(LuaValue::Boolean(false));
        }
    };
    let opt = option_arg(lua, level, &arg(&args, 2))?;
    sock.errno.set(0);
    if opt.kind != sys::OptKind::Int {
        if opt.name == "SO_LINGER" {
            return Err(LuaError::runtime("Use s:linger()"));
        }
        return Err(LuaError::runtime(format!("Unsupported socket option: {}", opt.name)));
    }
    let r = sys::getsockopt_int(fd_of(&sock)?, opt.level, opt.iname);
    Ok(match ok_or_errno(&sock, r) {
        Some(v) => LuaValue::Integer(v as i64),
        None => LuaValue::Nil,
    })
}

/// `sock:linger()` gives (active, timeout); `sock:linger(active[, timeout])` sets them.
fn m_linger(_: &Lua, args: Args) -> LuaResult<LuaMultiValue> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    let fd = fd_of(&sock)?;
    let mut out = LuaMultiValue::new();
    let active = arg(&args, 1);
    if matches!(active, LuaValue::Nil) {
        if let Some((on, secs)) = ok_or_errno(&sock, sys::get_linger(fd)) {
            out.push_back(LuaValue::Boolean(on));
            out.push_back(LuaValue::Integer(secs as i64));
        } else {
            out.push_back(LuaValue::Nil);
        }
        return Ok(out);
    }
    let on = !matches!(active, LuaValue::Boolean(false));
    let secs = number_arg(&arg(&args, 2)).unwrap_or(0.0) as i32;
    if ok_or_errno(&sock, sys::set_linger(fd, on, secs)).is_none() {
        out.push_back(LuaValue::Nil);
        return Ok(out);
    }
    out.push_back(active);
    out.push_back(LuaValue::Integer(secs as i64));
    Ok(out)
}

/// `sock:accept()`: a new socket and its peer `{host, family, port}`, or nil (EAGAIN when
/// nothing is pending; wait with `readable()` first).
async fn m_accept(lua: Lua, args: Args) -> LuaResult<LuaMultiValue> {
    let sock = check_socket(&arg(&args, 0))?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    sock.errno.set(0);
    loop {
        match sys::accept(fd_of(&sock)?) {
            Ok((fd, from)) => {
                let (client, _) = make_socket(&lua, fd, sock.itype)?;
                let from = from_table(&lua, from.as_ref())?;
                return Ok(LuaMultiValue::from_iter([LuaValue::Table(client), from]));
            }
            Err(e) => {
                if block_if_needed(&lua, &sock, e, READ).await? {
                    continue;
                }
                sock.fail(e);
                return Ok(LuaMultiValue::from_iter([LuaValue::Nil]));
            }
        }
    }
}

fn data_arg(v: &LuaValue, method: &str) -> LuaResult<LuaString> {
    match v {
        LuaValue::String(s) => Ok(s.clone()),
        other if method == "write" => Err(LuaError::runtime(format!(
            "attempt to get length of local 'octets' (a {} value)",
            lua_type(other)
        ))),
        _ => Err(LuaError::runtime(
            "Usage: socket:syswrite(data) or socket:syswrite(const char *, size)",
        )),
    }
}

/// `sock:syswrite(data)`: one nonblocking write; bytes written, or nil.
async fn m_syswrite(lua: Lua, args: Args) -> LuaResult<Option<usize>> {
    let sock = check_socket(&arg(&args, 0))?;
    let data = data_arg(&arg(&args, 1), "syswrite")?.as_bytes().to_vec();
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    sock.errno.set(0);
    loop {
        let r = sys::send(fd_of(&sock)?, &data, libc::MSG_NOSIGNAL);
        match r {
            Ok(n) => return Ok(Some(n)),
            Err(e) if block_if_needed(&lua, &sock, e, WRITE).await? => continue,
            Err(e) => {
                sock.fail(e);
                return Ok(None);
            }
        }
    }
}

/// `sock:sysread([size])`: one nonblocking read of up to `size` bytes (16320 by default),
/// bypassing `read()`'s buffer; nil with EAGAIN when there is nothing.
async fn m_sysread(lua: Lua, args: Args) -> LuaResult<Option<LuaString>> {
    let sock = check_socket(&arg(&args, 0))?;
    let size = match arg(&args, 1) {
        LuaValue::Nil => READAHEAD,
        v => match number_arg(&v) {
            Some(n) if n < 0.0 => return Err(LuaError::runtime("socket:sysread(): size can not be negative")),
            Some(n) => (n as usize).min(MAX_SYSCALL_BUFFER),
            None => return Err(LuaError::runtime("socket:sysread(): size can not be negative")),
        },
    };
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    sock.errno.set(0);
    let mut buf = vec![0u8; size];
    loop {
        match sys::read(fd_of(&sock)?, &mut buf) {
            Ok(n) => return lua.create_string(&buf[..n]).map(Some),
            Err(e) if block_if_needed(&lua, &sock, e, READ).await? => continue,
            Err(e) => {
                sock.fail(e);
                return Ok(None);
            }
        }
    }
}

/// What `read()` waits for.
enum Until {
    Limit,
    Delimiters(Vec<Vec<u8>>),
}

fn read_opts(lua: &Lua, v: &LuaValue) -> LuaResult<(f64, Until)> {
    let string_list = |t: &LuaTable| -> LuaResult<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for d in t.sequence_values::<LuaValue>() {
            match d? {
                LuaValue::String(s) => out.push(s.as_bytes().to_vec()),
                _ => return Err(LuaError::runtime(READ_USAGE)),
            }
        }
        Ok(out)
    };
    match v {
        LuaValue::Integer(_) | LuaValue::Number(_) => Ok((number_arg(v).unwrap_or(0.0), Until::Limit)),
        LuaValue::String(s) => Ok((LIMIT_INFINITY as f64, Until::Delimiters(vec![s.as_bytes().to_vec()]))),
        LuaValue::Table(t) => {
            let chunk = match t.get::<LuaValue>("chunk")? {
                LuaValue::Nil => t.get::<LuaValue>("size")?,
                c => c,
            };
            let chunk = match chunk {
                LuaValue::Nil => LIMIT_INFINITY as f64,
                c => number_arg(&c).ok_or_else(|| LuaError::runtime(READ_USAGE))?,
            };
            let delim = match t.get::<LuaValue>("delimiter")? {
                LuaValue::Nil => t.get::<LuaValue>("line")?,
                d => d,
            };
            match delim {
                LuaValue::Nil => Ok((chunk, Until::Limit)),
                LuaValue::String(s) => Ok((chunk, Until::Delimiters(vec![s.as_bytes().to_vec()]))),
                LuaValue::Table(d) => Ok((chunk, Until::Delimiters(string_list(&d)?))),
                _ => Err(LuaError::runtime(READ_USAGE)),
            }
        }
        _ => {
            let _ = lua;
            Err(LuaError::runtime(READ_USAGE))
        }
    }
}

/// How many buffered bytes `read()` can hand out now, if any: Tarantool's `check_limit`
/// and `check_delimiter` (the shortest match wins, but never more than `limit`).
fn ready_len(buf: &[u8], limit: usize, until: &Until) -> Option<usize> {
    match until {
        Until::Limit => (buf.len() >= limit).then_some(limit),
        Until::Delimiters(delims) => {
            if limit == 0 {
                return Some(0);
            }
            if buf.is_empty() {
                return None;
            }
            let shortest = delims.iter().filter_map(|d| find(buf, d).map(|at| at + d.len())).min();
            match shortest {
                Some(n) if n <= limit => Some(n),
                _ if limit <= buf.len() => Some(limit),
                _ => None,
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `sock:read(limit | delimiter | {chunk=, delimiter=}, [timeout])`: buffered read that
/// waits for `limit` bytes or a delimiter; at EOF it returns what is left (possibly "").
async fn m_read(lua: Lua, args: Args) -> LuaResult<Option<LuaString>> {
    let sock = check_socket(&arg(&args, 0))?;
    let (limit, until) = read_opts(&lua, &arg(&args, 1))?;
    if limit < 0.0 {
        return Err(LuaError::runtime("socket:read(): limit can not be negative"));
    }
    let limit = if limit.is_nan() {
        0
    } else {
        (limit as usize).min(LIMIT_INFINITY)
    };
    let deadline = deadline_arg(&arg(&args, 2), "read")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);

    let take = |sock: &Sock, n: usize| -> LuaResult<Option<LuaString>> {
        sock.errno.set(0);
        let bytes = sock.rbuf.borrow_mut().take(n);
        lua.create_string(&bytes).map(Some)
    };
    let ready = ready_len(sock.rbuf.borrow().pending(), limit, &until);
    if let Some(n) = ready {
        return take(&sock, n);
    }
    let mut chunk = vec![0u8; READAHEAD];
    loop {
        let fd = fd_of(&sock)?;
        let want = (limit - sock.rbuf.borrow().len()).min(READAHEAD);
        sock.errno.set(0);
        match sys::read(fd, &mut chunk[..want]) {
            Ok(0) => {
                let n = sock.rbuf.borrow().len();
                return take(&sock, n);
            }
            Ok(got) => {
                sock.rbuf.borrow_mut().data.extend_from_slice(&chunk[..got]);
                let ready = ready_len(sock.rbuf.borrow().pending(), limit, &until);
                if let Some(n) = ready {
                    return take(&sock, n);
                }
                continue;
            }
            Err(e) if sys::is_transient(e) => sock.fail(e),
            Err(e) => {
                sock.fail(e);
                return Ok(None);
            }
        }
        if do_wait(&lua, &sock, READ, deadline).await? == 0 {
            return Ok(None);
        }
    }
}

/// `sock:write(data, [timeout])`: writes all of `data`, waiting as needed; the byte
/// count, or nil on error or timeout.
async fn m_write(lua: Lua, args: Args) -> LuaResult<Option<usize>> {
    let sock = check_socket(&arg(&args, 0))?;
    let data = data_arg(&arg(&args, 1), "write")?;
    let deadline = deadline_arg(&arg(&args, 2), "write")?;
    drop(args);
    let total = data.as_bytes().len();
    if total == 0 {
        return Ok(Some(0));
    }
    // The first attempt writes straight from the Lua string; only a partial write copies
    // the rest and lets the string go, so that no Lua handle is held while the fiber waits.
    let mut lua_data = Some(data);
    let mut rest: Vec<u8> = Vec::new();
    let mut done = 0;
    loop {
        sock.errno.set(0);
        let fd = fd_of(&sock)?;
        let r = match &lua_data {
            Some(d) => sys::send(fd, &d.as_bytes()[done..], libc::MSG_NOSIGNAL),
            None => sys::send(fd, &rest[done..], libc::MSG_NOSIGNAL),
        };
        match r {
            Ok(0) => return Ok(Some(done)),
            Ok(n) => {
                done += n;
                if done >= total {
                    return Ok(Some(total));
                }
                continue;
            }
            Err(e) if sys::is_transient(e) => sock.fail(e),
            Err(e) => {
                sock.fail(e);
                return Ok(None);
            }
        }
        if let Some(d) = lua_data.take() {
            rest = d.as_bytes().to_vec();
        }
        if do_wait(&lua, &sock, WRITE, deadline).await? == 0 {
            return Ok(None);
        }
    }
}

/// `sock:send(data[, flags])`: one `send`; bytes sent, or nil.
async fn m_send(lua: Lua, args: Args) -> LuaResult<Option<usize>> {
    let sock = check_socket(&arg(&args, 0))?;
    let data = data_arg(&arg(&args, 1), "write")?.as_bytes().to_vec();
    let Some(flags) = flags_arg(sys::MSG_FLAGS, &arg(&args, 2))? else {
        sock.fail(libc::EINVAL);
        return Ok(None);
    };
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    sock.errno.set(0);
    loop {
        match sys::send(fd_of(&sock)?, &data, flags | libc::MSG_NOSIGNAL) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if block_if_needed(&lua, &sock, e, WRITE).await? => continue,
            Err(e) => {
                sock.fail(e);
                return Ok(None);
            }
        }
    }
}

/// The size `recv`/`recvfrom` use when none is given: 512 on a stream, the next
/// datagram's length on a datagram socket.
fn recv_size(sock: &Sock, size: Option<f64>) -> LuaResult<Result<usize, Errno>> {
    if let Some(n) = size {
        if n < 0.0 {
            return Ok(Err(libc::EINVAL));
        }
        return Ok(Ok((n as usize).min(MAX_SYSCALL_BUFFER)));
    }
    if sock.itype != libc::SOCK_DGRAM {
        return Ok(Ok(STREAM_RECV_SIZE));
    }
    Ok(sys::next_datagram_size(fd_of(sock)?).map(|n| n.min(MAX_SYSCALL_BUFFER)))
}

/// `sock:recv([size[, flags]])`: one `recv`; the data, or nil (EAGAIN when empty).
async fn m_recv(lua: Lua, args: Args) -> LuaResult<Option<LuaString>> {
    let sock = check_socket(&arg(&args, 0))?;
    let Some(flags) = flags_arg(sys::MSG_FLAGS, &arg(&args, 2))? else {
        sock.fail(libc::EINVAL);
        return Ok(None);
    };
    let size = number_arg(&arg(&args, 1));
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    sock.errno.set(0);
    loop {
        let r = recv_size(&sock, size)?.and_then(|size| {
            let mut buf = vec![0u8; size];
            sys::recv(fd_of(&sock).map_err(|_| libc::EBADF)?, &mut buf, flags).map(|n| {
                buf.truncate(n);
                buf
            })
        });
        match r {
            Ok(buf) => return lua.create_string(&buf).map(Some),
            Err(e) if block_if_needed(&lua, &sock, e, READ).await? => continue,
            Err(e) => {
                sock.fail(e);
                return Ok(None);
            }
        }
    }
}

/// `sock:recvfrom([size[, flags]])`: a datagram and its sender `{host, family, port}`.
async fn m_recvfrom(lua: Lua, args: Args) -> LuaResult<LuaMultiValue> {
    let sock = check_socket(&arg(&args, 0))?;
    let Some(flags) = flags_arg(sys::MSG_FLAGS, &arg(&args, 2))? else {
        sock.fail(libc::EINVAL);
        return Ok(LuaMultiValue::from_iter([LuaValue::Nil]));
    };
    let size = number_arg(&arg(&args, 1));
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    sock.errno.set(0);
    loop {
        let r = recv_size(&sock, size)?.and_then(|size| {
            let mut buf = vec![0u8; size];
            sys::recvfrom(fd_of(&sock).map_err(|_| libc::EBADF)?, &mut buf, flags).map(|(n, from)| {
                buf.truncate(n);
                (buf, from)
            })
        });
        match r {
            Ok((buf, from)) => {
                let data = LuaValue::String(lua.create_string(&buf)?);
                return Ok(LuaMultiValue::from_iter([data, from_table(&lua, from.as_ref())?]));
            }
            Err(e) if block_if_needed(&lua, &sock, e, READ).await? => continue,
            Err(e) => {
                sock.fail(e);
                return Ok(LuaMultiValue::from_iter([LuaValue::Nil]));
            }
        }
    }
}

/// `sock:sendto(host, port, data[, flags])`: one datagram; bytes sent (true for empty
/// data, as in Tarantool), or nil.
async fn m_sendto(lua: Lua, args: Args) -> LuaResult<LuaValue> {
    let sock = check_socket(&arg(&args, 0))?;
    let Some(flags) = flags_arg(sys::MSG_FLAGS, &arg(&args, 4))? else {
        sock.fail(libc::EINVAL);
        return Ok(LuaValue::Nil);
    };
    sock.errno.set(0);
    let data = match arg(&args, 3) {
        LuaValue::Nil => return Ok(LuaValue::Boolean(true)),
        LuaValue::String(s) if s.as_bytes().is_empty() => return Ok(LuaValue::Boolean(true)),
        LuaValue::String(s) => s.as_bytes().to_vec(),
        other => lua_tostring(&lua, &other)?.into_bytes(),
    };
    let to = resolve_args(&lua, &arg(&args, 1), &arg(&args, 2))?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    loop {
        let r = to.clone().and_then(|a| {
            sys::sendto(
                fd_of(&sock).map_err(|_| libc::EBADF)?,
                &data,
                flags | libc::MSG_NOSIGNAL,
                &a,
            )
        });
        match r {
            Ok(n) => return Ok(LuaValue::Integer(n as i64)),
            Err(e) if block_if_needed(&lua, &sock, e, WRITE).await? => continue,
            Err(e) => {
                sock.fail(e);
                return Ok(LuaValue::Nil);
            }
        }
    }
}

fn m_name(lua: &Lua, args: Args) -> LuaResult<LuaValue> {
    let sock = check_socket(&arg(&args, 0))?;
    let fd = fd_of(&sock)?;
    match sys::local_addr(fd) {
        Ok(a) => {
            sock.errno.set(0);
            soname_table(lua, fd, &a)
        }
        Err(e) => {
            sock.fail(e);
            Ok(LuaValue::Nil)
        }
    }
}

fn m_peer(lua: &Lua, args: Args) -> LuaResult<LuaValue> {
    let sock = check_socket(&arg(&args, 0))?;
    let fd = fd_of(&sock)?;
    match sys::peer_addr(fd) {
        Ok(a) => {
            sock.errno.set(0);
            soname_table(lua, fd, &a)
        }
        Err(e) => {
            sock.fail(e);
            Ok(LuaValue::Nil)
        }
    }
}

/// `fd 12, aka 127.0.0.1:3301, peer 127.0.0.1:51000`.
fn describe(sock: &Sock) -> LuaResult<String> {
    let fd = fd_of(sock)?;
    let mut text = format!("fd {fd}");
    if let Some(ep) = sys::local_addr(fd).ok().as_ref().and_then(sys::endpoint) {
        text.push_str(&format!(", aka {}", endpoint_text(&ep)));
    }
    if let Some(ep) = sys::peer_addr(fd).ok().as_ref().and_then(sys::endpoint) {
        text.push_str(&format!(", peer {}", endpoint_text(&ep)));
    }
    Ok(text)
}

fn m_tostring(_: &Lua, args: Args) -> LuaResult<String> {
    let sock = check_socket(&arg(&args, 0))?;
    describe(&sock)
}

/// `__serialize`: `{fd, name, peer}`, so YAML/JSON can print a socket.
fn m_serialize(lua: &Lua, args: Args) -> LuaResult<LuaTable> {
    let sock = check_socket(&arg(&args, 0))?;
    let saved = sock.errno.get();
    let t = lua.create_table()?;
    t.set("fd", fd_of(&sock)?)?;
    t.set("name", m_name(lua, args.clone())?)?;
    t.set("peer", m_peer(lua, args)?)?;
    sock.errno.set(saved);
    Ok(t)
}

// ===== Module functions =====

/// `socket(domain, type, protocol)`: a new nonblocking socket, or nil with errno set.
fn socket_new(lua: &Lua, domain: &LuaValue, ty: &LuaValue, proto: &LuaValue) -> LuaResult<Option<LuaTable>> {
    let Some(idomain) = named_int(sys::DOMAINS, domain) else {
        sys::set_errno(libc::EINVAL);
        return Ok(None);
    };
    let Some(itype) = named_int(sys::TYPES, ty) else {
        sys::set_errno(libc::EINVAL);
        return Ok(None);
    };
    let iproto = match protocol_arg(proto) {
        Ok(p) => p,
        Err(e) => {
            sys::set_errno(e);
            return Ok(None);
        }
    };
    match sys::socket(idomain, itype, iproto) {
        Ok(fd) => Ok(Some(make_socket(lua, fd, itype)?.0)),
        Err(e) => {
            sys::set_errno(e);
            Ok(None)
        }
    }
}

/// Runs the blocking `getaddrinfo` on tokio's blocking pool, so only this fiber waits.
async fn resolve(
    lua: &Lua,
    host: Option<String>,
    port: Option<String>,
    hints: sys::Hints,
    deadline: Option<Instant>,
) -> LuaResult<Option<Vec<sys::AddrInfo>>> {
    let job = tokio::task::spawn_blocking(move || sys::getaddrinfo(host.as_deref(), port.as_deref(), hints));
    let outcome = match deadline {
        None => Some(fiber::cancellable(lua, job).await?),
        Some(d) => fiber::cancellable(lua, tokio::time::timeout_at(d, job)).await?.ok(),
    };
    match outcome {
        None => {
            sys::set_errno(libc::ETIMEDOUT);
            Ok(None)
        }
        Some(Ok(Ok(list))) => Ok(Some(list)),
        Some(Ok(Err(code))) => {
            log::write(
                lua,
                Level::Verbose,
                &format!("getaddrinfo: {}", sys::gai_strerror(code)),
            );
            sys::set_errno(libc::EIO);
            Ok(None)
        }
        Some(Err(_)) => {
            sys::set_errno(libc::EIO);
            Ok(None)
        }
    }
}

fn opt_string(lua: &Lua, v: &LuaValue) -> LuaResult<Option<String>> {
    match v {
        LuaValue::Nil => Ok(None),
        other => lua_tostring(lua, other).map(Some),
    }
}

/// `socket.getaddrinfo(host, port[, timeout][, {type, family, protocol, flags}])`.
async fn getaddrinfo(lua: Lua, args: Args) -> LuaResult<Option<LuaTable>> {
    let (host, port) = (arg(&args, 0), arg(&args, 1));
    let (timeout, opts) = match (arg(&args, 2), arg(&args, 3)) {
        (LuaValue::Table(t), LuaValue::Nil) => (LuaValue::Nil, LuaValue::Table(t)),
        (t, o) => (t, o),
    };
    let deadline = deadline_arg(&timeout, "getaddrinfo")?;
    let mut hints = sys::Hints::default();
    if let LuaValue::Table(o) = &opts {
        let invalid = || {
            sys::set_errno(libc::EINVAL);
            Ok(None)
        };
        let ty: LuaValue = o.get("type")?;
        if !ty.is_nil() {
            match named_int(sys::TYPES, &ty) {
                Some(t) => hints.socktype = t,
                None => return invalid(),
            }
        }
        let family: LuaValue = o.get("family")?;
        if !family.is_nil() {
            match named_int(sys::DOMAINS, &family) {
                Some(f) => hints.family = f,
                None => return invalid(),
            }
        }
        let proto: LuaValue = o.get("protocol")?;
        if !proto.is_nil() {
            match protocol_arg(&proto) {
                Ok(p) => hints.protocol = p,
                Err(e) => {
                    sys::set_errno(e);
                    return Ok(None);
                }
            }
        }
        let flags: LuaValue = o.get("flags")?;
        if !flags.is_nil() {
            match flags_arg(sys::AI_FLAGS, &flags)? {
                Some(f) => hints.flags = f,
                None => return invalid(),
            }
        }
    }
    let port = match port {
        LuaValue::Nil => Some("0".to_string()),
        p => opt_string(&lua, &p)?,
    };
    let host = opt_string(&lua, &host)?;
    drop(opts);
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    let Some(list) = resolve(&lua, host, port, hints, deadline).await? else {
        return Ok(None);
    };
    let out = lua.create_table_with_capacity(list.len(), 0)?;
    for ai in &list {
        out.push(addrinfo_table(&lua, ai)?)?;
    }
    Ok(Some(out))
}

/// `socket.tcp_connect(host, port[, timeout])`: a connected socket, or nil with errno.
async fn tcp_connect(lua: Lua, args: Args) -> LuaResult<Option<LuaTable>> {
    let (host, port) = (arg(&args, 0), arg(&args, 1));
    let deadline = deadline_arg(&arg(&args, 2), "tcp_connect")?;
    let is_unix = matches!(&host, LuaValue::String(s) if s == "unix/");
    let (host, port) = (opt_string(&lua, &host)?, opt_string(&lua, &port)?);
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    let candidates: Vec<(i32, i32, i32, Result<SockAddr, Errno>)> = if is_unix {
        let path = port.unwrap_or_else(|| "nil".into());
        vec![(
            libc::AF_UNIX,
            libc::SOCK_STREAM,
            0,
            SockAddr::unix(path).map_err(|_| libc::EINVAL),
        )]
    } else {
        let hints = sys::Hints {
            socktype: libc::SOCK_STREAM,
            protocol: libc::IPPROTO_TCP,
            ..sys::Hints::default()
        };
        let port = port.or(Some("0".into()));
        let Some(list) = resolve(&lua, host, port, hints, deadline).await? else {
            sys::set_errno(libc::EINVAL);
            return Ok(None);
        };
        if list.is_empty() {
            sys::set_errno(libc::EINVAL);
            return Ok(None);
        }
        list.iter()
            .map(|ai| {
                let port = match &ai.endpoint.port {
                    sys::Port::Number(n) => n.to_string(),
                    sys::Port::Path(p) => p.clone(),
                };
                (
                    ai.endpoint.family,
                    ai.socktype,
                    ai.protocol,
                    sys::local_resolve(&ai.endpoint.host, &port),
                )
            })
            .collect()
    };
    for (family, ty, proto, to) in candidates {
        if !is_unix && deadline.is_some_and(|d| Instant::now() >= d) {
            sys::set_errno(libc::ETIMEDOUT);
            return Ok(None);
        }
        let fd = match sys::socket(family, ty, proto) {
            Ok(fd) => fd,
            Err(e) => {
                sys::set_errno(e);
                continue;
            }
        };
        let (t, sock) = make_socket(&lua, fd, ty)?;
        if connect_wait(&lua, &sock, to, deadline).await? {
            sys::set_errno(0);
            return Ok(Some(t));
        }
        let saved = sock.errno.get();
        let _ = sock.close();
        sys::set_errno(saved);
    }
    Ok(None)
}

/// Binds a `tcp_server` socket. A unix path left by a dead server (connect is refused)
/// is removed and bound again, and `close()` removes the path, as in Tarantool.
async fn server_bind(lua: &Lua, sock: &Rc<Sock>, host: &str, port: &str) -> LuaResult<bool> {
    let fd = fd_of(sock)?;
    let to = sys::local_resolve(host, port);
    let first = to.clone().and_then(|a| sys::bind(fd, &a));
    let result = match first {
        Err(libc::EADDRINUSE) if host == "unix/" => {
            let probe = sys::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let refused = match (&probe, &to) {
                (Ok(p), Ok(a)) => {
                    let r = sys::connect(*p, a);
                    // Safety: the probe descriptor is ours and closed once.
                    unsafe { libc::close(*p) };
                    r == Err(libc::ECONNREFUSED)
                }
                _ => false,
            };
            if refused {
                log::write(
                    lua,
                    Level::Info,
                    &format!("tcp_server: remove dead UNIX socket: {port}"),
                );
                let _ = std::fs::remove_file(port);
                to.and_then(|a| sys::bind(fd, &a))
            } else {
                Err(libc::EADDRINUSE)
            }
        }
        other => other,
    };
    match result {
        Ok(()) => {
            if host == "unix/" {
                *sock.unlink_on_close.borrow_mut() = Some(port.to_string());
            }
            Ok(true)
        }
        Err(e) => {
            sock.fail(e);
            sys::set_errno(e);
            Ok(false)
        }
    }
}

/// `socket.tcp_server(host, port, handler | {handler, prepare, name}[, timeout])`: listens
/// and runs `handler(client, from)` in a new fiber per connection; the client is shut down
/// and closed when the handler returns. Returns the listening socket and its address.
async fn tcp_server(lua: Lua, args: Args) -> LuaResult<LuaMultiValue> {
    let (host, port) = (arg(&args, 0), arg(&args, 1));
    let (handler, prepare, name) = match arg(&args, 2) {
        LuaValue::Function(f) => (f, None, None),
        LuaValue::Table(t) => {
            let handler = match t.get::<LuaValue>("handler")? {
                LuaValue::Function(f) => f,
                _ => return Err(LuaError::runtime(TCP_SERVER_USAGE)),
            };
            let prepare = match t.get::<LuaValue>("prepare")? {
                LuaValue::Nil => None,
                LuaValue::Function(f) => Some(f),
                _ => return Err(LuaError::runtime(TCP_SERVER_USAGE)),
            };
            let name = match t.get::<LuaValue>("name")? {
                LuaValue::Nil => None,
                n => Some(lua_tostring(&lua, &n)?),
            };
            (handler, prepare, name)
        }
        _ => return Err(LuaError::runtime(TCP_SERVER_USAGE)),
    };
    let name = name.unwrap_or_else(|| "server".into());
    let deadline = match number_arg(&arg(&args, 3)) {
        Some(secs) => deadline_after(secs),
        None => None,
    };
    let nil = || Ok(LuaMultiValue::from_iter([LuaValue::Nil]));

    let is_unix = matches!(&host, LuaValue::String(s) if s == "unix/");
    let addrs: Vec<sys::AddrInfo> = if is_unix {
        vec![sys::AddrInfo {
            endpoint: sys::Endpoint {
                family: libc::AF_UNIX,
                host: "unix/".into(),
                port: sys::Port::Path(lua_tostring(&lua, &port)?),
            },
            socktype: libc::SOCK_STREAM,
            protocol: 0,
        }]
    } else {
        let hints = sys::Hints {
            socktype: libc::SOCK_STREAM,
            flags: libc::AI_PASSIVE,
            ..sys::Hints::default()
        };
        let port = opt_string(&lua, &port)?.or(Some("0".into()));
        match resolve(&lua, opt_string(&lua, &host)?, port, hints, deadline).await? {
            Some(list) => list,
            None => return nil(),
        }
    };
    for ai in &addrs {
        let Ok(fd) = sys::socket(ai.endpoint.family, ai.socktype, ai.protocol) else {
            continue;
        };
        let (t, sock) = make_socket(&lua, fd, ai.socktype)?;
        let backlog = match &prepare {
            Some(p) => number_arg(&p.call_async::<LuaValue>(t.clone()).await?).map(|n| n as i32),
            None => {
                let _ = sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
                None
            }
        };
        let port_text = match &ai.endpoint.port {
            sys::Port::Number(n) => n.to_string(),
            sys::Port::Path(p) => p.clone(),
        };
        let bound = server_bind(&lua, &sock, &ai.endpoint.host, &port_text).await?;
        let listening = bound
            && match sys::listen(fd_of(&sock)?, backlog.unwrap_or(DEFAULT_BACKLOG)) {
                Ok(()) => true,
                Err(e) => {
                    sys::set_errno(e);
                    false
                }
            };
        if !listening {
            let saved = sys::last_errno();
            let saved = if sock.errno.get() != 0 { sock.errno.get() } else { saved };
            let _ = sock.close();
            sys::set_errno(saved);
            return nil();
        }
        let addr = addrinfo_table(&lua, ai)?;
        let loop_name = format!("{}/{}", name, endpoint_text(&ai.endpoint));
        let server_loop = lua.create_async_function(
            |lua, (srv, handler, name): (LuaTable, LuaFunction, String)| async move {
                server_loop(lua, srv, handler, name).await
            },
        )?;
        let loop_args = LuaMultiValue::from_iter([
            LuaValue::Table(t.clone()),
            LuaValue::Function(handler.clone()),
            LuaValue::String(lua.create_string(&name)?),
        ]);
        fiber::spawn(
            &lua,
            &truncate_name(loop_name),
            server_loop,
            loop_args,
            fiber::Start::Eager,
        )?;
        return Ok(LuaMultiValue::from_iter([LuaValue::Table(t), LuaValue::Table(addr)]));
    }
    sys::set_errno(libc::EAFNOSUPPORT);
    nil()
}

/// Fiber names are limited to 255 bytes; cut at a character boundary.
fn truncate_name(mut name: String) -> String {
    const MAX: usize = 255;
    if name.len() > MAX {
        let mut end = MAX;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// The accept loop of a `tcp_server`; ends when the server socket is closed.
async fn server_loop(lua: Lua, srv: LuaTable, handler: LuaFunction, name: String) -> LuaResult<()> {
    let sock = check_socket(&LuaValue::Table(srv))?;
    log::write(&lua, Level::Info, "started");
    loop {
        match wait_io(&lua, &sock, READ, None).await? {
            Waited::Ready(_) => {}
            Waited::Closed | Waited::TimedOut => break,
        }
        let Some(fd) = sock.raw_fd() else { break };
        match sys::accept(fd) {
            Ok((cfd, from)) => {
                let (client, _) = make_socket(&lua, cfd, sock.itype)?;
                let peer = from.as_ref().and_then(sys::endpoint);
                let fname = match &peer {
                    Some(ep) => format!("{}/{}", name, endpoint_text(ep)),
                    None => name.clone(),
                };
                let from = from_table(&lua, from.as_ref())?;
                let wrapper: LuaFunction = lua.registry_value(&state(&lua)?.handler_wrapper)?;
                let args =
                    LuaMultiValue::from_iter([LuaValue::Function(handler.clone()), LuaValue::Table(client), from]);
                fiber::spawn(&lua, &truncate_name(fname), wrapper, args, fiber::Start::Eager)?;
            }
            Err(e) => {
                sock.fail(e);
                if !sys::is_transient(e) {
                    let text = describe(&sock).unwrap_or_else(|_| format!("fd {fd}"));
                    log::write(
                        &lua,
                        Level::Error,
                        &format!("accept({text}) failed: {}", sys::strerror(e)),
                    );
                }
                if matches!(e, libc::EBADF | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOTSOCK) {
                    break;
                }
            }
        }
    }
    log::write(&lua, Level::Info, "stopped");
    Ok(())
}

/// Runs a connection handler, then shuts the client down and closes it (unless the
/// handler already did), and re-raises the handler's error so the fiber logs it. Kept in
/// Lua so that a live connection holds no mlua handle on the Rust side.
const HANDLER_WRAPPER: &str = r#"
local function finish(sc, ok, ...)
    if type(sc) == 'table' and sc.fd ~= nil and pcall(sc.fd, sc) then
        sc:shutdown()
        sc:close()
    end
    if not ok then error((...), 0) end
end
return function(handler, sc, from)
    return finish(sc, pcall(handler, sc, from))
end
"#;

const SONAME_MT: &str = r#"
return {
    __tostring = function(si)
        if si.host == nil and si.port == nil then return '' end
        return tostring(si.host or '0') .. ':' .. tostring(si.port or 0)
    end,
}
"#;

fn events_arg(v: &LuaValue) -> Option<(u8, bool)> {
    match v {
        LuaValue::Integer(1) => Some((READ, false)),
        LuaValue::Integer(2) => Some((WRITE, false)),
        LuaValue::Integer(3) => Some((READ | WRITE, false)),
        LuaValue::Number(n) if [1.0, 2.0, 3.0].contains(n) => Some((*n as u8, false)),
        LuaValue::String(s) => match &*s.as_bytes() {
            b"R" | b"r" => Some((READ, true)),
            b"W" | b"w" => Some((WRITE, true)),
            b"RW" | b"rw" | b"Rw" | b"rW" => Some((READ | WRITE, true)),
            _ => None,
        },
        _ => None,
    }
}

/// `socket.iowait(fd, events[, timeout])`: waits for any descriptor. A socket of this
/// module waits on tokio's readiness; other descriptors are polled every few ms.
async fn iowait(lua: Lua, args: Args) -> LuaResult<LuaValue> {
    let usage = || LuaError::runtime(IOWAIT_USAGE);
    let fd = match arg(&args, 0) {
        LuaValue::Integer(i) => i32::try_from(i).map_err(|_| usage())?,
        LuaValue::Number(n) if n.fract() == 0.0 => n as i32,
        _ => return Err(usage()),
    };
    let (want, as_text) = events_arg(&arg(&args, 1)).ok_or_else(usage)?;
    let deadline = deadline_arg(&arg(&args, 2), "iowait")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    let own = state(&lua)?.by_fd.borrow().get(&fd).and_then(Weak::upgrade);
    let own = own.filter(|s| s.raw_fd() == Some(fd));
    let bits = match own {
        Some(sock) => match wait_io(&lua, &sock, want, deadline).await? {
            Waited::Ready(b) => b,
            Waited::Closed => want,
            Waited::TimedOut => 0,
        },
        None => loop {
            match sys::poll_now(fd, want) {
                None => break want,
                Some(0) => {}
                Some(b) => break b,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break 0;
            }
            let nap = secs_left(deadline).min(0.005);
            fiber::sleep(&lua, nap).await?;
        },
    };
    if as_text {
        let text = match bits {
            0 => "",
            b => rw_text(b),
        };
        return lua.create_string(text).map(LuaValue::String);
    }
    Ok(LuaValue::Integer(bits as i64))
}

// ===== Module =====

fn add_fn<F, R>(lua: &Lua, t: &LuaTable, name: &str, f: F) -> LuaResult<()>
where
    F: Fn(&Lua, Args) -> LuaResult<R> + 'static,
    R: IntoLuaMulti,
{
    t.raw_set(name, lua.create_function(f)?)
}

fn add_async<F, Fut, R>(lua: &Lua, t: &LuaTable, name: &str, f: F) -> LuaResult<()>
where
    F: Fn(Lua, Args) -> Fut + 'static,
    Fut: std::future::Future<Output = LuaResult<R>> + 'static,
    R: IntoLuaMulti,
{
    t.raw_set(name, lua.create_async_function(f)?)
}

fn socket_metatable(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    add_fn(lua, &m, "close", m_close)?;
    add_fn(lua, &m, "errno", m_errno)?;
    add_fn(lua, &m, "error", m_error)?;
    add_fn(lua, &m, "fd", m_fd)?;
    add_fn(lua, &m, "bind", m_bind)?;
    add_fn(lua, &m, "listen", m_listen)?;
    add_fn(lua, &m, "sysconnect", m_sysconnect)?;
    add_async(lua, &m, "connect", m_connect)?;
    add_fn(lua, &m, "nonblock", m_nonblock)?;
    add_async(lua, &m, "readable", m_readable)?;
    add_async(lua, &m, "writable", m_writable)?;
    add_async(lua, &m, "wait", m_wait)?;
    add_fn(lua, &m, "shutdown", m_shutdown)?;
    add_fn(lua, &m, "setsockopt", m_setsockopt)?;
    add_fn(lua, &m, "getsockopt", m_getsockopt)?;
    add_fn(lua, &m, "linger", m_linger)?;
    add_async(lua, &m, "accept", m_accept)?;
    add_async(lua, &m, "syswrite", m_syswrite)?;
    add_async(lua, &m, "sysread", m_sysread)?;
    add_async(lua, &m, "read", m_read)?;
    add_async(lua, &m, "write", m_write)?;
    add_async(lua, &m, "send", m_send)?;
    add_async(lua, &m, "recv", m_recv)?;
    add_async(lua, &m, "recvfrom", m_recvfrom)?;
    add_async(lua, &m, "sendto", m_sendto)?;
    add_fn(lua, &m, "name", m_name)?;
    add_fn(lua, &m, "peer", m_peer)?;
    let mt = lua.create_table()?;
    mt.raw_set("__index", m)?;
    add_fn(lua, &mt, "__tostring", m_tostring)?;
    add_fn(lua, &mt, "__serialize", m_serialize)?;
    Ok(mt)
}

/// Builds the `socket` module table; the table itself is callable: `socket(domain, type,
/// protocol)`.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    if lua.app_data_ref::<SocketState>().is_none() {
        let soname_mt: LuaTable = lua.load(SONAME_MT).set_name("=socket").eval()?;
        let wrapper: LuaFunction = lua.load(HANDLER_WRAPPER).set_name("=socket").eval()?;
        lua.set_app_data(SocketState {
            socket_mt: lua.create_registry_value(socket_metatable(lua)?)?,
            soname_mt: lua.create_registry_value(soname_mt)?,
            handler_wrapper: lua.create_registry_value(wrapper)?,
            by_fd: RefCell::new(HashMap::new()),
        });
    }
    let m = lua.create_table()?;
    add_async(lua, &m, "getaddrinfo", getaddrinfo)?;
    add_async(lua, &m, "tcp_connect", tcp_connect)?;
    add_async(lua, &m, "tcp_server", tcp_server)?;
    add_async(lua, &m, "iowait", iowait)?;
    let mt = lua.create_table()?;
    mt.raw_set(
        "__call",
        lua.create_function(
            |lua, (_, domain, ty, proto): (LuaValue, LuaValue, LuaValue, LuaValue)| {
                socket_new(lua, &domain, &ty, &proto)
            },
        )?,
    )?;
    m.set_metatable(Some(mt))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_checks_follow_tarantool() {
        let d = |s: &str| Until::Delimiters(vec![s.as_bytes().to_vec()]);
        assert_eq!(ready_len(b"hello\nworld", LIMIT_INFINITY, &d("\n")), Some(6));
        assert_eq!(ready_len(b"hello", LIMIT_INFINITY, &d("\n")), None);
        assert_eq!(ready_len(b"hello", 3, &d("\n")), Some(3));
        assert_eq!(ready_len(b"", 0, &d("\n")), Some(0));
        assert_eq!(ready_len(b"ab", 3, &Until::Limit), None);
        assert_eq!(ready_len(b"abc", 3, &Until::Limit), Some(3));
        let two = Until::Delimiters(vec![b"x".to_vec(), b"bc".to_vec()]);
        assert_eq!(ready_len(b"abcx", LIMIT_INFINITY, &two), Some(3));
    }

    #[test]
    fn read_buffer_hands_out_in_order() {
        let mut b = ReadBuf::default();
        b.data.extend_from_slice(b"abcdef");
        assert_eq!(b.take(2), b"ab");
        assert_eq!(b.pending(), b"cdef");
        assert_eq!(b.take(10), b"cdef");
        assert_eq!(b.len(), 0);
    }
}
