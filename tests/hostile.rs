//! Damaged storages and hostile folders: each case asserts the exit code, the key words of the
//! message, and that no replay was lost (each still in the temp folder, or byte for byte in an
//! archive the index lists).

mod common;

use common::target::Target;
use common::{Deployment, INDEX, add_sized_replays, assert_nothing_lost};

/// Object names on the storage of `target` matching `pattern` (a suffix).
fn named(target: &Target, suffix: &str) -> Vec<String> {
    common::names_in(&target.storage)
        .into_iter()
        .filter(|name| name.ends_with(suffix))
        .collect()
}

#[test]
fn an_emptied_index_stops_the_run_until_it_is_rebuilt() {
    for (backend, target) in [("local", Target::local()), ("ftp", Target::ftp())] {
        target.init();
        let mut replays = add_sized_replays(&target.d.temp, 1, 3, 3000);
        assert!(target.run(&[]).status.success(), "{backend}");
        replays.extend(add_sized_replays(&target.d.temp, 4, 2, 3000));
        assert!(target.run(&[]).status.success(), "{backend}");
        let index = std::fs::read(target.storage.join(INDEX)).unwrap();
        assert_eq!(index, b"1\t3\n2\t5\n");

        std::fs::write(target.storage.join(INDEX), b"").unwrap();
        replays.extend(add_sized_replays(&target.d.temp, 6, 1, 3000));
        let out = target.oiseau(&["run"]).expect_code(1);
        let copies = named(&target, "_c14_index.txt");
        let newest = copies.iter().max().unwrap();
        assert!(
            out.stderr()
                .contains("ends at archive 0 but the storage holds archives up to 2")
                && out.stderr().contains(&format!("Put back {newest}")),
            "{backend}: {}",
            out.stderr()
        );
        assert_eq!(target.d.temp_names(), ["replay_6.osr"], "{backend}");
        let out = target.oiseau(&["verify"]).expect_code(1);
        assert!(out.stdout().contains("beyond the index"), "{backend}");

        let out = target.oiseau(&["index", "rebuild"]).expect_code(0);
        assert_eq!(out.stdout(), "1\t3\n2\t5\n", "{backend}");
        assert!(out.stderr().contains("nothing was changed"), "{backend}");
        assert_eq!(std::fs::read(target.storage.join(INDEX)).unwrap(), b"");
        target
            .oiseau(&["index", "rebuild", "--write"])
            .expect_code(0);
        assert_eq!(std::fs::read(target.storage.join(INDEX)).unwrap(), index);

        assert!(target.run(&[]).status.success(), "{backend}");
        assert_eq!(
            std::fs::read(target.storage.join(INDEX)).unwrap(),
            b"1\t3\n2\t5\n3\t6\n",
            "{backend}"
        );
        assert_nothing_lost(&replays, &target.d.temp, &target.storage, true);
    }
}

#[test]
fn a_truncated_index_without_copies_is_rebuilt_from_the_manifests() {
    let target = Target::local();
    target.init();
    let replays = add_sized_replays(&target.d.temp, 1, 2, 3000);
    assert!(target.run(&[]).status.success());
    for copy in named(&target, "_c14_index.txt") {
        std::fs::remove_file(target.storage.join(copy)).unwrap();
    }
    std::fs::write(target.storage.join(INDEX), b"").unwrap();
    let mut replays = replays;
    replays.extend(add_sized_replays(&target.d.temp, 3, 1, 3000));
    let out = target.oiseau(&["run"]).expect_code(1);
    out.assert_stderr_has("rebuild it from the manifests");
    target
        .oiseau(&["index", "rebuild", "--write"])
        .expect_code(0);
    assert_eq!(
        std::fs::read(target.storage.join(INDEX)).unwrap(),
        b"1\t2\n"
    );
    assert_nothing_lost(&replays, &target.d.temp, &target.storage, true);
}

#[test]
fn the_demo_never_touches_a_folder_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let temp = dir.path().join("temp");
    std::fs::create_dir_all(&temp).unwrap();
    std::fs::write(temp.join("replay_1.osr"), b"a real replay").unwrap();
    std::fs::write(dir.path().join("settings.toml"), b"# mine").unwrap();
    let demo = |dir: &std::path::Path| {
        common::Finished::checked(
            std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
                .args(["demo", "--dir"])
                .arg(dir)
                .output()
                .unwrap(),
        )
    };
    let out = demo(dir.path()).expect_code(1);
    out.assert_stderr_has("was not made by `oiseau demo`");
    assert_eq!(
        std::fs::read(temp.join("replay_1.osr")).unwrap(),
        b"a real replay"
    );
    assert_eq!(
        std::fs::read(dir.path().join("settings.toml")).unwrap(),
        b"# mine"
    );

    let fresh = dir.path().join("fresh");
    let out = demo(&fresh).expect_code(0);
    let exe = env!("CARGO_BIN_EXE_oiseau");
    out.assert_stdout_has(&format!("try: {exe} --config"));
    demo(&fresh).expect_code(0);
}

#[test]
fn restore_never_writes_through_a_link_and_keeps_going_past_a_damaged_replay() {
    let target = Target::local();
    target.init();
    let replays = add_sized_replays(&target.d.temp, 1, 3, 3000);
    assert!(target.run(&[]).status.success());
    let out_dir = target.d.root.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let victim = target.d.root.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // Links at the old temporary name and at a target name.
    std::os::unix::fs::symlink(&victim, out_dir.join(".replay_3.osr.restoring")).unwrap();
    std::os::unix::fs::symlink(&victim, out_dir.join("replay_2.osr")).unwrap();
    let to = out_dir.to_str().unwrap();
    let out = target.oiseau(&["restore", "2", "--to", to]).expect_code(1);
    out.assert_stderr_has("already exists");
    target
        .oiseau(&["restore", "3", "2", "--to", to, "--overwrite"])
        .expect_code(0);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(
        !out_dir.join("replay_2.osr").is_symlink(),
        "the link itself was replaced"
    );
    for name in ["replay_2.osr", "replay_3.osr"] {
        assert_eq!(std::fs::read(out_dir.join(name)).unwrap(), replays[name]);
    }

    // Replay 1's recorded hash no longer matches: replays 2 and 3 are still restored.
    let manifest = named(&target, ".tar.gz.json").pop().unwrap();
    let path = target.storage.join(&manifest);
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["replays"][0][2] = serde_json::Value::String("00".repeat(32));
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    std::fs::remove_dir_all(target.d.work.join("catalog")).unwrap();
    let again = target.d.root.path().join("again");
    let out = target
        .oiseau(&["restore", "1", "2", "3", "--to", again.to_str().unwrap()])
        .expect_code(1);
    assert!(
        out.stderr()
            .contains("1 of the 3 replays asked for could not be restored: replay_1.osr"),
        "{}",
        out.stderr()
    );
    out.assert_stdout_has("does not match its recorded hash");
    assert_eq!(common::names_in(&again), ["replay_2.osr", "replay_3.osr"]);
}

#[test]
fn a_second_deployment_finds_the_storage_locked_while_a_lease_is_live() {
    let first = Target::local();
    first.init();
    add_sized_replays(&first.d.temp, 1, 2, 3000);
    // A live lease of another host.
    let lease = serde_json::json!({
        "host": "another-host", "pid": 1, "token": "7",
        "taken_at": 1, "expires_at": u64::MAX / 2,
    });
    std::fs::write(first.storage.join("oiseau.lock"), lease.to_string()).unwrap();
    let out = first.oiseau(&["run"]).expect_code(75);
    out.assert_stderr_has("another writer holds the lock");
    assert_eq!(first.d.temp_names().len(), 2);

    // Its expiry, by the other host's clock, decides nothing: the lock was written just now.
    let expired = serde_json::json!({
        "host": "another-host", "pid": 1, "token": "7", "taken_at": 1, "expires_at": 2,
    });
    std::fs::write(first.storage.join("oiseau.lock"), expired.to_string()).unwrap();
    first.oiseau(&["run"]).expect_code(75);
    // Unwritten for 7 hours by the storage's clock: taken over, and the run goes on.
    common::set_age(
        &first.storage.join("oiseau.lock"),
        std::time::Duration::from_secs(7 * 3600),
    );
    let out = first.oiseau(&["run"]).expect_code(0);
    out.assert_stderr_has("taking over the lock");
    assert!(first.d.temp_names().is_empty());
    assert!(!first.storage.join("oiseau.lock").exists(), "released");
}

#[test]
fn a_journal_is_never_finished_on_another_storage() {
    let target = Target::local();
    target.init();
    let replays = add_sized_replays(&target.d.temp, 1, 3, 300 * 1024);
    let crashed = target.run(&[("OISEAU_CRASH_AT", "after-pack")]);
    assert!(!crashed.status.success());
    // The operator points the settings at another folder before the next run.
    let elsewhere = Deployment::new("");
    let moved = std::fs::read_to_string(&target.d.config).unwrap().replace(
        "path = \"backup\"",
        &format!("path = {:?}", elsewhere.storage),
    );
    std::fs::write(&target.d.config, moved).unwrap();
    let out = target.oiseau(&["run"]).expect_code(1);
    out.assert_stderr_has("point them back to finish it");
    assert_nothing_lost(&replays, &target.d.temp, &target.storage, false);
}

#[test]
fn replays_that_can_never_be_archived_are_named_and_hold_back_nothing() {
    let target = Target::local();
    target.init();
    let mut replays = add_sized_replays(&target.d.temp, 1, 2, 3000);
    for name in ["replay_01.osr", "replay_99999999999999999999999.osr"] {
        std::fs::write(target.d.temp.join(name), b"odd").unwrap();
    }
    let future = target.d.temp.join("replay_3.osr");
    std::fs::write(&future, b"from the future").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&future)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(86_400 * 30))
        .unwrap();
    let out = target.oiseau(&["run"]).expect_code(0);
    for name in [
        "replay_01.osr",
        "replay_99999999999999999999999.osr",
        "replay_3.osr",
    ] {
        assert!(
            out.stderr()
                .contains(&format!("{name} is never archived as it is")),
            "{name}: {}",
            out.stderr()
        );
    }
    assert_eq!(target.d.temp_names().len(), 3, "the odd ones stay");
    let out = target.oiseau(&["status"]).expect_code(0);
    assert!(
        out.stdout()
            .contains("never archived as it is: replay_01.osr: its id has leading zeros"),
        "{}",
        out.stdout()
    );
    replays.retain(|name, _| name != "replay_3.osr");
    assert_nothing_lost(&replays, &target.d.temp, &target.storage, true);
}

#[test]
fn status_reports_what_would_fail_a_run_and_exits_non_zero() {
    let d = Deployment::new("");
    // No index yet: reachable, but a run would fail.
    std::fs::create_dir_all(&d.storage).unwrap();
    let out = d.oiseau(&["status"], &[]).expect_code(1);
    out.assert_stdout_has("reachable");
    assert!(out.stdout().contains("problem: ") && out.stdout().contains("oiseau init"));
    d.oiseau(&["init"], &[]).expect_code(0);
    d.oiseau(&["status"], &[]).expect_code(0);
    // The temp folder is gone: said, and the rest is still shown.
    std::fs::remove_dir_all(&d.temp).unwrap();
    let out = d.oiseau(&["status"], &[]).expect_code(1);
    out.assert_stdout_has("cannot list the temp folder");
    out.assert_stdout_has("lists 0 archives");
}

#[test]
fn a_check_of_nothing_is_not_a_success() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    let out = d.oiseau(&["verify"], &[]).expect_code(1);
    out.assert_stderr_has("nothing was verified");
    d.add_replays(&[1]);
    d.oiseau(&["run"], &[]).expect_code(0);
    d.oiseau(&["verify"], &[]).expect_code(0);
    let out = d.oiseau(&["verify", "--since", "7"], &[]).expect_code(1);
    out.assert_stderr_has("no archive from id 7 on");
}

#[test]
fn bad_sizes_and_empty_paths_say_what_is_expected() {
    for (setting, expected) in [
        ("threshold = -1", "negative"),
        ("threshold = 1.5", "not a whole number of bytes"),
        ("temp_dir = \"\"", "temp_dir is empty"),
    ] {
        let d = Deployment::new(setting);
        let out = d.oiseau(&["run"], &[]).expect_code(2);
        assert!(
            out.stderr().contains(expected),
            "{setting}: {}",
            out.stderr()
        );
        assert!(!out.stderr().contains("untagged"), "{}", out.stderr());
    }
}

#[test]
fn output_into_a_closed_pipe_does_not_stop_a_restore() {
    let target = Target::local();
    target.init();
    let replays = add_sized_replays(&target.d.temp, 1, 3, 3000);
    assert!(target.run(&[]).status.success());
    let to = target.d.root.path().join("out");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
        .arg("--config")
        .arg(&target.d.config)
        .args(["restore", "1", "2", "3", "--to"])
        .arg(&to)
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for (name, bytes) in &replays {
        assert_eq!(&std::fs::read(to.join(name)).unwrap(), bytes);
    }
}

#[test]
fn one_corrupt_manifest_leaves_the_other_archives_usable() {
    let target = Target::local();
    target.init();
    let replays = add_sized_replays(&target.d.temp, 1, 2, 3000);
    assert!(target.run(&[]).status.success());
    add_sized_replays(&target.d.temp, 3, 2, 3000);
    assert!(target.run(&[]).status.success());
    let first = named(&target, ".tar.gz.json").into_iter().min().unwrap();
    std::fs::write(target.storage.join(first), b"\x00garbage").unwrap();
    let _ = std::fs::remove_dir_all(target.d.work.join("catalog"));

    let out = target.oiseau(&["locate", "1", "4"]).expect_code(0);
    out.assert_stdout_has("replay 4\tarchive 2");
    out.assert_stdout_has("manifest is damaged");
    let to = target.d.root.path().join("out");
    let out = target
        .oiseau(&["restore", "1", "4", "--to", to.to_str().unwrap()])
        .expect_code(0);
    out.assert_stdout_has("(hash checked)");
    assert_eq!(
        std::fs::read(to.join("replay_1.osr")).unwrap(),
        replays["replay_1.osr"]
    );
    let out = target.oiseau(&["verify"]).expect_code(1);
    assert!(out.stdout().contains("archive 1 ("), "{}", out.stdout());
    assert!(!out.stdout().contains("archive 2 ("), "{}", out.stdout());
}

#[test]
fn a_storage_path_that_is_a_file_fails_at_once_saying_what_to_check() {
    let d = Deployment::new("");
    std::fs::write(&d.storage, b"not a folder").unwrap();
    d.add_replays(&[1]);
    // The setting points at a file: a settings error, found before anything else is done.
    let out = d.oiseau(&["run"], &[]).expect_code(2);
    assert!(
        out.stderr().contains("storage.local.path")
            && out.stderr().contains("is a file, not a folder"),
        "{}",
        out.stderr()
    );
    assert!(
        !out.stderr().contains("trying again"),
        "not retried: {}",
        out.stderr()
    );
    assert!(!out.stderr().contains("Unexpected"), "{}", out.stderr());
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
}

#[test]
fn objects_on_a_local_storage_are_readable_like_the_archives() {
    use std::os::unix::fs::PermissionsExt;
    let target = Target::local();
    target.init();
    add_sized_replays(&target.d.temp, 1, 2, 3000);
    assert!(target.run(&[]).status.success());
    for name in common::names_in(&target.storage) {
        let mode = std::fs::metadata(target.storage.join(&name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{name}");
    }
}

#[test]
fn running_on_the_defaults_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::Finished::checked(
        std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
            .arg("status")
            .current_dir(dir.path())
            .env_remove("OISEAU_CONFIG")
            .output()
            .unwrap(),
    );
    out.assert_stderr_has("using the defaults");
}
