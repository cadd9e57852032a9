//! locate, restore and verify on every backend, for archives made by oiseau and by the
//! original tool.

mod common;

use common::target::Target;
use common::{INDEX, add_sized_replays};

#[test]
fn locate_and_restore_round_trip_on_every_backend() {
    for (backend, target) in Target::all() {
        target.init();
        let mut replays = add_sized_replays(&target.d.temp, 10, 3, 5000);
        assert!(target.run(&[]).status.success(), "{backend}");
        // Replay 5 arrives late: its id is below the previous archive's largest.
        replays.extend(add_sized_replays(&target.d.temp, 13, 1, 7000));
        replays.extend(add_sized_replays(&target.d.temp, 5, 1, 3000));
        assert!(target.run(&[]).status.success(), "{backend}");
        let archives = target.d.archives_in(&target.storage);

        let out = target.oiseau(&["locate", "5", "11"]).expect_code(0);
        let lines: Vec<String> = out.stdout().lines().map(str::to_owned).collect();
        assert_eq!(
            lines,
            [
                format!("replay 5\tarchive 2\t{}", archives[1]),
                format!("replay 11\tarchive 1\t{}", archives[0])
            ],
            "{backend}"
        );
        let out = target.oiseau(&["locate", "11", "999", "4"]).expect_code(1);
        assert!(
            out.stderr().contains("never archived: replays 999, 4"),
            "{backend}: {}",
            out.stderr()
        );

        let to = target.d.root.path().join("restored");
        let out = target
            .oiseau(&["restore", "5", "11", "--to", to.to_str().unwrap()])
            .expect_code(0);
        assert!(
            out.stdout().contains("(hash checked)"),
            "{backend}: {}",
            out.stdout()
        );
        for id in [5, 11] {
            let name = format!("replay_{id}.osr");
            assert_eq!(
                std::fs::read(to.join(&name)).unwrap(),
                replays[&name],
                "{backend}: {name}"
            );
        }
        assert_eq!(
            common::names_in(&to).len(),
            2,
            "{backend}: only the asked replays"
        );
        std::fs::write(to.join("replay_5.osr"), b"edited by hand").unwrap();
        let out = target
            .oiseau(&["restore", "5", "--to", to.to_str().unwrap()])
            .expect_code(1);
        assert!(
            out.stderr().contains("already exists; pass --overwrite"),
            "{backend}: {}",
            out.stderr()
        );
        assert_eq!(
            std::fs::read(to.join("replay_5.osr")).unwrap(),
            b"edited by hand"
        );
        target
            .oiseau(&["restore", "5", "--to", to.to_str().unwrap(), "--overwrite"])
            .expect_code(0);
        assert_eq!(
            std::fs::read(to.join("replay_5.osr")).unwrap(),
            replays["replay_5.osr"]
        );
    }
}

/// The storage as the original tool left it: two archives made with Python's tarfile, an
/// index with CRLF and a blank line, no manifest.
fn copy_original_fixture(storage: &std::path::Path) {
    std::fs::create_dir_all(storage).unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/original");
    for name in common::names_in(std::path::Path::new(fixture)) {
        if name != "make.py" {
            std::fs::copy(format!("{fixture}/{name}"), storage.join(name)).unwrap();
        }
    }
}

/// The bytes `fixtures/original/make.py` wrote for a replay.
fn original_replay(id: u64) -> Vec<u8> {
    format!("osu! replay {id} ").repeat(100).into_bytes()[..700 + usize::try_from(id).unwrap()]
        .to_vec()
}

#[test]
fn the_original_tools_archives_are_located_and_restored() {
    for (backend, target) in Target::all() {
        copy_original_fixture(&target.storage);
        let out = target.oiseau(&["locate", "103", "110"]).expect_code(0);
        let stdout = out.stdout();
        assert!(
            stdout.contains(
                "replay 103\tarchive 1\t1571000000_replays_1.tar.gz (by the index's id range"
            ),
            "{backend}: {stdout}"
        );
        assert!(
            stdout.contains("replay 110\tarchive 2\t1571600000_replays_2.tar.gz"),
            "{backend}: {stdout}"
        );
        target.oiseau(&["locate", "111"]).expect_code(1);

        let to = target.d.root.path().join("restored");
        let out = target
            .oiseau(&["restore", "108", "102", "--to", to.to_str().unwrap()])
            .expect_code(0);
        assert!(
            out.stdout().contains("no recorded hash"),
            "{backend}: {}",
            out.stdout()
        );
        for id in [108, 102] {
            assert_eq!(
                std::fs::read(to.join(format!("replay_{id}.osr"))).unwrap(),
                original_replay(id),
                "{backend}"
            );
        }
        target.oiseau(&["verify", "--deep"]).expect_code(0);

        // oiseau carries on after them, with a manifest for its own archive.
        add_sized_replays(&target.d.temp, 111, 2, 2000);
        assert!(target.run(&[]).status.success(), "{backend}");
        let index = std::fs::read(target.storage.join(INDEX)).unwrap();
        assert_eq!(index, b"1\t105\r\n\r\n2\t110\r\n3\t112\n", "{backend}");
        let out = target.oiseau(&["locate", "112", "104"]).expect_code(0);
        assert!(
            out.stdout().contains("replay 112\tarchive 3\t"),
            "{backend}"
        );
        target.oiseau(&["verify", "--deep"]).expect_code(0);

        // Indexed, the original tool's archives are located exactly and their replays
        // checked; oiseau's own archive is left as it is.
        target
            .oiseau(&["status"])
            .assert_stdout_has("2 archives without a manifest (the original tool's)");
        target
            .oiseau(&["index", "legacy"])
            .expect_code(0)
            .assert_stdout_has("2 archives indexed")
            .assert_stdout_has("1 already had a manifest");
        target
            .oiseau(&["locate", "103"])
            .expect_code(0)
            .assert_stdout_has("replay 103\tarchive 1\t1571000000_replays_1.tar.gz\n");
        let out = target
            .oiseau(&[
                "restore",
                "108",
                "--to",
                to.to_str().unwrap(),
                "--overwrite",
            ])
            .expect_code(0);
        out.assert_stdout_has("(hash checked)");
        assert_eq!(
            std::fs::read(to.join("replay_108.osr")).unwrap(),
            original_replay(108),
            "{backend}"
        );
        target
            .oiseau(&["verify", "--deep", "--sample", "2"])
            .expect_code(0);
        let status = target.oiseau(&["status"]).stdout();
        assert!(
            !status.contains("without a manifest"),
            "{backend}: {status}"
        );
    }
}

#[test]
fn verify_names_missing_truncated_and_corrupted_archives() {
    for (backend, target) in Target::all() {
        target.init();
        for first in [1, 101, 201, 301] {
            add_sized_replays(&target.d.temp, first, 4, 20_000);
            assert!(target.run(&[]).status.success(), "{backend}");
        }
        let out = target.oiseau(&["verify", "--deep"]).expect_code(0);
        assert!(
            out.stdout().contains("4 archives verified (deep"),
            "{backend}: {}",
            out.stdout()
        );
        let archives = target.d.archives_in(&target.storage);

        std::fs::remove_file(target.storage.join(&archives[0])).unwrap();
        let truncated = target.storage.join(&archives[1]);
        let bytes = std::fs::read(&truncated).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let flipped = target.storage.join(&archives[2]);
        let mut bytes = std::fs::read(&flipped).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&flipped, &bytes).unwrap();

        let out = target.oiseau(&["verify"]).expect_code(1);
        let stdout = out.stdout();
        assert!(
            stdout.contains("archive 1 (no such file): missing from the storage"),
            "{backend}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("archive 2 ({}):", archives[1])),
            "{backend}: {stdout}"
        );
        assert!(
            !stdout.contains("archive 3"),
            "{backend}: the same size passes a shallow check"
        );
        let out = target
            .oiseau(&["verify", "--deep", "--since", "3"])
            .expect_code(1);
        let stdout = out.stdout();
        assert!(
            stdout.contains(&format!("archive 3 ({}):", archives[2])),
            "{backend}: {stdout}"
        );
        assert!(!stdout.contains("archive 4"), "{backend}: {stdout}");
        assert!(
            !stdout.contains("archive 1 "),
            "{backend}: --since skips it"
        );
    }
}

#[test]
fn status_tells_where_the_backup_stands_as_json() {
    let target = Target::local();
    target.init();
    add_sized_replays(&target.d.temp, 1, 2, 3000);
    assert!(target.run(&[]).status.success());
    add_sized_replays(&target.d.temp, 3, 1, 3000);
    let out = target.oiseau(&["status", "--json"]).expect_code(0);
    let status: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(status["replays"], 1);
    assert_eq!(status["storage_state"], "ready");
    assert_eq!(status["archives_in_index"], 1);
    assert_eq!(status["archives_on_storage"], 1);
    assert_eq!(status["last_archive"]["id"], 1);
    assert_eq!(status["last_archive"]["max_replay_id"], 2);
    assert!(
        status["last_archive"]["name"]
            .as_str()
            .unwrap()
            .ends_with("_replays_1.tar.gz")
    );
    assert!(status["last_archive"]["age_seconds"].as_u64().unwrap() < 3600);
    assert_eq!(status["run_in_progress"], serde_json::Value::Null);
}
