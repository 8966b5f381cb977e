//! Odd and hostile input to `create`, `info`, `verify` and `hash`, run through the real binary:
//! ambiguous layouts, unreadable files, output paths, links, mktorrent's file order, error
//! texts and `sha256sum -c` on `hash` output.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use util::bencode::{encode, s, B};
use util::{peerhash, stderr, stdout};

fn run_in(args: &[&str], cwd: &Path) -> Output {
    peerhash(args)
        .current_dir(cwd)
        .output()
        .expect("the peerhash binary runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(output), stderr(output)))
}

fn tool(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run ({e}): scripts/test installs it"));
    assert!(
        output.status.success(),
        "{cmd:?}: {}{}",
        stdout(&output),
        stderr(&output)
    );
    output
}

fn file(path: &[&str], length: i64) -> B {
    B::D(vec![
        ("length", B::I(length)),
        ("path", B::L(path.iter().map(|p| s(p)).collect())),
    ])
}

fn torrent(info: Vec<(&'static str, B)>) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&B::D(vec![("info", B::D(info))]), &mut out);
    out
}

fn v1_info(files: Vec<B>) -> Vec<(&'static str, B)> {
    vec![
        ("name", s("payload")),
        ("piece length", B::I(16384)),
        ("pieces", B::S(vec![0; 20])),
        ("files", B::L(files)),
    ]
}

#[test]
fn ambiguous_layouts_are_refused_with_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("save");
    fs::create_dir_all(save.join("payload")).unwrap();
    fs::write(save.join("payload/a.bin"), b"abc").unwrap();

    let mut both = v1_info(vec![file(&["a.bin"], 3)]);
    both.push(("length", B::I(3)));
    let leaf = |length: i64| {
        B::D(vec![(
            "",
            B::D(vec![
                ("length", B::I(length)),
                ("pieces root", B::S(vec![1; 32])),
            ]),
        )])
    };
    let v2 = |tree: B| {
        torrent(vec![
            ("name", s("payload")),
            ("piece length", B::I(16384)),
            ("meta version", B::I(2)),
            ("file tree", tree),
        ])
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a path listed twice",
            torrent(v1_info(vec![
                file(&["d", "a.bin"], 3),
                file(&["b"], 3),
                file(&["d", "a.bin"], 3),
            ])),
            "\"d/a.bin\" is listed twice",
        ),
        (
            "a file that is also a folder",
            torrent(v1_info(vec![file(&["a.bin"], 3), file(&["a.bin", "x"], 3)])),
            "\"a.bin\" is both a file and a folder",
        ),
        (
            "both length and files",
            torrent(both),
            "both `length` (one file) and `files` (a folder)",
        ),
        (
            "an empty files list",
            torrent(v1_info(vec![])),
            "`files` is an empty list",
        ),
        (
            "an empty v2 file tree",
            v2(B::D(vec![])),
            "`file tree` is empty",
        ),
        (
            "a v2 file tree of empty folders",
            v2(B::D(vec![("d", B::D(vec![]))])),
            "`file tree` is empty",
        ),
    ];
    // The same v2 file, well formed, is accepted: the refusals above are about the layout.
    let fine = v2(B::D(vec![("a.bin", leaf(3))]));
    fs::write(dir.path().join("fine.torrent"), fine).unwrap();
    let output = run_in(&["info", "fine.torrent", "--json"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    for (what, bytes, message) in cases {
        let path = dir.path().join("ambiguous.torrent");
        fs::write(&path, bytes).unwrap();
        let path = path.to_str().unwrap();
        for args in [
            vec!["info", path],
            vec!["verify", path, save.to_str().unwrap()],
        ] {
            let output = run_in(&args, dir.path());
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{what}, {args:?}: {text}");
            assert!(text.contains(message), "{what}: {text:?} lacks {message:?}");
            assert!(stdout(&output).is_empty(), "{what}: {}", stdout(&output));
        }
    }
}

/// Runs `peerhash` as the unprivileged user `nobody` (tests run as root in CI, and root reads
/// files whatever their mode), or as ourselves when we are not root.
fn as_unprivileged(args: &[&str], cwd: &Path) -> Output {
    let root = tool(Command::new("id").arg("-u")).stdout == b"0\n";
    let mut cmd = if root {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            env!("CARGO_BIN_EXE_peerhash"),
        ]);
        cmd
    } else {
        Command::new(env!("CARGO_BIN_EXE_peerhash"))
    };
    cmd.args(args)
        .current_dir(cwd)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .env("XDG_CONFIG_HOME", "/nonexistent/peerhash-tests")
        .output()
        .expect("setpriv (util-linux) runs")
}

#[test]
fn create_names_the_unreadable_file_and_the_os_reason() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let content = dir.path().join("content");
    fs::create_dir(&content).unwrap();
    // 40 KiB pieces of 32 KiB span both files: the failing piece starts in `a`, which is fine.
    fs::write(content.join("a"), vec![1u8; 20_000]).unwrap();
    fs::write(content.join("b-secret"), vec![2u8; 30_000]).unwrap();
    fs::write(content.join("c"), vec![3u8; 5_000]).unwrap();
    fs::set_permissions(content.join("b-secret"), fs::Permissions::from_mode(0o000)).unwrap();
    // The binary itself must be reachable by `nobody`: cargo's target folder is.
    let output = as_unprivileged(
        &[
            "create",
            content.to_str().unwrap(),
            "--piece-size",
            "32K",
            "--backend",
            "cpu",
            "-o",
            "out.torrent",
        ],
        dir.path(),
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("b-secret"), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    assert!(!text.contains("changed"), "{text}");
    assert!(!dir.path().join("out.torrent").exists());
}

/// The bytes of `torrent` from `start` (a bencoded key) up to `end` (or the end of the file).
fn span<'a>(torrent: &'a [u8], start: &[u8], end: Option<&[u8]>) -> &'a [u8] {
    let find = |needle: &[u8]| {
        torrent
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap_or_else(|| panic!("no {:?}", String::from_utf8_lossy(needle)))
    };
    let from = find(start);
    let to = end.map_or(torrent.len(), find);
    &torrent[from..to]
}

#[test]
fn tracker_tiers_and_web_seeds_are_written_byte_for_byte_as_mktorrent_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f.bin"), vec![7u8; 50_000]).unwrap();
    for (announce, seeds) in [
        (
            &[
                "http://a.invalid/ann,udp://b.invalid:80",
                "http://c.invalid/ann",
            ][..],
            &[
                "http://seed1.invalid/",
                "http://seed2.invalid/,http://seed3.invalid/",
            ][..],
        ),
        (
            &["http://a.invalid/ann"][..],
            &["http://seed1.invalid/"][..],
        ),
    ] {
        let mut theirs = Command::new("mktorrent");
        theirs.args(["-l", "15", "-o", "theirs.torrent"]);
        for tier in announce {
            theirs.args(["-a", tier]);
        }
        for seed in seeds {
            theirs.args(["-w", seed]);
        }
        let _ = fs::remove_file(dir.path().join("theirs.torrent"));
        tool(theirs.arg("f.bin").current_dir(dir.path()));
        let mut args = vec!["create", "f.bin", "--piece-size", "32K", "--no-date"];
        for tier in announce {
            args.extend(["--announce", tier]);
        }
        for seed in seeds {
            args.extend(["--web-seed", seed]);
        }
        args.extend(["-o", "ours.torrent"]);
        let _ = fs::remove_file(dir.path().join("ours.torrent"));
        let made = run_in(&args, dir.path());
        assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
        let ours = fs::read(dir.path().join("ours.torrent")).unwrap();
        let theirs = fs::read(dir.path().join("theirs.torrent")).unwrap();
        let trackers = |t| span(t, b"8:announce", Some(b"10:created by"));
        assert_eq!(
            String::from_utf8_lossy(trackers(&ours)),
            String::from_utf8_lossy(trackers(&theirs))
        );
        let web = |t| span(t, b"8:url-list", None);
        assert_eq!(
            String::from_utf8_lossy(web(&ours)),
            String::from_utf8_lossy(web(&theirs))
        );
        // And `info` reads the tiers and seeds back from both.
        let info = |name: &str| json(&run_in(&["info", name, "--json"], dir.path()));
        let (ours, theirs) = (info("ours.torrent"), info("theirs.torrent"));
        assert_eq!(ours["tracker_tiers"], theirs["tracker_tiers"]);
        assert_eq!(ours["web_seeds"], theirs["web_seeds"]);
        assert_eq!(ours["info_hash_v1"], theirs["info_hash_v1"]);
        let tiers: Vec<Vec<String>> = announce
            .iter()
            .map(|t| t.split(',').map(str::to_owned).collect())
            .collect();
        assert_eq!(ours["tracker_tiers"], serde_json::json!(tiers));
    }
}

#[test]
fn created_v1_torrents_order_files_as_mktorrent_and_v2_as_the_file_tree() {
    let dir = tempfile::tempdir().unwrap();
    let show = dir.path().join("show");
    // `Season 1/…` and `Season 1 Extras/…`: component order and whole-path order differ.
    for (path, length) in [
        ("Season 1/e01.mkv", 40_000),
        ("Season 1/e02.mkv", 1),
        ("Season 1 Extras/x.mkv", 33_000),
        ("Season 1-x/y", 7),
        ("Season", 3),
    ] {
        let path = show.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, vec![b'x'; length]).unwrap();
    }
    tool(
        Command::new("mktorrent")
            .args(["-l", "15", "-o", "theirs.torrent", "show"])
            .current_dir(dir.path()),
    );
    let ours = run_in(
        &[
            "create",
            "show",
            "--piece-size",
            "32K",
            "--no-date",
            "-o",
            "ours.torrent",
        ],
        dir.path(),
    );
    assert_eq!(ours.status.code(), Some(0), "{}", stderr(&ours));
    let info = |name: &str| json(&run_in(&["info", name, "--json"], dir.path()));
    let (ours, theirs) = (info("ours.torrent"), info("theirs.torrent"));
    assert_eq!(
        ours["files"], theirs["files"],
        "the same files in the same order"
    );
    assert_eq!(ours["info_hash_v1"], theirs["info_hash_v1"]);
    let order = |report: &Value| -> Vec<String> {
        report["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        order(&ours),
        [
            "Season",
            "Season 1 Extras/x.mkv",
            "Season 1-x/y",
            "Season 1/e01.mkv",
            "Season 1/e02.mkv"
        ]
    );

    // v2 and hybrid torrents keep the file tree's order, in both their lists.
    for format in ["--v2", "--hybrid"] {
        let name = format!("ours{format}.torrent");
        let made = run_in(
            &["create", "show", format, "--piece-size", "32K", "-o", &name],
            dir.path(),
        );
        assert_eq!(made.status.code(), Some(0), "{format}: {}", stderr(&made));
        let files = order(&info(&name));
        assert_eq!(
            files,
            [
                "Season",
                "Season 1/e01.mkv",
                "Season 1/e02.mkv",
                "Season 1 Extras/x.mkv",
                "Season 1-x/y"
            ],
            "{format}"
        );
        let check = run_in(&["verify", &name, "."], dir.path());
        assert_eq!(check.status.code(), Some(0), "{format}: {}", stdout(&check));
    }
}

#[test]
fn create_names_a_linked_torrent_after_the_link_and_writes_to_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("real-folder")).unwrap();
    fs::write(dir.path().join("real-folder/f"), b"hello").unwrap();
    fs::write(dir.path().join("real-file.bin"), b"data").unwrap();
    std::os::unix::fs::symlink("real-folder", dir.path().join("release")).unwrap();
    std::os::unix::fs::symlink("real-file.bin", dir.path().join("movie.bin")).unwrap();

    for (link, name) in [("release", "release"), ("movie.bin", "movie.bin")] {
        let output = run_in(&["create", link, "--json"], dir.path());
        assert_eq!(output.status.code(), Some(0), "{link}: {}", stderr(&output));
        let report = json(&output);
        assert_eq!(report["name"], name, "{link}");
        assert_eq!(report["output"], format!("{name}.torrent"), "{link}");
    }

    // `-o -`: the torrent on standard output, the summary on standard error, no file `-`.
    let output = run_in(
        &[
            "create",
            "release",
            "--no-date",
            "-o",
            "-",
            "--backend",
            "cpu",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!dir.path().join("-").exists());
    assert!(
        stderr(&output).contains("wrote standard output"),
        "{}",
        stderr(&output)
    );
    fs::write(dir.path().join("piped.torrent"), &output.stdout).unwrap();
    let piped = json(&run_in(&["info", "piped.torrent", "--json"], dir.path()));
    let filed = json(&run_in(&["info", "release.torrent", "--json"], dir.path()));
    assert_eq!(piped["name"], "release");
    assert_eq!(piped["files"], filed["files"]);
    let both = run_in(&["create", "release", "-o", "-", "--json"], dir.path());
    assert_eq!(both.status.code(), Some(2));
    assert!(stderr(&both).contains("drop --json"), "{}", stderr(&both));
}

#[test]
fn create_checks_the_output_path_before_hashing() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("content")).unwrap();
    fs::write(dir.path().join("content/f"), b"hello").unwrap();
    fs::write(dir.path().join("taken.torrent"), b"precious").unwrap();
    // An adapter that does not exist fails when the backend opens, which is after the output
    // check and before any hashing: the output's error must be the one reported.
    let cases = [
        (
            "taken.torrent",
            "taken.torrent already exists (an existing file is never replaced)",
        ),
        (
            "no/such/folder/t.torrent",
            "the folder no/such/folder does not exist",
        ),
    ];
    for (output_path, message) in cases {
        let output = run_in(
            &[
                "create",
                "content",
                "-o",
                output_path,
                "--backend",
                "gpu:no-such-adapter",
            ],
            dir.path(),
        );
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{output_path}: {text}");
        assert!(
            text.contains(message),
            "{output_path}: {text:?} lacks {message:?}"
        );
        assert!(!text.contains("adapter"), "{output_path}: {text}");
    }
    assert_eq!(
        fs::read(dir.path().join("taken.torrent")).unwrap(),
        b"precious"
    );

    // A read-only folder, for a user the mode applies to.
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    let output = as_unprivileged(
        &[
            "create",
            "content",
            "-o",
            "locked/t.torrent",
            "--backend",
            "gpu:no-such-adapter",
        ],
        dir.path(),
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("cannot write locked/t.torrent"), "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    assert!(!text.contains("never replaced"), "{text}");
}

#[test]
fn create_refuses_content_without_data() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("empty.bin"), b"").unwrap();
    fs::create_dir_all(dir.path().join("hollow/sub")).unwrap();
    fs::write(dir.path().join("hollow/a"), b"").unwrap();
    fs::write(dir.path().join("hollow/sub/b"), b"").unwrap();
    for (path, message) in [
        (
            "empty.bin",
            "empty.bin: nothing to share: 1 file(s), all empty",
        ),
        ("hollow", "hollow: nothing to share: 2 file(s), all empty"),
    ] {
        let output = run_in(&["create", path], dir.path());
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{path}: {text}");
        assert!(text.contains(message), "{path}: {text}");
        assert!(!dir.path().join(format!("{path}.torrent")).exists());
    }
}

#[test]
fn errors_say_the_os_reason_once_and_warnings_have_no_colour_codes_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_in(&["create", "missing-folder"], dir.path());
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert_eq!(
        text.trim_end(),
        "peerhash: error: missing-folder: No such file or directory (os error 2)"
    );
    let output = run_in(&["info", "missing.torrent"], dir.path());
    assert_eq!(
        stderr(&output).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&output)
    );

    // A symbolic link inside the content is skipped with a WARN line; stderr is a pipe here.
    fs::create_dir(dir.path().join("content")).unwrap();
    fs::write(dir.path().join("content/f"), b"hello").unwrap();
    std::os::unix::fs::symlink("f", dir.path().join("content/link")).unwrap();
    let output = run_in(&["create", "content", "--backend", "cpu"], dir.path());
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("skipping symbolic link"), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}

#[test]
fn large_piece_sizes_raise_the_default_memory_and_a_small_memory_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("f.bin"), vec![7u8; 100_000]).unwrap();
    let output = run_in(
        &[
            "create",
            "f.bin",
            "--piece-size",
            "256M",
            "--backend",
            "cpu",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(json(&output)["piece_length"], 256u64 << 20);

    let output = run_in(
        &[
            "create",
            "f.bin",
            "--piece-size",
            "256M",
            "--memory",
            "256M",
            "-o",
            "x.torrent",
        ],
        dir.path(),
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("--memory 256M holds fewer than 3 pieces of 256M: give --memory 768M"),
        "{text}"
    );
    let output = run_in(
        &["create", "f.bin", "--piece-size", "512M", "-o", "y.torrent"],
        dir.path(),
    );
    assert!(
        stderr(&output).contains("--piece-size 512M is larger than the 256M a piece can be"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_shows_sizes_as_people_write_them_and_every_create_option_is_explained() {
    for command in ["create", "verify", "bench", "hash", "mine", "scan"] {
        let output = run_in(&[command, "--help"], Path::new("."));
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(0), "{command}");
        for raw in ["268435456", "1073741824", "16777216", "16384", "65536"] {
            assert!(!text.contains(raw), "{command} --help shows {raw}:\n{text}");
        }
    }
    let help = stdout(&run_in(&["create", "--help"], Path::new(".")));
    assert!(help.contains("256M on the CPU, 1G on a GPU"), "{help}");
    assert!(
        help.contains("Free text for the torrent's `comment` field"),
        "{help}"
    );
}

#[test]
fn hash_output_reads_back_with_sha256sum_c() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "plain.txt",
        "back\\slash",
        "new\nline",
        "carriage\rreturn",
        "both\\\n",
    ];
    for (i, name) in names.iter().enumerate() {
        fs::write(dir.path().join(name), vec![b'a' + i as u8; 100 + i]).unwrap();
    }
    let mut args = vec!["hash", "--backend", "cpu"];
    args.extend(names);
    let ours = run_in(&args, dir.path());
    assert_eq!(ours.status.code(), Some(0), "{}", stderr(&ours));
    let theirs = tool(
        Command::new("sha256sum")
            .args(names)
            .current_dir(dir.path()),
    );
    assert_eq!(
        stdout(&ours),
        stdout(&theirs),
        "the same bytes as GNU sha256sum"
    );
    fs::write(dir.path().join("SUMS"), &ours.stdout).unwrap();
    let check = tool(
        Command::new("sha256sum")
            .args(["-c", "SUMS"])
            .current_dir(dir.path()),
    );
    assert_eq!(
        stdout(&check).matches(": OK").count(),
        names.len(),
        "{}",
        stdout(&check)
    );
}

/// Runs `peerhash` with at most `limit` open file descriptors.
fn with_fd_limit(limit: u32, args: &[&str], cwd: &Path) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_peerhash"))
        .args(args)
        .current_dir(cwd)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .env("XDG_CONFIG_HOME", "/nonexistent/peerhash-tests")
        .output()
        .expect("sh runs")
}

#[test]
fn more_files_than_the_descriptor_limit_create_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("many");
    for i in 0..400 {
        let folder = content.join(format!("d{}", i % 4));
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join(format!("f{i:03}")), vec![i as u8; 1 + i % 5]).unwrap();
    }
    for format in ["--v1", "--v2", "--hybrid"] {
        let name = format!("many{format}.torrent");
        let made = with_fd_limit(
            64,
            &["create", "many", format, "--backend", "cpu", "-o", &name],
            dir.path(),
        );
        assert_eq!(made.status.code(), Some(0), "{format}: {}", stderr(&made));
        let checked = with_fd_limit(
            64,
            &["verify", &name, ".", "--backend", "cpu", "--json"],
            dir.path(),
        );
        assert_eq!(
            checked.status.code(),
            Some(0),
            "{format}: {}",
            stdout(&checked)
        );
        assert_eq!(json(&checked)["files"].as_array().map(Vec::len), Some(400));
    }
}
