//! `http.server` (tarantool/http 1.9.0's API) and `http.client` (Tarantool's built-in), on
//! hyper 1.x running in the Lua thread's LocalSet.

pub mod client;
pub mod server;
