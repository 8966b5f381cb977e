//! Magnet links (BEP 9 `btih`, BEP 52 `btmh` with the sha2-256 multihash prefix).

use super::metainfo::Metainfo;

/// A magnet link with the info hashes the torrent has, its name, trackers (`tr`, tier by tier)
/// and web seeds (`ws`, as libtorrent and WebTorrent read them).
#[must_use]
pub fn magnet_link(meta: &Metainfo) -> String {
    let mut link = String::from("magnet:?");
    let mut params = Vec::new();
    if let Some(v1) = meta.info_hash_v1() {
        params.push(format!("xt=urn:btih:{}", hex::encode(v1)));
    }
    if let Some(v2) = meta.info_hash_v2() {
        params.push(format!("xt=urn:btmh:1220{}", hex::encode(v2)));
    }
    params.push(format!("dn={}", percent_encode(&meta.name)));
    for tracker in meta.trackers() {
        params.push(format!("tr={}", percent_encode(tracker)));
    }
    for seed in &meta.web_seeds {
        params.push(format!("ws={}", percent_encode(seed)));
    }
    link.push_str(&params.join("&"));
    link
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encoding_keeps_unreserved() {
        assert_eq!(super::percent_encode("a b/é~"), "a%20b%2F%C3%A9~");
    }
}
