//! The real Stratum V2 pool (SRI's pool_sv2 0.7.0) on loopback, fed by the test-only template
//! provider bridge (tests/harness/sv2-tp) that turns bcoin's getblocktemplate into SV2
//! templates. `scripts/test` builds both.

use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::node::{
    free_port, harness_dir, temp_dir, wait_for, wait_for_or_show, Node, Process, API_KEY,
};

/// SRI's example authority key pair (base58check); loads in pool_sv2 0.7.0.
pub const AUTHORITY_PUBLIC_KEY: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
pub const AUTHORITY_SECRET_KEY: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";

const MISSING: &str = "run scripts/test (builds pool_sv2 and the SV2 bridge)";

pub fn pool_binary() -> PathBuf {
    harness_dir().join("sv2-bin/bin/pool_sv2")
}

pub fn bridge_binary() -> PathBuf {
    harness_dir().join("sv2-tp/target/release/sv2-tp-bridge")
}

/// bridge + pool_sv2, both killed by PID when dropped.
pub struct Sv2Pool {
    bridge: Process,
    pool: Option<Process>,
    port: u16,
    dir: PathBuf,
    config: PathBuf,
    runs: u32,
}

impl Sv2Pool {
    /// Starts the bridge against `node`, then pool_sv2, and waits (bounded) until the pool's
    /// miner port accepts TCP and its log says it holds a template and a prev hash.
    pub fn start(node: &Node) -> Self {
        Self::start_at(node, free_port())
    }

    /// Like [`Self::start`], with the pool's miner port chosen by the caller (a URL a miner was
    /// given before the pool existed).
    pub fn start_at(node: &Node, port: u16) -> Self {
        assert!(
            pool_binary().is_file(),
            "{MISSING}: no {}",
            pool_binary().display()
        );
        assert!(
            bridge_binary().is_file(),
            "{MISSING}: no {}",
            bridge_binary().display()
        );
        let dir = temp_dir("sv2pool");
        let tp_port = free_port();
        let bridge = Process::spawn(
            Command::new(bridge_binary())
                .arg(format!("127.0.0.1:{tp_port}"))
                .arg(node.url())
                .arg(API_KEY),
            dir.join("bridge.log"),
        );
        wait_for(
            Duration::from_secs(10),
            "the SV2 TP bridge to listen",
            || TcpStream::connect(("127.0.0.1", tp_port)).is_ok(),
        );
        let config = dir.join("pool.toml");
        // share_batch_size = 1: the pool acknowledges (and logs) every accepted share.
        // No `public_key` under Sv2Tp: the pool skips the TP authority check, fine on loopback.
        fs::write(
            &config,
            format!(
                "authority_public_key = \"{AUTHORITY_PUBLIC_KEY}\"\n\
                 authority_secret_key = \"{AUTHORITY_SECRET_KEY}\"\n\
                 cert_validity_sec = 3600\n\
                 listen_address = \"127.0.0.1:{port}\"\n\
                 coinbase_reward_script = \"raw(51)\"\n\
                 pool_signature = \"peerhash-test\"\n\
                 shares_per_minute = 60.0\n\
                 share_batch_size = 1\n\
                 \n\
                 [template_provider_type.Sv2Tp]\n\
                 address = \"127.0.0.1:{tp_port}\"\n"
            ),
        )
        .expect("pool config");
        let mut pool = Self {
            bridge,
            pool: None,
            port,
            dir,
            config,
            runs: 0,
        };
        pool.start_pool();
        pool
    }

    fn start_pool(&mut self) {
        let process = Process::spawn(
            Command::new(pool_binary())
                .arg("-c")
                .arg(&self.config)
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1"),
            self.dir.join(format!("pool-{}.log", self.runs)),
        );
        self.runs += 1;
        self.pool = Some(process);
        let port = self.port;
        // The pool binds its miner port first and serves it once it holds a template and a
        // prev hash, which it logs.
        wait_for_or_show(
            Duration::from_secs(60),
            "pool_sv2's miner port",
            || {
                self.log().contains("Required template data received")
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
            },
            || {
                format!(
                    "pool log:\n{}\nbridge log:\n{}",
                    self.log(),
                    self.bridge.log()
                )
            },
        );
    }

    /// `stratum2+tcp://127.0.0.1:PORT/AUTHORITY_PUBLIC_KEY`.
    pub fn url(&self) -> String {
        format!(
            "stratum2+tcp://127.0.0.1:{}/{AUTHORITY_PUBLIC_KEY}",
            self.port
        )
    }

    pub fn authority_key(&self) -> &'static str {
        AUTHORITY_PUBLIC_KEY
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// pool_sv2's stdout and stderr so far (the current run).
    pub fn log(&self) -> String {
        self.pool.as_ref().map(Process::log).unwrap_or_default()
    }

    /// The bridge's stdout/stderr: one JSON line per event.
    pub fn bridge_log(&self) -> String {
        self.bridge.log()
    }

    /// Shares the pool accepted in this run: with share_batch_size 1 it logs
    /// `SubmitShares{Standard,Extended}: ... ✅` per valid share and `Block Found!!!` (without
    /// the tick) for a share that is a block.
    pub fn accepted_shares(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("SubmitShares") && (l.contains('✅') || l.contains("Block Found!!!"))
            })
            .count()
    }

    /// The bridge's submitblock lines bcoin accepted (result null), as JSON.
    pub fn blocks_submitted(&self) -> Vec<Value> {
        self.bridge
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "submitblock" && v.get("result") == Some(&Value::Null))
            .collect()
    }

    /// Kills pool_sv2 and starts it again on the same port (the bridge keeps running).
    pub fn restart(&mut self) {
        if let Some(mut p) = self.pool.take() {
            p.stop();
        }
        self.start_pool();
    }
}

impl Drop for Sv2Pool {
    fn drop(&mut self) {
        if let Some(mut p) = self.pool.take() {
            p.stop();
        }
        self.bridge.stop();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
