//! Errors as Lua code sees them.
//!
//! Tarantool raises two kinds of errors: plain strings from `luaL_error` (argument errors such
//! as `fiber.sleep(delay): bad arguments`) and box.error objects (`fiber is cancelled`,
//! `Space 'x' does not exist`). A Rust callback in mlua can only fail with an `mlua::Error`,
//! which Lua receives as an opaque userdata. So the catch points that Lua code has (`pcall`,
//! `xpcall`, `coroutine.resume`, the fiber trampoline, the console) pass every caught error
//! through [`converter`]: a `RuntimeError` becomes its message string and a [`BoxError`]
//! becomes an [`ErrorObject`], so scripts see exactly what Tarantool would give them.

use std::fmt;
use std::sync::Arc;

use mlua::prelude::*;

/// A Tarantool box.error raised from Rust: it reaches Lua as an [`ErrorObject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxError {
    /// Tarantool's error class name, e.g. `ClientError`, `FiberIsCancelled`.
    pub kind: &'static str,
    /// Tarantool's error code (`box.error.*`); None for classes without one (SystemError).
    pub code: Option<u32>,
    pub message: String,
    /// The errno of a SystemError (`e.errno`).
    pub errno: Option<i32>,
}

impl fmt::Display for BoxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BoxError {}

impl BoxError {
    pub fn new(kind: &'static str, code: u32, message: impl Into<String>) -> BoxError {
        BoxError {
            kind,
            code: Some(code),
            message: message.into(),
            errno: None,
        }
    }

    /// A SystemError: no code, an errno (`fio: No such file or directory`, errno 2).
    pub fn system(message: impl Into<String>, errno: i32) -> BoxError {
        BoxError {
            kind: "SystemError",
            code: None,
            message: message.into(),
            errno: Some(errno),
        }
    }

    pub fn into_lua_err(self) -> LuaError {
        LuaError::ExternalError(Arc::new(self))
    }
}

/// Tarantool's ER_PROC_LUA-free cancellation error: code 0 in 2.6, class FiberIsCancelled.
pub fn fiber_is_cancelled() -> LuaError {
    BoxError::new("FiberIsCancelled", 0, super::fiber::CANCELLED).into_lua_err()
}

/// A box.error object in Lua: `e.message`, `e.type`, `e.code`, `tostring(e)`, `e:unpack()`,
/// `e:raise()`.
#[derive(Debug, Clone)]
pub struct ErrorObject(pub BoxError);

impl LuaUserData for ErrorObject {
    fn add_fields<F: LuaUserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("message", |_, this| Ok(this.0.message.clone()));
        fields.add_field_method_get("type", |_, this| Ok(this.0.kind));
        fields.add_field_method_get("base_type", |_, this| Ok(this.0.kind));
        fields.add_field_method_get("code", |_, this| Ok(this.0.code));
        fields.add_field_method_get("errno", |_, this| Ok(this.0.errno));
    }

    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(LuaMetaMethod::ToString, |_, this, ()| Ok(this.0.message.clone()));
        methods.add_method("unpack", |lua, this, ()| {
            let t = lua.create_table()?;
            t.set("type", this.0.kind)?;
            t.set("code", this.0.code)?;
            t.set("message", this.0.message.clone())?;
            t.set("base_type", this.0.kind)?;
            t.set("errno", this.0.errno)?;
            Ok(t)
        });
        methods.add_method("raise", |_, this, ()| -> LuaResult<()> {
            Err(this.0.clone().into_lua_err())
        });
    }
}

/// The innermost cause of an mlua error, without mlua's decorations.
fn root_cause(e: &LuaError) -> &LuaError {
    match e {
        LuaError::CallbackError { cause, .. } => root_cause(cause),
        LuaError::WithContext { cause, .. } => root_cause(cause),
        other => other,
    }
}

/// The message of an error as Tarantool would print it.
pub fn message(e: &LuaError) -> String {
    match root_cause(e) {
        LuaError::RuntimeError(m) => m.clone(),
        LuaError::SyntaxError { message, .. } => message.clone(),
        LuaError::MemoryError(m) => m.clone(),
        LuaError::ExternalError(ext) => ext.to_string(),
        LuaError::BadArgument { pos, name, cause, .. } => {
            let name = name.as_deref().unwrap_or("?");
            format!("bad argument #{pos} to '{name}' ({})", message(cause))
        }
        LuaError::FromLuaConversionError { from, to, message: m } => match m {
            Some(m) => format!("{from} expected to be {to}: {m}"),
            None => format!("{to} expected, got {from}"),
        },
        other => other.to_string(),
    }
}

thread_local! {
    /// The last box error caught by Lua (Tarantool's diagnostics area): `box.error.last()`,
    /// and what `box.error()` with no arguments raises again.
    static LAST_ERROR: std::cell::RefCell<Option<BoxError>> = const { std::cell::RefCell::new(None) };
}

pub fn last_error() -> Option<BoxError> {
    LAST_ERROR.with(|l| l.borrow().clone())
}

pub fn set_last_error(e: Option<BoxError>) {
    LAST_ERROR.with(|l| *l.borrow_mut() = e);
}

/// Converts an mlua error into the value that Lua code should catch.
pub fn to_lua_value(lua: &Lua, e: &LuaError) -> LuaResult<LuaValue> {
    let cause = root_cause(e);
    if let LuaError::ExternalError(ext) = cause {
        if let Some(be) = ext.downcast_ref::<BoxError>() {
            set_last_error(Some(be.clone()));
            return lua.create_userdata(ErrorObject(be.clone())).map(LuaValue::UserData);
        }
    }
    lua.create_string(message(cause)).map(LuaValue::String)
}

/// The Lua function that the prelude and the fiber trampoline call on caught userdata.
pub fn converter(lua: &Lua) -> LuaResult<LuaFunction> {
    lua.create_function(|lua, v: LuaValue| match v {
        LuaValue::Error(e) => to_lua_value(lua, &e),
        other => Ok(other),
    })
}

/// True if a caught error value is `fiber is cancelled` (Tarantool does not log those).
pub fn is_fiber_cancelled(_lua: &Lua, v: &LuaValue) -> bool {
    match v {
        LuaValue::UserData(ud) => ud
            .borrow::<ErrorObject>()
            .map(|e| e.0.kind == "FiberIsCancelled")
            .unwrap_or(false),
        LuaValue::Error(e) => message(e) == super::fiber::CANCELLED,
        _ => false,
    }
}

/// `tostring(err)` as Lua would print it, for logs and `LuajitError:` lines.
pub fn describe(lua: &Lua, v: &LuaValue) -> String {
    match v {
        LuaValue::String(s) => s.to_string_lossy(),
        LuaValue::Error(e) => message(e),
        other => lua
            .globals()
            .get::<LuaFunction>("tostring")
            .and_then(|f| f.call::<String>(other.clone()))
            .unwrap_or_else(|_| format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::arc_with_non_send_sync)] // mlua's own error type holds the Arc
    fn callback_errors_lose_mlua_decorations() {
        let inner = LuaError::runtime("fiber.sleep(delay): bad arguments");
        let wrapped = LuaError::CallbackError {
            traceback: "stack traceback: ...".into(),
            cause: Arc::new(inner),
        };
        assert_eq!(message(&wrapped), "fiber.sleep(delay): bad arguments");
    }

    #[test]
    fn box_errors_become_error_objects() {
        let lua = Lua::new();
        let v = to_lua_value(&lua, &fiber_is_cancelled()).unwrap();
        assert!(is_fiber_cancelled(&lua, &v));
        let text: String = lua.load("return tostring(...)").call(v).unwrap();
        assert_eq!(text, "fiber is cancelled");
    }
}
