use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::BackendArg;
use crate::hash::{open_backend, BackendChoice, BackendKind};
use crate::mining::api::StatusApi;
use crate::mining::gbt::Gbt;
use crate::mining::getwork::Getwork;
use crate::mining::miner::{self, MinerConfig, MinerEvent, Timed};
use crate::mining::node::NodeSource;
use crate::mining::rpc::{RpcClient, RpcError};
use crate::mining::source::WorkSource;
use crate::mining::status::StatusBoard;
use crate::mining::stratum::{StratumEndpoint, StratumSource};

/// Set by Ctrl-C: the miner stops, reports and exits 0.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A password whose `Debug` output never shows it.
#[derive(Clone)]
struct Password(String);

impl From<String> for Password {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Getwork,
    Gbt,
}

/// Mine: solo against a node (getwork or getblocktemplate) or in a pool (Stratum v1).
#[derive(Debug, clap::Args)]
pub struct Mine {
    /// http://HOST:PORT (a node's JSON-RPC) or stratum+tcp://HOST:PORT (a pool). Repeat for
    /// failover in priority order.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// RPC or pool user name.
    #[arg(long, default_value = "peerhash")]
    user: String,
    /// RPC or pool password (never printed).
    #[arg(long, default_value = "x", hide_default_value = true)]
    pass: Password,
    /// Solo protocol for http:// URLs [default: getwork when the node offers it, else gbt].
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Payout address for --mode gbt (any address the node's validateaddress accepts).
    #[arg(long)]
    address: Option<String>,
    #[command(flatten)]
    backend: BackendArg,
    /// Also hash on the CPU beside a GPU backend; nonce ranges are split between the devices.
    #[arg(long)]
    with_cpu: bool,
    /// Stop after this many blocks were accepted by the node.
    #[arg(long)]
    blocks: Option<u64>,
    /// Stop after this many shares were accepted by the pool.
    #[arg(long)]
    shares: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds between status lines.
    #[arg(long, default_value_t = 10.0)]
    status_every: f64,
    /// Nonces per GPU dispatch as a power of two (12-31) [default: tuned at start so a
    /// dispatch takes --dispatch-ms].
    #[arg(long, value_parser = clap::value_parser!(u8).range(12..=31))]
    intensity: Option<u8>,
    /// Milliseconds one GPU dispatch (or CPU scan call) should take when tuned: shorter
    /// switches to new work faster, longer keeps a GPU busier.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    dispatch_ms: u64,
    /// Serve the read-only status API (JSON at /summary, Prometheus at /metrics) on ADDR:PORT,
    /// or on 127.0.0.1:PORT when given a bare port. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = parse_api_addr)]
    api: Option<SocketAddr>,
    /// Print one JSON event per line instead of text.
    #[arg(long)]
    json: bool,
    /// Test hook: submit one solution that misses the target, to check it is rejected.
    #[arg(long, hide = true)]
    test_submit_bad_share: bool,
}

/// getwork if the node answers it (or cannot be asked yet: the miner retries), gbt if the
/// node says it has no such method.
fn detect_mode(node: &RpcClient) -> Mode {
    match node.call("getwork", serde_json::json!([]), Duration::from_secs(10)) {
        Err(RpcError::Rpc { code: -32601, .. }) => Mode::Gbt,
        _ => Mode::Getwork,
    }
}

/// `PORT` means 127.0.0.1:PORT: the API has no authentication, so other hosts are opt-in.
fn parse_api_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("expected PORT or ADDR:PORT (such as 127.0.0.1:4048), got {text:?}"))
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0 && value <= 1e9) {
        bail!("{flag} must be a positive number of seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

impl Mine {
    fn source(&self) -> anyhow::Result<Box<dyn WorkSource>> {
        let stratum = self
            .urls
            .iter()
            .filter(|u| u.starts_with("stratum+tcp://"))
            .count();
        if stratum == self.urls.len() {
            let endpoints = self
                .urls
                .iter()
                .map(|u| StratumEndpoint::parse(u))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Box::new(StratumSource::new(
                endpoints,
                &self.user,
                &self.pass.0,
            )));
        }
        if stratum != 0 {
            bail!("--url: mix of stratum+tcp:// and http:// URLs; use one kind");
        }
        let nodes = self
            .urls
            .iter()
            .map(|u| RpcClient::new(u, &self.user, &self.pass.0))
            .collect::<Result<Vec<_>, _>>()?;
        let mode = match self.mode {
            Some(mode) => mode,
            None => detect_mode(&nodes[0]),
        };
        Ok(match mode {
            Mode::Getwork => Box::new(NodeSource::new(Getwork::default(), nodes)),
            Mode::Gbt => {
                let address = self
                    .address
                    .as_deref()
                    .context("--mode gbt needs --address (where the block reward goes)")?;
                let gbt = Gbt::new(&nodes[0], address).context("--address")?;
                Box::new(NodeSource::new(gbt, nodes))
            }
        })
    }

    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut config = MinerConfig {
            blocks: self.blocks,
            shares: self.shares,
            duration: self
                .duration
                .map(|d| seconds(d, "--duration"))
                .transpose()?,
            status_every: Some(seconds(self.status_every, "--status-every")?),
            intensity: self.intensity,
            dispatch: Duration::from_millis(self.dispatch_ms),
            board: None,
            submit_bad_share: self.test_submit_bad_share,
        };
        let mut source = self.source()?;
        // One hashing thread per device: `all` and lists come apart into their devices.
        let mut backends = self.backend.open_devices()?;
        if self.with_cpu {
            if backends.iter().any(|b| b.kind() == BackendKind::Cpu) {
                bail!("--with-cpu adds the CPU beside a GPU backend; --backend is already the CPU");
            }
            backends.push(open_backend(&BackendChoice::Cpu)?);
        }
        // The first Ctrl-C or SIGTERM stops cleanly (found shares still go out); a second one
        // exits at once.
        ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        })
        .context("installing the Ctrl-C/SIGTERM handler")?;
        let json = self.json;
        let print = move |event: &Timed| {
            if json {
                if let Err(e) = super::print_json(event) {
                    tracing::debug!("printing an event: {e}");
                }
            } else {
                print_text(event);
            }
        };
        let _api = match self.api {
            Some(addr) => {
                let board = Arc::new(StatusBoard::new());
                let api = StatusApi::start(addr, Arc::clone(&board))?;
                config.board = Some(board);
                print(&Timed::now(MinerEvent::Api {
                    url: format!("http://{}", api.addr()),
                }));
                Some(api)
            }
            None => None,
        };
        let stats = miner::run(source.as_mut(), &backends, &config, &INTERRUPTED, |event| {
            print(&event);
        })?;
        tracing::debug!("mined: {stats:?}");
        Ok(ExitCode::SUCCESS)
    }
}

#[allow(clippy::cast_precision_loss)]
fn print_text(event: &Timed) {
    match &event.event {
        MinerEvent::Connected { url } => println!("connected to {url}"),
        MinerEvent::Disconnected { url, reason } => println!("lost {url}: {reason}; reconnecting"),
        MinerEvent::NewJob { job, clean, height, .. } => match height {
            Some(h) => println!("new job {job} at height {h}{}", if *clean { " (clean)" } else { "" }),
            None => println!("new job {job}{}", if *clean { " (clean)" } else { "" }),
        },
        MinerEvent::Difficulty { difficulty } => println!("difficulty {difficulty}"),
        MinerEvent::Accepted { job, hash, block, .. } => {
            println!("accepted {} {hash} (job {job})", if *block { "block" } else { "share" });
        }
        MinerEvent::Rejected { job, hash, reason, stale, .. } => {
            println!("{} {hash} (job {job}): {reason}", if *stale { "stale" } else { "rejected" });
        }
        MinerEvent::Status { url, device, hashrate, devices, difficulty, stats } => println!(
            "{:.2} MH/s on {} | accepted {} rejected {} stale {} | {url}{}",
            hashrate / 1e6,
            if devices.len() > 1 {
                devices
                    .iter()
                    .map(|d| format!("{} {:.2} MH/s", d.name, d.hashrate / 1e6))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                device.clone()
            },
            stats.accepted,
            stats.rejected,
            stats.stale,
            difficulty.map(|d| format!(" | difficulty {d}")).unwrap_or_default()
        ),
        MinerEvent::Summary { seconds, hashrate, stats, device, .. } => println!(
            "{:.2} MH/s on {device} over {seconds:.1} s | {} hashes, {} found, {} accepted ({} blocks), {} rejected, {} stale, {} hardware errors",
            hashrate / 1e6,
            stats.hashes,
            stats.found,
            stats.accepted,
            stats.blocks,
            stats.rejected,
            stats.stale,
            stats.hw_errors
        ),
        MinerEvent::Error { message } => println!("error: {message}"),
        MinerEvent::Tuned { device, nonces, tuning, dispatch_ms } => match dispatch_ms {
            Some(ms) => println!("{device}: {nonces} nonces per scan (tuned for {ms} ms)"),
            None => println!("{device}: {nonces} nonces per scan ({tuning})"),
        },
        MinerEvent::Api { url } => println!("status API on {url}/summary and {url}/metrics"),
        MinerEvent::Hashing { .. } | MinerEvent::Found { .. } => {}
    }
}
