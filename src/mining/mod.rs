//! Bitcoin work: block headers, targets and (later) work sources and the miner loop.

pub mod header;
pub mod target;
