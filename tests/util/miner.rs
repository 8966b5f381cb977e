//! `peerhash mine --json` as a child process whose events are collected live (the Stratum V2
//! tests use it; tests/mining_live.rs has its own older copy).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::node::wait_for_or_show;

pub struct Miner {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Miner {
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_peerhash"))
            .arg("mine")
            .args(args)
            .arg("--json")
            .env("XDG_CONFIG_HOME", "/nonexistent/peerhash-tests")
            .env(
                "XDG_RUNTIME_DIR",
                std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()),
            )
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

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events").clone()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == kind).count()
    }

    /// Waits (bounded) until `ready`, showing the miner's events if it never is.
    pub fn wait_for(&self, limit: Duration, what: &str, ready: impl FnMut() -> bool) {
        wait_for_or_show(limit, what, ready, || {
            format!("miner events: {:?}", self.events())
        });
    }

    /// Waits up to `limit` for the miner to exit; returns whether it succeeded, its events and
    /// its stderr.
    pub fn finish_with_status(mut self, limit: Duration) -> (bool, Vec<Value>, String) {
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
        (status.success(), self.events(), stderr)
    }

    /// Like [`Self::finish_with_status`], failing unless the miner exited successfully.
    pub fn finish(self, limit: Duration) -> (Vec<Value>, String) {
        let (ok, events, stderr) = self.finish_with_status(limit);
        assert!(
            ok,
            "peerhash mine failed\nevents: {events:?}\nstderr:\n{stderr}"
        );
        (events, stderr)
    }

    /// A signal by name (INT, TERM), as a user or a service manager sends it.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn events<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["event"] == kind).collect()
}

/// The final summary event.
pub fn summary(all: &[Value]) -> &Value {
    all.iter()
        .rev()
        .find(|e| e["event"] == "summary")
        .expect("a summary event")
}
