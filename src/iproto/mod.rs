//! IPROTO, Tarantool's binary protocol (spec/box.md §1).
//!
//! [`codec`] is the wire format as pure functions over byte slices: the greeting, packet
//! framing, request decoding with Tarantool 2.6's error texts, and byte-exact responses. It
//! knows nothing of sockets, sessions or Lua; the server and the net.box client sit on it.
//! [`request`] encodes the client's requests as net.box writes them. [`server`] is
//! `box.cfg{listen}`; [`workers`] are the fibers it serves Lua requests in.

pub mod codec;
pub mod request;
pub mod server;
pub mod workers;
