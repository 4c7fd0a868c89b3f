//! Packet codecs of `swim:set_codec` (spec §3.2), with OpenSSL EVP semantics so that packets
//! interoperate with Tarantool 2.6:
//!
//! ```text
//! datagram = IV ++ ciphertext(META ++ BODY)
//! ```
//!
//! * the IV is random for every packet and sent in clear; its length is the cipher's IV
//!   length: 16 for AES in CBC/CFB/OFB, 8 for DES, none for ECB;
//! * the key is the raw bytes (16/24/32 for AES-128/192/256, 8 for DES), no KDF;
//! * ECB and CBC pad with PKCS#7 (always 1..=block size bytes); CFB is full-block feedback
//!   (CFB128 for AES, CFB64 for DES) and OFB a stream mode: both keep the length.
//!
//! `mode = 'gcm'` is node's own addition (Tarantool has no GCM), AES only. Its layout is
//!
//! ```text
//! datagram = nonce (12 random bytes) ++ ciphertext (same length as the plaintext) ++ tag (16)
//! ```
//!
//! with no associated data. Unlike the EVP modes, a tampered packet or one sealed with another
//! key fails to decrypt instead of turning into garbage for the decoder. 12 + 16 = 28 bytes of
//! overhead fit the budget: 1440 plaintext + 28 ≤ 1472.

use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::AesGcm;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{
    Block, BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, BlockSizeUser, InvalidLength,
    KeyIvInit,
};
use des::Des;
use rand::Rng;

/// The cipher of a codec (`algo` of `set_codec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algo {
    None,
    Aes128,
    Aes192,
    Aes256,
    Des,
}

impl Algo {
    /// Parses `set_codec`'s `algo` (lower case only, as Tarantool: `'AES128'` is unknown).
    pub fn parse(s: &str) -> Option<Algo> {
        Some(match s {
            "none" => Algo::None,
            "aes128" => Algo::Aes128,
            "aes192" => Algo::Aes192,
            "aes256" => Algo::Aes256,
            "des" => Algo::Des,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Algo::None => "none",
            Algo::Aes128 => "aes128",
            Algo::Aes192 => "aes192",
            Algo::Aes256 => "aes256",
            Algo::Des => "des",
        }
    }

    /// The key length the cipher needs: AES-128/192/256 take 128/192/256-bit keys, DES a
    /// 64-bit key (56 bits plus parity, parity not checked); `none` takes anything.
    pub fn key_size(self) -> usize {
        match self {
            Algo::None => 0,
            Algo::Aes128 => 16,
            Algo::Aes192 => 24,
            Algo::Aes256 => 32,
            Algo::Des => 8,
        }
    }

    /// The cipher's block size: 128 bits for AES, 64 for DES.
    pub fn block_size(self) -> usize {
        match self {
            Algo::None => 0,
            Algo::Aes128 | Algo::Aes192 | Algo::Aes256 => 16,
            Algo::Des => 8,
        }
    }
}

/// The mode of a codec (`mode` of `set_codec`; Tarantool's default is CBC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    Ecb,
    #[default]
    Cbc,
    Cfb,
    Ofb,
    /// node only: AES-GCM, authenticated.
    Gcm,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "ecb" => Mode::Ecb,
            "cbc" => Mode::Cbc,
            "cfb" => Mode::Cfb,
            "ofb" => Mode::Ofb,
            "gcm" => Mode::Gcm,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Ecb => "ecb",
            Mode::Cbc => "cbc",
            Mode::Cfb => "cfb",
            Mode::Ofb => "ofb",
            Mode::Gcm => "gcm",
        }
    }
}

/// GCM's nonce: the 96-bit size GCM is designed for (no extra GHASH pass).
pub const GCM_NONCE_SIZE: usize = 12;
/// GCM's tag: the full 128 bits.
pub const GCM_TAG_SIZE: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoError {
    /// The key has the wrong length; `Display` is Tarantool's text.
    KeySize { expected: usize, got: usize },
    /// GCM was asked for with DES.
    GcmNeedsAes,
    /// The datagram is shorter than its IV (or, for GCM, nonce + tag).
    TooShort,
    /// ECB/CBC ciphertext that is empty or not a whole number of blocks.
    BadLength,
    /// ECB/CBC padding that is not valid PKCS#7: wrong key or corrupted packet.
    BadPadding,
    /// GCM tag mismatch: wrong key, corrupted or forged packet.
    AuthFailed,
}

impl CryptoError {
    /// A short stable name, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            CryptoError::KeySize { .. } => "key_size",
            CryptoError::GcmNeedsAes => "gcm_needs_aes",
            CryptoError::TooShort => "too_short",
            CryptoError::BadLength => "bad_length",
            CryptoError::BadPadding => "bad_padding",
            CryptoError::AuthFailed => "auth_failed",
        }
    }
}

impl std::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Tarantool 2.6.0: `key size expected 16, got 0` [obs].
            CryptoError::KeySize { expected, got } => {
                write!(f, "key size expected {expected}, got {got}")
            }
            CryptoError::GcmNeedsAes => write!(f, "gcm mode needs an aes algorithm"),
            // Tarantool's text for a datagram shorter than the IV.
            CryptoError::TooShort => write!(f, "too small message, can't extract IV for decryption"),
            CryptoError::BadLength => write!(f, "wrong final block length"),
            CryptoError::BadPadding => write!(f, "bad decrypt"),
            CryptoError::AuthFailed => write!(f, "authentication failed"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// A configured packet codec. `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Codec {
    algo: Algo,
    mode: Mode,
    key: Vec<u8>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("algo", &self.algo)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec::none()
    }
}

impl Codec {
    /// The plaintext codec (`algo = 'none'`).
    pub fn none() -> Codec {
        Codec {
            algo: Algo::None,
            mode: Mode::Cbc,
            key: Vec::new(),
        }
    }

    /// A codec as `set_codec{algo, mode, key}` makes it. The key must have exactly the
    /// cipher's key size; with `none` the key and mode are ignored, as in Tarantool.
    pub fn new(algo: Algo, mode: Mode, key: &[u8]) -> Result<Codec, CryptoError> {
        if algo == Algo::None {
            return Ok(Codec::none());
        }
        if key.len() != algo.key_size() {
            return Err(CryptoError::KeySize {
                expected: algo.key_size(),
                got: key.len(),
            });
        }
        if mode == Mode::Gcm && algo == Algo::Des {
            return Err(CryptoError::GcmNeedsAes);
        }
        Ok(Codec {
            algo,
            mode,
            key: key.to_vec(),
        })
    }

    pub fn algo(&self) -> Algo {
        self.algo
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn is_none(&self) -> bool {
        self.algo == Algo::None
    }

    /// Bytes sent in clear before the ciphertext: the IV (the cipher's block size; ECB has
    /// none), or GCM's nonce.
    pub fn iv_size(&self) -> usize {
        match (self.algo, self.mode) {
            (Algo::None, _) | (_, Mode::Ecb) => 0,
            (_, Mode::Gcm) => GCM_NONCE_SIZE,
            (algo, _) => algo.block_size(),
        }
    }

    /// The most bytes a datagram can have beyond its plaintext: IV, plus a full padding block
    /// for ECB/CBC (PKCS#7 always pads), plus GCM's tag. At most 32 (AES-CBC), so a
    /// [`super::proto::MAX_PACKET_SIZE`] plaintext always fits a UDP packet.
    pub fn overhead(&self) -> usize {
        let extra = match (self.algo, self.mode) {
            (Algo::None, _) => 0,
            (algo, Mode::Ecb | Mode::Cbc) => algo.block_size(),
            (_, Mode::Cfb | Mode::Ofb) => 0,
            (_, Mode::Gcm) => GCM_TAG_SIZE,
        };
        self.iv_size() + extra
    }

    /// Appends the datagram for `plain` to `out`: a fresh random IV from `rng`, then the
    /// ciphertext.
    pub fn encrypt<R: Rng + ?Sized>(&self, plain: &[u8], out: &mut Vec<u8>, rng: &mut R) {
        let start = out.len();
        out.resize(start + self.iv_size(), 0);
        rng.fill_bytes(&mut out[start..]);
        let iv = out[start..].to_vec();
        match self.algo {
            Algo::None => out.extend_from_slice(plain),
            Algo::Aes128 => encrypt_with::<Aes128>(self.mode, &self.key, &iv, plain, out),
            Algo::Aes192 => encrypt_with::<Aes192>(self.mode, &self.key, &iv, plain, out),
            Algo::Aes256 => encrypt_with::<Aes256>(self.mode, &self.key, &iv, plain, out),
            Algo::Des => encrypt_with::<Des>(self.mode, &self.key, &iv, plain, out),
        }
        if self.mode == Mode::Gcm {
            let sealed = match self.algo {
                Algo::Aes128 => gcm_seal::<Aes128>(&self.key, &iv, &mut out[start + GCM_NONCE_SIZE..]),
                Algo::Aes192 => gcm_seal::<Aes192>(&self.key, &iv, &mut out[start + GCM_NONCE_SIZE..]),
                Algo::Aes256 => gcm_seal::<Aes256>(&self.key, &iv, &mut out[start + GCM_NONCE_SIZE..]),
                Algo::None | Algo::Des => None,
            };
            if let Some(tag) = sealed {
                out.extend_from_slice(&tag);
            }
        }
    }

    /// Takes a received datagram apart and returns the plaintext (META ++ BODY). Never
    /// panics, whatever the input.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let iv_size = self.iv_size();
        if data.len() < iv_size {
            return Err(CryptoError::TooShort);
        }
        let (iv, body) = data.split_at(iv_size);
        match (self.algo, self.mode) {
            (Algo::None, _) => Ok(data.to_vec()),
            (algo, Mode::Gcm) => {
                if body.len() < GCM_TAG_SIZE {
                    return Err(CryptoError::TooShort);
                }
                let (ct, tag) = body.split_at(body.len() - GCM_TAG_SIZE);
                let mut buf = ct.to_vec();
                let ok = match algo {
                    Algo::Aes128 => gcm_open::<Aes128>(&self.key, iv, &mut buf, tag),
                    Algo::Aes192 => gcm_open::<Aes192>(&self.key, iv, &mut buf, tag),
                    Algo::Aes256 => gcm_open::<Aes256>(&self.key, iv, &mut buf, tag),
                    Algo::None | Algo::Des => false,
                };
                if ok {
                    Ok(buf)
                } else {
                    Err(CryptoError::AuthFailed)
                }
            }
            (Algo::Aes128, mode) => decrypt_with::<Aes128>(mode, &self.key, iv, body),
            (Algo::Aes192, mode) => decrypt_with::<Aes192>(mode, &self.key, iv, body),
            (Algo::Aes256, mode) => decrypt_with::<Aes256>(mode, &self.key, iv, body),
            (Algo::Des, mode) => decrypt_with::<Des>(mode, &self.key, iv, body),
        }
    }
}

/// Pads `plain` with PKCS#7 into a whole number of blocks appended to `out` and encrypts them.
fn pad_encrypt<M: BlockModeEncrypt>(m: M, plain: &[u8], out: &mut Vec<u8>) {
    let bs = M::block_size();
    let start = out.len();
    // PKCS#7 always adds 1..=bs bytes: a full block when the length is already aligned.
    out.resize(start + (plain.len() / bs + 1) * bs, 0);
    out[start..start + plain.len()].copy_from_slice(plain);
    let ok = m.encrypt_padded::<Pkcs7>(&mut out[start..], plain.len()).is_ok();
    debug_assert!(ok, "the buffer was sized for the padding");
}

fn decrypt_unpad<M: BlockModeDecrypt>(m: M, ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let bs = M::block_size();
    if ct.is_empty() || !ct.len().is_multiple_of(bs) {
        return Err(CryptoError::BadLength);
    }
    let mut buf = ct.to_vec();
    let n = m
        .decrypt_padded::<Pkcs7>(&mut buf)
        .map_err(|_| CryptoError::BadPadding)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// The EVP modes over block cipher `C`; GCM's ciphertext is produced here as a plain copy
/// and sealed in place by [`gcm_seal`].
fn encrypt_with<C>(mode: Mode, key: &[u8], iv: &[u8], plain: &[u8], out: &mut Vec<u8>)
where
    C: BlockCipherEncrypt + BlockCipherDecrypt + KeyInit + BlockSizeUser,
{
    // Keys were length-checked in Codec::new and IVs sized by iv_size(), so constructors only
    // fail on a bug; a debug build asserts, a release one sends nothing rather than panicking.
    let start = out.len();
    let built = match mode {
        Mode::Ecb => ecb::Encryptor::<C>::new_from_slice(key).map(|m| pad_encrypt(m, plain, out)),
        Mode::Cbc => cbc::Encryptor::<C>::new_from_slices(key, iv).map(|m| pad_encrypt(m, plain, out)),
        Mode::Cfb => cfb_mode::Encryptor::<C>::new_from_slices(key, iv).map(|m| {
            out.extend_from_slice(plain);
            m.encrypt(&mut out[start..]);
        }),
        Mode::Ofb => {
            out.extend_from_slice(plain);
            ofb_apply::<C>(key, iv, &mut out[start..])
        }
        Mode::Gcm => {
            out.extend_from_slice(plain);
            Ok(())
        }
    };
    debug_assert!(built.is_ok(), "key and IV sizes were checked");
}

fn decrypt_with<C>(mode: Mode, key: &[u8], iv: &[u8], ct: &[u8]) -> Result<Vec<u8>, CryptoError>
where
    C: BlockCipherEncrypt + BlockCipherDecrypt + KeyInit + BlockSizeUser,
{
    let bad_key = |_| CryptoError::KeySize {
        expected: key.len(),
        got: key.len(),
    };
    match mode {
        Mode::Ecb => decrypt_unpad(ecb::Decryptor::<C>::new_from_slice(key).map_err(bad_key)?, ct),
        Mode::Cbc => decrypt_unpad(cbc::Decryptor::<C>::new_from_slices(key, iv).map_err(bad_key)?, ct),
        Mode::Cfb => {
            let mut buf = ct.to_vec();
            cfb_mode::Decryptor::<C>::new_from_slices(key, iv)
                .map_err(bad_key)?
                .decrypt(&mut buf);
            Ok(buf)
        }
        Mode::Ofb => {
            let mut buf = ct.to_vec();
            ofb_apply::<C>(key, iv, &mut buf).map_err(bad_key)?;
            Ok(buf)
        }
        // Handled by Codec::decrypt before dispatching here.
        Mode::Gcm => Err(CryptoError::AuthFailed),
    }
}

/// OFB, both directions: the keystream is E(IV), E(E(IV)), ... XORed over the data, the last
/// block cut short (a stream mode, no padding). Written here rather than taken from the `ofb`
/// crate because its wrapper type cannot be named generically over the cipher; it is a few
/// lines, and the real Tarantool vectors in the tests pin it down.
fn ofb_apply<C: BlockCipherEncrypt + KeyInit>(key: &[u8], iv: &[u8], buf: &mut [u8]) -> Result<(), InvalidLength> {
    let cipher = C::new_from_slice(key)?;
    let mut block = Block::<C>::try_from(iv).map_err(|_| InvalidLength)?;
    for chunk in buf.chunks_mut(C::block_size()) {
        cipher.encrypt_block(&mut block);
        for (b, k) in chunk.iter_mut().zip(block.iter()) {
            *b ^= k;
        }
    }
    Ok(())
}

type Gcm<C> = AesGcm<C, U12>;

/// Encrypts `buf` in place with AES-GCM and returns the tag.
fn gcm_seal<C>(key: &[u8], nonce: &[u8], buf: &mut [u8]) -> Option<[u8; GCM_TAG_SIZE]>
where
    Gcm<C>: KeyInit + AeadInOut,
{
    let cipher = Gcm::<C>::new_from_slice(key).ok()?;
    let nonce = nonce.try_into().ok()?;
    let tag = cipher.encrypt_inout_detached(nonce, &[], buf.into()).ok()?;
    tag.as_slice().try_into().ok()
}

/// Decrypts `buf` in place with AES-GCM; false when the tag does not match.
fn gcm_open<C>(key: &[u8], nonce: &[u8], buf: &mut [u8], tag: &[u8]) -> bool
where
    Gcm<C>: KeyInit + AeadInOut,
{
    let (Ok(cipher), Ok(nonce), Ok(tag)) = (Gcm::<C>::new_from_slice(key), nonce.try_into(), tag.try_into()) else {
        return false;
    };
    cipher.decrypt_inout_detached(nonce, &[], buf.into(), tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn all_codecs() -> Vec<Codec> {
        let mut out = vec![Codec::none()];
        for algo in [Algo::Aes128, Algo::Aes192, Algo::Aes256, Algo::Des] {
            let key: Vec<u8> = (0..algo.key_size() as u8).collect();
            for mode in [Mode::Ecb, Mode::Cbc, Mode::Cfb, Mode::Ofb, Mode::Gcm] {
                if let Ok(c) = Codec::new(algo, mode, &key) {
                    out.push(c);
                }
            }
        }
        assert_eq!(out.len(), 1 + 3 * 5 + 4);
        out
    }

    #[test]
    fn round_trips_with_the_evp_lengths() {
        let mut rng = StdRng::seed_from_u64(7);
        for codec in all_codecs() {
            for len in [0, 1, 7, 8, 15, 16, 17, 69, 399, 1439, 1440] {
                let plain: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                let mut out = vec![0xee]; // appends after what is there
                codec.encrypt(&plain, &mut out, &mut rng);
                let data = &out[1..];
                let bs = codec.algo().block_size();
                let expect = match (codec.algo(), codec.mode()) {
                    (Algo::None, _) => len,
                    (_, Mode::Ecb | Mode::Cbc) => codec.iv_size() + (len / bs + 1) * bs,
                    (_, Mode::Gcm) => GCM_NONCE_SIZE + len + GCM_TAG_SIZE,
                    _ => codec.iv_size() + len,
                };
                assert_eq!(data.len(), expect, "{codec:?} {len}");
                assert!(data.len() <= len + codec.overhead());
                assert!(len + codec.overhead() <= 1440 + 32);
                assert_eq!(codec.decrypt(data).unwrap(), plain, "{codec:?} {len}");
            }
        }
    }

    #[test]
    fn iv_sizes_follow_openssl() {
        let iv = |a, m| Codec::new(a, m, &vec![0; Algo::key_size(a)]).unwrap().iv_size();
        assert_eq!(iv(Algo::Aes128, Mode::Cbc), 16);
        assert_eq!(iv(Algo::Aes256, Mode::Cfb), 16);
        assert_eq!(iv(Algo::Aes192, Mode::Ofb), 16);
        assert_eq!(iv(Algo::Des, Mode::Cbc), 8);
        assert_eq!(iv(Algo::Des, Mode::Ofb), 8);
        assert_eq!(iv(Algo::Aes128, Mode::Ecb), 0);
        assert_eq!(iv(Algo::Des, Mode::Ecb), 0);
        assert_eq!(iv(Algo::Aes128, Mode::Gcm), 12);
        assert_eq!(Codec::none().iv_size(), 0);
    }

    #[test]
    fn fresh_iv_per_packet() {
        let mut rng = StdRng::seed_from_u64(8);
        let codec = Codec::new(Algo::Aes128, Mode::Cbc, &[1; 16]).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        codec.encrypt(b"same", &mut a, &mut rng);
        codec.encrypt(b"same", &mut b, &mut rng);
        assert_ne!(a[..16], b[..16]);
        assert_ne!(a, b);
    }

    #[test]
    fn key_and_mode_errors() {
        let e = Codec::new(Algo::Aes128, Mode::Cbc, b"").unwrap_err();
        assert_eq!(e.to_string(), "key size expected 16, got 0");
        let e = Codec::new(Algo::Aes256, Mode::Ofb, &[0; 16]).unwrap_err();
        assert_eq!(e, CryptoError::KeySize { expected: 32, got: 16 });
        assert_eq!(
            Codec::new(Algo::Des, Mode::Gcm, &[0; 8]).unwrap_err(),
            CryptoError::GcmNeedsAes
        );
        assert!(Codec::new(Algo::None, Mode::Ecb, b"anything").unwrap().is_none());
        assert_eq!(Algo::parse("AES128"), None);
        assert_eq!(Mode::parse("ctr"), None);
        assert_eq!(Mode::default(), Mode::Cbc);
        // The key stays out of Debug output.
        let c = Codec::new(Algo::Aes128, Mode::Ecb, b"secretsecretsecr").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn short_and_malformed_input_is_an_error() {
        let key16 = [3u8; 16];
        let cbc = Codec::new(Algo::Aes128, Mode::Cbc, &key16).unwrap();
        assert_eq!(cbc.decrypt(&[0; 15]), Err(CryptoError::TooShort));
        assert_eq!(cbc.decrypt(&[0; 16]), Err(CryptoError::BadLength));
        assert_eq!(cbc.decrypt(&[0; 33]), Err(CryptoError::BadLength));
        assert_eq!(
            CryptoError::TooShort.to_string(),
            "too small message, can't extract IV for decryption"
        );
        let ecb = Codec::new(Algo::Des, Mode::Ecb, &[3; 8]).unwrap();
        assert_eq!(ecb.decrypt(&[]), Err(CryptoError::BadLength));
        assert_eq!(ecb.decrypt(&[0; 12]), Err(CryptoError::BadLength));
        let gcm = Codec::new(Algo::Aes256, Mode::Gcm, &[3; 32]).unwrap();
        assert_eq!(gcm.decrypt(&[0; 27]), Err(CryptoError::TooShort));
        assert_eq!(gcm.decrypt(&[0; 28]), Err(CryptoError::AuthFailed));
        // Stream modes take any length, even just the IV.
        let ofb = Codec::new(Algo::Aes128, Mode::Ofb, &key16).unwrap();
        assert_eq!(ofb.decrypt(&[0; 16]), Ok(vec![]));
    }

    #[test]
    fn wrong_key_and_tampering() {
        let mut rng = StdRng::seed_from_u64(9);
        let plain: Vec<u8> = (0..300).map(|_| rng.random()).collect();
        for codec in all_codecs().into_iter().filter(|c| !c.is_none()) {
            let mut data = Vec::new();
            codec.encrypt(&plain, &mut data, &mut rng);
            let other_key = vec![0xa5; codec.algo().key_size()];
            let other = Codec::new(codec.algo(), codec.mode(), &other_key).unwrap();
            // EVP modes: an error (bad padding) or garbage, never the plaintext.
            assert_ne!(other.decrypt(&data).ok(), Some(plain.clone()), "{codec:?}");
            if codec.mode() == Mode::Gcm {
                assert_eq!(other.decrypt(&data), Err(CryptoError::AuthFailed));
                for i in 0..data.len() {
                    let mut t = data.clone();
                    t[i] ^= 0x40;
                    assert_eq!(codec.decrypt(&t), Err(CryptoError::AuthFailed), "byte {i}");
                }
                assert_eq!(codec.decrypt(&data[..data.len() - 1]), Err(CryptoError::AuthFailed));
            }
        }
    }

    /// McGrew & Viega's GCM test case 3 (AES-128, 96-bit IV, no AAD), in our layout.
    #[test]
    fn gcm_known_answer() {
        let key = unhex("feffe9928665731c6d6a8f9467308308");
        let nonce = unhex("cafebabefacedbaddecaf888");
        let plain = unhex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        );
        let ct = unhex(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
        );
        let tag = unhex("4d5c2af327cd64a62cf35abd2ba6fab4");
        let codec = Codec::new(Algo::Aes128, Mode::Gcm, &key).unwrap();
        let data = [nonce, ct, tag].concat();
        assert_eq!(codec.decrypt(&data).unwrap(), plain);
    }

    /// Random datagrams of random lengths under every codec: errors, never a panic.
    #[test]
    fn decrypt_survives_random_input() {
        let mut rng = StdRng::seed_from_u64(10);
        let codecs = all_codecs();
        for _ in 0..20_000 {
            let len = rng.random_range(0..80);
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let codec = &codecs[rng.random_range(0..codecs.len())];
            let _ = codec.decrypt(&data);
        }
    }
}
