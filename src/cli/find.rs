use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::printable::Printable;
use super::{progress, size, BackendArg};
use crate::hash::WorkKind;
use crate::torrent::find::{self, FileMatch, LinkOutcome, Proof, SizeIndex, TorrentMatch};
use crate::torrent::{stream, Metainfo, Version};

const HASHED_TEMPLATE: &str = "{spinner} hashed {binary_bytes} ({binary_bytes_per_sec})";

/// Find a torrent's files under some folders by content, whatever they are called now: files
/// of the exact size are proven by hashing (v2: the file's merkle root; v1: its pieces). Exit 0
/// when every file of every torrent was found (and linked), 1 when some were not, 2 bad input.
#[derive(Debug, clap::Args)]
pub struct Find {
    /// The .torrent files.
    #[arg(required = true)]
    torrents: Vec<PathBuf>,
    /// Folders to search (symbolic links inside them are not followed).
    #[arg(long = "in", value_name = "DIR", required = true, num_args = 1..)]
    search: Vec<PathBuf>,
    /// Lay each torrent out under this save folder with hard links to the files found
    /// (symbolic links across file systems), as a client would save it; nothing that exists
    /// is ever replaced or followed.
    #[arg(long, value_name = "SAVE_DIR")]
    link_to: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArg,
    /// Read buffers in flight (e.g. 64M, 1G). [default: 256M on the CPU, 1G on a GPU]
    #[arg(long, value_parser = size::parse_size)]
    memory: Option<u64>,
    /// Print the report as one JSON object (errors too, as {"error": ...}).
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct FindReport {
    /// Every file of every torrent found (and linked, with --link-to).
    ok: bool,
    torrents: Vec<TorrentReport>,
    /// Regular files under the search folders, and those of a size some torrent file has.
    files_seen: u64,
    candidates: usize,
    /// Walking the folders and building the size index.
    index_seconds: f64,
    bytes_hashed: u64,
    bytes_matched: u64,
    seconds: f64,
    backend: String,
    /// Entries of the search folders that could not be read.
    warnings: Vec<String>,
}

#[derive(serde::Serialize)]
struct TorrentReport {
    torrent: String,
    #[serde(flatten)]
    found: TorrentMatch,
    /// With --link-to: where the torrent was laid out (a client's save path is SAVE_DIR).
    #[serde(skip_serializing_if = "Option::is_none")]
    content_path: Option<String>,
    /// With --link-to: what was done for each file, in the order of `files`.
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Vec<Option<LinkOutcome>>>,
}

impl Find {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        let metas: Vec<Metainfo> = self
            .torrents
            .iter()
            .map(|t| super::info::load(t))
            .collect::<anyhow::Result<_>>()?;
        if let Some(save) = &self.link_to {
            if !save.is_dir() {
                anyhow::bail!("--link-to {}: not a folder", save.display());
            }
        }
        let work = if metas.iter().all(|m| m.version == Version::V2) {
            WorkKind::BulkSha256
        } else {
            WorkKind::BulkSha1
        };
        let index_started = Instant::now();
        let index = SizeIndex::build(&self.search, &find::wanted_sizes(&metas))?;
        let index_seconds = index_started.elapsed().as_secs_f64();
        let backend = self.backend.open_resilient(work)?;
        let largest_piece = metas
            .iter()
            .map(|m| m.layout.piece_length)
            .max()
            .unwrap_or(0);
        let memory = self
            .memory
            .unwrap_or_else(|| stream::default_memory(backend.kind()).max(3 * largest_piece));
        let bar = progress::bar(0, self.json, HASHED_TEMPLATE);
        let outcome = find::find(&metas, &index, &*backend, memory, &mut |n| bar.inc(n))?;
        bar.finish_and_clear();
        let mut ok = true;
        let mut torrents = Vec::with_capacity(metas.len());
        for ((path, meta), found) in self.torrents.iter().zip(&metas).zip(outcome.torrents) {
            ok &= found.complete;
            let (content_path, links) = match &self.link_to {
                Some(save) => {
                    let links = lay_out(meta, &found.files, save);
                    ok &= links.iter().flatten().all(|l| {
                        matches!(
                            l,
                            LinkOutcome::HardLink | LinkOutcome::SymLink | LinkOutcome::Created
                        )
                    });
                    let content = if meta.single_file {
                        find::save_path(meta, 0, save)
                    } else {
                        save.join(&meta.name)
                    };
                    (Some(content.display().to_string()), Some(links))
                }
                None => (None, None),
            };
            torrents.push(TorrentReport {
                torrent: path.display().to_string(),
                found,
                content_path,
                links,
            });
        }
        let report = FindReport {
            ok,
            torrents,
            files_seen: index.files_seen,
            candidates: index.len(),
            index_seconds,
            bytes_hashed: outcome.bytes_hashed,
            bytes_matched: outcome.bytes_matched,
            seconds: started.elapsed().as_secs_f64(),
            backend: backend.name(),
            warnings: index.warnings.clone(),
        };
        if self.json {
            super::print_json(&report)?;
        } else {
            print_summary(&report, index.more_warnings)?;
        }
        Ok(if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

/// Links every found file (and creates every empty one) at its place under `save`.
fn lay_out(
    meta: &Metainfo,
    files: &[FileMatch],
    save: &std::path::Path,
) -> Vec<Option<LinkOutcome>> {
    files
        .iter()
        .map(|file| {
            if !file.proof.found() {
                return None;
            }
            let target = find::save_path(meta, file.file, save);
            Some(find::link_file(save, &target, file.found.as_deref()))
        })
        .collect()
}

/// The words the text report uses for a proof.
fn word(proof: Proof) -> &'static str {
    match proof {
        Proof::Empty => "empty",
        Proof::Root => "v2 root",
        Proof::Pieces => "pieces",
        Proof::Partial => "partial",
        Proof::SizeOnly => "size only",
        Proof::Mismatch => "mismatch",
        Proof::Missing => "missing",
    }
}

fn link_word(link: &LinkOutcome) -> String {
    match link {
        LinkOutcome::HardLink => "linked".to_owned(),
        LinkOutcome::SymLink => "symlinked".to_owned(),
        LinkOutcome::Created => "created".to_owned(),
        LinkOutcome::Refused(why) => format!("refused: {}", Printable(why)),
        LinkOutcome::Failed(why) => format!("failed: {}", Printable(why)),
    }
}

fn print_summary(report: &FindReport, more_warnings: u64) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for torrent in &report.torrents {
        let found = &torrent.found;
        let count = found.files.iter().filter(|f| f.proof.found()).count();
        writeln!(
            out,
            "{} ({}): {count} of {} files found",
            Printable(&found.name),
            found.version,
            found.files.len()
        )?;
        for (i, file) in found.files.iter().enumerate() {
            write!(out, "  {:<10} {}", word(file.proof), Printable(&file.path))?;
            if let Some(path) = &file.found {
                let shown = path.display().to_string();
                write!(out, "  <- {}", Printable(&shown))?;
            }
            if matches!(file.proof, Proof::Mismatch | Proof::SizeOnly) {
                write!(out, "  ({} of its size)", file.candidates)?;
            }
            if let Some(Some(link)) = torrent.links.as_ref().and_then(|l| l.get(i)) {
                write!(out, "  [{}]", link_word(link))?;
            }
            writeln!(out)?;
        }
        if let Some(content) = &torrent.content_path {
            writeln!(out, "  laid out in {}", Printable(content))?;
        }
    }
    for warning in &report.warnings {
        writeln!(out, "skipped {}", Printable(warning))?;
    }
    if more_warnings > 0 {
        writeln!(out, "... and {more_warnings} more unreadable entries")?;
    }
    #[allow(clippy::cast_precision_loss)]
    let mb = |bytes: u64| bytes as f64 / 1e6;
    writeln!(
        out,
        "indexed {} files ({} of a wanted size) in {:.2} s; hashed {:.1} MB to match {:.1} MB \
         in {:.2} s on {}",
        report.files_seen,
        report.candidates,
        report.index_seconds,
        mb(report.bytes_hashed),
        mb(report.bytes_matched),
        report.seconds,
        report.backend
    )?;
    writeln!(out, "{}", if report.ok { "OK" } else { "INCOMPLETE" })
}
