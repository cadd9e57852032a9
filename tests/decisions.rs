//! The run's decisions on a failing storage, in-process and fast: an in-memory storage behind
//! the fault layer, so that each failure happens exactly where the test says. The end-to-end
//! tests on real servers (ftp.rs, rclone.rs, faults.rs) stay beside these.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use backends::layers::{Fault, Faults, Retry, RetryEvent};
use backends::memory::MemoryDriver;
use backends::{Capabilities, Driver, PreflightMode, Storage, Unprepared};
use oiseau::error::{EXIT_FAILED, EXIT_TRY_LATER, exit_code};
use oiseau::formats::names::INDEX_NAME;
use oiseau::report::events::{Event, Outcome, Reporter, Reporters, WaitCause};
use oiseau::run::journal::Journal;
use oiseau::run::{RunOptions, RunReport, run_on};
use oiseau::settings::Settings;
use oiseau::units::ByteSize;

/// A deployment whose storage lives in memory, behind faults the test chooses.
struct Bench {
    _root: tempfile::TempDir,
    settings: Settings,
    memory: Arc<MemoryDriver>,
    faults: Arc<Faults>,
    storage: Unprepared,
    retries: Arc<Mutex<Vec<String>>>,
}

impl Bench {
    /// `faults` wraps the memory storage; `capabilities` is what the memory storage declares.
    async fn new(capabilities: Capabilities, faults: impl FnOnce(Faults) -> Faults) -> Bench {
        let root = tempfile::tempdir().unwrap();
        let settings = Settings {
            temp_dir: root.path().join("temp"),
            work_dir: root.path().join("work"),
            threshold: ByteSize(1),
            min_age: Duration::ZERO,
            ..Settings::default()
        };
        std::fs::create_dir_all(&settings.temp_dir).unwrap();
        let memory = Arc::new(MemoryDriver::with_capabilities(capabilities));
        let faults = Arc::new(faults(Faults::new(memory.clone())));
        let retries = Arc::new(Mutex::new(Vec::new()));
        let heard = Arc::clone(&retries);
        let retry = Retry::new(faults.clone())
            .with_backoff(vec![Duration::ZERO; 2])
            .with_hook(Arc::new(move |event: &RetryEvent<'_>| {
                heard
                    .lock()
                    .unwrap()
                    .push(format!("{} {}", event.operation, event.attempt));
            }));
        let bench = Bench {
            _root: root,
            settings,
            memory,
            faults,
            storage: Unprepared::new(Arc::new(retry)),
            retries,
        };
        // An initialised storage, written past the faults so that they count the run only.
        let empty = tempfile::NamedTempFile::new().unwrap();
        let source = backends::Source::file(empty.path());
        bench
            .memory
            .put(INDEX_NAME, &backends::Put::new(&source))
            .await
            .unwrap();
        bench
    }

    fn add_replays(&self, first: u64, count: u64) {
        let old = SystemTime::now() - Duration::from_secs(600);
        oiseau::sample::write_replays(&self.settings.temp_dir, first, count, 7, old).unwrap();
    }

    fn temp_names(&self) -> usize {
        std::fs::read_dir(&self.settings.temp_dir).unwrap().count()
    }

    async fn index(&self) -> Vec<u8> {
        self.prepared()
            .await
            .read_small(INDEX_NAME)
            .await
            .unwrap()
            .1
    }

    async fn objects(&self) -> Vec<String> {
        let listed = self.prepared().await.list().await.unwrap();
        listed.into_iter().map(|o| o.name).collect()
    }

    /// Adds 20 replays and checks that one run archives them all, despite the faults: `what`
    /// names the case.
    async fn archives_twenty_at_once(&self, what: &str) {
        self.add_replays(1, 20);
        let (result, outcome) = self.run().await;
        assert!(
            matches!(result, Ok(RunReport::Archived(_))),
            "{what}: {:?}",
            result.err()
        );
        assert!(matches!(outcome, Outcome::Done(ref done) if done.replays == 20));
        assert_eq!(self.index().await, b"1\t20\n", "{what}");
        assert_eq!(self.temp_names(), 0, "{what}");
    }

    /// Checks that no partial upload is left under any name.
    async fn assert_no_partial_upload(&self, what: &str) {
        let objects = self.objects().await;
        assert!(
            objects.iter().all(|name| !name.contains("oiseau-part")),
            "{what}: {objects:?}"
        );
    }

    /// The storage, prepared, to look at what it holds.
    async fn prepared(&self) -> Storage {
        let prepared = self.storage.prepare(PreflightMode::Inspect).await.unwrap();
        prepared.storage
    }

    /// Runs a backup, returning its result and the outcome the reporters heard.
    async fn run(&self) -> (anyhow::Result<RunReport>, Outcome) {
        let recorder = Recorder::default();
        let reporters = Reporters::new(vec![Box::new(recorder.clone())]);
        let result = run_on(
            &self.storage,
            &self.settings,
            RunOptions::default(),
            &reporters,
        )
        .await;
        let outcome = recorder.outcome();
        (result, outcome)
    }
}

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    fn outcome(&self) -> Outcome {
        let events = self.0.lock().unwrap();
        let outcomes: Vec<&Outcome> = events
            .iter()
            .filter_map(|event| match event {
                Event::Finished(finished) => Some(&finished.outcome),
                _ => None,
            })
            .collect();
        assert_eq!(
            outcomes.len(),
            1,
            "every run reports one outcome: {events:?}"
        );
        outcomes[0].clone()
    }
}

#[async_trait]
impl Reporter for Recorder {
    async fn report(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

fn native() -> Capabilities {
    MemoryDriver::default().capabilities()
}

fn rename_only() -> Capabilities {
    Capabilities {
        rename: true,
        ..Capabilities::default()
    }
}

#[tokio::test]
async fn a_dropped_connection_during_the_upload_is_retried_and_the_run_completes() {
    for capabilities in [native(), rename_only()] {
        let bench = Bench::new(capabilities, |f| f.fail("put", 1, Fault::DropConnection)).await;
        bench.archives_twenty_at_once("a dropped connection").await;
        assert_eq!(bench.retries.lock().unwrap().as_slice(), ["upload 2"]);
        bench.assert_no_partial_upload("a dropped connection").await;
    }
}

#[tokio::test]
async fn a_storage_that_keeps_dropping_fails_the_run_and_deletes_nothing() {
    let bench = Bench::new(native(), |f| f.fail_from("put", 1, Fault::DropConnection)).await;
    bench.add_replays(1, 20);
    let (result, outcome) = bench.run().await;
    let error = result.unwrap_err();
    assert_eq!(exit_code(&error), EXIT_FAILED);
    let storage_error = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<backends::StorageError>())
        .expect("the storage's error is in the chain");
    assert_eq!(storage_error.status(), backends::ErrorStatus::Persistent);
    assert!(matches!(outcome, Outcome::Failed { .. }));
    assert_eq!(bench.faults.calls("put"), 3, "one attempt and two retries");
    assert_eq!(bench.temp_names(), 20);
    assert_eq!(bench.index().await, b"");
}

#[tokio::test]
async fn a_refused_index_write_keeps_every_replay_and_the_next_run_finishes_the_archive() {
    // The first put is the archive, the second the manifest, the third the index.
    let bench = Bench::new(native(), |f| f.fail("put", 3, Fault::Refuse)).await;
    bench.add_replays(1, 20);
    let (result, _) = bench.run().await;
    assert_eq!(exit_code(&result.unwrap_err()), EXIT_FAILED);
    assert_eq!(bench.temp_names(), 20, "nothing left the temp folder");
    assert_eq!(bench.index().await, b"");
    assert!(Journal::load(&bench.settings.work_dir).unwrap().is_some());

    let (result, outcome) = bench.run().await;
    assert!(matches!(result.unwrap(), RunReport::Archived(_)));
    assert!(matches!(outcome, Outcome::Done(_)));
    assert_eq!(bench.index().await, b"1\t20\n");
    assert_eq!(bench.temp_names(), 0);
    assert!(Journal::load(&bench.settings.work_dir).unwrap().is_none());
}

#[tokio::test]
async fn a_storage_waking_up_means_try_later_and_touches_nothing() {
    let bench = Bench::new(native(), |f| f.fail("prepare", 1, Fault::Pending)).await;
    bench.add_replays(1, 20);
    let (result, outcome) = bench.run().await;
    assert_eq!(exit_code(&result.unwrap_err()), EXIT_TRY_LATER);
    assert!(matches!(
        outcome,
        Outcome::Waiting {
            cause: WaitCause::Storage,
            ..
        }
    ));
    assert_eq!(bench.faults.calls("list") + bench.faults.calls("put"), 0);
    assert_eq!(bench.temp_names(), 20);
}

#[tokio::test]
async fn below_the_threshold_the_storage_is_not_contacted() {
    let mut bench = Bench::new(native(), |f| f).await;
    bench.settings.threshold = ByteSize(1 << 40);
    bench.add_replays(1, 3);
    let (result, outcome) = bench.run().await;
    assert!(matches!(result.unwrap(), RunReport::NothingToDo { .. }));
    assert!(matches!(outcome, Outcome::NothingToDo { .. }));
    assert_eq!(
        bench.faults.calls("prepare") + bench.faults.calls("stat"),
        0
    );
}

#[tokio::test]
async fn a_cold_index_read_is_try_later_not_a_failure() {
    let bench = Bench::new(native(), |f| f.fail("read", 1, Fault::NotReady)).await;
    bench.add_replays(1, 5);
    let (result, outcome) = bench.run().await;
    assert_eq!(exit_code(&result.unwrap_err()), EXIT_TRY_LATER);
    assert!(matches!(outcome, Outcome::Waiting { .. }));
    assert_eq!(bench.temp_names(), 5);
}

/// A storage on which another writer replaces the index just before this run writes it: the
/// race the storage lock exists for, forced, to check what the conditional write does alone.
#[derive(Debug)]
struct Meddler {
    inner: Arc<MemoryDriver>,
}

#[async_trait]
impl Driver for Meddler {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stat(&self, name: &str) -> backends::Result<backends::ObjectMeta> {
        self.inner.stat(name).await
    }

    async fn list(&self) -> backends::Result<Vec<backends::ObjectMeta>> {
        self.inner.list().await
    }

    async fn read(
        &self,
        name: &str,
        range: backends::ByteRange,
    ) -> backends::Result<backends::ObjectReader> {
        self.inner.read(name, range).await
    }

    async fn put(&self, name: &str, put: &backends::Put<'_>) -> backends::Result<u64> {
        if name == INDEX_NAME && put.if_match.is_some() {
            let theirs = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(theirs.path(), b"1\t999\n").unwrap();
            let source = backends::Source::file(theirs.path());
            self.inner
                .put(name, &backends::Put::new(&source))
                .await
                .unwrap();
        }
        self.inner.put(name, put).await
    }

    async fn delete(&self, name: &str) -> backends::Result<()> {
        self.inner.delete(name).await
    }
}

#[tokio::test]
async fn an_index_changed_under_the_run_stops_it_and_deletes_nothing() {
    let mut bench = Bench::new(native(), |f| f).await;
    bench.storage = Unprepared::new(Arc::new(Meddler {
        inner: bench.memory.clone(),
    }));
    bench.add_replays(1, 5);
    let (result, outcome) = bench.run().await;
    let error = result.unwrap_err();
    assert_eq!(exit_code(&error), EXIT_TRY_LATER, "a race lost: {error:#}");
    assert!(
        error.chain().any(|cause| cause
            .downcast_ref::<backends::StorageError>()
            .is_some_and(|e| e.kind() == backends::ErrorKind::ConditionFailed)),
        "{error:#}"
    );
    assert!(!matches!(outcome, Outcome::Done(_)));
    assert_eq!(bench.temp_names(), 5, "nothing left the temp folder");
    assert_eq!(
        bench.index().await,
        b"1\t999\n",
        "the other writer's index stands"
    );
    assert!(Journal::load(&bench.settings.work_dir).unwrap().is_some());

    // The next run finds the id taken by the other writer's archive: the journal resolves
    // itself (this run's copy removed), and its replays go into the next archive.
    bench.storage = Unprepared::new(bench.memory.clone());
    let (result, _) = bench.run().await;
    result.unwrap();
    assert_eq!(bench.temp_names(), 0);
    assert_eq!(bench.index().await, b"1\t999\n2\t5\n");
    assert!(Journal::load(&bench.settings.work_dir).unwrap().is_none());
    let names: Vec<String> = bench
        .memory
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|object| object.name)
        .filter(|name| name.contains("_replays_1."))
        .collect();
    assert!(
        names.is_empty(),
        "the copy that lost its id is gone: {names:?}"
    );
}

/// Taking the storage lock is retried like any write; an attempt whose answer was lost after
/// the lock was taken finds its own lease on the next one and carries on.
#[tokio::test]
async fn taking_the_lock_is_retried_and_a_lost_answer_finds_its_own_lease() {
    for fault in [Fault::DropConnection, Fault::AnswerLost] {
        let bench = Bench::new(native(), |f| f.fail("create_lock", 1, fault.clone())).await;
        bench.archives_twenty_at_once(&format!("{fault:?}")).await;
        assert_eq!(bench.retries.lock().unwrap().as_slice(), ["lock 2"]);
        assert!(
            !bench
                .objects()
                .await
                .iter()
                .any(|name| name == "oiseau.lock"),
            "{fault:?}: the lock is freed"
        );
    }
}

/// A write applied by the storage whose answer was lost: the retry meets its own result (the
/// index's `If-Match` refused, the staged copy already moved). The run looks before deciding,
/// finds its own bytes and carries on.
#[tokio::test]
async fn a_write_whose_answer_was_lost_is_found_applied_and_the_run_completes() {
    // The archive, the manifest, then the index: the third of each.
    for (capabilities, operation) in [(native(), "put"), (rename_only(), "rename")] {
        let bench = Bench::new(capabilities, |f| f.fail(operation, 3, Fault::AnswerLost)).await;
        bench.archives_twenty_at_once(operation).await;
        let retries = bench.retries.lock().unwrap().clone();
        assert_eq!(retries.len(), 1, "{operation}: {retries:?}");
        bench.assert_no_partial_upload(operation).await;
    }
}
