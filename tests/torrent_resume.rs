//! `verify --resume-out` against libtorrent itself: the resume data peerhash writes for v1, v2
//! and hybrid torrents, on complete and damaged copies, must load with `lt.read_resume_data`,
//! and the torrent must come up with exactly the pieces peerhash verified (which are those
//! libtorrent's own recheck finds) without libtorrent checking the files.

mod util;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use util::payload::{bytes, copy_dir, write_files, FILES};

/// python3-libtorrent is only importable from Debian's own interpreter.
const PYTHON: &str = "/usr/bin/python3";

/// Makes a torrent with libtorrent: `make.py DIR v1|v2|hybrid PIECE OUT`.
const MAKE_PY: &str = r#"
import libtorrent as lt, os, sys
fs = lt.file_storage()
lt.add_files(fs, sys.argv[1])
flags = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}[sys.argv[2]]
ct = lt.create_torrent(fs, int(sys.argv[3]), flags=flags)
ct.add_tracker("http://tracker.invalid/announce", 0)
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(sys.argv[1])))
open(sys.argv[4], "wb").write(lt.bencode(ct.generate()))
"#;

/// `resume.py RESUME TORRENT COPY`: adds the torrent from the resume data alone and reports
/// what the session shows, then rechecks `COPY` (the same bytes) from the .torrent for the truth.
const RESUME_PY: &str = r#"
import json, libtorrent as lt, sys, time
settings = {"hashing_threads": 2, "enable_dht": False, "enable_lsd": False,
            "enable_upnp": False, "enable_natpmp": False, "listen_interfaces": "127.0.0.1:0",
            "alert_mask": lt.alert.category_t.all_categories}
checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data,
            lt.torrent_status.queued_for_checking)

def settle(ses, h, seen, alerts):
    # Every state the torrent passes through, from libtorrent's own transition alerts.
    for _ in range(400):
        for a in ses.pop_alerts():
            if not type(a).__name__.endswith("log_alert"):
                alerts.append(type(a).__name__)
            if isinstance(a, lt.state_changed_alert):
                seen.append(str(a.state))
        if h.status().state not in checking and "torrent_checked_alert" in alerts:
            return
        time.sleep(0.01)

ses = lt.session(settings)
atp = lt.read_resume_data(open(sys.argv[1], "rb").read())
h = ses.add_torrent(atp)
states, alerts = [], []
settle(ses, h, states, alerts)
n = h.torrent_file().num_pieces()
have = [i for i in range(n) if h.have_piece(i)]
num_pieces = h.status().num_pieces
saved_path = h.status().save_path
flags = h.status().flags
h.save_resume_data()
layers = None
for _ in range(400):
    for a in ses.pop_alerts():
        if isinstance(a, lt.save_resume_data_alert):
            saved = lt.bdecode(lt.write_resume_data_buf(a.params))
            layers = [len(t.get(b"hashes", b"")) // 32 for t in saved.get(b"trees", [])]
    if layers is not None:
        break
    time.sleep(0.01)
ses.remove_torrent(h)

ses2 = lt.session(settings)
p = lt.add_torrent_params()
p.ti = lt.torrent_info(sys.argv[2])
p.save_path = sys.argv[3]
p.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed)
h2 = ses2.add_torrent(p)
settle(ses2, h2, [], [])
print(json.dumps({
    "states": states, "alerts": alerts, "have": have, "num_pieces": num_pieces,
    "pieces": n, "save_path": saved_path, "layers": layers,
    "paused": bool(flags & lt.torrent_flags.paused),
    "auto_managed": bool(flags & lt.torrent_flags.auto_managed),
    "truth": [i for i in range(n) if h2.have_piece(i)],
}))
"#;

fn python(script: &str, args: &[&Path], cwd: &Path) -> Output {
    let file = cwd.join("script.py");
    fs::write(&file, script).unwrap();
    let output = Command::new(PYTHON)
        .arg(&file)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("Debian's python3 runs");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            util::stdout(output),
            util::stderr(output)
        )
    })
}

fn make_payload(save: &Path) {
    write_files(&save.join("payload"), &FILES);
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    None,
    /// A flipped byte in `a.bin`.
    Flip,
    /// `sub dir/é b.txt` cut short by a byte.
    Truncate,
    /// `tiny` deleted.
    Missing,
}

fn damage(save: &Path, damage: Damage) {
    let root = save.join("payload");
    match damage {
        Damage::None => {}
        Damage::Flip => {
            let path = root.join("a.bin");
            let mut data = fs::read(&path).unwrap();
            data[100_000] ^= 0x40;
            fs::write(path, data).unwrap();
        }
        Damage::Truncate => {
            let path = root.join("sub dir/é b.txt");
            let data = fs::read(&path).unwrap();
            fs::write(path, &data[..data.len() - 1]).unwrap();
        }
        Damage::Missing => fs::remove_file(root.join("tiny")).unwrap(),
    }
}

fn libtorrent_torrent(dir: &Path, good: &Path, version: &str, piece: u32) -> PathBuf {
    let out = dir.join(format!("{version}-{piece}.torrent"));
    let content = good.join("payload");
    python(
        MAKE_PY,
        &[
            &content,
            Path::new(version),
            Path::new(&piece.to_string()),
            &out,
        ],
        dir,
    );
    out
}

fn indices(value: &Value) -> BTreeSet<u64> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// Verifies a damaged copy with `--resume-out`, loads the resume data in libtorrent, and checks
/// that libtorrent shows exactly peerhash's good pieces, which are its own recheck's, unchecked.
fn resume_matches_libtorrent(version: &str, piece: u32) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    make_payload(&good);
    let torrent = libtorrent_torrent(dir.path(), &good, version, piece);
    for (n, case) in [
        Damage::None,
        Damage::Flip,
        Damage::Truncate,
        Damage::Missing,
    ]
    .into_iter()
    .enumerate()
    {
        let save = dir.path().join(format!("case{n}"));
        let truth = dir.path().join(format!("truth{n}"));
        copy_dir(&good, &save);
        damage(&save, case);
        copy_dir(&save, &truth);
        let resume = dir.path().join(format!("case{n}.fastresume"));
        let output = util::run(&[
            "verify",
            torrent.to_str().unwrap(),
            save.to_str().unwrap(),
            "--backend",
            "cpu",
            "--json",
            "--resume-out",
            resume.to_str().unwrap(),
        ]);
        let report = json(&output);
        let expected_code = if matches!(case, Damage::None) { 0 } else { 1 };
        assert_eq!(output.status.code(), Some(expected_code), "{report}");
        let lt = json(&python(RESUME_PY, &[&resume, &torrent, &truth], dir.path()));
        let context = format!("{version} piece {piece} {case:?}: {lt}\n{report}");
        let total = report["pieces_total"].as_u64().unwrap();
        let bad = indices(&report["bad_pieces"]);
        let ours: BTreeSet<u64> = (0..total).filter(|p| !bad.contains(p)).collect();
        assert_eq!(lt["pieces"].as_u64(), Some(total), "{context}");
        assert_eq!(indices(&lt["have"]), ours, "{context}");
        assert_eq!(indices(&lt["truth"]), ours, "{context}");
        assert_eq!(
            lt["num_pieces"].as_u64(),
            Some(ours.len() as u64),
            "{context}"
        );
        let alerts: Vec<&str> = lt["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(!alerts.contains(&"fastresume_rejected_alert"), "{context}");
        let states = lt["states"].as_array().unwrap();
        assert!(!states.is_empty(), "no state changes seen: {context}");
        assert!(
            !states.iter().any(|s| s == "checking_files"),
            "a full check ran: {context}"
        );
        assert_eq!(
            Path::new(lt["save_path"].as_str().unwrap()),
            save.canonicalize().unwrap(),
            "{context}"
        );
        assert_eq!(lt["paused"], false, "{context}");
        assert_eq!(lt["auto_managed"], true, "{context}");
        if version != "v1" {
            // The piece layers travel in `trees`: libtorrent holds them (a.bin is many pieces).
            let layers = lt["layers"].as_array().unwrap();
            assert!(
                layers.first().and_then(Value::as_u64).unwrap_or(0) > 0,
                "{context}"
            );
        }
        assert!(bad.is_empty() == matches!(case, Damage::None), "{context}");
    }
}

#[test]
fn v1_resume_data_loads_at_the_verified_pieces_in_libtorrent() {
    resume_matches_libtorrent("v1", 16384);
}

#[test]
fn v2_resume_data_loads_at_the_verified_pieces_in_libtorrent() {
    // One block per piece, and four: the piece layer sits at different heights of the tree.
    resume_matches_libtorrent("v2", 16384);
    resume_matches_libtorrent("v2", 65536);
}

#[test]
fn hybrid_resume_data_loads_at_the_verified_pieces_in_libtorrent() {
    resume_matches_libtorrent("hybrid", 32768);
}

#[test]
fn a_renamed_single_file_is_mapped_and_loads_complete() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    fs::create_dir_all(&good).unwrap();
    fs::write(good.join("payload"), bytes(9, 200_000)).unwrap();
    let torrent = dir.path().join("single.torrent");
    python(
        MAKE_PY,
        &[
            &good.join("payload"),
            Path::new("hybrid"),
            Path::new("16384"),
            &torrent,
        ],
        dir.path(),
    );
    let renamed = dir.path().join("elsewhere");
    fs::create_dir_all(&renamed).unwrap();
    fs::copy(good.join("payload"), renamed.join("renamed.bin")).unwrap();
    let resume = dir.path().join("single.fastresume");
    let output = util::run(&[
        "verify",
        torrent.to_str().unwrap(),
        renamed.join("renamed.bin").to_str().unwrap(),
        "--backend",
        "cpu",
        "--resume-out",
        resume.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", util::stderr(&output));
    let lt = json(&python(RESUME_PY, &[&resume, &torrent, &good], dir.path()));
    let total = lt["pieces"].as_u64().unwrap();
    assert_eq!(lt["num_pieces"].as_u64(), Some(total), "{lt}");
    assert_eq!(indices(&lt["truth"]).len() as u64, total, "{lt}");
    assert!(
        !lt["states"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "checking_files"),
        "{lt}"
    );
}

#[test]
fn an_existing_resume_file_is_never_replaced_and_nothing_is_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    make_payload(&good);
    let torrent = libtorrent_torrent(dir.path(), &good, "v1", 16384);
    let resume = dir.path().join("taken.fastresume");
    fs::write(&resume, b"someone else's").unwrap();
    let output = util::run(&[
        "verify",
        torrent.to_str().unwrap(),
        good.to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
        "--resume-out",
        resume.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", util::stderr(&output));
    // With --json the refusal is the one object on stdout, and no report came before it.
    let answer: Value = serde_json::from_str(&util::stdout(&output)).unwrap();
    assert!(answer["error"].is_string(), "{answer}");
    assert!(answer.get("files").is_none(), "refused before any report");
    assert!(util::stderr(&output).contains("taken.fastresume"));
    assert_eq!(fs::read(&resume).unwrap(), b"someone else's");
    // A folder that does not exist is refused before hashing too, and nothing is created.
    let nowhere = dir.path().join("no such dir/x.fastresume");
    let output = util::run(&[
        "verify",
        torrent.to_str().unwrap(),
        good.to_str().unwrap(),
        "--resume-out",
        nowhere.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(util::stdout(&output).is_empty());
    assert!(!dir.path().join("no such dir").exists());
}

/// `seeds.py RESUME TORRENT MAGNET_FILE`: the trackers (`[url, tier]`) and web seeds that
/// libtorrent reads from the torrent itself, from our resume data (and a paused session made
/// from it, which never announces) and from our magnet link.
const SEEDS_PY: &str = r#"
import json, libtorrent as lt, sys
ti = lt.torrent_info(sys.argv[2])
atp = lt.read_resume_data(open(sys.argv[1], "rb").read())
atp.flags |= lt.torrent_flags.paused
atp.flags &= ~lt.torrent_flags.auto_managed
ses = lt.session({"enable_dht": False, "enable_lsd": False, "enable_upnp": False,
                  "enable_natpmp": False, "listen_interfaces": "127.0.0.1:0"})
h = ses.add_torrent(atp)
magnet = lt.parse_magnet_uri(open(sys.argv[3]).read().strip())
print(json.dumps({
    "torrent": {"trackers": sorted([t.url, t.tier] for t in ti.trackers()),
                "seeds": sorted(s["url"] for s in ti.web_seeds())},
    "resume": {"trackers": sorted([u, t] for u, t in zip(atp.trackers, atp.tracker_tiers)),
               "seeds": sorted(atp.url_seeds)},
    "session": {"trackers": sorted([t["url"], t["tier"]] for t in h.trackers()),
                "seeds": sorted(h.url_seeds())},
    "magnet": {"trackers": sorted(magnet.trackers), "seeds": sorted(magnet.url_seeds)},
}))
"#;

#[test]
fn tracker_tiers_and_web_seeds_reach_libtorrent_through_resume_data_and_magnet_links() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("save");
    make_payload(&save);
    let torrent = dir.path().join("tiers.torrent");
    let made = Command::new("mktorrent")
        .args([
            "-l",
            "15",
            "-a",
            "http://a.invalid/announce,udp://b.invalid:6969",
            "-a",
            "http://c.invalid/announce",
            "-w",
            "http://seed1.invalid/files/",
            "-w",
            "http://seed2.invalid/files/",
            "-o",
        ])
        .arg(&torrent)
        .arg("payload")
        .current_dir(&save)
        .output()
        .expect("mktorrent runs");
    assert!(made.status.success(), "{}", util::stderr(&made));
    let resume = dir.path().join("tiers.fastresume");
    let verified = util::run(&[
        "verify",
        torrent.to_str().unwrap(),
        save.join("payload").to_str().unwrap(),
        "--backend",
        "cpu",
        "--resume-out",
        resume.to_str().unwrap(),
    ]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        util::stderr(&verified)
    );
    let info = json(&util::run(&["info", torrent.to_str().unwrap(), "--json"]));
    let magnet = dir.path().join("magnet.txt");
    fs::write(&magnet, info["magnet"].as_str().expect("a magnet link")).unwrap();

    let lt = json(&python(SEEDS_PY, &[&resume, &torrent, &magnet], dir.path()));
    let expected_trackers = serde_json::json!([
        ["http://a.invalid/announce", 0],
        ["http://c.invalid/announce", 1],
        ["udp://b.invalid:6969", 0],
    ]);
    let expected_seeds =
        serde_json::json!(["http://seed1.invalid/files/", "http://seed2.invalid/files/"]);
    assert_eq!(lt["torrent"]["trackers"], expected_trackers, "{lt}");
    assert_eq!(lt["torrent"]["seeds"], expected_seeds, "{lt}");
    for from in ["resume", "session"] {
        assert_eq!(lt[from]["trackers"], expected_trackers, "{from}: {lt}");
        assert_eq!(lt[from]["seeds"], expected_seeds, "{from}: {lt}");
    }
    assert_eq!(
        lt["magnet"]["trackers"],
        serde_json::json!([
            "http://a.invalid/announce",
            "http://c.invalid/announce",
            "udp://b.invalid:6969"
        ]),
        "{lt}"
    );
    assert_eq!(lt["magnet"]["seeds"], expected_seeds, "{lt}");
    assert_eq!(
        info["tracker_tiers"],
        serde_json::json!([
            ["http://a.invalid/announce", "udp://b.invalid:6969"],
            ["http://c.invalid/announce"]
        ])
    );
}
