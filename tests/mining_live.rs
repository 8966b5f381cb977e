//! `peerhash mine` against a real bcoin regtest node and a real stratum-pool-sha256 pool on
//! loopback (installed by `npm ci` in tests/harness), plus a hand-written fake pool for what
//! the real one cannot do (stalls, garbage, set_extranonce, oversized lines).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

mod util;

use util::node::{
    free_port, harness_dir, require_harness, temp_dir, wait_for, wait_for_or_show, Node, Process,
    ADDRESS, ADDRESS_P2WSH, API_KEY,
};

use serde_json::{json, Value};

/// Like [`wait_for`], showing what the miner said when it times out.
fn wait_for_miner(miner: &Miner, limit: Duration, what: &str, ready: impl FnMut() -> bool) {
    wait_for_or_show(limit, what, ready, || {
        format!("miner events: {:?}", miner.events())
    });
}

/// stratum-pool-sha256 through run-pool.js, logging one JSON line per share.
struct Pool {
    process: Process,
    port: u16,
    dir: PathBuf,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.process.stop();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Pool {
    fn start(node: &Node) -> Self {
        Self::start_at(node, free_port())
    }

    fn start_at(node: &Node, port: u16) -> Self {
        let dir = temp_dir("pool");
        let process = Process::spawn(
            Command::new("node").current_dir(harness_dir()).args([
                "run-pool.js",
                &port.to_string(),
                &node.port.to_string(),
                API_KEY,
                ADDRESS,
            ]),
            dir.join("pool.log"),
        );
        let pool = Self { process, port, dir };
        wait_for(Duration::from_secs(30), "the pool to start", || {
            pool.process.log().contains(r#"{"event":"started"}"#)
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        pool
    }

    fn url(&self) -> String {
        format!("stratum+tcp://127.0.0.1:{}", self.port)
    }

    /// Every share the pool logged: `(valid, log entry)`.
    fn shares(&self) -> Vec<(bool, Value)> {
        self.process
            .log()
            .lines()
            .filter(|l| l.starts_with(r#"{"event":"share""#))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| (v["valid"].as_bool() == Some(true), v))
            .collect()
    }

    fn accepted(&self) -> usize {
        self.shares().iter().filter(|(valid, _)| *valid).count()
    }
}

/// `peerhash mine` with `--json`; its events are collected live as they are printed.
struct Miner {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    reader: Option<thread::JoinHandle<()>>,
}

fn miner_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peerhash"));
    command
        .arg("mine")
        .args(args)
        .arg("--json")
        .env("XDG_CONFIG_HOME", "/nonexistent/peerhash-tests")
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()),
        );
    command
}

impl Miner {
    fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = miner_command(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting peerhash");
        let stdout = child.stdout.take().expect("piped stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
                sink.lock().expect("events").push(event);
            }
        });
        Self {
            child,
            events,
            reader: Some(reader),
        }
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events").clone()
    }

    /// The text `field` of the first `kind` event.
    fn first(&self, kind: &str, field: &str) -> String {
        self.events()
            .iter()
            .find(|e| e["event"] == kind)
            .and_then(|e| e[field].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no {kind} event with a {field}: {:?}", self.events()))
    }

    fn count(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == kind).count()
    }

    /// Waits up to `limit` for the miner to exit successfully; returns its events and stderr.
    fn finish(mut self, limit: Duration) -> (Vec<Value>, String) {
        let start = Instant::now();
        while self.child.try_wait().expect("waiting").is_none() {
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "peerhash mine ran past {limit:?}; events: {:?}",
                    self.events()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader");
        }
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        let status = self.child.wait().expect("status");
        assert!(
            status.success(),
            "peerhash mine failed: {status}\nevents: {:?}\nstderr:\n{stderr}",
            self.events()
        );
        (self.events(), stderr)
    }

    /// Ctrl-C, as a user would: the miner must exit cleanly after reporting.
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_miner(args: &[&str], limit: Duration) -> Vec<Value> {
    Miner::spawn(args, &[]).finish(limit).0
}

fn events<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["event"] == kind).collect()
}

fn summary(all: &[Value]) -> &Value {
    events(all, "summary").pop().expect("a summary event")
}

#[test]
fn getwork_mines_three_blocks() {
    require_harness();
    let node = Node::start();
    let before = node.height();
    let url = node.url();
    let all = run_miner(
        &[
            "--url",
            &url,
            "--user",
            "x",
            "--pass",
            API_KEY,
            "--mode",
            "getwork",
            "--blocks",
            "3",
            "--backend",
            "cpu",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(node.height(), before + 3);
    assert_eq!(summary(&all)["blocks"], 3);
    let text: String = all.iter().map(Value::to_string).collect();
    assert!(
        !text.contains(API_KEY),
        "the password leaked into the output"
    );

    // A wrong password is a clear error (exit 2) that does not echo the password.
    let output = miner_command(&["--url", &url, "--pass", "wrong-secret", "--backend", "cpu"])
        .output()
        .expect("peerhash");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(
        !stderr.contains("wrong-secret")
            && !String::from_utf8_lossy(&output.stdout).contains("wrong-secret")
    );
    // An address for another network is refused before mining starts.
    let output = miner_command(&[
        "--url",
        &url,
        "--pass",
        API_KEY,
        "--mode",
        "gbt",
        "--address",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
        "--backend",
        "cpu",
    ])
    .output()
    .expect("peerhash");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--address"), "{stderr}");
}

#[test]
fn gbt_mines_blocks_before_and_after_segwit() {
    require_harness();
    let node = Node::start();
    let url = node.url();
    for (address, generate) in [(ADDRESS, 0), (ADDRESS_P2WSH, 440)] {
        if generate > 0 {
            node.rpc("generatetoaddress", json!([generate, ADDRESS]));
        }
        let before = node.height();
        let template = node.rpc("getblocktemplate", json!([{"rules": ["segwit"]}]));
        let segwit = template["rules"].to_string().contains("segwit");
        assert_eq!(segwit, before >= 431, "segwit rules at height {before}");
        let all = run_miner(
            &[
                "--url",
                &url,
                "--pass",
                API_KEY,
                "--mode",
                "gbt",
                "--address",
                address,
                "--blocks",
                "3",
                "--backend",
                "cpu",
            ],
            Duration::from_secs(60),
        );
        assert_eq!(node.height(), before + 3, "segwit active: {segwit}");
        assert_eq!(summary(&all)["rejected"], 0);
        // The block pays the address the node resolved, and carries a witness commitment.
        let tip = node.rpc("getbestblockhash", json!([]));
        let block = node.rpc("getblock", json!([tip, true, true]));
        let coinbase = &block["tx"][0];
        let outputs = coinbase["vout"].to_string();
        assert!(outputs.contains(address), "payout to {address}: {outputs}");
        assert!(
            outputs.contains("6a24aa21a9ed"),
            "witness commitment: {outputs}"
        );
    }
}

/// The hash (display hex) is at or below the target (64 hex digits): equal-length hex
/// strings compare like the numbers.
fn meets(hash: &str, target: &str) -> bool {
    hash.len() == 64 && target.len() == 64 && hash <= target
}

#[test]
fn stratum_shares_are_accepted_and_a_bad_share_is_rejected() {
    require_harness();
    let node = Node::start();
    let pool = Pool::start(&node);
    let url = pool.url();
    let all = run_miner(
        &[
            "--url",
            &url,
            "--user",
            "tester",
            "--pass",
            "secret-pass",
            "--shares",
            "5",
            "--backend",
            "cpu",
            "--test-submit-bad-share",
        ],
        Duration::from_secs(60),
    );
    let summary = summary(&all);
    assert_eq!(summary["accepted"], 5);
    assert_eq!(summary["rejected"], 1, "the forced bad share");
    wait_for(Duration::from_secs(5), "the pool's share log", || {
        pool.shares().len() >= 6
    });
    assert_eq!(pool.accepted(), 5, "{:?}", pool.shares());
    assert!(pool.shares().iter().any(|(valid, s)| !valid
        && s["error"]
            .as_str()
            .is_some_and(|e| e.contains("low difficulty"))));
    // The regtest pool accepts anything under the block target: check the share target here.
    let targets: std::collections::HashMap<String, String> = events(&all, "new_job")
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
    let text: String = all.iter().map(Value::to_string).collect();
    assert!(
        !text.contains("secret-pass"),
        "the password leaked into the output"
    );
}

#[test]
fn status_api_follows_a_real_pool_and_sigterm_answers_every_found_share() {
    require_harness();
    let node = Node::start();
    let pool = Pool::start(&node);
    let url = pool.url();
    let miner = Miner::spawn(
        &[
            "--url",
            &url,
            "--user",
            "tester",
            "--pass",
            "secret-pass",
            "--backend",
            "cpu",
            "--api",
            "0",
            "--duration",
            "120",
        ],
        &[],
    );
    wait_for_miner(&miner, Duration::from_secs(30), "accepted shares", || {
        miner.count("accepted") >= 3
    });
    let api = miner.first("api", "url");
    // The board lags the events by up to a second.
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
    assert_eq!(
        board["pool"]["difficulty"], 0.0001,
        "run-pool.js's port difficulty"
    );
    assert!(board["pool"]["job"].is_string(), "{board}");
    let device = &board["devices"][0];
    assert!(
        device["hashrate"].as_f64().is_some_and(|r| r > 0.0),
        "{board}"
    );
    assert!(device["hashes"].as_u64().is_some_and(|h| h > 0), "{board}");
    assert_eq!(device["hw_errors"], 0);
    let metrics = util::http("GET", &format!("{api}/metrics"));
    let samples = util::prometheus_samples(&metrics.body);
    let accepted = samples
        .iter()
        .find(|(s, _)| s == "peerhash_shares_total{result=\"accepted\"}")
        .map(|(_, v)| *v)
        .expect("an accepted-shares sample");
    assert!(accepted >= 1.0, "{}", metrics.body);
    assert!(samples
        .iter()
        .any(|(s, v)| s == &format!("peerhash_pool_connected{{url=\"{url}\"}}") && *v == 1.0));
    assert!(!metrics.body.contains("secret-pass") && !board.to_string().contains("secret-pass"));

    // SIGTERM while shares are found every few milliseconds: the miner stops hashing, still
    // submits what it found and waits for the pool's answers before its summary.
    let status = Command::new("kill")
        .args(["-TERM", &miner.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
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
    assert!(
        events(&all, "error").is_empty(),
        "{:?}",
        events(&all, "error")
    );
    wait_for(Duration::from_secs(5), "the pool's share log", || {
        pool.accepted() >= usize::try_from(summary["accepted"].as_u64().unwrap_or(0)).unwrap_or(0)
    });
}

/// Seconds since the Unix epoch, the clock the miner's events use.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[test]
fn solo_miner_survives_a_node_restart_during_long_poll() {
    require_harness();
    let node = Node::start();
    let url = node.url();
    let miner = Miner::spawn(
        &[
            "--url",
            &url,
            "--pass",
            API_KEY,
            "--mode",
            "getwork",
            "--duration",
            "90",
            "--backend",
            "cpu",
        ],
        &[],
    );
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "blocks on the first node",
        || node.height() >= 3,
    );
    // An outside block: the long poll wakes and the miner moves to work on top of it.
    let generated = unix_now();
    node.rpc("generatetoaddress", json!([1, ADDRESS]));
    // Killing the node ends the pending long poll without an answer; a restart is at height 0.
    let node = node.restart();
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "blocks on the restarted node",
        || node.height() >= 3,
    );
    miner.interrupt();
    let (all, _) = miner.finish(Duration::from_secs(20));
    assert!(
        !events(&all, "disconnected").is_empty(),
        "no disconnect seen"
    );
    assert!(events(&all, "connected").len() >= 2, "no reconnect");
    assert!(summary(&all)["blocks"].as_u64() >= Some(6));
    if let Some(hashing) = events(&all, "hashing")
        .iter()
        .find(|e| e["time"].as_f64() > Some(generated))
    {
        let ms = (hashing["time"].as_f64().unwrap_or(0.0) - generated) * 1000.0;
        eprintln!("getwork: hashing new work {ms:.1} ms after generatetoaddress was sent");
    }
}

#[test]
fn pool_miner_follows_clean_jobs_and_survives_a_pool_restart() {
    require_harness();
    let node = Node::start();
    let pool = Pool::start(&node);
    let url = pool.url();
    let miner = Miner::spawn(
        &[
            "--url",
            &url,
            "--duration",
            "90",
            "--backend",
            "cpu",
            "--status-every",
            "0.5",
        ],
        &[],
    );
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "shares on the first pool",
        || pool.accepted() >= 2,
    );
    // A new block: the pool sends mining.notify with clean_jobs and the miner switches to it.
    let jobs_before = miner.count("new_job");
    let generated = unix_now();
    node.rpc("generatetoaddress", json!([1, ADDRESS]));
    wait_for(Duration::from_secs(10), "a clean job", || {
        miner.count("new_job") > jobs_before
    });
    let clean = miner
        .events()
        .into_iter()
        .filter(|e| e["event"] == "new_job")
        .nth(jobs_before)
        .expect("the new job");
    assert_eq!(clean["clean"], true, "{clean}");
    let job = clean["job"].clone();
    wait_for(Duration::from_secs(10), "hashing the clean job", || {
        miner
            .events()
            .iter()
            .any(|e| e["event"] == "hashing" && e["job"] == job)
    });
    let all = miner.events();
    let hashing = all
        .iter()
        .find(|e| e["event"] == "hashing" && e["job"] == job)
        .expect("hashing event");
    let notify_to_hashing =
        (hashing["time"].as_f64().unwrap_or(0.0) - clean["time"].as_f64().unwrap_or(0.0)) * 1000.0;
    let block_to_hashing = (hashing["time"].as_f64().unwrap_or(0.0) - generated) * 1000.0;
    eprintln!("stratum: notify -> hashing {notify_to_hashing:.1} ms; generatetoaddress -> hashing {block_to_hashing:.1} ms (pool polls every 500 ms)");
    assert!(
        notify_to_hashing < 1000.0,
        "{notify_to_hashing} ms from notify to hashing"
    );

    // The pool restarts: clean EOF, refused connections, then a new extranonce1 and job ids.
    let port = pool.port;
    drop(pool);
    wait_for_miner(
        &miner,
        Duration::from_secs(10),
        "the miner to notice",
        || miner.count("disconnected") >= 1,
    );
    // Long enough for whole status intervals without a pool.
    thread::sleep(Duration::from_secs(2));
    let pool = Pool::start_at(&node, port);
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "shares on the restarted pool",
        || pool.accepted() >= 2,
    );
    miner.interrupt();
    let (all, _) = miner.finish(Duration::from_secs(20));
    assert!(events(&all, "connected").len() >= 2);
    let summary = summary(&all);
    assert!(summary["accepted"].as_u64() >= Some(4), "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    // Without a pool the dead job is not hashed: a status interval that began and ended
    // disconnected shows no hashing at all.
    let statuses = events(&all, "status");
    let idle: Vec<_> = statuses
        .windows(2)
        .filter(|w| w[0]["connected"] == false && w[1]["connected"] == false)
        .map(|w| w[1])
        .collect();
    assert!(
        !idle.is_empty(),
        "no status line while disconnected: {statuses:?}"
    );
    for status in idle {
        assert_eq!(status["hashrate"], 0.0, "{status}");
    }
}

/// A hand-written pool for what the real one cannot do. Each connection gets the next script.
fn fake_pool(scripts: Vec<Box<dyn FnOnce(TcpStream) + Send>>) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        for script in scripts {
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            script(stream);
        }
    });
    (port, handle)
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a request line");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad request {line:?}: {e}"))
}

/// Answers configure (with `configure`), subscribe and authorize, sends `lines` after the
/// subscribe answer, and returns the first submit.
fn handshake_with(
    stream: &TcpStream,
    configure: &Value,
    lines: &[String],
) -> (BufReader<TcpStream>, Value) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream.try_clone().expect("clone");
    loop {
        let request = read_request(&mut reader);
        let result = match request["method"].as_str() {
            Some("mining.submit") => return (reader, request),
            Some("mining.configure") => configure.clone(),
            Some("mining.subscribe") => json!([[["mining.notify", "1"]], "aabbccdd", 4]),
            _ => json!(true),
        };
        writeln!(
            writer,
            "{}",
            json!({"id": request["id"], "result": result, "error": null})
        )
        .expect("write");
        if request["method"] == "mining.subscribe" {
            for line in lines {
                writer.write_all(line.as_bytes()).expect("write");
                writer.write_all(b"\n").expect("write");
            }
        }
    }
}

fn handshake(stream: &TcpStream, lines: &[String]) -> (BufReader<TcpStream>, Value) {
    handshake_with(stream, &json!({}), lines)
}

const FAKE_NOTIFY: &str = r#"{"id":null,"method":"mining.notify","params":["j1","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0d03a08601","ffffffff0100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"20000000","207fffff","6b0733e6",true]}"#;

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "shortens timeouts through PEERHASH_*: needs --features test-hooks (scripts/test)"
)]
fn pool_client_handles_stalls_garbage_set_extranonce_and_oversized_lines() {
    let submits = Arc::new(Mutex::new(Vec::new()));
    let (first, second) = (Arc::clone(&submits), Arc::clone(&submits));
    let scripts: Vec<Box<dyn FnOnce(TcpStream) + Send>> = vec![
        // 1: accepts the connection and never answers: the miner must give up and reconnect.
        Box::new(|stream| {
            thread::sleep(Duration::from_millis(1500));
            drop(stream);
        }),
        // 2: garbage, a wrong-typed notify, set_extranonce, then a good job; one share taken,
        // then a line far past any sane length.
        Box::new(move |stream| {
            let lines = [
                "this is not json".to_owned(),
                r#"{"id":null,"method":"mining.notify","params":[1,2,3]}"#.to_owned(),
                r#"{"id":null,"method":"mining.set_difficulty","params":[0.001]}"#.to_owned(),
                r#"{"id":null,"method":"mining.set_extranonce","params":["01020304",2]}"#
                    .to_owned(),
                FAKE_NOTIFY.to_owned(),
            ];
            let (_reader, submit) = handshake(&stream, &lines);
            let mut writer = stream.try_clone().expect("clone");
            writeln!(
                writer,
                "{}",
                json!({"id": submit["id"], "result": true, "error": null})
            )
            .expect("write");
            first.lock().expect("submits").push(submit);
            let _ = writer.write_all(&vec![b'x'; 100 << 10]);
            thread::sleep(Duration::from_millis(500));
        }),
        // 3: an ordinary session that takes the second share.
        Box::new(move |stream| {
            let lines = [
                r#"{"id":null,"method":"mining.set_difficulty","params":[0.001]}"#.to_owned(),
                FAKE_NOTIFY.to_owned(),
            ];
            let (_reader, submit) = handshake(&stream, &lines);
            let mut writer = stream.try_clone().expect("clone");
            writeln!(
                writer,
                "{}",
                json!({"id": submit["id"], "result": true, "error": null})
            )
            .expect("write");
            second.lock().expect("submits").push(submit);
            thread::sleep(Duration::from_millis(500));
        }),
    ];
    let (port, server) = fake_pool(scripts);
    let url = format!("stratum+tcp://127.0.0.1:{port}");
    let miner = Miner::spawn(
        &["--url", &url, "--shares", "2", "--backend", "cpu"],
        &[("PEERHASH_STRATUM_TIMEOUT_MS", "700")],
    );
    let (all, _) = miner.finish(Duration::from_secs(60));
    server.join().expect("fake pool");
    let submits = submits.lock().expect("submits").clone();
    assert_eq!(submits.len(), 2, "{all:?}");
    // After set_extranonce the extranonce2 is 2 bytes; the reconnect brings back 4.
    assert_eq!(
        submits[0]["params"][2].as_str().map(str::len),
        Some(4),
        "{}",
        submits[0]
    );
    assert_eq!(
        submits[1]["params"][2].as_str().map(str::len),
        Some(8),
        "{}",
        submits[1]
    );
    assert_eq!(summary(&all)["accepted"], 2);
    assert!(events(&all, "connected").len() >= 2);
}

/// The GPU path end to end (lavapipe in CI): pool shares, and solo blocks through getwork.
#[test]
fn gpu_backend_mines_shares_and_blocks() {
    require_harness();
    let node = Node::start();
    let pool = Pool::start(&node);
    let url = pool.url();
    let all = run_miner(
        &["--url", &url, "--shares", "3", "--backend", "gpu"],
        Duration::from_secs(120),
    );
    let summary_event = summary(&all);
    assert!(
        summary_event["device"]
            .as_str()
            .is_some_and(|d| d.starts_with("gpu")),
        "{summary_event}"
    );
    assert_eq!(summary_event["accepted"], 3);
    assert_eq!(summary_event["hw_errors"], 0);
    drop(pool);
    let before = node.height();
    let node_url = node.url();
    let all = run_miner(
        &[
            "--url",
            &node_url,
            "--pass",
            API_KEY,
            "--blocks",
            "2",
            "--backend",
            "gpu",
            "--with-cpu",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(node.height(), before + 2);
    assert_eq!(summary(&all)["blocks"], 2);
    // --with-cpu: the GPU and the CPU split the nonce ranges.
    assert!(summary(&all)["device"]
        .as_str()
        .is_some_and(|d| d.starts_with("gpu") && d.contains(" + cpu")));
}

#[test]
fn pool_client_rolls_version_bits_when_the_pool_grants_them() {
    use peerhash::mining::job::CoinbaseWork;
    use peerhash::mining::stratum::messages::{parse_line, share_target, Message};

    let submitted = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&submitted);
    let scripts: Vec<Box<dyn FnOnce(TcpStream) + Send>> = vec![Box::new(move |stream| {
        let granted = json!({"version-rolling": true, "version-rolling.mask": "1fffe000"});
        let lines = [
            r#"{"id":null,"method":"mining.set_difficulty","params":[0.001]}"#.to_owned(),
            FAKE_NOTIFY.to_owned(),
        ];
        let (_reader, submit) = handshake_with(&stream, &granted, &lines);
        let mut writer = stream.try_clone().expect("clone");
        writeln!(
            writer,
            "{}",
            json!({"id": submit["id"], "result": true, "error": null})
        )
        .expect("write");
        *sink.lock().expect("submit") = Some(submit);
        thread::sleep(Duration::from_millis(300));
    })];
    let (port, server) = fake_pool(scripts);
    let url = format!("stratum+tcp://127.0.0.1:{port}");
    let miner = Miner::spawn(&["--url", &url, "--shares", "1", "--backend", "cpu"], &[]);
    let (all, _) = miner.finish(Duration::from_secs(60));
    server.join().expect("fake pool");
    let submit = submitted.lock().expect("submit").clone().expect("a submit");
    let params: Vec<String> = submit["params"]
        .as_array()
        .expect("params")
        .iter()
        .map(|p| p.as_str().expect("string").to_owned())
        .collect();
    assert_eq!(
        params.len(),
        6,
        "BIP 310 submits carry the version bits: {submit}"
    );
    let version_bits = u32::from_str_radix(&params[5], 16).expect("hex");
    assert_eq!(
        version_bits & !0x1fff_e000,
        0,
        "bits outside the mask: {submit}"
    );
    // Rebuild the header the way the pool would and check the share ourselves.
    let Ok(Message::Notify(notify)) = parse_line(FAKE_NOTIFY) else {
        panic!("fixture notify");
    };
    let work = CoinbaseWork {
        version: notify.version | i32::from_ne_bytes(version_bits.to_ne_bytes()),
        prev_hash: notify.prev_hash,
        time: notify.time,
        bits: notify.bits,
        coinb1: notify.coinb1,
        extranonce1: hex::decode("aabbccdd").expect("hex"),
        extranonce2_size: 0,
        coinb2: [hex::decode(&params[2]).expect("hex"), notify.coinb2].concat(),
        branch: notify.branch,
        version_mask: 0,
    };
    let mut header = work.header(0);
    let nonce = u32::from_str_radix(&params[4], 16).expect("hex");
    header[76..].copy_from_slice(&nonce.to_le_bytes());
    let header = peerhash::mining::header::BlockHeader::from_bytes(header);
    assert!(share_target(0.001)
        .expect("target")
        .is_met_by(header.block_hash()));
    assert_eq!(summary(&all)["accepted"], 1);
}

#[test]
fn pool_client_follows_client_reconnect() {
    let submits = Arc::new(Mutex::new(0));
    let (first, second) = (Arc::clone(&submits), Arc::clone(&submits));
    let scripts: Vec<Box<dyn FnOnce(TcpStream) + Send>> = vec![
        Box::new(move |stream| {
            let lines = [
                r#"{"id":null,"method":"mining.set_difficulty","params":[0.001]}"#.to_owned(),
                FAKE_NOTIFY.to_owned(),
            ];
            let (_reader, submit) = handshake(&stream, &lines);
            let mut writer = stream.try_clone().expect("clone");
            writeln!(
                writer,
                "{}",
                json!({"id": submit["id"], "result": true, "error": null})
            )
            .expect("write");
            *first.lock().expect("count") += 1;
            // The pool asks the miner to come back (same host and port) at once.
            writeln!(
                writer,
                "{}",
                json!({"id": null, "method": "client.reconnect", "params": ["127.0.0.1", 0, 0]})
            )
            .expect("write");
            thread::sleep(Duration::from_millis(300));
        }),
        Box::new(move |stream| {
            let lines = [
                r#"{"id":null,"method":"mining.set_difficulty","params":[0.001]}"#.to_owned(),
                FAKE_NOTIFY.to_owned(),
            ];
            let (_reader, submit) = handshake(&stream, &lines);
            let mut writer = stream.try_clone().expect("clone");
            writeln!(
                writer,
                "{}",
                json!({"id": submit["id"], "result": true, "error": null})
            )
            .expect("write");
            *second.lock().expect("count") += 1;
            thread::sleep(Duration::from_millis(300));
        }),
    ];
    let (port, server) = fake_pool(scripts);
    let url = format!("stratum+tcp://127.0.0.1:{port}");
    let miner = Miner::spawn(&["--url", &url, "--shares", "2", "--backend", "cpu"], &[]);
    let (all, _) = miner.finish(Duration::from_secs(60));
    server.join().expect("fake pool");
    assert_eq!(*submits.lock().expect("count"), 2);
    assert_eq!(events(&all, "connected").len(), 2, "{all:?}");
    assert_eq!(summary(&all)["accepted"], 2);
}

#[test]
fn pool_failover_uses_the_next_url_when_the_first_is_down() {
    require_harness();
    let node = Node::start();
    let pool = Pool::start(&node);
    // Nothing listens on this port: connections are refused.
    let dead = format!("stratum+tcp://127.0.0.1:{}", free_port());
    let live = pool.url();
    let all = run_miner(
        &[
            "--url",
            &dead,
            "--url",
            &live,
            "--shares",
            "2",
            "--backend",
            "cpu",
        ],
        Duration::from_secs(60),
    );
    let connected = events(&all, "connected");
    assert_eq!(connected[0]["url"], live.as_str(), "{all:?}");
    assert_eq!(summary(&all)["accepted"], 2);
    assert_eq!(summary(&all)["url"], live.as_str());
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "shortens timeouts through PEERHASH_*: needs --features test-hooks (scripts/test)"
)]
fn a_config_file_gives_each_pool_its_login_and_the_miner_returns_to_the_first_pool() {
    require_harness();
    let node = Node::start();
    let second = Pool::start(&node);
    let first_port = free_port();
    let first_url = format!("stratum+tcp://127.0.0.1:{first_port}");
    let dir = temp_dir("config");
    fs::create_dir_all(&dir).expect("config dir");
    let config = dir.join("rig.toml");
    fs::write(
        &config,
        format!(
            "backend = \"cpu\"\n\
             [[pool]]\nurl = \"{first_url}\"\nuser = \"first.worker\"\npass = \"p1\"\n\
             [[pool]]\nurl = \"{}\"\nuser = \"second.worker\"\npass = \"p2\"\n",
            second.url()
        ),
    )
    .expect("writing the config");
    let miner = Miner::spawn(
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--duration",
            "90",
        ],
        &[("PEERHASH_PRIMARY_RETRY_MS", "1000")],
    );
    // The first pool is down: shares go to the second, under the second pool's login.
    let only_from = |pool: &Pool, worker: &str| {
        pool.shares()
            .iter()
            .all(|(_, share)| share["worker"] == worker)
    };
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "shares on the second pool",
        || second.accepted() >= 2,
    );
    assert!(only_from(&second, "second.worker"));
    // The first pool comes up: the miner goes back to it, under the first pool's login.
    let first = Pool::start_at(&node, first_port);
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "a share on the first pool",
        || first.accepted() >= 1,
    );
    assert!(only_from(&first, "first.worker"));
    let connected: Vec<Value> = miner
        .events()
        .into_iter()
        .filter(|e| e["event"] == "connected")
        .collect();
    assert_eq!(connected[0]["url"], second.url().as_str(), "{connected:?}");
    assert_eq!(
        connected.last().expect("connected")["url"],
        first_url.as_str(),
        "{connected:?}"
    );
    miner.interrupt();
    let (all, _) = miner.finish(Duration::from_secs(20));
    assert_eq!(summary(&all)["url"], first_url.as_str());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "shortens timeouts through PEERHASH_*: needs --features test-hooks (scripts/test)"
)]
fn solo_miner_fails_over_to_the_second_node_and_returns_to_the_first() {
    require_harness();
    let second = Node::start();
    let first_port = free_port();
    let first_url = format!("http://127.0.0.1:{first_port}");
    let second_url = second.url();
    let miner = Miner::spawn(
        &[
            "--url",
            &first_url,
            "--url",
            &second_url,
            "--user",
            "x",
            "--pass",
            API_KEY,
            "--mode",
            "getwork",
            "--backend",
            "cpu",
            "--duration",
            "90",
        ],
        &[("PEERHASH_PRIMARY_RETRY_MS", "1000")],
    );
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "blocks on the second node",
        || second.height() >= 2,
    );
    let first = Node::start_at("127.0.0.1", first_port, temp_dir("bcoin"));
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "a block on the first node",
        || first.height() >= 1,
    );
    // The node source shows URLs with a trailing slash.
    let connected: Vec<String> = miner
        .events()
        .into_iter()
        .filter(|e| e["event"] == "connected")
        .filter_map(|e| {
            e["url"]
                .as_str()
                .map(|u| u.trim_end_matches('/').to_owned())
        })
        .collect();
    assert_eq!(
        connected[0],
        second_url.trim_end_matches('/'),
        "{connected:?}"
    );
    assert_eq!(
        connected.last().expect("connected"),
        &first_url,
        "{connected:?}"
    );
    miner.interrupt();
    let (all, _) = miner.finish(Duration::from_secs(20));
    assert_eq!(
        summary(&all)["url"]
            .as_str()
            .map(|u| u.trim_end_matches('/')),
        Some(first_url.as_str())
    );
}

#[test]
fn pool_client_counts_job_not_found_as_stale() {
    let scripts: Vec<Box<dyn FnOnce(TcpStream) + Send>> = vec![Box::new(|stream| {
        let lines = [
            r#"{"id":null,"method":"mining.set_difficulty","params":[0.001]}"#.to_owned(),
            FAKE_NOTIFY.to_owned(),
        ];
        let (mut reader, submit) = handshake(&stream, &lines);
        let mut writer = stream.try_clone().expect("clone");
        // What stratum-pool-sha256 answers for a share of a job dropped by clean_jobs.
        writeln!(
            writer,
            "{}",
            json!({"id": submit["id"], "result": null, "error": [21, "job not found"]})
        )
        .expect("write");
        loop {
            let request = read_request(&mut reader);
            if request["method"] == "mining.submit" {
                writeln!(
                    writer,
                    "{}",
                    json!({"id": request["id"], "result": true, "error": null})
                )
                .expect("write");
                break;
            }
        }
        thread::sleep(Duration::from_millis(300));
    })];
    let (port, server) = fake_pool(scripts);
    let url = format!("stratum+tcp://127.0.0.1:{port}");
    let miner = Miner::spawn(&["--url", &url, "--shares", "1", "--backend", "cpu"], &[]);
    let (all, _) = miner.finish(Duration::from_secs(60));
    server.join().expect("fake pool");
    let summary = summary(&all);
    assert_eq!(summary["accepted"], 1, "{summary}");
    assert_eq!(summary["stale"], 1, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    let stale = events(&all, "rejected");
    assert!(stale[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("job not found")));
}

#[test]
#[cfg(feature = "test-hooks")]
fn a_gpu_lost_while_mining_hands_over_to_the_cpu() {
    require_harness();
    let node = Node::start();
    let before = node.height();
    let url = node.url();
    // One GPU scan succeeds, then the device is lost; the blocks must still land.
    let (all, _) = Miner::spawn(
        &[
            "--url",
            &url,
            "--pass",
            API_KEY,
            "--blocks",
            "4",
            "--backend",
            "gpu",
        ],
        &[("PEERHASH_FAULT_GPU", "fail-after:1")],
    )
    .finish(Duration::from_secs(120));
    assert_eq!(node.height(), before + 4);
    let summary_event = summary(&all);
    assert_eq!(summary_event["blocks"], 4, "{summary_event}");
    assert!(
        summary_event["device"]
            .as_str()
            .is_some_and(|d| d.starts_with("cpu") && d.contains("failed")),
        "{summary_event}"
    );
}

/// A fake server for what bcoin and the pool cannot do: accept connections and never say a
/// word. Connections are held until `until`.
fn silent_server(until: Duration) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        let until = Instant::now() + until;
        while Instant::now() < until && held.len() < 64 {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    (port, handle)
}

#[test]
fn a_node_that_never_answers_is_named_and_the_miner_still_stops_on_time() {
    let (port, silent) = silent_server(Duration::from_secs(40));
    let url = format!("http://127.0.0.1:{port}");
    // --duration is honoured although every call to the node hangs until its timeout.
    let started = Instant::now();
    let (all, _) = Miner::spawn(&["--url", &url, "--duration", "2", "--backend", "cpu"], &[])
        .finish(Duration::from_secs(8));
    eprintln!(
        "--duration 2 against a silent node: {:?}",
        started.elapsed()
    );
    assert_eq!(summary(&all)["hashes"], 0);
    // The failure is named once the call times out (10 s), at the default log level and as
    // an event; the status line says the node is not connected.
    let miner = Miner::spawn(
        &[
            "--url",
            &url,
            "--pass",
            "secret",
            "--mode",
            "getwork",
            "--duration",
            "60",
            "--backend",
            "cpu",
            "--status-every",
            "1",
        ],
        &[],
    );
    wait_for_miner(&miner, Duration::from_secs(25), "the failure named", || {
        miner.count("unreachable") >= 1
    });
    miner.interrupt();
    let (all, stderr) = miner.finish(Duration::from_secs(5));
    let unreachable = events(&all, "unreachable");
    assert_eq!(unreachable.len(), 1, "{unreachable:?}");
    assert_eq!(unreachable[0]["url"], format!("{url}/"));
    assert!(
        unreachable[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("did not answer getwork")),
        "{unreachable:?}"
    );
    assert!(stderr.contains("did not answer"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    let status = events(&all, "status");
    assert!(
        !status.is_empty() && status.iter().all(|s| s["connected"] == false),
        "{status:?}"
    );
    assert_eq!(summary(&all)["hashes"], 0);
    drop(silent);
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "shortens timeouts through PEERHASH_*: needs --features test-hooks (scripts/test)"
)]
fn a_pool_that_never_answers_is_named_and_stop_signals_act_at_once() {
    let (port, silent) = silent_server(Duration::from_secs(40));
    let url = format!("stratum+tcp://127.0.0.1:{port}");
    // Before: --duration 5 ran 30 s (the handshake wait) and status lines stopped meanwhile.
    let started = Instant::now();
    let (all, _) = Miner::spawn(
        &[
            "--url",
            &url,
            "--duration",
            "3",
            "--backend",
            "cpu",
            "--status-every",
            "1",
        ],
        &[],
    )
    .finish(Duration::from_secs(8));
    eprintln!(
        "--duration 3 against a silent pool: {:?}",
        started.elapsed()
    );
    let status = events(&all, "status");
    assert!(status.len() >= 2, "status lines go on: {status:?}");
    assert!(status
        .iter()
        .all(|s| s["connected"] == false && s["difficulty"].is_null()));
    assert_eq!(summary(&all)["hashes"], 0);

    // With the handshake limit shortened, the silence is named; SIGINT then ends the run even
    // while the next handshake is waiting.
    let miner = Miner::spawn(
        &["--url", &url, "--duration", "60", "--backend", "cpu"],
        &[("PEERHASH_STRATUM_TIMEOUT_MS", "1000")],
    );
    wait_for_miner(&miner, Duration::from_secs(15), "the failure named", || {
        miner.count("unreachable") >= 1
    });
    miner.interrupt();
    let (all, stderr) = miner.finish(Duration::from_secs(5));
    let unreachable = events(&all, "unreachable");
    assert_eq!(unreachable.len(), 1, "once per reason: {unreachable:?}");
    assert_eq!(unreachable[0]["url"], url);
    assert!(
        unreachable[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no answer to subscribe/authorize")),
        "{unreachable:?}"
    );
    assert!(
        stderr.contains("no answer to subscribe/authorize"),
        "{stderr}"
    );
    drop(silent);
}

#[test]
fn a_device_at_temp_stop_pauses_and_resumes_when_it_cools() {
    // A hwmon tree as Linux lays it out: a decoy sensor and the CPU package's.
    let sysfs = temp_dir("sysfs");
    let hwmon = sysfs.join("class/hwmon");
    for (path, text) in [
        ("hwmon0/name", "nvme\n"),
        ("hwmon0/temp1_input", "99000\n"),
        ("hwmon1/name", "coretemp\n"),
        ("hwmon1/temp1_label", "Package id 0\n"),
        ("hwmon1/temp1_input", "50000\n"),
    ] {
        fs::create_dir_all(hwmon.join(path).parent().unwrap()).unwrap();
        fs::write(hwmon.join(path), text).unwrap();
    }
    let package = hwmon.join("hwmon1/temp1_input");
    let (port, server) = fake_pool(vec![Box::new(|stream: TcpStream| {
        let (mut reader, _) = handshake(&stream, &[FAKE_NOTIFY.to_owned()]);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
    })]);
    let url = format!("stratum+tcp://127.0.0.1:{port}");
    let sysfs_arg = sysfs.to_string_lossy().into_owned();
    let miner = Miner::spawn(
        &[
            "--url",
            &url,
            "--backend",
            "cpu",
            "--status-every",
            "1",
            "--temp-stop",
            "80",
            "--temp-resume",
            "60",
            "--sysfs-root",
            &sysfs_arg,
            "--duration",
            "60",
        ],
        &[],
    );
    let device_status = |want: &dyn Fn(&Value) -> bool| {
        miner
            .events()
            .iter()
            .filter(|e| e["event"] == "status")
            .any(|e| want(&e["devices"][0]))
    };
    wait_for_miner(&miner, Duration::from_secs(30), "hashing at 50 °C", || {
        device_status(&|d| d["temperature_c"] == 50.0 && d["hashrate"].as_f64() > Some(0.0))
    });
    fs::write(&package, "90000\n").unwrap();
    wait_for_miner(&miner, Duration::from_secs(30), "device_paused", || {
        miner.count("device_paused") == 1
    });
    // Paused: status lines report it, and a whole interval passes with nothing hashed.
    wait_for_miner(
        &miner,
        Duration::from_secs(30),
        "an idle paused interval",
        || {
            device_status(&|d| {
                d["paused"] == true && d["temperature_c"] == 90.0 && d["hashrate"] == 0.0
            })
        },
    );
    fs::write(&package, "55000\n").unwrap();
    wait_for_miner(&miner, Duration::from_secs(30), "device_resumed", || {
        miner.count("device_resumed") == 1
    });
    let resumed_at = miner.events().len();
    wait_for_miner(&miner, Duration::from_secs(30), "hashing again", || {
        miner.events()[resumed_at..]
            .iter()
            .any(|e| e["event"] == "status" && e["devices"][0]["hashrate"].as_f64() > Some(0.0))
    });
    miner.interrupt();
    let (all, stderr) = miner.finish(Duration::from_secs(30));
    let paused = events(&all, "device_paused");
    assert_eq!(paused[0]["temperature_c"], 90.0, "{paused:?}");
    assert_eq!(paused[0]["stop_c"], 80.0);
    assert_eq!(events(&all, "device_resumed")[0]["temperature_c"], 55.0);
    assert!(stderr.contains("reached --temp-stop"), "{stderr}");
    drop(server);
}

#[test]
fn temp_resume_must_be_below_temp_stop() {
    let out = miner_command(&[
        "--url",
        "stratum+tcp://127.0.0.1:1",
        "--temp-stop",
        "70",
        "--temp-resume",
        "75",
    ])
    .output()
    .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be below --temp-stop"));
}

#[test]
fn an_unreachable_pool_is_named_and_passwords_in_urls_are_masked() {
    // A port nobody listens on.
    let port = free_port();
    let url = format!("stratum+tcp://alice:PASSWORD@127.0.0.1:{port}");
    let (all, stderr) = Miner::spawn(&["--url", &url, "--duration", "2", "--backend", "cpu"], &[])
        .finish(Duration::from_secs(10));
    let unreachable = events(&all, "unreachable");
    assert!(!unreachable.is_empty(), "{all:?}");
    assert_eq!(
        unreachable[0]["url"],
        format!("stratum+tcp://127.0.0.1:{port}")
    );
    assert!(stderr.contains("cannot connect"), "{stderr}");
    let stdout: String = all.iter().map(Value::to_string).collect();
    assert!(
        !stdout.contains("PASSWORD") && !stderr.contains("PASSWORD"),
        "{stdout}{stderr}"
    );

    // A URL that cannot be used is echoed with its password masked; so is --show-config.
    for bad in [
        "http://alice:PASSWORD@127.0.0.1".to_owned(),
        "stratum+tcp://alice:PASSWORD@127.0.0.1".to_owned(),
        "ftp://alice:PASSWORD@127.0.0.1:1".to_owned(),
    ] {
        let output = miner_command(&["--url", &bad]).output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let text =
            String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("alice:***@127.0.0.1"), "{text}");
        assert!(!text.contains("PASSWORD"), "{text}");
    }
    let output = miner_command(&[
        "--url",
        &format!("http://alice:PASSWORD@[::1]:{port}"),
        "--show-config",
    ])
    .output()
    .expect("runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("alice:***@[::1]") && !text.contains("PASSWORD"),
        "{text}"
    );
}

#[test]
fn ipv6_literal_urls_reach_the_node_and_the_pool() {
    require_harness();
    // bcoin's RPC on ::1 only, and getwork through an http://[::1]:PORT URL with the login in it.
    let node6 = Node::start_on("::1");
    let url = format!("http://x:{API_KEY}@[::1]:{}", node6.port);
    let all = run_miner(
        &[
            "--url",
            &url,
            "--mode",
            "getwork",
            "--blocks",
            "1",
            "--backend",
            "cpu",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(summary(&all)["blocks"], 1, "{all:?}");
    assert_eq!(node6.height(), 1);
    assert_eq!(
        events(&all, "connected")[0]["url"],
        format!("http://[::1]:{}/", node6.port)
    );
    // The pool listens on every interface: reach it through [::1].
    let node = Node::start();
    let pool = Pool::start(&node);
    let url = format!("stratum+tcp://[::1]:{}", pool.port);
    let all = run_miner(
        &["--url", &url, "--shares", "2", "--backend", "cpu"],
        Duration::from_secs(60),
    );
    assert_eq!(summary(&all)["accepted"], 2, "{all:?}");
    assert!(pool.accepted() >= 2);
}

/// The number after `label ` on a screen (`accepted 12`), if shown.
fn count_on(screen: &str, label: &str) -> Option<u64> {
    let rest = &screen[screen.find(&format!("{label} "))? + label.len() + 1..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `CSI ? 1049 h/l`: the alternate screen, entered and left.
const ENTER_ALTERNATE: &[u8] = b"\x1b[?1049h";
const LEAVE_ALTERNATE: &[u8] = b"\x1b[?1049l";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn the_live_view_shows_devices_and_the_pools_share_count_and_q_stops_cleanly() {
    require_harness();
    let node = Node::start();
    let pool = Pool::start(&node);
    let url = pool.url();
    let mut term = util::pty::Pty::spawn(
        env!("CARGO_BIN_EXE_peerhash"),
        &[
            "mine",
            "--url",
            &url,
            "--backend",
            "cpu",
            "--duration",
            "300",
        ],
    );
    let mut live = String::new();
    wait_for(
        Duration::from_secs(60),
        "the live view to show shares",
        || {
            let screen = term.screen();
            live = screen.contents();
            screen.alternate_screen() && count_on(&live, "accepted").is_some_and(|n| n >= 3)
        },
    );
    assert!(live.contains(&format!("{url}  connected")), "{live}");
    assert!(live.contains("difficulty 0.0001"), "{live}");
    // The device line: index, name, a rate, hashes, no hardware errors, no temperature yet.
    let device = live
        .lines()
        .find(|l| l.starts_with("│0 "))
        .unwrap_or_else(|| panic!("no device line in\n{live}"));
    let cells: Vec<&str> = device.trim_matches('│').split_whitespace().collect();
    assert!(cells.iter().any(|c| c.ends_with("H/s")), "{device}");
    assert_eq!(cells[cells.len() - 3..], ["0", "0", "-"], "{device}");
    assert!(
        live.contains("accepted share (job "),
        "the event list: {live}"
    );

    term.send(b"q");
    assert_eq!(term.wait(Duration::from_secs(30)), 0, "exit code after q");
    let output = term.output();
    assert!(find(&output, ENTER_ALTERNATE).is_some());
    let left = find(&output, LEAVE_ALTERNATE).expect("the alternate screen was left");
    // The view's last frame holds the final count, which the pool's log confirms.
    let last_frame = util::pty::screen_of(&output[..left]).contents();
    assert!(
        last_frame.contains("peerhash mine: stopped"),
        "{last_frame}"
    );
    let accepted = count_on(&last_frame, "accepted").expect("a share count");
    let accepted_usize = usize::try_from(accepted).expect("small");
    wait_for(Duration::from_secs(5), "the pool's share log", || {
        pool.accepted() >= accepted_usize
    });
    assert_eq!(pool.accepted(), accepted_usize, "{last_frame}");
    assert_eq!(count_on(&last_frame, "rejected"), Some(0), "{last_frame}");
    // The terminal is back: main screen, cursor shown, cooked mode, the summary printed there.
    let after = term.screen();
    assert!(!after.alternate_screen());
    assert!(!after.hide_cursor());
    assert!(term.modes_restored(), "raw mode left on");
    let text = after.contents();
    assert!(
        text.contains(&format!("{accepted} accepted (0 blocks), 0 rejected")),
        "{text}"
    );
}

#[test]
fn mine_prints_lines_when_piped_or_told_to_on_a_terminal() {
    require_harness();
    let node = Node::start();
    let pool = Pool::start(&node);
    let url = pool.url();
    let args = ["mine", "--url", &url, "--backend", "cpu", "--shares", "2"];
    // Lines as they always were: each one of the known kinds, no escape codes.
    let kinds = [
        "connected to ",
        "difficulty ",
        "new job ",
        "accepted share ",
        "stale ",
        "cpu",
    ];
    let check_lines = |text: &str, how: &str| {
        assert!(!text.contains('\x1b'), "{how}: escape codes in {text:?}");
        assert!(
            text.contains(&format!("connected to {url}")),
            "{how}: {text}"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("accepted share "))
                .count(),
            2,
            "{how}: {text}"
        );
        for line in text.lines().filter(|l| !l.is_empty()) {
            assert!(
                kinds.iter().any(|k| line.starts_with(k)) || line.contains(" MH/s on "),
                "{how}: unexpected line {line:?}"
            );
        }
    };
    let piped = util::run(&args);
    assert!(piped.status.success(), "{}", util::stderr(&piped));
    check_lines(&util::stdout(&piped), "piped");

    let mut no_tui = args.to_vec();
    no_tui.push("--no-tui");
    let mut term = util::pty::Pty::spawn(env!("CARGO_BIN_EXE_peerhash"), &no_tui);
    assert_eq!(term.wait(Duration::from_secs(60)), 0);
    let text = String::from_utf8_lossy(&term.output()).replace("\r\n", "\n");
    check_lines(&text, "--no-tui on a terminal");

    let mut json = args.to_vec();
    json.push("--json");
    let mut term = util::pty::Pty::spawn(env!("CARGO_BIN_EXE_peerhash"), &json);
    assert_eq!(term.wait(Duration::from_secs(60)), 0);
    let text = String::from_utf8_lossy(&term.output()).replace("\r\n", "\n");
    assert!(!text.contains('\x1b'), "{text:?}");
    let events: Vec<Value> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(summary(&events)["accepted"], 2);
}

/// Reads the miner's cgminer API with pyasic (its `CGMinerRPCAPI`, as dashboards built on it
/// do) and prints what it got as one JSON object.
const PYASIC_READ: &str = r#"
import asyncio, json, sys
from pyasic.rpc.cgminer import CGMinerRPCAPI

async def main(port):
    api = CGMinerRPCAPI("127.0.0.1", port=port)
    out = {
        "version": await api.version(),
        "summary": await api.summary(),
        "devs": await api.devs(),
        "pools": await api.pools(),
        "stats": await api.stats(),
        "config": await api.config(),
        "joined": await api.multicommand("summary", "devs"),
        "quit": await api.send_command("quit", ignore_errors=True, allow_warning=False),
    }
    out["after_quit"] = await api.summary()
    print(json.dumps(out))

asyncio.run(main(int(sys.argv[1])))
"#;

#[test]
fn pyasic_reads_the_cgminer_api_during_a_live_run_and_it_agrees_with_the_status_api() {
    require_harness();
    let python = harness_dir().join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/test (it installs pyasic)",
        python.display()
    );
    let node = Node::start();
    let pool = Pool::start(&node);
    let url = pool.url();
    // A second pool that is down, with a password in its URL: listed, never revealed.
    let dead = free_port();
    let dead_url = format!("stratum+tcp://bob:url-secret@127.0.0.1:{dead}");
    let miner = Miner::spawn(
        &[
            "--url",
            &url,
            "--url",
            &dead_url,
            "--user",
            "tester",
            "--pass",
            "secret-pass",
            "--backend",
            "cpu",
            "--api",
            "0",
            "--api-cgminer",
            "0",
            "--duration",
            "120",
        ],
        &[],
    );
    wait_for_miner(&miner, Duration::from_secs(30), "accepted shares", || {
        miner.count("accepted") >= 3
    });
    let api = miner.first("api", "url");
    let cgminer = miner.first("cgminer_api", "addr");
    let port = cgminer
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .expect("HOST:PORT");
    let board = |what: &str| -> Value {
        let answer = util::http("GET", &format!("{api}/summary"));
        assert_eq!(answer.status, 200, "{what}");
        serde_json::from_str(&answer.body).expect("JSON")
    };
    wait_for(Duration::from_secs(10), "the board to show shares", || {
        board("first")["shares"]["accepted"].as_u64().unwrap_or(0) >= 1
    });

    let before = board("before");
    let output = Command::new(&python)
        .arg("-c")
        .arg(PYASIC_READ)
        .arg(port.to_string())
        .output()
        .expect("running pyasic");
    let after = board("after");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "pyasic failed: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_str(&text).expect("pyasic's JSON");
    for secret in ["secret-pass", "url-secret", "bob"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }

    // Counts agree with the status API read just before and just after.
    let accepted = |v: &Value| v.as_u64().expect("a count");
    let cg = &read["summary"]["SUMMARY"][0];
    assert_eq!(read["summary"]["STATUS"][0]["Code"], 11);
    assert!(
        accepted(&before["shares"]["accepted"]) <= accepted(&cg["Accepted"])
            && accepted(&cg["Accepted"]) <= accepted(&after["shares"]["accepted"]),
        "{before}\n{cg}\n{after}"
    );
    assert!(accepted(&cg["Accepted"]) >= 1, "{cg}");
    assert_eq!(cg["Hardware Errors"], 0);
    assert!(accepted(&cg["Getworks"]) >= 1, "{cg}");
    let mhs = cg["MHS av"].as_f64().expect("MHS av");
    let board_mhs = after["hashrate_average"].as_f64().expect("a rate") / 1e6;
    assert!(
        mhs > 0.0 && mhs > board_mhs * 0.5 && mhs < board_mhs * 2.0,
        "MHS av {mhs} vs /summary {board_mhs}"
    );
    // Difficulty accepted: each share was worth the pool's difficulty, 0.0001.
    let difficulty = cg["Difficulty Accepted"].as_f64().expect("a sum");
    let expected = accepted(&cg["Accepted"]) as f64 * 0.0001;
    assert!(
        (difficulty - expected).abs() < expected * 0.01,
        "{difficulty} vs {expected}"
    );
    assert!(cg["Last getwork"].as_u64().is_some_and(|t| t > 0));

    let devs = read["devs"]["DEVS"].as_array().expect("DEVS");
    assert_eq!(read["devs"]["STATUS"][0]["Code"], 9);
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert_eq!(devs[0]["CPU"], 0);
    assert_eq!(devs[0]["Status"], "Alive");
    assert!(devs[0]["MHS 5s"].as_f64().is_some_and(|r| r > 0.0));
    assert!(devs[0]["Last Share Time"]
        .as_u64()
        .is_some_and(|t| (t as f64 - unix_now()).abs() < 120.0));

    // One request, one snapshot: the devices' shares add up to the summary's.
    let joined = &read["joined"];
    let joined_summary = &joined["summary"][0]["SUMMARY"][0];
    let joined_devs: u64 = joined["devs"][0]["DEVS"]
        .as_array()
        .expect("DEVS")
        .iter()
        .map(|d| accepted(&d["Accepted"]))
        .sum();
    assert_eq!(
        joined_devs,
        accepted(&joined_summary["Accepted"]),
        "{joined}"
    );

    let pools = read["pools"]["POOLS"].as_array().expect("POOLS");
    assert_eq!(pools.len(), 2, "{pools:?}");
    assert_eq!(pools[0]["URL"], url.as_str());
    assert_eq!(pools[0]["Status"], "Alive");
    assert_eq!(pools[0]["Stratum Active"], true);
    assert_eq!(pools[0]["Stratum Difficulty"], 0.0001);
    assert!(accepted(&pools[0]["Accepted"]) >= 1);
    assert_eq!(pools[1]["URL"], format!("stratum+tcp://127.0.0.1:{dead}"));
    assert_eq!(pools[1]["Stratum Active"], false);
    assert_eq!(read["version"]["VERSION"][0]["API"], "3.7");
    assert_eq!(read["config"]["CONFIG"][0]["Pool Count"], 2);
    assert_eq!(read["stats"]["STATUS"][0]["Code"], 70);

    // `quit` is refused and changes nothing: the API and the miner go on.
    assert_eq!(read["quit"]["STATUS"][0]["STATUS"], "E");
    assert_eq!(read["quit"]["STATUS"][0]["Code"], 45);
    assert_eq!(read["after_quit"]["STATUS"][0]["STATUS"], "S");
    assert!(miner.count("summary") == 0, "the miner stopped on quit");
    let status = Command::new("kill")
        .args(["-TERM", &miner.child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let (all, _) = miner.finish(Duration::from_secs(20));
    let last = summary(&all);
    assert!(accepted(&last["accepted"]) >= accepted(&cg["Accepted"]));
}
