//! Stratum V2 against real components on loopback: the bcoin regtest node, SRI's pool_sv2
//! 0.7.0 and the test-only template-provider bridge (tests/harness/sv2-tp) between them.

mod util;

use std::collections::HashMap;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use util::miner::{events, summary, Miner};
use util::node::{
    free_port, harness_dir, require_harness, temp_dir, wait_for, Node, Process, ADDRESS, API_KEY,
};
use util::sv2::Sv2Pool;

#[test]
fn sv2_pool_comes_up_with_a_template_from_bcoin() {
    require_harness();
    let node = Node::start();
    let start = Instant::now();
    let pool = Sv2Pool::start(&node);
    eprintln!(
        "SV2 harness (bridge + pool_sv2) up in {:?}",
        start.elapsed()
    );
    let log = pool.log();
    assert!(
        log.contains("Required template data received"),
        "pool log:\n{log}\nbridge log:\n{}",
        pool.bridge_log()
    );
    assert!(pool.bridge_log().contains("\"event\":\"template\""));
    assert!(std::net::TcpStream::connect(("127.0.0.1", pool.port())).is_ok());
    assert!(pool.url().starts_with("stratum2+tcp://127.0.0.1:"));
    assert!(pool.url().ends_with(pool.authority_key()));
    assert_eq!(pool.accepted_shares(), 0);
    assert!(pool.blocks_submitted().is_empty());
}

fn meets(hash: &str, target: &str) -> bool {
    hash.len() == 64 && target.len() == 64 && hash <= target
}

#[test]
fn sv2_shares_are_accepted_by_the_real_pool() {
    require_harness();
    let node = Node::start();
    let pool = Sv2Pool::start(&node);
    let url = pool.url();
    let (all, _) = Miner::spawn(&["--url", &url, "--shares", "5", "--backend", "cpu"], &[])
        .finish(Duration::from_secs(90));
    let summary = summary(&all);
    assert_eq!(summary["accepted"], 5, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    assert_eq!(events(&all, "connected").len(), 1);
    wait_for(Duration::from_secs(5), "the pool's share log", || {
        pool.accepted_shares() >= 5
    });
    let targets: HashMap<String, String> = events(&all, "new_job")
        .iter()
        .map(|e| {
            (
                e["job"].as_str().unwrap_or("").to_owned(),
                e["target"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for accepted in events(&all, "accepted") {
        let target = &targets[accepted["job"].as_str().expect("job id")];
        assert!(
            meets(accepted["hash"].as_str().expect("hash"), target),
            "{accepted} vs {target}"
        );
    }
}

#[test]
fn sv2_extended_channel_shares_are_accepted_by_the_real_pool() {
    require_harness();
    let node = Node::start();
    let pool = Sv2Pool::start(&node);
    let url = pool.url();
    // The test hook makes the miner open an extended channel, which SRI's pool would otherwise
    // leave to proxies: coinbase jobs, the miner rolling its own extranonce.
    let (all, _) = Miner::spawn(
        &[
            "--url",
            &url,
            "--shares",
            "5",
            "--backend",
            "cpu",
            "--test-submit-bad-share",
        ],
        &[("PEERHASH_SV2_EXTENDED", "1")],
    )
    .finish(Duration::from_secs(90));
    let summary = summary(&all);
    assert_eq!(summary["accepted"], 5, "{summary}");
    assert_eq!(summary["rejected"], 1, "the forced bad share: {summary}");
    wait_for(Duration::from_secs(5), "the pool's share log", || {
        pool.accepted_shares() >= 5
    });
    let log = pool.log();
    assert!(log.contains("OpenExtendedMiningChannel"), "{log}");
    assert!(!log.contains("Received OpenStandardMiningChannel"), "{log}");
}

#[test]
fn sv2_status_api_survives_a_pool_restart_and_sigterm_answers_every_share() {
    require_harness();
    let node = Node::start();
    let mut pool = Sv2Pool::start(&node);
    let url = pool.url();
    let miner = Miner::spawn(
        &[
            "--url",
            &url,
            "--user",
            "tester",
            "--backend",
            "cpu",
            "--api",
            "0",
            "--duration",
            "120",
            "--status-every",
            "0.5",
        ],
        &[],
    );
    miner.wait_for(Duration::from_secs(30), "accepted shares", || {
        miner.count("accepted") >= 3
    });
    let api = miner
        .events()
        .iter()
        .find(|e| e["event"] == "api")
        .and_then(|e| e["url"].as_str().map(str::to_owned))
        .expect("an api event");
    let mut board = Value::Null;
    wait_for(Duration::from_secs(10), "the API to show shares", || {
        let answer = util::http("GET", &format!("{api}/summary"));
        assert_eq!(answer.status, 200);
        board = serde_json::from_str(&answer.body).expect("JSON");
        board["shares"]["accepted"].as_u64().unwrap_or(0) >= 1
            && board["hashrate"].as_f64().unwrap_or(0.0) > 0.0
    });
    assert_eq!(board["pool"]["url"], url.as_str());
    assert_eq!(board["pool"]["connected"], true);
    assert!(
        board["pool"]["difficulty"]
            .as_f64()
            .is_some_and(|d| d > 0.0),
        "{board}"
    );
    assert!(board["pool"]["job"].is_string(), "{board}");
    let device = &board["devices"][0];
    assert!(device["hashes"].as_u64().is_some_and(|h| h > 0), "{board}");
    assert_eq!(device["hw_errors"], 0);
    let metrics = util::http("GET", &format!("{api}/metrics"));
    let samples = util::prometheus_samples(&metrics.body);
    assert!(samples
        .iter()
        .any(|(s, v)| s == "peerhash_shares_total{result=\"accepted\"}" && *v >= 1.0));
    assert!(samples
        .iter()
        .any(|(s, v)| s == &format!("peerhash_pool_connected{{url=\"{url}\"}}") && *v == 1.0));

    // The pool goes away and comes back on the same port (new channel, new job ids).
    let before = miner.count("accepted");
    pool.restart();
    miner.wait_for(Duration::from_secs(10), "the miner to notice", || {
        miner.count("disconnected") >= 1
    });
    miner.wait_for(
        Duration::from_secs(40),
        "shares on the restarted pool",
        || pool.accepted_shares() >= 2 && miner.count("accepted") >= before + 2,
    );
    assert!(miner.count("connected") >= 2);

    // SIGTERM: the miner stops hashing, submits what it found and waits for the answers.
    miner.signal("TERM");
    let (all, stderr) = miner.finish(Duration::from_secs(20));
    let summary = summary(&all);
    let found = summary["found"].as_u64().expect("found");
    let answered = ["accepted", "rejected", "stale"]
        .iter()
        .map(|k| summary[k].as_u64().expect("a count"))
        .sum::<u64>();
    assert_eq!(
        found, answered,
        "every found share answered: {summary}\n{stderr}"
    );
    assert_eq!(summary["hw_errors"], 0, "{summary}");
    assert!(
        events(&all, "error").is_empty(),
        "{:?}",
        events(&all, "error")
    );
}

/// `[1, 0] || x-only key` in base58-check: the secp256k1 generator, a valid key that is not the
/// pool's authority.
fn wrong_authority_key() -> String {
    let g_x = hex::decode("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
        .expect("hex");
    bitcoin::base58::encode_check(&[[1u8, 0].as_slice(), &g_x].concat())
}

#[test]
fn sv2_a_wrong_authority_key_is_refused_before_any_work() {
    require_harness();
    let node = Node::start();
    let pool = Sv2Pool::start(&node);
    let key = wrong_authority_key();
    assert_ne!(key, pool.authority_key());
    let url = format!("stratum2+tcp://127.0.0.1:{}/{key}", pool.port());
    let (ok, all, stderr) = Miner::spawn(
        &["--url", &url, "--backend", "cpu", "--duration", "30"],
        &[],
    )
    .finish_with_status(Duration::from_secs(30));
    assert!(!ok, "the miner must stop: {all:?}");
    assert!(
        stderr.contains("not signed by the authority key"),
        "{stderr}"
    );
    assert!(events(&all, "new_job").is_empty(), "{all:?}");
    assert!(events(&all, "connected").is_empty(), "{all:?}");
    assert!(
        !pool.log().contains("OpenStandardMiningChannel"),
        "{}",
        pool.log()
    );
}

/// stratum-pool-sha256 (the v1 pool of tests/mining_live.rs) through run-pool.js.
struct V1Pool {
    process: Process,
    port: u16,
}

impl V1Pool {
    fn start(node: &Node) -> Self {
        let port = free_port();
        let process = Process::spawn(
            Command::new("node").current_dir(harness_dir()).args([
                "run-pool.js",
                &port.to_string(),
                &node.port.to_string(),
                API_KEY,
                ADDRESS,
            ]),
            temp_dir("v1pool").join("pool.log"),
        );
        wait_for(Duration::from_secs(30), "the v1 pool to start", || {
            process.log().contains(r#"{"event":"started"}"#)
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self { process, port }
    }

    fn accepted(&self) -> usize {
        self.process
            .log()
            .lines()
            .filter(|l| l.starts_with(r#"{"event":"share""#) && l.contains(r#""valid":true"#))
            .count()
    }
}

impl Drop for V1Pool {
    fn drop(&mut self) {
        self.process.stop();
    }
}

#[test]
fn sv2_a_dead_v2_url_fails_over_to_a_live_v1_pool() {
    require_harness();
    let node = Node::start();
    let v1 = V1Pool::start(&node);
    let dead = format!(
        "stratum2+tcp://127.0.0.1:{}/{}",
        free_port(),
        util::sv2::AUTHORITY_PUBLIC_KEY
    );
    let live = format!("stratum+tcp://127.0.0.1:{}", v1.port);
    let (all, _) = Miner::spawn(
        &[
            "--url",
            &dead,
            "--url",
            &live,
            "--shares",
            "3",
            "--backend",
            "cpu",
        ],
        &[],
    )
    .finish(Duration::from_secs(60));
    let unreachable = events(&all, "unreachable");
    assert!(
        unreachable.iter().any(|e| e["url"] == dead.as_str()),
        "{all:?}"
    );
    assert!(
        events(&all, "connected")
            .iter()
            .any(|e| e["url"] == live.as_str()),
        "{all:?}"
    );
    assert_eq!(summary(&all)["accepted"], 3);
    wait_for(Duration::from_secs(5), "the v1 pool's share log", || {
        v1.accepted() >= 3
    });
}

#[test]
fn sv2_a_block_found_through_the_pool_lands_on_bcoin() {
    block_lands_on_bcoin(&[]);
}

#[test]
fn sv2_a_block_found_on_an_extended_channel_lands_on_bcoin() {
    // Coinbase jobs: the pool assembles the block around the miner's own extranonce.
    block_lands_on_bcoin(&[("PEERHASH_SV2_EXTENDED", "1")]);
}

fn block_lands_on_bcoin(envs: &[(&str, &str)]) {
    require_harness();
    let node = Node::start();
    // pool_sv2 always builds a segwit coinbase; bcoin's regtest activates segwit at 432.
    let height = node.height();
    if height < 432 {
        node.rpc("generatetoaddress", json!([432 - height, ADDRESS]));
    }
    let pool = Sv2Pool::start(&node);
    let start_height = node.height();
    let url = pool.url();
    let miner = Miner::spawn(
        &["--url", &url, "--backend", "cpu", "--duration", "120"],
        envs,
    );
    miner.wait_for(Duration::from_secs(90), "a block on bcoin", || {
        !pool.blocks_submitted().is_empty() && node.height() > start_height
    });
    // The new tip reaches the miner as a SetNewPrevHash: a clean job, hashed at once.
    miner.wait_for(
        Duration::from_secs(30),
        "a clean job on the new tip",
        || {
            events(&miner.events(), "new_job")
                .iter()
                .filter(|e| e["clean"] == true)
                .count()
                >= 2
        },
    );
    miner.signal("INT");
    let (all, _) = miner.finish(Duration::from_secs(20));
    let blocks = pool.blocks_submitted();
    for block in &blocks {
        // bcoin stored the very block the pool assembled from the miner's header...
        let header = node.rpc("getblockheader", json!([block["hash"]]));
        assert_eq!(header["height"], block["height"], "{blocks:?}");
        // ...and its chain holds one of the blocks found at that height: two shares that
        // both meet regtest's target make two blocks on one prev hash, and bcoin keeps the
        // first it saw on its main chain.
        let at = node.rpc("getblockhash", json!([block["height"]]));
        assert!(
            blocks
                .iter()
                .any(|b| b["height"] == block["height"] && b["hash"] == at),
            "{at} is not among {blocks:?}"
        );
    }
    assert!(summary(&all)["accepted"].as_u64() >= Some(1));
    eprintln!("blocks: {:?}", pool.blocks_submitted());
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
fn sv2_every_new_prev_hash_is_hashed_and_the_delay_is_reported() {
    require_harness();
    let node = Node::start();
    let pool = Sv2Pool::start(&node);
    let url = pool.url();
    let miner = Miner::spawn(
        &["--url", &url, "--backend", "cpu", "--duration", "120"],
        &[],
    );
    miner.wait_for(Duration::from_secs(30), "shares", || {
        pool.accepted_shares() >= 1
    });
    let (mut job_to_hashing, mut block_to_hashing) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        let seen = miner.count("new_job");
        let generated = unix_now();
        node.rpc("generatetoaddress", json!([1, ADDRESS]));
        miner.wait_for(Duration::from_secs(10), "a clean job", || {
            miner
                .events()
                .iter()
                .filter(|e| e["event"] == "new_job")
                .skip(seen)
                .any(|e| e["clean"] == true)
        });
        let all = miner.events();
        let clean = events(&all, "new_job")
            .into_iter()
            .skip(seen)
            .find(|e| e["clean"] == true)
            .expect("the clean job")
            .clone();
        let job = clean["job"].clone();
        let at = clean["time"].as_f64().expect("time");
        miner.wait_for(Duration::from_secs(10), "hashing the clean job", || {
            miner.events().iter().any(|e| {
                e["event"] == "hashing" && e["job"] == job && e["time"].as_f64() >= Some(at)
            })
        });
        let all = miner.events();
        let hashing = all
            .iter()
            .find(|e| e["event"] == "hashing" && e["job"] == job && e["time"].as_f64() >= Some(at))
            .expect("hashing event");
        let hashed = hashing["time"].as_f64().expect("time");
        job_to_hashing.push((hashed - at) * 1000.0);
        block_to_hashing.push((hashed - generated) * 1000.0);
    }
    let job_median = median(&mut job_to_hashing);
    let block_median = median(&mut block_to_hashing);
    eprintln!(
        "stratum v2: SetNewPrevHash (clean job) -> hashing: median {job_median:.1} ms {job_to_hashing:.1?}; \
         generatetoaddress -> hashing: median {block_median:.1} ms (the bridge polls bcoin every 500 ms)"
    );
    // Figures only (README): timing is never asserted, since the runner may be busy.
    assert_eq!(job_to_hashing.len(), 8, "every new prev hash was hashed");
    miner.signal("INT");
    let (all, _) = miner.finish(Duration::from_secs(20));
    assert_eq!(summary(&all)["rejected"], 0);
}

/// The median hash rate of the status lines after the first few seconds of a run.
fn steady_hash_rate(url: &str) -> f64 {
    let (all, _) = Miner::spawn(
        &[
            "--url",
            url,
            "--backend",
            "cpu",
            "--duration",
            "10",
            "--status-every",
            "1",
        ],
        &[],
    )
    .finish(Duration::from_secs(40));
    let mut rates: Vec<f64> = events(&all, "status")
        .iter()
        .skip(3)
        .filter(|e| e["connected"] == true)
        .filter_map(|e| e["hashrate"].as_f64())
        .collect();
    assert!(rates.len() >= 3, "{all:?}");
    median(&mut rates)
}

#[test]
fn sv2_and_v1_hash_rates_on_the_same_backend_are_reported() {
    require_harness();
    let node = Node::start();
    let v2 = Sv2Pool::start(&node);
    let v1 = V1Pool::start(&node);
    let v1_url = format!("stratum+tcp://127.0.0.1:{}", v1.port);
    // Alternating runs, so that whatever else the machine does hits both alike.
    let (mut v1_rates, mut v2_rates) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        v1_rates.push(steady_hash_rate(&v1_url));
        v2_rates.push(steady_hash_rate(&v2.url()));
    }
    let v1_rate = v1_rates.iter().sum::<f64>() / 2.0;
    let v2_rate = v2_rates.iter().sum::<f64>() / 2.0;
    let ratio = v2_rate / v1_rate;
    eprintln!(
        "cpu backend: v1 {:.2} MH/s {v1_rates:.0?}, v2 {:.2} MH/s {v2_rates:.0?}: v2/v1 = {ratio:.3}",
        v1_rate / 1e6,
        v2_rate / 1e6
    );
    // The figure goes to the README, measured on a quiet machine; single runs on a shared
    // 2-core runner vary by 15%, so speed is never asserted here: both protocols must hash.
    assert!(
        v1_rate > 0.0 && v2_rate > 0.0,
        "v1 {v1_rates:?}, v2 {v2_rates:?}"
    );
}

#[test]
fn sv2_the_miner_returns_to_the_v2_pool_once_it_answers() {
    require_harness();
    let node = Node::start();
    let v1 = V1Pool::start(&node);
    let port = free_port();
    let first = format!(
        "stratum2+tcp://127.0.0.1:{port}/{}",
        util::sv2::AUTHORITY_PUBLIC_KEY
    );
    let second = format!("stratum+tcp://127.0.0.1:{}", v1.port);
    let miner = Miner::spawn(
        &[
            "--url",
            &first,
            "--url",
            &second,
            "--backend",
            "cpu",
            "--duration",
            "120",
        ],
        &[("PEERHASH_PRIMARY_RETRY_MS", "1000")],
    );
    miner.wait_for(Duration::from_secs(30), "shares on the v1 fallback", || {
        v1.accepted() >= 2
    });
    // The first URL comes to life: the miner goes back to it within a retry period or two.
    let pool = Sv2Pool::start_at(&node, port);
    miner.wait_for(Duration::from_secs(30), "shares on the v2 pool", || {
        pool.accepted_shares() >= 2
    });
    let v1_before = v1.accepted();
    miner.signal("INT");
    let (all, _) = miner.finish(Duration::from_secs(20));
    let connected: Vec<&str> = events(&all, "connected")
        .iter()
        .filter_map(|e| e["url"].as_str())
        .collect();
    assert_eq!(connected.first(), Some(&second.as_str()), "{connected:?}");
    assert_eq!(connected.last(), Some(&first.as_str()), "{connected:?}");
    // Once back on the first pool, nothing more goes to the fallback.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        v1.accepted() <= v1_before + 1,
        "{} then {}",
        v1_before,
        v1.accepted()
    );
    assert_eq!(summary(&all)["rejected"], 0);
}
