//! Header and target text as users and nodes type it: any input parses or errors, never panics,
//! and whatever parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhash::hash::KernelTarget;
use peerhash::mining::header::BlockHeader;
use peerhash::mining::target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(header) = BlockHeader::from_hex(text) {
        let again = BlockHeader::from_hex(&hex::encode(header.bytes())).expect("re-parse");
        assert_eq!(again, header);
        let _ = header.block_hash();
    }
    if let Ok(t) = target::parse_target(text) {
        assert_eq!(target::parse_target(&target::display(t)), Ok(t));
    }
    if let Ok(t) = target::parse_bits(text) {
        let kernel = KernelTarget::from(t);
        assert_eq!(target::display(kernel.into()), target::display(t));
    }
});
