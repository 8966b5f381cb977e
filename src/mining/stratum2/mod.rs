//! Stratum V2 pool mining (the miner side): the pool URL with its authority key, the frames a
//! pool sends, and the client that keeps an encrypted session and a standard channel alive.
//! Framing, Noise and message encoding come from the Stratum reference implementation's crates.

mod client;
pub mod messages;
mod url;

pub use client::{check_handshake_reply, Sv2Error, Sv2Pool, Sv2Source};
pub use url::{parse_authority_key, BadSv2Url, KeyProblem, Sv2Endpoint};
