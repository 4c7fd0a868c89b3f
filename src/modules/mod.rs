//! Built-in modules, reachable with `require(name)` as in Tarantool.
//!
//! Each module is built on first `require` (through `package.preload`), so a script pays
//! only for what it uses. A module written in Lua lives in `lua/` and is embedded.

pub mod clock;
pub mod digest;
pub mod errno;
pub mod fio;
pub mod http;
pub mod json;
pub mod log;
pub mod msgpack;
pub mod socket;
pub mod uuid;
pub mod yaml;

use mlua::prelude::*;

type Loader = fn(&Lua) -> LuaResult<LuaTable>;

/// Modules implemented in Rust.
const RUST_MODULES: &[(&str, Loader)] = &[
    ("fiber", crate::runtime::fiber::module),
    ("log", log::module),
    ("console", crate::runtime::console::module),
    ("json", json::module),
    ("yaml", yaml::module),
    ("msgpack", msgpack::module),
    ("socket", socket::module),
    ("clock", clock::module),
    ("digest", digest::module),
    ("errno", errno::module),
    ("fio", fio::module),
    ("uuid", uuid::module),
    ("swim", crate::swim::lua::module),
    ("http.server", http::server::module),
    ("http.client", http::client::module),
    ("net.box", crate::netbox::lua_module),
    ("net.box.lib", crate::netbox::module),
];

/// Modules implemented in Lua: (name, source).
const LUA_MODULES: &[(&str, &str)] = &[("tap", include_str!("../../lua/tap.lua"))];

/// Registers every built-in module in `package.preload`.
pub fn install(lua: &Lua) -> LuaResult<()> {
    let package: LuaTable = lua.globals().get("package")?;
    let preload: LuaTable = package.get("preload")?;
    for &(name, loader) in RUST_MODULES {
        preload.set(name, lua.create_function(move |lua, ()| loader(lua))?)?;
    }
    for &(name, source) in LUA_MODULES {
        let chunk_name = format!("@builtin/{name}.lua");
        preload.set(
            name,
            lua.create_function(move |lua, ()| lua.load(source).set_name(chunk_name.as_str()).call::<LuaValue>(()))?,
        )?;
    }
    Ok(())
}
