//! The s3 backend end to end, against moto's S3 server.

mod common;

use common::Deployment;
use common::s3::{MotoServer, SECRET_KEY, env};

fn deployment(server: &MotoServer, bucket: &str, archive_class: &str) -> Deployment {
    server.create_bucket(bucket);
    let d = Deployment::new("");
    d.write_settings_with_tables("", &server.settings(bucket, archive_class));
    d
}

#[test]
fn backups_land_with_cold_archives_and_a_hot_index_and_come_back() {
    let server = MotoServer::start();
    let d = deployment(&server, "replays", "STANDARD_IA");
    let env = env();
    d.oiseau(&["init"], &env).expect_code(0);
    let mut replays = d.add_replays(&[1, 2, 3]);
    d.oiseau(&["run"], &env).expect_code(0);
    replays.extend(d.add_replays(&[4, 5]));
    d.oiseau(&["run", "--log-format", "json"], &env)
        .expect_code(0);
    assert!(d.temp_names().is_empty());

    // Every run reads the index and the manifests: never in the archives' class.
    assert_eq!(
        server.storage_class("replays", "osu/c14_index.txt"),
        "STANDARD"
    );
    assert_eq!(d.status_json(&env)["archives_in_index"], 2);
    let archive = d.last_archive(&env);
    assert_eq!(
        server.storage_class("replays", &format!("osu/{archive}")),
        "STANDARD_IA"
    );
    assert_eq!(
        server.storage_class("replays", &format!("osu/{archive}.json")),
        "STANDARD"
    );

    let to = d.root.path().join("restored");
    d.oiseau(&["restore", "1", "5", "--to", to.to_str().unwrap()], &env)
        .expect_code(0);
    for name in ["replay_1.osr", "replay_5.osr"] {
        assert_eq!(std::fs::read(to.join(name)).unwrap(), replays[name]);
    }
    d.oiseau(&["verify", "--deep"], &env).expect_code(0);
    let config = d.oiseau(&["config"], &env).expect_code(0);
    assert!(config.stdout().contains("secret_access_key = \"***\""));
    for out in [&config, &d.oiseau(&["run", "--force"], &env)] {
        assert!(!out.stdout().contains(SECRET_KEY) && !out.stderr().contains(SECRET_KEY));
    }
}

#[test]
fn a_missing_bucket_is_named_and_nothing_is_deleted() {
    let server = MotoServer::start();
    let d = Deployment::new("");
    d.write_settings_with_tables("", &server.settings("no-such-bucket", "STANDARD"));
    d.add_replays(&[1]);
    let out = d.oiseau(&["run"], &env()).expect_code(1);
    assert!(
        out.stderr()
            .contains("bucket no-such-bucket does not exist"),
        "{}",
        out.stderr()
    );
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
}

#[test]
fn missing_credentials_are_a_settings_error_naming_the_variables() {
    let server = MotoServer::start();
    let d = deployment(&server, "replays", "STANDARD");
    let out = d.oiseau(&["run"], &[]).expect_code(2);
    out.assert_stderr_has("AWS_SECRET_ACCESS_KEY");
}

#[test]
fn a_cold_archive_is_restored_first_then_read() {
    let server = MotoServer::start();
    let d = deployment(&server, "cold", "GLACIER");
    let env = env();
    d.oiseau(&["init"], &env).expect_code(0);
    let replays = d.add_replays(&[1, 2]);
    d.oiseau(&["run"], &env).expect_code(0);
    let archive = d.last_archive(&env);
    assert_eq!(
        server.storage_class("cold", &format!("osu/{archive}")),
        "GLACIER"
    );
    assert_eq!(
        server.storage_class("cold", "osu/c14_index.txt"),
        "STANDARD"
    );
    // Sizes only: nothing to restore.
    d.oiseau(&["verify"], &env).expect_code(0);
    d.oiseau(&["locate", "2"], &env).expect_code(0);

    server.keep_restores_pending(1);
    let to = d.root.path().join("restored");
    let restore = ["restore", "2", "--to", to.to_str().unwrap()];
    let out = d.oiseau(&restore, &env).expect_code(75);
    assert!(
        out.stderr().contains("restore requested (Standard tier"),
        "{}",
        out.stderr()
    );
    let out = d.oiseau(&restore, &env).expect_code(75);
    out.assert_stderr_has("still restoring");
    assert!(!to.join("replay_2.osr").exists());
    d.oiseau(&restore, &env).expect_code(0);
    assert_eq!(
        std::fs::read(to.join("replay_2.osr")).unwrap(),
        replays["replay_2.osr"]
    );
    d.oiseau(&["verify", "--deep"], &env).expect_code(0);
}

#[test]
fn killed_at_each_step_on_s3_the_next_run_completes() {
    let server = MotoServer::start();
    common::s3::killed_at_each_step_the_next_run_completes(
        |path, dir| server.snapshot(path, dir),
        &env(),
        |bucket| deployment(&server, bucket, "STANDARD_IA"),
    );
}

/// SeaweedFS checks signatures and honours conditional writes: the same crash points, on a
/// second S3 implementation.
#[test]
fn killed_at_each_step_on_seaweedfs_the_next_run_completes() {
    let server = common::seaweed::SeaweedServer::start();
    common::s3::killed_at_each_step_the_next_run_completes(
        |path, dir| server.snapshot(path, dir),
        &env(),
        |bucket| {
            server.create_bucket(bucket);
            let d = Deployment::new("");
            d.write_settings_with_tables("", &server.settings(bucket, "osu"));
            d
        },
    );
}
