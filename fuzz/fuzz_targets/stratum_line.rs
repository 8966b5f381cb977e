//! Lines from a pool: any line parses or errors, never panics; subscribe results and
//! difficulties from it give a target or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhash::mining::stratum::messages::{parse_line, parse_subscribe, share_target};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let _ = parse_line(line);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
        if let Some(result) = value.get("result") {
            let _ = parse_subscribe(result);
        }
        if let Some(difficulty) = value.as_f64() {
            let _ = share_target(difficulty);
        }
    }
});
