//! The methods of a socket object: Tarantool's `socket_mt.__index` plus `__tostring` and
//! `__serialize`. Each takes the socket table as its first argument and checks it the way
//! Tarantool's `check_socket` does.

use super::*;

pub(super) type Args = LuaMultiValue;

pub(super) fn arg(args: &Args, i: usize) -> LuaValue {
    args.get(i).cloned().unwrap_or(LuaValue::Nil)
}

pub(super) fn ok_or_errno<T>(sock: &Sock, r: Result<T, Errno>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            sock.fail(e);
            None
        }
    }
}

pub(super) fn m_close(_: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    Ok(ok_or_errno(&sock, sock.close()).is_some())
}

pub(super) fn m_errno(_: &Lua, args: Args) -> LuaResult<i32> {
    Ok(check_socket(&arg(&args, 0))?.errno.get())
}

pub(super) fn m_error(_: &Lua, args: Args) -> LuaResult<Option<String>> {
    let sock = check_socket(&arg(&args, 0))?;
    Ok(match sock.errno.get() {
        0 => None,
        e => Some(sys::strerror(e)),
    })
}

pub(super) fn m_fd(_: &Lua, args: Args) -> LuaResult<RawFd> {
    let sock = check_socket(&arg(&args, 0))?;
    fd_of(&sock)
}

pub(super) fn resolve_args(lua: &Lua, host: &LuaValue, port: &LuaValue) -> LuaResult<Result<SockAddr, Errno>> {
    Ok(sys::local_resolve(&lua_tostring(lua, host)?, &lua_tostring(lua, port)?))
}

pub(super) fn m_bind(lua: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    let fd = fd_of(&sock)?;
    let r = resolve_args(lua, &arg(&args, 1), &arg(&args, 2))?.and_then(|a| sys::bind(fd, &a));
    Ok(ok_or_errno(&sock, r).is_some())
}

pub(super) fn m_listen(_: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    let backlog = match number_arg(&arg(&args, 1)) {
        Some(n) => n as i32,
        None => DEFAULT_BACKLOG,
    };
    Ok(ok_or_errno(&sock, sys::listen(fd_of(&sock)?, backlog)).is_some())
}

pub(super) fn m_sysconnect(lua: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    let fd = fd_of(&sock)?;
    let r = resolve_args(lua, &arg(&args, 1), &arg(&args, 2))?.and_then(|a| sys::connect(fd, &a));
    Ok(ok_or_errno(&sock, r).is_some())
}

/// Connects and waits for the connection: true, or false with the socket's errno set.
pub(super) async fn connect_wait(
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
pub(super) async fn m_connect(lua: Lua, args: Args) -> LuaResult<Option<bool>> {
    let sock = check_socket(&arg(&args, 0))?;
    let to = resolve_args(&lua, &arg(&args, 1), &arg(&args, 2))?;
    let deadline = deadline_arg(&arg(&args, 3), "connect")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    Ok(connect_wait(&lua, &sock, to, deadline).await?.then_some(true))
}

pub(super) fn m_nonblock(_: &Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    sock.errno.set(0);
    match arg(&args, 1) {
        LuaValue::Nil => {}
        LuaValue::Boolean(false) => sock.nonblock.set(false),
        _ => sock.nonblock.set(true),
    }
    Ok(sock.nonblock.get())
}

pub(super) async fn m_readable(lua: Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    let deadline = deadline_arg(&arg(&args, 1), "readable")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    Ok(do_wait(&lua, &sock, READ, deadline).await? != 0)
}

pub(super) async fn m_writable(lua: Lua, args: Args) -> LuaResult<bool> {
    let sock = check_socket(&arg(&args, 0))?;
    let deadline = deadline_arg(&arg(&args, 1), "writable")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    Ok(do_wait(&lua, &sock, WRITE, deadline).await? != 0)
}

pub(super) fn rw_text(bits: u8) -> &'static str {
    match bits {
        READ => "R",
        WRITE => "W",
        _ => "RW",
    }
}

/// `sock:wait([timeout])`: 'R', 'W' or 'RW', or 0 on timeout.
pub(super) async fn m_wait(lua: Lua, args: Args) -> LuaResult<LuaValue> {
    let sock = check_socket(&arg(&args, 0))?;
    let deadline = deadline_arg(&arg(&args, 1), "wait")?;
    // Lua handles held across a wait would each take a slot of LuaJIT's ref stack.
    drop(args);
    match do_wait(&lua, &sock, READ | WRITE, deadline).await? {
        0 => Ok(LuaValue::Integer(0)),
        bits => lua.create_string(rw_text(bits)).map(LuaValue::String),
    }
}

pub(super) fn m_shutdown(_: &Lua, args: Args) -> LuaResult<bool> {
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
pub(super) fn level_arg(v: &LuaValue) -> Result<i32, Errno> {
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
pub(super) fn option_arg(lua: &Lua, level: i32, name: &LuaValue) -> LuaResult<sys::SockOpt> {
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

pub(super) fn m_setsockopt(lua: &Lua, args: Args) -> LuaResult<bool> {
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

pub(super) fn m_getsockopt(lua: &Lua, args: Args) -> LuaResult<LuaValue> {
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
pub(super) fn m_linger(_: &Lua, args: Args) -> LuaResult<LuaMultiValue> {
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
pub(super) async fn m_accept(lua: Lua, args: Args) -> LuaResult<LuaMultiValue> {
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

pub(super) fn data_arg(v: &LuaValue, method: &str) -> LuaResult<LuaString> {
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
pub(super) async fn m_syswrite(lua: Lua, args: Args) -> LuaResult<Option<usize>> {
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
pub(super) async fn m_sysread(lua: Lua, args: Args) -> LuaResult<Option<LuaString>> {
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
pub(super) enum Until {
    Limit,
    Delimiters(Vec<Vec<u8>>),
}

pub(super) fn read_opts(lua: &Lua, v: &LuaValue) -> LuaResult<(f64, Until)> {
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
pub(super) fn ready_len(buf: &[u8], limit: usize, until: &Until) -> Option<usize> {
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

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `sock:read(limit | delimiter | {chunk=, delimiter=}, [timeout])`: buffered read that
/// waits for `limit` bytes or a delimiter; at EOF it returns what is left (possibly "").
pub(super) async fn m_read(lua: Lua, args: Args) -> LuaResult<Option<LuaString>> {
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
pub(super) async fn m_write(lua: Lua, args: Args) -> LuaResult<Option<usize>> {
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
pub(super) async fn m_send(lua: Lua, args: Args) -> LuaResult<Option<usize>> {
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
pub(super) fn recv_size(sock: &Sock, size: Option<f64>) -> LuaResult<Result<usize, Errno>> {
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
pub(super) async fn m_recv(lua: Lua, args: Args) -> LuaResult<Option<LuaString>> {
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
pub(super) async fn m_recvfrom(lua: Lua, args: Args) -> LuaResult<LuaMultiValue> {
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
pub(super) async fn m_sendto(lua: Lua, args: Args) -> LuaResult<LuaValue> {
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

pub(super) fn m_name(lua: &Lua, args: Args) -> LuaResult<LuaValue> {
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

pub(super) fn m_peer(lua: &Lua, args: Args) -> LuaResult<LuaValue> {
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
pub(super) fn describe(sock: &Sock) -> LuaResult<String> {
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

pub(super) fn m_tostring(_: &Lua, args: Args) -> LuaResult<String> {
    let sock = check_socket(&arg(&args, 0))?;
    describe(&sock)
}

/// `__serialize`: `{fd, name, peer}`, so YAML/JSON can print a socket.
pub(super) fn m_serialize(lua: &Lua, args: Args) -> LuaResult<LuaTable> {
    let sock = check_socket(&arg(&args, 0))?;
    let saved = sock.errno.get();
    let t = lua.create_table()?;
    t.set("fd", fd_of(&sock)?)?;
    t.set("name", m_name(lua, args.clone())?)?;
    t.set("peer", m_peer(lua, args)?)?;
    sock.errno.set(saved);
    Ok(t)
}
