//! peerhash against the torrents the wider ecosystem writes: PyPI `torrentfile` (v1, v2, hybrid,
//! `--align`), `torf`, `py3createtorrent`, npm `create-torrent`, and the sample torrents with data
//! in npm `webtorrent-fixtures`. Verdicts on good and damaged copies are compared with
//! libtorrent's recheck and, for v1 and hybrid torrents, with aria2's `--hash-check-only`; info
//! hashes with libtorrent, aria2 and the making tool's own. Where a tool has a bug of its own
//! the test names it and checks that every checker sees the same, never counting it as ours.
//!
//! `scripts/test` installs every tool (the PyPI ones into `tests/harness/venv`, the npm ones
//! into `tests/harness/node_modules`). A missing tool fails the test under `CI=true` and skips
//! it, with a message, elsewhere.

mod util;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::payload::{bytes, copy_dir, write_files, FILES};

/// python3-libtorrent is only importable from Debian's own interpreter.
const LIBTORRENT_PYTHON: &str = "/usr/bin/python3";

/// libtorrent's recheck of `TORRENT` in save directory `SAVE`, as JSON, with the pad files'
/// paths relative to `SAVE` (aria2 needs them on disk).
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
    if h.status().state not in checking:
        break
    time.sleep(0.025)
fs = ti.files()
print(json.dumps({
    "v1": str(hashes.v1) if hashes.has_v1() else None,
    "v2": str(hashes.v2) if hashes.has_v2() else None,
    "pieces": ti.num_pieces(),
    "bad": [i for i in range(ti.num_pieces()) if not h.have_piece(i)],
    "pads": [[fs.file_path(i), fs.file_size(i)] for i in range(fs.num_files())
             if fs.file_flags(i) & lt.file_storage.flag_pad_file],
}))
"#;

/// torf's torrent of `PATH` with 32 KiB pieces written to `OUT`; prints torf's info hash.
const TORF_PY: &str = r#"
import sys, torf
t = torf.Torrent(path=sys.argv[1], piece_size=32768, creation_date=None)
t.generate()
t.write(sys.argv[2])
print(t.infohash)
"#;

/// WebTorrent's parser (`parse-torrent`, create-torrent's own dependency, pinned by the
/// harness lockfile): `node -e SCRIPT MODULE_URL TORRENT` prints the v1 info hash.
const PARSE_TORRENT_MJS: &str = r"
import fs from 'fs';
const { default: parseTorrent } = await import(process.argv[1]);
console.log((await parseTorrent(fs.readFileSync(process.argv[2]))).infoHash);
";

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness")
}

fn venv_bin(name: &str) -> PathBuf {
    harness().join("venv/bin").join(name)
}

fn fixtures() -> PathBuf {
    harness().join("node_modules/webtorrent-fixtures/fixtures")
}

/// The tools a test needs.
#[derive(Clone, Copy, Debug)]
enum Tool {
    Libtorrent,
    Aria2,
    /// The PyPI makers: torrentfile, torf, py3createtorrent.
    PyPi,
    /// create-torrent, parse-torrent and webtorrent-fixtures.
    Npm,
}

/// Whether every tool is installed. A missing one fails under `CI=true` (scripts/test installs
/// them all); elsewhere the test is skipped with a message saying how to install it.
fn have(tools: &[Tool]) -> bool {
    for &tool in tools {
        let (found, install) = match tool {
            Tool::Libtorrent => (
                ok(Command::new(LIBTORRENT_PYTHON).args(["-c", "import libtorrent"])),
                "apt-get install python3-libtorrent",
            ),
            Tool::Aria2 => (
                ok(Command::new("aria2c").arg("--version")),
                "apt-get install aria2",
            ),
            Tool::PyPi => (
                ["torrentfile", "py3createtorrent"]
                    .iter()
                    .all(|b| venv_bin(b).is_file())
                    && ok(Command::new(venv_bin("python")).args(["-c", "import torf"])),
                "scripts/test (a venv in tests/harness/venv from tests/harness/requirements.txt)",
            ),
            Tool::Npm => (
                harness().join("node_modules/.bin/create-torrent").is_file()
                    && fixtures().join("alice.torrent").is_file(),
                "npm ci --ignore-scripts in tests/harness (scripts/test does)",
            ),
        };
        if !found {
            let message = format!("{tool:?} is missing: {install}");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("skipping: {message}");
            return false;
        }
    }
    true
}

fn ok(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// Runs a tool that must succeed; returns its stdout.
fn tool(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A temp dir with the payload in `good/payload/`.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    write_files(&good.join("payload"), &FILES);
    (dir, good)
}

/// How a copy of the data is damaged; paths are relative to the save directory.
#[derive(Clone, Copy, Debug)]
enum Damage {
    None,
    Flip(&'static str, usize),
    CutLastByte(&'static str),
    Delete(&'static str),
    AppendByte(&'static str),
}

impl Damage {
    fn apply(self, save: &Path) {
        let edit = |path: &str, change: &dyn Fn(&mut Vec<u8>)| {
            let path = save.join(path);
            let mut data = fs::read(&path).unwrap();
            change(&mut data);
            fs::write(path, data).unwrap();
        };
        match self {
            Damage::None => {}
            Damage::Flip(path, at) => edit(path, &|d| d[at] ^= 0x40),
            Damage::CutLastByte(path) => edit(path, &|d| {
                d.pop();
            }),
            Damage::Delete(path) => fs::remove_file(save.join(path)).unwrap(),
            Damage::AppendByte(path) => edit(path, &|d| d.push(7)),
        }
    }
}

/// The damages for the common payload, saved as `payload/...`.
const PAYLOAD_DAMAGES: [Damage; 5] = [
    Damage::None,
    Damage::Flip("payload/a.bin", 100_000),
    Damage::CutLastByte("payload/sub dir/é b.txt"),
    Damage::Delete("payload/tiny"),
    Damage::AppendByte("payload/sub dir/deeper/odd.dat"),
];

fn indices(value: &Value) -> BTreeSet<u64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn libtorrent_check(dir: &Path, torrent: &Path, save: &Path) -> Value {
    let script = dir.join("recheck.py");
    fs::write(&script, RECHECK_PY).unwrap();
    json(&tool(
        Command::new(LIBTORRENT_PYTHON)
            .arg(&script)
            .arg(torrent)
            .arg(save),
    ))
}

/// aria2's verdict on a copy of `save` (it writes into the folder it checks): the pieces it
/// does not have, from the `.aria2` control file it leaves when some are bad. aria2 1.36 does
/// not know BEP 47 and reads pad files from disk, so they are written there as the zeros they
/// stand for.
fn aria2_bad_pieces(dir: &Path, torrent: &Path, save: &Path, pads: &Value) -> BTreeSet<u64> {
    let copy = dir.join("aria2-copy");
    copy_dir(save, &copy);
    for pad in pads.as_array().unwrap() {
        let path = copy.join(pad[0].as_str().unwrap());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            path,
            vec![0; usize::try_from(pad[1].as_u64().unwrap()).unwrap()],
        )
        .unwrap();
    }
    let output = Command::new("aria2c")
        .args([
            "--check-integrity=true",
            "--hash-check-only=true",
            "--console-log-level=error",
            "--summary-interval=0",
            "--enable-dht=false",
            "-d",
        ])
        .arg(&copy)
        .arg(torrent)
        .output()
        .expect("aria2c runs");
    let control: Vec<PathBuf> = fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "aria2"))
        .collect();
    let bad = match control.as_slice() {
        [] => {
            assert!(output.status.success(), "aria2c: {output:?}");
            BTreeSet::new()
        }
        [control] => missing_pieces(&fs::read(control).unwrap()),
        more => panic!("several control files: {more:?}"),
    };
    fs::remove_dir_all(&copy).unwrap();
    bad
}

/// The pieces a `.aria2` control file (version 1, big-endian) does not mark as had: version
/// (2 bytes), extension (4), info hash length (4) and hash, piece length (4), total length (8),
/// upload length (8), bitfield length (4) and bitfield, most significant bit first.
fn missing_pieces(control: &[u8]) -> BTreeSet<u64> {
    assert_eq!(&control[..2], [0, 1], "control file version 1");
    let u32_at = |at: usize| u32::from_be_bytes(control[at..at + 4].try_into().unwrap()) as usize;
    let hash_len = u32_at(6);
    let at = 10 + hash_len;
    let piece_length = u32_at(at) as u64;
    let total = u64::from_be_bytes(control[at + 4..at + 12].try_into().unwrap());
    let pieces = total.div_ceil(piece_length);
    let bitfield_len = u32_at(at + 20);
    let bitfield = &control[at + 24..at + 24 + bitfield_len];
    (0..pieces)
        .filter(|&i| bitfield[(i / 8) as usize] & (0x80 >> (i % 8)) == 0)
        .collect()
}

/// aria2's own reading of the v1 info hash.
fn aria2_info_hash(torrent: &Path) -> String {
    let shown = tool(Command::new("aria2c").arg("-S").arg(torrent));
    shown
        .lines()
        .find_map(|l| l.strip_prefix("Info Hash: "))
        .unwrap_or_else(|| panic!("no info hash in {shown}"))
        .trim()
        .to_owned()
}

fn peerhash_verify(torrent: &Path, save: &Path) -> (Value, Option<i32>) {
    let output = util::run(&[
        "verify",
        torrent.to_str().unwrap(),
        save.to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
    ]);
    (json(&util::stdout(&output)), output.status.code())
}

/// Checks `torrent` against `good` and each damaged copy with peerhash, libtorrent and (v1 and
/// hybrid) aria2; they must name the same bad pieces. `broken_by_maker` are the pieces every
/// v1 checker fails on intact data because the making tool hashed them wrongly; libtorrent
/// skips pieces made only of pad files, so `unhashed_by_libtorrent` of them it cannot see.
fn compare_verdicts(
    dir: &Path,
    torrent: &Path,
    good: &Path,
    damages: &[Damage],
    broken_by_maker: &BTreeSet<u64>,
    unhashed_by_libtorrent: &BTreeSet<u64>,
) -> Value {
    let mut first = Value::Null;
    for (n, damage) in damages.iter().enumerate() {
        let save = dir.join(format!("case{n}"));
        copy_dir(good, &save);
        damage.apply(&save);
        let (report, code) = peerhash_verify(torrent, &save);
        // libtorrent writes into the save folder (it creates missing files): run it on a copy.
        let lt_copy = dir.join("lt-copy");
        copy_dir(&save, &lt_copy);
        let lt = libtorrent_check(dir, torrent, &lt_copy);
        fs::remove_dir_all(&lt_copy).unwrap();
        let context = format!("{torrent:?} {damage:?}: peerhash {report}, libtorrent {lt}");
        assert_eq!(report["info_hash_v1"], lt["v1"], "{context}");
        assert_eq!(report["info_hash_v2"], lt["v2"], "{context}");
        assert_eq!(report["pieces_total"], lt["pieces"], "{context}");
        let bad = indices(&report["bad_pieces"]);
        let lt_bad: BTreeSet<u64> = indices(&lt["bad"])
            .union(unhashed_by_libtorrent)
            .copied()
            .collect();
        assert_eq!(bad, lt_bad, "{context}");
        assert!(broken_by_maker.is_subset(&bad), "{context}");
        if report["info_hash_v1"].is_string() {
            // aria2 1.36 knows no v2: for hybrids it shows an info hash that is neither
            // libtorrent's nor any hash of the file's `info`, but it checks the v1 pieces.
            if report["version"] == "v1" {
                assert_eq!(
                    report["info_hash_v1"].as_str(),
                    Some(aria2_info_hash(torrent).as_str()),
                    "{context}"
                );
            }
            let aria2 = aria2_bad_pieces(dir, torrent, &save, &lt["pads"]);
            assert_eq!(aria2, bad, "aria2 {context}");
        }
        let intact = matches!(damage, Damage::None);
        let clean = intact && broken_by_maker.is_empty() && unhashed_by_libtorrent.is_empty();
        assert_eq!(report["ok"], clean, "{context}");
        assert_eq!(code, Some(if clean { 0 } else { 1 }), "{context}");
        if !intact && !matches!(damage, Damage::AppendByte(_)) {
            assert!(bad.len() > broken_by_maker.len(), "damage found: {context}");
        }
        if n == 0 {
            first = report;
        }
        fs::remove_dir_all(&save).unwrap();
    }
    first
}

fn none() -> BTreeSet<u64> {
    BTreeSet::new()
}

fn torrentfile(dir: &Path, content: &Path, args: &[&str], out: &str) -> PathBuf {
    let torrent = dir.join(out);
    tool(
        Command::new(venv_bin("torrentfile"))
            .args(["create", "--prog", "0", "--piece-length", "15"])
            .args(args)
            .arg("-o")
            .arg(&torrent)
            .arg(content),
    );
    torrent
}

#[test]
fn torrentfile_v1_v2_and_hybrid_verdicts_match_libtorrent_and_aria2() {
    if !have(&[Tool::PyPi, Tool::Libtorrent, Tool::Aria2]) {
        return;
    }
    let (dir, good) = setup();
    for (meta_version, version) in [("1", "v1"), ("2", "v2"), ("3", "hybrid")] {
        let torrent = torrentfile(
            dir.path(),
            &good.join("payload"),
            &["--meta-version", meta_version],
            &format!("tf-{version}.torrent"),
        );
        if version != "v1" {
            // The issue's torrent: torrentfile writes the top-level `piece layers` unsorted.
            let raw = fs::read(&torrent).unwrap();
            let at = |key: &[u8]| raw.windows(key.len()).position(|w| w == key).unwrap();
            assert!(at(b"12:piece layers") > at(b"4:info"), "still unsorted");
        }
        let report = compare_verdicts(
            dir.path(),
            &torrent,
            &good,
            &PAYLOAD_DAMAGES,
            &none(),
            &none(),
        );
        assert_eq!(report["version"], version);
    }
}

#[test]
fn torrentfile_single_file_hybrid_has_a_bad_last_v1_piece_in_every_checker() {
    if !have(&[Tool::PyPi, Tool::Libtorrent, Tool::Aria2]) {
        return;
    }
    let (dir, good) = setup();
    let torrent = torrentfile(
        dir.path(),
        &good.join("payload/a.bin"),
        &["--meta-version", "3"],
        "tf-single.torrent",
    );
    // torrentfile 0.9.2 hashes the last v1 piece of a single-file hybrid zero-padded to a full
    // piece, so it fails on intact data in libtorrent, aria2 and peerhash alike; the v2 half
    // (and so peerhash's v1/v2 comparison) is right.
    let last = 300_001u64.div_ceil(32768) - 1;
    let save = good.join("payload");
    let damages = [Damage::None, Damage::Flip("a.bin", 70_000)];
    let report = compare_verdicts(
        dir.path(),
        &torrent,
        &save,
        &damages,
        &BTreeSet::from([last]),
        &none(),
    );
    assert_eq!(report["version"], "hybrid");
    assert_eq!(report["bad_pieces"], serde_json::json!([last]));
}

#[test]
fn torrentfile_v2_single_file_with_a_stray_length_is_read_as_v2() {
    if !have(&[Tool::PyPi, Tool::Libtorrent]) {
        return;
    }
    let (dir, good) = setup();
    // torrentfile 0.9.2 also writes a v1 `length` into v2 single-file torrents. libtorrent
    // then takes the torrent for a hybrid whose v1 half has no piece hashes and fails every
    // piece; without `pieces` there is no v1 half, so peerhash reads it as v2. The v2 info
    // hash is the same, and the v2 verdict is checked against the data itself.
    let torrent = torrentfile(
        dir.path(),
        &good.join("payload/a.bin"),
        &["--meta-version", "2"],
        "tf-single-v2.torrent",
    );
    let save = good.join("payload");
    let lt = libtorrent_check(dir.path(), &torrent, &save);
    assert_eq!(lt["bad"].as_array().unwrap().len(), 10, "{lt}");
    for (damage, expected) in [
        (Damage::None, vec![]),
        (Damage::Flip("a.bin", 200_000), vec![200_000 / 32768]),
    ] {
        let copy = dir.path().join("copy");
        copy_dir(&save, &copy);
        damage.apply(&copy);
        let (report, code) = peerhash_verify(&torrent, &copy);
        assert_eq!(report["version"], "v2", "{report}");
        assert_eq!(report["info_hash_v1"], Value::Null, "{report}");
        assert_eq!(report["info_hash_v2"], lt["v2"], "{report}");
        assert_eq!(
            report["bad_pieces"],
            serde_json::json!(expected),
            "{report}"
        );
        assert_eq!(code, Some(if expected.is_empty() { 0 } else { 1 }));
        fs::remove_dir_all(&copy).unwrap();
    }
}

#[test]
fn torrentfile_align_pads_are_wrong_and_every_checker_says_so() {
    if !have(&[Tool::PyPi, Tool::Libtorrent, Tool::Aria2]) {
        return;
    }
    let (dir, good) = setup();
    let torrent = torrentfile(
        dir.path(),
        &good.join("payload"),
        &["--meta-version", "1", "--align"],
        "tf-align.torrent",
    );
    // torrentfile 0.9.2 `--align` writes the pad after a file as `size % piece` rather than
    // `piece - size % piece` (5089 after the 300001-byte a.bin instead of 27679), so the files
    // after it do not start where it hashed them: pieces 10 to 14 fail on intact data in
    // peerhash and aria2. Piece 14 holds only pad files, which libtorrent never hashes.
    let info = json(&util::stdout(&util::run(&[
        "info",
        torrent.to_str().unwrap(),
        "--json",
    ])));
    assert_eq!(info["pieces"], 15, "{info}");
    let broken = BTreeSet::from([10, 11, 12, 13, 14]);
    compare_verdicts(
        dir.path(),
        &torrent,
        &good,
        &PAYLOAD_DAMAGES[..2],
        &broken,
        &BTreeSet::from([14]),
    );
}

#[test]
fn torf_and_py3createtorrent_verdicts_match_libtorrent_and_aria2() {
    if !have(&[Tool::PyPi, Tool::Libtorrent, Tool::Aria2]) {
        return;
    }
    let (dir, good) = setup();
    let torf = dir.path().join("torf.torrent");
    // Not `torf.py`: the script would import itself as `torf`.
    let script = dir.path().join("make_torf.py");
    fs::write(&script, TORF_PY).unwrap();
    let torf_hash = tool(
        Command::new(venv_bin("python"))
            .arg(&script)
            .arg(good.join("payload"))
            .arg(&torf),
    );
    let report = compare_verdicts(dir.path(), &torf, &good, &PAYLOAD_DAMAGES, &none(), &none());
    assert_eq!(report["info_hash_v1"].as_str(), Some(torf_hash.trim()));

    let py3 = dir.path().join("py3.torrent");
    tool(
        Command::new(venv_bin("py3createtorrent"))
            .args(["-p", "32", "-d", "-2", "-q", "-f", "-o"])
            .arg(&py3)
            .arg(good.join("payload")),
    );
    compare_verdicts(dir.path(), &py3, &good, &PAYLOAD_DAMAGES, &none(), &none());
}

fn parse_torrent_hash(torrent: &Path) -> String {
    let module = harness().join("node_modules/parse-torrent/index.js");
    tool(
        Command::new("node")
            .args(["--input-type=module", "-e", PARSE_TORRENT_MJS])
            .arg(format!("file://{}", module.display()))
            .arg(torrent),
    )
    .trim()
    .to_owned()
}

#[test]
fn create_torrent_verdicts_match_libtorrent_and_aria2() {
    if !have(&[Tool::Npm, Tool::Libtorrent, Tool::Aria2]) {
        return;
    }
    let (dir, good) = setup();
    let torrent = dir.path().join("ct.torrent");
    tool(
        Command::new(harness().join("node_modules/.bin/create-torrent"))
            .arg(good.join("payload"))
            .args(["--pieceLength", "32768", "-o"])
            .arg(&torrent),
    );
    let report = compare_verdicts(
        dir.path(),
        &torrent,
        &good,
        &PAYLOAD_DAMAGES,
        &none(),
        &none(),
    );
    assert_eq!(
        report["info_hash_v1"].as_str(),
        Some(parse_torrent_hash(&torrent).as_str())
    );
}

#[test]
fn webtorrent_fixtures_with_data_match_libtorrent_and_aria2() {
    if !have(&[Tool::Npm, Tool::Libtorrent, Tool::Aria2]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Each torrent, the data it names (copied into a save folder) and damages to it.
    let leaves = "Leaves of Grass by Walt Whitman.epub";
    let cases: [(&str, &str, [Damage; 3]); 6] = [
        (
            "alice",
            "alice.txt",
            [
                Damage::None,
                Damage::Flip("alice.txt", 50_000),
                Damage::CutLastByte("alice.txt"),
            ],
        ),
        (
            "leaves",
            leaves,
            [
                Damage::None,
                Damage::Flip(leaves, 0),
                Damage::AppendByte(leaves),
            ],
        ),
        (
            "leaves-metadata",
            leaves,
            [
                Damage::None,
                Damage::Flip(leaves, 362_016),
                Damage::Delete(leaves),
            ],
        ),
        (
            "folder",
            "folder",
            [
                Damage::None,
                Damage::Flip("folder/file.txt", 3),
                Damage::Delete("folder/file.txt"),
            ],
        ),
        (
            "numbers",
            "numbers",
            [
                Damage::None,
                Damage::Flip("numbers/2.txt", 0),
                Damage::CutLastByte("numbers/1.txt"),
            ],
        ),
        (
            "lots-of-numbers",
            "lots-of-numbers",
            [
                Damage::None,
                Damage::Flip("lots-of-numbers/big numbers/11.txt", 1),
                Damage::Delete("lots-of-numbers/small numbers/1.txt"),
            ],
        ),
    ];
    for (name, data, damages) in cases {
        let torrent = fixtures().join(format!("{name}.torrent"));
        let good = dir.path().join(format!("{name}-good"));
        fs::create_dir_all(&good).unwrap();
        let from = fixtures().join(data);
        if from.is_dir() {
            copy_dir(&from, &good.join(data));
        } else {
            fs::copy(&from, good.join(data)).unwrap();
        }
        let report = compare_verdicts(dir.path(), &torrent, &good, &damages, &none(), &none());
        assert_eq!(
            report["info_hash_v1"].as_str(),
            Some(parse_torrent_hash(&torrent).as_str()),
            "{name}"
        );
    }
}

#[test]
fn webtorrent_fixtures_without_data_read_like_libtorrent_and_corrupt_is_refused() {
    if !have(&[Tool::Npm, Tool::Libtorrent, Tool::Aria2]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    for name in ["bunny", "sintel"] {
        let torrent = fixtures().join(format!("{name}.torrent"));
        let info = json(&util::stdout(&util::run(&[
            "info",
            torrent.to_str().unwrap(),
            "--json",
        ])));
        let lt = libtorrent_check(dir.path(), &torrent, &empty);
        assert_eq!(info["info_hash_v1"], lt["v1"], "{name}");
        assert_eq!(info["pieces"], lt["pieces"], "{name}");
        assert_eq!(
            info["info_hash_v1"].as_str(),
            Some(aria2_info_hash(&torrent).as_str())
        );
        assert_eq!(
            info["info_hash_v1"].as_str(),
            Some(parse_torrent_hash(&torrent).as_str())
        );
    }
    // corrupt.torrent has no `name`; libtorrent refuses it too.
    let output = util::run(&["info", fixtures().join("corrupt.torrent").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(util::stderr(&output).contains("missing field `name`"));
}

/// A single-file v1 torrent of `data` written as `info` keys in the order given.
fn v1_torrent_with_info_keys(data: &[u8], name: &str, order: &[&str]) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let pieces: Vec<u8> = data.chunks(16384).flat_map(Sha1::digest).collect();
    let mut info = b"d".to_vec();
    for key in order {
        info.extend(format!("{}:{key}", key.len()).bytes());
        match *key {
            "length" => info.extend(format!("i{}e", data.len()).bytes()),
            "name" => info.extend(format!("{}:{name}", name.len()).bytes()),
            "piece length" => info.extend(b"i16384e"),
            "pieces" => {
                info.extend(format!("{}:", pieces.len()).bytes());
                info.extend(&pieces);
            }
            other => panic!("{other}"),
        }
    }
    info.push(b'e');
    [&b"d4:info"[..], &info, b"8:announce16:http://tracker/ae"].concat()
}

#[test]
fn non_canonical_info_is_read_with_a_warning_and_hashed_as_written_like_libtorrent() {
    if !have(&[Tool::Libtorrent]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(7, 40_000);
    fs::write(dir.path().join("file.bin"), &data).unwrap();
    let unsorted = dir.path().join("unsorted.torrent");
    fs::write(
        &unsorted,
        v1_torrent_with_info_keys(
            &data,
            "file.bin",
            &["piece length", "name", "pieces", "length"],
        ),
    )
    .unwrap();
    let output = util::run(&[
        "verify",
        unsorted.to_str().unwrap(),
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", util::stderr(&output));
    let report = json(&util::stdout(&output));
    assert!(
        util::stderr(&output)
            .contains("`info` is not canonical bencode (key \"name\" out of order"),
        "{}",
        util::stderr(&output)
    );
    let lt = libtorrent_check(dir.path(), &unsorted, dir.path());
    assert_eq!(report["info_hash_v1"], lt["v1"]);
    assert_eq!(lt["bad"], serde_json::json!([]));

    // Sorted, the same info gets another hash, and no warning.
    let sorted = dir.path().join("sorted.torrent");
    fs::write(
        &sorted,
        v1_torrent_with_info_keys(
            &data,
            "file.bin",
            &["length", "name", "piece length", "pieces"],
        ),
    )
    .unwrap();
    let output = util::run(&["info", sorted.to_str().unwrap(), "--json"]);
    assert!(!util::stderr(&output).contains("canonical"));
    assert_ne!(
        json(&util::stdout(&output))["info_hash_v1"],
        report["info_hash_v1"]
    );

    // Duplicate keys stay refused (libtorrent would take one of them).
    let twice = dir.path().join("twice.torrent");
    fs::write(
        &twice,
        v1_torrent_with_info_keys(
            &data,
            "file.bin",
            &["length", "length", "name", "piece length", "pieces"],
        ),
    )
    .unwrap();
    let output = util::run(&["info", twice.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        util::stderr(&output).contains("dictionary key \"length\" appears twice at byte"),
        "{}",
        util::stderr(&output)
    );
}
