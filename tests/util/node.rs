//! The real bcoin regtest node the mining tests run against, and the small helpers that start
//! harness processes (moved from tests/mining_live.rs so other test files can start a node).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use peerhash::mining::rpc::RpcClient;
use serde_json::{json, Value};

pub const API_KEY: &str = "peerhash-test-key";
/// A P2WPKH and a P2WSH regtest address bcoin accepts (hrp `rb`).
pub const ADDRESS: &str = "rb1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg328fddy";
pub const ADDRESS_P2WSH: &str = "rb1qyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3qj8rpda";

pub fn harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness")
}

/// The live tests need the npm harness; they fail without it (never skip): `scripts/test`
/// installs it.
pub fn require_harness() {
    assert!(
        harness_dir().join("node_modules/bcoin").is_dir(),
        "tests/harness/node_modules is missing: run `npm ci --ignore-scripts` in tests/harness \
         (scripts/test does)"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "peerhash-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Waits up to `limit` for `ready`, checking every 100 ms.
pub fn wait_for(limit: Duration, what: &str, ready: impl FnMut() -> bool) {
    wait_for_or_show(limit, what, ready, String::new);
}

/// [`wait_for`], and on a timeout the failure shows `context()` (logs, events).
pub fn wait_for_or_show(
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}\n{}",
            context()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed by PID when dropped.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(command: &mut Command, log: PathBuf) -> Self {
        let out = fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = command
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .spawn()
            .expect("starting a harness process");
        Self { child, log }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bcoin regtest node in memory.
pub struct Node {
    pub process: Process,
    /// The address the RPC listens on (`127.0.0.1` or `::1`).
    pub host: &'static str,
    pub port: u16,
    pub dir: PathBuf,
}

impl Node {
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    pub fn start_on(host: &'static str) -> Self {
        let dir = temp_dir("bcoin");
        Self::start_at(host, free_port(), dir)
    }

    pub fn start_at(host: &'static str, port: u16, dir: PathBuf) -> Self {
        fs::create_dir_all(&dir).expect("node dir");
        let process = Process::spawn(
            Command::new("node")
                .current_dir(harness_dir())
                .env("NODE_BACKEND", "js")
                .arg("node_modules/bcoin/bin/node")
                .args([
                    "--network=regtest",
                    "--memory=true",
                    "--no-wallet=true",
                    "--workers=false",
                    "--listen=false",
                    "--max-outbound=1",
                ])
                .arg(format!("--http-host={host}"))
                .arg(format!("--prefix={}", dir.display()))
                .arg(format!("--http-port={port}"))
                .arg(format!("--api-key={API_KEY}"))
                .arg(format!("--coinbase-address={ADDRESS}")),
            dir.join("node.log"),
        );
        let node = Self {
            process,
            host,
            port,
            dir,
        };
        wait_for(Duration::from_secs(30), "bcoin's RPC", || {
            node.try_rpc("getblockcount", json!([])).is_ok()
        });
        node
    }

    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    pub fn try_rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let client = RpcClient::new(&self.url(), "x", API_KEY).map_err(|e| e.to_string())?;
        client
            .call(method, params, Duration::from_secs(30))
            .map(|r| r.result)
            .map_err(|e| e.to_string())
    }

    pub fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}\nnode log:\n{}", self.process.log()))
    }

    pub fn height(&self) -> u64 {
        self.rpc("getblockcount", json!([]))
            .as_u64()
            .expect("a count")
    }

    pub fn restart(self) -> Self {
        let (host, port, dir) = (self.host, self.port, self.dir.clone());
        drop(self);
        Self::start_at(host, port, dir)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.process.stop();
        // Logs stay behind for a failing test to be looked at.
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
