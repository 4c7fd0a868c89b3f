//! Creating the Lua state: the standard library Tarantool exposes (with `ffi`, `bit`, `jit`,
//! `debug`), the prelude that adapts it, the `arg` table, `box.NULL`, and the built-in modules.

use mlua::prelude::*;

use super::{cdata, errors, output};

const PRELUDE: &str = include_str!("../../lua/prelude.lua");

/// What the `arg` table holds: `arg[-1]` the binary, `arg[0]` the script, `arg[1..]` its
/// arguments.
#[derive(Debug, Clone, Default)]
pub struct ScriptArgs {
    pub binary: String,
    pub script: Option<String>,
    pub args: Vec<String>,
}

fn exit(_: &Lua, code: Option<LuaValue>) -> LuaResult<()> {
    let code = match code {
        None | Some(LuaValue::Nil) | Some(LuaValue::Boolean(true)) => 0,
        Some(LuaValue::Boolean(false)) => 1,
        Some(LuaValue::Integer(n)) => n as i32,
        Some(LuaValue::Number(n)) => n as i32,
        Some(_) => 0,
    };
    output::flush();
    std::process::exit(code)
}

/// A fresh Lua state with node's runtime installed.
pub fn new_lua(args: &ScriptArgs) -> LuaResult<Lua> {
    // Safety: `ffi` is what makes the state "unsafe" for mlua; Tarantool scripts use it.
    let lua = unsafe {
        Lua::unsafe_new_with(
            LuaStdLib::ALL_SAFE | LuaStdLib::FFI | LuaStdLib::DEBUG,
            LuaOptions::default(),
        )
    };
    cdata::install(&lua)?;
    let write = lua.create_function(|_, s: LuaString| {
        output::stdout_bytes(&s.as_bytes());
        Ok(())
    })?;
    let raw_resume: LuaFunction = lua.load(PRELUDE).set_name("=prelude").call((
        errors::converter(&lua)?,
        write,
        lua.create_function(exit)?,
        LuaValue::LightUserData(Lua::poll_pending()),
        super::fiber::yield_marker(&lua)?,
    ))?;
    // fiber.create resumes a new fiber with the unwrapped resume (see lua/fiber.lua).
    lua.set_named_registry_value(super::fiber::RAW_RESUME, raw_resume)?;

    let arg = lua.create_table()?;
    arg.raw_set(-1, args.binary.as_str())?;
    if let Some(script) = &args.script {
        arg.raw_set(0, script.as_str())?;
    }
    for (i, a) in args.args.iter().enumerate() {
        arg.raw_set(i + 1, a.as_str())?;
    }
    lua.globals().set("arg", arg)?;

    let boxt = lua.create_table()?;
    boxt.set("NULL", cdata::null(&lua)?)?;
    boxt.set("tuple", crate::box_::lua_tuple::module(&lua)?)?;
    lua.globals().set("box", boxt)?;

    crate::modules::install(&lua)?;
    crate::box_::lua::install(&lua)?;
    Ok(lua)
}
