//! Requests to the cgminer API: any bytes parse or error, never panic, and every reply is one
//! JSON value (for JSON requests) or plain `|`-separated text, with no NUL inside.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhash::mining::cgminer_api::{parse_request, respond, RigInfo};
use peerhash::mining::status::Snapshot;

fuzz_target!(|data: &[u8]| {
    let _ = parse_request(data);
    let rig = RigInfo {
        pools: vec!["stratum+tcp://127.0.0.1:3333".into()],
        log_interval: 10,
    };
    let reply = respond(data, &Snapshot::default(), &rig, 0);
    assert!(!reply.contains('\0'));
    if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        serde_json::from_str::<serde_json::Value>(&reply).expect("a JSON reply");
    }
});
