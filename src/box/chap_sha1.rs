//! CHAP-SHA1, Tarantool's only authentication mechanism (spec/box.md §1.8).
//!
//! The server keeps `hash2 = SHA1(SHA1(password))` (base64 in `_user` field 5, under the key
//! `chap-sha1`); the client proves it knows `hash1 = SHA1(password)` by sending
//! `hash1 XOR SHA1(salt[0..20] ++ hash2)`, where `salt` is the greeting's decoded salt.

use sha1::{Digest, Sha1};

use crate::modules::digest::{base64_decode, base64_encode, Base64Options};

/// Bytes in a scramble, a hash and the part of the greeting salt that is used.
pub const SCRAMBLE_SIZE: usize = 20;
/// Length of a base64-encoded hash2 as stored in `_user`.
pub const SCRAMBLE_BASE64_SIZE: usize = 28;
/// `hash2_base64("")`: what `_user` stores for guest, whose only allowed password is empty.
pub const CHAP_SHA1_EMPTY_PASSWORD: &str = "vhvewKp0tNyweZQ+cFKAlsyphfg=";

fn sha1(parts: &[&[u8]]) -> [u8; SCRAMBLE_SIZE] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Only the first 20 bytes of the greeting salt take part (the greeting carries 32).
fn salt_prefix(salt: &[u8]) -> &[u8] {
    &salt[..salt.len().min(SCRAMBLE_SIZE)]
}

fn xor(a: &[u8; SCRAMBLE_SIZE], b: &[u8; SCRAMBLE_SIZE]) -> [u8; SCRAMBLE_SIZE] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// `SHA1(password)`.
pub fn hash1(password: impl AsRef<[u8]>) -> [u8; SCRAMBLE_SIZE] {
    sha1(&[password.as_ref()])
}

/// `SHA1(SHA1(password))`: what the server stores.
pub fn hash2(password: impl AsRef<[u8]>) -> [u8; SCRAMBLE_SIZE] {
    sha1(&[&hash1(password)])
}

/// `hash2` in base64 without line breaks, as `box.schema.user.password()` returns it.
pub fn hash2_base64(password: impl AsRef<[u8]>) -> String {
    encode_hash2(&hash2(password))
}

/// A stored hash2 as `_user` keeps it.
pub fn encode_hash2(hash2: &[u8; SCRAMBLE_SIZE]) -> String {
    let opts = Base64Options {
        nowrap: true,
        ..Base64Options::default()
    };
    base64_encode(hash2, opts).into_iter().map(char::from).collect()
}

/// Decodes a stored hash2 leniently, as Tarantool does (characters outside the alphabet are
/// skipped, a short result is zero-padded); `None` for an empty string (no password).
pub fn decode_hash2(text: &str) -> Option<[u8; SCRAMBLE_SIZE]> {
    if text.is_empty() {
        return None;
    }
    let bytes = base64_decode(text.as_bytes());
    let mut out = [0u8; SCRAMBLE_SIZE];
    let n = bytes.len().min(SCRAMBLE_SIZE);
    out[..n].copy_from_slice(&bytes[..n]);
    Some(out)
}

/// The client's answer to the greeting: `hash1 XOR SHA1(salt[0..20] ++ hash2)`.
pub fn scramble(salt: &[u8], password: impl AsRef<[u8]>) -> [u8; SCRAMBLE_SIZE] {
    let h1 = hash1(password);
    let h2 = sha1(&[&h1]);
    xor(&h1, &sha1(&[salt_prefix(salt), &h2]))
}

/// Whether `scramble` proves knowledge of the password whose hash2 is stored. The final
/// comparison takes the same time wherever the bytes differ, so timing leaks nothing.
pub fn check_scramble(salt: &[u8], scramble: &[u8], hash2: &[u8; SCRAMBLE_SIZE]) -> bool {
    let Ok(scramble) = <&[u8; SCRAMBLE_SIZE]>::try_from(scramble) else {
        return false;
    };
    let candidate_hash1 = xor(scramble, &sha1(&[salt_prefix(salt), hash2]));
    let candidate_hash2 = sha1(&[&candidate_hash1]);
    constant_time_eq(&candidate_hash2, hash2)
}

fn constant_time_eq(a: &[u8; SCRAMBLE_SIZE], b: &[u8; SCRAMBLE_SIZE]) -> bool {
    let diff = a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // Test vector of spec §1.8, accepted by a real Tarantool 2.6.0.
    const GREETING_SALT: &str = "1aaQFi0HmrsWbrOi1HBHpqrRvJsXCjB7rFCRkZm7vDY=";

    #[test]
    fn spec_test_vector() {
        let salt = base64_decode(GREETING_SALT.as_bytes());
        assert_eq!(salt.len(), 32);
        assert_eq!(hex(&hash1("pass")), "9d4e1e23bd5b727046a9e3b4b7db57bd8d6ee684");
        assert_eq!(hex(&hash2("pass")), "196bdede2ae4f84ca44c47d54d78478c7e2bd7b7");
        assert_eq!(hash2_base64("pass"), "GWve3irk+EykTEfVTXhHjH4r17c=");
        let s = scramble(&salt, "pass");
        assert_eq!(hex(&s), "bbac08472e5fefa80b7ce224c36cfd7e30f74c60");
        // Only 20 bytes of the salt count.
        assert_eq!(scramble(&salt[..20], "pass"), s);
        assert!(check_scramble(&salt, &s, &hash2("pass")));
    }

    #[test]
    fn wrong_password_or_size_is_rejected() {
        let salt = base64_decode(GREETING_SALT.as_bytes());
        let stored = hash2("pass");
        assert!(!check_scramble(&salt, &scramble(&salt, "wrong"), &stored));
        let s = scramble(&salt, "pass");
        assert!(!check_scramble(&salt, &s[..19], &stored));
        let mut other_salt = salt.clone();
        other_salt[0] ^= 1;
        assert!(!check_scramble(&other_salt, &s, &stored));
    }

    #[test]
    fn empty_password_hash_is_guests() {
        assert_eq!(hash2_base64(""), CHAP_SHA1_EMPTY_PASSWORD);
        assert_eq!(decode_hash2(CHAP_SHA1_EMPTY_PASSWORD), Some(hash2("")));
        assert_eq!(encode_hash2(&hash2("pass")), "GWve3irk+EykTEfVTXhHjH4r17c=");
        assert_eq!(decode_hash2(""), None);
    }
}
