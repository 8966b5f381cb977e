//! The hwmon value parsers on any text: never a panic, and a reading is always a plausible
//! temperature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhash::mining::temperature::{parse_millidegrees, parse_pci_id};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(celsius) = parse_millidegrees(text) {
        assert!((-100.0..=250.0).contains(&celsius), "{celsius}");
    }
    if let Some(id) = parse_pci_id(text) {
        assert!(text.trim().starts_with("0x"), "{id}");
    }
});
