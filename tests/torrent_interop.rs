//! peerhash against real torrent tools: torrents from mktorrent, transmission-create and
//! libtorrent (v1, v2, hybrid with pad files) are verified on good and damaged copies, and the
//! verdicts compared with libtorrent's own recheck. Torrents peerhash makes must load in
//! libtorrent with the same info hashes and check complete there.

mod util;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use util::bencode::{encode, s, B};
use util::payload::{bytes, copy_dir, write_files, FILES};

const PEERHASH: &str = env!("CARGO_BIN_EXE_peerhash");
/// python3-libtorrent is only importable from Debian's own interpreter.
const PYTHON: &str = "/usr/bin/python3";

/// Makes a torrent with libtorrent: `make.py DIR v1|v2|hybrid PIECE OUT`.
const MAKE_PY: &str = r#"
import libtorrent as lt, os, sys
fs = lt.file_storage()
lt.add_files(fs, sys.argv[1])
flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[sys.argv[2]]
ct = lt.create_torrent(fs, int(sys.argv[3]), flags=flags)
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(sys.argv[1])))
open(sys.argv[4], "wb").write(lt.bencode(ct.generate()))
"#;

/// libtorrent's recheck of `TORRENT` in save directory `SAVE`, as JSON.
const RECHECK_PY: &str = r#"
import json, libtorrent as lt, sys, time
ti = lt.torrent_info(sys.argv[1])
hashes = ti.info_hashes()
ses = lt.session({"hashing_threads": 2, "enable_dht": False, "enable_lsd": False,
                  "enable_upnp": False, "enable_natpmp": False,
                  "listen_interfaces": "127.0.0.1:0"})
p = lt.add_torrent_params()
p.ti = ti
p.save_path = sys.argv[2]
p.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
h = ses.add_torrent(p)
checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data,
            lt.torrent_status.queued_for_checking)
for _ in range(1200):
    s = h.status()
    if s.state not in checking:
        break
    time.sleep(0.025)
bad = [i for i in range(ti.num_pieces()) if not h.have_piece(i)]
print(json.dumps({
    "v1": str(hashes.v1) if hashes.has_v1() else None,
    "v2": str(hashes.v2) if hashes.has_v2() else None,
    "pieces": ti.num_pieces(),
    "bad": bad,
}))
"#;

fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    output
}

fn peerhash(args: &[&str], cwd: &Path) -> Output {
    run(Command::new(PEERHASH).args(args).current_dir(cwd))
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn python(script: &str, args: &[&Path], cwd: &Path) -> Output {
    let file = cwd.join("script.py");
    fs::write(&file, script).unwrap();
    let output = run(Command::new(PYTHON).arg(&file).args(args).current_dir(cwd));
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Writes the payload as `save/payload/...`, returning the content directory.
fn make_payload(save: &Path, files: &[(&str, usize)]) -> PathBuf {
    let root = save.join("payload");
    write_files(&root, files);
    root
}

/// How a copy of the payload is damaged.
#[derive(Clone, Copy, Debug)]
enum Damage {
    None,
    /// Flip a byte of `a.bin` at this offset.
    Flip(u64),
    /// Cut the last byte of `sub dir/é b.txt`.
    Truncate,
    /// Delete `tiny`.
    Missing,
    /// Append a byte to `sub dir/deeper/odd.dat`.
    ExtraByte,
}

const DAMAGES: [Damage; 5] = [
    Damage::None,
    Damage::Flip(100_000),
    Damage::Truncate,
    Damage::Missing,
    Damage::ExtraByte,
];

fn damaged_copy(payload_save: &Path, to: &Path, damage: Damage) {
    copy_dir(payload_save, to);
    let root = to.join("payload");
    match damage {
        Damage::None => {}
        Damage::Flip(offset) => {
            let path = root.join("a.bin");
            let mut data = fs::read(&path).unwrap();
            data[usize::try_from(offset).unwrap()] ^= 0x40;
            fs::write(path, data).unwrap();
        }
        Damage::Truncate => {
            let path = root.join("sub dir/é b.txt");
            let data = fs::read(&path).unwrap();
            fs::write(path, &data[..data.len() - 1]).unwrap();
        }
        Damage::Missing => fs::remove_file(root.join("tiny")).unwrap(),
        Damage::ExtraByte => {
            let path = root.join("sub dir/deeper/odd.dat");
            let mut data = fs::read(&path).unwrap();
            data.push(7);
            fs::write(path, data).unwrap();
        }
    }
}

fn json_indices(value: &Value) -> BTreeSet<u64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn file_status<'a>(report: &'a Value, path: &str) -> &'a str {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in report {report}"))["status"]
        .as_str()
        .unwrap()
}

/// Verifies `torrent` on each damaged copy with peerhash and libtorrent; the bad pieces must be
/// the same, with the right file statuses and exit codes.
fn check_against_libtorrent(dir: &Path, torrent: &Path, version: &str) {
    let good = dir.join("good");
    for (n, damage) in DAMAGES.into_iter().enumerate() {
        let save = dir.join(format!("case{n}"));
        damaged_copy(&good, &save, damage);
        let expected = stdout_json(&python(RECHECK_PY, &[torrent, &save], dir));
        let output = peerhash(
            &[
                "verify",
                torrent.to_str().unwrap(),
                save.to_str().unwrap(),
                "--backend",
                "cpu",
                "--json",
            ],
            dir,
        );
        let report = stdout_json(&output);
        let context = format!("{version} {torrent:?} {damage:?}: {report}");
        assert_eq!(report["version"], version, "{context}");
        assert_eq!(report["info_hash_v1"], expected["v1"], "{context}");
        assert_eq!(report["info_hash_v2"], expected["v2"], "{context}");
        assert_eq!(report["pieces_total"], expected["pieces"], "{context}");
        assert_eq!(
            json_indices(&report["bad_pieces"]),
            json_indices(&expected["bad"]),
            "{context}"
        );
        match damage {
            Damage::None => {
                assert_eq!(report["ok"], true, "{context}");
                assert_eq!(output.status.code(), Some(0), "{context}");
            }
            Damage::Flip(_) => assert_eq!(file_status(&report, "a.bin"), "corrupt", "{context}"),
            Damage::Truncate => {
                assert_eq!(
                    file_status(&report, "sub dir/é b.txt"),
                    "wrong_size",
                    "{context}"
                );
            }
            Damage::Missing => assert_eq!(file_status(&report, "tiny"), "missing", "{context}"),
            Damage::ExtraByte => assert_eq!(
                file_status(&report, "sub dir/deeper/odd.dat"),
                "wrong_size",
                "{context}"
            ),
        }
        // Only the damaged file is blamed: the others are intact, or share a bad piece with it.
        let damaged = match damage {
            Damage::None => "",
            Damage::Flip(_) => "a.bin",
            Damage::Truncate => "sub dir/é b.txt",
            Damage::Missing => "tiny",
            Damage::ExtraByte => "sub dir/deeper/odd.dat",
        };
        for file in report["files"].as_array().unwrap() {
            if file["path"] == damaged {
                continue;
            }
            let shares = !file["bad_pieces"].as_array().unwrap().is_empty();
            let expected = if shares { "shares_bad_piece" } else { "ok" };
            assert_eq!(file["status"], expected, "{}: {context}", file["path"]);
        }
        if !matches!(damage, Damage::None) {
            assert_eq!(report["ok"], false, "{context}");
            assert_eq!(output.status.code(), Some(1), "{context}");
            assert!(
                !json_indices(&report["bad_pieces"]).is_empty()
                    || matches!(damage, Damage::ExtraByte),
                "{context}"
            );
        }
        fs::remove_dir_all(&save).unwrap();
    }
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    make_payload(&good, &FILES);
    (dir, good)
}

fn tool(cmd: &mut Command) {
    let output = run(cmd);
    assert!(
        output.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn mktorrent_v1_verdicts_match_libtorrent() {
    let (dir, good) = setup();
    let torrent = dir.path().join("mk.torrent");
    tool(
        Command::new("mktorrent")
            .args(["-l", "15", "-o"])
            .arg(&torrent)
            .arg(good.join("payload")),
    );
    check_against_libtorrent(dir.path(), &torrent, "v1");
}

#[test]
fn transmission_v1_verdicts_match_libtorrent() {
    let (dir, good) = setup();
    let torrent = dir.path().join("tr.torrent");
    tool(
        Command::new("transmission-create")
            .args(["-s", "32", "-o"])
            .arg(&torrent)
            .arg(good.join("payload")),
    );
    let report = stdout_json(&peerhash(
        &["info", torrent.to_str().unwrap(), "--json"],
        dir.path(),
    ));
    // transmission-create 3.00 leaves zero-length files out of the torrent.
    assert!(report["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["path"] != "empty"));
    check_against_libtorrent(dir.path(), &torrent, "v1");
}

fn libtorrent_torrent(dir: &Path, good: &Path, version: &str, piece: u32) -> PathBuf {
    let torrent = dir.join(format!("lt-{version}-{piece}.torrent"));
    python(
        MAKE_PY,
        &[
            &good.join("payload"),
            Path::new(version),
            Path::new(&piece.to_string()),
            &torrent,
        ],
        dir,
    );
    torrent
}

#[test]
fn libtorrent_v1_verdicts_match_libtorrent() {
    let (dir, good) = setup();
    let torrent = libtorrent_torrent(dir.path(), &good, "v1", 16384);
    check_against_libtorrent(dir.path(), &torrent, "v1");
}

#[test]
fn libtorrent_v2_verdicts_match_libtorrent() {
    let (dir, good) = setup();
    for piece in [16384, 65536] {
        let torrent = libtorrent_torrent(dir.path(), &good, "v2", piece);
        check_against_libtorrent(dir.path(), &torrent, "v2");
    }
}

#[test]
fn libtorrent_hybrid_with_pad_files_verdicts_match_libtorrent() {
    let (dir, good) = setup();
    for piece in [16384, 65536] {
        let torrent = libtorrent_torrent(dir.path(), &good, "hybrid", piece);
        check_against_libtorrent(dir.path(), &torrent, "hybrid");
    }
}

#[test]
fn flipped_byte_fails_exactly_its_piece_in_a_single_file_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(9, 1_000_003);
    let file = dir.path().join("single file.bin");
    fs::write(&file, &data).unwrap();
    let torrent = dir.path().join("single.torrent");
    tool(
        Command::new("mktorrent")
            .args(["-l", "16", "-o"])
            .arg(&torrent)
            .arg(&file),
    );
    // Expected piece hashes computed here with the sha1 crate, independently of any tool.
    use sha1::{Digest, Sha1};
    let info = stdout_json(&peerhash(
        &["info", torrent.to_str().unwrap(), "--json"],
        dir.path(),
    ));
    assert_eq!(info["pieces"], data.len().div_ceil(65536));
    for offset in [0usize, 65535, 65536, 1_000_002] {
        let mut damaged = data.clone();
        damaged[offset] ^= 1;
        let changed: Vec<u64> = data
            .chunks(65536)
            .zip(damaged.chunks(65536))
            .enumerate()
            .filter(|(_, (a, b))| Sha1::digest(a) != Sha1::digest(b))
            .map(|(i, _)| i as u64)
            .collect();
        let copy = dir.path().join("copy.bin");
        fs::write(&copy, &damaged).unwrap();
        // DATA may be the file itself, under any name.
        let output = peerhash(
            &[
                "verify",
                torrent.to_str().unwrap(),
                copy.to_str().unwrap(),
                "--json",
                "--backend",
                "cpu",
            ],
            dir.path(),
        );
        let report = stdout_json(&output);
        assert_eq!(output.status.code(), Some(1));
        let bad: Vec<u64> = json_indices(&report["bad_pieces"]).into_iter().collect();
        assert_eq!(bad, changed);
        assert_eq!(bad, vec![offset as u64 / 65536]);
    }
}

/// A verify report without the fields that differ from run to run or backend to backend.
fn verdict(report: &Value) -> Value {
    let mut report = report.clone();
    let object = report.as_object_mut().unwrap();
    object.remove("seconds");
    object.remove("backend");
    // How the device was kept busy is not part of the verdict.
    object.remove("device");
    report
}

#[test]
fn gpu_verdicts_equal_cpu_verdicts() {
    let (dir, good) = setup();
    let torrents = [
        libtorrent_torrent(dir.path(), &good, "v1", 16384),
        libtorrent_torrent(dir.path(), &good, "v2", 32768),
        libtorrent_torrent(dir.path(), &good, "hybrid", 16384),
    ];
    for damage in [Damage::None, Damage::Flip(50_000), Damage::Truncate] {
        let save = dir.path().join("save");
        damaged_copy(&good, &save, damage);
        for torrent in &torrents {
            let reports: Vec<Value> = ["cpu", "gpu"]
                .iter()
                .map(|backend| {
                    let output = peerhash(
                        &[
                            "verify",
                            torrent.to_str().unwrap(),
                            save.to_str().unwrap(),
                            "--json",
                            "--backend",
                            backend,
                        ],
                        dir.path(),
                    );
                    assert!(
                        matches!(output.status.code(), Some(0 | 1)),
                        "--backend {backend} must work (a GPU adapter, lavapipe in CI): {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    stdout_json(&output)
                })
                .collect();
            assert!(reports[1]["backend"].as_str().unwrap().starts_with("gpu"));
            let device = &reports[1]["device"];
            assert!(device["rounds"].as_u64().unwrap() >= 1, "{device}");
            let lanes = device["lanes_per_dispatch"].as_u64().unwrap()
                + device["block_lanes_per_dispatch"].as_u64().unwrap();
            assert!(lanes > 1, "pieces hash side by side: {device}");
            assert!(reports[0].get("device").is_none(), "the CPU has no rounds");
            assert_eq!(
                verdict(&reports[0]),
                verdict(&reports[1]),
                "{torrent:?} {damage:?}"
            );
        }
        fs::remove_dir_all(&save).unwrap();
    }
}

#[test]
#[cfg(feature = "test-hooks")]
fn a_gpu_lost_during_verify_hands_over_to_the_cpu_with_the_same_verdict() {
    let (dir, good) = setup();
    let torrent = libtorrent_torrent(dir.path(), &good, "hybrid", 16384);
    let save = dir.path().join("save");
    damaged_copy(&good, &save, Damage::Flip(50_000));
    let args = [
        "verify",
        torrent.to_str().unwrap(),
        save.to_str().unwrap(),
        "--json",
    ];
    let cpu = stdout_json(&peerhash(
        &[&args[..], &["--backend", "cpu"]].concat(),
        dir.path(),
    ));
    // The first GPU batch succeeds; every later one fails as a lost device would.
    let lost = run(Command::new(PEERHASH)
        .args(args)
        .args(["--backend", "gpu"])
        .env("PEERHASH_FAULT_GPU", "fail-after:1")
        .current_dir(dir.path()));
    let lost_report = stdout_json(&lost);
    assert!(String::from_utf8_lossy(&lost.stderr).contains("device lost"));
    assert!(
        lost_report["backend"].as_str().unwrap().starts_with("cpu"),
        "{lost_report}"
    );
    assert_eq!(verdict(&lost_report), verdict(&cpu));
    assert_eq!(cpu["ok"], false, "the flipped byte must be found");
}

#[test]
fn a_directory_holding_one_file_stays_a_directory_torrent_in_every_format() {
    // Found by a property test: hybrid once took such a tree for a single-file torrent. A
    // v2-only torrent cannot say "a directory holding one file": libtorrent (and so peerhash)
    // reads its one-entry file tree as a single-file torrent, found directly in the save path.
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("save");
    fs::create_dir_all(save.join("album")).unwrap();
    fs::write(save.join("album/only.bin"), bytes(3, 70_000)).unwrap();
    for flag in ["--v1", "--v2", "--hybrid"] {
        let torrent = dir.path().join(format!("one{flag}.torrent"));
        let made = peerhash(
            &[
                "create",
                save.join("album").to_str().unwrap(),
                flag,
                "--piece-size",
                "16K",
                "--json",
                "-o",
                torrent.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_eq!(
            made.status.code(),
            Some(0),
            "{flag}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let made = stdout_json(&made);
        let save = if flag == "--v2" {
            save.join("album")
        } else {
            save.clone()
        };
        let lt = stdout_json(&python(RECHECK_PY, &[&torrent, &save], dir.path()));
        assert_eq!(made["info_hash_v1"], lt["v1"], "{flag}");
        assert_eq!(made["info_hash_v2"], lt["v2"], "{flag}");
        assert_eq!(lt["bad"], serde_json::json!([]), "{flag} {lt}");
        let verified = peerhash(
            &[
                "verify",
                torrent.to_str().unwrap(),
                save.to_str().unwrap(),
                "--json",
            ],
            dir.path(),
        );
        assert_eq!(verified.status.code(), Some(0), "{flag}");
        assert_eq!(
            file_status(&stdout_json(&verified), "only.bin"),
            "ok",
            "{flag}"
        );
    }
}

/// A `size`-byte file of 0x5a, a torrent of it, and `verify --json` started on the two.
fn verify_in_background(size: usize) -> (tempfile::TempDir, PathBuf, std::process::Child) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("big.bin");
    fs::write(&data, vec![0x5au8; size]).unwrap();
    let torrent = dir.path().join("big.torrent");
    let made = peerhash(
        &[
            "create",
            data.to_str().unwrap(),
            "--piece-size",
            "1M",
            "-o",
            torrent.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        made.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let child = Command::new(PEERHASH)
        .args([
            "verify",
            torrent.to_str().unwrap(),
            dir.path().to_str().unwrap(),
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (dir, data, child)
}

#[test]
fn a_file_truncated_while_verify_reads_it_is_never_ok() {
    let (_dir, data, child) = verify_in_background(256 << 20);
    // Whether verify sees the old size or the new one, and wherever its reader is, the
    // verdict cannot be "ok": reading 256 MiB takes far longer than starting a process.
    fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = stdout_json(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["ok"], false, "{report}");
    assert_ne!(file_status(&report, "big.bin"), "ok", "{report}");
}

#[test]
fn a_file_rewritten_with_the_same_bytes_while_verify_reads_it_is_reported_changed() {
    let (_dir, data, mut child) = verify_in_background(128 << 20);
    // The content never differs from the torrent, so only the modification time can tell;
    // rewriting until verify exits makes sure one rewrite falls inside its run.
    let mut file = fs::OpenOptions::new().write(true).open(&data).unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "verify hangs"
        );
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(64 << 20)).unwrap();
        std::io::Write::write_all(&mut file, &[0x5a; 4096]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let report = stdout_json(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(file_status(&report, "big.bin"), "changed", "{report}");
    assert_eq!(
        report["bad_pieces"],
        serde_json::json!([]),
        "the bytes themselves are right"
    );
}

#[test]
fn created_torrents_load_and_check_complete_in_libtorrent() {
    let (dir, good) = setup();
    fs::write(good.join("payload/.hidden"), b"hidden files are included").unwrap();
    for (flag, version) in [("--v1", "v1"), ("--v2", "v2"), ("--hybrid", "hybrid")] {
        for backend in ["cpu", "gpu"] {
            let torrent = dir.path().join(format!("made-{version}-{backend}.torrent"));
            let output = peerhash(
                &[
                    "create",
                    good.join("payload").to_str().unwrap(),
                    flag,
                    "--piece-size",
                    "32K",
                    "--no-date",
                    "--json",
                    "--backend",
                    backend,
                    "-o",
                    torrent.to_str().unwrap(),
                ],
                dir.path(),
            );
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let made = stdout_json(&output);
            assert_eq!(made["version"], version);
            let lt = stdout_json(&python(RECHECK_PY, &[&torrent, &good], dir.path()));
            assert_eq!(made["info_hash_v1"], lt["v1"], "{version}");
            assert_eq!(made["info_hash_v2"], lt["v2"], "{version}");
            assert_eq!(lt["bad"], serde_json::json!([]), "{version} {lt}");
            let verified = peerhash(
                &[
                    "verify",
                    torrent.to_str().unwrap(),
                    good.to_str().unwrap(),
                    "--json",
                ],
                dir.path(),
            );
            assert_eq!(verified.status.code(), Some(0));
            let report = stdout_json(&verified);
            assert_eq!(file_status(&report, ".hidden"), "ok");
        }
        // Same content, same options, no date: the CPU and GPU torrents are byte-identical.
        assert_eq!(
            fs::read(dir.path().join(format!("made-{version}-cpu.torrent"))).unwrap(),
            fs::read(dir.path().join(format!("made-{version}-gpu.torrent"))).unwrap()
        );
    }
}

#[test]
fn created_v1_torrents_match_mktorrent_and_read_in_transmission() {
    let (dir, good) = setup();
    let ours = dir.path().join("ours.torrent");
    let theirs = dir.path().join("theirs.torrent");
    let output = peerhash(
        &[
            "create",
            good.join("payload").to_str().unwrap(),
            "--piece-size",
            "32K",
            "--announce",
            "http://tracker.example/announce",
            "--announce",
            "udp://backup.example:6969",
            "--comment",
            "made by a test",
            "--private",
            "--source",
            "TEST",
            "-o",
            ours.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0));
    let again = peerhash(
        &[
            "create",
            good.join("payload").to_str().unwrap(),
            "--backend",
            "cpu",
            "-o",
            ours.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing torrent is never replaced"
    );
    tool(
        Command::new("mktorrent")
            .args(["-l", "15", "-p", "-s", "TEST", "-o"])
            .arg(&theirs)
            .arg(good.join("payload")),
    );
    let info = |t: &Path| {
        stdout_json(&peerhash(
            &["info", t.to_str().unwrap(), "--json"],
            dir.path(),
        ))
    };
    let (ours_info, theirs_info) = (info(&ours), info(&theirs));
    // Same files, order, pieces and flags: the same info dictionary, so the same info hash.
    assert_eq!(ours_info["info_hash_v1"], theirs_info["info_hash_v1"]);
    assert_eq!(ours_info["private"], true);
    assert_eq!(ours_info["comment"], "made by a test");
    assert_eq!(ours_info["trackers"].as_array().unwrap().len(), 2);
    let magnet = ours_info["magnet"].as_str().unwrap();
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"));
    assert!(magnet.contains("&tr=http%3A%2F%2Ftracker.example%2Fannounce"));
    let shown = run(Command::new("transmission-show").arg(&ours));
    assert!(shown.status.success());
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("Name: payload"), "{shown}");
    assert!(shown.contains("é b.txt"), "{shown}");
    assert!(shown.contains("made by a test"), "{shown}");
}

#[test]
fn data_may_be_the_save_directory_or_the_content_itself() {
    let (dir, good) = setup();
    let torrent = libtorrent_torrent(dir.path(), &good, "hybrid", 16384);
    let torrent = torrent.to_str().unwrap();
    let content = good.join("payload");
    for (args, cwd) in [
        (vec!["verify", torrent, good.to_str().unwrap()], dir.path()),
        (
            vec!["verify", torrent, content.to_str().unwrap()],
            dir.path(),
        ),
        (vec!["verify", torrent], good.as_path()),
    ] {
        let output = peerhash(&args, cwd);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let elsewhere = peerhash(&["verify", torrent, "--json"], dir.path());
    assert_eq!(elsewhere.status.code(), Some(1));
    assert_eq!(file_status(&stdout_json(&elsewhere), "a.bin"), "missing");

    // A directory where a file should be is reported, and the other files are still checked.
    fs::remove_file(content.join("tiny")).unwrap();
    fs::create_dir(content.join("tiny")).unwrap();
    let output = peerhash(
        &["verify", torrent, good.to_str().unwrap(), "--json"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let report = stdout_json(&output);
    assert_eq!(file_status(&report, "tiny"), "unreadable");
    assert_eq!(file_status(&report, "a.bin"), "ok");
    assert_eq!(file_status(&report, "sub dir/é b.txt"), "ok");
}

#[test]
fn memory_limit_streams_in_small_chunks_and_refuses_less_than_three_pieces() {
    let (dir, good) = setup();
    let torrent = libtorrent_torrent(dir.path(), &good, "hybrid", 16384);
    let torrent = torrent.to_str().unwrap();
    let save = good.to_str().unwrap();
    let small = peerhash(&["verify", torrent, save, "--memory", "48K"], dir.path());
    assert_eq!(small.status.code(), Some(0));
    let tiny = peerhash(&["verify", torrent, save, "--memory", "40K"], dir.path());
    assert_eq!(tiny.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&tiny.stderr).contains("--memory"));
}

fn v1_torrent(files: Vec<B>, pieces: usize) -> Vec<u8> {
    let info = B::D(vec![
        ("name", s("payload")),
        ("piece length", B::I(16384)),
        ("pieces", B::S(vec![0; pieces])),
        ("files", B::L(files)),
    ]);
    let mut out = Vec::new();
    encode(&B::D(vec![("info", info)]), &mut out);
    out
}

fn file(path: &[&str], length: i64) -> B {
    B::D(vec![
        ("length", B::I(length)),
        ("path", B::L(path.iter().map(|p| s(p)).collect())),
    ])
}

#[test]
fn hostile_torrents_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("save");
    fs::create_dir_all(save.join("payload")).unwrap();
    // Files a hostile torrent would point at, outside DATA.
    fs::write(dir.path().join("secret"), b"outside").unwrap();
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            v1_torrent(vec![file(&["..", "..", "secret"], 7)], 20),
            "reserved path component \"..\"",
        ),
        (
            "absolute",
            v1_torrent(vec![file(&["/etc/passwd"], 7)], 20),
            "separator",
        ),
        (
            "empty component",
            v1_torrent(vec![file(&["a", "", "b"], 7)], 20),
            "empty path component",
        ),
        (
            "dot",
            v1_torrent(vec![file(&["."], 7)], 20),
            "reserved path component",
        ),
        ("no path", v1_torrent(vec![file(&[], 7)], 20), "empty path"),
        (
            "pieces not multiple of 20",
            v1_torrent(vec![file(&["a"], 7)], 21),
            "not a multiple of 20",
        ),
        (
            "piece count",
            v1_torrent(vec![file(&["a"], 70_000)], 20),
            "need 5 pieces",
        ),
        (
            "negative length",
            v1_torrent(vec![file(&["a"], -1)], 20),
            "negative",
        ),
        (
            "absurd length",
            v1_torrent(vec![file(&["a"], i64::MAX), file(&["b"], i64::MAX)], 20),
            "absurd",
        ),
        (
            "absurd piece count",
            v1_torrent(vec![file(&["a"], 1 << 58)], 20),
            "pieces",
        ),
        (
            "truncated",
            v1_torrent(vec![file(&["a"], 7)], 20)[..40].to_vec(),
            "malformed bencode",
        ),
        (
            "garbage",
            b"this is not bencode".to_vec(),
            "malformed bencode",
        ),
        ("not a dict", b"li1ee".to_vec(), "not a bencoded dictionary"),
        ("no info", b"d3:foo3:bare".to_vec(), "missing field `info`"),
    ];
    let mut v2_dotdot = Vec::new();
    let leaf = B::D(vec![(
        "",
        B::D(vec![
            ("length", B::I(5)),
            ("pieces root", B::S(vec![1; 32])),
        ]),
    )]);
    let tree = B::D(vec![("..", B::D(vec![("secret", leaf)]))]);
    encode(
        &B::D(vec![(
            "info",
            B::D(vec![
                ("name", s("payload")),
                ("piece length", B::I(16384)),
                ("meta version", B::I(2)),
                ("file tree", tree),
            ]),
        )]),
        &mut v2_dotdot,
    );
    cases.push(("v2 dotdot", v2_dotdot, "reserved path component \"..\""));

    // A real v2 torrent whose piece layer no longer matches its file root.
    let good = dir.path().join("good");
    make_payload(&good, &FILES);
    let real = libtorrent_torrent(dir.path(), &good, "v2", 16384);
    let mut layer_mismatch = fs::read(&real).unwrap();
    let at = layer_mismatch
        .windows(12)
        .position(|w| w == b"piece layers")
        .unwrap();
    // Past the key, the dict opener and the first 32-byte root key: the layer's length prefix.
    let key_end = at + 12 + 1 + 3 + 32;
    let colon = key_end
        + layer_mismatch[key_end..]
            .iter()
            .position(|&b| b == b':')
            .unwrap();
    layer_mismatch[colon + 6] ^= 1;
    cases.push((
        "layer mismatch",
        layer_mismatch,
        "piece layer does not match",
    ));

    for (what, bytes, message) in cases {
        let torrent = dir.path().join("hostile.torrent");
        fs::write(&torrent, &bytes).unwrap();
        for command in ["verify", "info"] {
            let output = peerhash(
                &[command, torrent.to_str().unwrap(), save.to_str().unwrap()]
                    [..if command == "info" { 2 } else { 3 }],
                dir.path(),
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
            assert!(
                stderr.contains(message),
                "{what}: {stderr:?} lacks {message:?}"
            );
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        }
    }
}

#[test]
fn hybrid_v1_and_v2_disagreement_is_reported() {
    let (dir, good) = setup();
    let torrent = libtorrent_torrent(dir.path(), &good, "hybrid", 16384);
    let mut bytes = fs::read(&torrent).unwrap();
    // Corrupt the v1 hash of piece 2 only: the data still matches the v2 piece layers.
    let at = bytes.windows(8).position(|w| w == b"6:pieces").unwrap() + 8;
    let colon = at + bytes[at..].iter().position(|&b| b == b':').unwrap();
    bytes[colon + 1 + 2 * 20] ^= 1;
    let edited = dir.path().join("edited.torrent");
    fs::write(&edited, bytes).unwrap();
    let output = peerhash(
        &[
            "verify",
            edited.to_str().unwrap(),
            good.to_str().unwrap(),
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let report = stdout_json(&output);
    assert_eq!(report["bad_pieces"], serde_json::json!([2]));
    assert_eq!(
        report["v1_v2_disagree"],
        serde_json::json!([{"piece": 2, "failed": "v1"}])
    );
}
