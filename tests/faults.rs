//! Fault injection: oiseau killed at every step of a run, on every backend, at random
//! instants, and fed bad input. After each fault, a normal run must leave nothing lost.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use common::target::Target;
use common::{CRASH_STEPS, INDEX, add_sized_replays, assert_nothing_lost};

fn killed(output: &std::process::Output) -> bool {
    output.status.signal() == Some(9)
}

/// Kills the run at `step`, then checks that one normal run restores every invariant.
fn crash_and_recover(target: Target, step: &str) {
    target.init();
    // Enough bytes for the upload to report progress several times.
    let replays = add_sized_replays(&target.d.temp, 1, 12, 300 * 1024);
    let crashed = target.run(&[("OISEAU_CRASH_AT", step)]);
    assert!(
        killed(&crashed),
        "{step}: the run was not killed: {}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    assert_nothing_lost(&replays, &target.d.temp, &target.storage, false);

    let recovered = target.run(&[]);
    assert!(
        recovered.status.success(),
        "{step}: {}",
        String::from_utf8_lossy(&recovered.stderr)
    );
    let archived = assert_nothing_lost(&replays, &target.d.temp, &target.storage, true);
    assert_eq!(
        archived.len(),
        replays.len(),
        "{step}: every replay is archived"
    );
    assert_eq!(target.d.temp_names(), Vec::<String>::new(), "{step}");
    assert_eq!(
        std::fs::read(target.storage.join(INDEX)).unwrap(),
        b"1\t12\n",
        "{step}"
    );
    assert!(
        !target.d.work.join("journal.json").exists(),
        "{step}: the journal is closed"
    );
    assert_eq!(
        common::names_in(&target.d.work.join("spool")),
        Vec::<String>::new(),
        "{step}"
    );
}

#[test]
fn killed_at_each_step_on_local_storage_the_next_run_completes() {
    for step in CRASH_STEPS {
        crash_and_recover(Target::local(), step);
    }
}

#[test]
fn killed_at_each_step_on_ftp_the_next_run_completes() {
    for step in CRASH_STEPS {
        crash_and_recover(Target::ftp(), step);
    }
}

#[test]
fn killed_at_each_step_on_rclone_the_next_run_completes() {
    for step in CRASH_STEPS {
        crash_and_recover(Target::rclone(), step);
    }
}

#[test]
fn killed_at_random_instants_nothing_is_lost() {
    let target = Target::local();
    target.init();
    let mut all = BTreeMap::new();
    let mut seed: u64 = 0x5eed;
    for round in 0..12u64 {
        all.extend(add_sized_replays(
            &target.d.temp,
            1 + round * 8,
            8,
            150 * 1024,
        ));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
            .arg("--config")
            .arg(&target.d.config)
            .arg("run")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((seed >> 33) % 120));
        let _ = child.kill();
        let _ = child.wait();
        assert_nothing_lost(&all, &target.d.temp, &target.storage, false);
    }
    let out = target.run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archived = assert_nothing_lost(&all, &target.d.temp, &target.storage, true);
    assert_eq!(archived.len(), all.len());
    assert_eq!(target.d.temp_names(), Vec::<String>::new());
}

#[test]
fn two_runs_at_once_never_archive_a_replay_twice() {
    let target = Target::local();
    target.init();
    let replays = add_sized_replays(&target.d.temp, 1, 40, 200 * 1024);
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
            .arg("--config")
            .arg(&target.d.config)
            .arg("run")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let codes: Vec<i32> = [first, second]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert!(codes.iter().all(|c| *c == 0 || *c == 75), "{codes:?}");
    let archived = assert_nothing_lost(&replays, &target.d.temp, &target.storage, true);
    assert_eq!(archived.len(), replays.len());
}

#[test]
fn an_index_ahead_of_the_storage_is_reported_and_continued() {
    let target = Target::local();
    std::fs::create_dir_all(&target.storage).unwrap();
    std::fs::write(target.storage.join(INDEX), "1\t10\n2\t20\n").unwrap();
    add_sized_replays(&target.d.temp, 21, 2, 4096);
    let out = target.run(&[]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the index lists 2 archives that are not on"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(target.storage.join(INDEX)).unwrap(),
        b"1\t10\n2\t20\n3\t22\n"
    );
}

#[test]
fn odd_names_and_links_are_left_alone() {
    use std::os::unix::ffi::OsStrExt;
    let target = Target::local();
    target.init();
    let replays = add_sized_replays(&target.d.temp, 1, 2, 4096);
    let outside = target.d.root.path().join("elsewhere.osr");
    std::fs::write(&outside, b"not in the temp folder").unwrap();
    std::os::unix::fs::symlink(&outside, target.d.temp.join("replay_3.osr")).unwrap();
    std::fs::write(target.d.temp.join("replay 4.osr"), b"space").unwrap();
    std::fs::write(
        target
            .d
            .temp
            .join(std::ffi::OsStr::from_bytes(b"replay_\xff5.osr")),
        b"latin-1",
    )
    .unwrap();
    std::fs::write(target.d.temp.join("replay_6.osr.part"), b"partial").unwrap();
    let out = target.run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("left alone 4 entries"));
    let archived = assert_nothing_lost(&replays, &target.d.temp, &target.storage, true);
    assert_eq!(archived, ["replay_1.osr", "replay_2.osr"]);
    assert_eq!(target.d.temp_names().len(), 4);
    assert!(outside.exists());
}

#[test]
fn a_hundred_thousand_tiny_replays_make_one_archive() {
    let target = Target::local();
    target.init();
    for id in 1..=100_000u64 {
        std::fs::write(
            target.d.temp.join(format!("replay_{id}.osr")),
            id.to_le_bytes(),
        )
        .unwrap();
    }
    let out = target.run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(target.d.temp_names(), Vec::<String>::new());
    assert_eq!(
        std::fs::read(target.storage.join(INDEX)).unwrap(),
        b"1\t100000\n"
    );
    let archive = target.d.archives().pop().unwrap();
    let members = common::archive_members(&target.storage.join(archive));
    assert_eq!(members.len(), 100_000);
    assert_eq!(members["replay_77777.osr"], 77777u64.to_le_bytes());
}

#[test]
fn a_full_spool_disk_fails_cleanly() {
    let target = Target::local();
    target.init();
    let replays = add_sized_replays(&target.d.temp, 1, 8, 512 * 1024);
    let small = target.d.root.path().join("small-disk");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and must be able to mount a tmpfs"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    target
        .d
        .write_settings(&format!("work_dir = \"{}\"", small.display()));
    let out = target.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("free but the archive needs about"),
        "{stderr}"
    );
    assert_eq!(target.d.temp_names().len(), replays.len());
}
