//! `oiseau run` end to end on the local backend, through the real binary.

mod common;

use std::time::Duration;

use common::{Deployment, INDEX, archive_id, archive_members};

#[test]
fn init_then_run_archives_the_replays_and_removes_exactly_them() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    assert_eq!(d.index(), b"");
    let replays = d.add_replays(&[5, 17, 3, 1000]);
    std::fs::write(d.temp.join("notes.txt"), "keep me").unwrap();
    std::fs::write(d.temp.join("replay_7.osr.part"), "being written").unwrap();
    std::fs::create_dir(d.temp.join("replay_8.osr")).unwrap();

    let out = d.oiseau(&["run"], &[]).expect_code(0);
    out.assert_stderr_has("backup done");

    let archives = d.archives();
    assert_eq!(archives.len(), 1);
    let name = &archives[0];
    let (timestamp, _) = name.split_once("_replays_").unwrap();
    assert_eq!(archive_id(name), 1);
    assert_eq!(d.index(), b"1\t1000\n");
    // The timestamped copy holds the same bytes as the index (the old tool's came out empty).
    let copy = std::fs::read(d.storage.join(format!("{timestamp}_{INDEX}"))).unwrap();
    assert_eq!(copy, b"1\t1000\n");
    assert_eq!(archive_members(&d.storage.join(name)), replays);
    assert_eq!(
        d.temp_names(),
        ["notes.txt", "replay_7.osr.part", "replay_8.osr"]
    );
    // Nothing left in the spool, nothing under a temporary name on the storage.
    assert_eq!(
        common::names_in(&d.work.join("spool")),
        Vec::<String>::new()
    );
    assert_eq!(d.storage_names().len(), 4, "{:?}", d.storage_names());
    // The manifest beside the archive lists each replay exactly, with its size and hash.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.storage.join(format!("{name}.json"))).unwrap())
            .unwrap();
    assert_eq!(manifest["archive_id"], 1);
    assert_eq!(
        manifest["size"],
        std::fs::metadata(d.storage.join(name)).unwrap().len()
    );
    let listed: Vec<(u64, u64)> = manifest["replays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect();
    let expected: Vec<(u64, u64)> = [3u64, 5, 17, 1000]
        .iter()
        .map(|id| (*id, replays[&format!("replay_{id}.osr")].len() as u64))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn numbering_continues_across_runs() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    d.add_replays(&[1, 2, 3]);
    d.oiseau(&["run"], &[]).expect_code(0);
    let second = d.add_replays(&[4, 5]);
    d.oiseau(&["run"], &[]).expect_code(0);

    let archives = d.archives();
    assert_eq!(
        archives.iter().map(|a| archive_id(a)).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(d.index(), b"1\t3\n2\t5\n");
    assert_eq!(archive_members(&d.storage.join(&archives[1])), second);
}

#[test]
fn an_index_written_by_the_original_tool_is_continued_byte_for_byte() {
    let d = Deployment::new("");
    let original = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/index/original_c14_index.txt"
    ))
    .unwrap();
    std::fs::create_dir_all(&d.storage).unwrap();
    std::fs::write(d.storage.join(INDEX), &original).unwrap();
    d.add_replays(&[4401, 4402]);

    d.oiseau(&["run"], &[]).expect_code(0);

    let mut expected = original;
    expected.extend_from_slice(b"4\t4402\n");
    assert_eq!(d.index(), expected);
    assert_eq!(archive_id(&d.archives()[0]), 4);
}

#[test]
fn archives_open_with_gnu_tar_gzip_and_python_tarfile_at_every_compression() {
    for compression in ["\"auto\"", "0", "1", "6", "9"] {
        let d = Deployment::new(&format!("compression = {compression}"));
        d.oiseau(&["init"], &[]).expect_code(0);
        // Several 1 MiB gzip blocks, noise and text mixed.
        let mut replays = common::add_sized_replays(&d.temp, 10, 4, 700 * 1024);
        let text = b"16|256.5|192.25|1,".repeat(30_000);
        std::fs::write(d.temp.join("replay_20.osr"), &text).unwrap();
        replays.insert("replay_20.osr".into(), text);
        d.oiseau(&["run"], &[]).expect_code(0);
        let archive = d.storage.join(&d.archives()[0]);

        let gzip = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&archive)
            .status()
            .unwrap();
        assert!(gzip.success(), "{compression}: gzip -t");
        let extracted = d.root.path().join("extracted");
        std::fs::create_dir(&extracted).unwrap();
        let tar = std::process::Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&extracted)
            .status()
            .unwrap();
        assert!(tar.success(), "{compression}: tar xzf");
        for (name, bytes) in &replays {
            assert!(
                &std::fs::read(extracted.join(name)).unwrap() == bytes,
                "{compression}: {name}"
            );
        }
        let python = std::process::Command::new("python3")
            .args([
                "-c",
                "import hashlib, sys, tarfile\nwith tarfile.open(sys.argv[1], 'r:gz') as t:\n    for m in t.getmembers():\n        print(m.name, hashlib.sha256(t.extractfile(m).read()).hexdigest())",
            ])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(
            python.status.success(),
            "{compression}: {}",
            String::from_utf8_lossy(&python.stderr)
        );
        let expected: Vec<String> = replays
            .iter()
            .map(|(n, b)| format!("{n} {}", common::sha256_hex(b)))
            .collect();
        let mut listed: Vec<String> = String::from_utf8_lossy(&python.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        listed.sort();
        assert_eq!(listed, expected, "{compression}: Python's tarfile");
    }
}

#[test]
fn auto_compression_still_shrinks_compressible_replays() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    let mut bytes = 0;
    for id in 1..=8u64 {
        let text = format!("{id}|256.5|192.25|1,").repeat(40_000);
        bytes += text.len() as u64;
        std::fs::write(d.temp.join(format!("replay_{id}.osr")), text).unwrap();
    }
    d.oiseau(&["run"], &[]).expect_code(0);
    let size = std::fs::metadata(d.storage.join(&d.archives()[0]))
        .unwrap()
        .len();
    assert!(size * 5 < bytes, "{size} of {bytes}");
}

#[test]
fn below_the_threshold_nothing_moves() {
    let d = Deployment::new("");
    d.write_settings("threshold = \"1 MiB\"");
    d.oiseau(&["init"], &[]).expect_code(0);
    d.add_replays(&[1, 2]);
    let out = d.oiseau(&["run"], &[]).expect_code(0);
    out.assert_stderr_has("nothing to do");
    assert_eq!(d.temp_names(), ["replay_1.osr", "replay_2.osr"]);
    assert_eq!(d.storage_names(), [INDEX]);

    // --force packs them anyway.
    d.oiseau(&["run", "--force"], &[]).expect_code(0);
    assert_eq!(d.temp_names(), Vec::<String>::new());
    assert_eq!(d.index(), b"1\t2\n");
}

#[test]
fn young_replays_wait_for_the_next_run() {
    let d = Deployment::new("");
    d.write_settings("min_age = \"10m\"");
    d.oiseau(&["init"], &[]).expect_code(0);
    d.add_replays(&[1, 2, 3]);
    common::set_age(&d.temp.join("replay_1.osr"), Duration::from_secs(3600));
    common::set_age(&d.temp.join("replay_2.osr"), Duration::from_secs(3600));
    d.oiseau(&["run", "--force"], &[]).expect_code(0);
    assert_eq!(d.temp_names(), ["replay_3.osr"]);
    assert_eq!(d.index(), b"1\t2\n");
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    let replays = d.add_replays(&[41, 42]);
    let bytes: usize = replays.values().map(Vec::len).sum();
    let out = d.oiseau(&["run", "--dry-run"], &[]).expect_code(0);
    let stdout = out.stdout();
    assert!(stdout.contains("archive 1 as "), "{stdout}");
    assert!(stdout.contains("_replays_1.tar.gz: 2 replays"), "{stdout}");
    assert!(stdout.contains(&format!("({bytes} bytes)")), "{stdout}");
    assert_eq!(d.temp_names(), ["replay_41.osr", "replay_42.osr"]);
    assert_eq!(d.storage_names(), [INDEX]);
    assert_eq!(d.index(), b"");
    assert_eq!(
        common::names_in(&d.work.join("spool")),
        Vec::<String>::new()
    );
}

#[test]
fn a_malformed_index_line_fails_naming_it_and_deletes_nothing() {
    let d = Deployment::new("");
    std::fs::create_dir_all(&d.storage).unwrap();
    std::fs::write(d.storage.join(INDEX), "1\t10\n2\t20\n3 30\n").unwrap();
    d.add_replays(&[31, 32]);
    let out = d.oiseau(&["run"], &[]).expect_code(1);
    let stderr = out.stderr();
    assert!(stderr.contains("c14_index.txt line 3"), "{stderr}");
    assert_eq!(
        stderr
            .trim()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .count(),
        1,
        "{stderr}"
    );
    assert_eq!(d.temp_names(), ["replay_31.osr", "replay_32.osr"]);
    assert_eq!(d.storage_names(), [INDEX]);
}

#[test]
fn a_storage_without_index_asks_for_init() {
    let d = Deployment::new("");
    d.add_replays(&[1]);
    let out = d.oiseau(&["run"], &[]).expect_code(1);
    out.assert_stderr_has("run `oiseau init`");
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
}

#[test]
fn init_refuses_a_storage_that_has_an_index() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    std::fs::write(d.storage.join(INDEX), "1\t10\n").unwrap();
    let out = d.oiseau(&["init"], &[]).expect_code(1);
    out.assert_stderr_has("already has c14_index.txt");
    assert_eq!(d.index(), b"1\t10\n");
}

#[test]
fn an_unwritable_storage_fails_the_run_and_deletes_nothing() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    d.add_replays(&[1, 2]);
    // An archive already sits under the name the run will pick? No: make uploads impossible by
    // turning the storage into a read-only place for the run.
    let mut permissions = std::fs::metadata(&d.storage).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    permissions.set_mode(0o555);
    std::fs::set_permissions(&d.storage, permissions.clone()).unwrap();
    let is_root = std::fs::write(d.storage.join("probe"), b"").is_ok();
    if is_root {
        // root ignores permissions: block the upload with a file where the archive must go.
        std::fs::remove_file(d.storage.join("probe")).unwrap();
        permissions.set_mode(0o755);
        std::fs::set_permissions(&d.storage, permissions).unwrap();
        std::fs::remove_dir_all(&d.storage).unwrap();
        std::fs::write(&d.storage, b"not a directory").unwrap();
    }
    let out = d.oiseau(&["run"], &[]);
    assert_ne!(out.code(), 0, "{}", out.stderr());
    out.assert_stderr_has("backup");
    assert_eq!(d.temp_names(), ["replay_1.osr", "replay_2.osr"]);
}

#[test]
fn a_second_run_while_one_holds_the_lock_exits_75() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    d.add_replays(&[1]);
    std::fs::create_dir_all(&d.work).unwrap();
    let lock = std::fs::File::create(d.work.join("lock")).unwrap();
    lock.lock().unwrap();
    std::fs::write(d.work.join("lock"), "4242").unwrap();
    let out = d.oiseau(&["run"], &[]).expect_code(75);
    assert!(
        out.stderr()
            .contains("another oiseau process (pid 4242) holds the lock"),
        "{}",
        out.stderr()
    );
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
    drop(lock);
    d.oiseau(&["run"], &[]).expect_code(0);
    assert_eq!(d.temp_names(), Vec::<String>::new());
}

#[test]
fn bad_settings_exit_2_naming_the_key() {
    let d = Deployment::new("thresold = 5");
    let out = d.oiseau(&["run"], &[]).expect_code(2);
    out.assert_stderr_has("thresold");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
        .args(["--config", "/nonexistent/settings.toml", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/settings.toml"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    d.add_replays(&[1, 2]);
    let out = d
        .oiseau(&["--log-format", "json", "run"], &[])
        .expect_code(0);
    let lines: Vec<&str> = out
        .0
        .stderr
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    assert!(lines.len() >= 3);
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }
}

#[test]
fn status_shows_the_temp_folder_and_the_last_index_line() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    d.add_replays(&[1, 2]);
    d.oiseau(&["run"], &[]).expect_code(0);
    d.add_replays(&[3]);
    let out = d.oiseau(&["status"], &[]).expect_code(0);
    let stdout = out.stdout();
    assert!(stdout.contains(": 1 replay,"), "{stdout}");
    assert!(
        stdout.contains("last archive: 1 (replays up to 2) "),
        "{stdout}"
    );
    assert!(!stdout.contains('\t'), "no raw TAB: {stdout}");
    assert!(stdout.contains("reachable"), "{stdout}");
}

#[test]
fn demo_runs_a_real_backup_with_no_setup() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
        .args(["demo", "--dir"])
        .arg(&dir)
        .env_remove("OISEAU_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("archived 240 replays into "), "{stdout}");
    let index = std::fs::read_to_string(dir.join("backup").join(INDEX)).unwrap();
    assert_eq!(index, "1\t1239\n");
    // The 5 replays that just arrived and the README stay in the temp folder.
    assert_eq!(common::names_in(&dir.join("temp")).len(), 6);
}
