//! LuaJIT FFI cdata that Tarantool scripts see: `uint64_t` / `int64_t` numbers (`1ULL`,
//! `fiber.time64()`, big MsgPack integers) and the NULL pointer that `box.NULL` is.
//!
//! Tarantool returns 64-bit integers as cdata, not as userdata: in Lua 5.1 `__eq` is never
//! called between a userdata and a number, so `x == 5` could not work for userdata. We build
//! and recognise cdata through small Lua helpers kept in the registry, because mlua has no
//! FFI API of its own.

use mlua::prelude::*;

/// What a cdata value is, as far as serializers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cdata {
    U64(u64),
    I64(i64),
    /// A NULL pointer: `box.NULL`, `json.NULL`, `ffi.cast('void *', 0)`.
    Null,
    /// Any other cdata (structs, non-NULL pointers, ...).
    Other,
}

struct Helpers {
    make_u64: LuaRegistryKey,
    make_i64: LuaRegistryKey,
    classify: LuaRegistryKey,
    null: LuaRegistryKey,
}

const HELPERS_LUA: &str = r#"
local ffi = require('ffi')
local u64_t = ffi.typeof('uint64_t')
local i64_t = ffi.typeof('int64_t')
local istype = ffi.istype
local function make_u64(hi, lo) return u64_t(hi) * 4294967296ULL + lo end
local function make_i64(hi, lo) return ffi.cast(i64_t, u64_t(hi) * 4294967296ULL + lo) end
-- 1 = uint64, 2 = int64, 3 = NULL pointer, 0 = other
local function classify(v)
    if istype(u64_t, v) then return 1 end
    if istype(i64_t, v) then return 2 end
    if v == nil then return 3 end
    return 0
end
return make_u64, make_i64, classify, ffi.cast('void *', 0)
"#;

/// Installs the helpers; called once when the Lua state is created.
pub fn install(lua: &Lua) -> LuaResult<()> {
    let (make_u64, make_i64, classify, null): (LuaFunction, LuaFunction, LuaFunction, LuaValue) =
        lua.load(HELPERS_LUA).set_name("=cdata").eval()?;
    lua.set_app_data(Helpers {
        make_u64: lua.create_registry_value(make_u64)?,
        make_i64: lua.create_registry_value(make_i64)?,
        classify: lua.create_registry_value(classify)?,
        null: lua.create_registry_value(null)?,
    });
    Ok(())
}

fn helper(lua: &Lua, pick: fn(&Helpers) -> &LuaRegistryKey) -> LuaResult<LuaFunction> {
    let helpers = lua
        .app_data_ref::<Helpers>()
        .ok_or_else(|| LuaError::runtime("cdata helpers are not installed"))?;
    lua.registry_value(pick(&helpers))
}

/// A `uint64_t` cdata holding `v`.
pub fn push_u64(lua: &Lua, v: u64) -> LuaResult<LuaValue> {
    helper(lua, |h| &h.make_u64)?.call((v >> 32, v & 0xffff_ffff))
}

/// An `int64_t` cdata holding `v`.
pub fn push_i64(lua: &Lua, v: i64) -> LuaResult<LuaValue> {
    let bits = v as u64;
    helper(lua, |h| &h.make_i64)?.call((bits >> 32, bits & 0xffff_ffff))
}

/// `box.NULL`: a `void *` NULL cdata, equal to `nil` in comparisons.
pub fn null(lua: &Lua) -> LuaResult<LuaValue> {
    let helpers = lua
        .app_data_ref::<Helpers>()
        .ok_or_else(|| LuaError::runtime("cdata helpers are not installed"))?;
    lua.registry_value(&helpers.null)
}

/// Tells what a value is if it is a cdata; `None` for every other Lua type.
pub fn classify(lua: &Lua, value: &LuaValue) -> LuaResult<Option<Cdata>> {
    if !matches!(value, LuaValue::Other(_)) {
        return Ok(None);
    }
    let kind: u8 = helper(lua, |h| &h.classify)?.call(value.clone())?;
    // Safety: for a cdata, lua_topointer returns the address of its payload; the classifier
    // just checked that the payload is an 8-byte integer.
    let payload = || unsafe { *(value.to_pointer() as *const u64) };
    Ok(Some(match kind {
        1 => Cdata::U64(payload()),
        2 => Cdata::I64(payload() as i64),
        3 => Cdata::Null,
        _ => Cdata::Other,
    }))
}

/// True for `nil` and for `box.NULL`.
pub fn is_nil_or_null(lua: &Lua, value: &LuaValue) -> bool {
    match value {
        LuaValue::Nil => true,
        LuaValue::Other(_) => matches!(classify(lua, value), Ok(Some(Cdata::Null))),
        _ => false,
    }
}

/// A bare Lua state with FFI and these helpers, for unit tests of modules built on them.
#[cfg(test)]
pub fn test_lua() -> Lua {
    // Safety: FFI is what makes the state "unsafe" for mlua; tests use it as scripts do.
    let lua = unsafe { Lua::unsafe_new_with(LuaStdLib::ALL_SAFE | LuaStdLib::FFI, LuaOptions::default()) };
    install(&lua).expect("cdata helpers install in a fresh state");
    lua
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> Lua {
        test_lua()
    }

    #[test]
    fn u64_round_trips_through_cdata() {
        let lua = lua();
        for v in [0u64, 1, 1 << 53, (1 << 53) + 1, u64::MAX] {
            let c = push_u64(&lua, v).unwrap();
            assert_eq!(classify(&lua, &c).unwrap(), Some(Cdata::U64(v)));
            let text: String = lua.load("return tostring(...)").call(c).unwrap();
            assert_eq!(text, format!("{v}ULL"));
        }
    }

    #[test]
    fn i64_round_trips_through_cdata() {
        let lua = lua();
        for v in [0i64, -1, i64::MIN, i64::MAX, -(1 << 60)] {
            let c = push_i64(&lua, v).unwrap();
            assert_eq!(classify(&lua, &c).unwrap(), Some(Cdata::I64(v)));
        }
    }

    #[test]
    fn null_is_recognised_and_equals_nil() {
        let lua = lua();
        let n = null(&lua).unwrap();
        assert!(is_nil_or_null(&lua, &n));
        let eq: bool = lua.load("return ... == nil").call(n).unwrap();
        assert!(eq);
        assert_eq!(classify(&lua, &LuaValue::Integer(1)).unwrap(), None);
    }
}
