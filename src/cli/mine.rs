use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::config::{self, ConfigFile};
use super::tui::LiveView;
use crate::hash::{
    open_backend, open_watched_devices, BackendChoice, BackendKind, NonceSearcher, Watchdog,
    WatchdogConfig, WorkKind, DEFAULT_DISPATCH, MAX_INTENSITY, MIN_INTENSITY,
};
use crate::mining::api::StatusApi;
use crate::mining::background::BackgroundSource;
use crate::mining::cgminer_api::{CgminerApi, RigInfo};
use crate::mining::chain::{MakePool, PoolChain};
use crate::mining::endpoint;
use crate::mining::gbt::Gbt;
use crate::mining::getwork::Getwork;
use crate::mining::health::{DeviceEvent, DeviceHealth, TempLimits};
use crate::mining::miner::{self, MinerConfig, MinerEvent, Timed};
use crate::mining::node::NodeSource;
use crate::mining::rpc::{RpcClient, RpcError};
use crate::mining::source::{SourceError, WorkSource};
use crate::mining::status::StatusBoard;
use crate::mining::stratum::{PoolLogin, StratumEndpoint, StratumSource};
use crate::mining::stratum2::{Sv2Endpoint, Sv2Pool, Sv2Source};

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

impl serde::Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Getwork,
    Gbt,
}

/// Mine: solo against a node (getwork or getblocktemplate) or in a pool (Stratum v1 or V2).
///
/// Settings come from the flags, then the config file, then the defaults.
#[derive(Debug, clap::Args)]
pub struct Mine {
    /// http://HOST:PORT (a node's JSON-RPC), stratum+tcp://HOST:PORT or
    /// stratum2+tcp://HOST:PORT/AUTHORITY_KEY (a pool; v1 and V2 may be mixed). Repeat for
    /// failover in priority order. Replaces the config file's pools.
    #[arg(long = "url")]
    urls: Vec<String>,
    /// RPC or pool user name, for every pool [default: peerhash].
    #[arg(long)]
    user: Option<String>,
    /// RPC or pool password, for every pool (never printed) [default: x].
    #[arg(long)]
    pass: Option<Password>,
    /// Solo protocol for http:// URLs [default: getwork when the node offers it, else gbt].
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Payout address for --mode gbt (any address the node's validateaddress accepts).
    #[arg(long)]
    address: Option<String>,
    /// Where to hash: auto, cpu, gpu, gpu:INDEX, gpu:NAME, all (every GPU and the CPU), or a
    /// list such as gpu:0,cpu [default: auto].
    #[arg(long, value_parser = clap::value_parser!(BackendChoice))]
    backend: Option<BackendChoice>,
    /// Also hash on the CPU beside a GPU backend; nonce ranges are split between the devices
    /// (`--with-cpu=false` overrides `with_cpu = true` in the config file).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    with_cpu: Option<bool>,
    /// Stop after this many blocks were accepted by the node.
    #[arg(long)]
    blocks: Option<u64>,
    /// Stop after this many shares were accepted by the pool.
    #[arg(long)]
    shares: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds between status lines [default: 10].
    #[arg(long)]
    status_every: Option<f64>,
    /// Nonces per GPU dispatch as a power of two (12-31) [default: tuned at start so a
    /// dispatch takes --dispatch-ms].
    #[arg(long, value_parser = clap::value_parser!(u8).range(i64::from(MIN_INTENSITY)..=i64::from(MAX_INTENSITY)))]
    intensity: Option<u8>,
    /// Milliseconds one GPU dispatch (or CPU scan call) should take when tuned: shorter
    /// switches to new work faster, longer keeps a GPU busier [default: 30].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=DISPATCH_MS_MAX))]
    dispatch_ms: Option<u64>,
    /// Serve the read-only status API (JSON at /summary, Prometheus at /metrics) on ADDR:PORT,
    /// or on 127.0.0.1:PORT when given a bare port. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = parse_api_addr)]
    api: Option<SocketAddr>,
    /// Serve the read-only cgminer API (JSON over TCP, as dashboards and pyasic poll it) on
    /// ADDR:PORT, or on 127.0.0.1:PORT when given a bare port; 4028 is cgminer's port. Off by
    /// default.
    #[arg(long, value_name = "ADDR", value_parser = parse_api_addr)]
    api_cgminer: Option<SocketAddr>,
    /// Restart a GPU whose scan call fails or hashes nothing for this many seconds, searching
    /// its range again; after 3 restarts in 10 minutes it is dropped and the other devices go
    /// on (0: no watchdog) [default: 60].
    #[arg(long, value_name = "SECONDS")]
    watchdog_secs: Option<u64>,
    /// Pause a device whose temperature reaches this many degrees Celsius (hwmon or NVML;
    /// devices without a sensor are not limited).
    #[arg(long, value_name = "CELSIUS")]
    temp_stop: Option<f64>,
    /// Resume a paused device once it cools to this many degrees Celsius, below --temp-stop
    /// [default: --temp-stop minus 10].
    #[arg(long, value_name = "CELSIUS")]
    temp_resume: Option<f64>,
    /// Where sysfs is mounted, for hwmon temperatures (tests point it at a fake tree).
    #[arg(long, hide = true, default_value = "/sys")]
    sysfs_root: PathBuf,
    /// Config file (TOML; `peerhash config example` prints one) [default:
    /// $XDG_CONFIG_HOME/peerhash/config.toml or ~/.config/peerhash/config.toml, if present].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ignore the default config file.
    #[arg(long, conflicts_with = "config")]
    no_config: bool,
    /// Print the settings in effect (flags over file over defaults) as JSON, passwords
    /// masked, and exit without mining.
    #[arg(long)]
    show_config: bool,
    /// Print one JSON event per line instead of text.
    #[arg(long)]
    json: bool,
    /// Print text lines on a terminal too, instead of the live view.
    #[arg(long)]
    no_tui: bool,
    /// Test hook: submit one solution that misses the target, to check it is rejected.
    #[arg(long, hide = true)]
    test_submit_bad_share: bool,
}

const DISPATCH_MS_MAX: u64 = 10_000;

/// `--watchdog-secs` unless told otherwise: far above any tuned dispatch, short enough that a
/// hung GPU does not idle for long.
pub(super) const DEFAULT_WATCHDOG_SECS: u64 = 60;

/// The watchdog for `--watchdog-secs`: none for 0.
pub(super) fn watchdog(secs: u64) -> Option<Watchdog> {
    (secs > 0).then(|| Watchdog::new(WatchdogConfig::new(Duration::from_secs(secs))))
}

/// One pool (or node) with its login.
#[derive(Debug, Clone, serde::Serialize)]
struct PoolSetting {
    #[serde(serialize_with = "masked")]
    url: String,
    user: String,
    pass: Password,
}

/// What `mine` runs with, once flags, the config file and defaults are combined.
#[derive(Debug, serde::Serialize)]
struct MineSettings {
    config_file: Option<PathBuf>,
    pools: Vec<PoolSetting>,
    mode: Option<Mode>,
    address: Option<String>,
    #[serde(serialize_with = "as_text")]
    backend: BackendChoice,
    with_cpu: bool,
    intensity: Option<u8>,
    dispatch_ms: u64,
    status_every: f64,
    api: Option<SocketAddr>,
    api_cgminer: Option<SocketAddr>,
    watchdog_secs: u64,
    temp_limits: Option<TempLimits>,
}

fn masked<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&endpoint::mask(url))
}

fn as_text<S: serde::Serializer>(value: &BackendChoice, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// A URL `mine` can use: a pool or a node's JSON-RPC.
fn check_url(url: &str) -> anyhow::Result<()> {
    if url.starts_with("stratum+tcp://") {
        StratumEndpoint::parse(url)?;
    } else if url.starts_with("stratum2+tcp://") {
        Sv2Endpoint::parse(url)?;
    } else if url.starts_with("http://") {
        RpcClient::new(url, "", "")?;
    } else {
        bail!(
            "{:?} is neither stratum+tcp://HOST:PORT or stratum2+tcp://HOST:PORT/AUTHORITY_KEY \
             (a pool) nor http://HOST:PORT (a node)",
            endpoint::mask(url)
        );
    }
    Ok(())
}

/// `url` as its work source names it (without credentials), for the cgminer API's pool list.
fn source_url(url: &str) -> String {
    if let Ok(pool) = StratumEndpoint::parse(url) {
        pool.url()
    } else if let Ok(pool) = Sv2Endpoint::parse(url) {
        pool.url()
    } else if let Ok(node) = RpcClient::new(url, "", "") {
        node.url()
    } else {
        endpoint::mask(url)
    }
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

impl MineSettings {
    /// The work source, running on its own thread: even finding out which protocol a node
    /// speaks is a network call the miner loop must not wait for.
    fn source(&self) -> anyhow::Result<Box<dyn WorkSource>> {
        let first_url = endpoint::mask(&self.pools[0].url);
        let stratum = self
            .pools
            .iter()
            .filter(|p| p.url.starts_with("stratum+tcp://"))
            .count();
        if stratum == self.pools.len() {
            let pools = self
                .pools
                .iter()
                .map(|p| {
                    let endpoint = StratumEndpoint::parse(&p.url)?;
                    // A login written in the URL wins over --user/--pass.
                    let (user, pass) = endpoint.login();
                    Ok(PoolLogin {
                        user: user.unwrap_or(&p.user).to_owned(),
                        pass: pass.unwrap_or(&p.pass.0).to_owned(),
                        endpoint,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let url = pools[0].endpoint.url();
            return Ok(Box::new(BackgroundSource::spawn(
                url,
                Box::new(move || Ok(Box::new(StratumSource::new(pools)))),
            )));
        }
        let sv2 = self
            .pools
            .iter()
            .filter(|p| p.url.starts_with("stratum2+tcp://"))
            .count();
        if sv2 > 0 && stratum + sv2 == self.pools.len() {
            return self.pool_chain();
        }
        if stratum + sv2 != 0 {
            bail!("pools: a mix of stratum URLs and http:// URLs; use pools or nodes");
        }
        let nodes = self
            .pools
            .iter()
            .map(|p| RpcClient::new(&p.url, &p.user, &p.pass.0))
            .collect::<Result<Vec<_>, _>>()?;
        if self.mode == Some(Mode::Gbt) && self.address.is_none() {
            bail!("--mode gbt needs --address (where the block reward goes)");
        }
        let (mode, address) = (self.mode, self.address.clone());
        let url = nodes.first().map_or(first_url, RpcClient::url);
        Ok(Box::new(BackgroundSource::spawn(
            url,
            Box::new(move || -> Result<Box<dyn WorkSource + Send>, SourceError> {
                let mode = mode.unwrap_or_else(|| detect_mode(&nodes[0]));
                Ok(match (mode, address) {
                    (Mode::Getwork, _) => Box::new(NodeSource::new(Getwork::default(), nodes)),
                    (Mode::Gbt, address) => {
                        let Some(address) = address else {
                            return Err(SourceError::NeedsAddress);
                        };
                        let gbt =
                            Gbt::new(&nodes[0], &address).map_err(|error| SourceError::Node {
                                url: nodes[0].url(),
                                error,
                            })?;
                        Box::new(NodeSource::new(gbt, nodes))
                    }
                })
            }),
        )))
    }
}

impl MineSettings {
    /// A list with Stratum V2 pools (and maybe v1 ones): one single-pool source at a time.
    fn pool_chain(&self) -> anyhow::Result<Box<dyn WorkSource>> {
        let pools = self
            .pools
            .iter()
            .map(|p| -> anyhow::Result<(String, MakePool)> {
                if p.url.starts_with("stratum2+tcp://") {
                    let endpoint = Sv2Endpoint::parse(&p.url)?;
                    let pool = Sv2Pool {
                        user: endpoint.user().unwrap_or(&p.user).to_owned(),
                        endpoint,
                    };
                    let make: MakePool = Box::new(move || Box::new(Sv2Source::new(pool.clone())));
                    return Ok((endpoint::mask(&p.url), make));
                }
                let endpoint = StratumEndpoint::parse(&p.url)?;
                let (user, pass) = endpoint.login();
                let login = PoolLogin {
                    user: user.unwrap_or(&p.user).to_owned(),
                    pass: pass.unwrap_or(&p.pass.0).to_owned(),
                    endpoint,
                };
                let url = login.endpoint.url();
                let make: MakePool =
                    Box::new(move || Box::new(StratumSource::new(vec![login.clone()])));
                Ok((url, make))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let url = pools[0].0.clone();
        Ok(Box::new(BackgroundSource::spawn(
            url,
            Box::new(move || Ok(Box::new(PoolChain::new(pools)))),
        )))
    }
}

impl Mine {
    /// Flags over the config file over defaults; file values are checked here, each error
    /// naming the file and the key.
    fn settings(&self) -> anyhow::Result<MineSettings> {
        let path = match (&self.config, self.no_config) {
            (Some(path), _) => Some(path.clone()),
            (None, false) => config::default_path().filter(|p| p.is_file()),
            (None, true) => None,
        };
        let file = match &path {
            Some(path) => config::load(path)?,
            None => ConfigFile::default(),
        };
        let at = |key: &str| match &path {
            Some(path) => format!("{}: {key}", path.display()),
            None => key.to_owned(),
        };
        let user = self.user.clone();
        let pass = self.pass.clone();
        let pools = if self.urls.is_empty() {
            file.pool
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    check_url(&p.url).with_context(|| at(&format!("pool[{}].url", i + 1)))?;
                    Ok(PoolSetting {
                        url: p.url.clone(),
                        user: user
                            .clone()
                            .or_else(|| p.user.clone())
                            .unwrap_or_else(|| "peerhash".into()),
                        pass: pass
                            .clone()
                            .or_else(|| p.pass.clone().map(Password))
                            .unwrap_or_else(|| Password("x".into())),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        } else {
            self.urls
                .iter()
                .map(|url| {
                    check_url(url).context("--url")?;
                    Ok(PoolSetting {
                        url: url.clone(),
                        user: user.clone().unwrap_or_else(|| "peerhash".into()),
                        pass: pass.clone().unwrap_or_else(|| Password("x".into())),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        if pools.is_empty() {
            bail!(
                "no pool or node to mine on: give --url (or [[pool]] entries in a config file; \
                 `peerhash config example` prints one)"
            );
        }
        let backend = match (&self.backend, &file.backend) {
            (Some(backend), _) => backend.clone(),
            (None, Some(text)) => text.parse().with_context(|| at("backend"))?,
            (None, None) => BackendChoice::default(),
        };
        let mode = match (self.mode, &file.mode) {
            (Some(mode), _) => Some(mode),
            (None, Some(text)) => Some(
                <Mode as clap::ValueEnum>::from_str(text, false)
                    .map_err(|_| anyhow::anyhow!("expected \"getwork\" or \"gbt\", got {text:?}"))
                    .with_context(|| at("mode"))?,
            ),
            (None, None) => None,
        };
        let intensity = match (self.intensity, file.intensity) {
            (Some(i), _) => Some(i),
            (None, Some(i))
                if (i64::from(MIN_INTENSITY)..=i64::from(MAX_INTENSITY)).contains(&i) =>
            {
                Some(u8::try_from(i).expect("in range"))
            }
            (None, Some(i)) => bail!(
                "{}: must be {MIN_INTENSITY} to {MAX_INTENSITY} (2^N nonces per dispatch), got {i}",
                at("intensity")
            ),
            (None, None) => None,
        };
        let dispatch_ms = match (self.dispatch_ms, file.dispatch_ms) {
            (Some(ms), _) => ms,
            (None, Some(ms)) => u64::try_from(ms)
                .ok()
                .filter(|ms| (1..=DISPATCH_MS_MAX).contains(ms))
                .with_context(|| {
                    format!(
                        "{}: must be 1 to {DISPATCH_MS_MAX} milliseconds, got {ms}",
                        at("dispatch_ms")
                    )
                })?,
            (None, None) => u64::try_from(DEFAULT_DISPATCH.as_millis()).expect("30 ms"),
        };
        let status_every = match (self.status_every, file.status_every) {
            (Some(s), _) => {
                seconds(s, "--status-every")?;
                s
            }
            (None, Some(s)) => {
                seconds(s, &at("status_every"))?;
                s
            }
            (None, None) => 10.0,
        };
        let api = match (self.api, file.api.as_ref().and_then(|a| a.listen.as_ref())) {
            (Some(addr), _) => Some(addr),
            (None, Some(listen)) => Some(
                parse_api_addr(&listen.as_flag())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at("api.listen")))?,
            ),
            (None, None) => None,
        };
        let api_cgminer = match (
            self.api_cgminer,
            file.api.as_ref().and_then(|a| a.cgminer.as_ref()),
        ) {
            (Some(addr), _) => Some(addr),
            (None, Some(listen)) => Some(
                parse_api_addr(&listen.as_flag())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", at("api.cgminer")))?,
            ),
            (None, None) => None,
        };
        let watchdog_secs = match (self.watchdog_secs, file.watchdog_secs) {
            (Some(secs), _) => secs,
            (None, Some(secs)) => u64::try_from(secs).with_context(|| {
                format!(
                    "{}: must be 0 (off) or a number of seconds, got {secs}",
                    at("watchdog_secs")
                )
            })?,
            (None, None) => DEFAULT_WATCHDOG_SECS,
        };
        let temp_stop = self.temp_stop.or(file.temp_stop);
        let temp_resume = self.temp_resume.or(file.temp_resume);
        let temp_limits = TempLimits::new(temp_stop, temp_resume).with_context(|| {
            match (self.temp_stop.is_none() && file.temp_stop.is_some())
                || (self.temp_resume.is_none() && file.temp_resume.is_some())
            {
                true => at("temp_stop/temp_resume"),
                false => "--temp-stop/--temp-resume".to_owned(),
            }
        })?;
        Ok(MineSettings {
            config_file: path,
            pools,
            mode,
            address: self.address.clone().or(file.address),
            backend,
            with_cpu: self.with_cpu.or(file.with_cpu).unwrap_or(false),
            intensity,
            dispatch_ms,
            status_every,
            api,
            api_cgminer,
            watchdog_secs,
            temp_limits,
        })
    }

    pub fn run(self) -> anyhow::Result<ExitCode> {
        let settings = self.settings()?;
        if self.show_config {
            super::print_json(&settings)?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut config = MinerConfig {
            blocks: self.blocks,
            shares: self.shares,
            duration: self
                .duration
                .map(|d| seconds(d, "--duration"))
                .transpose()?,
            status_every: Some(seconds(settings.status_every, "--status-every")?),
            intensity: settings.intensity,
            dispatch: Duration::from_millis(settings.dispatch_ms),
            board: None,
            submit_bad_share: self.test_submit_bad_share,
            health: None,
        };
        let mut source = settings.source()?;
        // One hashing thread per device: `all` and lists come apart into their devices.
        let watchdog = watchdog(settings.watchdog_secs);
        let mut backends =
            open_watched_devices(&settings.backend, WorkKind::NonceSearch, watchdog.as_ref())?;
        if settings.with_cpu {
            if backends.iter().any(|b| b.kind() == BackendKind::Cpu) {
                bail!("--with-cpu adds the CPU beside a GPU backend; --backend is already the CPU");
            }
            backends.push(open_backend(&BackendChoice::Cpu, WorkKind::NonceSearch)?);
        }
        // The first Ctrl-C or SIGTERM stops cleanly (found shares still go out); a second one
        // exits at once.
        ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::Relaxed) {
                super::tui::restore_terminal();
                std::process::exit(130);
            }
        })
        .context("installing the Ctrl-C/SIGTERM handler")?;
        let live = !self.json && !self.no_tui && LiveView::possible();
        let board = (settings.api.is_some() || settings.api_cgminer.is_some() || live)
            .then(|| Arc::new(StatusBoard::new()));
        config.board.clone_from(&board);
        let view = match &board {
            Some(board) if live => Some(LiveView::start(Arc::clone(board), &INTERRUPTED)?),
            _ => None,
        };
        // The live view ends before the summary, which is printed below it on the terminal.
        let mut summary = None;
        let json = self.json;
        let mut print = |event: &Timed| {
            if let Some(view) = &view {
                if matches!(event.event, MinerEvent::Summary { .. }) {
                    summary = Some(event.clone());
                }
                if view.show(event) {
                    return;
                }
            }
            if json {
                if let Err(e) = super::print_json(event) {
                    tracing::debug!("printing an event: {e}");
                }
            } else {
                print_text(event);
            }
        };
        let _api = match (settings.api, &board) {
            (Some(addr), Some(board)) => {
                let api = StatusApi::start(addr, Arc::clone(board))?;
                print(&Timed::now(MinerEvent::Api {
                    url: format!("http://{}", api.addr()),
                }));
                Some(api)
            }
            _ => None,
        };
        let _cgminer_api = match (settings.api_cgminer, &board) {
            (Some(addr), Some(board)) => {
                let rig = RigInfo {
                    pools: settings.pools.iter().map(|p| source_url(&p.url)).collect(),
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    log_interval: settings.status_every.round() as u64,
                };
                let api = CgminerApi::start(addr, Arc::clone(board), rig)?;
                print(&Timed::now(MinerEvent::CgminerApi {
                    addr: api.addr().to_string(),
                }));
                Some(api)
            }
            _ => None,
        };
        let searchers: Vec<Arc<dyn NonceSearcher>> = backends
            .into_iter()
            .map(|b| b as Arc<dyn NonceSearcher>)
            .collect();
        config.health = Some(Arc::new(DeviceHealth::new(
            searchers.len(),
            self.sysfs_root.clone(),
            settings.temp_limits,
            watchdog,
        )));
        let stats = miner::run(
            source.as_mut(),
            &searchers,
            &config,
            &INTERRUPTED,
            |event| {
                print(&event);
            },
        );
        drop(view);
        if let Some(summary) = summary {
            print_text(&summary);
        }
        let stats = stats?;
        tracing::debug!("mined: {stats:?}");
        Ok(ExitCode::SUCCESS)
    }
}

#[allow(clippy::cast_precision_loss)]
fn print_text(event: &Timed) {
    match &event.event {
        MinerEvent::Connected { url } => println!("connected to {url}"),
        MinerEvent::Disconnected { url, reason } => {
            println!("lost {url}: {reason}; hashing paused, reconnecting");
        }
        // Also logged as a warning (stderr), which is where a person looks for it.
        MinerEvent::Unreachable { .. } => {}
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
        MinerEvent::Status { url, device, hashrate, devices, difficulty, connected, stats } => println!(
            "{:.2} MH/s on {} | accepted {} rejected {} stale {} | {url}{}{}",
            hashrate / 1e6,
            if devices.len() > 1 {
                devices
                    .iter()
                    .map(|d| format!("{} {:.2} MH/s{}", d.name, d.hashrate / 1e6, health_text(d)))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                format!("{device}{}", devices.first().map(health_text).unwrap_or_default())
            },
            stats.accepted,
            stats.rejected,
            stats.stale,
            if *connected { "" } else { " (not connected)" },
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
        MinerEvent::CgminerApi { addr } => println!("cgminer API on {addr}"),
        MinerEvent::Device(event) => print_device_event(event),
        MinerEvent::Hashing { .. } | MinerEvent::Found { .. } => {}
    }
}

/// ` 64 °C`, ` 91 °C paused` or nothing, after a device's rate in the status line.
fn health_text(device: &miner::DeviceRate) -> String {
    let temperature = device
        .temperature_c
        .map(|t| format!(" {t:.0} °C"))
        .unwrap_or_default();
    let paused = if device.paused { " paused" } else { "" };
    format!("{temperature}{paused}")
}

fn print_device_event(event: &DeviceEvent) {
    match event {
        DeviceEvent::DevicePaused {
            device,
            temperature_c,
            stop_c,
        } => {
            println!("{device}: paused at {temperature_c} °C (--temp-stop {stop_c})");
        }
        DeviceEvent::DeviceResumed {
            device,
            temperature_c,
            ..
        } => {
            println!("{device}: resumed at {temperature_c} °C");
        }
        DeviceEvent::DeviceRestarted {
            device,
            reason,
            restarts,
        } => {
            println!("{device}: restarted by the watchdog ({restarts}): {reason}");
        }
        DeviceEvent::DeviceDropped {
            device,
            reason,
            restarts,
        } => {
            println!("{device}: dropped after {restarts} restarts: {reason}");
        }
    }
}
