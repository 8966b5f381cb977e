use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::info::TorrentSummary;
use super::{progress, size, BackendArg};
use crate::torrent::create::{self, CreateOptions, FileOrder};
use crate::torrent::layout::MAX_PIECE_LENGTH;
use crate::torrent::stream;
use crate::torrent::Version;

/// Make a .torrent file from a file or directory. v1 unless --v2 or --hybrid; hidden files are
/// included, symbolic links inside a directory are skipped.
#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct Create {
    /// The file or directory to share.
    path: PathBuf,
    /// Where to write the torrent (default: NAME.torrent in the current directory), or `-` for
    /// standard output; an existing file is never replaced.
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
    /// Piece size: auto (a power of two from 16K to 16M, at most 2048 pieces) or a size such as
    /// 256K or 4M.
    #[arg(long, default_value = "auto")]
    piece_size: String,
    /// Tracker URLs of one tier, separated by commas; repeat for more tiers (as mktorrent's
    /// `-a`): `--announce A,B --announce C` makes tiers [A, B] and [C].
    #[arg(long, value_name = "URL[,URL...]")]
    announce: Vec<String>,
    /// Web seed URLs (BEP 19 `url-list`), separated by commas or repeated (mktorrent's `-w`).
    #[arg(long, value_name = "URL[,URL...]")]
    web_seed: Vec<String>,
    /// Set the private flag (BEP 27).
    #[arg(long)]
    private: bool,
    /// Free text for the torrent's `comment` field (outside `info`: it does not change the
    /// info hash).
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

/// Where the torrent goes.
enum Destination {
    Stdout,
    File(PathBuf),
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
            text => Some(size::parse_size(text).map_err(|e| anyhow::anyhow!("--piece-size: {e}"))?),
        };
        let (name, mut files, single_file) = create::collect(&self.path)?;
        FileOrder::of(version).sort(&mut files);
        let destination = match &self.output {
            Some(path) if path.as_os_str() == "-" => {
                if self.json {
                    anyhow::bail!("-o - writes the torrent to standard output: drop --json");
                }
                if std::io::stdout().is_terminal() {
                    anyhow::bail!(
                        "-o - would write binary data to the terminal: redirect standard output"
                    );
                }
                Destination::Stdout
            }
            path => {
                let path = path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(format!("{name}.torrent")));
                check_output(&path)?;
                Destination::File(path)
            }
        };
        let total: u64 = files.iter().map(|f| f.length).sum();
        let piece = piece_length.unwrap_or_else(|| create::auto_piece_length(total));
        if piece > MAX_PIECE_LENGTH {
            anyhow::bail!(
                "--piece-size {} is larger than the {} a piece can be",
                size::format_size(piece),
                size::format_size(MAX_PIECE_LENGTH)
            );
        }
        let backend = self.backend.open_resilient(super::torrent_work(version))?;
        let memory = match self.memory {
            Some(memory) if memory < 3 * piece => anyhow::bail!(
                "--memory {} holds fewer than 3 pieces of {}: give --memory {} or more, or a \
                 smaller --piece-size",
                size::format_size(memory),
                size::format_size(piece),
                size::format_size(3 * piece)
            ),
            Some(memory) => memory,
            // Large pieces raise the default rather than fail: the user asked for them.
            None => stream::default_memory(backend.kind()).max(3 * piece),
        };
        let creation_date = (!self.no_date).then(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
        });
        let options = CreateOptions {
            version,
            piece_length,
            announce: self.announce.iter().map(|tier| split_urls(tier)).collect(),
            web_seeds: self
                .web_seed
                .iter()
                .flat_map(|urls| split_urls(urls))
                .collect(),
            private: self.private,
            comment: self.comment.clone(),
            source: self.source.clone(),
            creation_date,
            memory,
        };
        let bar = progress::bar(total, self.json, super::verify::BYTES_TEMPLATE);
        let created = create::create(&*backend, &name, &files, single_file, &options, |n| {
            bar.inc(n);
        })?;
        bar.finish_and_clear();
        let shown = match &destination {
            Destination::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&created.bytes)
                    .and_then(|()| out.flush())
                    .context("writing the torrent to standard output")?;
                "standard output".to_owned()
            }
            Destination::File(path) => {
                write_new(path, &created.bytes)?;
                path.display().to_string()
            }
        };
        let meta = &created.meta;
        let report = CreateReport {
            output: shown,
            torrent: TorrentSummary::of(meta),
            seconds: started.elapsed().as_secs_f64(),
            backend: backend.name(),
            device: created.device,
        };
        if self.json {
            super::print_json(&report)?;
            return Ok(ExitCode::SUCCESS);
        }
        // With the torrent on standard output, the summary goes to standard error.
        let mut out: Box<dyn Write> = match destination {
            Destination::Stdout => Box::new(std::io::stderr().lock()),
            Destination::File(_) => Box::new(std::io::stdout().lock()),
        };
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
        Ok(ExitCode::SUCCESS)
    }
}

/// Refuses an output path that cannot be written before any hashing: it exists, its folder
/// does not, or the folder does not take new files (a probe file is made and removed).
fn check_output(path: &Path) -> anyhow::Result<()> {
    if path.symlink_metadata().is_ok() {
        anyhow::bail!(
            "{} already exists (an existing file is never replaced)",
            path.display()
        );
    }
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        anyhow::bail!(
            "cannot write {}: the folder {} does not exist",
            path.display(),
            folder.display()
        );
    }
    let probe = folder.join(format!(".peerhash-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // Best effort: the probe is empty and hidden.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes `bytes` to a new file at `path`; never replaces one that appeared meanwhile.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
            "{} already exists (an existing file is never replaced)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
    };
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        drop(file);
        // A torrent cut short is worse than none.
        let _ = std::fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// `A,B,C` as URLs, blanks dropped.
fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}
