//! The storage contract, run against every backend over real servers.

mod common;

use std::sync::Arc;

use backends::ftp::{FtpConfig, FtpDriver};
use backends::local::{LocalConfig, LocalDriver};
use backends::memory::MemoryDriver;
use backends::rclone::{RcloneConfig, RcloneDriver};
use backends::s3::{S3Config, S3Driver};
use backends::{Capabilities, Driver, ErrorKind};
use common::conformance;
use common::ftp::{FTP_PASSWORD, FtpServer, PyFtpServer};
use shared::Secret;

fn ftp(url: String) -> Arc<dyn Driver> {
    Arc::new(
        FtpDriver::new(&FtpConfig {
            url,
            password: Secret::new(FTP_PASSWORD),
            timeout: std::time::Duration::from_secs(10),
        })
        .unwrap(),
    )
}

/// Names in a server directory, to check that nothing is left under a temporary name.
fn names(dir: &std::path::Path) -> Vec<String> {
    common::names_in(dir)
}

#[tokio::test]
async fn local_directory_keeps_the_contract() {
    let root = tempfile::tempdir().unwrap();
    let driver = LocalDriver::new(&LocalConfig {
        path: root.path().to_owned(),
    })
    .unwrap();
    conformance::check(Arc::new(driver)).await;
    // The clauses leave nothing behind, not even files the driver does not list.
    assert_eq!(names(root.path()), Vec::<String>::new());
}

#[tokio::test]
async fn local_directory_that_vanished_is_an_error_not_an_empty_listing() {
    let root = tempfile::tempdir().unwrap();
    let driver = LocalDriver::new(&LocalConfig {
        path: root.path().join("gone"),
    })
    .unwrap();
    std::fs::remove_dir_all(root.path()).unwrap();
    assert!(matches!(driver.list().await, Err(e) if e.kind() == ErrorKind::NotFound));
}

#[tokio::test]
async fn memory_storage_keeps_the_contract_with_a_native_create() {
    conformance::check(Arc::new(MemoryDriver::default())).await;
}

#[tokio::test]
async fn memory_storage_keeps_the_contract_through_temporary_names() {
    let rename_only = Capabilities {
        rename: true,
        ..Capabilities::default()
    };
    conformance::check(Arc::new(MemoryDriver::with_capabilities(rename_only))).await;
}

#[tokio::test]
async fn ftp_on_libunftp_keeps_the_contract() {
    let server = FtpServer::start();
    std::fs::create_dir(server.root.join("backup")).unwrap();
    conformance::check(ftp(server.url("backup"))).await;
    // The clauses leave nothing behind, not even files the driver does not list.
    assert_eq!(names(&server.root.join("backup")), Vec::<String>::new());
}

#[tokio::test]
async fn ftp_on_pyftpdlib_keeps_the_contract() {
    let server = PyFtpServer::start();
    conformance::check(ftp(server.url(""))).await;
    // The clauses leave nothing behind, not even files the driver does not list.
    assert_eq!(names(server.root()), Vec::<String>::new());
}

fn rclone(remote: String, config: &str) -> Arc<dyn Driver> {
    Arc::new(
        RcloneDriver::new(&RcloneConfig {
            remote,
            config: config.to_owned(),
            ..Default::default()
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn rclone_local_path_keeps_the_contract() {
    let root = tempfile::tempdir().unwrap();
    conformance::check(rclone(root.path().display().to_string(), "")).await;
    // The clauses leave nothing behind, not even files the driver does not list.
    assert_eq!(names(root.path()), Vec::<String>::new());
}

#[tokio::test]
async fn rclone_ftp_remote_keeps_the_contract() {
    let server = FtpServer::start();
    std::fs::create_dir(server.root.join("backup")).unwrap();
    let config = common::rclone::ftp_config_file(server.port);
    let config = config.path().to_str().unwrap();
    conformance::check(rclone("testftp:backup".into(), config)).await;
    // The clauses leave nothing behind, not even files the driver does not list.
    assert_eq!(names(&server.root.join("backup")), Vec::<String>::new());
}

fn s3(server: &common::s3::MotoServer, bucket: &str, archive_class: &str) -> Arc<dyn Driver> {
    server.create_bucket(bucket);
    s3_driver(server.endpoint(), bucket, archive_class)
}

fn s3_driver(endpoint: String, bucket: &str, archive_class: &str) -> Arc<dyn Driver> {
    Arc::new(
        S3Driver::new(&S3Config {
            bucket: bucket.to_owned(),
            prefix: "osu".to_owned(),
            endpoint,
            archive_class: archive_class.to_owned(),
            access_key_id: common::s3::ACCESS_KEY.to_owned(),
            secret_access_key: Secret::new(common::s3::SECRET_KEY),
            ..S3Config::default()
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn s3_on_moto_keeps_the_contract() {
    let server = common::s3::MotoServer::start();
    conformance::check(s3(&server, "standard", "STANDARD")).await;
    conformance::check(s3(&server, "infrequent", "STANDARD_IA")).await;
}

/// A second S3 implementation, which checks signatures and honours conditional writes.
#[tokio::test]
async fn s3_on_seaweedfs_keeps_the_contract() {
    let server = common::seaweed::SeaweedServer::start();
    server.create_bucket("replays");
    conformance::check(s3_driver(server.endpoint(), "replays", "STANDARD")).await;
}

#[test]
fn s3_settings_are_checked_before_anything_is_contacted() {
    let config = S3Config {
        bucket: "replays".into(),
        archive_class: "GLACIER".into(),
        access_key_id: "k".into(),
        secret_access_key: Secret::new("s"),
        ..S3Config::default()
    };
    let driver = S3Driver::new(&config).unwrap();
    assert!(
        driver.capabilities().needs_warm_up,
        "GLACIER needs a restore before reads"
    );
    let err = S3Driver::new(&S3Config {
        restore_tier: "Fast".into(),
        ..config
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains("Expedited, Standard or Bulk"),
        "{err}"
    );
}

#[tokio::test]
async fn s3_aborts_the_multipart_uploads_a_killed_run_left_under_its_prefix() {
    let server = common::s3::MotoServer::start();
    let driver = S3Driver::new(&S3Config {
        bucket: "uploads".to_owned(),
        prefix: "osu".to_owned(),
        endpoint: server.endpoint(),
        access_key_id: common::s3::ACCESS_KEY.to_owned(),
        secret_access_key: Secret::new(common::s3::SECRET_KEY),
        ..S3Config::default()
    })
    .unwrap();
    server.create_bucket("uploads");
    server.start_multipart_upload("uploads", "osu/1_replays_1.tar.gz");
    server.start_multipart_upload("uploads", "elsewhere/2_replays_2.tar.gz");
    server.start_multipart_upload("uploads", "osu/other-tool/3.bin");
    // moto dates every upload 2010, so the age limit is checked by a unit test of the driver.
    let aborted = driver
        .abort_abandoned_uploads(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(aborted, ["osu/1_replays_1.tar.gz"]);
    let mut left = server.multipart_uploads("uploads");
    left.sort();
    assert_eq!(
        left,
        ["elsewhere/2_replays_2.tar.gz", "osu/other-tool/3.bin"],
        "only its own objects, directly under its prefix"
    );
}
