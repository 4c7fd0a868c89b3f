//! The applier: one per URI of `box.cfg.replication`, the replica's end of a connection to
//! an upstream (Tarantool 2.6's `applier.cc`, paraphrased).
//!
//! Each applier is a fiber named `applier/<peer>` that connects, reads the greeting, asks for
//! the peer's ballot (VOTE), authenticates if the URI has a login, then either joins (only
//! while this instance bootstraps from that peer) or subscribes and applies what the peer
//! streams: transactions (rows grouped by tsn up to the commit flag) through
//! [`apply_transaction`], heartbeats, and RAFT rows (to the [`hub`]). An ACK with the
//! vclock this instance has written goes back after each WAL write and at least every
//! `replication_timeout`.
//!
//! While `box.cfg{}` decides how to bootstrap, appliers stop at CONNECTED and wait for
//! their [`Gate`]: the one chosen to bootstrap from is told to join, the others to wait,
//! and all are let through to subscribe once box runs. After that a reconnect goes straight
//! on to subscribe.
//!
//! Errors decide what comes next as in `applier_f`: a socket error, a timeout (4 ×
//! `replication_timeout` of silence) or garbage from the peer disconnect and retry every
//! `replication_timeout`; "loading", access and configuration errors too (state `loading`);
//! a connection to the instance itself ends the applier quietly (state `off`); anything else
//! (a conflict applying a row) stops it with the error shown in `box.info.replication`.
//! Each kind of error is logged once until the next successful subscribe.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlua::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use uuid::Uuid;

use super::bootstrap::Joining;
use super::replica_proto::{self as proto, Ballot, Subscribe, IPROTO_OK, IPROTO_TYPE_ERROR};
use super::{cfg, hub, replicaset};
use crate::box_::apply::{self, Applied};
use crate::box_::errcode::*;
use crate::box_::error::ClientError;
use crate::box_::lua as box_lua;
use crate::box_::schema::ADMIN;
use crate::box_::session::{self, Session, SessionKind};
use crate::box_::status;
use crate::box_::wal::row::{Row, RowRef};
use crate::box_::wal::vclock::{Vclock, VCLOCK_MAX};
use crate::client_error;
use crate::iproto::codec::{self, GREETING_SIZE, PACKET_SIZE_MAX};
use crate::modules::log::{self, Level};
use crate::netbox::transport::{self, BoxedRead, BoxedWrite};
use crate::netbox::uri::{self, Uri, UNIX_HOST};
use crate::runtime::fiber::{self, Fiber};

/// RAFT rows (Tarantool 2.6.1+): election state, handed to the hub.
const IPROTO_RAFT: u32 = 30;

/// Reads take at least this much buffer room. Nothing special in this value: rows are small,
/// a join's snapshot streams through many reads anyway.
const READ_CHUNK: usize = 64 * 1024;

/// `lag` before the first row after a subscribe (Tarantool's TIMEOUT_INFINITY).
const LAG_UNKNOWN: f64 = 100.0 * 365.0 * 86400.0;

/// Tarantool's applier states (`applier.h`); `box.info` shows their names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Off,
    Connect,
    Connected,
    Auth,
    Ready,
    InitialJoin,
    FinalJoin,
    Joined,
    Sync,
    Follow,
    Stopped,
    Disconnected,
    Loading,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Off => "off",
            State::Connect => "connect",
            State::Connected => "connected",
            State::Auth => "auth",
            State::Ready => "ready",
            State::InitialJoin => "initial_join",
            State::FinalJoin => "final_join",
            State::Joined => "joined",
            State::Sync => "sync",
            State::Follow => "follow",
            State::Stopped => "stopped",
            State::Disconnected => "disconnected",
            State::Loading => "loading",
        }
    }

    /// Holding a live connection to the peer (connected up to following).
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            State::Connected
                | State::Auth
                | State::Ready
                | State::InitialJoin
                | State::FinalJoin
                | State::Joined
                | State::Sync
                | State::Follow
        )
    }
}

/// What an applier does once connected while box.cfg bootstraps.
#[derive(Clone)]
pub enum Gate {
    /// Wait here (connected, paused).
    Hold,
    /// Join: the snapshot and the final rows go to the target.
    Join(Rc<Joining>),
    /// Go on to subscribe (box is running).
    Proceed,
}

/// Why a connection ended, which decides what the applier does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The socket failed, closed, or went silent: disconnected, reconnect.
    Socket(String),
    /// The peer sent what cannot be decoded: counted, disconnected, reconnect.
    Garbage(String),
    /// An error the peer answered with, or a rule of the exchange broken.
    Client(ClientError),
    /// The URI leads to this very instance.
    ToSelf,
    /// The applier is being stopped (replication reconfigured).
    Cancelled,
}

impl Failure {
    /// The state the applier is left in; reconnects follow all but `Off` and `Stopped`.
    fn next_state(&self) -> State {
        match self {
            Failure::Socket(_) | Failure::Garbage(_) => State::Disconnected,
            Failure::ToSelf | Failure::Cancelled => State::Off,
            Failure::Client(e) => match e.code {
                ER_LOADING | ER_CFG | ER_ACCESS_DENIED | ER_NO_SUCH_USER | ER_PASSWORD_MISMATCH => State::Loading,
                // Synchronous transactions rolled back under a joining replica (2.6's codes).
                ER_SYNC_QUORUM_TIMEOUT | ER_SYNC_ROLLBACK => State::Loading,
                ER_SYSTEM => State::Disconnected,
                // The peer lacks xlogs we need (it joined after them). 2.6.0 stops here,
                // leaving a full mesh with one link dead for good: the rows come from
                // another peer meanwhile, so node retries, as later Tarantool versions do.
                // 2.6.0 sends the gap as a Lua error; newer ones as ER_XLOG_GAP.
                ER_XLOG_GAP => State::Loading,
                ER_PROC_LUA if e.message.starts_with("Missing .xlog file") => State::Loading,
                _ => State::Stopped,
            },
        }
    }

    /// The code logging deduplicates by (`box_error_code`: system errors are ER_SYSTEM).
    fn code(&self) -> u32 {
        match self {
            Failure::Socket(_) => ER_SYSTEM,
            Failure::Garbage(_) => ER_INVALID_MSGPACK,
            Failure::Client(e) => e.code,
            Failure::ToSelf => ER_CONNECTION_TO_SELF,
            Failure::Cancelled => ER_UNKNOWN,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Socket(m) | Failure::Garbage(m) => m.clone(),
            Failure::Client(e) => e.message.clone(),
            Failure::ToSelf => client_error!(ER_CONNECTION_TO_SELF).message,
            Failure::Cancelled => "fiber is cancelled".into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Client(e)
    }
}

/// One upstream: what `box.info.replication[id].upstream` shows, and the fiber's controls.
pub struct Applier {
    /// The URI as configured.
    pub source: String,
    /// The URI as Tarantool's `uri_format` prints it without the password.
    pub peer: String,
    uri: Uri,
    state: Cell<State>,
    counted_state: Cell<State>,
    /// The peer's instance UUID, from its greeting.
    uuid: Cell<Option<Uuid>>,
    ballot: Cell<Option<Ballot>>,
    version_id: Cell<u32>,
    /// Where the peer was reached (`host:port`, a socket path), for logs.
    address: RefCell<String>,
    /// The peer's instance id, from the SUBSCRIBE answer (0 before).
    remote_id: Cell<u32>,
    last_row_time: Cell<Instant>,
    lag: Cell<f64>,
    /// The error that ended the last connection (`upstream.message`).
    message: RefCell<Option<String>>,
    last_logged: Cell<Option<u32>>,
    gate: RefCell<Gate>,
    gate_changed: Notify,
    /// Reached CONNECTED at least once (box.cfg's connect phase counts these).
    was_connected: Cell<bool>,
    /// The URI leads to this instance.
    is_self: Cell<bool>,
    remote_vclock_at_subscribe: Cell<Vclock>,
    fiber: RefCell<Option<Rc<Fiber>>>,
    /// The fiber ended: stopped by an error, cancelled, or connected to itself.
    finished: Cell<bool>,
    /// Packets from this peer that could not be decoded.
    pub garbage: Cell<u64>,
}

/// `uri_format(uri, false)`: `login@host:service`, nothing for a bare port (as 2.6 prints it).
fn format_peer(u: &Uri) -> String {
    let Some(host) = u.host.as_deref() else {
        return String::new();
    };
    let mut s = String::new();
    if let Some(login) = u.login.as_deref().filter(|l| !l.is_empty()) {
        s.push_str(login);
        s.push('@');
    }
    s.push_str(host);
    if let Some(service) = u.service.as_deref().filter(|s| !s.is_empty()) {
        s.push(':');
        s.push_str(service);
    }
    s
}

impl Applier {
    /// An applier for `source` (checked by box.cfg already); None if it does not parse.
    pub fn new(source: &str) -> Option<Rc<Applier>> {
        let uri = uri::parse(source)?;
        Some(Rc::new(Applier {
            source: source.to_string(),
            peer: format_peer(&uri),
            uri,
            state: Cell::new(State::Off),
            counted_state: Cell::new(State::Disconnected),
            uuid: Cell::new(None),
            ballot: Cell::new(None),
            version_id: Cell::new(0),
            address: RefCell::new(String::new()),
            remote_id: Cell::new(0),
            last_row_time: Cell::new(Instant::now()),
            lag: Cell::new(0.0),
            message: RefCell::new(None),
            last_logged: Cell::new(None),
            gate: RefCell::new(Gate::Hold),
            gate_changed: Notify::new(),
            was_connected: Cell::new(false),
            is_self: Cell::new(false),
            remote_vclock_at_subscribe: Cell::new(Vclock::new()),
            fiber: RefCell::new(None),
            finished: Cell::new(false),
            garbage: Cell::new(0),
        }))
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    pub fn uuid(&self) -> Option<Uuid> {
        self.uuid.get()
    }

    pub fn ballot(&self) -> Option<Ballot> {
        self.ballot.get()
    }

    pub fn was_connected(&self) -> bool {
        self.was_connected.get()
    }

    pub fn is_self(&self) -> bool {
        self.is_self.get()
    }

    /// The fiber ended for good (stopped, cancelled, or found to be this instance).
    pub fn is_finished(&self) -> bool {
        self.finished.get()
    }

    /// Where the peer was last reached.
    pub fn address(&self) -> String {
        self.address.borrow().clone()
    }

    pub fn message(&self) -> Option<String> {
        self.message.borrow().clone()
    }

    /// Seconds since the last row or heartbeat.
    pub fn idle(&self) -> f64 {
        self.last_row_time.get().elapsed().as_secs_f64()
    }

    /// Seconds between the last row's timestamp and its arrival.
    pub fn lag(&self) -> f64 {
        self.lag.get()
    }

    /// Started and not stopped (`applier->reader`, even once it ended with an error):
    /// box.info shows idle, lag, peer and the message only then.
    pub fn is_running(&self) -> bool {
        self.fiber.borrow().is_some()
    }

    /// What the replica set counts this applier as: its last state among connected,
    /// loading, disconnected, following, stopped and off (`applier_sync_state`: a reconnect
    /// in progress still counts as what it was).
    pub fn counted_state(&self) -> State {
        self.counted_state.get()
    }

    fn set_state(&self, s: State) {
        self.state.set(s);
        if matches!(
            s,
            State::Connected | State::Loading | State::Disconnected | State::Follow | State::Stopped | State::Off
        ) {
            self.counted_state.set(s);
        }
        replicaset::on_state_change(s);
    }

    pub fn set_gate(&self, g: Gate) {
        *self.gate.borrow_mut() = g;
        self.gate_changed.notify_one();
    }

    /// Waits while the gate holds; returns what it says then.
    async fn pass_gate(&self) -> Gate {
        loop {
            let g = self.gate.borrow().clone();
            if !matches!(g, Gate::Hold) {
                return g;
            }
            self.gate_changed.notified().await;
        }
    }

    /// Starts the fiber `applier/<peer>`.
    pub fn start(self: &Rc<Self>, lua: &Lua) -> LuaResult<()> {
        let me = self.clone();
        let body = lua.create_async_function(move |lua, ()| {
            let me = me.clone();
            async move {
                // The applier's session, as 2.6 gives it: admin, type 'applier'.
                let fid = fiber::current_id();
                let session = Session::new(SessionKind::Applier, ADMIN, String::new(), None);
                session::bind(fid, session, 0);
                me.run(&lua).await;
                session::unbind(fid);
                me.finished.set(true);
                replicaset::on_state_change(me.state.get());
                Ok(())
            }
        })?;
        let name = format!("applier/{}", self.peer);
        let f = fiber::spawn(lua, &name, body, LuaMultiValue::new(), fiber::Start::Deferred)?;
        *self.fiber.borrow_mut() = Some(f);
        Ok(())
    }

    /// Cancels the fiber and waits for it to end (`applier_stop`).
    pub async fn stop(&self) {
        let f = self.fiber.borrow().clone();
        if let Some(f) = f {
            f.cancel();
            fiber::wait_finished(&f).await;
        }
        self.fiber.borrow_mut().take();
        self.set_state(State::Off);
    }

    /// The fiber: connect and serve until stopped, reconnecting after failures.
    async fn run(self: &Rc<Self>, lua: &Lua) {
        loop {
            let failure = match fiber::cancellable(lua, self.session(lua)).await {
                Ok(Err(f)) => f,
                Ok(Ok(never)) => match never {},
                Err(_) => Failure::Cancelled,
            };
            // Only a subscribed connection was the peer's channel to the election.
            if matches!(self.state.get(), State::Sync | State::Follow) && self.remote_id.get() != 0 {
                hub::on_upstream_lost(self.remote_id.get());
            }
            if failure == Failure::Cancelled || failure == Failure::ToSelf {
                if failure == Failure::ToSelf {
                    self.is_self.set(true);
                }
                self.set_state(State::Off);
                return;
            }
            if let Failure::Garbage(_) = failure {
                self.garbage.set(self.garbage.get() + 1);
                crate::iproto::server::count_malformed();
            }
            self.log_failure(lua, &failure);
            *self.message.borrow_mut() = Some(failure.message());
            let next = failure.next_state();
            self.set_state(next);
            if next == State::Stopped {
                return;
            }
            let pause = cfg::get().reconnect_interval();
            if fiber::cancellable(lua, tokio::time::sleep(pause)).await.is_err() {
                self.set_state(State::Off);
                return;
            }
        }
    }

    /// `applier_log_error`: what the applier was doing, the error, and whether it retries;
    /// once per kind of error until a subscribe succeeds.
    fn log_failure(&self, lua: &Lua, failure: &Failure) {
        let code = failure.code();
        if self.last_logged.get() == Some(code) {
            return;
        }
        self.last_logged.set(Some(code));
        let doing = match self.state.get() {
            State::Connect => Some("can't connect to master"),
            State::Connected | State::Ready => Some("can't join/subscribe"),
            State::Auth => Some("failed to authenticate"),
            State::Sync | State::Follow | State::InitialJoin | State::FinalJoin => Some("can't read row"),
            _ => None,
        };
        if let Some(doing) = doing {
            log::write(lua, Level::Info, doing);
        }
        match failure {
            Failure::Socket(m) => log::write(lua, Level::SysError, &format!("SystemError {m}")),
            Failure::Garbage(m) => log::write(lua, Level::Error, &format!("ER_INVALID_MSGPACK: {m}")),
            other => {
                let name = ERRCODES.get(code as usize).map_or("UNKNOWN", |e| e.name);
                log::write(lua, Level::Error, &format!("ER_{name}: {}", other.message()));
            }
        }
        if matches!(
            code,
            ER_LOADING
                | ER_CFG
                | ER_ACCESS_DENIED
                | ER_NO_SUCH_USER
                | ER_SYSTEM
                | ER_UNKNOWN_REPLICA
                | ER_PASSWORD_MISMATCH
        ) || matches!(failure, Failure::Garbage(_))
        {
            let every = cfg::get().timeout;
            log::write(lua, Level::Info, &format!("will retry every {every:.2} second"));
        }
    }

    /// One connection, from connect to its failure.
    async fn session(self: &Rc<Self>, lua: &Lua) -> Result<std::convert::Infallible, Failure> {
        self.set_state(State::Connect);
        let timeout = cfg::get().disconnect_timeout();
        let mut conn = Conn::open(&self.uri).await?;
        *self.address.borrow_mut() = conn.address.clone();
        let greeting = conn.greeting(timeout).await?;
        if greeting.protocol != "Binary" {
            return Err(Failure::Garbage("Unsupported protocol for replication".into()));
        }
        if self.version_id.get() != greeting.version_id || self.uuid.get() != Some(greeting.uuid) {
            log::write(
                lua,
                Level::Info,
                &format!(
                    "remote master {} at {} running Tarantool {}",
                    greeting.uuid,
                    conn.address,
                    version_text(greeting.version_id)
                ),
            );
        }
        self.uuid.set(Some(greeting.uuid));
        self.version_id.set(greeting.version_id);
        self.last_row_time.set(Instant::now());
        *self.message.borrow_mut() = None;

        // The ballot, for choosing a bootstrap master; an old peer does not know VOTE.
        let mut out = Vec::new();
        proto::encode_vote(&mut out);
        conn.write(&out).await?;
        let answer = conn.read_row(Some(timeout)).await?;
        let ballot = match answer.kind {
            IPROTO_OK => proto::decode_ballot(Some(&answer.body)).map_err(|e| Failure::Garbage(e.0))?,
            k if k & IPROTO_TYPE_ERROR != 0 => {
                let e = answer_error(&answer);
                if e.code != ER_UNKNOWN_REQUEST_TYPE {
                    return Err(e.into());
                }
                Ballot::default()
            }
            other => return Err(client_error!(ER_UNKNOWN_REQUEST_TYPE, other).into()),
        };
        self.ballot.set(Some(ballot));
        self.was_connected.set(true);
        self.set_state(State::Connected);
        let gate = self.pass_gate().await;
        if Some(greeting.uuid) == status::instance_uuid() {
            return Err(Failure::ToSelf);
        }
        if let Some(login) = self.uri.login.clone() {
            self.set_state(State::Auth);
            let mut out = Vec::new();
            let password = self.uri.password.clone().unwrap_or_default();
            crate::iproto::request::auth(&mut out, 0, login.as_bytes(), password.as_bytes(), &greeting.salt);
            conn.write(&out).await?;
            let answer = conn.read_row(Some(timeout)).await?;
            if answer.kind != IPROTO_OK {
                return Err(answer_error(&answer).into());
            }
            log::write(lua, Level::Info, "authenticated");
        }
        self.set_state(State::Ready);
        if let Gate::Join(target) = gate {
            self.join(lua, &mut conn, &target).await?;
            self.set_state(State::Joined);
            self.set_state(State::Ready);
            // Subscribing waits until box runs on what was joined.
            *self.gate.borrow_mut() = Gate::Hold;
            self.pass_gate().await;
        }
        self.subscribe(lua, &mut conn).await
    }

    /// JOIN: the peer's snapshot, then the rows that registered this instance, into `target`.
    async fn join(&self, lua: &Lua, conn: &mut Conn, target: &Joining) -> Result<(), Failure> {
        let uuid = status::instance_uuid().unwrap_or_default();
        let mut out = Vec::new();
        proto::encode_join(&mut out, &uuid);
        conn.write(&out).await?;
        self.set_state(State::InitialJoin);
        let first = conn.read_row(None).await?;
        let start = match first.kind {
            IPROTO_OK => proto::decode_vclock_body(Some(&first.body)).map_err(|e| Failure::Garbage(e.0))?,
            k if k & IPROTO_TYPE_ERROR != 0 => return Err(answer_error(&first).into()),
            other => return Err(client_error!(ER_UNKNOWN_REQUEST_TYPE, other).into()),
        };
        target.begin(start);
        loop {
            let row = conn.read_row(None).await?;
            self.last_row_time.set(Instant::now());
            match row.kind {
                IPROTO_OK => break,
                k if k & IPROTO_TYPE_ERROR != 0 => return Err(answer_error(&row).into()),
                k if is_join_row(k) => {
                    target.snapshot_row(&row)?;
                    if let Some(n) = target.progress() {
                        log::write(lua, Level::Info, &format!("{:.1}M rows received", n as f64 / 1e6));
                    }
                }
                other => return Err(client_error!(ER_UNKNOWN_REQUEST_TYPE, other).into()),
            }
        }
        log::write(lua, Level::Info, "initial data received");
        self.set_state(State::FinalJoin);
        loop {
            let row = conn.read_row(None).await?;
            self.last_row_time.set(Instant::now());
            match row.kind {
                IPROTO_OK => break,
                k if k & IPROTO_TYPE_ERROR != 0 => return Err(answer_error(&row).into()),
                k if is_join_row(k) || is_synchro(k) => target.final_row(&row)?,
                other => return Err(client_error!(ER_UNKNOWN_REQUEST_TYPE, other).into()),
            }
        }
        log::write(lua, Level::Info, "final data received");
        target.done();
        Ok(())
    }

    /// SUBSCRIBE, then apply the stream until the connection fails.
    async fn subscribe(&self, lua: &Lua, conn: &mut Conn) -> Result<std::convert::Infallible, Failure> {
        let request = box_lua::with_runtime(subscribe_request)
            .flatten()
            .ok_or_else(|| client_error!(ER_LOADING))?;
        let mut out = Vec::new();
        proto::encode_subscribe(&mut out, &request);
        conn.write(&out).await?;
        let answer = conn.read_row(Some(cfg::get().disconnect_timeout())).await?;
        if answer.kind & IPROTO_TYPE_ERROR != 0 {
            return Err(answer_error(&answer).into());
        }
        if answer.kind != IPROTO_OK {
            return Err(client_error!(ER_PROTOCOL, "Invalid response to SUBSCRIBE").into());
        }
        let (remote_vclock, cluster) =
            proto::decode_subscribe_response(Some(&answer.body)).map_err(|e| Failure::Garbage(e.0))?;
        if let Some(cluster) = cluster.filter(|c| !c.is_nil() && *c != request.replicaset_uuid) {
            return Err(client_error!(
                ER_REPLICASET_UUID_MISMATCH,
                cluster.to_string(),
                request.replicaset_uuid.to_string()
            )
            .into());
        }
        self.remote_id.set(answer.replica_id);
        self.remote_vclock_at_subscribe.set(remote_vclock);
        log::write(lua, Level::Info, "subscribed");
        log::write(
            lua,
            Level::Info,
            &format!("remote vclock {remote_vclock} local vclock {}", request.vclock),
        );
        self.set_state(State::Sync);
        self.last_logged.set(None);
        self.lag.set(LAG_UNKNOWN);
        self.follow(lua, conn).await
    }

    /// The stream after SUBSCRIBE: transactions, heartbeats and RAFT rows in; ACKs out.
    async fn follow(&self, lua: &Lua, conn: &mut Conn) -> Result<std::convert::Infallible, Failure> {
        let source = self.remote_id.get();
        // WAL tickets of applied transactions, oldest first: each completion sends an ACK.
        let mut writing: VecDeque<u64> = VecDeque::new();
        let mut txn: Vec<Row> = Vec::new();
        let mut ack_due = true;
        let mut ack_tick = tokio::time::interval(cfg::secs(cfg::get().timeout));
        ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut schema_changed = false;
            while let Some(row) = conn.next_row()? {
                self.last_row_time.set(Instant::now());
                if row.timestamp != 0.0 {
                    // RAFT rows carry no timestamp: they say nothing about the lag.
                    self.lag.set(wall_clock() - row.timestamp);
                }
                hub::on_upstream_traffic(source);
                if row.kind & IPROTO_TYPE_ERROR != 0 {
                    return Err(answer_error(&row).into());
                }
                check_row(&row, &txn)?;
                if txn.is_empty() && row.lsn == 0 {
                    // A heartbeat, or the peer's election state.
                    if row.kind == IPROTO_RAFT {
                        if let Err(e) = hub::on_raft_row(source, &row.body) {
                            log::write(lua, Level::Error, &format!("RAFT: {e}"));
                        }
                    }
                    ack_due = true;
                    continue;
                }
                let commit = row.is_commit;
                txn.push(row);
                if !commit {
                    continue;
                }
                let rows = std::mem::take(&mut txn);
                if !hub::accepts_rows_from(source) {
                    continue;
                }
                let skip_conflict = cfg::get().skip_conflict;
                let outcome = box_lua::with_runtime(|rt| {
                    let version = rt.db.schema.version;
                    let r = apply::apply_transaction(rt, rows, skip_conflict);
                    (r, rt.db.schema.version != version)
                });
                let Some((result, changed)) = outcome else {
                    return Err(client_error!(ER_LOADING).into());
                };
                schema_changed |= changed;
                // Spaces with triggers: the rows go through their Lua methods.
                let result = match result {
                    Ok(Applied::NeedsTriggers) => apply::apply_staged(lua, skip_conflict).map(Applied::Logged),
                    other => other,
                };
                match result {
                    Ok(Applied::Already | Applied::NeedsTriggers) => {}
                    Ok(Applied::Logged(Some(ticket))) => writing.push_back(ticket),
                    Ok(Applied::Logged(None)) => ack_due = true,
                    Err(e) => {
                        log::write(lua, Level::Error, &format!("error applying row: {}", e.row));
                        return Err(e.error.into());
                    }
                }
            }
            // The batch's writes go to the WAL thread together.
            box_lua::flush_wal();
            if schema_changed {
                if let Err(e) = box_lua::after_write(lua) {
                    log::write(lua, Level::Error, &format!("schema reload: {e}"));
                }
            }
            if ack_due {
                ack_due = false;
                self.check_sync();
                if matches!(self.state.get(), State::Sync | State::Follow) {
                    let mut out = Vec::new();
                    proto::encode_ack(&mut out, &written_vclock());
                    conn.write(&out).await?;
                }
            }
            let front = writing.front().copied();
            tokio::select! {
                read = conn.fill(Some(cfg::get().disconnect_timeout())) => read?,
                written = box_lua::wal_written(front.unwrap_or(0)), if front.is_some() => {
                    writing.pop_front();
                    if let Err(e) = written {
                        box_lua::with_runtime(apply::forget_unwritten);
                        return Err(e.into());
                    }
                    ack_due = true;
                }
                _ = ack_tick.tick() => ack_due = true,
            }
        }
    }

    /// `applier_check_sync`: SYNC becomes FOLLOW once the lag is within
    /// `replication_sync_lag` and everything the peer had at SUBSCRIBE is written here.
    fn check_sync(&self) {
        if self.state.get() != State::Sync || self.lag.get() > cfg::get().sync_lag {
            return;
        }
        let remote = self.remote_vclock_at_subscribe.get();
        let local = written_vclock();
        if remote.iter().all(|(id, lsn)| id == 0 || local.get(id) >= lsn) {
            self.set_state(State::Follow);
        }
    }
}

fn version_text(id: u32) -> String {
    format!("{}.{}.{}", id >> 16, (id >> 8) & 0xff, id & 0xff)
}

/// Rows of a join: DML (snapshot rows are INSERTs) and NOP.
fn is_join_row(kind: u32) -> bool {
    matches!(kind, 1..=5 | 9 | 12)
}

fn is_synchro(kind: u32) -> bool {
    matches!(
        kind,
        apply::IPROTO_CONFIRM | apply::IPROTO_ROLLBACK | apply::IPROTO_PROMOTE
    )
}

/// The rules of a transaction stream (`applier_read_tx`): a known replica id, a transaction
/// id equal to its first row's LSN, and no interleaving.
fn check_row(row: &Row, txn: &[Row]) -> Result<(), ClientError> {
    if row.replica_id as usize >= VCLOCK_MAX {
        let cluster = box_lua::with_runtime(|rt| replicaset::replicaset_uuid(&rt.db))
            .flatten()
            .unwrap_or_default();
        return Err(client_error!(
            ER_UNKNOWN_REPLICA,
            row.replica_id.to_string(),
            cluster.to_string()
        ));
    }
    match txn.first() {
        None if row.lsn != row.tsn => Err(client_error!(
            ER_PROTOCOL,
            "Transaction id must be equal to LSN of the first row in the transaction."
        )),
        Some(first) if first.tsn != row.tsn => Err(client_error!(
            ER_UNSUPPORTED,
            "replication",
            "interleaving transactions"
        )),
        _ => Ok(()),
    }
}

/// The error in an error answer, as a ClientError of its code.
fn answer_error(row: &Row) -> ClientError {
    let (code, message) = proto::decode_error(row.kind, Some(&row.body));
    ClientError { code, message }
}

fn wall_clock() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What this instance has written (what ACKs report): the WAL's vclock, or without a WAL
/// the applied one.
pub fn written_vclock() -> Vclock {
    box_lua::with_runtime(|rt| {
        rt.persist
            .as_ref()
            .map(|p| p.wal.as_ref().map_or(p.vclock, |w| w.vclock()))
    })
    .flatten()
    .unwrap_or_default()
}

/// SUBSCRIBE for this instance: from what it has written; its own rows filtered out once
/// it writes (not while orphan, when it may have to get them back).
fn subscribe_request(rt: &mut box_lua::BoxRuntime) -> Option<Subscribe> {
    let p = rt.persist.as_ref()?;
    let vclock = p.wal.as_ref().map_or(p.vclock, |w| w.vclock());
    let orphan = status::status() == status::Status::Orphan;
    Some(Subscribe {
        replicaset_uuid: replicaset::replicaset_uuid(&rt.db).unwrap_or_default(),
        instance_uuid: p.instance_uuid,
        vclock,
        // The replication features of 2.6.3 (RAFT rows): a master sends them only to
        // replicas of 2.6.1 and later.
        version_id: codec::version_id(2, 6, 3),
        anon: false,
        id_filter: if orphan || p.instance_id as usize >= VCLOCK_MAX {
            0
        } else {
            1 << p.instance_id
        },
    })
}

/// The socket to the peer and its unread input.
struct Conn {
    rd: BoxedRead,
    wr: BoxedWrite,
    buf: Vec<u8>,
    /// Where the unread input starts in `buf` (rows are taken from the front without
    /// moving the rest; the buffer is compacted before reads).
    pos: usize,
    /// When the peer last sent something (or the connection opened).
    last_input: Instant,
    /// `host:port` (or the socket path), for logs.
    address: String,
}

impl Conn {
    async fn open(u: &Uri) -> Result<Conn, Failure> {
        let service = u.service.clone().unwrap_or_default();
        let host = u.host.as_deref();
        let address = match host {
            Some(UNIX_HOST) => service.clone(),
            Some(h) => format!("{h}:{service}"),
            None => format!("localhost:{service}"),
        };
        let (rd, wr) = transport::open(host, &service)
            .await
            .map_err(|e| Failure::Socket(format!("connect to {address}: {e}")))?;
        Ok(Conn {
            rd,
            wr,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            last_input: Instant::now(),
            address,
        })
    }

    async fn greeting(&mut self, timeout: Duration) -> Result<codec::Greeting, Failure> {
        while self.buf.len() - self.pos < GREETING_SIZE {
            self.fill(Some(timeout)).await?;
        }
        let mut g = [0u8; GREETING_SIZE];
        g.copy_from_slice(&self.buf[self.pos..self.pos + GREETING_SIZE]);
        self.pos += GREETING_SIZE;
        let greeting = codec::parse_greeting(&g).map_err(|e| Failure::Garbage(e.to_string()))?;
        Ok(greeting)
    }

    /// Reads more input (at least one byte), failing once the peer has been silent for
    /// `timeout` (counted from its last input, whatever else the caller waited for).
    async fn fill(&mut self, timeout: Option<Duration>) -> Result<(), Failure> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let read = self.rd.read_buf(&mut self.buf);
        let n = match timeout {
            Some(t) => tokio::time::timeout_at(tokio::time::Instant::from_std(self.last_input) + t, read)
                .await
                .map_err(|_| Failure::Socket(format!("timed out reading from {}", self.address)))?,
            None => read.await,
        };
        match n {
            Ok(0) => Err(Failure::Socket(format!(
                "unexpected EOF when reading from socket, peer of {}",
                self.address
            ))),
            Ok(_) => {
                self.last_input = Instant::now();
                Ok(())
            }
            Err(e) => Err(Failure::Socket(format!("{}, peer of {}", e, self.address))),
        }
    }

    /// The next complete row in the buffer, if there is one.
    fn next_row(&mut self) -> Result<Option<Row>, Failure> {
        let input = &self.buf[self.pos..];
        let frame = codec::next_packet(input, PACKET_SIZE_MAX).map_err(|e| self.garbage(&e.to_string()))?;
        let Some(frame) = frame else { return Ok(None) };
        let decoded = RowRef::decode(&input[frame.packet.clone()]).map(|(r, _)| r.to_row());
        self.pos += frame.consumed;
        decoded.map(Some).map_err(|e| self.garbage(&e.to_string()))
    }

    fn garbage(&self, what: &str) -> Failure {
        Failure::Garbage(format!("malformed packet from {}: {what}", self.address))
    }

    async fn read_row(&mut self, timeout: Option<Duration>) -> Result<Row, Failure> {
        loop {
            if let Some(row) = self.next_row()? {
                return Ok(row);
            }
            self.fill(timeout).await?;
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        self.wr
            .write_all(data)
            .await
            .map_err(|e| Failure::Socket(format!("{e}, peer of {}", self.address)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(lsn: i64, tsn: i64, is_commit: bool) -> Row {
        Row {
            kind: 2,
            replica_id: 1,
            lsn,
            tsn,
            is_commit,
            ..Row::default()
        }
    }

    #[test]
    fn transactions_must_start_at_their_tsn_and_not_interleave() {
        assert!(check_row(&row(5, 5, false), &[]).is_ok());
        let e = check_row(&row(6, 5, true), &[]).unwrap_err();
        assert_eq!(e.code, ER_PROTOCOL);
        assert_eq!(
            e.message,
            "Transaction id must be equal to LSN of the first row in the transaction."
        );
        assert!(check_row(&row(6, 5, true), &[row(5, 5, false)]).is_ok());
        let e = check_row(&row(7, 7, true), &[row(5, 5, false)]).unwrap_err();
        assert_eq!(e.message, "replication does not support interleaving transactions");
        let mut far = row(1, 1, true);
        far.replica_id = 40;
        assert_eq!(check_row(&far, &[]).unwrap_err().code, ER_UNKNOWN_REPLICA);
    }

    #[test]
    fn failures_decide_the_next_state_as_applier_f() {
        let client = |code| {
            Failure::Client(ClientError {
                code,
                message: String::new(),
            })
        };
        assert_eq!(Failure::Socket("x".into()).next_state(), State::Disconnected);
        assert_eq!(Failure::Garbage("x".into()).next_state(), State::Disconnected);
        assert_eq!(client(ER_LOADING).next_state(), State::Loading);
        assert_eq!(client(ER_ACCESS_DENIED).next_state(), State::Loading);
        assert_eq!(client(ER_SYSTEM).next_state(), State::Disconnected);
        assert_eq!(client(ER_TUPLE_FOUND).next_state(), State::Stopped);
        let gap = Failure::Client(ClientError {
            code: ER_PROC_LUA,
            message: "Missing .xlog file between LSN 4 {0: 0, 1: 4} and 5 {1: 5}".into(),
        });
        assert_eq!(gap.next_state(), State::Loading, "a peer without our rows: retry");
        assert_eq!(client(ER_XLOG_GAP).next_state(), State::Loading);
        assert_eq!(client(ER_PROC_LUA).next_state(), State::Stopped);
        assert_eq!(Failure::ToSelf.next_state(), State::Off);
    }

    #[test]
    fn peers_print_as_uri_format_does() {
        let peer = |s: &str| format_peer(&uri::parse(s).unwrap());
        assert_eq!(peer("127.0.0.1:3301"), "127.0.0.1:3301");
        assert_eq!(peer("user:secret@127.0.0.1:3301"), "user@127.0.0.1:3301");
        assert_eq!(peer("3301"), "");
        assert_eq!(peer("unix/:/tmp/x.sock"), "unix/:/tmp/x.sock");
        assert_eq!(version_text(codec::version_id(2, 6, 3)), "2.6.3");
    }
}
