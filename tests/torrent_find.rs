//! `peerhash find` on torrents made by real tools (mktorrent v1, libtorrent v2 and hybrid):
//! renamed and moved copies are found and proven, same-size decoys are hashed and refused,
//! missing files are reported, and a tree laid out with `--link-to` passes `verify` and
//! libtorrent's recheck.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use util::payload::{bytes, write_files, FILES};

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

/// libtorrent's recheck of `TORRENT` in save directory `SAVE`: the pieces it does not have.
const RECHECK_PY: &str = r#"
import json, libtorrent as lt, sys, time
ti = lt.torrent_info(sys.argv[1])
ses = lt.session({"enable_dht": False, "enable_lsd": False, "enable_upnp": False,
                  "enable_natpmp": False, "listen_interfaces": "127.0.0.1:0"})
p = lt.add_torrent_params()
p.ti = ti
p.save_path = sys.argv[2]
p.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
h = ses.add_torrent(p)
checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data,
            lt.torrent_status.queued_for_checking)
for _ in range(1200):
    if h.status().state not in checking:
        break
    time.sleep(0.025)
print(json.dumps([i for i in range(ti.num_pieces()) if not h.have_piece(i)]))
"#;

fn run(cmd: &mut Command) -> Output {
    cmd.env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn peerhash(args: &[&str]) -> Output {
    run(Command::new(PEERHASH).args(args))
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn tool(cmd: &mut Command) {
    let output = run(cmd);
    assert!(
        output.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
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

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The payload at `dir/good/payload` and a torrent of it made by `maker`.
fn torrent_of(dir: &Path, maker: &str) -> PathBuf {
    let content = dir.join("good/payload");
    if !content.exists() {
        write_files(&content, &FILES);
    }
    let torrent = dir.join(format!("{maker}.torrent"));
    match maker {
        "mktorrent" => tool(
            Command::new("mktorrent")
                .args(["-l", "15", "-o"])
                .arg(&torrent)
                .arg(&content),
        ),
        version => {
            python(
                MAKE_PY,
                &[&content, Path::new(version), Path::new("16384"), &torrent],
                dir,
            );
        }
    }
    torrent
}

/// Copies of payload files under new names in `lib`, with `bytes(i + 1, len)` as the payload.
fn copy_as(lib: &Path, file: usize, to: &str) {
    let path = lib.join(to);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes(file as u64 + 1, FILES[file].1)).unwrap();
}

/// A file of `len` bytes that is no payload file.
fn decoy(lib: &Path, to: &str, len: usize, seed: u64) {
    let path = lib.join(to);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes(1000 + seed, len)).unwrap();
}

/// The report's entry for torrent path `path`.
fn file<'a>(report: &'a Value, torrent: usize, path: &str) -> &'a Value {
    report["torrents"][torrent]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {report}"))
}

/// Renamed and moved copies of every payload file, with decoys of the same sizes: one with
/// other bytes, and one with the right name and wrong bytes.
fn library(dir: &Path) -> PathBuf {
    let lib = dir.join("lib");
    copy_as(&lib, 0, "moved/deep/renamed a.bin");
    decoy(&lib, "a.bin", FILES[0].1, 1);
    copy_as(&lib, 1, "elsewhere/e b renamed.txt");
    decoy(&lib, "x/other 70k", FILES[1].1, 2);
    decoy(&lib, "odd.dat", FILES[2].1, 3);
    copy_as(&lib, 2, "z/odd copy.dat");
    copy_as(&lib, 4, "tiny renamed");
    lib
}

const FOUND: [(&str, &str); 4] = [
    ("a.bin", "moved/deep/renamed a.bin"),
    ("sub dir/é b.txt", "elsewhere/e b renamed.txt"),
    ("sub dir/deeper/odd.dat", "z/odd copy.dat"),
    ("tiny", "tiny renamed"),
];

#[test]
fn renamed_and_moved_copies_are_proven_and_same_size_decoys_refused() {
    for (maker, proof) in [("mktorrent", "pieces"), ("v2", "root"), ("hybrid", "root")] {
        let dir = tempfile::tempdir().unwrap();
        let torrent = torrent_of(dir.path(), maker);
        let lib = library(dir.path());
        let output = peerhash(&[
            "find",
            s(&torrent),
            "--in",
            s(&lib),
            "--backend",
            "cpu",
            "--json",
        ]);
        let report = json(&output);
        assert_eq!(output.status.code(), Some(0), "{maker}: {report}");
        assert_eq!(report["ok"], true);
        for (path, found) in FOUND {
            let entry = file(&report, 0, path);
            assert_eq!(entry["proof"], proof, "{maker} {path}: {entry}");
            assert_eq!(entry["found"], s(&lib.join(found)), "{maker} {path}");
        }
        assert_eq!(file(&report, 0, "a.bin")["candidates"], 2);
        assert_eq!(file(&report, 0, "empty")["proof"], "empty");
        // Every byte matched is read once; each decoy costs at most one piece.
        let hashed = report["bytes_hashed"].as_u64().unwrap();
        let matched = report["bytes_matched"].as_u64().unwrap();
        let content: u64 = FILES.iter().map(|f| f.1 as u64).sum();
        assert_eq!(matched, content, "{maker}");
        assert!(hashed >= matched, "{maker}: {hashed} < {matched}");
        assert!(hashed <= matched + 3 * 32768, "{maker}: hashed {hashed}");
    }
}

#[test]
fn missing_files_are_reported_and_neighbours_still_found() {
    for maker in ["mktorrent", "v2", "hybrid"] {
        let dir = tempfile::tempdir().unwrap();
        let torrent = torrent_of(dir.path(), maker);
        let lib = library(dir.path());
        fs::remove_file(lib.join("tiny renamed")).unwrap();
        fs::remove_file(lib.join("z/odd copy.dat")).unwrap();
        let output = peerhash(&["find", s(&torrent), "--in", s(&lib), "--json"]);
        let report = json(&output);
        assert_eq!(output.status.code(), Some(1), "{maker}: {report}");
        assert_eq!(report["torrents"][0]["complete"], false);
        assert_eq!(file(&report, 0, "tiny")["proof"], "missing");
        assert_eq!(file(&report, 0, "tiny")["found"], Value::Null);
        let odd = file(&report, 0, "sub dir/deeper/odd.dat");
        assert_eq!(odd["proof"], "mismatch", "{maker}: the decoy was hashed");
        assert_eq!(odd["found"], Value::Null);
        for path in ["a.bin", "sub dir/é b.txt"] {
            let entry = file(&report, 0, path);
            let proof = entry["proof"].as_str().unwrap();
            // v1 files sharing a piece with a missing neighbour are proven only in part.
            assert!(
                ["root", "pieces", "partial"].contains(&proof),
                "{maker} {path}: {entry}"
            );
            assert!(entry["found"].is_string());
        }
    }
}

#[test]
fn a_small_v1_file_between_missing_neighbours_is_size_only_until_they_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("c");
    let files = [("1 first", 50_000), ("2 small", 1_000), ("3 last", 50_000)];
    write_files(&content, &files);
    let torrent = dir.path().join("c.torrent");
    tool(
        Command::new("mktorrent")
            .args(["-l", "15", "-o"])
            .arg(&torrent)
            .arg(&content),
    );
    let lib = dir.path().join("lib");
    fs::create_dir_all(&lib).unwrap();
    fs::copy(content.join("2 small"), lib.join("small renamed")).unwrap();
    let save = dir.path().join("save");
    fs::create_dir(&save).unwrap();
    let args = |save: &Path| {
        peerhash(&[
            "find",
            s(&torrent),
            "--in",
            s(&lib),
            "--link-to",
            s(save),
            "--json",
        ])
    };
    let report = json(&args(&save));
    let small = file(&report, 0, "2 small");
    assert_eq!(small["proof"], "size_only", "{report}");
    assert_eq!(small["found"], s(&lib.join("small renamed")));
    assert_eq!(report["ok"], false);
    // An unproven file is never linked.
    assert!(!save.join("c/2 small").exists());

    fs::copy(content.join("1 first"), lib.join("one")).unwrap();
    fs::copy(content.join("3 last"), lib.join("three")).unwrap();
    decoy(&lib, "2 small", 1_000, 7);
    let save = dir.path().join("save2");
    fs::create_dir(&save).unwrap();
    let output = args(&save);
    let report = json(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    for path in ["1 first", "2 small", "3 last"] {
        assert_eq!(file(&report, 0, path)["proof"], "pieces", "{report}");
    }
    assert_eq!(
        file(&report, 0, "2 small")["found"],
        s(&lib.join("small renamed")),
        "the decoy with the right name failed its pieces"
    );
}

#[test]
fn a_file_in_two_torrents_is_found_for_both() {
    let dir = tempfile::tempdir().unwrap();
    let mut torrents = Vec::new();
    for (name, other) in [("one", 60_000), ("two", 90_000)] {
        let content = dir.path().join(name);
        write_files(&content, &[("shared.bin", 100_000)]);
        fs::write(content.join("own.bin"), bytes(other, other as usize)).unwrap();
        let torrent = dir.path().join(format!("{name}.torrent"));
        tool(
            Command::new("mktorrent")
                .args(["-l", "15", "-o"])
                .arg(&torrent)
                .arg(&content),
        );
        torrents.push(torrent);
    }
    let lib = dir.path().join("lib");
    fs::create_dir_all(lib.join("a")).unwrap();
    fs::copy(
        dir.path().join("one/shared.bin"),
        lib.join("a/the shared one"),
    )
    .unwrap();
    fs::copy(dir.path().join("one/own.bin"), lib.join("a/own of one")).unwrap();
    fs::copy(dir.path().join("two/own.bin"), lib.join("own of two")).unwrap();
    let output = peerhash(&[
        "find",
        s(&torrents[0]),
        s(&torrents[1]),
        "--in",
        s(&lib),
        "--json",
    ]);
    let report = json(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    for t in 0..2 {
        let shared = file(&report, t, "shared.bin");
        assert_eq!(shared["found"], s(&lib.join("a/the shared one")));
        assert_eq!(shared["proof"], "pieces");
    }
    assert_eq!(
        file(&report, 1, "own.bin")["found"],
        s(&lib.join("own of two"))
    );
}

#[test]
fn a_tree_laid_out_with_link_to_verifies_and_passes_libtorrent_recheck() {
    for maker in ["mktorrent", "hybrid", "v2"] {
        let dir = tempfile::tempdir().unwrap();
        let torrent = torrent_of(dir.path(), maker);
        let lib = library(dir.path());
        let save = dir.path().join("save");
        fs::create_dir(&save).unwrap();
        let output = peerhash(&[
            "find",
            s(&torrent),
            "--in",
            s(&lib),
            "--link-to",
            s(&save),
            "--json",
        ]);
        let report = json(&output);
        assert_eq!(output.status.code(), Some(0), "{maker}: {report}");
        // Hard links: the found file and the laid-out one are the same inode.
        use std::os::unix::fs::MetadataExt;
        let linked = fs::metadata(save.join("payload/a.bin")).unwrap();
        let found = fs::metadata(lib.join("moved/deep/renamed a.bin")).unwrap();
        assert_eq!((linked.dev(), linked.ino()), (found.dev(), found.ino()));
        assert!(save.join("payload/empty").is_file());
        let verify = peerhash(&["verify", s(&torrent), s(&save), "--json"]);
        assert_eq!(verify.status.code(), Some(0), "{maker}: {}", json(&verify));
        let bad = python(RECHECK_PY, &[&torrent, &save], dir.path());
        assert_eq!(String::from_utf8_lossy(&bad.stdout).trim(), "[]", "{maker}");
    }
}

#[test]
fn link_to_refuses_what_exists_and_touches_nothing_there() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = torrent_of(dir.path(), "mktorrent");
    let lib = library(dir.path());
    let save = dir.path().join("save");
    fs::create_dir_all(save.join("payload")).unwrap();
    fs::write(save.join("payload/a.bin"), b"mine").unwrap();
    // A link planted where a folder goes is never followed.
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, save.join("payload/sub dir")).unwrap();
    let output = peerhash(&[
        "find",
        s(&torrent),
        "--in",
        s(&lib),
        "--link-to",
        s(&save),
        "--json",
    ]);
    let report = json(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert_eq!(report["torrents"][0]["complete"], true);
    let links = report["torrents"][0]["links"].as_array().unwrap();
    let refused = links.iter().filter(|l| l.get("refused").is_some()).count();
    assert_eq!(
        refused, 3,
        "a.bin and the two files under `sub dir`: {report}"
    );
    assert_eq!(fs::read(save.join("payload/a.bin")).unwrap(), b"mine");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(save.join("payload/tiny").is_file());
}

#[test]
fn symlinks_are_not_followed_and_loops_end() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = torrent_of(dir.path(), "v2");
    let lib = dir.path().join("lib");
    fs::create_dir_all(lib.join("inner")).unwrap();
    std::os::unix::fs::symlink(&lib, lib.join("inner/loop")).unwrap();
    // The only copy of a.bin is outside the search folder, behind a link.
    let outside = dir.path().join("outside");
    copy_as(&outside, 0, "a.bin");
    std::os::unix::fs::symlink(outside.join("a.bin"), lib.join("a.bin")).unwrap();
    copy_as(&lib, 4, "inner/tiny");
    let output = peerhash(&["find", s(&torrent), "--in", s(&lib), "--json"]);
    let report = json(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert_eq!(file(&report, 0, "a.bin")["proof"], "missing");
    assert_eq!(file(&report, 0, "tiny")["proof"], "root");
}

#[test]
fn bad_input_exits_2_with_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = torrent_of(dir.path(), "v2");
    let missing = dir.path().join("nowhere");
    for args in [
        vec!["find", s(&torrent), "--in", s(&missing), "--json"],
        vec!["find", s(&missing), "--in", s(dir.path()), "--json"],
        vec![
            "find",
            s(&torrent),
            "--in",
            s(dir.path()),
            "--link-to",
            s(&missing),
            "--json",
        ],
    ] {
        let output = peerhash(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(json(&output)["error"].is_string());
    }
}

#[test]
fn gpu_finds_what_the_cpu_finds() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = torrent_of(dir.path(), "mktorrent");
    let hybrid = torrent_of(dir.path(), "hybrid");
    let lib = library(dir.path());
    fs::remove_file(lib.join("tiny renamed")).unwrap();
    let files = |backend: &str| {
        let output = peerhash(&[
            "find",
            s(&v1),
            s(&hybrid),
            "--in",
            s(&lib),
            "--backend",
            backend,
            "--json",
        ]);
        let report = json(&output);
        assert_eq!(output.status.code(), Some(1), "{backend}: {report}");
        (
            report["torrents"].clone(),
            report["bytes_hashed"].clone(),
            report["backend"].clone(),
        )
    };
    let (cpu, cpu_hashed, _) = files("cpu");
    let (gpu, gpu_hashed, name) = files("gpu");
    assert!(name.as_str().unwrap().starts_with("gpu"), "{name}");
    assert_eq!(gpu, cpu);
    assert_eq!(gpu_hashed, cpu_hashed);
}
