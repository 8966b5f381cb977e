//! The real binary, as a user runs it: outputs, exit codes and error messages.

mod util;

use serde_json::Value;
use util::{run, stderr, stdout};

const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
const GENESIS_HASH: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
const BLOCK_125552: &str = "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695";

fn json(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(output), stderr(output)))
}

#[test]
fn scan_finds_the_genesis_nonce_on_both_backends() {
    for backend in ["cpu", "gpu"] {
        let out = run(&[
            "scan",
            GENESIS,
            "--start",
            "2083000000",
            "--count",
            "1000000",
            "--backend",
            backend,
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{backend}: {}", stderr(&out));
        let report = json(&out);
        assert_eq!(report["found"][0]["nonce"], 2_083_236_893u32, "{backend}");
        assert_eq!(report["found"][0]["hash"], GENESIS_HASH, "{backend}");
        assert_eq!(
            report["found"].as_array().map(Vec::len),
            Some(1),
            "{backend}"
        );
        assert_eq!(report["hashes"], 1_000_000, "{backend}");
        assert_eq!(report["hw_errors"], 0, "{backend}");
        assert!(
            report["backend"].as_str().unwrap().starts_with(backend),
            "{backend}"
        );
        assert!(report["seconds"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn scan_text_output_lists_the_real_nonce_of_block_125552() {
    let out = run(&[
        "scan",
        BLOCK_125552,
        "--start",
        "2504000000",
        "--count",
        "1000000",
        "--backend",
        "gpu",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("nonce 2504433986 (0x9546a142)  hash 00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d"),
        "{text}"
    );
    assert!(text.contains("1 found in 1000000 nonces"), "{text}");
}

#[test]
fn scan_with_explicit_targets() {
    // Every hash meets the maximum target; nBits of the genesis header reproduce its default.
    let out = run(&[
        "scan",
        GENESIS,
        "--count",
        "10",
        "--target",
        &"f".repeat(64),
        "--json",
        "--backend",
        "cpu",
    ]);
    assert_eq!(json(&out)["found"].as_array().map(Vec::len), Some(10));
    let out = run(&[
        "scan",
        GENESIS,
        "--start",
        "2083236893",
        "--count",
        "1",
        "--bits",
        "1d00ffff",
        "--json",
    ]);
    assert_eq!(json(&out)["found"][0]["nonce"], 2_083_236_893u32);
    // A target just below the genesis hash rejects it.
    let below = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26e";
    let out = run(&[
        "scan",
        GENESIS,
        "--start",
        "2083236893",
        "--count",
        "1",
        "--target",
        below,
    ]);
    assert_eq!(out.status.code(), Some(1), "nothing found exits 1");
}

#[test]
fn scan_rejects_bad_input_with_exit_2() {
    let cases: [(&[&str], &str); 7] = [
        (&["scan", "00ff"], "80 bytes"),
        (&["scan", &"zz".repeat(80)], "not hex"),
        (
            &["scan", GENESIS, "--start", "4294967295", "--count", "2"],
            "past 2^32",
        ),
        (&["scan", GENESIS, "--start", "4294967296"], "past 2^32"),
        (&["scan", GENESIS, "--bits", "1d80ffff"], "negative"),
        (
            &["scan", GENESIS, "--target", &"1".repeat(65)],
            "64 hex digits",
        ),
        (&["scan", GENESIS, "--backend", "tpu"], "unknown backend"),
    ];
    for (args, message) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}");
    }
}

#[test]
fn hash_prints_sha256sum_format_on_both_backends() {
    let dir = std::env::temp_dir().join(format!("peerhash-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let abc = dir.join("abc.txt");
    std::fs::write(&abc, b"abc").unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let (abc, empty) = (abc.to_str().unwrap(), empty.to_str().unwrap());
    for backend in ["cpu", "gpu"] {
        let out = run(&["hash", "--backend", backend, abc, empty]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            format!(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  {abc}\n\
                 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  {empty}\n"
            )
        );
        let out = run(&["hash", "--algo", "sha1", "--backend", backend, abc]);
        assert_eq!(
            stdout(&out),
            format!("a9993e364706816aba3e25717850c26c9cd0d89d  {abc}\n")
        );
        let out = run(&["hash", "--algo", "sha256d", "--backend", backend, abc]);
        assert_eq!(
            stdout(&out),
            format!("4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358  {abc}\n")
        );
    }
    // A missing file is reported and the rest still hash; the exit code says input was bad.
    let missing = dir.join("missing");
    let out = run(&["hash", missing.to_str().unwrap(), abc]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    assert!(stdout(&out).contains(abc));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hash_reads_standard_input() {
    use std::io::Write;
    let mut child = util::peerhash(&["hash", "--algo", "sha1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        stdout(&out),
        "a9993e364706816aba3e25717850c26c9cd0d89d  -\n"
    );
}

#[test]
fn selftest_passes_on_both_backends() {
    for backend in ["cpu", "gpu"] {
        let out = run(&["selftest", "--backend", backend, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{backend}: {}", stdout(&out));
        let report = json(&out);
        assert_eq!(report["failed"], 0);
        assert!(report["passed"].as_u64().unwrap() >= 30);
    }
}

#[test]
fn devices_lists_the_cpu_and_never_auto_picks_a_software_adapter() {
    let out = run(&["devices", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert!(report["cpu"]["threads"].as_u64().unwrap() >= 1);
    let adapters = report["adapters"].as_array().unwrap();
    assert!(
        !adapters.is_empty(),
        "CI has lavapipe; no adapter means no GPU tests ran"
    );
    let auto = report["auto"].as_str().unwrap();
    if let Some(index) = auto.strip_prefix("gpu:") {
        let index: usize = index.parse().unwrap();
        assert_eq!(adapters[index]["is_real_gpu"], true);
    } else {
        assert_eq!(auto, "cpu");
        assert!(adapters.iter().all(|a| a["is_real_gpu"] == false));
    }
    let text = stdout(&run(&["devices"]));
    assert!(text.contains("cpu "), "{text}");
}

/// `devices` with its rate cache in `cache`.
fn devices_json(cache: &std::path::Path, args: &[&str]) -> Value {
    let out = util::peerhash(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("the peerhash binary runs");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    json(&out)
}

const RATE_KEYS: [&str; 3] = ["nonce_search_mhs", "bulk_sha1_mbs", "bulk_sha256_mbs"];
const WORK_KINDS: [&str; 3] = ["nonce_search", "bulk_sha1", "bulk_sha256"];

#[test]
fn devices_probe_measures_every_device_caches_the_rates_and_auto_still_skips_lavapipe() {
    let cache = tempfile::tempdir().unwrap();
    let probed = devices_json(cache.path(), &["devices", "--probe", "--json"]);
    let adapters = probed["adapters"].as_array().unwrap();
    assert!(
        !adapters.is_empty(),
        "CI has lavapipe; no adapter means the GPU probe never ran"
    );
    for device in adapters.iter().chain([&probed["cpu"]]) {
        assert_eq!(device["source"], "measured", "{device}");
        assert_eq!(device["cached"], false, "{device}");
        for key in RATE_KEYS {
            assert!(
                device["rates"][key].as_f64().is_some_and(|r| r > 0.0),
                "{key}: {device}"
            );
        }
    }
    let file = cache.path().join("peerhash").join("rates.json");
    assert_eq!(probed["cache_file"], file.display().to_string());
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        written["entries"].as_array().map(Vec::len),
        Some(adapters.len() + 1)
    );
    let only_software = adapters.iter().all(|a| a["is_real_gpu"] == false);
    if only_software {
        for kind in WORK_KINDS {
            assert_eq!(probed["auto_for"][kind], "cpu", "{kind}");
        }
        assert_eq!(probed["auto"], "cpu");
    }

    // The next run reads the same rates back instead of measuring.
    let cached = devices_json(cache.path(), &["devices", "--json"]);
    for (now, before) in cached["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&cached["cpu"]])
        .zip(adapters.iter().chain([&probed["cpu"]]))
    {
        assert_eq!(now["cached"], true, "{now}");
        assert_eq!(now["source"], "cached", "{now}");
        assert_eq!(now["rates"], before["rates"]);
    }
    assert_eq!(cached["auto_for"], probed["auto_for"]);
    let text = stdout(
        &util::peerhash(&["devices"])
            .env("XDG_CACHE_HOME", cache.path())
            .output()
            .unwrap(),
    );
    assert!(text.contains("(cached)"), "{text}");
    if only_software {
        assert!(
            text.contains("<- auto for nonce search, SHA-1, SHA-256"),
            "{text}"
        );
    }
}

#[test]
fn a_stale_or_corrupt_rate_cache_is_ignored_and_never_fails_a_command() {
    let cache = tempfile::tempdir().unwrap();
    devices_json(cache.path(), &["devices", "--probe", "--json"]);
    let file = cache.path().join("peerhash").join("rates.json");
    let only_software = |report: &Value| {
        report["adapters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["is_real_gpu"] == false)
    };

    // Measured by another release: not used. With no real GPU nothing is measured again.
    let text = std::fs::read_to_string(&file).unwrap();
    let other_release = text.replace(
        &format!("\"peerhash\": \"{}\"", env!("CARGO_PKG_VERSION")),
        "\"peerhash\": \"0.0.0-older\"",
    );
    assert_ne!(text, other_release, "the key names the release: {text}");
    std::fs::write(&file, other_release).unwrap();
    let stale = devices_json(cache.path(), &["devices", "--json"]);
    if only_software(&stale) {
        assert_eq!(stale["cpu"]["source"], "unmeasured", "{stale}");
        assert_eq!(stale["cpu"]["cached"], false);
        assert_eq!(stale["auto"], "cpu");
    } else {
        assert_eq!(stale["cpu"]["source"], "measured", "{stale}");
    }

    // Corrupt: ignored, every command still works, and the next probe rewrites it.
    std::fs::write(&file, "{\"entries\": [{\"key\": 7").unwrap();
    let corrupt = devices_json(cache.path(), &["devices", "--json"]);
    assert_ne!(corrupt["cpu"]["source"], "cached", "{corrupt}");
    let out = util::peerhash(&["hash", "--algo", "sha1", "-"])
        .env("XDG_CACHE_HOME", cache.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("da39a3ee5e6b4b0d3255bfef95601890afd80709"));
    devices_json(cache.path(), &["devices", "--probe", "--json"]);
    let rewritten: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(rewritten["entries"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));

    // A cache directory that cannot be created: the probe still reports, just uncached.
    let blocker = cache.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let unwritable = devices_json(&blocker, &["devices", "--probe", "--json"]);
    assert_eq!(unwritable["cpu"]["source"], "measured");
}

#[test]
fn bench_reports_rates() {
    let out = run(&[
        "bench",
        "--backend",
        "cpu",
        "--algo",
        "sha256d",
        "--seconds",
        "0.2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    let result = &report["results"][0];
    assert_eq!(result["algo"], "sha256d");
    assert_eq!(result["unit"], "MH/s");
    assert!(result["rate"].as_f64().unwrap() > 0.0);
    let out = run(&[
        "bench",
        "--backend",
        "gpu",
        "--algo",
        "sha1",
        "--seconds",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("MB/s"), "{}", stdout(&out));
    let out = run(&["bench", "--seconds", "-1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_measures_the_copy_rate_on_gpus_only() {
    let out = run(&[
        "bench",
        "--backend",
        "gpu",
        "--algo",
        "copy",
        "--seconds",
        "0.1",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    let results = report["results"].as_array().unwrap();
    let methods: Vec<&str> = results
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["write_buffer", "staging"], "{report}");
    for result in results {
        assert_eq!(result["algo"], "copy");
        assert_eq!(result["unit"], "MB/s");
        assert!(result["rate"].as_f64().unwrap() > 0.0, "{report}");
        assert!(result["device"].as_str().unwrap().starts_with("gpu:0"));
    }
    let out = run(&["bench", "--backend", "cpu", "--algo", "copy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("GPU backend"), "{}", stderr(&out));
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["devices", "hash", "scan", "selftest", "bench"] {
        let out = run(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub}");
        assert!(stdout(&out).contains("Usage: peerhash"), "{sub}");
    }
}

#[test]
#[cfg(feature = "test-hooks")]
fn a_gpu_lost_mid_run_hands_over_to_the_cpu_and_the_result_stays_right() {
    // The first GPU slice (4 Mi nonces on lavapipe) succeeds, every later one fails as a lost
    // device would: the nonce is in the third slice.
    let out = util::peerhash(&[
        "scan",
        GENESIS,
        "--start",
        "2075000000",
        "--count",
        "12582912",
        "--backend",
        "gpu",
        "--json",
        // Without the watchdog: a lost GPU hands over at once (the watchdog's own tests below).
        "--watchdog-secs",
        "0",
    ])
    .env("PEERHASH_FAULT_GPU", "fail-after:1")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["found"][0]["nonce"], 2_083_236_893u32);
    assert_eq!(report["hashes"], 12_582_912);
    assert!(
        report["backend"].as_str().unwrap().starts_with("cpu"),
        "{report}"
    );
    assert!(stderr(&out).contains("device lost"), "{}", stderr(&out));

    let out = util::peerhash(&["hash", "--backend", "gpu", "--algo", "sha1", "-"])
        .env("PEERHASH_FAULT_GPU", "fail-after:0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709  -\n"
    );
}

#[test]
#[cfg(feature = "test-hooks")]
fn a_stalled_gpu_is_restarted_by_the_watchdog_and_keeps_hashing() {
    // Three lavapipe slices of 2^20 nonces, the nonce in the second. Each opened device answers
    // one scan, then hangs: slices two and three stall, the watchdog reopens the GPU twice and
    // searches them again on it (a fresh device's first call has warm-up time, so only the
    // injected stalls can reach the limit).
    let out = util::peerhash(&[
        "scan",
        GENESIS,
        "--start",
        "2082000000",
        "--count",
        "3145728",
        "--backend",
        "gpu",
        "--json",
        "--watchdog-secs",
        "3",
    ])
    .env("PEERHASH_FAULT_GPU", "stall-after:1")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["found"][0]["nonce"], 2_083_236_893u32);
    assert_eq!(report["hashes"], 3_145_728);
    assert!(
        report["backend"].as_str().unwrap().starts_with("gpu"),
        "{report}"
    );
    assert_eq!(
        stderr(&out).matches("restarting it").count(),
        2,
        "{}",
        stderr(&out)
    );
}

#[test]
#[cfg(feature = "test-hooks")]
fn a_gpu_that_keeps_failing_is_dropped_and_the_cpu_finishes_its_range() {
    let out = util::peerhash(&[
        "scan",
        GENESIS,
        "--start",
        "2075000000",
        "--count",
        "12582912",
        "--backend",
        "gpu",
        "--json",
    ])
    .env("PEERHASH_FAULT_GPU", "fail-after:0")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["found"][0]["nonce"], 2_083_236_893u32);
    assert!(
        report["backend"].as_str().unwrap().starts_with("cpu"),
        "{report}"
    );
    let log = stderr(&out);
    assert_eq!(log.matches("restarting it").count(), 3, "{log}");
    assert!(log.contains("dropped after 3 restarts"), "{log}");
}

#[test]
#[cfg(feature = "test-hooks")]
fn wrong_nonces_from_the_gpu_are_hardware_errors_never_found() {
    let out = util::peerhash(&[
        "scan",
        GENESIS,
        "--start",
        "2083236000",
        "--count",
        "1000",
        "--backend",
        "gpu",
        "--json",
    ])
    .env("PEERHASH_FAULT_GPU", "bad-nonces")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(
        report["found"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["found"][0]["nonce"], 2_083_236_893u32);
    assert_eq!(report["hw_errors"], 2);
}

#[test]
fn several_devices_share_one_range() {
    let args = [
        "scan",
        GENESIS,
        "--start",
        "2075000000",
        "--count",
        "12582912",
        "--backend",
        "gpu:0,cpu",
        "--json",
    ];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["found"][0]["nonce"], 2_083_236_893u32, "{report}");
    let devices = report["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{report}");
    let shared: u64 = devices.iter().map(|d| d["hashes"].as_u64().unwrap()).sum();
    assert_eq!(
        shared, 12_582_912,
        "every nonce searched exactly once: {report}"
    );

    // A device lost mid-search is covered deterministically by the unit tests in
    // src/hash/multi.rs; here the range is too small to be sure the GPU gets a slice first.
    for bad in ["gpu:0,auto", "cpu,", "all,cpu"] {
        let out = run(&["scan", GENESIS, "--count", "1", "--backend", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("unknown backend"),
            "{bad}: {}",
            stderr(&out)
        );
    }
}

/// `peerhash mine --json` in the background, its stdout lines collected as they come.
struct BackgroundMiner {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl BackgroundMiner {
    fn spawn(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = util::peerhash(&["mine", "--json"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("peerhash mine starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
                sink.lock().expect("lines").push(event);
            }
        });
        Self { child, lines }
    }

    /// The first event of `kind`, waiting up to 20 s for it.
    fn wait_for(&self, kind: &str) -> Value {
        let start = std::time::Instant::now();
        loop {
            if let Some(event) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find(|e| e["event"] == kind)
            {
                return event.clone();
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(20),
                "no {kind} event"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to 15 s for the exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                return status.code();
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(15),
                "peerhash mine did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for BackgroundMiner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[test]
fn mine_status_api_answers_json_and_prometheus_and_sigterm_stops_cleanly() {
    // No pool listens there: the API must still answer, and say the pool is down.
    let pool = format!("stratum+tcp://127.0.0.1:{}", unused_port());
    let mut miner = BackgroundMiner::spawn(&[
        "--url",
        &pool,
        "--user",
        "rig-7",
        "--pass",
        "hunter2-secret",
        "--backend",
        "cpu",
        "--api",
        "127.0.0.1:0",
        "--duration",
        "60",
    ]);
    let api = miner.wait_for("api")["url"]
        .as_str()
        .expect("the API's URL")
        .to_owned();
    assert!(api.starts_with("http://127.0.0.1:"), "{api}");
    let tuned = miner.wait_for("tuned");
    assert_eq!(tuned["tuning"], "auto");
    assert!(
        tuned["nonces"].as_u64().is_some_and(|n| n >= 1024),
        "{tuned}"
    );

    // The board is published within a second of the start.
    let start = std::time::Instant::now();
    let summary: Value = loop {
        let answer = util::http("GET", &format!("{api}/summary"));
        assert_eq!(answer.status, 200);
        assert_eq!(answer.content_type, "application/json");
        let summary: Value = serde_json::from_str(&answer.body).expect("JSON");
        if summary["devices"].as_array().is_some_and(|d| !d.is_empty()) {
            break summary;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "{summary}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(summary["pool"]["url"], pool.as_str());
    assert_eq!(summary["pool"]["connected"], false);
    assert_eq!(summary["devices"][0]["kind"], "cpu");
    assert_eq!(summary["devices"][0]["tuning"], "auto");
    assert_eq!(summary["devices"][0]["scan_nonces"], tuned["nonces"]);
    assert_eq!(summary["shares"]["accepted"], 0);
    assert!(summary["uptime_seconds"].as_f64().is_some_and(|s| s > 0.0));
    let root = util::http("GET", &format!("{api}/"));
    assert_eq!(root.status, 200);

    let metrics = util::http("GET", &format!("{api}/metrics"));
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .content_type
        .starts_with("text/plain; version=0.0.4"));
    let samples = util::prometheus_samples(&metrics.body);
    let sample = |series: &str| {
        samples
            .iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in\n{}", metrics.body))
    };
    assert_eq!(sample("peerhash_up"), 1.0);
    assert_eq!(
        sample(&format!("peerhash_pool_connected{{url=\"{pool}\"}}")),
        0.0
    );
    assert_eq!(sample("peerhash_shares_total{result=\"accepted\"}"), 0.0);
    assert!(samples
        .iter()
        .any(|(s, _)| s.starts_with("peerhash_hashrate{device=\"0\",")));

    // Read-only, nothing else served, no credentials anywhere.
    assert_eq!(util::http("POST", &format!("{api}/summary")).status, 405);
    assert_eq!(util::http("GET", &format!("{api}/config")).status, 404);
    for answer in [&summary.to_string(), &metrics.body] {
        assert!(
            !answer.contains("hunter2-secret"),
            "the password leaked: {answer}"
        );
    }

    // SIGTERM: a clean stop with a final summary, exit code 0.
    miner.signal("-TERM");
    assert_eq!(miner.exit_code(), Some(0));
    let last = miner.wait_for("summary");
    assert_eq!(last["url"], pool.as_str());
}

#[test]
fn mine_apis_on_a_port_in_use_are_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = taken.local_addr().expect("an address").port().to_string();
    for (flag, name) in [("--api", "status API"), ("--api-cgminer", "cgminer API")] {
        let output = run(&[
            "mine",
            "--url",
            "stratum+tcp://127.0.0.1:3333",
            "--backend",
            "cpu",
            "--duration",
            "5",
            flag,
            &port,
        ]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains(&format!("{name}: cannot listen on 127.0.0.1:{port}")),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn mine_api_flag_rejects_a_bad_address() {
    let output = run(&[
        "mine",
        "--url",
        "stratum+tcp://127.0.0.1:3333",
        "--api",
        "localhost-ish",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--api"), "{}", stderr(&output));
}

#[test]
fn mine_cgminer_api_takes_a_port_an_address_or_a_config_key_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rig.toml");
    std::fs::write(
        &path,
        "[[pool]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\n[api]\ncgminer = 4028\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    assert_eq!(
        show_config(&["--config", path])["api_cgminer"],
        "127.0.0.1:4028"
    );
    assert_eq!(
        show_config(&["--config", path, "--api-cgminer", "0.0.0.0:4029"])["api_cgminer"],
        "0.0.0.0:4029"
    );
    let output = run(&[
        "mine",
        "--url",
        "stratum+tcp://127.0.0.1:3333",
        "--api-cgminer",
        "port-4028",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--api-cgminer"),
        "{}",
        stderr(&output)
    );
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[pool]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\n[api]\ncgminer = \"nowhere\"\n",
    )
    .unwrap();
    let output = run(&[
        "mine",
        "--show-config",
        "--config",
        dir.path().join("bad.toml").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("api.cgminer"),
        "{}",
        stderr(&output)
    );
}

/// `peerhash` with `XDG_CONFIG_HOME` pointing at `config_home`.
fn run_with_config_home(config_home: &std::path::Path, args: &[&str]) -> std::process::Output {
    util::peerhash(args)
        .env("XDG_CONFIG_HOME", config_home)
        .output()
        .expect("the peerhash binary runs")
}

fn example_config(dir: &std::path::Path) -> std::path::PathBuf {
    let example = run(&["config", "example"]);
    assert_eq!(example.status.code(), Some(0));
    let path = dir.join("rig.toml");
    std::fs::write(&path, &example.stdout).unwrap();
    path
}

fn show_config(args: &[&str]) -> Value {
    let output = run(&[&["mine", "--show-config"], args].concat());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("JSON settings")
}

#[test]
fn config_example_is_a_working_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = example_config(dir.path());
    let settings = show_config(&["--config", path.to_str().unwrap()]);
    assert_eq!(settings["config_file"], path.to_str().unwrap());
    assert_eq!(settings["backend"], "all");
    assert_eq!(settings["with_cpu"], false);
    assert_eq!(settings["dispatch_ms"], 30);
    assert_eq!(settings["intensity"], Value::Null);
    assert_eq!(settings["status_every"], 10.0);
    assert_eq!(settings["api"], "127.0.0.1:4048");
    assert_eq!(settings["api_cgminer"], Value::Null, "off unless asked for");
    let pools = settings["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[0]["url"], "stratum+tcp://pool.example.com:3333");
    assert_eq!(pools[1]["url"], "stratum+tcp://backup.example.com:3333");
    assert_eq!(pools[0]["user"], "wallet.rig1");
    assert_eq!(pools[0]["pass"], "***");
}

#[test]
fn mine_flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = example_config(dir.path());
    let path = path.to_str().unwrap();
    let settings = show_config(&[
        "--config",
        path,
        "--backend",
        "cpu",
        "--intensity",
        "20",
        "--dispatch-ms",
        "50",
        "--api",
        "5000",
        "--user",
        "other.worker",
        "--pass",
        "topsecret-flag",
    ]);
    assert_eq!(settings["backend"], "cpu");
    assert_eq!(settings["intensity"], 20);
    assert_eq!(settings["dispatch_ms"], 50);
    assert_eq!(settings["api"], "127.0.0.1:5000");
    // --user/--pass apply to every pool of the file; the pools themselves stay.
    let pools = settings["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 2);
    assert!(pools
        .iter()
        .all(|p| p["user"] == "other.worker" && p["pass"] == "***"));
    assert!(!settings.to_string().contains("topsecret-flag"));

    // A boolean flag can also switch the file's setting off.
    std::fs::write(
        dir.path().join("cpu.toml"),
        "with_cpu = true\n[[pool]]\nurl = \"stratum+tcp://127.0.0.1:9999\"\n",
    )
    .unwrap();
    let cpu = dir.path().join("cpu.toml");
    let cpu = cpu.to_str().unwrap();
    assert_eq!(show_config(&["--config", cpu])["with_cpu"], true);
    assert_eq!(
        show_config(&["--config", cpu, "--with-cpu=false"])["with_cpu"],
        false
    );
    assert_eq!(
        show_config(&["--with-cpu", "--url", "stratum+tcp://127.0.0.1:9999"])["with_cpu"],
        true
    );

    // --url replaces the file's pool list.
    let settings = show_config(&["--config", path, "--url", "stratum+tcp://127.0.0.1:9999"]);
    let pools = settings["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["url"], "stratum+tcp://127.0.0.1:9999");
    assert_eq!(
        pools[0]["user"], "peerhash",
        "flags' default login, not the file's"
    );
    assert_eq!(
        settings["backend"], "all",
        "the file still decides what no flag sets"
    );
}

#[test]
fn config_file_mistakes_are_errors_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let pool = "[[pool]]\nurl = \"stratum+tcp://127.0.0.1:3333\"\n";
    for (text, key, says) in [
        ("backand = \"cpu\"\n", "backand", "unknown field"),
        ("backend = \"quantum\"\n", "backend", "unknown backend"),
        ("intensity = 99\n", "intensity", "12 to 31"),
        ("intensity = \"high\"\n", "intensity", "invalid type"),
        ("dispatch_ms = 0\n", "dispatch_ms", "1 to 10000"),
        ("mode = \"solo\"\n", "mode", "getwork"),
        ("status_every = -1.0\n", "status_every", "positive"),
        (
            "[api]\nlisten = \"everywhere\"\n",
            "api.listen",
            "ADDR:PORT",
        ),
        ("[api]\nport = 4048\n", "api.port", "unknown field"),
        ("[[pool]]\nurl = \"ftp://x:1\"\n", "pool[1].url", "neither"),
        (
            "[[pool]]\nurl = \"stratum+tcp://a:1\"\npassword = \"x\"\n",
            "pool.password",
            "unknown field",
        ),
        ("not toml at all", "", "1:"),
    ] {
        let text = if text.starts_with("[[pool]]") {
            text.to_owned()
        } else {
            format!("{text}{pool}")
        };
        std::fs::write(&path, &text).unwrap();
        let output = run(&["mine", "--config", path.to_str().unwrap(), "--show-config"]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(path.to_str().unwrap()), "{text}: {err}");
        assert!(err.contains(key) && err.contains(says), "{text}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let missing = dir.path().join("missing.toml");
    let output = run(&["mine", "--config", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("missing.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn mine_reads_the_default_config_file_unless_told_not_to() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("peerhash");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        "backend = \"cpu\"\n[[pool]]\nurl = \"http://127.0.0.1:18443\"\nuser = \"rpc\"\npass = \"k\"\n",
    )
    .unwrap();
    let output = run_with_config_home(home.path(), &["config", "path"]);
    assert_eq!(stdout(&output).trim(), path.to_str().unwrap());
    let output = run_with_config_home(home.path(), &["mine", "--show-config"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let settings: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(settings["config_file"], path.to_str().unwrap());
    assert_eq!(settings["pools"][0]["url"], "http://127.0.0.1:18443");
    assert_eq!(settings["pools"][0]["user"], "rpc");
    // Without the file there is no pool: a usage error that says what to do.
    let output = run_with_config_home(home.path(), &["mine", "--no-config", "--show-config"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--url"), "{}", stderr(&output));
}

/// Seven files laid out so that, in a v1 torrent of 16 KiB pieces, pieces 2, 4, 6, 7 and 8
/// are shared by two or three files and the rest lie wholly in one.
const SPREAD: [(&str, usize); 7] = [
    ("a.bin", 40_000),
    ("b.bin", 30_000),
    ("c.bin", 3_000),
    ("d.bin", 30_000),
    ("e.bin", 20_000),
    ("f.bin", 10_000),
    ("g.bin", 40_000),
];

/// Writes the payload as `save/pl/...` and makes a torrent of it with `flags`.
fn spread_torrent(dir: &std::path::Path, flags: &[&str]) -> (std::path::PathBuf, String) {
    let content = dir.join("save").join("pl");
    std::fs::create_dir_all(&content).unwrap();
    for (i, (name, length)) in SPREAD.iter().enumerate() {
        let data: Vec<u8> = (0..*length).map(|j| (j * 7 + i * 13) as u8).collect();
        std::fs::write(content.join(name), data).unwrap();
    }
    let torrent = dir.join(format!("pl{}.torrent", flags.join("")));
    let torrent_arg = torrent.to_str().unwrap();
    let content_arg = content.to_str().unwrap();
    let mut args = vec!["create", content_arg, "--piece-size", "16K", "--no-date"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["-o", torrent_arg]);
    let made = run(&args);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    (torrent, dir.join("save").to_str().unwrap().to_owned())
}

/// Flips a byte of a.bin (in piece 0, which lies wholly in it), deletes c.bin (inside shared
/// piece 4) and cuts the last byte of e.bin (inside shared piece 7).
fn damage_spread(save: &str) {
    let content = std::path::Path::new(save).join("pl");
    let a = content.join("a.bin");
    let mut data = std::fs::read(&a).unwrap();
    data[100] ^= 1;
    std::fs::write(&a, data).unwrap();
    std::fs::remove_file(content.join("c.bin")).unwrap();
    let e = content.join("e.bin");
    let data = std::fs::read(&e).unwrap();
    std::fs::write(&e, &data[..data.len() - 1]).unwrap();
}

fn file_entry<'a>(report: &'a Value, path: &str) -> &'a Value {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {report}"))
}

#[test]
fn verify_names_each_file_state_and_blames_only_the_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, save) = spread_torrent(dir.path(), &[]);
    let torrent = torrent.to_str().unwrap();
    let good = run(&["verify", torrent, &save, "--backend", "cpu"]);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));
    let text = stdout(&good);
    assert!(text.starts_with("pl (v1, 11 pieces of 16 KiB)\n"), "{text}");
    assert!(text.contains("files: 7 ok\n"), "{text}");
    assert!(
        text.contains("pieces: 0 of 11 bad, 100.0% complete\n"),
        "{text}"
    );
    assert!(text.ends_with("\nOK\n"), "{text}");

    damage_spread(&save);
    let out = run(&["verify", torrent, &save, "--backend", "cpu", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["ok"], false);
    assert_eq!(report["version"], "v1");
    assert_eq!(report["bad_pieces"], serde_json::json!([0, 4, 7]));
    // Three whole pieces of 173000 bytes are bad: 123848 / 173000 = 71.58%, rounded down.
    assert_eq!(report["percent_complete"], 71.5);
    // (status, global bad pieces, percent complete): the bytes of each file in bad pieces
    // (a: piece 0 = 16384 of 40000; b: 70000 - 65536 = 4464 of 30000 in piece 4; ...).
    let expected = [
        ("a.bin", "corrupt", vec![0], 59.0),
        ("b.bin", "shares_bad_piece", vec![4], 85.1),
        ("c.bin", "missing", vec![4], 0.0),
        ("d.bin", "shares_bad_piece", vec![4], 70.2),
        ("e.bin", "wrong_size", vec![7], 58.4),
        ("f.bin", "shares_bad_piece", vec![7], 19.2),
        ("g.bin", "ok", vec![], 100.0),
    ];
    for (path, status, bad, percent) in expected {
        let file = file_entry(&report, path);
        assert_eq!(file["status"], status, "{path}: {report}");
        assert_eq!(
            file["bad_pieces"],
            serde_json::json!(bad),
            "{path}: {report}"
        );
        assert_eq!(file["percent_complete"], percent, "{path}: {report}");
    }

    let out = run(&["verify", torrent, &save, "--backend", "cpu"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for line in [
        "  corrupt           a.bin  (1 bad piece, 59.0% complete)\n",
        "  shares bad piece  b.bin  (1 bad piece, 85.1% complete)\n",
        "  missing           c.bin\n",
        "  wrong size        e.bin  (1 bad piece, 58.4% complete)\n",
        "files: 1 ok, 1 corrupt, 3 shares bad piece, 1 missing, 1 wrong size\n",
        "pieces: 3 of 11 bad, 71.5% complete\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    assert!(text.ends_with("\nBAD\n"), "{text}");
    assert!(!text.contains("FAILED") && !text.contains("V1"), "{text}");

    // In a hybrid torrent every file starts a piece: nothing is shared, only the damaged
    // files are reported, and file pieces are global indices as in `bad_pieces`.
    let hybrid_dir = tempfile::tempdir().unwrap();
    let (torrent, save) = spread_torrent(hybrid_dir.path(), &["--hybrid"]);
    damage_spread(&save);
    let out = run(&["verify", torrent.to_str().unwrap(), &save, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["version"], "hybrid");
    // Pieces per file: a 0-2, b 3-4, c 5, d 6-7, e 8-9, f 10, g 11-13.
    assert_eq!(report["bad_pieces"], serde_json::json!([0, 5, 9]));
    for (path, status, bad) in [
        ("a.bin", "corrupt", vec![0]),
        ("b.bin", "ok", vec![]),
        ("c.bin", "missing", vec![5]),
        ("d.bin", "ok", vec![]),
        ("e.bin", "wrong_size", vec![9]),
        ("f.bin", "ok", vec![]),
    ] {
        let file = file_entry(&report, path);
        assert_eq!(file["status"], status, "{path}: {report}");
        assert_eq!(
            file["bad_pieces"],
            serde_json::json!(bad),
            "{path}: {report}"
        );
    }
    assert_eq!(report["v1_v2_disagree"], serde_json::json!([]));
}

#[test]
fn verify_counts_in_plurals_and_spells_the_version_as_json_does() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, save) = spread_torrent(dir.path(), &["--v2"]);
    let a = std::path::Path::new(&save).join("pl").join("a.bin");
    let mut data = std::fs::read(&a).unwrap();
    data[100] ^= 1;
    data[20_000] ^= 1;
    std::fs::write(&a, data).unwrap();
    let out = run(&[
        "verify",
        torrent.to_str().unwrap(),
        &save,
        "--backend",
        "cpu",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("pl (v2, "), "{text}");
    // 40000 bytes: pieces of 16384, 16384 and 7232; two bad leave 7232 = 18.08%.
    assert!(
        text.contains("  corrupt           a.bin  (2 bad pieces, 18.0% complete)\n"),
        "{text}"
    );
    assert!(text.contains("files: 6 ok, 1 corrupt\n"), "{text}");
    let report = json(&run(&[
        "verify",
        torrent.to_str().unwrap(),
        &save,
        "--json",
    ]));
    assert_eq!(report["version"], "v2");
    // v2-only: a.bin's pieces are global 0-2, the same numbering as the report's.
    assert_eq!(report["bad_pieces"], serde_json::json!([0, 1]));
    assert_eq!(
        file_entry(&report, "a.bin")["bad_pieces"],
        serde_json::json!([0, 1])
    );
}

/// A v1 torrent whose piece hashes are all wrong; a file's path is `/`-separated.
fn bencode_v1(name: &str, comment: &str, announce: &str, files: &[(&str, usize)]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(format!("{}:", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
    let total: usize = files.iter().map(|f| f.1).sum();
    let pieces = total.div_ceil(16384);
    let mut out = b"d".to_vec();
    string(&mut out, b"announce");
    string(&mut out, announce.as_bytes());
    string(&mut out, b"comment");
    string(&mut out, comment.as_bytes());
    string(&mut out, b"info");
    out.extend_from_slice(b"d5:filesl");
    for (path, length) in files {
        out.extend_from_slice(format!("d6:lengthi{length}e4:pathl").as_bytes());
        for component in path.split('/') {
            string(&mut out, component.as_bytes());
        }
        out.extend_from_slice(b"ee");
    }
    out.extend_from_slice(b"e");
    string(&mut out, b"name");
    string(&mut out, name.as_bytes());
    out.extend_from_slice(b"12:piece lengthi16384e");
    string(&mut out, b"pieces");
    string(&mut out, &vec![0xAB; 20 * pieces]);
    out.extend_from_slice(b"ee");
    out
}

const FORGED: &str = "a.bin\nOK\n\x1b[8m";

#[test]
fn control_characters_from_a_torrent_never_reach_the_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = dir.path().join("evil.torrent");
    let name = "evil\x1b]0;title\x07";
    let comment = "hi\x1b[2J\rthere\u{9b}";
    let announce = "http://t.example/\r\x1b[1A";
    std::fs::write(
        &torrent,
        bencode_v1(name, comment, announce, &[(FORGED, 1000), ("z.bin", 10)]),
    )
    .unwrap();
    let content = dir.path().join(name);
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join(FORGED), vec![1u8; 1000]).unwrap();
    std::fs::write(content.join("z.bin"), vec![2u8; 10]).unwrap();
    let torrent = torrent.to_str().unwrap();
    let save = dir.path().to_str().unwrap();

    let raw = |s: &str| s.contains(['\x1b', '\r', '\x07', '\u{9b}']);
    let info = run(&["info", torrent]);
    assert_eq!(info.status.code(), Some(0), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(!raw(&text), "{text:?}");
    assert!(!text.lines().any(|l| l == "OK"), "{text}");
    for shown in [
        "a.bin\\nOK\\n\\x1b[8m",
        "evil\\x1b]0;title\\x07",
        "hi\\x1b[2J\\rthere\\u{009b}",
        "http://t.example/\\r\\x1b[1A",
    ] {
        assert!(text.contains(shown), "{shown} not in {text}");
    }
    // JSON is exact.
    let info = json(&run(&["info", torrent, "--json"]));
    assert_eq!(info["name"], name);
    assert_eq!(info["comment"], comment);
    assert_eq!(info["trackers"][0], announce);
    assert_eq!(info["files"][0]["path"], FORGED);

    // The pieces are wrong, so the verdict is BAD and no forged OK line may appear.
    let out = run(&["verify", torrent, save, "--backend", "cpu"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!raw(&text), "{text:?}");
    assert!(!text.lines().any(|l| l == "OK"), "{text}");
    assert!(
        text.contains("  shares bad piece  a.bin\\nOK\\n\\x1b[8m  (1 bad piece"),
        "{text}"
    );
    assert!(text.ends_with("\nBAD\n"), "{text}");
    let report = json(&run(&[
        "verify",
        torrent,
        save,
        "--json",
        "--backend",
        "cpu",
    ]));
    assert_eq!(report["files"][0]["path"], FORGED);
    assert_eq!(report["name"], name);

    // Error messages quote names too, and are escaped as well; with --json they are exact.
    let missing = dir.path().join("no\x1b[8mthere");
    let refused = run(&["verify", torrent, missing.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("no\\x1b[8mthere"),
        "{}",
        stderr(&refused)
    );
    let refused = run(&["verify", torrent, missing.to_str().unwrap(), "--json"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(json(&refused)["error"]
        .as_str()
        .unwrap()
        .contains("no\x1b[8mthere"));
    assert!(!raw(&stderr(&refused)), "{:?}", stderr(&refused));
}

#[test]
fn a_hybrid_disagreement_says_which_half_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, save) = spread_torrent(dir.path(), &["--hybrid"]);
    let mut bytes = std::fs::read(&torrent).unwrap();
    // The v1 hash of piece 3 (b.bin's first) is wrong; so is the v2 root of c.bin (piece 5).
    let at = bytes.windows(8).position(|w| w == b"6:pieces").unwrap() + 8;
    let colon = at + bytes[at..].iter().position(|&b| b == b':').unwrap();
    bytes[colon + 1 + 3 * 20] ^= 1;
    let roots: Vec<usize> = bytes
        .windows(14)
        .enumerate()
        .filter(|(_, w)| w == b"pieces root32:")
        .map(|(i, _)| i + 14)
        .collect();
    assert_eq!(roots.len(), 7);
    bytes[roots[2]] ^= 1;
    let edited = dir.path().join("edited.torrent");
    std::fs::write(&edited, bytes).unwrap();
    let edited = edited.to_str().unwrap();
    let out = run(&["verify", edited, &save, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["bad_pieces"], serde_json::json!([3, 5]));
    assert_eq!(
        report["v1_v2_disagree"],
        serde_json::json!([{"piece": 3, "failed": "v1"}, {"piece": 5, "failed": "v2"}])
    );
    assert_eq!(file_entry(&report, "b.bin")["status"], "corrupt");
    assert_eq!(file_entry(&report, "c.bin")["status"], "corrupt");
    assert_eq!(file_entry(&report, "d.bin")["status"], "ok");
    let text = stdout(&run(&["verify", edited, &save]));
    for line in [
        "piece 3: its v1 (SHA-1) hash fails but its v2 (SHA-256) hash matches",
        "piece 5: its v2 (SHA-256) hash fails but its v1 (SHA-1) hash matches",
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
}

#[test]
fn an_unreadable_file_is_unreadable_in_every_run_and_its_neighbours_are_not_blamed() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let (v1, save) = spread_torrent(dir.path(), &[]);
    let (hybrid, _) = spread_torrent(dir.path(), &["--hybrid"]);
    // Root reads any file whatever its mode: run the binary as `nobody` then.
    let as_root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
    for entry in walk(dir.path()) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = std::path::Path::new(&save).join("pl").join("c.bin");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    for (torrent, neighbours) in [(&v1, "shares_bad_piece"), (&hybrid, "ok")] {
        for attempt in 0..3 {
            let mut cmd = util::peerhash(&["verify", torrent.to_str().unwrap(), &save, "--json"]);
            if as_root {
                cmd.uid(65534).gid(65534);
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            let report = json(&out);
            let context = format!("{torrent:?} run {attempt}: {report}");
            assert_eq!(
                file_entry(&report, "c.bin")["status"],
                "unreadable",
                "{context}"
            );
            assert_eq!(
                file_entry(&report, "c.bin")["percent_complete"],
                0.0,
                "{context}"
            );
            for path in ["b.bin", "d.bin"] {
                assert_eq!(file_entry(&report, path)["status"], neighbours, "{context}");
            }
            assert_eq!(file_entry(&report, "a.bin")["status"], "ok", "{context}");
        }
    }
}

/// Every file and folder under `root`, bounded by the tree's size.
fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

#[test]
fn with_json_errors_are_one_json_object_on_stdout_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, save) = spread_torrent(dir.path(), &[]);
    let torrent = torrent.to_str().unwrap();
    let nowhere = dir.path().join("nowhere");
    let nowhere = nowhere.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["verify", nowhere, &save, "--json"], "No such file"),
        (&["verify", torrent, nowhere, "--json"], "DATA"),
        (&["info", nowhere, "--json"], "No such file"),
        (&["create", nowhere, "--json"], "No such file"),
        (&["verify", torrent, "--memory", "1K", "--json"], "--memory"),
        (&["verify", "--json", "--bogus", torrent], "--bogus"),
    ];
    for (args, says) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let error = json(&out);
        let message = error["error"].as_str().unwrap_or_else(|| panic!("{error}"));
        assert!(message.contains(says), "{args:?}: {message}");
        // A person still reads it on stderr.
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    // A DATA path that does not exist is a usage error naming it, not a report of missing files.
    let out = run(&["verify", torrent, nowhere]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains(&format!("DATA {nowhere}: No such file")),
        "{}",
        stderr(&out)
    );
    // An existing DATA without the content says where it looked.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(&["verify", torrent, empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let content = empty.join("pl");
    assert!(
        stdout(&out).contains(&format!("content: {} (not found)\n", content.display())),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("files: 7 missing\n"),
        "{}",
        stdout(&out)
    );
    let _ = save;
}

#[test]
fn auto_backend_probes_the_drivers_without_noise_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, save) = spread_torrent(dir.path(), &["--hybrid"]);
    for args in [
        vec!["verify", torrent.to_str().unwrap(), &save],
        vec!["devices"],
    ] {
        let out = util::peerhash(&args)
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

/// Every subcommand `peerhash --help` lists (the generated scripts and pages must name them).
fn subcommands() -> Vec<String> {
    let help = stdout(&run(&["--help"]));
    let listed: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .expect("--help lists commands")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect();
    for expected in ["verify", "find", "mine", "completions", "man"] {
        assert!(listed.iter().any(|n| n == expected), "{listed:?}");
    }
    listed
}

#[test]
fn bash_completion_is_valid_bash_and_completes_every_subcommand() {
    let out = run(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peerhash.bash");
    std::fs::write(&path, &script).expect("write script");
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash");
    assert!(check.status.success(), "{}", stderr(&check));
    // Ask bash itself what `peerhash <TAB>` offers.
    let probe = format!(
        "source {}; COMP_WORDS=(peerhash ''); COMP_CWORD=1; COMP_LINE='peerhash '; \
         COMP_POINT=9; _peerhash peerhash '' peerhash; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let offered = std::process::Command::new("bash")
        .args(["-c", &probe])
        .output()
        .expect("bash");
    let offered = stdout(&offered);
    for name in subcommands() {
        assert!(
            offered.lines().any(|l| l == name),
            "{name} not in {offered}"
        );
    }
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("verify"), "{shell}");
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn man_pages_render_and_name_every_subcommand() {
    let out = run(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH peerhash"), "{page}");
    for name in subcommands() {
        assert!(
            page.contains(&format!("peerhash\\-{name}")) || page.contains(&name),
            "{name}"
        );
    }
    let mine = stdout(&run(&["man", "mine"]));
    assert!(mine.contains(".TH peerhash-mine"), "{mine}");
    assert!(mine.contains("\\-\\-duration"), "{mine}");
    // man(1) itself reads the page, where it is installed.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peerhash-mine.1");
    std::fs::write(&path, &mine).expect("write page");
    if let Ok(rendered) = std::process::Command::new("man")
        .arg("-l")
        .arg(&path)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .output()
    {
        let text = stdout(&rendered);
        assert!(rendered.status.success(), "{}", stderr(&rendered));
        assert!(text.contains("--duration"), "{text}");
    }
    let bad = run(&["man", "nosuch"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("no subcommand \"nosuch\""));
}
