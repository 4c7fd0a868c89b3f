//! The `replication_*` options the applier and the replica set read, as set by `box.cfg`
//! (validated in lua/box/cfg_check.lua). Defaults are Tarantool 2.6's.

use std::cell::Cell;
use std::time::Duration;

/// The options; `connect_quorum` None means "all of them" (Tarantool's default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicationCfg {
    /// Heartbeat and ACK period; reconnects are this far apart.
    pub timeout: f64,
    /// How long box.cfg waits for the peers to answer at start.
    pub connect_timeout: f64,
    pub connect_quorum: Option<u32>,
    /// An upstream further behind than this (seconds) is still syncing.
    pub sync_lag: f64,
    /// How long box.cfg waits for the upstreams to sync before leaving them orphaned.
    pub sync_timeout: f64,
    /// A duplicate key from an upstream turns its row into a NOP instead of stopping.
    pub skip_conflict: bool,
}

impl Default for ReplicationCfg {
    fn default() -> Self {
        ReplicationCfg {
            timeout: 1.0,
            connect_timeout: 30.0,
            connect_quorum: None,
            sync_lag: 10.0,
            sync_timeout: 300.0,
            skip_conflict: false,
        }
    }
}

/// Silence from an upstream for this many `replication_timeout`s breaks the connection
/// (`replication_disconnect_timeout`): the master sends a heartbeat every timeout, so four
/// missed ones mean it is gone, not just idle.
const DISCONNECT_TIMEOUTS: f64 = 4.0;

impl ReplicationCfg {
    pub fn disconnect_timeout(&self) -> Duration {
        secs(self.timeout * DISCONNECT_TIMEOUTS)
    }

    /// Pause between reconnection attempts (`replication_reconnect_interval`).
    pub fn reconnect_interval(&self) -> Duration {
        secs(self.timeout)
    }

    /// The upstreams that must be synced for the instance to leave orphan mode, of `total`.
    pub fn quorum(&self, total: usize) -> usize {
        self.connect_quorum.map_or(total, |q| (q as usize).min(total))
    }
}

/// Seconds as a Duration, non-finite or negative values clamped (a huge sync_lag is "never").
pub fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
    } else if s > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    }
}

thread_local! {
    static CFG: Cell<ReplicationCfg> = Cell::new(ReplicationCfg::default());
}

pub fn get() -> ReplicationCfg {
    CFG.with(Cell::get)
}

pub fn update(f: impl FnOnce(&mut ReplicationCfg)) {
    CFG.with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

/// Sets option `key` from its box.cfg value (checked already; nil means the default).
pub fn set(key: &str, value: &mlua::Value) {
    let number = match value {
        mlua::Value::Integer(i) => Some(*i as f64),
        mlua::Value::Number(n) => Some(*n),
        _ => None,
    };
    let d = ReplicationCfg::default();
    update(|c| match key {
        "replication_timeout" => c.timeout = number.unwrap_or(d.timeout),
        "replication_connect_timeout" => c.connect_timeout = number.unwrap_or(d.connect_timeout),
        "replication_connect_quorum" => c.connect_quorum = number.map(|n| n.max(0.0) as u32),
        "replication_sync_lag" => c.sync_lag = number.unwrap_or(f64::INFINITY),
        "replication_sync_timeout" => c.sync_timeout = number.unwrap_or(d.sync_timeout),
        "replication_skip_conflict" => c.skip_conflict = value.as_boolean().unwrap_or(false),
        _ => {}
    });
}

/// Every option from the first box.cfg's table.
pub fn load(cfg: &mlua::Table) -> mlua::Result<()> {
    for key in [
        "replication_timeout",
        "replication_connect_timeout",
        "replication_connect_quorum",
        "replication_sync_lag",
        "replication_sync_timeout",
        "replication_skip_conflict",
    ] {
        set(key, &cfg.get::<mlua::Value>(key)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_all_unless_set_and_never_above_the_total() {
        let mut c = ReplicationCfg::default();
        assert_eq!(c.quorum(4), 4);
        c.connect_quorum = Some(2);
        assert_eq!(c.quorum(4), 2);
        assert_eq!(c.quorum(1), 1);
        c.connect_quorum = Some(0);
        assert_eq!(c.quorum(3), 0);
    }

    #[test]
    fn timeouts_follow_replication_timeout() {
        let c = ReplicationCfg {
            timeout: 0.25,
            ..ReplicationCfg::default()
        };
        assert_eq!(c.disconnect_timeout(), Duration::from_secs(1));
        assert_eq!(c.reconnect_interval(), Duration::from_millis(250));
        assert_eq!(secs(f64::INFINITY), Duration::MAX);
        assert_eq!(secs(-1.0), Duration::ZERO);
    }
}
