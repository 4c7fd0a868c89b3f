//! Module-level functions: `socket(...)`, `getaddrinfo`, `tcp_connect`, `tcp_server` and
//! its accept loop, and `iowait`.

use super::*;

/// `socket(domain, type, protocol)`: a new nonblocking socket, or nil with errno set.
pub(super) fn socket_new(lua: &Lua, domain: &LuaValue, ty: &LuaValue, proto: &LuaValue) -> LuaResult<Option<LuaTable>> {
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
pub(super) async fn resolve(
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

pub(super) fn opt_string(lua: &Lua, v: &LuaValue) -> LuaResult<Option<String>> {
    match v {
        LuaValue::Nil => Ok(None),
        other => lua_tostring(lua, other).map(Some),
    }
}

/// `socket.getaddrinfo(host, port[, timeout][, {type, family, protocol, flags}])`.
pub(super) async fn getaddrinfo(lua: Lua, args: Args) -> LuaResult<Option<LuaTable>> {
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
pub(super) async fn tcp_connect(lua: Lua, args: Args) -> LuaResult<Option<LuaTable>> {
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
pub(super) async fn server_bind(lua: &Lua, sock: &Rc<Sock>, host: &str, port: &str) -> LuaResult<bool> {
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
pub(super) async fn tcp_server(lua: Lua, args: Args) -> LuaResult<LuaMultiValue> {
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
pub(super) fn truncate_name(mut name: String) -> String {
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
pub(super) async fn server_loop(lua: Lua, srv: LuaTable, handler: LuaFunction, name: String) -> LuaResult<()> {
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
pub(super) const HANDLER_WRAPPER: &str = r#"
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

pub(super) const SONAME_MT: &str = r#"
return {
    __tostring = function(si)
        if si.host == nil and si.port == nil then return '' end
        return tostring(si.host or '0') .. ':' .. tostring(si.port or 0)
    end,
}
"#;

pub(super) fn events_arg(v: &LuaValue) -> Option<(u8, bool)> {
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
pub(super) async fn iowait(lua: Lua, args: Args) -> LuaResult<LuaValue> {
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
