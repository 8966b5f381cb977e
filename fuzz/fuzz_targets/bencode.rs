//! The lenient bencode decoder on any bytes: never a panic or a hang, and whatever decodes keeps
//! the raw `info` bytes exactly: they decode alone to the same value, and when the decoder
//! calls them canonical, re-encoding that value gives the same bytes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhash::torrent::bencode::{decode, decode_torrent, Value};

const MAX_DEPTH: usize = 64;

/// Encodes `value` with its dictionaries in the order decoded; `None` if a dictionary's keys
/// are not strictly sorted.
fn encode_canonical(value: &Value<'_>, out: &mut Vec<u8>) -> Option<()> {
    match value {
        Value::Integer(i) => out.extend(format!("i{i}e").bytes()),
        Value::Bytes(b) => {
            out.extend(format!("{}:", b.len()).bytes());
            out.extend_from_slice(b);
        }
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode_canonical(item, out)?;
            }
            out.push(b'e');
        }
        Value::Dict(dict) => {
            out.push(b'd');
            let mut last: Option<&[u8]> = None;
            for (key, item) in dict.iter() {
                if last.is_some_and(|last| last >= key) {
                    return None;
                }
                last = Some(key);
                encode_canonical(&Value::Bytes(key), out)?;
                encode_canonical(item, out)?;
            }
            out.push(b'e');
        }
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = decode_torrent(data, MAX_DEPTH) else {
        return;
    };
    assert!(file.trailing <= data.len());
    let Some(raw) = file.raw_info else {
        assert!(file.top.get(b"info").is_none());
        return;
    };
    let alone = decode(raw, MAX_DEPTH).expect("the raw info decodes on its own");
    assert_eq!(Some(&alone), file.top.get(b"info"));
    if file.info_non_canonical.is_none() {
        let mut out = Vec::new();
        encode_canonical(&alone, &mut out).expect("canonical info has sorted keys");
        assert_eq!(out, raw, "canonical info re-encodes to its bytes");
    }
});
