//! Shared by the integration tests: the real binary, and the GPU every GPU test needs.
#![allow(dead_code)]

use std::process::{Command, Output};

pub mod bencode;
pub mod miner;
pub mod node;
pub mod payload;
pub mod pty;
pub mod sv2;

/// The built `peerhash` binary, with Mesa quiet.
pub fn peerhash(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerhash"));
    // A developer's own ~/.config/peerhash/config.toml must not change what tests see.
    cmd.args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .env("XDG_CONFIG_HOME", "/nonexistent/peerhash-tests");
    cmd
}

/// Runs the binary and returns its output.
pub fn run(args: &[&str]) -> Output {
    peerhash(args).output().expect("the peerhash binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The best GPU adapter (lavapipe in CI). A missing adapter fails the test: GPU tests never
/// skip, since a skipped GPU test is a GPU path nobody checked.
pub fn gpu_backend() -> peerhash::hash::gpu::GpuBackend {
    std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    let adapters = peerhash::hash::gpu::adapters();
    let adapter = adapters.first().expect(
        "no GPU adapter: install a Vulkan driver (CI uses lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)",
    );
    peerhash::hash::gpu::GpuBackend::open(0, adapter).expect("the GPU adapter opens")
}

/// An HTTP answer as a client sees it.
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// Sends `method` (GET, POST) to `url` with a real HTTP client; never follows redirects.
pub fn http(method: &str, url: &str) -> HttpAnswer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .max_redirects(0)
        .build()
        .into();
    let result = match method {
        "GET" => agent.get(url).call(),
        "POST" => agent.post(url).send_empty(),
        other => panic!("unsupported method {other}"),
    };
    let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    HttpAnswer {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}")),
    }
}

/// Checks `text` against the Prometheus text format (0.0.4) and returns its samples as
/// `(name with labels, value)`.
pub fn prometheus_samples(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("a metric name");
            let kind = parts.next().expect("a metric type");
            assert!(
                ["counter", "gauge"].contains(&kind),
                "unexpected type in {line:?}"
            );
            assert!(typed.insert(name.to_owned()), "{name} typed twice");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        assert!(typed.contains(name), "{name} has no # TYPE line before it");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        samples.push((series.to_owned(), value));
    }
    samples
}
