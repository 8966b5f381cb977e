//! `stratum2+tcp://[USER@]HOST:PORT/AUTHORITY_KEY` URLs: the pool's address and the public key
//! its certificates must be signed with (base58-check, as Braiins and SRI write it).

use bitcoin::base58;
use bitcoin::secp256k1::XOnlyPublicKey;

use crate::mining::endpoint::{self, Endpoint};

/// A Stratum V2 pool address with the authority key that authenticates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sv2Endpoint {
    endpoint: Endpoint,
    /// The x-only public key the pool's certificate must be signed with.
    authority: [u8; 32],
}

/// A URL that is not `stratum2+tcp://HOST:PORT/AUTHORITY_KEY` (shown with any password masked).
#[derive(Debug, thiserror::Error)]
pub enum BadSv2Url {
    #[error("bad pool URL {0:?}: expected stratum2+tcp://[USER@]HOST:PORT/AUTHORITY_KEY (IPv6 as [ADDR])")]
    Shape(String),
    #[error("bad pool URL {url:?}: the authority key {key:?} {problem}")]
    Key {
        url: String,
        key: String,
        problem: KeyProblem,
    },
}

/// What is wrong with an authority key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("is not base58-check")]
    NotBase58Check,
    #[error("is not 34 bytes (version 1 and 32 key bytes)")]
    WrongLength,
    #[error("does not start with key version 1")]
    WrongVersion,
    #[error("is not a point on secp256k1")]
    NotOnCurve,
}

/// The version prefix SRI puts before the 32-byte x-only key (a little-endian u16, 1).
const KEY_VERSION: [u8; 2] = [1, 0];

/// Decodes an authority public key: base58-check of `[1, 0]` followed by the x-only key.
///
/// # Errors
/// What is wrong with it.
pub fn parse_authority_key(text: &str) -> Result<[u8; 32], KeyProblem> {
    let bytes = base58::decode_check(text).map_err(|_| KeyProblem::NotBase58Check)?;
    let key: [u8; 32] = match bytes.split_first_chunk::<2>() {
        Some((version, key)) if *version == KEY_VERSION => {
            key.try_into().map_err(|_| KeyProblem::WrongLength)?
        }
        _ => return Err(KeyProblem::WrongVersion),
    };
    XOnlyPublicKey::from_slice(&key).map_err(|_| KeyProblem::NotOnCurve)?;
    Ok(key)
}

impl Sv2Endpoint {
    /// # Errors
    /// A URL that is not `stratum2+tcp://[USER[:PASS]@]HOST:PORT/AUTHORITY_KEY` or whose key
    /// does not decode.
    pub fn parse(url: &str) -> Result<Self, BadSv2Url> {
        let masked = || endpoint::mask(url);
        let endpoint = Endpoint::parse(url.trim_end_matches('/'), "stratum2+tcp")
            .ok_or_else(|| BadSv2Url::Shape(masked()))?;
        let key = endpoint.path().trim_start_matches('/');
        if key.is_empty() || key.contains('/') {
            return Err(BadSv2Url::Shape(masked()));
        }
        let authority = parse_authority_key(key).map_err(|problem| BadSv2Url::Key {
            url: masked(),
            key: key.to_owned(),
            problem,
        })?;
        Ok(Self {
            endpoint,
            authority,
        })
    }

    /// The URL without credentials (the key is public and stays).
    #[must_use]
    pub fn url(&self) -> String {
        self.endpoint.url()
    }

    /// The user written in the URL, if any (SV2 has no passwords).
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.endpoint.user.as_deref()
    }

    #[must_use]
    pub fn host_port(&self) -> (&str, u16) {
        self.endpoint.host_port()
    }

    #[must_use]
    pub fn authority(&self) -> [u8; 32] {
        self.authority
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";

    #[test]
    fn parses_braiins_style_urls_and_refuses_bad_keys() {
        let url = format!("stratum2+tcp://worker@127.0.0.1:3336/{KEY}");
        let parsed = Sv2Endpoint::parse(&url).expect("valid");
        assert_eq!(parsed.host_port(), ("127.0.0.1", 3336));
        assert_eq!(parsed.user(), Some("worker"));
        assert_eq!(parsed.url(), format!("stratum2+tcp://127.0.0.1:3336/{KEY}"));
        let v6 = Sv2Endpoint::parse(&format!("stratum2+tcp://[::1]:3336/{KEY}/")).expect("v6");
        assert_eq!(v6.host_port(), ("::1", 3336));
        assert!(matches!(
            Sv2Endpoint::parse("stratum2+tcp://127.0.0.1:3336"),
            Err(BadSv2Url::Shape(_))
        ));
        assert!(matches!(
            Sv2Endpoint::parse(&format!("stratum+tcp://127.0.0.1:3336/{KEY}")),
            Err(BadSv2Url::Shape(_))
        ));
        // One character changed: the checksum fails.
        let bad = format!(
            "stratum2+tcp://u:secret@127.0.0.1:3336/{}",
            KEY.replace('9', "8")
        );
        let error = Sv2Endpoint::parse(&bad).expect_err("bad checksum");
        assert!(matches!(error, BadSv2Url::Key { .. }), "{error}");
        assert!(!error.to_string().contains("secret"));
        // A valid base58-check string that is not a key.
        let short = base58::encode_check(&[1, 0, 1, 2, 3]);
        assert!(parse_authority_key(&short).is_err());
        let not_on_curve = base58::encode_check(&[[1u8, 0].as_slice(), &[0xff; 32]].concat());
        assert_eq!(
            parse_authority_key(&not_on_curve),
            Err(KeyProblem::NotOnCurve)
        );
    }
}
