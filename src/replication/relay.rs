//! The relay: the master's side of SUBSCRIBE (and, with `join.rs`, of JOIN), on an IPROTO
//! connection the server hands over once it reads the request (Tarantool takes the socket
//! out of its network thread the same way: nothing else is read on it afterwards).
//!
//! SUBSCRIBE, as 2.6.0's `box_process_subscribe` and `relay_subscribe_f`:
//!
//! 1. checks, in 2.6.0's order and with its texts: box loaded, the body, not ourselves,
//!    read access to universe, the replica registered in `_cluster` (unless anonymous),
//!    no relay already following it, a WAL to read from. The replica set uuid the replica
//!    sends is not checked (2.6.0's master leaves that to the replica);
//! 2. answers `OK {REPLICA_ID: ours}{VCLOCK, CLUSTER_UUID}`, then the election state if
//!    Raft ever spoke (`hub`), and again whenever it changes;
//! 3. streams every row the replica lacks, from its vclock on (`wal_stream.rs`: files while
//!    it is behind, then the rows as the WAL writes them), skipping its own rows (and those
//!    of any instance in its ID_FILTER) and local ones (a local row signed with an instance
//!    id goes as a NOP, so the replica's vclock still advances);
//! 4. sends a heartbeat `{REPLICA_ID, TIMESTAMP}` when nothing was sent for
//!    `replication_timeout`; reads the replica's acks `OK {VCLOCK}` on the same socket,
//!    shows them in box.info and reports them to the synchronous quorum (`hub`);
//! 5. ends when nothing was heard for 4 × `replication_timeout`, the replica goes away, or
//!    an ack is malformed: the error is logged (`exiting the relay loop`), kept for
//!    box.info (`stopped`) and sent to the replica, and the connection is closed.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mlua::WeakLua;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;
use uuid::Uuid;

use super::ballot::Ballot;
use super::downstream::{self, RelayState};
use super::hub;
use super::proto::{self, Wanted};
use super::wal_reader::{oldest_vclock, PassError};
use super::wal_stream::WalStream;
use crate::box_::access::PRIV_READ;
use crate::box_::errcode::*;
use crate::box_::error::ClientError;
use crate::box_::lua as box_lua;
use crate::box_::lua::BoxRuntime;
use crate::box_::mp::{self, Mp};
use crate::box_::schema;
use crate::box_::wal::row::{Row, RowRef, GROUP_LOCAL, IPROTO_NOP};
use crate::box_::wal::vclock::Vclock;
use crate::client_error;
use crate::iproto::codec;
use crate::modules::log::{self, Level};

/// Unsent bytes past which a relay stops taking rows until the socket drains. Nothing
/// special in the value: enough to keep the socket busy, little per replica.
pub const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Bytes of encoded rows sent to the connection at once.
pub const SEND_CHUNK: usize = 256 * 1024;
/// The biggest packet a replica may send a relay. An ack is a vclock (under 300 bytes);
/// nothing special in the value beyond "far more than that", so a peer cannot make the
/// relay buffer without bound.
const ACK_PACKET_MAX: u64 = 64 * 1024;

/// The connection a relay writes to: the IPROTO connection it took over.
pub trait Downlink {
    /// Queues bytes for the socket.
    fn send(&self, bytes: &[u8]);
    /// Bytes queued and not yet written.
    fn unsent(&self) -> usize;
    /// Notified when the writer made progress (or stopped).
    fn progress(&self) -> &Notify;
    /// The socket failed or was closed.
    fn is_closed(&self) -> bool;
}

/// Who asked: the session's user and the socket, as 2.6 names it in its log
/// (`fd 18, aka 127.0.0.1:3301, peer of 127.0.0.1:58402`).
pub struct Peer {
    pub uid: u32,
    pub socket_name: String,
}

/// What ends a JOIN or SUBSCRIBE: sent to the replica as an error, shown in box.info.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayError {
    /// 2.6's error class: `ClientError`, `SocketError`, `TimedOut`, `XlogGapError`, ...
    pub type_name: &'static str,
    pub code: u32,
    pub message: String,
    /// The errno behind it (0: none): box.info's `system_message`.
    pub errno: i32,
}

impl From<ClientError> for RelayError {
    fn from(e: ClientError) -> RelayError {
        RelayError {
            type_name: "ClientError",
            code: e.code,
            message: e.message,
            errno: 0,
        }
    }
}

impl From<PassError> for RelayError {
    fn from(e: PassError) -> RelayError {
        RelayError {
            type_name: if matches!(e, PassError::Gap { .. }) {
                "XlogGapError"
            } else {
                "XlogError"
            },
            // What 2.6 reports for errors that are neither client nor system ones.
            code: ER_PROC_LUA,
            message: e.to_string(),
            errno: 0,
        }
    }
}

impl RelayError {
    fn system(type_name: &'static str, message: String, errno: i32) -> RelayError {
        RelayError {
            type_name,
            code: ER_SYSTEM,
            message,
            errno,
        }
    }

    /// The replica went away: 2.6's text, and EPIPE as its errno.
    pub fn eof(socket_name: &str) -> RelayError {
        let message = format!("unexpected EOF when reading from socket, called on {socket_name}");
        RelayError::system("SocketError", message, libc::EPIPE)
    }

    /// Nothing heard for the disconnect timeout.
    pub fn timed_out() -> RelayError {
        RelayError::system("TimedOut", "timed out".into(), libc::ETIMEDOUT)
    }

    fn io(what: &str, socket_name: &str, e: &std::io::Error) -> RelayError {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        RelayError::system("SocketError", format!("{what}, called on {socket_name}"), errno)
    }

    /// box.info's `system_message`: the errno's text.
    pub fn system_message(&self) -> Option<String> {
        (self.errno != 0).then(|| crate::modules::errno::strerror(self.errno))
    }

    /// The log line 2.6 writes for it (`SystemError timed out: Connection timed out`).
    pub fn log_line(&self) -> (Level, String) {
        match (self.type_name, self.system_message()) {
            ("ClientError", _) => (Level::Error, self.message.clone()),
            (_, Some(sys)) => (Level::SysError, format!("SystemError {}: {sys}", self.message)),
            (t, None) => (Level::Error, format!("{t} {}", self.message)),
        }
    }

    /// The IPROTO error reply to the request with `sync`.
    pub fn encode(&self, sync: u64, schema_version: u32) -> Vec<u8> {
        let info = codec::ErrorInfo {
            type_name: self.type_name,
            file: "",
            line: 0,
            message: &self.message,
            errno: self.errno.max(0) as u32,
            code: self.code,
            fields: codec::ErrorFields::None,
        };
        codec::encode_error_stack(sync, schema_version, &[info])
    }
}

pub(super) fn log(lua: &WeakLua, level: Level, message: &str) {
    if let Some(lua) = lua.try_upgrade() {
        log::write(&lua, level, message);
    }
}

/// Seconds since the epoch, as heartbeats carry them.
pub(super) fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The replica set uuid, from `_schema`'s `cluster` row.
pub(super) fn replicaset_uuid(rt: &BoxRuntime) -> Uuid {
    rt.db
        .schema
        .space(schema::SCHEMA_ID)
        .and_then(|s| s.primary())
        .and_then(|pk| {
            pk.tuples().find_map(|t| {
                let mut f = t.fields();
                match (f.next(), f.next()) {
                    (Some(k), Some(v)) if k == b"\xa7cluster" => match mp::read(v, 0) {
                        Ok((Mp::Str(s), _)) => std::str::from_utf8(s).ok().and_then(|s| Uuid::parse_str(s).ok()),
                        _ => None,
                    },
                    _ => None,
                }
            })
        })
        .unwrap_or_default()
}

/// The ballot this instance gives now (VOTE). While box.cfg loads it is a loading one with
/// what recovery has read so far.
pub fn current_ballot() -> Ballot {
    box_lua::with_runtime(|rt| {
        // 2.6.0 reads box.cfg.read_only alone here (no orphan or election reasons).
        let read_only = rt.db.ro_reasons.cfg;
        match rt.persist.as_ref() {
            Some(p) => {
                let vclock = p.wal.as_ref().map_or(p.vclock, |w| w.vclock());
                Ballot::loaded(read_only, vclock, oldest_vclock(&p.wal_dir, &p.memtx_dir))
            }
            None => Ballot::loaded(read_only, Vclock::new(), Vclock::new()),
        }
    })
    .unwrap_or_else(|| Ballot {
        vclock: crate::box_::status::loading_vclock(),
        ..Ballot::loading(crate::box_::status::cfg_read_only())
    })
}

/// VOTE_DEPRECATED (67): `OK {VCLOCK}`, as 1.x replicas ask.
pub fn current_vclock() -> Vclock {
    box_lua::with_runtime(|rt| {
        rt.persist
            .as_ref()
            .map_or_else(Vclock::new, |p| p.wal.as_ref().map_or(p.vclock, |w| w.vclock()))
    })
    .unwrap_or_default()
}

/// What a relay does with a row: 2.6.0's `relay_send_row`. `subscriber` is the replica's
/// id and the master's vclock when it subscribed (None for a JOIN's final stage, which
/// sends everything).
pub fn relayed<'a>(row: &'a Row, id_filter: u32, subscriber: Option<(u32, &Vclock)>) -> Option<RowRef<'a>> {
    let mut r = row.as_ref();
    if row.group_id == GROUP_LOCAL {
        // Local rows signed with an instance id (older versions did) still move the
        // replica's vclock: they go as NOPs.
        if row.replica_id == 0 {
            return None;
        }
        r.kind = IPROTO_NOP;
        r.group_id = 0;
        r.body = &[];
    }
    if r.replica_id < 32 && id_filter & (1 << r.replica_id) != 0 {
        return None;
    }
    match subscriber {
        // The replica's own rows go back only if it lost them (its master had them when
        // it subscribed).
        Some((id, at_subscribe)) if r.replica_id == id && r.lsn > at_subscribe.get(id) => None,
        _ => Some(r),
    }
}

/// Everything a SUBSCRIBE needs from box, read at once.
struct Subscription {
    uuid: Uuid,
    replica_id: u32,
    master_id: u32,
    replicaset: Uuid,
    feed: std::sync::Arc<super::wal_feed::WalFeed>,
    wal_dir: std::path::PathBuf,
}

fn check_subscribe(peer: &Peer, req: &proto::Subscribe) -> Result<Subscription, ClientError> {
    let uuid = req.instance_uuid.unwrap_or_default();
    box_lua::with_runtime(|rt| {
        let replicaset = replicaset_uuid(rt);
        let p = rt.persist.as_ref().ok_or_else(|| client_error!(ER_LOADING))?;
        if uuid == p.instance_uuid {
            return Err(client_error!(ER_CONNECTION_TO_SELF));
        }
        rt.db.schema.access.check_universe(peer.uid, PRIV_READ)?;
        let replica_id = rt.db.schema.cluster.iter().find(|(_, u)| **u == uuid.to_string());
        let replica_id = match replica_id {
            Some((id, _)) => *id,
            None if req.anon => 0,
            None => {
                return Err(client_error!(
                    ER_UNKNOWN_REPLICA,
                    uuid.to_string(),
                    replicaset.to_string()
                ))
            }
        };
        if downstream::is_following(&uuid) {
            return Err(client_error!(
                ER_CFG,
                "replication",
                "duplicate connection with the same replica UUID"
            ));
        }
        let wal = p
            .wal
            .as_ref()
            .ok_or_else(|| client_error!(ER_UNSUPPORTED, "Replication", "wal_mode = 'none'"))?;
        Ok(Subscription {
            uuid,
            replica_id,
            master_id: p.instance_id,
            replicaset,
            feed: wal.feed(),
            wal_dir: p.wal_dir.clone(),
        })
    })
    .unwrap_or_else(|| Err(client_error!(ER_LOADING)))
}

/// Serves a SUBSCRIBE on a connection taken over by the relay, until the replica goes or
/// an error ends it; returns that error (the caller sends it and closes the connection).
pub async fn subscribe<R: AsyncRead + Unpin>(
    lua: &WeakLua,
    link: &dyn Downlink,
    peer: &Peer,
    sync: u64,
    body: Option<&[u8]>,
    rd: &mut R,
    buf: &mut Vec<u8>,
) -> RelayError {
    if box_lua::with_runtime(|_| ()).is_none() {
        return client_error!(ER_LOADING).into();
    }
    let req = match proto::decode(body, Wanted::Subscribe) {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let sub = match check_subscribe(peer, &req) {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    let local = sub.feed.written();
    let mut out = Vec::with_capacity(128);
    proto::put_subscribe_ok(&mut out, sync, sub.master_id, &local, &sub.replicaset);
    link.send(&out);
    log(
        lua,
        Level::Info,
        &format!("subscribed replica {} at {}", sub.uuid, peer.socket_name),
    );
    log(
        lua,
        Level::Info,
        &format!("remote vclock {} local vclock {local}", req.vclock),
    );
    // Local rows are nobody else's: the replica's component 0 is taken to be ours.
    let mut have = req.vclock;
    have.follow(0, local.get(0));
    downstream::update(sub.uuid, |d| {
        d.state = Some(RelayState::Follow);
        d.vclock = req.vclock;
        d.last_row = Instant::now();
    });
    let mut relay = Follower {
        lua,
        link,
        peer,
        sync,
        uuid: sub.uuid,
        replica_id: sub.replica_id,
        master_id: sub.master_id,
        id_filter: req.id_filter,
        // 2.6.0 has no elections and stops on a RAFT row; 2.6.1 brought them.
        sends_raft: req.version_id == 0 || req.version_id >= 0x20601,
        local_at_subscribe: local,
        acked: req.vclock,
        out,
    };
    let stream = WalStream::new(&sub.feed, sub.wal_dir, have);
    let error = relay.run(stream, rd, buf).await;
    let (level, line) = error.log_line();
    log(lua, level, &line);
    log(lua, Level::Crit, "exiting the relay loop");
    downstream::update(sub.uuid, |d| {
        d.state = Some(RelayState::Stopped {
            message: error.message.clone(),
            system_message: error.system_message(),
        })
    });
    error
}

/// A relay following a subscribed replica.
struct Follower<'a> {
    lua: &'a WeakLua,
    link: &'a dyn Downlink,
    peer: &'a Peer,
    sync: u64,
    uuid: Uuid,
    /// 0 for an anonymous replica.
    replica_id: u32,
    master_id: u32,
    id_filter: u32,
    /// The replica understands RAFT rows.
    sends_raft: bool,
    local_at_subscribe: Vclock,
    /// What the replica acknowledged last.
    acked: Vclock,
    out: Vec<u8>,
}

impl Follower<'_> {
    async fn run<R: AsyncRead + Unpin>(&mut self, mut stream: WalStream, rd: &mut R, buf: &mut Vec<u8>) -> RelayError {
        let mut raft = hub::watch_raft_state();
        // Tarantool sends a heartbeat at once, so the replica learns its lag early.
        let mut last_sent = None::<Instant>;
        let mut last_heard = Instant::now();
        if let Some(state) = raft.borrow_and_update().clone().filter(|_| self.sends_raft) {
            self.out.clear();
            proto::put_raft(&mut self.out, self.sync, &state);
            last_sent = Some(self.flush());
        }
        loop {
            // Acks already buffered (a replica may pipeline them behind its request).
            match self.read_acks(buf) {
                Ok(true) => last_heard = Instant::now(),
                Ok(false) => {}
                Err(e) => return e,
            }
            if self.link.is_closed() {
                return RelayError::system(
                    "SocketError",
                    format!("writev(1), called on {}", self.peer.socket_name),
                    libc::EPIPE,
                );
            }
            // The heartbeat period; the replica's silence for the disconnect timeout ends us.
            let cfg = super::cfg::get();
            let timeout = super::cfg::secs(cfg.timeout);
            let give_up_at = last_heard + cfg.disconnect_timeout();
            let now = Instant::now();
            if now >= give_up_at {
                return RelayError::timed_out();
            }
            if last_sent.is_none_or(|t| now >= t + timeout) {
                self.out.clear();
                proto::put_heartbeat(&mut self.out, self.sync, self.master_id, now_seconds());
                last_sent = Some(self.flush());
            }
            let heartbeat_at = last_sent.map_or(now, |t| t + timeout);
            let wake_at = heartbeat_at.min(give_up_at);
            let room = self.link.unsent() < HIGH_WATER;
            tokio::select! {
                r = stream.ready(), if room => {
                    if let Err(e) = r {
                        return e.into();
                    }
                    if self.send_rows(&mut stream) {
                        last_sent = Some(Instant::now());
                    }
                    for path in stream.take_opened() {
                        log(self.lua, Level::Info, &format!("recover from `{}'", path.display()));
                    }
                    // A replica far behind must not hold the Lua thread: others run
                    // between batches.
                    tokio::task::yield_now().await;
                }
                n = rd.read_buf(buf) => match n {
                    Ok(0) => return RelayError::eof(&self.peer.socket_name),
                    Ok(_) => {}
                    Err(e) => return RelayError::io("read", &self.peer.socket_name, &e),
                },
                changed = raft.changed() => {
                    let state = raft.borrow_and_update().clone();
                    if let (Ok(()), Some(state), true) = (changed, state, self.sends_raft) {
                        self.out.clear();
                        proto::put_raft(&mut self.out, self.sync, &state);
                        last_sent = Some(self.flush());
                    }
                }
                _ = self.link.progress().notified(), if !room => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
    }

    /// Sends the buffer; returns when.
    fn flush(&mut self) -> Instant {
        self.link.send(&self.out);
        self.out.clear();
        let now = Instant::now();
        downstream::update(self.uuid, |d| d.last_row = now);
        now
    }

    /// Encodes and sends the rows the stream has ready; whether anything was sent.
    fn send_rows(&mut self, stream: &mut WalStream) -> bool {
        self.out.clear();
        let (sync, id_filter) = (self.sync, self.id_filter);
        let subscriber = (self.replica_id != 0).then_some((self.replica_id, &self.local_at_subscribe));
        let out = &mut self.out;
        let link = self.link;
        stream.take(|row| {
            if let Some(r) = relayed(row, id_filter, subscriber) {
                proto::put_row(out, sync, &r);
                if out.len() >= SEND_CHUNK {
                    link.send(out);
                    out.clear();
                }
            }
        });
        let sent_any = !self.out.is_empty();
        if sent_any {
            self.flush();
        }
        sent_any
    }

    /// Takes the complete acks out of `buf`; whether there were any.
    fn read_acks(&mut self, buf: &mut Vec<u8>) -> Result<bool, RelayError> {
        let mut pos = 0;
        let mut heard = false;
        let result = loop {
            let frame = match codec::next_packet(&buf[pos..], ACK_PACKET_MAX) {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(heard),
                Err(e) => break Err(e.to_client_error().into()),
            };
            let packet = &buf[pos + frame.packet.start..pos + frame.packet.end];
            pos += frame.consumed;
            heard = true;
            let vclock = match ack_vclock(packet) {
                Ok(v) => v,
                Err(e) => break Err(e.into()),
            };
            self.on_ack(vclock);
        };
        buf.drain(..pos);
        result
    }

    fn on_ack(&mut self, vclock: Vclock) {
        if vclock.signature() != self.acked.signature() {
            self.acked = vclock;
            downstream::update(self.uuid, |d| d.vclock = vclock);
        }
        // Every ack, moved or not: it is also the replica's sign of life for the election.
        if self.replica_id != 0 {
            hub::on_replica_ack(self.replica_id, &vclock);
        }
    }
}

/// An ack's vclock: any packet whose body carries one (2.6 reads only that).
fn ack_vclock(packet: &[u8]) -> Result<Vclock, ClientError> {
    let (_, body) = codec::decode_header(packet).map_err(|e| e.error)?;
    let body = body.map(|r| &packet[r]);
    Ok(proto::decode(body, Wanted::Ack)?.vclock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::wal::row::IPROTO_INSERT;

    fn vclock(parts: &[(u32, i64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in parts {
            v.follow(id, lsn);
        }
        v
    }

    fn row(replica_id: u32, lsn: i64, group_id: u32) -> Row {
        Row {
            kind: IPROTO_INSERT,
            replica_id,
            lsn,
            group_id,
            tsn: lsn,
            is_commit: true,
            body: vec![0x81, 0x10, 0x01],
            ..Row::default()
        }
    }

    #[test]
    fn rows_are_relayed_as_2_6_0_relays_them() {
        let at = vclock(&[(1, 10), (2, 5)]);
        // Others' rows go as they are; a subscriber's own rows only if it lost them.
        assert!(relayed(&row(1, 11, 0), 0, Some((2, &at))).is_some());
        assert!(relayed(&row(2, 5, 0), 0, Some((2, &at))).is_some());
        assert!(relayed(&row(2, 6, 0), 0, Some((2, &at))).is_none());
        // A final join sends everything.
        assert!(relayed(&row(2, 6, 0), 0, None).is_some());
        // The id filter wins.
        assert!(relayed(&row(2, 5, 0), 1 << 2, Some((2, &at))).is_none());
        assert!(relayed(&row(3, 1, 0), 1 << 3, None).is_none());
        // Local rows: never when unsigned, as a NOP without body when signed.
        assert!(relayed(&row(0, 1, GROUP_LOCAL), 0, None).is_none());
        let r = row(1, 12, GROUP_LOCAL);
        let nop = relayed(&r, 0, Some((2, &at))).unwrap();
        assert_eq!(
            (nop.kind, nop.group_id, nop.body, nop.lsn),
            (IPROTO_NOP, 0, &[][..], 12)
        );
    }

    #[test]
    fn acks_are_vclocks_in_any_packet() {
        let mut packet = Vec::new();
        super::super::replica_proto::encode_ack(&mut packet, &vclock(&[(1, 7), (2, 3)]));
        // Without the length prefix, as the framer hands it over.
        assert_eq!(ack_vclock(&packet[5..]), Ok(vclock(&[(1, 7), (2, 3)])));
        assert_eq!(
            ack_vclock(&[0x81, 0x00, 0x00]).unwrap_err().message,
            "Invalid MsgPack - request body"
        );
        assert_eq!(
            ack_vclock(&[0x81, 0x00, 0x00, 0x81, 0x26, 0x91, 0x01])
                .unwrap_err()
                .message,
            "Invalid MsgPack - invalid VCLOCK"
        );
    }

    #[test]
    fn errors_read_as_2_6_writes_them() {
        let e = RelayError::timed_out();
        assert_eq!(e.system_message().as_deref(), Some("Connection timed out"));
        assert_eq!(
            e.log_line(),
            (Level::SysError, "SystemError timed out: Connection timed out".into())
        );
        let e = RelayError::eof("fd 18, aka 127.0.0.1:3301, peer of 127.0.0.1:58402");
        assert_eq!(
            e.message,
            "unexpected EOF when reading from socket, called on fd 18, aka 127.0.0.1:3301, peer of 127.0.0.1:58402"
        );
        assert_eq!(e.system_message().as_deref(), Some("Broken pipe"));
        let e: RelayError = client_error!(ER_LOADING).into();
        assert_eq!(e.system_message(), None);
        assert_eq!(e.code, ER_LOADING);
    }
}
