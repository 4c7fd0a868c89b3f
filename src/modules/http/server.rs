//! The Rust half of `http.server`: a hyper 1.x HTTP/1.1 listener on the Lua thread.
//!
//! Rust owns sockets, parsing (hyper), limits and keep-alive; routing, request objects,
//! hooks, rendering and error pages are Lua (`lua/http_server.lua`), as in tarantool/http.
//! Each request's Lua dispatcher runs in its own fiber, so handlers may sleep and many
//! slow handlers run concurrently; hyper's service future only waits for the reply.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mlua::prelude::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::modules::log::{self, Level};
use crate::runtime::fiber;

type Resp = Response<Either<Full<Bytes>, ChunkBody>>;

/// A response body fed chunk by chunk from the handler's fiber (`iterate` and generator
/// bodies are streamed with chunked encoding, as tarantool/http does). The channel is
/// bounded, so a slow client makes `writer:write` wait instead of buffering without limit.
pub struct ChunkBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // An Err aborts the connection: a generator that failed midway must not look like
        // a complete body.
        self.0.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// The Lua side of a [`ChunkBody`].
struct ChunkWriter(RefCell<Option<mpsc::Sender<Result<Bytes, std::io::Error>>>>);

impl LuaUserData for ChunkWriter {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        // writer:write(chunk) → false once the client is gone.
        m.add_async_method("write", |lua, this, chunk: LuaString| {
            let tx = this.0.borrow().clone();
            let data = Bytes::copy_from_slice(&chunk.as_bytes());
            drop(this);
            async move {
                let Some(tx) = tx else { return Ok(false) };
                Ok(fiber::cancellable(&lua, tx.send(Ok(data))).await?.is_ok())
            }
        });
        m.add_method("close", |_, this, ()| {
            this.0.borrow_mut().take();
            Ok(())
        });
        m.add_method("abort", |_, this, ()| {
            if let Some(tx) = this.0.borrow_mut().take() {
                let _ = tx.try_send(Err(std::io::Error::other("response generator failed")));
            }
            Ok(())
        });
    }
}

/// Requests handed to Lua and not answered yet, by the id Lua replies with. One Lua
/// function (`internal.reply`) serves every request, so dispatching creates no closure;
/// the generation in the id's high half keeps a stale id from answering a reused slot.
#[derive(Default)]
struct Pending {
    slots: Vec<(u32, Option<oneshot::Sender<Resp>>)>,
    free: Vec<u32>,
}

impl Pending {
    fn insert(&mut self, tx: oneshot::Sender<Resp>) -> i64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.1 = Some(tx);
        ((slot.0 as i64) << 32) | index as i64
    }

    fn take(&mut self, id: i64) -> Option<oneshot::Sender<Resp>> {
        let (gen, index) = ((id >> 32) as u32, id as u32);
        let slot = self.slots.get_mut(index as usize)?;
        if slot.0 != gen || slot.1.is_none() {
            return None;
        }
        slot.0 = slot.0.wrapping_add(1);
        self.free.push(index);
        slot.1.take()
    }
}

/// Per-server settings and the Lua dispatcher, shared by its connections.
struct Shared {
    lua: mlua::WeakLua,
    dispatch: LuaRegistryKey,
    pending: Rc<RefCell<Pending>>,
    max_header_size: usize,
    max_body_size: usize,
}

/// The listening socket of a started server (`httpd.tcp_server`).
pub struct HttpListener {
    // Taken (and so closed) by `close`, synchronously: the port is free the moment
    // `httpd:stop()` returns, so the same fiber may bind it again at once.
    listener: Rc<RefCell<Option<TcpListener>>>,
    stop: Rc<Notify>,
    // Tells open keep-alive connections to finish their request and close, so a stopped
    // server stops answering on its old port.
    closing: tokio::sync::watch::Sender<bool>,
    addr: SocketAddr,
}

impl LuaUserData for HttpListener {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        m.add_method("close", |_, this, ()| {
            let had = this.listener.borrow_mut().take().is_some();
            this.stop.notify_one();
            let _ = this.closing.send(true);
            Ok(had)
        });
        m.add_method("name", |lua, this, ()| {
            let t = lua.create_table()?;
            t.set("host", this.addr.ip().to_string())?;
            t.set("port", this.addr.port())?;
            t.set("family", if this.addr.is_ipv4() { "AF_INET" } else { "AF_INET6" })?;
            t.set("type", "SOCK_STREAM")?;
            t.set("protocol", "tcp")?;
            Ok(t)
        });
    }
}

/// The C library's text for an errno value (Tarantool's messages use strerror).
fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            // SAFETY: strerror returns a pointer to a static or thread-local string.
            let p = unsafe { libc::strerror(code) };
            if p.is_null() {
                return e.to_string();
            }
            unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
        None => e.to_string(),
    }
}

fn bind(host: &str, port: u16) -> std::io::Result<std::net::TcpListener> {
    let mut last = std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
    for addr in (host, port).to_socket_addrs()? {
        // std sets SO_REUSEADDR on Unix, so a port with TIME_WAIT leftovers binds again.
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `internal.listen(host, port, opts, dispatch)` → listener, or nil and strerror text.
/// `dispatch(id, method, path, query, proto_major, proto_minor, headers, peer_host, peer_port,
/// peer_is_ipv4, body)` is called in a new fiber per request; it answers with
/// `internal.reply(id, ...)`.
fn listen(
    lua: &Lua,
    pending: &Rc<RefCell<Pending>>,
    (host, port, opts, dispatch): (String, u16, LuaTable, LuaFunction),
) -> LuaResult<LuaMultiValue> {
    let std_listener = match bind(&host, port).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
        Ok(l) => l,
        Err(e) => return (LuaValue::Nil, strerror(&e)).into_lua_multi(lua),
    };
    let addr = std_listener.local_addr().map_err(LuaError::external)?;
    let listener = TcpListener::from_std(std_listener).map_err(LuaError::external)?;
    let max_header_size = opts.get::<Option<usize>>("max_header_size")?.unwrap_or(4096);
    let max_body_size = opts.get::<Option<usize>>("max_body_size")?.unwrap_or(1 << 20);
    let mut header_timeout = opts.get::<Option<f64>>("header_timeout")?.unwrap_or(100.0);
    // hyper's header timer also runs while a keep-alive connection waits for its next
    // request, so it is tarantool/http's `idle_timeout` too.
    let idle_timeout = opts.get::<Option<f64>>("idle_timeout")?.unwrap_or(0.0);
    if idle_timeout > 0.0 && idle_timeout < header_timeout {
        header_timeout = idle_timeout;
    }
    let shared = Rc::new(Shared {
        lua: lua.weak(),
        dispatch: lua.create_registry_value(dispatch)?,
        pending: pending.clone(),
        max_header_size,
        max_body_size,
    });
    let cell = Rc::new(RefCell::new(Some(listener)));
    let stop = Rc::new(Notify::new());
    let sched = fiber::scheduler(lua);
    // A running server keeps the process alive, like a Tarantool listener.
    sched.pin();
    let header_timeout = fiber::duration_from_secs(header_timeout);
    let (closing, closed) = tokio::sync::watch::channel(false);
    tokio::task::spawn_local(accept_loop(
        cell.clone(),
        stop.clone(),
        closed,
        shared,
        header_timeout,
        sched,
    ));
    let l = HttpListener {
        listener: cell,
        stop,
        closing,
        addr,
    };
    (l, LuaValue::Nil).into_lua_multi(lua)
}

async fn accept_loop(
    cell: Rc<RefCell<Option<TcpListener>>>,
    stop: Rc<Notify>,
    closed: tokio::sync::watch::Receiver<bool>,
    shared: Rc<Shared>,
    header_timeout: Duration,
    sched: Rc<fiber::Scheduler>,
) {
    loop {
        // The borrow lives only inside one poll, never across an await.
        let accept = std::future::poll_fn(|cx| match &*cell.borrow() {
            Some(l) => l.poll_accept(cx).map(Some),
            None => Poll::Ready(None),
        });
        let accepted = tokio::select! {
            _ = stop.notified() => break,
            r = accept => r,
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                let _ = stream.set_nodelay(true);
                let sh = shared.clone();
                // The peer's text form is made once per connection, not per request.
                let peer = Rc::new(Peer {
                    host: peer.ip().to_string(),
                    port: peer.port(),
                    ipv4: peer.is_ipv4(),
                });
                let svc = service_fn(move |req| handle(sh.clone(), peer.clone(), req));
                let mut builder = http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    // hyper refuses buffers under 8 KiB; the exact limit is checked in `handle`.
                    .max_buf_size(shared.max_header_size.max(8192) + 1024);
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                let mut closed = closed.clone();
                tokio::task::spawn_local(async move {
                    // Connection errors (resets, timeouts) end that connection only.
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = closed.wait_for(|c| *c) => {}
                    }
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                });
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                if let Some(lua) = shared.lua.try_upgrade() {
                    log::write(&lua, Level::Error, &format!("http: accept failed: {}", strerror(&e)));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    sched.unpin();
}

fn simple(status: StatusCode, body: &str) -> Resp {
    let mut r = Response::new(Either::Left(Full::new(Bytes::from(body.to_owned()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The client end of a connection, as `req.peer` shows it.
struct Peer {
    host: String,
    port: u16,
    ipv4: bool,
}

/// The request target's length as sent: origin-form targets are their path and query,
/// which needs no allocation; other forms are rare.
fn target_len(uri: &hyper::Uri) -> usize {
    match (uri.scheme(), uri.authority(), uri.path_and_query()) {
        (None, None, Some(pq)) => pq.as_str().len(),
        _ => uri.to_string().len(),
    }
}

async fn handle(sh: Rc<Shared>, peer: Rc<Peer>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let header_size: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + parts.method.as_str().len()
        + target_len(&parts.uri)
        + 12;
    if header_size > sh.max_header_size {
        return Ok(simple(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large",
        ));
    }
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > sh.max_body_size as u64) {
        return Ok(simple(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"));
    }
    let body = if hyper::body::Body::is_end_stream(&body) {
        Bytes::new()
    } else {
        match Limited::new(body, sh.max_body_size).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Ok(simple(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"));
            }
            Err(_) => return Ok(simple(StatusCode::BAD_REQUEST, "Bad Request")),
        }
    };
    let Some(lua) = sh.lua.try_upgrade() else {
        return Ok(simple(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"));
    };
    let (tx, rx) = oneshot::channel();
    if let Err(e) = dispatch(&lua, &sh, &parts, &peer, body, tx) {
        log::write(&lua, Level::Error, &format!("http: can't dispatch a request: {e}"));
        return Ok(simple(StatusCode::INTERNAL_SERVER_ERROR, "Internal Error"));
    }
    drop(lua);
    match rx.await {
        Ok(resp) => Ok(resp),
        // The handler fiber died without replying (cancelled, or the reply failed).
        Err(_) => Ok(simple(StatusCode::INTERNAL_SERVER_ERROR, "Internal Error")),
    }
}

/// Starts the dispatcher fiber. The request goes as plain arguments (Lua builds the
/// request table with constructors, which is cheaper than filling it field by field here).
fn dispatch(
    lua: &Lua,
    sh: &Shared,
    parts: &hyper::http::request::Parts,
    peer: &Peer,
    body: Bytes,
    tx: oneshot::Sender<Resp>,
) -> LuaResult<()> {
    let (maj, min) = match parts.version {
        hyper::Version::HTTP_10 => (1, 0),
        hyper::Version::HTTP_09 => (0, 9),
        _ => (1, 1),
    };
    let headers = lua.create_table_with_capacity(0, parts.headers.keys_len())?;
    for name in parts.headers.keys() {
        // hyper's names are lower-case already; repeated headers join with ',' as in
        // tarantool/http.
        let mut values = parts.headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        match values.next() {
            None => headers.raw_set(name.as_str(), lua.create_string(first.as_bytes())?)?,
            Some(second) => {
                let mut joined = first.as_bytes().to_vec();
                for v in std::iter::once(second).chain(values) {
                    joined.push(b',');
                    joined.extend_from_slice(v.as_bytes());
                }
                headers.raw_set(name.as_str(), lua.create_string(&joined)?)?;
            }
        }
    }
    let id = sh.pending.borrow_mut().insert(tx);
    let func: LuaFunction = lua.registry_value(&sh.dispatch)?;
    let args = LuaMultiValue::from_iter([
        LuaValue::Integer(id),
        LuaValue::String(lua.create_string(parts.method.as_str())?),
        LuaValue::String(lua.create_string(parts.uri.path())?),
        LuaValue::String(lua.create_string(parts.uri.query().unwrap_or(""))?),
        LuaValue::Integer(maj),
        LuaValue::Integer(min),
        LuaValue::Table(headers),
        LuaValue::String(lua.create_string(&peer.host)?),
        LuaValue::Integer(peer.port.into()),
        LuaValue::Boolean(peer.ipv4),
        LuaValue::String(lua.create_string(&body)?),
    ]);
    if let Err(e) = fiber::spawn(lua, "http", func, args, fiber::Start::Deferred) {
        sh.pending.borrow_mut().take(id);
        return Err(e);
    }
    Ok(())
}

type ReplyArgs = (i64, Option<u16>, Option<LuaTable>, Option<LuaString>, Option<bool>);

/// `internal.reply(id, status, headers, body)` sends a whole response;
/// `reply(id, status, headers, nil, true)` starts a streamed one and returns its writer;
/// `reply(id)` drops the request (the client gets a 500), for a dispatcher that failed.
fn reply(
    lua: &Lua,
    pending: &RefCell<Pending>,
    (id, status, headers, body, stream): ReplyArgs,
) -> LuaResult<LuaMultiValue> {
    let Some(status) = status else {
        pending.borrow_mut().take(id);
        return true.into_lua_multi(lua);
    };
    let (payload, writer) = if stream == Some(true) {
        let (ctx, crx) = mpsc::channel(16);
        (
            Either::Right(ChunkBody(crx)),
            Some(ChunkWriter(RefCell::new(Some(ctx)))),
        )
    } else {
        let data = body.map(|b| Bytes::copy_from_slice(&b.as_bytes())).unwrap_or_default();
        (Either::Left(Full::new(data)), None)
    };
    let resp = match build_response(status, headers, payload) {
        Ok(r) => r,
        // The request stays pending: the caller answers it again (with a 500).
        Err(e) => return (false, e).into_lua_multi(lua),
    };
    if let Some(tx) = pending.borrow_mut().take(id) {
        // The client may be gone; the response is simply dropped then.
        let _ = tx.send(resp);
    }
    match writer {
        Some(w) => (true, w).into_lua_multi(lua),
        None => true.into_lua_multi(lua),
    }
}

fn build_response(
    status: u16,
    headers: Option<LuaTable>,
    body: Either<Full<Bytes>, ChunkBody>,
) -> Result<Resp, String> {
    let status = StatusCode::from_u16(status).map_err(|_| format!("invalid HTTP status {status}"))?;
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let Some(headers) = headers else { return Ok(r) };
    let out = r.headers_mut();
    for pair in headers.pairs::<LuaString, LuaValue>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let name = HeaderName::from_bytes(&k.as_bytes())
            .map_err(|_| format!("invalid header name {:?}", k.to_string_lossy()))?;
        let mut add = |v: &LuaValue| -> Result<(), String> {
            let value = match v {
                LuaValue::String(s) => HeaderValue::from_bytes(&s.as_bytes()),
                LuaValue::Integer(i) => HeaderValue::from_str(&i.to_string()),
                LuaValue::Number(n) => HeaderValue::from_str(&n.to_string()),
                LuaValue::Boolean(b) => HeaderValue::from_str(if *b { "true" } else { "false" }),
                _ => return Err(format!("invalid value of header {}", name.as_str())),
            }
            .map_err(|_| format!("invalid value of header {}", name.as_str()))?;
            out.append(name.clone(), value);
            Ok(())
        };
        match &v {
            // A list gives repeated headers (several set-cookie lines).
            LuaValue::Table(list) => {
                for item in list.sequence_values::<LuaValue>() {
                    add(&item.map_err(|e| e.to_string())?)?;
                }
            }
            other => add(other)?,
        }
    }
    Ok(r)
}

/// The Rust API `lua/http_server.lua` builds on.
pub fn internal(lua: &Lua) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    let pending = Rc::new(RefCell::new(Pending::default()));
    let p = pending.clone();
    t.set("listen", lua.create_function(move |lua, args| listen(lua, &p, args))?)?;
    t.set(
        "reply",
        lua.create_function(move |lua, args| reply(lua, &pending, args))?,
    )?;
    Ok(t)
}

/// `require('http.server')`.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let internal = internal(lua)?;
    lua.load(include_str!("../../../lua/http_server.lua"))
        .set_name("@builtin/http/server.lua")
        .call(internal)
}
