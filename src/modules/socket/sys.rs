//! The system side of `socket`: name tables, address parsing, thin nonblocking syscall
//! wrappers and `getaddrinfo`. Nothing here touches Lua, so it can be unit-tested alone.
//!
//! Every wrapper returns `Err(errno)` rather than an `io::Error`, because the Lua API reports
//! failures as errno numbers (`sock:errno()`) and `strerror` texts (`sock:error()`).

use std::ffi::{CStr, CString};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Tarantool reads this much at a time (`buffer.READAHEAD`).
pub const READAHEAD: usize = 16320;

/// The largest `read` limit Tarantool accepts (INT32_MAX).
pub const LIMIT_INFINITY: usize = 2_147_483_647;

pub type Errno = i32;

/// The errno of the last failed libc call.
pub fn last_errno() -> Errno {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Sets the C `errno`, which Tarantool's `errno()` reads after module-level calls
/// (`socket()`, `tcp_connect`, `tcp_server`) that return nil.
pub fn set_errno(e: Errno) {
    // Safety: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// `strerror(e)` as glibc words it, without Rust's " (os error N)" suffix.
pub fn strerror(e: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(e).to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// EAGAIN and EINTR mean "try again after a wait", not failure.
pub fn is_transient(e: Errno) -> bool {
    e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR
}

// ===== Name tables =====

/// Address families by name, as `socket()` and `getaddrinfo` accept them.
pub const DOMAINS: &[(&str, i32)] = &[
    ("AF_UNSPEC", libc::AF_UNSPEC),
    ("AF_INET", libc::AF_INET),
    ("AF_INET6", libc::AF_INET6),
    ("AF_UNIX", libc::AF_UNIX),
    ("AF_LOCAL", libc::AF_LOCAL),
    ("AF_PACKET", libc::AF_PACKET),
    ("PF_UNSPEC", libc::PF_UNSPEC),
    ("PF_INET", libc::PF_INET),
    ("PF_INET6", libc::PF_INET6),
    ("PF_UNIX", libc::PF_UNIX),
    ("PF_LOCAL", libc::PF_LOCAL),
    ("PF_PACKET", libc::PF_PACKET),
];

/// Socket types by name.
pub const TYPES: &[(&str, i32)] = &[
    ("SOCK_STREAM", libc::SOCK_STREAM),
    ("SOCK_DGRAM", libc::SOCK_DGRAM),
    ("SOCK_RAW", libc::SOCK_RAW),
    ("SOCK_SEQPACKET", libc::SOCK_SEQPACKET),
    ("SOCK_RDM", libc::SOCK_RDM),
];

/// Protocols by name; the names /etc/protocols gives, so lookups need no NSS call.
pub const PROTOCOLS: &[(&str, i32)] = &[
    ("ip", 0),
    ("icmp", 1),
    ("tcp", 6),
    ("udp", 17),
    ("ipv6", 41),
    ("ipv6-icmp", 58),
    ("sctp", 132),
    ("udplite", 136),
    ("raw", 255),
];

/// `send`/`recv` flags by name.
pub const MSG_FLAGS: &[(&str, i32)] = &[
    ("MSG_OOB", libc::MSG_OOB),
    ("MSG_PEEK", libc::MSG_PEEK),
    ("MSG_DONTROUTE", libc::MSG_DONTROUTE),
    ("MSG_CTRUNC", libc::MSG_CTRUNC),
    ("MSG_TRUNC", libc::MSG_TRUNC),
    ("MSG_DONTWAIT", libc::MSG_DONTWAIT),
    ("MSG_EOR", libc::MSG_EOR),
    ("MSG_WAITALL", libc::MSG_WAITALL),
    ("MSG_NOSIGNAL", libc::MSG_NOSIGNAL),
    ("MSG_MORE", libc::MSG_MORE),
    ("MSG_CONFIRM", libc::MSG_CONFIRM),
    ("MSG_ERRQUEUE", libc::MSG_ERRQUEUE),
];

/// `getaddrinfo` flags by name.
pub const AI_FLAGS: &[(&str, i32)] = &[
    ("AI_PASSIVE", libc::AI_PASSIVE),
    ("AI_CANONNAME", libc::AI_CANONNAME),
    ("AI_NUMERICHOST", libc::AI_NUMERICHOST),
    ("AI_NUMERICSERV", libc::AI_NUMERICSERV),
    ("AI_V4MAPPED", libc::AI_V4MAPPED),
    ("AI_ALL", libc::AI_ALL),
    ("AI_ADDRCONFIG", libc::AI_ADDRCONFIG),
];

pub fn lookup(table: &[(&str, i32)], name: &str) -> Option<i32> {
    table.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

/// The name Tarantool prints for a number, first match wins (so AF_ before PF_).
pub fn name_of(table: &[(&'static str, i32)], value: i32) -> Option<&'static str> {
    table.iter().find(|&&(_, v)| v == value).map(|&(n, _)| n)
}

/// A protocol name for `name()` and `getaddrinfo`; Tarantool leaves 0 as a number.
pub fn protocol_name(value: i32) -> Option<&'static str> {
    if value == 0 {
        return None;
    }
    name_of(PROTOCOLS, value)
}

/// Protocol number for a name: the table first, then the system database.
pub fn protocol_by_name(name: &str) -> Option<i32> {
    if let Some(p) = lookup(PROTOCOLS, name) {
        return Some(p);
    }
    let c = CString::new(name).ok()?;
    // Safety: getprotobyname reads a local file and returns a static entry or NULL; the
    // process runs Lua on one thread, so nothing else uses that entry meanwhile.
    let p = unsafe { libc::getprotobyname(c.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // Safety: p is non-null and points to a valid protoent.
    Some(unsafe { (*p).p_proto })
}

// ===== Socket options =====

/// How an option's value is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptKind {
    Int,
    /// Options that need a structure (`SO_LINGER`, timeouts, `TCP_INFO`): not settable as
    /// a plain value, as in Tarantool.
    Other,
}

#[derive(Debug, Clone, Copy)]
pub struct SockOpt {
    pub name: &'static str,
    pub level: i32,
    pub iname: i32,
    pub rw: bool,
    pub kind: OptKind,
}

const fn opt(name: &'static str, level: i32, iname: i32, rw: bool, kind: OptKind) -> SockOpt {
    SockOpt {
        name,
        level,
        iname,
        rw,
        kind,
    }
}

use OptKind::{Int, Other};

/// The options Tarantool's `setsockopt`/`getsockopt` know, with their access.
pub const SOCK_OPTS: &[SockOpt] = &[
    opt("SO_ACCEPTCONN", libc::SOL_SOCKET, libc::SO_ACCEPTCONN, false, Int),
    opt("SO_BINDTODEVICE", libc::SOL_SOCKET, libc::SO_BINDTODEVICE, true, Other),
    opt("SO_BROADCAST", libc::SOL_SOCKET, libc::SO_BROADCAST, true, Int),
    opt("SO_DEBUG", libc::SOL_SOCKET, libc::SO_DEBUG, true, Int),
    opt("SO_DOMAIN", libc::SOL_SOCKET, libc::SO_DOMAIN, false, Int),
    opt("SO_DONTROUTE", libc::SOL_SOCKET, libc::SO_DONTROUTE, true, Int),
    opt("SO_ERROR", libc::SOL_SOCKET, libc::SO_ERROR, false, Int),
    opt("SO_KEEPALIVE", libc::SOL_SOCKET, libc::SO_KEEPALIVE, true, Int),
    opt("SO_LINGER", libc::SOL_SOCKET, libc::SO_LINGER, false, Other),
    opt("SO_OOBINLINE", libc::SOL_SOCKET, libc::SO_OOBINLINE, true, Int),
    opt("SO_PASSCRED", libc::SOL_SOCKET, libc::SO_PASSCRED, true, Int),
    opt("SO_PEERCRED", libc::SOL_SOCKET, libc::SO_PEERCRED, false, Other),
    opt("SO_PRIORITY", libc::SOL_SOCKET, libc::SO_PRIORITY, true, Int),
    opt("SO_PROTOCOL", libc::SOL_SOCKET, libc::SO_PROTOCOL, false, Int),
    opt("SO_RCVBUF", libc::SOL_SOCKET, libc::SO_RCVBUF, true, Int),
    opt("SO_RCVBUFFORCE", libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, true, Int),
    opt("SO_RCVLOWAT", libc::SOL_SOCKET, libc::SO_RCVLOWAT, true, Int),
    opt("SO_RCVTIMEO", libc::SOL_SOCKET, libc::SO_RCVTIMEO, true, Other),
    opt("SO_REUSEADDR", libc::SOL_SOCKET, libc::SO_REUSEADDR, true, Int),
    opt("SO_REUSEPORT", libc::SOL_SOCKET, libc::SO_REUSEPORT, true, Int),
    opt("SO_SNDBUF", libc::SOL_SOCKET, libc::SO_SNDBUF, true, Int),
    opt("SO_SNDBUFFORCE", libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, true, Int),
    opt("SO_SNDLOWAT", libc::SOL_SOCKET, libc::SO_SNDLOWAT, true, Int),
    opt("SO_SNDTIMEO", libc::SOL_SOCKET, libc::SO_SNDTIMEO, true, Other),
    opt("SO_TIMESTAMP", libc::SOL_SOCKET, libc::SO_TIMESTAMP, true, Int),
    opt("SO_TYPE", libc::SOL_SOCKET, libc::SO_TYPE, false, Int),
    opt("TCP_NODELAY", libc::IPPROTO_TCP, libc::TCP_NODELAY, true, Int),
    opt("TCP_MAXSEG", libc::IPPROTO_TCP, libc::TCP_MAXSEG, true, Int),
    opt("TCP_CORK", libc::IPPROTO_TCP, libc::TCP_CORK, true, Int),
    opt("TCP_KEEPIDLE", libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, true, Int),
    opt("TCP_KEEPINTVL", libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, true, Int),
    opt("TCP_KEEPCNT", libc::IPPROTO_TCP, libc::TCP_KEEPCNT, true, Int),
    opt("TCP_SYNCNT", libc::IPPROTO_TCP, libc::TCP_SYNCNT, true, Int),
    opt("TCP_LINGER2", libc::IPPROTO_TCP, libc::TCP_LINGER2, true, Int),
    opt("TCP_DEFER_ACCEPT", libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, true, Int),
    opt("TCP_WINDOW_CLAMP", libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP, true, Int),
    opt("TCP_INFO", libc::IPPROTO_TCP, libc::TCP_INFO, false, Other),
    opt("TCP_QUICKACK", libc::IPPROTO_TCP, libc::TCP_QUICKACK, true, Int),
];

pub fn find_opt(level: i32, name: &str) -> Option<SockOpt> {
    SOCK_OPTS.iter().find(|o| o.level == level && o.name == name).copied()
}

pub fn getsockopt_int(fd: RawFd, level: i32, iname: i32) -> Result<i32, Errno> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // Safety: v and len are valid for writes of the sizes given.
    let r = unsafe { libc::getsockopt(fd, level, iname, (&mut v as *mut libc::c_int).cast(), &mut len) };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(v)
}

pub fn setsockopt_int(fd: RawFd, level: i32, iname: i32, value: i32) -> Result<(), Errno> {
    let v: libc::c_int = value;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // Safety: v lives across the call and len is its size.
    let r = unsafe { libc::setsockopt(fd, level, iname, (&v as *const libc::c_int).cast(), len) };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(())
}

pub fn get_linger(fd: RawFd) -> Result<(bool, i32), Errno> {
    let mut v = libc::linger {
        l_onoff: 0,
        l_linger: 0,
    };
    let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    // Safety: v and len are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&mut v as *mut libc::linger).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(last_errno());
    }
    Ok((v.l_onoff != 0, v.l_linger))
}

pub fn set_linger(fd: RawFd, active: bool, timeout: i32) -> Result<(), Errno> {
    let v = libc::linger {
        l_onoff: active as libc::c_int,
        l_linger: timeout,
    };
    let len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    // Safety: v lives across the call and len is its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&v as *const libc::linger).cast(),
            len,
        )
    };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(())
}

// ===== Addresses =====

/// C `atoi`: leading whitespace, a sign, digits; anything else ends the number.
pub fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add((b - b'0') as i64);
    }
    if neg {
        -n
    } else {
        n
    }
}

/// The address `bind`, `sysconnect` and `sendto` use. Like Tarantool, these take numeric
/// IPv4/IPv6 addresses or `unix/` plus a path, never names (those go through
/// `getaddrinfo`); the port is parsed like C `atoi`. Anything else is EINVAL.
pub fn local_resolve(host: &str, port: &str) -> Result<SockAddr, Errno> {
    if host == "unix/" {
        return SockAddr::unix(port).map_err(|_| libc::EINVAL);
    }
    // htons(atoi(port)) keeps the low 16 bits.
    let p = atoi(port) as u16;
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(SockAddr::from(SocketAddrV4::new(ip, p)));
    }
    if let Ok(ip) = host.parse::<Ipv6Addr>() {
        return Ok(SockAddr::from(SocketAddrV6::new(ip, p, 0, 0)));
    }
    Err(libc::EINVAL)
}

/// A host and port as Tarantool reports them: an IP string and a number, or `unix/` and
/// the path.
#[derive(Debug, Clone, PartialEq)]
pub enum Port {
    Number(u16),
    Path(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub family: i32,
    pub host: String,
    pub port: Port,
}

pub fn endpoint(addr: &SockAddr) -> Option<Endpoint> {
    if let Some(sa) = addr.as_socket() {
        let host = match sa {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => v6.ip().to_string(),
        };
        return Some(Endpoint {
            family: addr.family() as i32,
            host,
            port: Port::Number(sa.port()),
        });
    }
    if addr.family() as i32 == libc::AF_UNIX {
        let path = addr
            .as_pathname()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Some(Endpoint {
            family: libc::AF_UNIX,
            host: "unix/".into(),
            port: Port::Path(path),
        });
    }
    None
}

// ===== Syscalls =====

/// `poll(fd, events, 0)`: what is ready right now. Bit 1 is readable, bit 2 writable.
/// `None` if the descriptor is not open.
pub fn poll_now(fd: RawFd, want: u8) -> Option<u8> {
    let mut events: libc::c_short = 0;
    if want & 1 != 0 {
        events |= libc::POLLIN;
    }
    if want & 2 != 0 {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    // Safety: one valid pollfd and a zero timeout, so poll never blocks.
    let r = unsafe { libc::poll(&mut pfd, 1, 0) };
    if r <= 0 {
        return Some(0);
    }
    if pfd.revents & libc::POLLNVAL != 0 {
        return None;
    }
    // Errors and hang-ups wake both readers and writers, as libev reports them.
    let failed = pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0;
    let mut out = 0;
    if want & 1 != 0 && (failed || pfd.revents & libc::POLLIN != 0) {
        out |= 1;
    }
    if want & 2 != 0 && (failed || pfd.revents & libc::POLLOUT != 0) {
        out |= 2;
    }
    Some(out)
}

fn check(r: isize) -> Result<usize, Errno> {
    if r < 0 {
        Err(last_errno())
    } else {
        Ok(r as usize)
    }
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // Safety: buf is valid for writes of buf.len() bytes.
    check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

pub fn write(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    // Safety: buf is valid for reads of buf.len() bytes.
    check(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

pub fn send(fd: RawFd, buf: &[u8], flags: i32) -> Result<usize, Errno> {
    // Safety: buf is valid for reads of buf.len() bytes.
    check(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) })
}

pub fn recv(fd: RawFd, buf: &mut [u8], flags: i32) -> Result<usize, Errno> {
    // Safety: buf is valid for writes of buf.len() bytes (a null pointer is fine for 0).
    check(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) })
}

/// The size of the next datagram without taking it (MSG_PEEK | MSG_TRUNC).
pub fn next_datagram_size(fd: RawFd) -> Result<usize, Errno> {
    // Safety: a zero-length buffer; MSG_TRUNC makes the kernel report the real length.
    check(unsafe { libc::recv(fd, std::ptr::null_mut(), 0, libc::MSG_PEEK | libc::MSG_TRUNC) })
}

pub fn sendto(fd: RawFd, buf: &[u8], flags: i32, to: &SockAddr) -> Result<usize, Errno> {
    // Safety: buf and the address are valid for the lengths given.
    check(unsafe { libc::sendto(fd, buf.as_ptr().cast(), buf.len(), flags, to.as_ptr().cast(), to.len()) })
}

pub fn recvfrom(fd: RawFd, buf: &mut [u8], flags: i32) -> Result<(usize, Option<SockAddr>), Errno> {
    // Safety: buf is valid for writes of its length; try_init hands out zeroed storage
    // and its length for the kernel to fill.
    let r = unsafe {
        SockAddr::try_init(|storage, len| {
            let n = libc::recvfrom(fd, buf.as_mut_ptr().cast(), buf.len(), flags, storage.cast(), len);
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    };
    match r {
        Ok((n, addr)) => Ok((n, Some(addr))),
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

pub fn connect(fd: RawFd, to: &SockAddr) -> Result<(), Errno> {
    // Safety: the address is valid for its length.
    let r = unsafe { libc::connect(fd, to.as_ptr().cast(), to.len()) };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(())
}

pub fn bind(fd: RawFd, to: &SockAddr) -> Result<(), Errno> {
    // Safety: the address is valid for its length.
    let r = unsafe { libc::bind(fd, to.as_ptr().cast(), to.len()) };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(())
}

pub fn listen(fd: RawFd, backlog: i32) -> Result<(), Errno> {
    // Safety: plain syscall on an integer descriptor.
    if unsafe { libc::listen(fd, backlog) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

pub fn shutdown(fd: RawFd, how: i32) -> Result<(), Errno> {
    // Safety: plain syscall on an integer descriptor.
    if unsafe { libc::shutdown(fd, how) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

/// A new nonblocking, close-on-exec socket.
pub fn socket(domain: i32, ty: i32, proto: i32) -> Result<RawFd, Errno> {
    // Safety: plain syscall.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(last_errno());
    }
    Ok(fd)
}

/// Accepts one pending connection; the new descriptor is nonblocking, as in Tarantool.
pub fn accept(fd: RawFd) -> Result<(RawFd, Option<SockAddr>), Errno> {
    // Safety: try_init hands out zeroed storage and its length for the kernel to fill.
    let r = unsafe {
        SockAddr::try_init(|storage, len| {
            let c = libc::accept4(fd, storage.cast(), len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
            if c < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(c)
            }
        })
    };
    match r {
        Ok((c, addr)) => Ok((c, Some(addr))),
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

fn sock_name(fd: RawFd, peer: bool) -> Result<SockAddr, Errno> {
    // Safety: try_init hands out zeroed storage and its length for the kernel to fill.
    let r = unsafe {
        SockAddr::try_init(|storage, len| {
            let r = if peer {
                libc::getpeername(fd, storage.cast(), len)
            } else {
                libc::getsockname(fd, storage.cast(), len)
            };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        })
    };
    r.map(|(_, a)| a).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

pub fn local_addr(fd: RawFd) -> Result<SockAddr, Errno> {
    sock_name(fd, false)
}

pub fn peer_addr(fd: RawFd) -> Result<SockAddr, Errno> {
    sock_name(fd, true)
}

// ===== getaddrinfo =====

#[derive(Debug, Clone, Copy, Default)]
pub struct Hints {
    pub family: i32,
    pub socktype: i32,
    pub protocol: i32,
    pub flags: i32,
}

/// One `getaddrinfo` answer.
#[derive(Debug, Clone)]
pub struct AddrInfo {
    pub endpoint: Endpoint,
    pub socktype: i32,
    pub protocol: i32,
}

/// Blocking `getaddrinfo`; run it off the Lua thread. `Err` carries the EAI_* code.
pub fn getaddrinfo(host: Option<&str>, port: Option<&str>, hints: Hints) -> Result<Vec<AddrInfo>, i32> {
    let host_c = match host {
        Some(h) => Some(CString::new(h).map_err(|_| libc::EAI_NONAME)?),
        None => None,
    };
    let port_c = match port {
        Some(p) => Some(CString::new(p).map_err(|_| libc::EAI_SERVICE)?),
        None => None,
    };
    // Safety: an all-zero addrinfo is a valid "no hints" value; we then set four fields.
    let mut h: libc::addrinfo = unsafe { std::mem::zeroed() };
    h.ai_family = hints.family;
    h.ai_socktype = hints.socktype;
    h.ai_protocol = hints.protocol;
    h.ai_flags = hints.flags;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // Safety: valid C strings or null, valid hints, and an out pointer we own.
    let rc = unsafe {
        libc::getaddrinfo(
            host_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            port_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            &h,
            &mut res,
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // Safety: p walks the list getaddrinfo returned, freed only below.
        let ai = unsafe { &*p };
        if !ai.ai_addr.is_null() && ai.ai_addrlen as usize <= std::mem::size_of::<libc::sockaddr_storage>() {
            // Safety: copies ai_addrlen bytes, which fit in the storage (checked above).
            let addr = unsafe {
                SockAddr::try_init(|storage, len| {
                    std::ptr::copy_nonoverlapping(
                        ai.ai_addr.cast::<u8>(),
                        storage.cast::<u8>(),
                        ai.ai_addrlen as usize,
                    );
                    *len = ai.ai_addrlen;
                    Ok(())
                })
            };
            if let Some(endpoint) = addr.ok().and_then(|(_, a)| endpoint(&a)) {
                out.push(AddrInfo {
                    endpoint,
                    socktype: ai.ai_socktype,
                    protocol: ai.ai_protocol,
                });
            }
        }
        p = ai.ai_next;
    }
    // Safety: res came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

/// `gai_strerror` text for logs.
pub fn gai_strerror(code: i32) -> String {
    // Safety: gai_strerror returns a pointer to a static string.
    unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_is_lenient_like_c() {
        assert_eq!(atoi("3301"), 3301);
        assert_eq!(atoi("  42abc"), 42);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi("-1"), -1);
    }

    #[test]
    fn local_resolve_takes_numbers_only() {
        let a = local_resolve("127.0.0.1", "80").expect("ipv4");
        assert_eq!(a.as_socket(), Some("127.0.0.1:80".parse().expect("addr")));
        assert!(local_resolve("::1", "80").is_ok());
        assert_eq!(local_resolve("localhost", "80").err(), Some(libc::EINVAL));
        assert_eq!(local_resolve("nil", "nil").err(), Some(libc::EINVAL));
        let u = local_resolve("unix/", "/tmp/x.sock").expect("unix");
        assert_eq!(
            endpoint(&u),
            Some(Endpoint {
                family: libc::AF_UNIX,
                host: "unix/".into(),
                port: Port::Path("/tmp/x.sock".into())
            })
        );
    }

    #[test]
    fn names_map_both_ways() {
        assert_eq!(lookup(DOMAINS, "AF_INET"), Some(libc::AF_INET));
        assert_eq!(name_of(DOMAINS, libc::AF_INET6), Some("AF_INET6"));
        assert_eq!(protocol_by_name("tcp"), Some(6));
        assert_eq!(protocol_name(17), Some("udp"));
        assert_eq!(protocol_name(0), None);
        assert_eq!(strerror(libc::EADDRINUSE), "Address already in use");
    }

    #[test]
    fn getaddrinfo_resolves_numeric_hosts() {
        let hints = Hints {
            socktype: libc::SOCK_STREAM,
            ..Hints::default()
        };
        let r = getaddrinfo(Some("127.0.0.1"), Some("8080"), hints).expect("resolves");
        assert_eq!(r[0].endpoint.host, "127.0.0.1");
        assert_eq!(r[0].endpoint.port, Port::Number(8080));
    }
}
