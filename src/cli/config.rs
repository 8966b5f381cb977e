//! The `mine` config file (TOML) and the `config` subcommand.
//!
//! The file holds what `mine`'s flags hold; a flag given on the command line wins over the
//! file, and the file over the built-in defaults. Without `--config` the file at
//! [`default_path`] is read when it exists (`--no-config` skips it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use serde::Deserialize;

/// A commented example: every key, with the values a two-pool rig would use.
pub const EXAMPLE: &str = r#"# peerhash mine configuration (TOML). Flags given on the command line win over this file.
# Default location: $XDG_CONFIG_HOME/peerhash/config.toml, else ~/.config/peerhash/config.toml.

# Where to hash: auto, cpu, gpu, gpu:INDEX, gpu:NAME, all, or a list such as "gpu:0,gpu:1,cpu".
backend = "all"
# Also hash on the CPU beside a GPU backend (not needed with "all").
with_cpu = false

# Nonces per GPU dispatch as a power of two (12 to 31). Leave it out to tune each GPU at start
# so that one dispatch takes dispatch_ms.
# intensity = 24
dispatch_ms = 30

# Seconds between status lines.
status_every = 10.0

# Restart a GPU whose scan call fails or hashes nothing for this long; after 3 restarts in
# 10 minutes it is dropped (0: no watchdog).
watchdog_secs = 60
# Pause a device at this temperature (degrees Celsius) until it cools to temp_resume.
# temp_stop = 85
# temp_resume = 75

# Solo mining only (http:// URLs): "getwork" or "gbt", and the payout address for gbt.
# mode = "gbt"
# address = "bc1q..."

# Pools (or nodes) in failover order: the first is used whenever it answers.
[[pool]]
url = "stratum+tcp://pool.example.com:3333"
user = "wallet.rig1"
pass = "x"

[[pool]]
url = "stratum+tcp://backup.example.com:3333"
user = "wallet.rig1"
pass = "x"

# The read-only status API (JSON at /summary, Prometheus at /metrics). Off unless set; a bare
# port listens on 127.0.0.1 only.
[api]
listen = "127.0.0.1:4048"
# The read-only cgminer API (JSON over TCP) that dashboards and pyasic poll; 4028 is cgminer's
# port. Off unless set.
# cgminer = 4028
"#;

/// The file as written; values are checked when settings are resolved.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub backend: Option<String>,
    pub with_cpu: Option<bool>,
    pub intensity: Option<i64>,
    pub dispatch_ms: Option<i64>,
    pub status_every: Option<f64>,
    pub watchdog_secs: Option<i64>,
    pub temp_stop: Option<f64>,
    pub temp_resume: Option<f64>,
    pub mode: Option<String>,
    pub address: Option<String>,
    #[serde(default)]
    pub pool: Vec<PoolEntry>,
    pub api: Option<ApiEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    pub url: String,
    pub user: Option<String>,
    pub pass: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiEntry {
    pub listen: Option<Listen>,
    /// The cgminer API, as `--api-cgminer` takes it.
    pub cgminer: Option<Listen>,
}

/// `listen = 4048` or `listen = "127.0.0.1:4048"`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a port number or an \"ADDR:PORT\" string")]
pub enum Listen {
    Port(u16),
    Address(String),
}

impl Listen {
    /// As `--api` takes it.
    #[must_use]
    pub fn as_flag(&self) -> String {
        match self {
            Self::Port(port) => port.to_string(),
            Self::Address(text) => text.clone(),
        }
    }
}

/// `$XDG_CONFIG_HOME/peerhash/config.toml`, else `$HOME/.config/peerhash/config.toml`.
#[must_use]
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        })?;
    Some(base.join("peerhash").join("config.toml"))
}

/// Reads and parses `path`; errors name the file, the line and the key.
///
/// # Errors
/// The file cannot be read, is not TOML, or has an unknown key or a value of the wrong type.
pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    parse(&text).map_err(|e| anyhow!("{}:{e}", path.display()))
}

/// Parses config text; an error reads `LINE: KEY: what is wrong`.
///
/// # Errors
/// Not TOML, an unknown key or a value of the wrong type.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().to_owned();
        match e.span() {
            Some(span) => {
                let (line, key) = locate(text, span.start);
                match key {
                    Some(key) => format!("{line}: {key}: {message}"),
                    None => format!("{line}: {message}"),
                }
            }
            None => format!(" {message}"),
        }
    })
}

/// The 1-based line of byte `offset` and the dotted key written there (with its table).
fn locate(text: &str, offset: usize) -> (usize, Option<String>) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_number = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let key = match (table, key) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (None, Some(key)) => Some(key),
        (Some(table), None) if line.trim_start().starts_with('[') => Some(table),
        (_, None) => None,
    };
    (line_number, key)
}

/// Config file helpers.
#[derive(Debug, clap::Args)]
pub struct Config {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Print a commented example config file.
    Example,
    /// Print where `mine` looks for its config file when --config is not given.
    Path,
}

impl Config {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.action {
            Action::Example => print!("{EXAMPLE}"),
            Action::Path => match default_path() {
                Some(path) => println!("{}", path.display()),
                None => anyhow::bail!("neither XDG_CONFIG_HOME nor HOME is set"),
            },
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_with_every_key_it_documents() {
        let file = parse(EXAMPLE).expect("the example parses");
        assert_eq!(file.backend.as_deref(), Some("all"));
        assert_eq!(file.with_cpu, Some(false));
        assert_eq!(file.dispatch_ms, Some(30));
        assert_eq!(file.status_every, Some(10.0));
        assert_eq!(file.pool.len(), 2);
        assert_eq!(file.pool[1].url, "stratum+tcp://backup.example.com:3333");
        assert_eq!(file.pool[0].user.as_deref(), Some("wallet.rig1"));
        assert_eq!(
            file.api
                .and_then(|a| a.listen)
                .map(|l| l.as_flag())
                .as_deref(),
            Some("127.0.0.1:4048")
        );
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let error = parse("backend = \"cpu\"\nbackand = \"gpu\"\n").unwrap_err();
        assert!(
            error.starts_with("2: backand: unknown field `backand`"),
            "{error}"
        );
        let error = parse("[api]\nlisten = true\n").unwrap_err();
        assert!(error.starts_with("2: api.listen: "), "{error}");
        assert!(parse("[api]\nlisten = 4048\n").is_ok());
        let error = parse("[[pool]]\nurl = \"stratum+tcp://a:1\"\npassword = \"x\"\n").unwrap_err();
        assert!(
            error.starts_with("3: pool.password: unknown field"),
            "{error}"
        );
        let error = parse("intensity = \"high\"\n").unwrap_err();
        assert!(error.starts_with("1: intensity: invalid type"), "{error}");
        assert!(parse("backend = \n").is_err());
    }
}
