//! `oiseau run` on the FTP backend: a real backup, and the ways a server lets it down.

mod common;

use common::ftp::{FTP_PASSWORD, FtpServer, PyFtpServer, free_port};
use common::{Deployment, INDEX, archive_members};

fn ftp_deployment(url: &str, timeout: &str) -> Deployment {
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!("[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"{url}\"\ntimeout = \"{timeout}\"\n"),
    );
    d
}

const ENV: [(&str, &str); 2] = [("FTP_PASSWORD", FTP_PASSWORD), ("OISEAU_LOG", "trace")];

fn assert_no_secret(out: &common::Finished) {
    for text in [out.stdout(), out.stderr()] {
        assert!(
            !text.contains(FTP_PASSWORD),
            "the FTP password was printed:\n{text}"
        );
    }
}

#[tokio::test]
async fn backups_land_on_both_servers() {
    let libunftp = FtpServer::start();
    std::fs::create_dir(libunftp.root.join("replays")).unwrap();
    let pyftpdlib = PyFtpServer::start();
    for (url, root) in [
        (libunftp.url("replays"), libunftp.root.join("replays")),
        (pyftpdlib.url(""), pyftpdlib.root().to_owned()),
    ] {
        let d = ftp_deployment(&url, "10s");
        assert_no_secret(&d.oiseau_async(&["init"], &ENV).await.expect_code(0));
        let first = d.add_replays(&[1, 2, 3]);
        assert_no_secret(&d.oiseau_async(&["run"], &ENV).await.expect_code(0));
        d.add_replays(&[4]);
        assert_no_secret(&d.oiseau_async(&["run"], &ENV).await.expect_code(0));

        assert_eq!(
            std::fs::read(root.join(INDEX)).unwrap(),
            b"1\t3\n2\t4\n",
            "{url}"
        );
        let names = common::names_in(&root);
        let archive = names
            .iter()
            .find(|n| n.ends_with("_replays_1.tar.gz"))
            .unwrap();
        assert_eq!(archive_members(&root.join(archive)), first);
        assert!(
            names.iter().all(|n| !n.ends_with(".oiseau-part")),
            "{names:?}"
        );
        assert_eq!(d.temp_names(), Vec::<String>::new());
        let status = d.oiseau_async(&["status"], &ENV).await.expect_code(0);
        assert!(
            status
                .stdout()
                .contains("last archive: 2 (replays up to 4) "),
            "{}",
            status.stdout()
        );
    }
}

#[tokio::test]
async fn a_wrong_password_fails_clearly_and_deletes_nothing() {
    let server = FtpServer::start();
    let d = ftp_deployment(&server.url(""), "10s");
    d.add_replays(&[1]);
    let out = d
        .oiseau_async(&["run"], &[("FTP_PASSWORD", "wrong-password")])
        .await
        .expect_code(1);
    out.assert_stderr_has("login of user oiseau refused");
    assert!(!out.stderr().contains("wrong-password"));
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
}

#[tokio::test]
async fn a_dead_or_silent_server_fails_promptly() {
    // Nothing listens: refused at once.
    let d = ftp_deployment(&format!("ftp://oiseau@127.0.0.1:{}/", free_port()), "30s");
    d.add_replays(&[1]);
    let out = d.oiseau_async(&["run"], &ENV).await.expect_code(1);
    out.assert_stderr_has("connect failed");
    assert_eq!(d.temp_names(), ["replay_1.osr"]);

    // Accepts connections and never says a word: the timeout ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let d = ftp_deployment(
        &format!("ftp://oiseau@{}/", silent.local_addr().unwrap()),
        "1s",
    );
    d.add_replays(&[1]);
    let out = d.oiseau_async(&["run"], &ENV).await.expect_code(1);
    out.assert_stderr_has("no answer to the greeting within 1s");
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
}

#[tokio::test]
async fn a_missing_root_directory_is_named() {
    let server = FtpServer::start();
    let d = ftp_deployment(&server.url("no/such/dir"), "10s");
    d.add_replays(&[1]);
    let out = d.oiseau_async(&["run"], &ENV).await.expect_code(1);
    assert!(
        out.stderr()
            .contains("directory /no/such/dir does not exist on the FTP server"),
        "{}",
        out.stderr()
    );
}

#[tokio::test]
async fn a_server_killed_mid_upload_leaves_no_archive_and_deletes_nothing() {
    let mut server = FtpServer::start();
    let d = ftp_deployment(&server.url(""), "10s");
    common::ftp::assert_server_death_mid_upload_loses_nothing(
        &d,
        ("FTP_PASSWORD", FTP_PASSWORD),
        &mut server,
    )
    .await;
}

#[tokio::test]
async fn ftps_uploads_over_tls_and_refuses_an_untrusted_server() {
    // A private CA and a server certificate for 127.0.0.1 signed by it, made with openssl.
    let keys = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("sh")
        .current_dir(keys.path())
        .args([
            "-ec",
            "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=oiseau-test-ca \
               -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
               -keyout ca.key -out ca.pem
             openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out server.csr
             printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
               -extfile ext -out cert.pem",
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (cert, key) = (keys.path().join("cert.pem"), keys.path().join("key.pem"));
    let ca = keys.path().join("ca.pem");
    let server = FtpServer::start_tls(&cert, &key);
    let url = server.url("").replacen("ftp://", "ftps://", 1);
    let d = ftp_deployment(&url, "10s");
    let cert_file = ca.to_str().unwrap();

    let env = [("FTP_PASSWORD", FTP_PASSWORD), ("SSL_CERT_FILE", cert_file)];
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    let replays = d.add_replays(&[1, 2]);
    d.oiseau_async(&["run"], &env).await.expect_code(0);
    let archive = common::names_in(&server.root)
        .into_iter()
        .find(|n| n.ends_with(".tar.gz"))
        .expect("the archive is on the server");
    assert_eq!(archive_members(&server.root.join(archive)), replays);

    // Without the certificate in the trust store, the TLS handshake is refused.
    d.add_replays(&[3]);
    let out = d
        .oiseau_async(&["run"], &[("FTP_PASSWORD", FTP_PASSWORD)])
        .await
        .expect_code(1);
    out.assert_stderr_has("TLS handshake");
    assert_eq!(d.temp_names(), ["replay_3.osr"]);
}

/// The lock's folder left without its lease (a run stopped, or its answer was lost, between
/// the two) is named as what it is, waited on while it may be a writer at work, then taken
/// over; a wait that lasts is a problem for `status`.
#[test]
fn a_lock_folder_without_its_lease_is_taken_over_once_abandoned() {
    let target = common::target::Target::ftp();
    target.init();
    let replays = common::add_sized_replays(&target.d.temp, 1, 3, 3000);
    std::fs::create_dir(target.storage.join("oiseau.lock.d")).unwrap();
    let out = target.oiseau(&["run"]).expect_code(75);
    assert!(
        out.stderr().contains("oiseau.lock.d is on FTP server")
            && out.stderr().contains("without the lease oiseau.lock")
            && out
                .stderr()
                .contains("taken over once it has stayed so for 15m"),
        "{}",
        out.stderr()
    );
    target.oiseau(&["status"]).expect_code(0);

    // Seen so by earlier runs for 20 minutes, the last 5 minutes ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sighting = target.d.work.join("lock-without-lease.json");
    let mut seen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sighting).unwrap()).unwrap();
    seen["first_seen"] = (now - 20 * 60).into();
    seen["last_seen"] = (now - 5 * 60).into();
    std::fs::write(&sighting, seen.to_string()).unwrap();
    // And the runs have found the lock held for 7 hours: a problem for status.
    let record = target.d.work.join("last-run.json");
    let mut runs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert!(runs["lock_waiting_since"].is_u64(), "{runs}");
    runs["lock_waiting_since"] = (now - 7 * 3600).into();
    std::fs::write(&record, runs.to_string()).unwrap();
    let out = target.oiseau(&["status"]).expect_code(1);
    assert!(
        out.stderr().contains("the storage lock stays held")
            && out.stderr().contains("oiseau.lock.d"),
        "{}",
        out.stderr()
    );

    let out = target.oiseau(&["run"]).expect_code(0);
    out.assert_stderr_has("taking over the lock");
    common::assert_nothing_lost(&replays, &target.d.temp, &target.storage, true);
    assert!(target.d.temp_names().is_empty());
    assert!(!target.storage.join("oiseau.lock.d").exists());
    assert!(!target.storage.join("oiseau.lock").exists());
    assert!(!sighting.exists());
    target.oiseau(&["status"]).expect_code(0);
}
