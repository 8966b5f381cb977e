use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::printable::Printable;
use super::{progress, size, BackendArg};
use crate::torrent::resume::{self, Resume};
use crate::torrent::stream;
use crate::torrent::verify::{self, FileStatus, Half, VerifyReport};
use crate::torrent::Metainfo;

pub const BYTES_TEMPLATE: &str =
    "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// Check data on disk against a .torrent file (v1, v2 or hybrid). Exit 0 all good, 1 bad or
/// missing data, 2 an invalid torrent, a DATA path that does not exist, or usage.
#[derive(Debug, clap::Args)]
pub struct Verify {
    /// The .torrent file.
    torrent: PathBuf,
    /// The save directory holding the torrent's `name`, or the content itself.
    #[arg(default_value = ".")]
    data: PathBuf,
    #[command(flatten)]
    backend: BackendArg,
    /// Read buffers in flight (e.g. 64M, 1G): peak memory stays near this whatever the size.
    /// [default: 256M on the CPU, 1G on a GPU]
    #[arg(long, value_parser = size::parse_size)]
    memory: Option<u64>,
    /// Print the report as one JSON object (errors too, as {"error": ...}).
    #[arg(long)]
    json: bool,
    /// Also write libtorrent resume data holding the pieces found good (qBittorrent's
    /// `BT_backup/<id>.fastresume`), so the client skips its recheck; never replaces a file.
    #[arg(long, value_name = "FILE")]
    resume_out: Option<PathBuf>,
}

impl Verify {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let meta = super::info::load(&self.torrent)?;
        // A mistyped DATA is a usage error, not a torrent whose every file is missing.
        if let Err(e) = std::fs::metadata(&self.data) {
            anyhow::bail!(
                "DATA {}: {e}; give the folder the torrent was saved into, or the content itself",
                self.data.display()
            );
        }
        if let Some(out) = &self.resume_out {
            refuse_existing(out)?;
        }
        let backend = self
            .backend
            .open_resilient(super::torrent_work(meta.version))?;
        let located = verify::locate(&meta, &self.data);
        let bar = progress::bar(meta.layout.total_length(), self.json, BYTES_TEMPLATE);
        let memory = self
            .memory
            // Big pieces raise the default, as `create` does, rather than fail on it.
            .unwrap_or_else(|| {
                stream::default_memory(backend.kind()).max(3 * meta.layout.piece_length)
            });
        let report = verify::verify(&meta, &located, &*backend, memory, |n| bar.inc(n))?;
        bar.finish_and_clear();
        if let Some(out) = &self.resume_out {
            write_resume(&meta, &report, &located.files, out)?;
        }
        if self.json {
            super::print_json(&report)?;
        } else {
            print_summary(&report, located.content.exists())?;
        }
        Ok(if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

/// The words the text report uses for a status (JSON uses the snake_case names).
fn word(status: FileStatus) -> &'static str {
    match status {
        FileStatus::Ok => "ok",
        FileStatus::Corrupt => "corrupt",
        FileStatus::SharesBadPiece => "shares bad piece",
        FileStatus::Missing => "missing",
        FileStatus::WrongSize => "wrong size",
        FileStatus::Unreadable => "unreadable",
        FileStatus::Changed => "changed",
    }
}

/// `count` with the noun in singular or plural.
fn counted(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// A piece length as people write it: `16 KiB`, `4 MiB`, or bytes when not a round number.
fn piece_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => counted(usize::try_from(b).unwrap_or(usize::MAX), "byte", "bytes"),
    }
}

/// The disagreements listed in full; more are counted.
const DISAGREEMENTS_SHOWN: usize = 10;

fn print_summary(report: &VerifyReport, content_exists: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} ({}, {} of {})",
        Printable(&report.name),
        report.version,
        counted(
            usize::try_from(report.pieces_total).unwrap_or(usize::MAX),
            "piece",
            "pieces"
        ),
        piece_size(report.piece_length)
    )?;
    let missing = if content_exists { "" } else { " (not found)" };
    writeln!(out, "content: {}{missing}", Printable(&report.content_path))?;
    for file in report.files.iter().filter(|f| f.status != FileStatus::Ok) {
        write!(
            out,
            "  {:<16}  {}",
            word(file.status),
            Printable(&file.path)
        )?;
        let nothing_read = matches!(file.status, FileStatus::Missing | FileStatus::Unreadable);
        if !file.bad_pieces.is_empty() && !nothing_read {
            write!(
                out,
                "  ({}, {:.1}% complete)",
                counted(file.bad_pieces.len(), "bad piece", "bad pieces"),
                file.percent_complete
            )?;
        }
        writeln!(out)?;
    }
    for disagreement in report.v1_v2_disagree.iter().take(DISAGREEMENTS_SHOWN) {
        let (failed, matched) = match disagreement.failed {
            Half::V1 => ("v1 (SHA-1)", "v2 (SHA-256)"),
            Half::V2 => ("v2 (SHA-256)", "v1 (SHA-1)"),
        };
        writeln!(
            out,
            "piece {}: its {failed} hash fails but its {matched} hash matches: the torrent's \
             halves disagree",
            disagreement.piece
        )?;
    }
    if report.v1_v2_disagree.len() > DISAGREEMENTS_SHOWN {
        writeln!(
            out,
            "... and {} more where v1 and v2 disagree (all of them in --json)",
            report.v1_v2_disagree.len() - DISAGREEMENTS_SHOWN
        )?;
    }
    writeln!(out, "files: {}", tally(report))?;
    writeln!(
        out,
        "pieces: {} of {} bad, {:.1}% complete",
        report.bad_pieces.len(),
        report.pieces_total,
        report.percent_complete
    )?;
    let mb = report.bytes_hashed as f64 / 1e6;
    writeln!(
        out,
        "hashed {mb:.1} MB in {:.2} s ({:.0} MB/s) on {}",
        report.seconds,
        mb / report.seconds.max(1e-9),
        report.backend
    )?;
    if let Some(device) = &report.device {
        writeln!(out, "{}", super::bench::describe_device(device))?;
    }
    writeln!(out, "{}", if report.ok { "OK" } else { "BAD" })
}

/// How many files are in each status, in the order of [`FileStatus`]: `3 ok, 1 corrupt`.
fn tally(report: &VerifyReport) -> String {
    const ORDER: [FileStatus; 7] = [
        FileStatus::Ok,
        FileStatus::Corrupt,
        FileStatus::SharesBadPiece,
        FileStatus::Missing,
        FileStatus::WrongSize,
        FileStatus::Unreadable,
        FileStatus::Changed,
    ];
    let parts: Vec<String> = ORDER
        .iter()
        .map(|&s| (s, report.files.iter().filter(|f| f.status == s).count()))
        .filter(|&(_, n)| n > 0)
        .map(|(s, n)| format!("{n} {}", word(s)))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Checked before hashing, so a taken name costs nothing; `create_new` closes the race later.
fn refuse_existing(out: &Path) -> anyhow::Result<()> {
    if out.symlink_metadata().is_ok() {
        anyhow::bail!(
            "{}: exists; --resume-out never replaces a file",
            out.display()
        );
    }
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    if dir.is_some_and(|d| !d.is_dir()) {
        anyhow::bail!("{}: no such directory for --resume-out", out.display());
    }
    Ok(())
}

fn write_resume(
    meta: &Metainfo,
    report: &VerifyReport,
    paths: &[PathBuf],
    out: &Path,
) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let resume = Resume::from_verify(meta, report, paths, now)?;
    let bytes = resume.encode()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("{}: --resume-out never replaces a file", out.display()))?;
    if let Err(e) = file.write_all(&bytes) {
        drop(file);
        let _ = std::fs::remove_file(out);
        return Err(e).with_context(|| format!("writing {}", out.display()));
    }
    eprintln!(
        "resume data ({} of {} pieces) in {}; for qBittorrent: BT_backup/{id}.fastresume beside \
         BT_backup/{id}.torrent",
        resume.have_count(),
        report.pieces_total,
        out.display(),
        id = resume::qbittorrent_id(meta),
    );
    Ok(())
}
