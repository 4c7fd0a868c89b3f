//! IPROTO's request decoder on arbitrary bytes: framing, header and body decoding and the
//! error responses must never panic, whatever a client sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = node::iproto::codec::decode_any(data);
    let _ = node::iproto::codec::decode_request(data);
    let _ = node::iproto::codec::decode_response(data);
});
