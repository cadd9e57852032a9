//! The original tool's archives made first-class by `oiseau index legacy`: located exactly,
//! one replay of a 100 MB archive restored by reading a few MiB, its hash checked, on local,
//! FTP and S3; the seed's own files never changed; damage, interruptions and a second host
//! handled.

mod common;

use common::seed::{self, BIG, LATE, SMALL};
use common::target::Target;

/// What restoring one replay of the big archive may read from the storage.
const ONE_REPLAY_BOUND: u64 = 10 << 20;

/// Puts the seed storage on `target`, indexes it, and checks what an operator then relies
/// on: exact locations (the late replays included), a one-replay restore that reads little
/// and checks its hash, and the seed's files as they were.
fn index_and_restore_one(backend: &str, target: &Target) {
    for name in seed::names() {
        target.put(&name, &seed::object(&name));
    }
    assert!(
        seed::object(BIG).len() > 100_000_000,
        "the big archive is over 100 MB"
    );
    target
        .oiseau(&["index", "legacy"])
        .expect_code(0)
        .assert_stdout_has(&format!("indexed {SMALL} (archive 1): 38 replays"))
        .assert_stdout_has(&format!("indexed {BIG} (archive 2): 762 replays"));

    let out = target
        .oiseau(&["locate", "17", "23", "5", "600"])
        .expect_code(0);
    let lines: Vec<&str> = out.stdout().leak().lines().collect();
    assert_eq!(
        lines,
        [
            format!("replay 17\tarchive 2\t{BIG}"),
            format!("replay 23\tarchive 2\t{BIG}"),
            format!("replay 5\tarchive 1\t{SMALL}"),
            format!("replay 600\tarchive 2\t{BIG}"),
        ],
        "{backend}: exact, where the index's ranges would say archive 1 for {LATE:?}"
    );

    let to = target.d.root.path().join("restored");
    let out = target
        .oiseau(&["restore", "17", "--to", to.to_str().unwrap()])
        .expect_code(0);
    out.assert_stdout_has(&format!("from {BIG} (hash checked)"));
    let read = common::bytes_read(&out.stdout());
    assert!(
        read <= ONE_REPLAY_BOUND,
        "{backend}: one replay read {read} bytes of a {} byte archive",
        seed::object(BIG).len()
    );
    assert_eq!(
        std::fs::read(to.join("replay_17.osr")).unwrap(),
        seed::replay(17),
        "{backend}"
    );

    let seen = target.seen();
    for name in seed::names() {
        assert!(
            std::fs::read(seen.join(&name)).unwrap() == seed::object(&name),
            "{backend}: {name} is byte for byte what the original tool wrote"
        );
    }
    for written in [".json", ".access"] {
        assert!(seen.join(format!("{BIG}{written}")).exists(), "{backend}");
    }
}

#[test]
fn seed_archives_are_indexed_then_read_like_oiseaus_own_on_ftp_and_s3() {
    index_and_restore_one("ftp", &Target::ftp());
    index_and_restore_one("s3", &Target::seaweedfs());
}

#[test]
fn seed_archives_are_indexed_then_read_located_verified_and_kept_on_local() {
    let target = Target::local();
    index_and_restore_one("local", &target);
    let storage = &target.storage;
    let to = target.d.root.path().join("twenty");

    // Twenty replays spread over both archives, each from its access point.
    let ids: Vec<String> = (0..20).map(|k| (3 + k * 31).to_string()).collect();
    let mut args = vec!["restore", "--to", to.to_str().unwrap()];
    args.extend(ids.iter().map(String::as_str));
    let out = target.oiseau(&args).expect_code(0);
    assert_eq!(out.stdout().matches("(hash checked)").count(), 20);
    for id in &ids {
        let id: u64 = id.parse().unwrap();
        assert_eq!(
            std::fs::read(to.join(format!("replay_{id}.osr"))).unwrap(),
            seed::replay(id)
        );
    }
    // Every replay's range: at most a span (4 MiB) and a deflate block before it, then the
    // replay; then its window: what one replay costs, whichever it is.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(storage.join(format!("{BIG}.json"))).unwrap())
            .unwrap();
    for (replay, range) in json["replays"]
        .as_array()
        .unwrap()
        .iter()
        .zip(json["access_ranges"].as_array().unwrap())
    {
        let (size, length) = (replay[1].as_u64().unwrap(), range[1].as_u64().unwrap());
        assert!(
            length <= (4 << 20) + (128 << 10) + size,
            "replay {}: {length} bytes for {size}",
            replay[0]
        );
    }
    // A replay read from an access point inside a byte: the inflater primed with its bits.
    let inside_a_byte: Vec<u64> = json["access"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point[0].as_u64().unwrap())
        .filter(|bit| bit % 8 != 0)
        .map(|bit| bit / 8)
        .collect();
    let at = json["access_ranges"]
        .as_array()
        .unwrap()
        .iter()
        .position(|range| inside_a_byte.contains(&range[0].as_u64().unwrap()))
        .expect("a replay read from a point inside a byte");
    let id = json["replays"][at][0].as_u64().unwrap();
    target
        .oiseau(&["restore", &id.to_string(), "--to", to.to_str().unwrap()])
        .expect_code(0)
        .assert_stdout_has("(hash checked)");
    assert_eq!(
        std::fs::read(to.join(format!("replay_{id}.osr"))).unwrap(),
        seed::replay(id)
    );
    target
        .oiseau(&["verify", "--deep", "--sample", "8"])
        .expect_code(0)
        .assert_stdout_has("16 replays read from their ranges and hashed");
    target.oiseau(&["verify", "--deep"]).expect_code(0);

    // Done once: a second run has nothing to do, and writes nothing.
    let before = common::names_in(storage);
    target
        .oiseau(&["index", "legacy"])
        .expect_code(0)
        .assert_stdout_has("nothing to index: 2 archives of the index already have a manifest");
    assert_eq!(common::names_in(storage), before);

    // Killed after reading, then between its two writes: nothing is half-written, the spool
    // of the killed run is removed by the next one, and the windows already written are found
    // equal to its own and kept.
    let manifest = storage.join(format!("{SMALL}.json"));
    let written = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    std::fs::remove_file(storage.join(format!("{SMALL}.access"))).unwrap();
    for step in ["legacy-after-read", "legacy-after-windows"] {
        let killed = target
            .d
            .oiseau(&["index", "legacy"], &[("OISEAU_CRASH_AT", step)]);
        assert_eq!(killed.0.status.code(), None, "{step}: killed");
        assert!(!manifest.exists(), "{step}");
        assert!(
            common::names_in(&target.d.work)
                .iter()
                .any(|name| name.starts_with(".windows.")),
            "{step}: the killed run's spool"
        );
    }
    target
        .oiseau(&["index", "legacy", "--archive", "1"])
        .expect_code(0)
        .assert_stdout_has(&format!("indexed {SMALL} (archive 1)"));
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        written,
        "the same manifest"
    );
    assert!(
        !common::names_in(&target.d.work)
            .iter()
            .any(|name| name.starts_with(".windows.")),
        "no spool left behind"
    );

    // Two hosts at once on the same archive: both succeed, one object each.
    std::fs::remove_file(&manifest).unwrap();
    std::fs::remove_file(storage.join(format!("{SMALL}.access"))).unwrap();
    let other = common::Deployment::new("");
    let settings = std::fs::read_to_string(&other.config).unwrap();
    std::fs::write(
        &other.config,
        settings.replace("\"backup\"", &format!("\"{}\"", storage.display())),
    )
    .unwrap();
    let children = [
        target.d.spawn(&["index", "legacy"], &[]),
        other.spawn(&["index", "legacy"], &[]),
    ];
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(std::fs::read(&manifest).unwrap(), written);

    // Its windows lost: a restore still works (from the archive's start, hash checked),
    // verify names them, and the next index legacy writes them again.
    let windows = storage.join(format!("{SMALL}.access"));
    let kept = std::fs::read(&windows).unwrap();
    std::fs::remove_file(&windows).unwrap();
    target
        .oiseau(&["verify"])
        .expect_code(1)
        .assert_stdout_has(&format!("access windows {SMALL}.access are missing"));
    target
        .oiseau(&["restore", "9", "--to", to.to_str().unwrap()])
        .expect_code(0)
        .assert_stdout_has("(hash checked)");
    assert_eq!(
        std::fs::read(to.join("replay_9.osr")).unwrap(),
        seed::replay(9)
    );
    target
        .oiseau(&["index", "legacy"])
        .expect_code(0)
        .assert_stdout_has(&format!("indexed {SMALL} (archive 1)"));
    assert_eq!(std::fs::read(&windows).unwrap(), kept);
    target.oiseau(&["verify"]).expect_code(0);

    // The oiseau archives that follow are made as always.
    common::add_sized_replays(&target.d.temp, 641, 3, 2000);
    assert!(target.run(&[]).status.success());
    target.oiseau(&["locate", "642", "17"]).expect_code(0);

    // Damage inside replay 300's bytes on the storage: read from its access point, it fails
    // its check; a deep verify names the archive.
    let mut damaged = seed::object(BIG);
    let at = json["replays"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r[0] == 300)
        .unwrap();
    let range = &json["access_ranges"][at];
    let inside = (range[0].as_u64().unwrap() + range[1].as_u64().unwrap() - 5000) as usize;
    damaged[inside] ^= 0x55;
    std::fs::write(storage.join(BIG), &damaged).unwrap();
    let out = target
        .oiseau(&["restore", "300", "--to", to.to_str().unwrap()])
        .expect_code(1);
    out.assert_stdout_has("not restored: replay_300.osr");
    assert!(!to.join("replay_300.osr").exists());
    target
        .oiseau(&["verify", "--deep", "--since", "2"])
        .expect_code(1)
        .assert_stdout_has(BIG);
}

#[test]
fn an_archive_that_cannot_be_read_is_named_and_the_others_are_indexed() {
    let target = Target::local();
    for name in seed::names() {
        if name != BIG {
            target.put(&name, &seed::object(&name));
        }
    }
    // Archive 2 of the index is missing; archive 3 is not gzip at all.
    target.put("1571700000_replays_3.tar.gz", b"not a gzip stream");
    let index = [seed::object("c14_index.txt"), b"3\t700\r\n".to_vec()].concat();
    target.put("c14_index.txt", &index);
    let out = target.oiseau(&["index", "legacy"]).expect_code(1);
    out.assert_stdout_has(&format!("indexed {SMALL} (archive 1)"))
        .assert_stdout_has("archive 2 is in c14_index.txt but missing")
        .assert_stdout_has("not indexed: 1571700000_replays_3.tar.gz (archive 3)")
        .assert_stdout_has("it is not a gzip stream")
        .assert_stderr_has("1 archive could not be indexed");
    assert!(
        !target
            .storage
            .join("1571700000_replays_3.tar.gz.json")
            .exists()
    );
    target
        .oiseau(&["index", "legacy", "--archive", "9"])
        .expect_code(1)
        .assert_stderr_has("archive 9 is not in c14_index.txt");
}

#[test]
fn a_cold_seed_archive_is_restored_first_then_indexed() {
    let server = common::s3::MotoServer::start();
    server.create_bucket("cold");
    let d = common::Deployment::new("");
    d.write_settings_with_tables("", &server.settings("cold", "GLACIER"));
    let env = common::s3::env();
    let mut glacier = common::s3::rclone_s3(&server.endpoint());
    glacier.env("RCLONE_S3_STORAGE_CLASS", "GLACIER");
    common::s3::put_with_rclone(
        glacier,
        "cold",
        &format!("osu/{SMALL}"),
        &seed::object(SMALL),
    );
    let index = b"1\t40\r\n";
    common::s3::put_with_rclone(
        common::s3::rclone_s3(&server.endpoint()),
        "cold",
        "osu/c14_index.txt",
        index,
    );
    assert_eq!(
        server.storage_class("cold", &format!("osu/{SMALL}")),
        "GLACIER"
    );

    server.keep_restores_pending(1);
    d.oiseau(&["index", "legacy"], &env)
        .expect_code(75)
        .assert_stdout_has("1 waiting for a restore from cold storage")
        .assert_stderr_has("restore requested");
    d.oiseau(&["index", "legacy"], &env)
        .expect_code(75)
        .assert_stderr_has("still restoring");
    d.oiseau(&["index", "legacy"], &env)
        .expect_code(0)
        .assert_stdout_has(&format!("indexed {SMALL} (archive 1): 38 replays"));
    // What a restore reads first stays in the hot class; the archive stays cold.
    for written in [".json", ".access"] {
        assert_eq!(
            server.storage_class("cold", &format!("osu/{SMALL}{written}")),
            "STANDARD"
        );
    }
    let to = d.root.path().join("restored");
    d.oiseau(&["restore", "9", "--to", to.to_str().unwrap()], &env)
        .expect_code(0)
        .assert_stdout_has("(hash checked)");
    assert_eq!(
        std::fs::read(to.join("replay_9.osr")).unwrap(),
        seed::replay(9)
    );
}
