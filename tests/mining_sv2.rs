//! Stratum V2 against real components on loopback: the bcoin regtest node, SRI's pool_sv2
//! 0.7.0 and the test-only template-provider bridge (tests/harness/sv2-tp) between them.

mod util;

use std::time::Instant;

use util::node::{require_harness, Node};
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
