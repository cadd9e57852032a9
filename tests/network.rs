//! Networks that fail, between oiseau and real servers: a TCP fault proxy in front of moto's
//! S3 server resets connections, loses answers to requests the server applied, cuts answers
//! short and slows the link. No replay is ever lost, and the backups keep going.

mod common;

use std::collections::BTreeMap;

use common::proxy::{Cut, FaultProxy, Plan};
use common::s3::{MotoServer, env};
use common::{Deployment, add_sized_replays, assert_nothing_lost};

/// A deployment on the s3 backend, through a fault proxy in front of moto.
struct Faulty {
    d: Deployment,
    proxy: FaultProxy,
    server: MotoServer,
    seen: std::path::PathBuf,
}

impl Faulty {
    fn new(timeout: &str) -> Faulty {
        let server = MotoServer::start();
        server.create_bucket("replays");
        let proxy = FaultProxy::start(server.port);
        let d = Deployment::new("");
        d.write_settings_with_tables(
            "",
            &format!(
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"replays\"\nprefix = \"osu\"\n\
                 endpoint = \"http://127.0.0.1:{}\"\ntimeout = \"{timeout}\"\n",
                proxy.port
            ),
        );
        let seen = d.root.path().join("seen");
        d.oiseau(&["init"], &env()).expect_code(0);
        Faulty {
            d,
            proxy,
            server,
            seen,
        }
    }

    fn run(&self) -> common::Finished {
        self.d.oiseau(&["run"], &env())
    }

    /// Every replay in the temp folder or in exactly one indexed archive, with its bytes.
    fn assert_nothing_lost(&self, replays: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
        self.server.snapshot("replays/osu", &self.seen);
        assert_nothing_lost(replays, &self.d.temp, &self.seen, false)
    }
}

#[test]
fn every_third_connection_dropped_the_runs_still_archive() {
    let faulty = Faulty::new("10s");
    faulty.proxy.set(Plan {
        drop_every: Some(3),
        ..Plan::default()
    });
    let mut replays = BTreeMap::new();
    let mut codes = Vec::new();
    for round in 0..5u64 {
        replays.extend(add_sized_replays(
            &faulty.d.temp,
            1 + round * 40,
            40,
            300 * 1024,
        ));
        let out = faulty.run();
        if out.code() != 0 {
            eprintln!("round {round}: {}", out.stderr());
        }
        codes.push(out.code());
        faulty.assert_nothing_lost(&replays);
    }
    faulty.proxy.set(Plan::default());
    eprintln!("exit codes of 5 runs with every third connection dropped: {codes:?}");
    assert!(codes.iter().all(|code| *code == 0), "{codes:?}");
    let archived = faulty.assert_nothing_lost(&replays);
    assert_eq!(archived.len(), replays.len());
}

/// A write the server applied whose answer was lost: the last step of the archive's multipart
/// upload, then the index's conditional `PUT`. Each request is retried on its own (S3 accepts
/// a completion again), and the index's retry, refused by its own `If-Match`, makes the run
/// look: it finds its own index and carries on. The archive is never sent twice.
#[test]
fn writes_whose_answers_were_lost_are_found_applied() {
    let faulty = Faulty::new("10s");
    for (round, request) in ["tar.gz?uploadId=", "PUT /replays/osu/c14_index.txt"]
        .into_iter()
        .enumerate()
    {
        let first = 1 + round as u64 * 40;
        let replays = add_sized_replays(&faulty.d.temp, first, 40, 300 * 1024);
        faulty.proxy.set(Plan {
            lose_answer_to: Some(request.to_owned()),
            ..Plan::default()
        });
        let out = faulty.run().expect_code(0);
        assert!(faulty.proxy.answer_lost(), "{request}: the fault happened");
        // The archive went up once: no upload of it was tried again as a whole.
        assert!(
            !out.stderr()
                .lines()
                .any(|line| line.contains("upload ") && line.contains("trying again in")),
            "{request}: {}",
            out.stderr()
        );
        assert!(faulty.d.temp_names().is_empty(), "{request}");
        if request.contains("c14_index") {
            assert!(
                out.stderr()
                    .contains("the answer to writing c14_index.txt was lost"),
                "{}",
                out.stderr()
            );
        }
        let archived = faulty.assert_nothing_lost(&replays);
        assert_eq!(archived.len(), 40 * (round + 1), "{request}");
        assert!(
            faulty.server.multipart_uploads("replays").is_empty(),
            "{request}"
        );
    }
}

/// A read broken mid-body by the network is resumed from where it broke, and one that keeps
/// breaking is said to be the network's doing, never the archive's damage: `restore` reads
/// its replay through two answers cut short, and `serve` answers 503 with `Retry-After` while
/// every answer is cut.
#[test]
fn reads_cut_short_are_resumed_and_never_called_damage() {
    let faulty = Faulty::new("10s");
    let replays = add_sized_replays(&faulty.d.temp, 1, 40, 300 * 1024);
    faulty.run().expect_code(0);
    assert_eq!(faulty.assert_nothing_lost(&replays).len(), 40);
    let to = faulty.d.root.path().join("restored");
    // Reads of the archive, cut after 1 KiB: a replay of 300 KiB needs many resumes.
    let cut = |times| {
        faulty.proxy.set(Plan {
            cut_answers: Some(Cut {
                to_requests_with: ".tar.gz HTTP/1.1".to_owned(),
                after_bytes: 1024,
                times,
            }),
            ..Plan::default()
        });
    };

    cut(2);
    let out = faulty
        .d
        .oiseau(&["restore", "7", "--to", to.to_str().unwrap()], &env())
        .expect_code(0);
    out.assert_stdout_has("(hash checked)");
    assert_eq!(
        std::fs::read(to.join("replay_7.osr")).unwrap(),
        replays["replay_7.osr"]
    );

    cut(usize::MAX);
    let out = faulty
        .d
        .oiseau(&["restore", "8", "--to", to.to_str().unwrap()], &env());
    assert_ne!(out.code(), 0);
    assert!(
        out.stdout().contains("the network") && !out.stdout().contains("damaged"),
        "{}",
        out.stdout()
    );

    let port = common::ftp::free_port();
    let serving = faulty.d.root.path().join("serving.toml");
    let settings = std::fs::read_to_string(&faulty.d.config).unwrap();
    std::fs::write(
        &serving,
        format!("{settings}\n[serve]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_oiseau"))
        .arg("--config")
        .arg(&serving)
        .arg("serve")
        .envs(env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let answer = (0..200)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            http_get(port, "/replays/9")
        })
        .expect("serve answers");
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_lowercase().contains("retry-after: 30"),
        "{answer}"
    );
    assert!(answer.contains("the network"), "{answer}");
}

/// One plain HTTP GET on loopback: the whole answer, or `None` while nothing listens.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// An upload that keeps failing on one of its parts leaves no incomplete multipart upload
/// behind to be billed (it is aborted at once), deletes nothing, and the next run on a mended
/// network archives everything.
#[test]
fn a_failed_upload_leaves_no_incomplete_multipart_upload() {
    let faulty = Faulty::new("10s");
    let replays = add_sized_replays(&faulty.d.temp, 1, 40, 300 * 1024);
    // The archive's last part (of two) never gets through.
    faulty.proxy.set(Plan {
        cut_answers: Some(Cut {
            to_requests_with: "partNumber=2&".to_owned(),
            after_bytes: 0,
            times: usize::MAX,
        }),
        ..Plan::default()
    });
    let out = faulty.run();
    assert_ne!(out.code(), 0, "{}", out.stderr());
    assert_eq!(faulty.d.temp_names().len(), 40, "nothing deleted");
    assert!(
        faulty.server.multipart_uploads("replays").is_empty(),
        "{:?}",
        faulty.server.multipart_uploads("replays")
    );
    faulty.proxy.set(Plan::default());
    faulty.run().expect_code(0);
    let archived = faulty.assert_nothing_lost(&replays);
    assert_eq!(archived.len(), 40);
}

/// A deployment on the ftp backend (`timeout = "2s"`), through a fault proxy in front of a
/// libunftp server: the control connection and every passive data connection.
fn ftp_through_proxy() -> (common::ftp::FtpServer, FaultProxy, Deployment) {
    let server = common::ftp::FtpServer::start();
    let proxy = FaultProxy::start(server.port);
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!(
            "[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"ftp://{}@127.0.0.1:{}/\"\n\
             timeout = \"2s\"\n",
            common::ftp::FTP_USER,
            proxy.port
        ),
    );
    d.oiseau(&["init"], &FTP_ENV).expect_code(0);
    (server, proxy, d)
}

const FTP_ENV: [(&str, &str); 1] = [("FTP_PASSWORD", common::ftp::FTP_PASSWORD)];

/// FTP through the fault proxy (control and passive data connections): every third connection
/// dropped, the runs still archive.
#[test]
fn every_third_ftp_connection_dropped_the_runs_still_archive() {
    let (server, proxy, d) = ftp_through_proxy();
    let env = FTP_ENV;
    proxy.set(Plan {
        drop_every: Some(3),
        ..Plan::default()
    });
    let mut replays = BTreeMap::new();
    let mut codes = Vec::new();
    for round in 0..3u64 {
        replays.extend(add_sized_replays(&d.temp, 1 + round * 10, 10, 100 * 1024));
        let out = d.oiseau(&["run"], &env);
        if out.code() != 0 {
            eprintln!("round {round}: {}", out.stderr());
        }
        codes.push(out.code());
        assert_nothing_lost(&replays, &d.temp, &server.root, false);
    }
    eprintln!("exit codes of 3 FTP runs with every third connection dropped: {codes:?}");
    assert!(proxy.connections() >= 5, "the runs went through the proxy");
    assert!(codes.iter().all(|code| *code == 0), "{codes:?}");
    let archived = assert_nothing_lost(&replays, &d.temp, &server.root, true);
    assert_eq!(archived.len(), replays.len());
}

/// A slow but steady link is not a stall: through a link of 500 KB/s with `timeout = "2s"`,
/// an archive of 3 MB takes about 6 s to send, and goes up at the first try.
#[test]
fn a_slow_steady_link_is_not_taken_for_a_stall() {
    let faulty = Faulty::new("2s");
    let replays = add_sized_replays(&faulty.d.temp, 1, 10, 300 * 1024);
    faulty.proxy.set(Plan {
        rate: Some(500_000),
        ..Plan::default()
    });
    let out = faulty.run().expect_code(0);
    assert!(
        !out.stderr().contains("retry") && !out.stderr().contains("trying again"),
        "{}",
        out.stderr()
    );
    faulty.proxy.set(Plan::default());
    let archived = faulty.assert_nothing_lost(&replays);
    assert_eq!(archived.len(), 10);

    // A link that stops is still a stall: the upload is cut and sent again.
    let replays = add_sized_replays(&faulty.d.temp, 11, 10, 300 * 1024);
    faulty.proxy.set(Plan {
        stall_request_with: Some(".tar.gz HTTP/1.1".to_owned()),
        ..Plan::default()
    });
    let started = std::time::Instant::now();
    let out = faulty.run().expect_code(0);
    eprintln!(
        "a stalled upload was cut and sent again: the run took {:?}",
        started.elapsed()
    );
    out.assert_stderr_has("trying that request again");
    let archived = faulty.assert_nothing_lost(&replays);
    assert_eq!(archived.len(), 20);
}

/// A slow but steady FTP link is not a stall either: 3 MB at 500 KB/s with `timeout = "2s"`,
/// the socket buffers draining after the last write included, goes up at the first try.
#[test]
fn a_slow_steady_ftp_link_is_not_taken_for_a_stall() {
    let (server, proxy, d) = ftp_through_proxy();
    let replays = add_sized_replays(&d.temp, 1, 10, 300 * 1024);
    proxy.set(Plan {
        rate: Some(500_000),
        ..Plan::default()
    });
    let out = d.oiseau(&["run"], &FTP_ENV).expect_code(0);
    assert!(!out.stderr().contains("trying again"), "{}", out.stderr());
    let archived = assert_nothing_lost(&replays, &d.temp, &server.root, true);
    assert_eq!(archived.len(), 10);
}

/// An FTP download broken mid-body is resumed where it broke (`REST`): a restore reads its
/// replay through two data connections cut short.
#[test]
fn an_ftp_download_cut_short_is_resumed() {
    let (server, proxy, d) = ftp_through_proxy();
    let replays = add_sized_replays(&d.temp, 1, 10, 300 * 1024);
    d.oiseau(&["run"], &FTP_ENV).expect_code(0);
    assert_eq!(
        assert_nothing_lost(&replays, &d.temp, &server.root, true).len(),
        10
    );
    proxy.set(Plan {
        cut_passive: Some((64 * 1024, 2)),
        ..Plan::default()
    });
    let to = d.root.path().join("restored");
    let out = d
        .oiseau(&["restore", "7", "--to", to.to_str().unwrap()], &FTP_ENV)
        .expect_code(0);
    out.assert_stdout_has("(hash checked)");
    out.assert_stderr_has("resuming from there");
    assert_eq!(
        std::fs::read(to.join("replay_7.osr")).unwrap(),
        replays["replay_7.osr"]
    );
}

/// On FTP, the move of the staged index to its name applied, its answer lost (`RNTO`): the
/// retry finds no staged copy, the run looks, finds the index moved, and carries on.
#[test]
fn an_ftp_move_whose_answer_was_lost_is_found_done() {
    let (server, proxy, d) = ftp_through_proxy();
    let replays = add_sized_replays(&d.temp, 1, 10, 30 * 1024);
    proxy.set(Plan {
        lose_answer_to: Some("RNTO c14_index.txt".to_owned()),
        ..Plan::default()
    });
    let out = d.oiseau(&["run"], &FTP_ENV).expect_code(0);
    assert!(proxy.answer_lost(), "the fault happened");
    out.assert_stderr_has("was lost");
    assert_nothing_lost(&replays, &d.temp, &server.root, true);
    assert!(d.temp_names().is_empty());
    assert_eq!(
        std::fs::read(server.root.join("c14_index.txt")).unwrap(),
        b"1\t10\n"
    );
}

/// A storage that stops taking an upload for good fails the run, within the bound the README
/// gives for `timeout` (each stall cut after `timeout`, each request tried 5 times, the
/// operation 3 times), with a line that says the storage stalled; nothing is deleted, and the
/// next run on a healthy link archives.
#[test]
fn an_upload_stalled_for_good_fails_the_run_within_its_bound() {
    let faulty = Faulty::new("2s");
    let replays = add_sized_replays(&faulty.d.temp, 1, 10, 300 * 1024);
    faulty.proxy.set(Plan {
        stall_request_with: Some(".tar.gz HTTP/1.1".to_owned()),
        stall_always: true,
        ..Plan::default()
    });
    let started = std::time::Instant::now();
    let out = faulty.run();
    let took = started.elapsed();
    eprintln!("an upload stalled for good failed the run after {took:?}");
    assert_eq!(out.code(), 1, "{}", out.stderr());
    let stderr = out.stderr();
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        line.contains(".tar.gz") && (line.contains("for 2s") || line.contains("within 2s")),
        "{line}"
    );
    // The README's bound: 15 cuts of 2 s, and about 25 s of pauses between the attempts.
    assert!(
        took < std::time::Duration::from_secs(15 * 2 + 30),
        "{took:?}"
    );
    assert_eq!(
        faulty.d.temp_names().len(),
        replays.len(),
        "nothing deleted"
    );

    faulty.proxy.set(Plan::default());
    faulty.run().expect_code(0);
    assert_eq!(faulty.assert_nothing_lost(&replays).len(), 10);
}
