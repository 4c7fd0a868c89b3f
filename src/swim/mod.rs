//! SWIM membership, wire-compatible with Tarantool 2.6's `swim` module.
//!
//! Layers, bottom up (see `../shared/spec/swim.md` for the facts each follows):
//! - [`proto`]: the wire format, packets as Rust values and their byte-exact encoding;
//! - [`crypto`]: the packet codecs of `set_codec` (none, AES/DES in OpenSSL EVP modes, AES-GCM);
//! - `core`: the protocol as a pure state machine (time and randomness are inputs);
//! - `udp`: the tokio driver (`timers`: one timer for all its instances); `lua`: the `swim`
//!   Lua module.
//!
//! The simulator in `crate::sim` runs many cores over a fake network from a seed.

pub mod core;
pub mod crypto;
pub mod lua;
pub mod member;
mod member_index;
pub mod news;
mod payloads;
pub mod proto;
mod timers;
pub mod udp;
