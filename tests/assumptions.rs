//! What the safety argument rests on, checked rather than assumed: folders that must stay
//! apart, replay files whose metadata is odd when they are packed, processes and clocks that a
//! lease relies on, records that must agree with what they describe. Each case asserts the
//! exit code and that no replay or archive was lost.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{Deployment, add_sized_replays, assert_nothing_lost};

/// Settings of a local deployment whose storage lives at `storage` (relative to the settings
/// file) and with `extra` top-level lines and tables.
fn write_settings(d: &Deployment, storage: &str, extra: &str) {
    std::fs::write(
        &d.config,
        format!(
            "temp_dir = \"temp\"\nwork_dir = \"work\"\nthreshold = \"1 KiB\"\nmin_age = \"0s\"\n\
             {extra}\n[storage.local]\npath = \"{storage}\"\n"
        ),
    )
    .unwrap();
}

#[test]
fn folders_that_overlap_are_refused_before_anything_is_touched() {
    let d = Deployment::new("");
    let replays = add_sized_replays(&d.temp, 1, 3, 3000);
    // The storage inside the spool: the stale-spool cleanup would empty it.
    let storage = d.work.join("spool/backup");
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::write(storage.join("c14_index.txt"), b"1\t0\n").unwrap();
    write_settings(&d, "work/spool/backup", "");
    let out = d.oiseau(&["run", "--force"], &[]).expect_code(2);
    assert!(
        out.stderr().contains("storage.local.path") && out.stderr().contains("spool"),
        "{}",
        out.stderr()
    );
    assert_eq!(
        std::fs::read(storage.join("c14_index.txt")).unwrap(),
        b"1\t0\n"
    );

    // The serve cache in the temp folder, reached through a symbolic link: its eviction would
    // delete replays never archived.
    std::os::unix::fs::symlink(&d.temp, d.root.path().join("cache-link")).unwrap();
    write_settings(&d, "backup", "[serve]\ncache_dir = \"cache-link/.\"");
    for command in [&["run", "--force"][..], &["status"], &["serve"]] {
        let out = d.oiseau(command, &[]).expect_code(2);
        assert!(
            out.stderr().contains("temp_dir") && out.stderr().contains("serve.cache_dir"),
            "{command:?}: {}",
            out.stderr()
        );
    }
    assert_eq!(d.temp_names().len(), replays.len());
}

#[test]
fn a_replay_dated_before_1970_is_archived_once_then_removed() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    let replays = add_sized_replays(&d.temp, 1, 3, 3000);
    let before_1970 = UNIX_EPOCH - Duration::new(86_400, 250_000_000);
    std::fs::File::options()
        .write(true)
        .open(d.temp.join("replay_2.osr"))
        .unwrap()
        .set_modified(before_1970)
        .unwrap();
    d.oiseau(&["run"], &[]).expect_code(0);
    assert!(d.temp_names().is_empty(), "{:?}", d.temp_names());
    d.oiseau(&["run", "--force"], &[]).expect_code(0);
    assert_eq!(d.archives().len(), 1, "packed once");
    assert_nothing_lost(&replays, &d.temp, &d.storage, true);
}

#[test]
fn the_spool_cleanup_removes_only_archives_it_packed() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    let replays = add_sized_replays(&d.temp, 1, 3, 3000);
    let spool = d.work.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("notes.txt"), b"an operator's").unwrap();
    std::fs::write(spool.join("1_replays_9.tar.gz"), b"stale").unwrap();
    d.oiseau(&["run"], &[]).expect_code(0);
    assert_eq!(common::names_in(&spool), ["notes.txt"]);
    assert_nothing_lost(&replays, &d.temp, &d.storage, true);
}

/// Runs every command that reaches the storage at `OISEAU_LOG=trace`, in both log formats:
/// `Finished::checked` fails on any output holding a test secret, and `secrets` are searched too.
fn assert_no_secret_at_trace_level(d: &Deployment, env: &[(&str, &str)], secrets: &[&str]) {
    d.oiseau(&["init"], env).expect_code(0);
    add_sized_replays(&d.temp, 1, 3, 3000);
    for format in ["text", "json"] {
        let mut traced = env.to_vec();
        traced.push(("OISEAU_LOG", "trace"));
        for command in [
            &["run", "--force"][..],
            &["status"],
            &["verify", "--deep"],
            &["locate", "1"],
            &["config"],
        ] {
            let args: Vec<&str> = command
                .iter()
                .copied()
                .chain(["--log-format", format])
                .collect();
            let out = d.oiseau(&args, &traced);
            for secret in secrets {
                assert!(
                    !out.stderr().contains(secret) && !out.stdout().contains(secret),
                    "{command:?} {format}: {secret}"
                );
            }
        }
    }
}

#[test]
fn no_secret_reaches_any_output_at_trace_level_in_either_log_format() {
    let server = common::s3::MotoServer::start();
    server.create_bucket("traced");
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!(
            "{}\n[telegram]\napi_url = \"https://bot:TEST-SECRET-in-url@127.0.0.1:9/\"\n",
            server.settings("traced", "STANDARD")
        ),
    );
    let token = "TEST-SECRET-session-token";
    let mut env = common::s3::env().to_vec();
    env.push(("AWS_SESSION_TOKEN", token));
    env.push(("RCLONE_FTP_PASS", "TEST-SECRET-rclone-pass"));
    assert_no_secret_at_trace_level(&d, &env, &[common::s3::SECRET_KEY]);

    // FTP, directly and through rclone (its obscured password in the environment).
    let target = common::target::Target::ftp();
    let env: Vec<(&str, &str)> = target.env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_no_secret_at_trace_level(&target.d, &env, &[common::ftp::FTP_PASSWORD]);
    let server = common::ftp::FtpServer::start();
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!(
            "[storage]\nbackend = \"rclone\"\n[storage.rclone]\nremote = \"{}\"\n",
            common::rclone::ftp_remote(server.port, "")
        ),
    );
    let obscured = common::rclone::obscured_password();
    assert_no_secret_at_trace_level(
        &d,
        &[("RCLONE_FTP_PASS", obscured.as_str())],
        &[obscured.as_str(), common::ftp::FTP_PASSWORD],
    );
}

#[test]
fn every_replay_that_can_be_restored_is_and_the_others_are_named() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    let replays = add_sized_replays(&d.temp, 1, 3, 3000);
    d.oiseau(&["run"], &[]).expect_code(0);
    let to = d.root.path().join("restored");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::write(to.join("replay_3.osr"), b"kept by hand").unwrap();
    let out = d
        .oiseau(
            &["restore", "1", "2", "3", "99", "--to", to.to_str().unwrap()],
            &[],
        )
        .expect_code(1);
    assert!(
        out.stderr()
            .contains("2 of the 4 replays asked for could not be restored")
            && out.stderr().contains("replay_99.osr (never archived")
            && out.stderr().contains("replay_3.osr (")
            && out.stderr().contains("pass --overwrite"),
        "{}",
        out.stderr()
    );
    for name in ["replay_1.osr", "replay_2.osr"] {
        assert_eq!(std::fs::read(to.join(name)).unwrap(), replays[name]);
    }
    assert_eq!(
        std::fs::read(to.join("replay_3.osr")).unwrap(),
        b"kept by hand"
    );
}

/// Local archives 1 (replays 1-2) and 2 (replays 3-4), each with its manifest.
fn two_archives() -> (Deployment, Vec<String>) {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    add_sized_replays(&d.temp, 1, 2, 3000);
    d.oiseau(&["run"], &[]).expect_code(0);
    add_sized_replays(&d.temp, 3, 2, 3000);
    d.oiseau(&["run"], &[]).expect_code(0);
    let archives = d.archives();
    (d, archives)
}

#[test]
fn a_manifest_of_another_archive_is_not_believed() {
    let (d, archives) = two_archives();
    // Archive 2's manifest replaced by a copy of archive 1's.
    std::fs::copy(
        d.storage.join(format!("{}.json", archives[0])),
        d.storage.join(format!("{}.json", archives[1])),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(d.work.join("catalog"));

    let out = d.oiseau(&["locate", "3"], &[]).expect_code(0);
    out.assert_stdout_has("replay 3\tarchive 2");
    out.assert_stderr_has("describes archive 1");
    let out = d.oiseau(&["verify"], &[]).expect_code(1);
    assert!(out.stdout().contains("archive 2 ("), "{}", out.stdout());
}

/// The newest index copy wrong (an archive found nowhere, a wrong max id), the index right:
/// rebuild keeps the index and names what is wrong in the copy; with the index gone, it
/// rebuilds from the older copy that agrees with the archives, or from the manifests alone.
#[test]
fn index_rebuild_never_writes_a_copy_the_archives_contradict() {
    let (d, _) = two_archives();
    let index = std::fs::read(d.storage.join("c14_index.txt")).unwrap();
    assert_eq!(index, b"1\t2\n2\t4\n");
    std::fs::write(
        d.storage.join("4000000000_c14_index.txt"),
        b"1\t2\n2\t4\n3\t9\n",
    )
    .unwrap();
    let out = d
        .oiseau(&["index", "rebuild", "--write"], &[])
        .expect_code(0);
    assert_eq!(out.stdout(), "1\t2\n2\t4\n");
    assert!(
        out.stderr().contains("4000000000_c14_index.txt")
            && out.stderr().contains("archive 3 is on no object"),
        "{}",
        out.stderr()
    );
    assert_eq!(
        std::fs::read(d.storage.join("c14_index.txt")).unwrap(),
        index
    );

    std::fs::write(d.storage.join("4000000000_c14_index.txt"), b"1\t2\n2\t99\n").unwrap();
    std::fs::write(d.storage.join("c14_index.txt"), b"").unwrap();
    let out = d
        .oiseau(&["index", "rebuild", "--write"], &[])
        .expect_code(0);
    assert_eq!(out.stdout(), "1\t2\n2\t4\n");
    assert!(
        out.stderr()
            .contains("line says replays up to 99 but its manifest says 4"),
        "{}",
        out.stderr()
    );
    assert_eq!(
        std::fs::read(d.storage.join("c14_index.txt")).unwrap(),
        index
    );

    // With no index and no copy that agrees, the manifests alone rebuild it.
    std::fs::write(d.storage.join("c14_index.txt"), b"garbage").unwrap();
    for name in common::names_in(&d.storage) {
        if name.ends_with("_c14_index.txt") && name != "4000000000_c14_index.txt" {
            std::fs::remove_file(d.storage.join(name)).unwrap();
        }
    }
    let out = d
        .oiseau(&["index", "rebuild", "--write"], &[])
        .expect_code(0);
    assert_eq!(out.stdout(), "1\t2\n2\t4\n", "{}", out.stderr());
    assert_eq!(
        std::fs::read(d.storage.join("c14_index.txt")).unwrap(),
        index
    );
}
