//! `node`: a Rust runtime that embeds LuaJIT and gives Lua scripts Tarantool's API.
//!
//! The binary (`src/main.rs`) is a thin command line over [`runtime::run`]. Everything that
//! touches Lua lives on one thread (a tokio current-thread runtime with a `LocalSet`), the
//! way Tarantool's TX thread owns its Lua state. See `docs/architecture.md`.

#[path = "box/mod.rs"]
pub mod box_;
pub mod iproto;
pub mod modules;
pub mod netbox;
pub mod replication;
pub mod runtime;
pub mod serialize;
pub mod sim;
pub mod swim;
