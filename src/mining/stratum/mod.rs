//! Stratum v1 pool mining: the wire messages and the client that keeps a session alive.

mod client;
pub mod messages;

pub use client::{PoolLogin, ShareRejection, StratumEndpoint, StratumError, StratumSource};
