//! .torrent files from strangers: any bytes parse or error, never panic or hang, and whatever
//! parses yields consistent hashes, a magnet link and a piece layout that can be walked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerhash::torrent::magnet::magnet_link;
use peerhash::torrent::metainfo::Metainfo;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = Metainfo::from_bytes(data) else { return };
    assert_eq!(meta.info_hash_v1().is_some(), meta.version.has_v1());
    assert_eq!(meta.info_hash_v2().is_some(), meta.version.has_v2());
    let _ = magnet_link(&meta);
    assert!(meta.layout.content_length() <= meta.layout.total_length());
    for spans in meta.layout.pieces().take(4096) {
        let _ = spans;
    }
});
