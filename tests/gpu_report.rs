//! `scripts/gpu-report --local` end to end on this machine's `--backend gpu` (lavapipe in CI):
//! the script a lent GPU machine runs must work before it gets there.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A stand-in for hashcat printing one `--machine-readable` benchmark line (the last field is
/// H/s), so the parsing of the real tool's output is checked too.
const FAKE_HASHCAT: &str = "#!/bin/sh\necho '1:1400:1980:2619:30.12:16165900000'\n";

/// The table cell of `row` (the first cell starting with `what`) in column `column`.
fn cell<'a>(report: &'a str, what: &str, column: usize) -> &'a str {
    let row = report
        .lines()
        .find(|line| line.starts_with(&format!("| {what}")))
        .unwrap_or_else(|| panic!("no row {what:?} in report.md:\n{report}"));
    row.split(" | ")
        .nth(column)
        .unwrap_or_else(|| panic!("row {what:?} has no column {column}: {row}"))
}

fn assert_rate(report: &str, what: &str, column: usize, unit: &str) {
    let text = cell(report, what, column);
    let number: String = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .replace(',', "");
    let value: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("{what} column {column} is not a rate: {text:?}\n{report}"));
    assert!(
        value > 0.0 && text.contains(unit),
        "{what}: {text:?}\n{report}"
    );
}

#[test]
fn local_report_has_a_figure_in_every_row() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("a temp dir");
    let hashcat = out.path().join("hashcat");
    std::fs::write(&hashcat, FAKE_HASHCAT).expect("write the fake hashcat");
    std::fs::set_permissions(&hashcat, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the fake hashcat");
    let results = out.path().join("out");
    let output = Command::new(root.join("scripts/gpu-report"))
        .args(["--local", "--bin", env!("CARGO_BIN_EXE_peerhash")])
        .env("OUT", &results)
        .env("HASHCAT", &hashcat)
        .env("PEERHASH_REPORT_PAYLOAD_MIB", "8")
        .env("PEERHASH_REPORT_BENCH_SECONDS", "1")
        .env("PEERHASH_REPORT_PAYLOAD_DIR", out.path())
        .env("XDG_RUNTIME_DIR", "/tmp")
        .env("XDG_CONFIG_HOME", "/nonexistent/peerhash-tests")
        .output()
        .expect("scripts/gpu-report runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gpu-report failed:\n{stderr}");
    let report = std::fs::read_to_string(results.join("report.md"))
        .unwrap_or_else(|e| panic!("no report.md ({e}):\n{stderr}"));
    // The table went to stdout as well.
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("| what | GPU | CPU | reference |"),
        "{report}"
    );
    assert!(
        cell(&report, "selftest", 1).contains(" passed, 0 failed"),
        "{report}"
    );
    for column in [1, 2] {
        assert_rate(&report, "sha256d nonce search", column, "MH/s");
        assert_rate(&report, "SHA-1, 256 KiB pieces", column, "MB/s");
        assert_rate(&report, "SHA-256, 16 KiB blocks", column, "MB/s");
        assert_rate(&report, "verify v1, 1 MiB pieces", column, "MB/s");
        assert_rate(&report, "verify v1, 16 MiB pieces", column, "MB/s");
    }
    assert_rate(
        &report,
        "host-to-device copy, queue.write_buffer",
        1,
        "MB/s",
    );
    assert_rate(&report, "host-to-device copy, mapped staging", 1, "MB/s");
    assert_eq!(cell(&report, "hashcat", 1), "16,165.9 MH/s", "{report}");
    assert!(!report.contains("NOT OK"), "{report}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).expect("summary.json"))
            .expect("summary.json is JSON");
    assert_eq!(summary["meta"]["payload_bytes"], "8388608", "{summary}");
    assert_eq!(
        summary["verify"].as_array().map(Vec::len),
        Some(4),
        "{summary}"
    );
    assert!(results.join("raw.log").is_file());
    // The payload is removed when the script ends.
    let left: Vec<_> = std::fs::read_dir(out.path())
        .expect("read the temp dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("peerhash-report")
        })
        .collect();
    assert!(left.is_empty(), "payload left behind: {left:?}");
}
