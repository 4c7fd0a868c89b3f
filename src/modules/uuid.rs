//! `uuid`: Tarantool's UUIDs, which are `struct tt_uuid` cdata with a metatype.
//!
//! They are FFI cdata rather than userdata so that they look the same to scripts
//! (`ffi.typeof(u)`, field access, `cdata<struct tt_uuid>`) and `==` between two UUIDs works.
//! The struct keeps its fields in host byte order, so `u:bin()` (and `'l'`/`'h'`) is the
//! struct's memory and `'b'`/`'n'` is the RFC 4122 byte order. Only the random source is
//! Rust.

use mlua::prelude::*;

const UUID_LUA: &str = r#"
local random = ...
local ffi = require('ffi')

-- Another module (msgpack, box) may have declared the struct already.
pcall(ffi.cdef, [[
struct tt_uuid {
    uint32_t time_low;
    uint16_t time_mid;
    uint16_t time_hi_and_version;
    uint8_t clock_seq_hi_and_reserved;
    uint8_t clock_seq_low;
    uint8_t node[6];
};
]])

local uuid_t = ffi.typeof('struct tt_uuid')
local istype, ffi_string, ffi_copy = ffi.istype, ffi.string, ffi.copy
local byte, format, sub = string.byte, string.format, string.sub

-- Swaps the three integer fields between host (little-endian) and RFC byte order; the
-- swap is its own inverse.
local function swap(s)
    return sub(s, 4, 4) .. sub(s, 3, 3) .. sub(s, 2, 2) .. sub(s, 1, 1) ..
        sub(s, 6, 6) .. sub(s, 5, 5) .. sub(s, 8, 8) .. sub(s, 7, 7) .. sub(s, 9)
end

local function big_endian(order)
    if order == nil or order == 'l' or order == 'h' then
        return false
    elseif order == 'b' or order == 'n' then
        return true
    end
    error('builtin/uuid.lua:54: invalid byteorder, valid is l, b, h, n', 0)
end

local function from_host_bytes(s)
    local u = uuid_t()
    ffi_copy(u, s, 16)
    return u
end

local function to_str(u)
    local n = u.node
    return format('%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x',
        u.time_low, u.time_mid, u.time_hi_and_version,
        u.clock_seq_hi_and_reserved, u.clock_seq_low,
        n[0], n[1], n[2], n[3], n[4], n[5])
end

local function to_bin(u, order)
    local s = ffi_string(u, 16)
    if big_endian(order) then
        return swap(s)
    end
    return s
end

local function new()
    return from_host_bytes(swap(random()))
end

local HEX36 = '^' .. string.rep('%x', 8) .. '%-' .. string.rep('%x', 4) .. '%-' ..
    string.rep('%x', 4) .. '%-' .. string.rep('%x', 4) .. '%-' .. string.rep('%x', 12) .. '$'

local function fromstr(s)
    if type(s) ~= 'string' then
        error('builtin/uuid.lua:38: fromstr(str)', 0)
    end
    if #s ~= 36 or not s:find(HEX36) then
        return nil
    end
    local hex = s:gsub('%-', '')
    local bytes = {}
    for i = 1, 32, 2 do
        bytes[#bytes + 1] = string.char(tonumber(sub(hex, i, i + 1), 16))
    end
    local rfc = table.concat(bytes)
    -- Like Tarantool, accept only the NCS, RFC 4122 and Microsoft variants.
    local v = byte(rfc, 9)
    if v >= 0xe0 then
        return nil
    end
    return from_host_bytes(swap(rfc))
end

local function frombin(s, order)
    if type(s) ~= 'string' or #s ~= 16 then
        error('builtin/uuid.lua:73: frombin(bin, [byteorder])', 0)
    end
    if big_endian(order) then
        s = swap(s)
    end
    return from_host_bytes(s)
end

local function is_uuid(v)
    return istype(uuid_t, v)
end

local methods = {}

methods.str = function(u)
    if not is_uuid(u) then
        error('Usage: uuid:str()', 0)
    end
    return to_str(u)
end

methods.bin = function(u, order)
    if not is_uuid(u) then
        error('Usage: uuid:bin([byteorder])', 0)
    end
    return to_bin(u, order)
end

methods.isnil = function(u)
    if not is_uuid(u) then
        error('Usage: uuid:isnil()', 0)
    end
    return u.time_low == 0 and u.time_mid == 0 and u.time_hi_and_version == 0 and
        u.clock_seq_hi_and_reserved == 0 and u.clock_seq_low == 0 and
        u.node[0] == 0 and u.node[1] == 0 and u.node[2] == 0 and
        u.node[3] == 0 and u.node[4] == 0 and u.node[5] == 0
end

ffi.metatype(uuid_t, {
    __index = function(u, key)
        local m = methods[key]
        if m == nil then
            error(format("'struct tt_uuid' has no member named '%s'", tostring(key)), 2)
        end
        return m
    end,
    __tostring = to_str,
    __eq = function(a, b)
        if not is_uuid(a) or not is_uuid(b) then
            return false
        end
        return ffi_string(a, 16) == ffi_string(b, 16)
    end,
})

local m = {
    new = new,
    fromstr = fromstr,
    frombin = frombin,
    is_uuid = is_uuid,
    NULL = uuid_t(),
    str = function()
        return to_str(new())
    end,
    bin = function(order)
        return to_bin(new(), order)
    end,
}
return setmetatable(m, {
    __call = function()
        return new()
    end,
})
"#;

/// 16 random bytes of a version 4 UUID, in RFC 4122 byte order.
fn random_v4() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

pub fn module(lua: &Lua) -> LuaResult<LuaTable> {
    let random = lua.create_function(|lua, ()| lua.create_string(random_v4()))?;
    lua.load(UUID_LUA).set_name("=builtin/uuid.lua").call(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_rfc_variant() {
        let b = random_v4();
        assert_eq!(b[6] >> 4, 4);
        assert_eq!(b[8] & 0xc0, 0x80);
        assert_ne!(random_v4(), b);
    }
}
