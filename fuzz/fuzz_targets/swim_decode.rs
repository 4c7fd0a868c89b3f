//! Any datagram, through any codec, into the decoder: nothing may panic, and whatever decodes
//! must re-encode to a packet that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node::swim::crypto::{Algo, Codec, Mode};
use node::swim::proto;
use rand::SeedableRng;

/// The codec a fuzz input selects with its first byte: plaintext most of the time (so the
/// decoder gets most of the effort), otherwise each algo/mode with a fixed key.
fn codec(selector: u8) -> Codec {
    const ALGOS: [Algo; 4] = [Algo::Aes128, Algo::Aes192, Algo::Aes256, Algo::Des];
    const MODES: [Mode; 5] = [Mode::Ecb, Mode::Cbc, Mode::Cfb, Mode::Ofb, Mode::Gcm];
    if selector < 128 {
        return Codec::none();
    }
    let i = usize::from(selector - 128);
    let algo = ALGOS[i % ALGOS.len()];
    let mode = MODES[(i / ALGOS.len()) % MODES.len()];
    let key = vec![0x42; algo.key_size()];
    Codec::new(algo, mode, &key).unwrap_or_else(|_| Codec::none())
}

fn check_decode(plain: &[u8]) {
    let decoded = proto::decode(plain);
    let (partial, err) = proto::decode_prefix(plain);
    match &decoded {
        Ok(p) => {
            assert_eq!(partial.as_ref(), Some(p));
            assert_eq!(err, None);
            let mut again = Vec::new();
            proto::encode(p, &mut again);
            assert_eq!(again.len(), proto::packet_size(p));
            if again.len() <= proto::UDP_PACKET_SIZE {
                assert_eq!(proto::decode(&again).as_ref(), Ok(p));
            }
        }
        Err(e) => assert_eq!(err, Some(*e)),
    }
    let _ = proto::split_meta(plain);
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, datagram)) = data.split_first() else {
        return;
    };
    check_decode(datagram);
    let codec = codec(selector);
    if let Ok(plain) = codec.decrypt(datagram) {
        check_decode(&plain);
    }
    // And the way back: whatever we encrypt decrypts to itself.
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(selector));
    let mut sealed = Vec::new();
    codec.encrypt(datagram, &mut sealed, &mut rng);
    assert_eq!(codec.decrypt(&sealed).as_deref(), Ok(datagram));
});
