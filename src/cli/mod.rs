//! The `peerhash` command line: one file per subcommand, each a clap struct with `run`.

mod bench;
mod config;
mod create;
mod devices;
mod hash;
mod info;
mod mine;
mod progress;
mod scan;
mod selftest;
mod size;
mod verify;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::hash::{open_backend, open_resilient_backend, Backend, BackendChoice, WorkKind};

/// GPU and CPU hashing for Bitcoin proof-of-work and BitTorrent pieces.
#[derive(Debug, Parser)]
#[command(name = "peerhash", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Devices(devices::Devices),
    Hash(hash::HashFiles),
    Scan(scan::Scan),
    Selftest(selftest::Selftest),
    Bench(bench::Bench),
    Verify(verify::Verify),
    Create(create::Create),
    Info(info::Info),
    Mine(mine::Mine),
    Config(config::Config),
}

/// `--backend`, shared by every subcommand that hashes.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArg {
    /// Where to hash: auto (whichever of the real GPUs and the CPU measured fastest at this
    /// work; the CPU when there is no real GPU), cpu, gpu (the best adapter, lavapipe
    /// included), gpu:INDEX or gpu:NAME (as `peerhash devices` lists them).
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(BackendChoice))]
    backend: BackendChoice,
}

impl BackendArg {
    /// The backend exactly as chosen, for `work` when `auto`: GPU failures are errors (for
    /// `selftest`, `bench`).
    fn open(&self, work: WorkKind) -> anyhow::Result<std::sync::Arc<dyn Backend>> {
        Ok(open_backend(&self.backend, work)?)
    }

    /// The backend for long work: a GPU that fails mid-run hands over to the CPU.
    fn open_resilient(&self, work: WorkKind) -> anyhow::Result<std::sync::Arc<dyn Backend>> {
        Ok(open_resilient_backend(&self.backend, work)?)
    }
}

impl clap::builder::ValueParserFactory for BackendChoice {
    type Parser = clap::builder::ValueParser;

    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<BackendChoice>())
    }
}

/// Runs the command line and maps the outcome to an exit code: 0 success, 1 a negative result
/// (a mismatch, nothing found), 2 bad input, usage or an unavailable backend.
#[must_use]
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEERHASH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wgpu_hal=off")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices(cmd) => cmd.run(),
        Command::Hash(cmd) => cmd.run(),
        Command::Scan(cmd) => cmd.run(),
        Command::Selftest(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
        Command::Verify(cmd) => cmd.run(),
        Command::Create(cmd) => cmd.run(),
        Command::Info(cmd) => cmd.run(),
        Command::Mine(cmd) => cmd.run(),
        Command::Config(cmd) => cmd.run(),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "peerhash: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// What `auto` measures a torrent's hashing as: v2 is SHA-256 of 16 KiB blocks; hybrid does both
/// but counts as SHA-1, whose whole pieces are the larger serial job.
fn torrent_work(version: crate::torrent::Version) -> WorkKind {
    match version {
        crate::torrent::Version::V2 => WorkKind::BulkSha256,
        crate::torrent::Version::V1 | crate::torrent::Version::Hybrid => WorkKind::BulkSha1,
    }
}

/// Prints `value` as one line of JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
