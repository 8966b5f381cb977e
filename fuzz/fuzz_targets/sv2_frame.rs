//! What a Stratum V2 pool sends: a decrypted frame's extension type, message type and payload
//! decode into a message or an error, and a handshake reply (which arrives before the pool is
//! authenticated) is checked or refused; neither ever panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhash::mining::stratum2::{check_handshake_reply, messages};

/// SRI's example authority key (x-only), the one the test pool uses.
const AUTHORITY: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let [e0, e1, msg_type, payload @ ..] = rest else { return };
        let mut payload = payload.to_vec();
        let _ = messages::decode(u16::from_le_bytes([*e0, *e1]) & 0x7fff, *msg_type, &mut payload);
    } else if let Ok(key) = peerhash::mining::stratum2::parse_authority_key(AUTHORITY) {
        let _ = check_handshake_reply(key, rest);
    }
});
