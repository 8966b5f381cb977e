//! Bitcoin work: block headers, targets, jobs, work sources (getwork, getblocktemplate,
//! Stratum) and the miner loop.

pub mod api;
pub mod gbt;
pub mod getwork;
pub mod header;
pub mod job;
pub mod longpoll;
pub mod miner;
pub mod node;
pub mod rpc;
pub mod source;
pub mod status;
pub mod stratum;
pub mod target;
