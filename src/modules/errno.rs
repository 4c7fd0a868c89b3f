//! `errno`: the C errno of the Lua thread, its constants and `strerror`, as in Tarantool.
//!
//! `errno()` returns the current value and `errno(n)` sets it (returning the old one);
//! the constants are reachable through the module's metatable, so `pairs(errno)` shows only
//! `strerror`, and adding a constant is an error, exactly as Tarantool behaves.

use std::ffi::CStr;

use mlua::prelude::*;

/// The constants Tarantool 2.6 exports, by name.
const CONSTANTS: &[(&str, i32)] = &[
    ("E2BIG", libc::E2BIG),
    ("EACCES", libc::EACCES),
    ("EADDRINUSE", libc::EADDRINUSE),
    ("EADDRNOTAVAIL", libc::EADDRNOTAVAIL),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EAGAIN", libc::EAGAIN),
    ("EALREADY", libc::EALREADY),
    ("EBADF", libc::EBADF),
    ("EBADMSG", libc::EBADMSG),
    ("EBUSY", libc::EBUSY),
    ("ECANCELED", libc::ECANCELED),
    ("ECHILD", libc::ECHILD),
    ("ECONNABORTED", libc::ECONNABORTED),
    ("ECONNREFUSED", libc::ECONNREFUSED),
    ("ECONNRESET", libc::ECONNRESET),
    ("EDEADLK", libc::EDEADLK),
    ("EDESTADDRREQ", libc::EDESTADDRREQ),
    ("EDOM", libc::EDOM),
    ("EDQUOT", libc::EDQUOT),
    ("EEXIST", libc::EEXIST),
    ("EFAULT", libc::EFAULT),
    ("EFBIG", libc::EFBIG),
    ("EHOSTUNREACH", libc::EHOSTUNREACH),
    ("EIDRM", libc::EIDRM),
    ("EILSEQ", libc::EILSEQ),
    ("EINPROGRESS", libc::EINPROGRESS),
    ("EINTR", libc::EINTR),
    ("EINVAL", libc::EINVAL),
    ("EIO", libc::EIO),
    ("EISCONN", libc::EISCONN),
    ("EISDIR", libc::EISDIR),
    ("ELOOP", libc::ELOOP),
    ("EMFILE", libc::EMFILE),
    ("EMLINK", libc::EMLINK),
    ("EMSGSIZE", libc::EMSGSIZE),
    ("EMULTIHOP", libc::EMULTIHOP),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("ENETDOWN", libc::ENETDOWN),
    ("ENETRESET", libc::ENETRESET),
    ("ENETUNREACH", libc::ENETUNREACH),
    ("ENFILE", libc::ENFILE),
    ("ENOBUFS", libc::ENOBUFS),
    ("ENODATA", libc::ENODATA),
    ("ENODEV", libc::ENODEV),
    ("ENOENT", libc::ENOENT),
    ("ENOEXEC", libc::ENOEXEC),
    ("ENOLCK", libc::ENOLCK),
    ("ENOLINK", libc::ENOLINK),
    ("ENOMEM", libc::ENOMEM),
    ("ENOMSG", libc::ENOMSG),
    ("ENOPROTOOPT", libc::ENOPROTOOPT),
    ("ENOSPC", libc::ENOSPC),
    ("ENOSR", libc::ENOSR),
    ("ENOSTR", libc::ENOSTR),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTCONN", libc::ENOTCONN),
    ("ENOTDIR", libc::ENOTDIR),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("ENOTSOCK", libc::ENOTSOCK),
    ("ENOTSUP", libc::ENOTSUP),
    ("ENOTTY", libc::ENOTTY),
    ("ENXIO", libc::ENXIO),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EOVERFLOW", libc::EOVERFLOW),
    ("EPERM", libc::EPERM),
    ("EPIPE", libc::EPIPE),
    ("EPROTO", libc::EPROTO),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("EPROTOTYPE", libc::EPROTOTYPE),
    ("ERANGE", libc::ERANGE),
    ("EROFS", libc::EROFS),
    ("ESPIPE", libc::ESPIPE),
    ("ESRCH", libc::ESRCH),
    ("ESTALE", libc::ESTALE),
    ("ETIME", libc::ETIME),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ETXTBSY", libc::ETXTBSY),
    ("EWOULDBLOCK", libc::EWOULDBLOCK),
    ("EXDEV", libc::EXDEV),
];

/// The calling thread's errno.
pub fn get() -> i32 {
    // Safety: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno, as a failed Tarantool call leaves it.
pub fn set(n: i32) {
    // Safety: as in `get`.
    unsafe { *libc::__errno_location() = n }
}

/// Records the errno of a failed std I/O call, so `errno()` in Lua sees it.
pub fn set_from(e: &std::io::Error) {
    set(e.raw_os_error().unwrap_or(libc::EIO));
}

/// `strerror(n)` without Rust's " (os error N)" suffix ("Unknown error N" for unknown codes).
pub fn strerror(n: i32) -> String {
    let mut buf = [0 as libc::c_char; 256];
    // Safety: the buffer is writable for its whole length; the XSI strerror_r always leaves a
    // NUL-terminated string in it (glibc writes "Unknown error N" for unknown codes).
    let rc = unsafe { libc::strerror_r(n, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 && buf[0] == 0 {
        return format!("Unknown error {n}");
    }
    // Safety: see above; the text is NUL-terminated within the buffer.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

const ERRNO_LUA: &str = r#"
local constants, get, set, strerror = ...
local m = {}
m.strerror = function(n)
    if n == nil then
        n = get()
    end
    local v = tonumber(n)
    if v == nil then
        error("builtin/errno.lua:12: bad argument #1 to 'strerror' (cannot convert 'nil' to 'int')", 0)
    end
    return strerror(v)
end
return setmetatable(m, {
    __index = constants,
    __newindex = function()
        error("builtin/errno.lua:19: Can't create new errno constants", 0)
    end,
    __call = function(_, n)
        local old = get()
        if n ~= nil then
            set(tonumber(n) or 0)
        end
        return old
    end,
})
"#;

pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let constants = lua.create_table()?;
    for &(name, value) in CONSTANTS {
        constants.set(name, value)?;
    }
    let get_fn = lua.create_function(|_, ()| Ok(get()))?;
    // errno(n) truncates like a C int assignment.
    let set_fn = lua.create_function(|_, n: f64| {
        set(n as i64 as i32);
        Ok(())
    })?;
    let strerror_fn = lua.create_function(|_, n: f64| Ok(strerror(n as i64 as i32)))?;
    lua.load(ERRNO_LUA)
        .set_name("=builtin/errno.lua")
        .call((constants, get_fn, set_fn, strerror_fn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_matches_libc_texts() {
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert_eq!(strerror(0), "Success");
        assert_eq!(strerror(99999), "Unknown error 99999");
    }

    #[test]
    fn errno_round_trips() {
        set(libc::EEXIST);
        assert_eq!(get(), libc::EEXIST);
        set(0);
        assert_eq!(get(), 0);
    }

    #[test]
    fn constants_have_linux_values() {
        let find = |n: &str| CONSTANTS.iter().find(|c| c.0 == n).map(|c| c.1);
        assert_eq!(find("ENOENT"), Some(2));
        assert_eq!(find("EWOULDBLOCK"), Some(11));
        assert_eq!(CONSTANTS.len(), 79);
    }
}
