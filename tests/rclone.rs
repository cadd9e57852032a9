//! `oiseau run` on the rclone backend, through the real rclone binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::ftp::{FTP_PASSWORD, FtpServer, free_port};
use common::{Deployment, INDEX, archive_members};

/// Flags that make a dead server fail fast instead of being retried for minutes.
const FAIL_FAST: &str = r#"flags = ["--retries", "1", "--low-level-retries", "1", "--contimeout", "2s", "--timeout", "5s"]"#;

fn rclone_deployment(remote: &str, binary: &str) -> Deployment {
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!("[storage]\nbackend = \"rclone\"\n[storage.rclone]\nremote = \"{remote}\"\nbinary = \"{binary}\"\n{FAIL_FAST}\n"),
    );
    d
}

/// A script standing in for rclone: records its arguments, then runs the real one.
fn recording_rclone(dir: &Path) -> String {
    let script = dir.join("rclone-recording");
    let log = dir.join("argv.log");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec rclone \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

#[tokio::test]
async fn a_backup_lands_on_a_local_path_remote() {
    let remote = tempfile::tempdir().unwrap();
    let d = rclone_deployment(&remote.path().display().to_string(), "rclone");
    d.oiseau_async(&["init"], &[]).await.expect_code(0);
    let replays = d.add_replays(&[1, 2, 3]);
    d.oiseau_async(&["run"], &[]).await.expect_code(0);
    d.add_replays(&[9]);
    d.oiseau_async(&["run"], &[]).await.expect_code(0);
    assert_eq!(
        std::fs::read(remote.path().join(INDEX)).unwrap(),
        b"1\t3\n2\t9\n"
    );
    let names = common::names_in(remote.path());
    let first = names
        .iter()
        .find(|n| n.ends_with("_replays_1.tar.gz"))
        .unwrap();
    assert_eq!(archive_members(&remote.path().join(first)), replays);
    assert!(
        names.iter().all(|n| !n.ends_with(".oiseau-part")),
        "{names:?}"
    );
    assert_eq!(d.temp_names(), Vec::<String>::new());
}

#[tokio::test]
async fn an_http_proxy_in_the_environment_never_sees_the_daemon() {
    // A proxy that answers nothing: were the daemon's calls sent through it, the run would fail
    // (and the proxy would see the daemon's password).
    let dead_proxy = format!("http://127.0.0.1:{}", free_port());
    let remote = tempfile::tempdir().unwrap();
    let d = rclone_deployment(&remote.path().display().to_string(), "rclone");
    let env = [
        ("HTTP_PROXY", dead_proxy.as_str()),
        ("http_proxy", dead_proxy.as_str()),
        ("ALL_PROXY", dead_proxy.as_str()),
    ];
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    d.add_replays(&[1, 2]);
    d.oiseau_async(&["run"], &env).await.expect_code(0);
    assert_eq!(std::fs::read(remote.path().join(INDEX)).unwrap(), b"1\t2\n");
}

#[tokio::test]
async fn a_backup_lands_on_an_ftp_remote_with_the_password_only_in_the_environment() {
    let server = FtpServer::start();
    std::fs::create_dir(server.root.join("replays")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let binary = recording_rclone(scratch.path());
    let d = rclone_deployment(&common::rclone::ftp_remote(server.port, "replays"), &binary);
    let obscured = common::rclone::obscured_password();
    let env = [("RCLONE_FTP_PASS", obscured.as_str())];
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    let replays = d.add_replays(&[5, 6]);
    let out = d.oiseau_async(&["run"], &env).await.expect_code(0);
    let root = server.root.join("replays");
    assert_eq!(std::fs::read(root.join(INDEX)).unwrap(), b"1\t6\n");
    let archive = common::names_in(&root)
        .into_iter()
        .find(|n| n.ends_with(".tar.gz"))
        .unwrap();
    assert_eq!(archive_members(&root.join(archive)), replays);
    assert_eq!(d.temp_names(), Vec::<String>::new());

    let argv = std::fs::read_to_string(scratch.path().join("argv.log")).unwrap();
    // One daemon does the work; its own credentials travel in its environment too.
    assert!(argv.contains("rcd --rc-addr 127.0.0.1:"), "{argv}");
    assert!(
        !argv.contains("--rc-user") && !argv.contains("--rc-pass"),
        "{argv}"
    );
    for secret in [FTP_PASSWORD, obscured.as_str()] {
        assert!(
            !argv.contains(secret),
            "a secret was on rclone's command line:\n{argv}"
        );
        assert!(!out.stderr().contains(secret));
    }
}

#[tokio::test]
async fn an_ftp_server_killed_mid_upload_leaves_no_archive_and_deletes_nothing() {
    let mut server = FtpServer::start();
    let d = rclone_deployment(&common::rclone::ftp_remote(server.port, ""), "rclone");
    let obscured = common::rclone::obscured_password();
    common::ftp::assert_server_death_mid_upload_loses_nothing(
        &d,
        ("RCLONE_FTP_PASS", obscured.as_str()),
        &mut server,
    )
    .await;
}

#[tokio::test]
async fn a_missing_or_old_binary_says_which_version_is_needed() {
    let remote = tempfile::tempdir().unwrap();
    let d = rclone_deployment(&remote.path().display().to_string(), "/nonexistent/rclone");
    d.add_replays(&[1]);
    let out = d.oiseau_async(&["run"], &[]).await.expect_code(1);
    assert!(
        out.stderr()
            .contains("\"/nonexistent/rclone\" was not found; install rclone 1.60 or newer"),
        "{}",
        out.stderr()
    );

    let scratch = tempfile::tempdir().unwrap();
    let old = scratch.path().join("old-rclone");
    std::fs::write(&old, "#!/bin/sh\necho 'rclone v1.53.3'\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = rclone_deployment(
        &remote.path().display().to_string(),
        &old.display().to_string(),
    );
    d.add_replays(&[1]);
    let out = d.oiseau_async(&["run"], &[]).await.expect_code(1);
    assert!(
        out.stderr()
            .contains("is rclone 1.53; oiseau needs 1.60 or newer"),
        "{}",
        out.stderr()
    );
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
}

#[tokio::test]
async fn no_index_yet_and_an_unreachable_remote_are_told_apart() {
    let empty = tempfile::tempdir().unwrap();
    let d = rclone_deployment(&empty.path().display().to_string(), "rclone");
    d.add_replays(&[1]);
    let out = d.oiseau_async(&["run"], &[]).await.expect_code(1);
    assert!(
        out.stderr()
            .contains("has no c14_index.txt; if this is a new storage, run `oiseau init`"),
        "{}",
        out.stderr()
    );
    assert_eq!(d.temp_names(), ["replay_1.osr"]);

    let obscured = common::rclone::obscured_password();
    let d = rclone_deployment(&common::rclone::ftp_remote(free_port(), ""), "rclone");
    d.add_replays(&[1]);
    let out = d
        .oiseau_async(&["run"], &[("RCLONE_FTP_PASS", obscured.as_str())])
        .await
        .expect_code(1);
    out.assert_stderr_has("cannot reach the rclone remote");
    assert!(!out.stderr().contains("oiseau init"), "{}", out.stderr());
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
}
