//! Answers from a node: getwork and getblocktemplate results decode or error, never panic, and
//! a template that decodes builds a job.
#![no_main]

use bitcoin::ScriptBuf;
use libfuzzer_sys::fuzz_target;
use peerhash::mining::gbt::Template;
use peerhash::mining::getwork;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = getwork::decode(&value);
    if let Ok(template) = Template::parse(&value) {
        let _ = template.job("fuzz".to_owned(), &ScriptBuf::from_bytes(vec![0x51]));
    }
});
