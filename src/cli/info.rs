use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::printable::Printable;
use crate::torrent::magnet::magnet_link;
use crate::torrent::metainfo::MAX_TORRENT_BYTES;
use crate::torrent::{Metainfo, Version};

/// Show a .torrent file: name, size, files, pieces, info hashes and magnet link.
#[derive(Debug, clap::Args)]
pub struct Info {
    /// The .torrent file.
    torrent: PathBuf,
    /// Print one JSON object (errors too, as {"error": ...}).
    #[arg(long)]
    json: bool,
}

/// What `info` and `create` both say about a torrent.
#[derive(serde::Serialize)]
pub(super) struct TorrentSummary {
    pub(super) name: String,
    pub(super) version: Version,
    pub(super) total_size: u64,
    pub(super) piece_length: u64,
    pub(super) pieces: u64,
    pub(super) info_hash_v1: Option<String>,
    pub(super) info_hash_v2: Option<String>,
    pub(super) magnet: String,
}

impl TorrentSummary {
    pub(super) fn of(meta: &Metainfo) -> Self {
        Self {
            name: meta.name.clone(),
            version: meta.version,
            total_size: meta.layout.content_length(),
            piece_length: meta.layout.piece_length,
            pieces: meta.layout.piece_count(),
            info_hash_v1: meta.info_hash_v1().map(hex::encode),
            info_hash_v2: meta.info_hash_v2().map(hex::encode),
            magnet: magnet_link(meta),
        }
    }
}

#[derive(serde::Serialize)]
struct InfoReport<'a> {
    #[serde(flatten)]
    torrent: TorrentSummary,
    private: bool,
    /// Every tracker, tier by tier.
    trackers: Vec<&'a str>,
    /// The same by tier (BEP 12).
    tracker_tiers: &'a [Vec<String>],
    web_seeds: &'a [String],
    comment: Option<&'a str>,
    files: Vec<InfoFile>,
}

#[derive(serde::Serialize)]
struct InfoFile {
    path: String,
    length: u64,
}

/// Reads and parses a torrent file, refusing huge ones before reading them.
pub fn load(path: &Path) -> anyhow::Result<Metainfo> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_TORRENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}", path.display()))?;
    Metainfo::from_bytes(&bytes).with_context(|| format!("{}: invalid torrent", path.display()))
}

impl Info {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let meta = load(&self.torrent)?;
        let report = InfoReport {
            torrent: TorrentSummary::of(&meta),
            private: meta.private,
            trackers: meta.trackers().collect(),
            tracker_tiers: &meta.tracker_tiers,
            web_seeds: &meta.web_seeds,
            comment: meta.comment.as_deref(),
            files: meta
                .layout
                .files
                .iter()
                .filter(|f| !f.pad)
                .map(|f| InfoFile {
                    path: f.path.to_string(),
                    length: f.length,
                })
                .collect(),
        };
        if self.json {
            super::print_json(&report)?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "name:         {}", Printable(&report.torrent.name))?;
        writeln!(out, "version:      {}", report.torrent.version)?;
        writeln!(out, "total size:   {} bytes", report.torrent.total_size)?;
        writeln!(
            out,
            "pieces:       {} of {} bytes",
            report.torrent.pieces, report.torrent.piece_length
        )?;
        if let Some(v1) = &report.torrent.info_hash_v1 {
            writeln!(out, "info hash v1: {v1}")?;
        }
        if let Some(v2) = &report.torrent.info_hash_v2 {
            writeln!(out, "info hash v2: {v2}")?;
        }
        writeln!(out, "private:      {}", report.private)?;
        for (tier, trackers) in report.tracker_tiers.iter().enumerate() {
            for tracker in trackers {
                writeln!(
                    out,
                    "tracker:      {} (tier {})",
                    Printable(tracker),
                    tier + 1
                )?;
            }
        }
        for seed in report.web_seeds {
            writeln!(out, "web seed:     {}", Printable(seed))?;
        }
        if let Some(comment) = report.comment {
            writeln!(out, "comment:      {}", Printable(comment))?;
        }
        writeln!(out, "magnet:       {}", Printable(&report.torrent.magnet))?;
        writeln!(out, "files:")?;
        for file in &report.files {
            writeln!(out, "  {:>14}  {}", file.length, Printable(&file.path))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
