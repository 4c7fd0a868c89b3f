//! `clock`: Tarantool's clocks. The plain variants return seconds as numbers; the `*64`
//! variants return nanoseconds as `uint64_t` cdata, as Tarantool 2.6 does.

use mlua::prelude::*;

use crate::runtime::cdata;

/// Nanoseconds of a POSIX clock.
fn nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // Safety: `ts` is a valid, writable timespec; the clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

fn seconds(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // Safety: as in `nanos`.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Tarantool's clocks are FFI C functions, so any argument is LuaJIT's arity error.
fn no_args(args: &LuaMultiValue) -> LuaResult<()> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(LuaError::runtime("wrong number of arguments for function call"))
    }
}

const CLOCKS: &[(&str, libc::clockid_t)] = &[
    ("realtime", libc::CLOCK_REALTIME),
    ("time", libc::CLOCK_REALTIME),
    ("monotonic", libc::CLOCK_MONOTONIC),
    ("proc", libc::CLOCK_PROCESS_CPUTIME_ID),
    ("thread", libc::CLOCK_THREAD_CPUTIME_ID),
];

const BENCH_LUA: &str = r#"
local proc = ...
return function(fun, ...)
    local t = type(fun)
    if t ~= 'function' then
        local mt = getmetatable(fun)
        if type(mt) ~= 'table' or mt.__call == nil then
            error("builtin/clock.lua:35: attempt to call local 'fun' (a " .. t .. " value)", 0)
        end
    end
    local start = proc()
    local res = { 0, fun(...) }
    res[1] = proc() - start
    return res
end
"#;

pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let m = lua.create_table()?;
    for &(name, clock) in CLOCKS {
        m.set(
            name,
            lua.create_function(move |_, args: LuaMultiValue| {
                no_args(&args)?;
                Ok(seconds(clock))
            })?,
        )?;
        m.set(
            format!("{name}64"),
            lua.create_function(move |lua, args: LuaMultiValue| {
                no_args(&args)?;
                cdata::push_u64(lua, nanos(clock))
            })?,
        )?;
    }
    let proc: LuaFunction = m.get("proc")?;
    let bench: LuaFunction = lua.load(BENCH_LUA).set_name("=builtin/clock.lua").call(proc)?;
    m.set("bench", bench)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_are_sane() {
        let a = nanos(libc::CLOCK_MONOTONIC);
        let b = nanos(libc::CLOCK_MONOTONIC);
        assert!(b >= a);
        // After 2020-01-01 in both units.
        assert!(seconds(libc::CLOCK_REALTIME) > 1.5e9);
        assert!(nanos(libc::CLOCK_REALTIME) > 1_500_000_000_000_000_000);
    }
}
