//! Stratum V2 against real components on loopback: the bcoin regtest node, SRI's pool_sv2
//! 0.7.0 and the test-only template-provider bridge (tests/harness/sv2-tp) between them.

mod util;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use util::miner::{events, summary, Miner};
use util::node::{require_harness, wait_for, Node};
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
