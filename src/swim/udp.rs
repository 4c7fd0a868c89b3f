//! The swim driver: one UDP socket, a receive task and a timer task around a sans-IO
//! [`Swim`] core, plus the state the Lua binding reads (spec §1.2, rust-stack.md §5).
//!
//! Everything runs on the Lua thread (tokio `LocalSet`), so the state is a `RefCell`. The
//! rule that keeps it sound: **no Lua code runs while the state is borrowed**. The receive
//! and timer tasks never call Lua at all; they feed the core, send what it emits, refresh
//! the member snapshots Lua objects read, and wake the event fiber (a Lua fiber made by
//! `lua/swim.lua`) through a `Notify`. Log lines are formatted under the borrow and written
//! after it ends.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mlua::WeakLua;
use rand::rngs::SmallRng;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::core::{Config, Lifeguard, Stats, Swim, SwimError};
use super::crypto::Codec;
use super::member::{event, GcMode, MemberEvent, MemberId, MemberInfo};
use super::proto::{self, Incarnation, Status, MAX_PAYLOAD_SIZE, UDP_PACKET_SIZE};
use super::timers;
use crate::modules::log::Level;
use crate::runtime::errors::BoxError;

/// Receive buffer asked for: bursts of a few hundred packets (a big cluster's round, a
/// quit storm) must not be dropped by the kernel's 208 KiB default (rust-stack.md §5).
/// The kernel caps it at `rmem_max`.
const RCVBUF: usize = 4 << 20;

/// Datagrams taken from the socket per `recvmmsg` call. One round step of a 200-member
/// cluster rarely queues more than a few per socket; 8 buffers (12 KiB) cover the bursts of a
/// join or a quit without making every instance carry a big buffer.
const RECV_BATCH: usize = 8;

/// Extra sends of one datagram while `sendto` reports earlier refusals: each failure
/// consumes one pending error, and more than a few arriving between two sends is a storm
/// not worth waiting out.
const SEND_ATTEMPTS_ON_REFUSAL: usize = 4;

/// At most this many driver log lines per second per instance: a flood of garbage must not
/// turn into a flood of log lines (Tarantool rate-limits its decode errors too).
const LOG_LINES_PER_SEC: u32 = 10;

/// Microseconds of a process-wide monotonic clock; the core only compares them.
pub fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}

// ===== errors as Tarantool reports them =====

fn swim_error(msg: String) -> BoxError {
    BoxError::new("SwimError", 0, msg)
}

fn illegal_params(msg: String) -> BoxError {
    BoxError::new("IllegalParams", 0, msg)
}

fn socket_error(msg: String, errno: i32) -> BoxError {
    BoxError {
        kind: "SocketError",
        code: None,
        message: msg,
        errno: Some(errno),
    }
}

/// Text of a core refusal, with the API prefix (`swim.add_member: ...`). The payload error
/// has no prefix in Tarantool.
fn core_error(prefix: &str, e: SwimError) -> BoxError {
    match e {
        SwimError::PayloadTooBig => illegal_params(e.to_string()),
        SwimError::Quit => swim_error(e.to_string()),
        _ => swim_error(format!("{prefix}: {e}")),
    }
}

// ===== URIs =====

/// Parses a swim URI (spec §1.2): `port` means 127.0.0.1:port, `host:port` is resolved,
/// IPv6/UNIX/INADDR_ANY are refused with Tarantool's texts. Ports wrap at 16 bits.
pub fn parse_uri(uri: &str, prefix: &str) -> Result<SocketAddrV4, BoxError> {
    let invalid = || socket_error(format!("invalid uri \"{uri}\", called on fd -1"), libc::EINVAL);
    if uri.starts_with("unix/:") || uri.starts_with('/') || uri.starts_with("./") {
        return Err(illegal_params(format!("{prefix}: only IP sockets are supported")));
    }
    let port_of = |s: &str| -> Option<u16> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Truncated to 16 bits as Tarantool does (99999 binds 34463).
        s.parse::<u64>().ok().map(|p| p as u16)
    };
    if let Some(port) = port_of(uri) {
        return Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    }
    // `login:password@host:port`: credentials mean nothing to swim.
    let rest = uri.rsplit_once('@').map_or(uri, |(_, r)| r);
    if rest.starts_with('[') {
        return Err(invalid());
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
    let port = port_of(port).ok_or_else(invalid)?;
    if host.is_empty() || host.contains(':') {
        return Err(invalid());
    }
    let ip = match host.parse::<Ipv4Addr>() {
        Ok(ip) => ip,
        Err(_) => (host, 0)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| {
                it.find_map(|a| match a.ip() {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
            })
            .ok_or_else(invalid)?,
    };
    if ip.is_unspecified() {
        return Err(illegal_params(format!("{prefix}: INADDR_ANY is not supported")));
    }
    Ok(SocketAddrV4::new(ip, port))
}

/// A non-blocking IPv4 UDP socket bound to `addr` with a big receive buffer.
fn bind(addr: SocketAddrV4) -> Result<std::net::UdpSocket, BoxError> {
    let sys = |what: &str, e: std::io::Error| {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        socket_error(format!("{what}: {e}"), errno)
    };
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| sys("socket", e))?;
    let fd = sock.as_raw_fd();
    sock.set_nonblocking(true).map_err(|e| sys("fcntl", e))?;
    // Best effort: a smaller buffer only means more kernel drops under bursts.
    let _ = sock.set_recv_buffer_size(RCVBUF);
    // Best effort too: ICMP errors for our datagrams (a closed port at a member's address)
    // queue up for `read_refusals`; without this, Linux drops them for unconnected sockets.
    let on: libc::c_int = 1;
    // Safety: a plain int option on a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_RECVERR,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    if let Err(e) = sock.bind(&SocketAddr::V4(addr).into()) {
        let errno = e.raw_os_error().unwrap_or(libc::EADDRINUSE);
        // Tarantool's text names the still unbound socket.
        return Err(socket_error(format!("bind, called on fd {fd}, aka 0.0.0.0:0"), errno));
    }
    Ok(sock.into())
}

/// IPv4 interfaces for `broadcast`: the broadcast address when the interface has one,
/// otherwise its own address.
fn broadcast_targets(port: u16) -> Vec<SocketAddrV4> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // Safety: getifaddrs fills a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            let has_brd = ifa.ifa_flags & libc::IFF_BROADCAST as u32 != 0 && !ifa.ifa_ifu.is_null();
            let sa = if has_brd { ifa.ifa_ifu } else { ifa.ifa_addr };
            let sin = &*(sa as *const libc::sockaddr_in);
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let a = SocketAddrV4::new(ip, port);
            if !out.contains(&a) {
                out.push(a);
            }
        }
        libc::freeifaddrs(ifap);
    }
    out
}

// ===== batched receive =====

/// Buffers for one `recvmmsg` call. Each is one byte longer than the biggest valid
/// datagram, so an oversized one shows up as such instead of being silently cut.
struct RecvBatch {
    bufs: Vec<[u8; UDP_PACKET_SIZE + 1]>,
    lens: [usize; RECV_BATCH],
}

impl RecvBatch {
    fn new() -> RecvBatch {
        RecvBatch {
            bufs: vec![[0; UDP_PACKET_SIZE + 1]; RECV_BATCH],
            lens: [0; RECV_BATCH],
        }
    }

    /// Reads up to `RECV_BATCH` queued datagrams without blocking; WouldBlock when there
    /// are none.
    fn recv(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<usize> {
        // Safety: every iovec points into a buffer of `self.bufs` that outlives the call,
        // with its true length; the kernel writes only there and into `msgs`.
        let mut iovs: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        for ((iov, msg), buf) in iovs.iter_mut().zip(msgs.iter_mut()).zip(self.bufs.iter_mut()) {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        for (len, msg) in self.lens.iter_mut().zip(msgs.iter()).take(n) {
            *len = msg.msg_len as usize;
        }
        Ok(n)
    }

    fn datagram(&self, k: usize) -> &[u8] {
        &self.bufs[k][..self.lens[k].min(UDP_PACKET_SIZE + 1)]
    }
}

/// Reads the socket's error queue until it is empty (then WouldBlock), keeping the
/// destinations of datagrams refused with an ICMP port unreachable: nothing listens there.
/// Other errors (host or network unreachable, which a router may say for a while and then
/// stop saying) are read and dropped.
fn read_refusals(fd: std::os::fd::RawFd, refused: &mut Vec<SocketAddrV4>) -> std::io::Result<()> {
    loop {
        // Safety: every pointer in `msg` points at a local that outlives the call, with its
        // true length; the kernel writes only there.
        let mut name: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut control = [0u64; 16];
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: byte.len(),
        };
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Safety: the CMSG walk stays within `msg_controllen`, which the kernel set.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !c.is_null() {
            let h = unsafe { &*c };
            if h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_RECVERR {
                let e = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::sock_extended_err>()) };
                if e.ee_origin == libc::SO_EE_ORIGIN_ICMP
                    && e.ee_errno == libc::ECONNREFUSED as u32
                    && i32::from(name.sin_family) == libc::AF_INET
                {
                    let ip = Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr));
                    refused.push(SocketAddrV4::new(ip, u16::from_be(name.sin_port)));
                }
            }
            c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
        }
    }
}

// ===== member snapshots =====

/// What a Lua member object reads: the member's last known state, refreshed after every
/// input, and frozen when the member leaves the table (or the instance goes away).
#[derive(Debug)]
pub struct MemberCell {
    pub info: RefCell<MemberInfo>,
    pub dropped: Cell<bool>,
}

/// Counters of the driver itself (the core counts what it sees).
#[derive(Debug, Default, Clone)]
pub struct DriverStats {
    pub dropped_crypto: u64,
    pub dropped_decode: u64,
    pub dropped_oversized: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    /// Datagrams refused by the host they were sent to (ICMP port unreachable).
    pub refusals: u64,
}

// ===== the instance =====

/// Options of one `cfg` call, already type-checked by `lua/swim.lua`.
#[derive(Debug, Default)]
pub struct CfgOpts {
    pub uri: Option<String>,
    pub uuid: Option<Uuid>,
    pub heartbeat_rate: Option<f64>,
    pub ack_timeout: Option<f64>,
    pub gc_mode: Option<GcMode>,
    /// node's opt-in Lifeguard extensions (`cfg{lifeguard = ...}`).
    pub lifeguard: Option<Lifeguard>,
    /// node's news pushing (`cfg{push_news = false}` turns it off).
    pub push_news: Option<bool>,
    /// node's early count of refused pings (`cfg{count_refusals = false}` turns it off).
    pub count_refusals: Option<bool>,
}

/// The instance's socket, registered with the reactor for reading and errors only: sends
/// are direct syscalls (a UDP send does not block), and with write interest every datagram
/// sent on loopback came back as an EPOLLOUT event (the kernel frees the datagram's send
/// buffer space at once), one more epoll wakeup and reactor dispatch per packet for
/// nothing.
type UdpSocket = AsyncFd<std::net::UdpSocket>;

struct Bound {
    sock: Rc<UdpSocket>,
    addr: SocketAddrV4,
    recv_task: JoinHandle<()>,
}

impl Bound {
    /// Stops receiving and frees the port now, as Tarantool's `delete` and rebind do. The
    /// receive task holds the socket too and is dropped only at the scheduler's next turn,
    /// so until then the port stayed bound: a `swim.new` on it right after `delete` failed
    /// with "Address already in use".
    fn close(self) {
        self.recv_task.abort();
        let fd = self.sock.as_raw_fd();
        // Safety: `fd` is ours and stays open (owned by the AsyncFd) until the last holder
        // drops it. dup2 points it at a fresh unbound socket, so the bound socket's last
        // descriptor is closed at once (epoll forgets it with it); the number stays valid,
        // and the AsyncFd closes the stand-in in the end.
        unsafe {
            let stand_in = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if stand_in >= 0 {
                libc::dup2(stand_in, fd);
                libc::close(stand_in);
            }
        }
    }
}

struct State {
    generation: u64,
    core: Option<Swim>,
    codec: Codec,
    bound: Option<Bound>,
    /// IVs; never the core's generator, so the core stays reproducible from its seed.
    rng: SmallRng,
    deleted: bool,
    /// A trigger exists: the core keeps events (spec §1.6).
    collect: bool,
    drops: DriverStats,
    cells: HashMap<MemberId, Weak<MemberCell>>,
    log_window: (Instant, u32),
    pinned: bool,
    /// Kept between inputs so that sending allocates nothing: the drained outbox.
    outgoing: Vec<super::core::Outgoing>,
}

// The receive and send buffers, one set for every instance of the thread: an input is
// handled to the end without yielding, so no two instances use them at once. Buffers of its
// own per instance (13 KiB each) made a hundred instances walk 1.3 MB of cold memory. Each
// is taken and put back, so that a nested use would get fresh ones instead of failing.
thread_local! {
    /// Datagrams of one `recvmmsg`.
    static RECV_BUFFERS: Cell<Option<RecvBatch>> = const { Cell::new(None) };
    /// Plaintext and ciphertext of the datagram being sent.
    static SEND_BUFFERS: Cell<(Vec<u8>, Vec<u8>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// One swim instance: the driver state shared by the Lua handle and the tasks.
pub struct Instance {
    st: RefCell<State>,
    /// Wakes the event fiber.
    events_ready: Notify,
    /// The deadline armed in the thread's timers (`None`: none). Inputs re-arm only when
    /// they bring the next deadline earlier: most packets (acks, gossip) do not.
    pub(super) timer_armed: Cell<Option<u64>>,
    /// This instance, for the timers to hold.
    me: Weak<Instance>,
    lua: WeakLua,
}

fn seconds_to_us(s: f64) -> u64 {
    ((s * 1e6).round() as u64).max(1)
}

impl Instance {
    pub fn new(lua: &mlua::Lua, generation: u64) -> Rc<Instance> {
        Rc::new_cyclic(|me| Instance {
            st: RefCell::new(State {
                generation,
                core: None,
                codec: Codec::none(),
                bound: None,
                rng: rand::make_rng(),
                deleted: false,
                collect: false,
                drops: DriverStats::default(),
                cells: HashMap::new(),
                log_window: (Instant::now(), 0),
                pinned: false,
                outgoing: Vec::new(),
            }),
            events_ready: Notify::new(),
            timer_armed: Cell::new(None),
            me: me.clone(),
            lua: lua.weak(),
        })
    }

    fn log(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        if let Some(lua) = self.lua.try_upgrade() {
            for l in lines {
                crate::modules::log::write(&lua, Level::Error, &l);
            }
        }
    }

    /// Rate-limited log line, formatted under the borrow and written later.
    fn note(st: &mut State, out: &mut Vec<String>, line: String) {
        let now = Instant::now();
        if now.duration_since(st.log_window.0) >= Duration::from_secs(1) {
            st.log_window = (now, 0);
        }
        if st.log_window.1 < LOG_LINES_PER_SEC {
            st.log_window.1 += 1;
            out.push(line);
        }
    }

    pub fn is_deleted(&self) -> bool {
        self.st.borrow().deleted
    }

    pub fn is_configured(&self) -> bool {
        self.st.borrow().core.is_some()
    }

    /// The socket's fd, or -1.
    pub fn fd(&self) -> i32 {
        self.st.borrow().bound.as_ref().map_or(-1, |b| b.sock.as_raw_fd())
    }

    // ----- after every input -----

    /// Sends what the core emitted, refreshes member snapshots and wakes the fiber and the
    /// timer. Called with the state borrowed; returns log lines.
    fn settle(&self, st: &mut State) -> Vec<String> {
        let mut lines = Vec::new();
        let Some(core) = st.core.as_mut() else { return lines };
        let mut out = std::mem::take(&mut st.outgoing);
        core.swap_outgoing(&mut out);
        let (mut plain, mut wire) = SEND_BUFFERS.take();
        if let Some(b) = st.bound.as_ref() {
            let sock = b.sock.clone();
            for o in out.drain(..) {
                plain.clear();
                wire.clear();
                proto::encode(&o.packet, &mut plain);
                let datagram = if st.codec.is_none() {
                    &plain
                } else {
                    st.codec.encrypt(&plain, &mut wire, &mut st.rng);
                    &wire
                };
                // A direct syscall: a UDP send does not block, so the socket is not
                // registered for writing (see `UdpSocket`).
                let to = socket2::SockAddr::from(SocketAddr::V4(o.to));
                let sock = socket2::SockRef::from(&*sock);
                let mut sent = sock.send_to(datagram, &to);
                // A refusal of an earlier datagram (IP_RECVERR) fails the next send once,
                // without sending it; the failure consumed the error, so the retry goes out.
                for _ in 0..SEND_ATTEMPTS_ON_REFUSAL {
                    match &sent {
                        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => sent = sock.send_to(datagram, &to),
                        _ => break,
                    }
                }
                if let Err(e) = sent {
                    st.drops.send_errors += 1;
                    Self::note(st, &mut lines, format!("SystemError sendto({}): {e}", o.to));
                }
            }
        }
        st.outgoing = out;
        SEND_BUFFERS.set((plain, wire));
        Self::refresh_cells(st);
        if st.collect {
            self.events_ready.notify_one();
        }
        let next = st.core.as_ref().and_then(|c| c.next_deadline());
        if let Some(at) = next.filter(|&at| self.timer_armed.get().is_none_or(|armed| at < armed)) {
            self.timer_armed.set(Some(at));
            timers::arm(&self.me, at);
        }
        lines
    }

    fn refresh_cells(st: &mut State) {
        // Skips the walk over the map's buckets: no Lua member object is alive (a map that
        // once held some keeps its capacity, and the walk showed up in profiles).
        if st.cells.is_empty() {
            return;
        }
        let core = st.core.as_ref();
        st.cells.retain(|id, w| {
            let Some(cell) = w.upgrade() else { return false };
            let uuid = cell.info.borrow().uuid;
            match core.and_then(|c| c.member(&uuid)).filter(|m| m.id() == *id) {
                Some(m) => {
                    let mut info = cell.info.borrow_mut();
                    if info.status != m.status()
                        || info.incarnation != m.incarnation()
                        || info.addr != m.addr()
                        || info.payload_up_to_date != m.is_payload_up_to_date()
                        || info.payload != m.payload()
                    {
                        *info = m.info();
                    }
                    true
                }
                None => {
                    cell.dropped.set(true);
                    false
                }
            }
        });
    }

    fn cell_for(st: &mut State, info: MemberInfo, dropped: bool) -> Rc<MemberCell> {
        if let Some(c) = st.cells.get(&info.id).and_then(Weak::upgrade) {
            return c;
        }
        let id = info.id;
        let cell = Rc::new(MemberCell {
            info: RefCell::new(info),
            dropped: Cell::new(dropped),
        });
        if !dropped {
            st.cells.insert(id, Rc::downgrade(&cell));
        }
        cell
    }

    // ----- tasks -----

    fn on_datagram(&self, data: &[u8]) {
        let lines = {
            let mut st = self.st.borrow_mut();
            let st = &mut *st;
            let mut lines = Vec::new();
            if st.deleted || st.core.is_none() {
                return;
            }
            if data.len() > UDP_PACKET_SIZE {
                st.drops.dropped_oversized += 1;
                return;
            }
            if let Some(c) = st.core.as_ref() {
                c.prefetch_state();
            }
            let decrypted = if st.codec.is_none() {
                Ok(std::borrow::Cow::Borrowed(data))
            } else {
                st.codec.decrypt(data).map(std::borrow::Cow::Owned)
            };
            let plain = match decrypted {
                Ok(p) => p,
                Err(e) => {
                    st.drops.dropped_crypto += 1;
                    if let Some(c) = st.core.as_mut() {
                        c.stats_mut().dropped_crypto += 1;
                    }
                    Self::note(st, &mut lines, format!("CryptoError: {e}"));
                    drop(lines);
                    return;
                }
            };
            match proto::decode(&plain) {
                Ok(packet) => {
                    if let Some(c) = st.core.as_mut() {
                        c.handle_packet(packet, now_us());
                    }
                }
                Err(e) => {
                    st.drops.dropped_decode += 1;
                    if let Some(c) = st.core.as_mut() {
                        c.stats_mut().dropped_decode += 1;
                    }
                    Self::note(st, &mut lines, format!("SwimError: {e}"));
                }
            }
            lines.extend(self.settle(st));
            lines
        };
        self.log(lines);
    }

    /// Empties the socket's error queue (into `refused`, a buffer kept by the receive task)
    /// and hands each refused destination to the core.
    fn on_refusals(&self, sock: &UdpSocket, refused: &mut Vec<SocketAddrV4>) {
        refused.clear();
        // WouldBlock once the queue is empty; another error leaves it for the next edge.
        let _ = read_refusals(sock.as_raw_fd(), refused);
        if refused.is_empty() {
            return;
        }
        let lines = {
            let mut st = self.st.borrow_mut();
            if st.deleted {
                return;
            }
            st.drops.refusals += refused.len() as u64;
            if let Some(c) = st.core.as_mut() {
                let now = now_us();
                for &addr in refused.iter() {
                    c.handle_refused(addr, now);
                }
            }
            self.settle(&mut st)
        };
        self.log(lines);
    }

    pub(super) fn on_timer(&self) {
        let lines = {
            let mut st = self.st.borrow_mut();
            if st.deleted {
                return;
            }
            if let Some(c) = st.core.as_mut() {
                c.prefetch_state();
                c.handle_timer(now_us());
            }
            self.settle(&mut st)
        };
        self.log(lines);
    }

    /// Reads a batch of queued datagrams into the thread's receive buffers and handles
    /// them; how many there were.
    fn receive_queued(&self, fd: std::os::fd::RawFd) -> std::io::Result<usize> {
        // The instance is cold (others ran since): its state loads during the syscall.
        super::member::prefetch_all(std::slice::from_ref(&self.st));
        let mut batch = RECV_BUFFERS.take().unwrap_or_else(RecvBatch::new);
        let got = batch.recv(fd);
        if let Ok(n) = got {
            for k in 0..n {
                self.on_datagram(batch.datagram(k));
            }
        }
        RECV_BUFFERS.set(Some(batch));
        got
    }

    fn spawn_recv(self: &Rc<Self>, sock: Rc<UdpSocket>) -> JoinHandle<()> {
        let inst = self.clone();
        tokio::task::spawn_local(async move {
            let mut refused = Vec::new();
            loop {
                let r = match sock.ready(Interest::READABLE | Interest::ERROR).await {
                    Ok(mut guard) => {
                        let ready = guard.ready();
                        if ready.is_error() {
                            // Cleared first: a refusal arriving while the queue is read is a
                            // new edge, so none waits for unrelated traffic to be noticed.
                            guard.clear_ready_matching(Ready::ERROR);
                            inst.on_refusals(&sock, &mut refused);
                        }
                        if !ready.is_readable() {
                            Ok(())
                        } else {
                            // A batch that is not full emptied the queue: clear the readiness
                            // now, instead of learning it from one more recvmmsg that fails
                            // with EAGAIN. A datagram arriving later is a new edge for epoll,
                            // so none is missed.
                            match inst.receive_queued(sock.as_raw_fd()) {
                                Ok(n) => {
                                    if n < RECV_BATCH {
                                        guard.clear_ready_matching(Ready::READABLE);
                                    }
                                    Ok(())
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    guard.clear_ready_matching(Ready::READABLE);
                                    Ok(())
                                }
                                Err(e) => Err(e),
                            }
                        }
                    }
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => {}
                    // A refusal reported by the receive call instead of as readiness: read
                    // the error queue now, the datagrams are still queued behind it.
                    Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => inst.on_refusals(&sock, &mut refused),
                    Err(e) => {
                        let lines = {
                            let mut st = inst.st.borrow_mut();
                            st.drops.recv_errors += 1;
                            let mut lines = Vec::new();
                            Self::note(&mut st, &mut lines, format!("SystemError recvfrom: {e}"));
                            lines
                        };
                        inst.log(lines);
                        // ICMP errors surface here on Linux; do not spin on a persistent one.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        })
    }

    // ----- API -----

    /// `s:cfg{...}` after the Lua checks (spec §1.2, §2.9).
    pub fn cfg(self: &Rc<Self>, opts: CfgOpts) -> Result<(), BoxError> {
        let lines = {
            let mut st = self.st.borrow_mut();
            let st = &mut *st;
            if st.deleted {
                return Err(swim_error("the swim instance is deleted".into()));
            }
            let first = st.core.is_none();
            let mandatory = || swim_error("swim.cfg: UUID and URI are mandatory in a first config".into());
            if first && (opts.uri.is_none() || opts.uuid.is_none_or(|u| u.is_nil())) {
                return Err(mandatory());
            }
            let addr = match &opts.uri {
                Some(u) => Some(parse_uri(u, "swim.cfg")?),
                None => None,
            };
            if let (Some(core), Some(u)) = (st.core.as_ref(), opts.uuid) {
                if u.is_nil() {
                    return Err(mandatory());
                }
                if u != core.uuid() && core.member(&u).is_some() {
                    return Err(swim_error("swim.cfg: a member with such UUID already exists".into()));
                }
            }
            // "Smart" rebind: the same address, or port 0 on a bound socket, keeps it.
            let mut new_sock = None;
            if let Some(a) = addr {
                let keep = st.bound.as_ref().is_some_and(|b| a == b.addr || a.port() == 0);
                if !keep {
                    let std_sock = bind(a)?;
                    let real = match std_sock.local_addr() {
                        Ok(SocketAddr::V4(r)) => r,
                        _ => a,
                    };
                    // Safety: the std socket owns its descriptor, and the AsyncFd owns the
                    // socket until both are dropped together.
                    let sock =
                        unsafe { AsyncFd::register_with_interest(std_sock, Interest::READABLE | Interest::ERROR) }
                            .map_err(|e| {
                                let (_, e) = e.into_parts();
                                socket_error(format!("socket: {e}"), e.raw_os_error().unwrap_or(0))
                            })?;
                    new_sock = Some((a, real, Rc::new(sock)));
                }
            }
            let now = now_us();
            if first {
                let Some((requested, _, _)) = new_sock.as_ref() else {
                    return Err(mandatory());
                };
                let uuid = opts.uuid.ok_or_else(mandatory)?;
                let mut c = Config::new(uuid, *requested, st.generation);
                if let Some(h) = opts.heartbeat_rate.filter(|&h| h > 0.0) {
                    c.heartbeat_rate = seconds_to_us(h);
                }
                if let Some(a) = opts.ack_timeout.filter(|&a| a > 0.0) {
                    c.ack_timeout = seconds_to_us(a);
                }
                if let Some(g) = opts.gc_mode {
                    c.gc_mode = g;
                }
                if let Some(l) = opts.lifeguard {
                    c.lifeguard = l;
                }
                if let Some(p) = opts.push_news {
                    c.push_news = p;
                }
                if let Some(r) = opts.count_refusals {
                    c.count_refusals = r;
                }
                let mut core = Swim::new(c, rand::random::<u64>(), now).map_err(|_| mandatory())?;
                if !st.collect {
                    core.set_event_collection(false);
                }
                st.core = Some(core);
                if !st.pinned {
                    if let Some(lua) = self.lua.try_upgrade() {
                        crate::runtime::fiber::scheduler(&lua).pin();
                        st.pinned = true;
                    }
                }
            }
            let Some(core) = st.core.as_mut() else {
                return Err(mandatory());
            };
            if let Some((_, real, sock)) = new_sock {
                if let Some(old) = st.bound.take() {
                    old.close();
                }
                let recv_task = self.spawn_recv(sock.clone());
                st.bound = Some(Bound {
                    sock,
                    addr: real,
                    recv_task,
                });
                // Bumps the version (and NEW_URI) only if the address really changed.
                core.set_address(real, now);
            }
            if !first {
                if let Some(h) = opts.heartbeat_rate.filter(|&h| h > 0.0) {
                    core.set_heartbeat_rate(seconds_to_us(h), now);
                }
                if let Some(a) = opts.ack_timeout.filter(|&a| a > 0.0) {
                    core.set_ack_timeout(seconds_to_us(a), now);
                }
                if let Some(g) = opts.gc_mode {
                    core.set_gc_mode(g);
                }
                if let Some(l) = opts.lifeguard {
                    core.set_lifeguard(l);
                }
                if let Some(p) = opts.push_news {
                    core.set_push_news(p);
                }
                if let Some(r) = opts.count_refusals {
                    core.set_count_refusals(r);
                }
                if let Some(u) = opts.uuid {
                    core.set_uuid(u, now).map_err(|e| core_error("swim.cfg", e))?;
                }
            }
            self.settle(st)
        };
        self.log(lines);
        Ok(())
    }

    /// Runs `f` on the configured core, then settles.
    fn with_core<T>(&self, f: impl FnOnce(&mut Swim, u64) -> Result<T, BoxError>) -> Result<T, BoxError> {
        let (r, lines) = {
            let mut st = self.st.borrow_mut();
            let st = &mut *st;
            let Some(core) = st.core.as_mut() else {
                return Err(swim_error("the swim instance is deleted".into()));
            };
            let r = f(core, now_us());
            (r, self.settle(st))
        };
        self.log(lines);
        r
    }

    pub fn size(&self) -> usize {
        self.st.borrow().core.as_ref().map_or(0, |c| c.size())
    }

    /// A member's snapshot cell, `None` if unknown.
    pub fn member(&self, uuid: Option<Uuid>) -> Option<Rc<MemberCell>> {
        let mut st = self.st.borrow_mut();
        let core = st.core.as_ref()?;
        let info = match uuid {
            Some(u) => core.member(&u)?.info(),
            None => core.self_member().info(),
        };
        Some(Self::cell_for(&mut st, info, false))
    }

    pub fn uuids(&self) -> Vec<Uuid> {
        self.st
            .borrow()
            .core
            .as_ref()
            .map_or_else(Vec::new, |c| c.members().map(|m| m.uuid()).collect())
    }

    pub fn add_member(&self, uri: &str, uuid: Uuid) -> Result<(), BoxError> {
        let addr = parse_uri(uri, "swim.add_member")?;
        self.with_core(|c, now| {
            c.add_member(uuid, addr, now)
                .map_err(|e| core_error("swim.add_member", e))
        })
    }

    pub fn remove_member(&self, uuid: Uuid) -> Result<(), BoxError> {
        self.with_core(|c, now| {
            c.remove_member(uuid, now)
                .map_err(|e| core_error("swim.remove_member", e))
        })
    }

    pub fn probe_member(&self, uri: &str) -> Result<(), BoxError> {
        let addr = parse_uri(uri, "swim.probe_member")?;
        self.with_core(|c, now| {
            c.probe_member(addr, now);
            Ok(())
        })
    }

    /// `port < 0`: our own port.
    pub fn broadcast(&self, port: i64) -> Result<(), BoxError> {
        let port = if port < 0 {
            self.st.borrow().bound.as_ref().map_or(0, |b| b.addr.port())
        } else {
            port as u16
        };
        let targets = broadcast_targets(port);
        if targets.is_empty() {
            return Err(swim_error("broadcast has failed - no available interfaces".into()));
        }
        self.with_core(|c, now| {
            c.broadcast(&targets, now);
            Ok(())
        })
    }

    pub fn set_payload(&self, payload: &[u8]) -> Result<(), BoxError> {
        if payload.len() > MAX_PAYLOAD_SIZE {
            return Err(core_error("", SwimError::PayloadTooBig));
        }
        self.with_core(|c, now| {
            c.set_payload(payload, now)
                .map_err(|e| core_error("swim.set_payload", e))
        })
    }

    pub fn set_codec(&self, codec: Codec) {
        self.st.borrow_mut().codec = codec;
    }

    /// Turns event collection on while a trigger exists.
    pub fn set_collect(&self, on: bool) {
        let mut st = self.st.borrow_mut();
        st.collect = on;
        if let Some(c) = st.core.as_mut() {
            c.set_event_collection(on);
        }
    }

    /// Drained events with the member cell each is about; `None` once deleted.
    pub fn take_events(&self) -> Option<Vec<(MemberEvent, Rc<MemberCell>)>> {
        let mut st = self.st.borrow_mut();
        let st = &mut *st;
        if st.deleted {
            return None;
        }
        let Some(core) = st.core.as_mut() else {
            return Some(Vec::new());
        };
        let events: Vec<(MemberEvent, Option<MemberInfo>)> = core
            .take_events()
            .into_iter()
            .map(|e| {
                let live = core.member(&e.uuid).filter(|m| m.id() == e.id).map(|m| m.info());
                (e, live)
            })
            .collect();
        let mut out = Vec::with_capacity(events.len());
        for (e, live) in events {
            let cell = match (live, e.last.clone()) {
                (Some(info), _) if e.mask & event::DROP == 0 => Self::cell_for(st, info, false),
                (_, Some(last)) => {
                    let c = Self::cell_for(st, last.clone(), true);
                    *c.info.borrow_mut() = last;
                    c.dropped.set(true);
                    c
                }
                (Some(info), None) => Self::cell_for(st, info, false),
                (None, None) => continue,
            };
            out.push((e, cell));
        }
        Some(out)
    }

    /// Waits until events may be ready (or the instance is deleted).
    pub async fn events_ready(&self) {
        self.events_ready.notified().await
    }

    pub fn stats(&self) -> Option<(Stats, DriverStats)> {
        let st = self.st.borrow();
        st.core.as_ref().map(|c| (c.stats().clone(), st.drops.clone()))
    }

    /// `s:quit()`: quit packets to everyone, then delete.
    pub fn quit(&self) {
        let lines = {
            let mut st = self.st.borrow_mut();
            if let Some(c) = st.core.as_mut() {
                c.quit(now_us());
            }
            self.settle(&mut st)
        };
        self.log(lines);
        self.delete();
    }

    /// `s:delete()`: stop everything at once, no notification. Safe to call twice; from
    /// a finalizer it may find the state busy, then it retries from a task.
    pub fn delete(&self) {
        let Ok(mut st) = self.st.try_borrow_mut() else {
            return;
        };
        if st.deleted {
            return;
        }
        st.deleted = true;
        if let Some(b) = st.bound.take() {
            b.close();
        }
        self.timer_armed.set(None);
        // Member objects keep their last state; a self that quit reads as left.
        if let Some(core) = st.core.as_ref() {
            let me = core.self_member().id();
            let status = core.self_member().status();
            for (id, w) in st.cells.iter() {
                if let Some(c) = w.upgrade() {
                    if *id == me {
                        c.info.borrow_mut().status = status;
                    }
                }
            }
        }
        st.core = None;
        Self::refresh_cells(&mut st);
        if st.pinned {
            st.pinned = false;
            if let Some(lua) = self.lua.try_upgrade() {
                crate::runtime::fiber::scheduler(&lua).unpin();
            }
        }
        drop(st);
        self.events_ready.notify_one();
    }
}

/// Snapshot accessors used by the Lua member object.
impl MemberCell {
    pub fn status(&self) -> Status {
        self.info.borrow().status
    }
    pub fn incarnation(&self) -> Incarnation {
        self.info.borrow().incarnation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_follow_tarantool() {
        let p = |s: &str| parse_uri(s, "swim.cfg").map_err(|e| e.message);
        assert_eq!(p("3301"), Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3301)));
        assert_eq!(p("127.0.0.1:99999"), Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 34463)));
        assert_eq!(p("localhost:3390"), Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3390)));
        assert_eq!(p("abc"), Err("invalid uri \"abc\", called on fd -1".into()));
        assert_eq!(
            p("[::1]:3390"),
            Err("invalid uri \"[::1]:3390\", called on fd -1".into())
        );
        assert_eq!(p("0.0.0.0:3390"), Err("swim.cfg: INADDR_ANY is not supported".into()));
        assert_eq!(
            p("unix/:/tmp/x.sock"),
            Err("swim.cfg: only IP sockets are supported".into())
        );
        assert_eq!(p("1.5"), Err("invalid uri \"1.5\", called on fd -1".into()));
    }
}
