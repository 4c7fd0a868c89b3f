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
//!
//! Layout: this file has the socket state, argument helpers and the waiting machinery;
//! `methods.rs` the socket object's methods; `net.rs` the module functions (`socket()`,
//! `getaddrinfo`, `tcp_connect`, `tcp_server`, `iowait`); `sys.rs` the libc side.

mod methods;
mod net;
pub mod sys;

use methods::*;
use net::*;

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

/// What `recv()` without a size reads at most on a stream socket (Tarantool's value).
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
