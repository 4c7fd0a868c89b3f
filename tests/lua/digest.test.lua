local tap = require('tap')
local digest = require('digest')
local test = tap.test('digest')
test:plan(31)

-- Vectors produced by Tarantool 2.6.0.
test:is(digest.sha1_hex('abc'), 'a9993e364706816aba3e25717850c26c9cd0d89d', 'sha1_hex')
test:is(digest.sha224_hex('abc'), '23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7', 'sha224_hex')
test:is(digest.sha256_hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', 'sha256_hex')
test:is(digest.sha384_hex('abc'),
    'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7',
    'sha384_hex')
test:is(digest.sha512_hex(''),
    'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e',
    'sha512_hex')
test:is(digest.md5_hex('abc'), '900150983cd24fb0d6963f7d28e17f72', 'md5_hex')
test:is(#digest.sha1('abc') .. ',' .. #digest.md5('abc') .. ',' .. #digest.sha512('abc'), '20,16,64', 'raw digests')
test:is(digest.base64_encode(digest.sha1('abc')), 'qZk+NkcGgWq6PiVxeFDCbJzQ2J0=', 'raw sha1')

local line = string.rep('eHh4', 18)
test:is(digest.base64_encode(string.rep('x', 54)), line .. '\n', 'base64 wraps after 72 columns')
test:is(digest.base64_encode(string.rep('x', 55)), line .. '\neA==', 'base64 wraps and pads')
test:is(digest.base64_encode(string.rep('x', 55), { nowrap = true }), line .. 'eA==', 'nowrap')
test:is(digest.base64_encode('ab', { nopad = true }), 'YWI', 'nopad')
test:is(digest.base64_encode('\255\254\253\252', { urlsafe = true }), '__79_A', 'urlsafe')
test:is(digest.base64_encode('\255\254\253\252'), '//79/A==', 'standard alphabet')
test:is(digest.base64_decode('YW Jj'), 'abc', 'decode skips junk')
test:is(digest.base64_decode('_-_-'), digest.base64_decode('/+/+'), 'decode takes both alphabets')
test:is(digest.base64_decode('YQ==YWJj'), 'a\6\22&', 'decode skips = too')

test:is(digest.crc32('abc'), 3384066120, 'crc32 is Tarantool crc32c')
test:is(digest.crc32_update(0, 'abc'), 1445960909, 'crc32_update')
local c = digest.crc32.new()
c:update('a')
c:update('bc')
test:is(c:result(), digest.crc32('abc'), 'incremental crc32')
test:is(digest.crc32.crc_begin, 4294967295, 'crc_begin')
test:is(digest.murmur('abc'), 3408160902, 'murmur')
local m = digest.murmur.new({ seed = 1 })
m:update('abc')
test:is(m:result(), 2859854335, 'murmur with a seed')
test:is(digest.guava(1, 10), 6, 'guava')
test:is(#digest.urandom(10), 10, 'urandom')

test:is(select(2, pcall(digest.sha1, 1)), 'builtin/digest.lua:210: Usage: digest.sha1(string)', 'sha1 usage')
test:is(select(2, pcall(digest.sha256_hex)), 'builtin/digest.lua:255: Usage: digest.sha256_hex(string)',
    'sha256_hex usage')
test:is(select(2, pcall(digest.md5, {})), 'builtin/crypto.lua:323: Usage: digest.md5(string)', 'md5 usage')
test:is(select(2, pcall(digest.base64_encode, 'a', 1)),
    'builtin/digest.lua:167: Usage: digest.base64_encode(string[, table])', 'base64_encode usage')
test:is(select(2, pcall(digest.crc32, 1)), 'builtin/digest.lua:139: Usage digest.crc32(string)', 'crc32 usage')
test:is(select(2, pcall(digest.crc32_update, 'x', 'a')),
    "bad argument #1 to '?' (cannot convert 'nil' to 'unsigned int')", 'crc32_update usage')
os.exit(test:check() and 0 or 1)
