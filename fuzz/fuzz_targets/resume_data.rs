//! Resume data read back: any bytes parse or error, never panic or hang, and whatever parses
//! names an info hash of the right length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhash::torrent::resume::ResumeSummary;

fuzz_target!(|data: &[u8]| {
    let Ok(summary) = ResumeSummary::from_bytes(data) else { return };
    assert!(summary.info_hash.is_some() || summary.info_hash2.is_some());
});
