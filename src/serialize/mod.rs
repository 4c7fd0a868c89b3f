//! Serialization shared by `json`, `yaml`, `msgpack` and the console.
//!
//! PROVISIONAL: a minimal console formatter so the runtime can be exercised; the full YAML
//! emitter (Tarantool's libyaml style) replaces it.

use mlua::prelude::*;

fn scalar(lua: &Lua, v: &LuaValue) -> String {
    match v {
        LuaValue::Nil => "null".into(),
        LuaValue::Boolean(b) => b.to_string(),
        LuaValue::Integer(i) => i.to_string(),
        LuaValue::Number(n) => n.to_string(),
        LuaValue::String(s) => s.to_string_lossy(),
        other => crate::runtime::errors::describe(lua, other),
    }
}

/// Formats a packed table `{n = k, ...}` as the console prints it: one YAML document with
/// one list item per value.
pub fn console_format(lua: &Lua, values: LuaTable) -> LuaResult<String> {
    let n: usize = values.raw_get("n").unwrap_or(0);
    let mut out = String::from("---\n");
    for i in 1..=n {
        let v: LuaValue = values.raw_get(i)?;
        match &v {
            LuaValue::Table(t) => {
                out.push_str("- ");
                for pair in t.pairs::<LuaValue, LuaValue>() {
                    let (k, v) = pair?;
                    out.push_str(&format!("{}: {}\n  ", scalar(lua, &k), scalar(lua, &v)));
                }
                out.push('\n');
            }
            _ => out.push_str(&format!("- {}\n", scalar(lua, &v))),
        }
    }
    out.push_str("...\n");
    Ok(out)
}
