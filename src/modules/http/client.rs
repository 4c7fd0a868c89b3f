//! The Rust half of `http.client`: requests through hyper-util's pooled client.
//!
//! Option handling, `params` encoding, `decode()` and cookies are Lua
//! (`lua/http_client.lua`); this file sends one request (following redirects), as an async
//! call that yields the calling fiber. Transport failures come back as Tarantool's (curl's)
//! statuses: 408 "Timeout was reached", 595 for connection problems.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use mlua::prelude::*;

use crate::runtime::fiber;

/// curl's default redirect limit.
const MAX_REDIRECTS: usize = 30;

/// Headers Tarantool's client never joins (its `special_headers`).
const SINGLE_VALUED: &[&str] = &[
    "age",
    "authorization",
    "content-length",
    "content-type",
    "etag",
    "expires",
    "from",
    "host",
    "if-modified-since",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "proxy-authorization",
    "referer",
    "retry-after",
    "user-agent",
];

/// One `http.client.new{}` instance: a connection pool.
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

struct Outcome {
    status: u16,
    reason: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
    url: String,
}

/// A transport failure: Tarantool's status and curl's message.
struct Failure(u16, String);

fn failure(status: u16, msg: &str) -> Failure {
    Failure(status, msg.to_owned())
}

/// Maps a hyper-util error to curl's wording, which Tarantool returns as `reason`.
fn classify(e: &hyper_util::client::legacy::Error) -> Failure {
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = src {
        chain.push_str(&s.to_string());
        chain.push_str(": ");
        src = s.source();
    }
    if e.is_connect() {
        if chain.contains("dns error") {
            return failure(595, "Couldn't resolve host name");
        }
        return failure(595, "Couldn't connect to server");
    }
    if chain.contains("connection closed before message completed") {
        return failure(595, "Server returned nothing (no headers, no status code)");
    }
    failure(595, chain.trim_end_matches(": "))
}

/// Resolves a Location header against the URI it answered.
fn resolve(base: &Uri, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
    format!("{scheme}://{authority}{dir}{location}")
}

struct Params {
    method: Method,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    follow: bool,
}

async fn perform(client: Client<HttpConnector, Full<Bytes>>, p: Params) -> Result<Outcome, Failure> {
    let Params {
        mut method,
        mut url,
        headers,
        mut body,
        follow,
    } = p;
    for _ in 0..=MAX_REDIRECTS {
        let uri: Uri = url
            .parse()
            .map_err(|_| failure(595, "URL using bad/illegal format or missing URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            None => return Err(failure(595, "URL using bad/illegal format or missing URL")),
            Some(_) => return Err(failure(595, "Unsupported protocol")),
        }
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .body(Full::new(body.clone()))
            .map_err(|e| Failure(595, e.to_string()))?;
        for (k, v) in &headers {
            req.headers_mut().append(k.clone(), v.clone());
        }
        let resp = client.request(req).await.map_err(|e| classify(&e))?;
        let status = resp.status();
        if follow && status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            if let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
                url = resolve(&uri, loc);
                // curl's rules: 303 always becomes GET, 301/302 turn a POST into a GET.
                let to_get = status == StatusCode::SEE_OTHER
                    || (method == Method::POST
                        && (status == StatusCode::MOVED_PERMANENTLY || status == StatusCode::FOUND));
                if to_get && method != Method::HEAD {
                    method = Method::GET;
                    body = Bytes::new();
                }
                continue;
            }
        }
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(str::to_owned))
            .unwrap_or_default();
        let headers: Vec<(String, Vec<u8>)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| failure(595, "Failure when receiving data from the peer"))?
            .to_bytes();
        return Ok(Outcome {
            status: status.as_u16(),
            reason,
            headers,
            body,
            url,
        });
    }
    Err(failure(595, "Number of redirects hit maximum amount"))
}

fn outcome_table(lua: &Lua, r: Result<Outcome, Failure>) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    match r {
        Ok(o) => {
            t.set("status", o.status)?;
            t.set("reason", o.reason)?;
            t.set("proto", lua.create_sequence_from([1, 1])?)?;
            t.set("url", o.url)?;
            let headers = lua.create_table()?;
            let cookies = lua.create_table()?;
            for (k, v) in o.headers {
                if k == SET_COOKIE.as_str() {
                    cookies.push(lua.create_string(&v)?)?;
                }
                // Repeated headers join with ',' as in Tarantool, except the ones whose
                // values can't be lists: those keep their first value.
                match headers.raw_get::<Option<LuaString>>(k.as_str())? {
                    Some(_) if SINGLE_VALUED.contains(&k.as_str()) => {}
                    Some(prev) => {
                        let mut joined = prev.as_bytes().to_vec();
                        joined.push(b',');
                        joined.extend_from_slice(&v);
                        headers.raw_set(k, lua.create_string(&joined)?)?;
                    }
                    None => headers.raw_set(k, lua.create_string(&v)?)?,
                }
            }
            t.set("headers", headers)?;
            t.set("set_cookies", cookies)?;
            t.set("body", lua.create_string(&o.body)?)?;
        }
        Err(Failure(status, msg)) => {
            t.set("status", status)?;
            t.set("reason", msg.as_str())?;
            t.set("errmsg", msg)?;
        }
    }
    Ok(t)
}

type RequestArgs = (String, String, Option<LuaString>, Option<LuaTable>, Option<f64>, bool);

impl LuaUserData for HttpClient {
    fn add_methods<M: LuaUserDataMethods<Self>>(m: &mut M) {
        // request(method, url, body, headers, timeout, follow_location) → response table.
        m.add_async_method(
            "request",
            |lua, this, (method, url, body, headers, timeout, follow): RequestArgs| {
                let client = this.inner.clone();
                drop(this);
                async move {
                    let method = Method::from_bytes(method.as_bytes())
                        .map_err(|_| LuaError::runtime(format!("invalid HTTP method '{method}'")))?;
                    let mut hv = Vec::new();
                    if let Some(h) = headers {
                        for pair in h.pairs::<LuaString, LuaString>() {
                            let (k, v) = pair?;
                            let name = HeaderName::from_bytes(&k.as_bytes()).map_err(|_| {
                                LuaError::runtime(format!("invalid header name '{}'", k.to_string_lossy()))
                            })?;
                            let value = HeaderValue::from_bytes(&v.as_bytes()).map_err(|_| {
                                LuaError::runtime(format!("invalid value of header '{}'", k.to_string_lossy()))
                            })?;
                            hv.push((name, value));
                        }
                    }
                    let body = body.map(|b| Bytes::copy_from_slice(&b.as_bytes())).unwrap_or_default();
                    let params = Params {
                        method,
                        url,
                        headers: hv,
                        body,
                        follow,
                    };
                    let work = perform(client, params);
                    let result = match timeout.filter(|t| t.is_finite() && *t >= 0.0) {
                        Some(secs) => {
                            let limit = fiber::duration_from_secs(secs);
                            match fiber::cancellable(&lua, tokio::time::timeout(limit, work)).await? {
                                Ok(r) => r,
                                Err(_) => Err(failure(408, "Timeout was reached")),
                            }
                        }
                        None => fiber::cancellable(&lua, work).await?,
                    };
                    outcome_table(&lua, result)
                }
            },
        );
    }
}

/// `internal.new(max_connections, keepalive_idle)`: a client with its own pool.
fn new_client(_: &Lua, (max_connections, keepalive_idle): (Option<usize>, Option<f64>)) -> LuaResult<HttpClient> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    if let Some(idle) = keepalive_idle.filter(|s| *s > 0.0) {
        connector.set_keepalive(Some(fiber::duration_from_secs(idle)));
    }
    // Pool connections die after a while idle, as curl's do, so a restarted server on
    // the same port is not hit through a stale socket for long.
    let inner = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(max_connections.unwrap_or(usize::MAX))
        .build(connector);
    Ok(HttpClient { inner })
}

/// `require('http.client')`.
pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let internal = lua.create_table()?;
    internal.set("new", lua.create_function(new_client)?)?;
    lua.load(include_str!("../../../lua/http_client.lua"))
        .set_name("@builtin/http/client.lua")
        .call(internal)
}
