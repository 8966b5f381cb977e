//! peerhash: Bitcoin proof-of-work and BitTorrent piece hashing on GPUs (wgpu) and CPUs.

pub mod cli;
pub mod hash;
pub mod mining;
pub mod selftest;
pub mod torrent;
