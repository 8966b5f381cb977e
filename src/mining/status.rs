//! What a running miner looks like from outside: the snapshot the miner loop publishes about
//! once a second, served by the status API as JSON and as Prometheus text. Nothing in it comes
//! from the command line's credentials: URLs are the sources' credential-free ones.

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

use super::stats::Stats;

/// The latest [`Snapshot`], shared between the miner loop and the API's threads.
#[derive(Debug, Default)]
pub struct StatusBoard {
    latest: Mutex<Snapshot>,
}

impl StatusBoard {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The miner at one moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub version: String,
    pub uptime_seconds: f64,
    /// Hashes per second over the last [`RATE_WINDOW_SECONDS`], all devices together.
    pub hashrate: f64,
    /// Hashes per second since the start.
    pub hashrate_average: f64,
    pub pool: PoolStatus,
    pub shares: Stats,
    pub devices: Vec<DeviceStatus>,
    /// Every pool or node used or tried so far, in order of first use.
    pub pools: Vec<PoolRecord>,
}

/// One pool or node the miner has used or tried, and what came of it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PoolRecord {
    /// Without credentials.
    pub url: String,
    /// Jobs (units of work) it sent.
    pub jobs: u64,
    /// Jobs that made all older work useless (a new block on the network).
    pub clean_jobs: u64,
    /// Failed connection attempts and lost connections.
    pub failures: u64,
    /// Unix time of its last job.
    pub last_job_time: Option<u64>,
    /// The answers to the shares sent to it (`hashes` and `hw_errors` stay 0: devices do not
    /// hash for one pool).
    pub shares: Stats,
}

/// Seconds of history behind [`Snapshot::hashrate`] and [`DeviceStatus::hashrate`].
pub const RATE_WINDOW_SECONDS: u64 = 10;

/// The work source: a pool or a node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PoolStatus {
    /// The URL in use, without credentials.
    pub url: String,
    pub connected: bool,
    /// Share difficulty (pools only).
    pub difficulty: Option<f64>,
    pub job: Option<String>,
    pub height: Option<u64>,
    /// Seconds since the current job arrived.
    pub job_age_seconds: Option<f64>,
    /// Why the last connection was lost, or the last error.
    pub last_error: Option<String>,
}

/// One hashing device.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeviceStatus {
    pub index: usize,
    pub name: String,
    /// `cpu` or `gpu`.
    pub kind: String,
    /// Hashes per second over the last [`RATE_WINDOW_SECONDS`].
    pub hashrate: f64,
    pub hashes: u64,
    pub hw_errors: u64,
    /// Device errors (each one retried; a GPU that keeps failing hands over to the CPU).
    pub errors: u64,
    /// Nonces per scan call (per dispatch on a GPU).
    pub scan_nonces: u64,
    /// How `scan_nonces` was chosen: `auto` (tuned to a target time) or `intensity`.
    pub tuning: String,
    /// Degrees Celsius, where the platform tells it (hwmon, NVML).
    pub temperature_c: Option<f64>,
    /// Paused at `--temp-stop` until it cools to `--temp-resume`.
    pub paused: bool,
    /// What became of the solutions this device found.
    pub shares: Stats,
}

impl Snapshot {
    /// The Prometheus text exposition format (version 0.0.4).
    #[must_use]
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP peerhash_{name} {help}");
            let _ = writeln!(out, "# TYPE peerhash_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "peerhash_{name}{labels} {value}");
            }
        };
        let device_labels = |d: &DeviceStatus| {
            format!(
                "{{device=\"{}\",name=\"{}\",kind=\"{}\"}}",
                d.index,
                escape_label(&d.name),
                escape_label(&d.kind)
            )
        };
        let per_device = |value: fn(&DeviceStatus) -> f64| -> Vec<(String, f64)> {
            self.devices
                .iter()
                .map(|d| (device_labels(d), value(d)))
                .collect()
        };
        #[allow(clippy::cast_precision_loss)]
        {
            metric(
                "up",
                "gauge",
                "1 while the miner runs.",
                &[(String::new(), 1.0)],
            );
            metric(
                "uptime_seconds",
                "gauge",
                "Seconds since the miner started.",
                &[(String::new(), self.uptime_seconds)],
            );
            let per_device_metrics: [DeviceMetric; 5] = [
                (
                    "hashrate",
                    "gauge",
                    "Hashes per second over the last 10 seconds.",
                    |d| d.hashrate,
                ),
                ("hashes_total", "counter", "Nonces searched.", |d| {
                    d.hashes as f64
                }),
                (
                    "hardware_errors_total",
                    "counter",
                    "Nonces a device reported that failed the CPU re-check.",
                    |d| d.hw_errors as f64,
                ),
                (
                    "device_errors_total",
                    "counter",
                    "Device failures (each retried).",
                    |d| d.errors as f64,
                ),
                (
                    "scan_nonces",
                    "gauge",
                    "Nonces per scan call (per dispatch on a GPU).",
                    |d| d.scan_nonces as f64,
                ),
            ];
            for (name, kind, help, value) in per_device_metrics {
                metric(name, kind, help, &per_device(value));
            }
            let temperatures: Vec<(String, f64)> = self
                .devices
                .iter()
                .filter_map(|d| Some((device_labels(d), d.temperature_c?)))
                .collect();
            if !temperatures.is_empty() {
                metric(
                    "temperature_celsius",
                    "gauge",
                    "Device temperature (hwmon or NVML).",
                    &temperatures,
                );
            }
            metric(
                "device_paused",
                "gauge",
                "1 while a device is paused at --temp-stop.",
                &per_device(|d| f64::from(u8::from(d.paused))),
            );
            let s = &self.shares;
            metric(
                "shares_total",
                "counter",
                "Solutions by outcome.",
                &[
                    ("{result=\"found\"}".into(), s.found as f64),
                    ("{result=\"accepted\"}".into(), s.accepted as f64),
                    ("{result=\"rejected\"}".into(), s.rejected as f64),
                    ("{result=\"stale\"}".into(), s.stale as f64),
                ],
            );
            metric(
                "share_difficulty_total",
                "counter",
                "Share difficulty summed by outcome (difficulty-1 work).",
                &[
                    ("{result=\"accepted\"}".into(), s.difficulty_accepted),
                    ("{result=\"rejected\"}".into(), s.difficulty_rejected),
                    ("{result=\"stale\"}".into(), s.difficulty_stale),
                ],
            );
            metric(
                "blocks_total",
                "counter",
                "Blocks the node accepted.",
                &[(String::new(), s.blocks as f64)],
            );
            let pool = format!("{{url=\"{}\"}}", escape_label(&self.pool.url));
            metric(
                "pool_connected",
                "gauge",
                "1 while connected to the work source.",
                &[(pool.clone(), f64::from(u8::from(self.pool.connected)))],
            );
            if let Some(difficulty) = self.pool.difficulty {
                metric(
                    "pool_difficulty",
                    "gauge",
                    "Share difficulty set by the pool.",
                    &[(pool, difficulty)],
                );
            }
        }
        out
    }
}

/// A per-device metric: name, type, help text and how to read it off a device.
type DeviceMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&DeviceStatus) -> f64,
);

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn prometheus_text_has_one_sample_per_device_and_outcome() {
        let snapshot = Snapshot {
            devices: vec![
                DeviceStatus {
                    index: 0,
                    name: "gpu:0 (\"quoted\")".into(),
                    kind: "gpu".into(),
                    hashrate: 5.0e8,
                    hashes: 7,
                    temperature_c: Some(71.5),
                    ..DeviceStatus::default()
                },
                DeviceStatus {
                    index: 1,
                    name: "cpu".into(),
                    kind: "cpu".into(),
                    ..DeviceStatus::default()
                },
            ],
            shares: Stats {
                accepted: 3,
                ..Stats::default()
            },
            ..Snapshot::default()
        };
        let text = snapshot.prometheus();
        assert!(text.contains(
            "peerhash_hashrate{device=\"0\",name=\"gpu:0 (\\\"quoted\\\")\",kind=\"gpu\"} 500000000\n"
        ));
        assert!(text.contains("peerhash_hashes_total{device=\"1\",name=\"cpu\",kind=\"cpu\"} 0\n"));
        assert!(text.contains("peerhash_shares_total{result=\"accepted\"} 3\n"));
        assert!(text.contains(
            "peerhash_temperature_celsius{device=\"0\",name=\"gpu:0 (\\\"quoted\\\")\",kind=\"gpu\"} 71.5\n"
        ));
        assert!(!text.contains("peerhash_temperature_celsius{device=\"1\""));
        assert!(!text.contains("pool_difficulty"), "no difficulty when solo");
    }
}
