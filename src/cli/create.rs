use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::info::TorrentSummary;
use super::{progress, size, BackendArg};
use crate::torrent::create::{self, CreateOptions};
use crate::torrent::stream;
use crate::torrent::Version;

/// Make a .torrent file from a file or directory. v1 unless --v2 or --hybrid; hidden files are
/// included, symbolic links inside a directory are skipped.
#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct Create {
    /// The file or directory to share.
    path: PathBuf,
    /// Where to write the torrent (default: NAME.torrent in the current directory); an existing
    /// file is never replaced.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// A v1 torrent (BEP 3), the default: every client and tool reads it.
    #[arg(long, conflicts_with_all = ["v2", "hybrid"])]
    v1: bool,
    /// A v2-only torrent (BEP 52).
    #[arg(long, conflicts_with = "hybrid")]
    v2: bool,
    /// A hybrid v1 + v2 torrent, with BEP 47 pad files aligning files to pieces.
    #[arg(long)]
    hybrid: bool,
    /// Piece size: auto (a power of two from 16 KiB to 16 MiB, at most 2048 pieces) or a size.
    #[arg(long, default_value = "auto")]
    piece_size: String,
    /// Tracker URL; repeat for more (each becomes its own tier).
    #[arg(long)]
    announce: Vec<String>,
    /// Set the private flag (BEP 27).
    #[arg(long)]
    private: bool,
    #[arg(long)]
    comment: Option<String>,
    /// The `source` field in `info` (private trackers use it to tell torrents apart).
    #[arg(long)]
    source: Option<String>,
    /// Leave out the creation date, so the same content gives the same file.
    #[arg(long)]
    no_date: bool,
    #[command(flatten)]
    backend: BackendArg,
    /// Read buffers in flight (e.g. 64M, 1G).
    /// [default: 256M on the CPU, 1G on a GPU]
    #[arg(long, value_parser = size::parse_size)]
    memory: Option<u64>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct CreateReport {
    output: String,
    #[serde(flatten)]
    torrent: TorrentSummary,
    seconds: f64,
    backend: String,
    /// How the GPU was kept busy; absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<crate::hash::bulk::BulkReport>,
}

impl Create {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let started = std::time::Instant::now();
        let version = if self.v2 {
            Version::V2
        } else if self.hybrid {
            Version::Hybrid
        } else {
            Version::V1
        };
        let piece_length = match self.piece_size.as_str() {
            "auto" => None,
            text => Some(size::parse_size(text).map_err(anyhow::Error::msg)?),
        };
        let (name, files, single_file) = create::collect(&self.path)?;
        let output = self
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{name}.torrent")));
        let creation_date = (!self.no_date).then(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
        });
        let backend = self.backend.open_resilient(super::torrent_work(version))?;
        let options = CreateOptions {
            version,
            piece_length,
            announce: self.announce.clone(),
            private: self.private,
            comment: self.comment.clone(),
            source: self.source.clone(),
            creation_date,
            memory: self
                .memory
                .unwrap_or_else(|| stream::default_memory(backend.kind())),
        };
        let total = files.iter().map(|f| f.length).sum();
        let bar = progress::bar(total, self.json, super::verify::BYTES_TEMPLATE);
        let created = create::create(&*backend, &name, &files, single_file, &options, |n| {
            bar.inc(n);
        })?;
        bar.finish_and_clear();
        // Never overwrite: a mistyped -o must not clobber data.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&output)
            .and_then(|mut file| file.write_all(&created.bytes))
            .with_context(|| {
                format!(
                    "writing {} (an existing file is never replaced)",
                    output.display()
                )
            })?;
        let meta = &created.meta;
        let report = CreateReport {
            output: output.display().to_string(),
            torrent: TorrentSummary::of(meta),
            seconds: started.elapsed().as_secs_f64(),
            backend: backend.name(),
            device: created.device,
        };
        if self.json {
            super::print_json(&report)?;
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "wrote {} ({:?}, {} bytes in {} pieces of {} bytes) in {:.2} s",
                report.output,
                report.torrent.version,
                report.torrent.total_size,
                report.torrent.pieces,
                report.torrent.piece_length,
                report.seconds
            )?;
            writeln!(out, "{}", report.torrent.magnet)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
