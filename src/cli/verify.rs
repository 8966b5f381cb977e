use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::{progress, size, BackendArg};
use crate::torrent::resume::{self, Resume};
use crate::torrent::stream;
use crate::torrent::verify::{self, FileStatus, VerifyReport};
use crate::torrent::Metainfo;

pub const BYTES_TEMPLATE: &str =
    "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}";

/// Check data on disk against a .torrent file (v1, v2 or hybrid). Exit 0 all good, 1 bad or
/// missing data, 2 an invalid torrent or usage.
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
    /// Print the report as one JSON object.
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
        if let Some(out) = &self.resume_out {
            refuse_existing(out)?;
        }
        let backend = self
            .backend
            .open_resilient(super::torrent_work(meta.version))?;
        let paths = verify::locate(&meta, &self.data);
        let bar = progress::bar(meta.layout.total_length(), self.json, BYTES_TEMPLATE);
        let memory = self
            .memory
            .unwrap_or_else(|| stream::default_memory(backend.kind()));
        let report = verify::verify(&meta, &paths, &*backend, memory, |n| bar.inc(n))?;
        bar.finish_and_clear();
        if let Some(out) = &self.resume_out {
            write_resume(&meta, &report, &paths, out)?;
        }
        if self.json {
            super::print_json(&report)?;
        } else {
            print_summary(&report)?;
        }
        Ok(if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

fn print_summary(report: &VerifyReport) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} ({:?}, {} pieces of {} bytes)",
        report.name, report.version, report.pieces_total, report.piece_length
    )?;
    for file in report.files.iter().filter(|f| f.status != FileStatus::Ok) {
        let status = serde_json::to_value(file.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        write!(out, "{status:>11}  {}", file.path)?;
        if !file.bad_pieces.is_empty() {
            write!(out, "  ({} bad pieces)", file.bad_pieces.len())?;
        }
        writeln!(out)?;
    }
    if !report.v1_v2_disagree.is_empty() {
        writeln!(
            out,
            "v1 and v2 hashes disagree on pieces {:?}",
            report.v1_v2_disagree
        )?;
    }
    let mb = report.bytes_hashed as f64 / 1e6;
    writeln!(
        out,
        "{} of {} pieces bad; hashed {mb:.1} MB in {:.2} s ({:.0} MB/s) on {}",
        report.bad_pieces.len(),
        report.pieces_total,
        report.seconds,
        mb / report.seconds.max(1e-9),
        report.backend
    )?;
    if let Some(device) = &report.device {
        writeln!(out, "{}", super::bench::describe_device(device))?;
    }
    writeln!(out, "{}", if report.ok { "OK" } else { "FAILED" })
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
