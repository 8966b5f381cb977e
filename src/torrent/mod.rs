//! BitTorrent metainfo: parsing (v1, v2, hybrid), piece layout, v2 merkle trees, and the
//! streaming verify and create engines that hash on any [`crate::hash::BulkHasher`].

pub mod bencode;
pub mod create;
pub mod find;
pub mod layout;
pub mod magnet;
pub mod merkle;
pub mod metainfo;
pub mod resume;
pub mod stream;
pub mod verify;

pub use layout::{FileEntry, Layout, PieceScheme, TorrentPath, ValidPieceIndex};
pub use metainfo::{Metainfo, MetainfoError, Version};
