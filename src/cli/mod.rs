//! The `peerhash` command line: one file per subcommand, each a clap struct with `run`.

mod bench;
mod completions;
mod config;
mod create;
mod devices;
mod find;
mod hash;
mod info;
mod mine;
mod printable;
mod progress;
mod scan;
mod selftest;
mod size;
mod tui;
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
    Find(find::Find),
    Info(info::Info),
    Mine(mine::Mine),
    Config(config::Config),
    Completions(completions::Completions),
    Man(completions::Man),
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

    /// [`BackendArg::open_resilient`] with its GPUs under `watchdog`.
    fn open_watched_resilient(
        &self,
        work: WorkKind,
        watchdog: Option<&crate::hash::Watchdog>,
    ) -> anyhow::Result<std::sync::Arc<dyn Backend>> {
        Ok(crate::hash::open_watched_resilient_backend(
            &self.backend,
            work,
            watchdog,
        )?)
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
    // Before any thread exists (setting the environment is only sound then).
    let quieted = quiet_display_probe();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PEERHASH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wgpu_hal=off")),
        )
        // Into the live view's event list while `mine` shows it, else stderr.
        .with_writer(tui::LogWriter)
        // Colour codes only for a terminal, never in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    if quieted {
        tracing::debug!(
            "XDG_RUNTIME_DIR was unset: set to {NO_DISPLAY_DIR} so the GPU driver's display \
             probe fails quietly"
        );
    }
    let (cli, json) = match parse() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Devices(cmd) => cmd.run(),
        Command::Hash(cmd) => cmd.run(),
        Command::Scan(cmd) => cmd.run(),
        Command::Selftest(cmd) => cmd.run(),
        Command::Bench(cmd) => cmd.run(),
        Command::Verify(cmd) => cmd.run(),
        Command::Create(cmd) => cmd.run(),
        Command::Find(cmd) => cmd.run(),
        Command::Info(cmd) => cmd.run(),
        Command::Mine(cmd) => cmd.run(),
        Command::Config(cmd) => cmd.run(),
        Command::Completions(cmd) => cmd.run(),
        Command::Man(cmd) => cmd.run(),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&format!("{e:#}"), json);
            ExitCode::from(2)
        }
    }
}

/// Where `XDG_RUNTIME_DIR` points when it is unset: a path under which nothing can exist.
const NO_DISPLAY_DIR: &str = "/dev/null";

/// Mesa's Vulkan drivers look for a Wayland display while wgpu lists adapters, and libwayland
/// prints `error: XDG_RUNTIME_DIR is invalid or not set` when that variable is missing, though
/// peerhash never draws anything. With it set to a path where no socket can exist, the look
/// fails quietly, and no display server can be reached through it. True when it was set here.
fn quiet_display_probe() -> bool {
    let usable = std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|dir| std::path::Path::new(&dir).is_absolute());
    if !usable {
        std::env::set_var("XDG_RUNTIME_DIR", NO_DISPLAY_DIR);
    }
    !usable
}

/// The command line and whether its subcommand was given `--json`. A usage error is reported
/// here (as JSON too when `--json` is among the arguments) and its exit code returned.
fn parse() -> Result<(Cli, bool), ExitCode> {
    use clap::{CommandFactory, FromArgMatches};
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|matches| Ok((Cli::from_arg_matches(&matches)?, matches)));
    match parsed {
        Ok((cli, matches)) => {
            let json = matches
                .subcommand()
                .and_then(|(_, sub)| sub.try_get_one::<bool>("json").ok().flatten())
                .copied()
                .unwrap_or(false);
            Ok((cli, json))
        }
        Err(e) if !e.use_stderr() => {
            // --help and --version: not errors.
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            if std::env::args_os().any(|a| a == "--json") {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                print_json_error(first.strip_prefix("error: ").unwrap_or(first));
            }
            let _ = e.print();
            Err(ExitCode::from(2))
        }
    }
}

/// Prints an error for a person on stderr, with control characters escaped (messages quote
/// names from torrents), and with `--json` also as `{"error": ...}` on stdout, exact.
fn report_error(message: &str, json: bool) {
    if json {
        print_json_error(message);
    }
    let _ = writeln!(
        std::io::stderr(),
        "peerhash: error: {}",
        printable::Printable(message)
    );
}

fn print_json_error(message: &str) {
    let _ = print_json(&serde_json::json!({ "error": message }));
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
