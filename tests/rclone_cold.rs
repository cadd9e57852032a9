//! The rclone backend on cold object storage: the real rclone binary against moto's S3 server,
//! archives in GLACIER through `archive_options`, everything else STANDARD.

mod common;

use common::Deployment;
use common::s3::{ACCESS_KEY, MotoServer, SECRET_KEY};

/// A deployment on an on-the-fly rclone S3 remote, credentials in rclone's environment, with
/// rclone's request headers dumped into `rclone.log`.
fn deployment(server: &MotoServer, bucket: &str, class: &str) -> Deployment {
    server.create_bucket(bucket);
    let d = Deployment::new("");
    let log = d.root.path().join("rclone.log");
    d.write_settings_with_tables(
        "",
        &format!(
            "[storage]\nbackend = \"rclone\"\n[storage.rclone]\n\
             remote = \":s3,provider=Other,endpoint='{}':{bucket}/osu\"\n\
             archive_options = \"storage_class={class}\"\n\
             flags = [\"--dump\", \"headers\", \"--log-file\", {log:?}]\n",
            server.endpoint()
        ),
    );
    d
}

fn env() -> [(&'static str, &'static str); 2] {
    [
        ("RCLONE_S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("RCLONE_S3_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
}

#[test]
fn archives_go_cold_the_index_stays_hot_and_nothing_is_copied() {
    let server = MotoServer::start();
    let d = deployment(&server, "cold", "GLACIER");
    let env = env();
    d.oiseau(&["init"], &env).expect_code(0);
    let replays = d.add_replays(&[1, 2]);
    d.oiseau(&["run"], &env).expect_code(0);
    d.add_replays(&[3]);
    // The second run reads the index: it must not be cold.
    d.oiseau(&["run"], &env).expect_code(0);
    assert!(d.temp_names().is_empty());
    let archive = d.last_archive(&env);
    assert_eq!(
        server.storage_class("cold", &format!("osu/{archive}")),
        "GLACIER"
    );
    for hot in [
        "osu/c14_index.txt".to_owned(),
        format!("osu/{archive}.json"),
    ] {
        assert_eq!(server.storage_class("cold", &hot), "STANDARD", "{hot}");
    }
    let log = std::fs::read_to_string(d.root.path().join("rclone.log")).unwrap();
    assert!(log.contains("PUT /cold/osu/"), "the dump shows the uploads");
    assert!(
        !log.to_ascii_lowercase().contains("x-amz-copy-source"),
        "no server-side copy: the uploads go straight to their names"
    );

    // A cold archive: restore requested, still restoring, then read.
    server.keep_restores_pending(1);
    let to = d.root.path().join("restored");
    let restore = ["restore", "1", "--to", to.to_str().unwrap()];
    let out = d.oiseau(&restore, &env).expect_code(75);
    out.assert_stderr_has("restore requested or under way");
    let mut codes = vec![75];
    while codes.len() < 5 && *codes.last().unwrap() == 75 {
        codes.push(d.oiseau(&restore, &env).code());
    }
    assert_eq!(codes.last(), Some(&0), "the restore completes: {codes:?}");
    assert_eq!(
        std::fs::read(to.join("replay_1.osr")).unwrap(),
        replays["replay_1.osr"]
    );
}

#[test]
fn killed_at_each_step_on_a_cold_rclone_remote_the_next_run_completes() {
    let server = MotoServer::start();
    // A class read directly, so that the test can read the archives back.
    common::s3::killed_at_each_step_the_next_run_completes(
        |path, dir| server.snapshot(path, dir),
        &env(),
        |bucket| deployment(&server, bucket, "STANDARD_IA"),
    );
}
