//! Networks that fail, between oiseau and real servers: a TCP fault proxy in front of moto's
//! S3 server resets connections, loses answers to requests the server applied, cuts answers
//! short and slows the link. No replay is ever lost, and the backups keep going.

mod common;

use std::collections::BTreeMap;

use common::proxy::{FaultProxy, Plan};
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

    fn run(&self) -> common::Result {
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
            !out.stderr().contains("_replays_") || !out.stderr().contains("failed ("),
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
