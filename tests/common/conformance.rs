//! The storage contract, written once and run against every driver.
//!
//! Each driver's test builds a storage over a fresh, empty root and hands it to [`check`],
//! which runs each clause below on it in turn: one function per clause of the contract, named
//! as the clause reads, so that a failure says which one was broken.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use backends::{
    ByteRange, Driver, ErrorKind, ObjectMeta, PARTIAL_SUFFIX, PreflightMode, Put, Readiness,
    Source, SourceFeed, Storage, Unprepared, WriteMode, WriteOptions,
};
use tokio::io::AsyncReadExt;

fn local_file(dir: &Path, name: &str, bytes: &[u8]) -> Source {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    Source::file(path)
}

/// Writes `bytes` into the growing source's file a piece at a time, as the packer does, and
/// checks that nothing carries `name` on the storage meanwhile. Completes the file only when
/// `complete`, and otherwise abandons it.
async fn grow(
    storage: &Storage,
    path: &Path,
    feed: SourceFeed,
    bytes: &[u8],
    name: &str,
    complete: bool,
) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0;
    for (index, piece) in bytes.chunks(400_000).enumerate() {
        tokio::time::sleep(Duration::from_millis(30)).await;
        file.write_all(piece).unwrap();
        written += piece.len() as u64;
        // Every other piece is also handed over in memory, as the packer does while the
        // upload keeps up; the others are read back from the file.
        if index % 2 == 0 {
            feed.appended(vec![bytes::Bytes::copy_from_slice(piece)], written);
        } else {
            feed.appended(vec![], written);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        is(storage.stat(name).await, ErrorKind::NotFound),
        "{}: {name} has its final name before its source is complete",
        storage.describe()
    );
    if complete {
        feed.complete(written);
    }
}

/// Uploads `bytes` as `name` from a growing source that [`grow`] writes meanwhile.
async fn upload_while_growing(
    storage: &Storage,
    dir: &Path,
    bytes: &[u8],
    name: &str,
    complete: bool,
) -> backends::Result<ObjectMeta> {
    let path = dir.join(format!("{name}.growing"));
    std::fs::write(&path, b"").unwrap();
    let (source, feed) = Source::growing(&path);
    let options = WriteOptions::archive();
    let (uploaded, ()) = tokio::join!(
        storage.upload(&source, name, &options, &|_| {}),
        grow(storage, &path, feed, bytes, name, complete),
    );
    uploaded
}

/// Whether `result` failed with an error of `kind`.
fn is<T>(result: backends::Result<T>, kind: ErrorKind) -> bool {
    matches!(result, Err(e) if e.kind() == kind)
}

/// Reads an object, or a range of it, whole.
async fn read(storage: &Storage, name: &str, range: ByteRange) -> Vec<u8> {
    let mut bytes = Vec::new();
    storage
        .read(name, range)
        .await
        .unwrap()
        .read_to_end(&mut bytes)
        .await
        .unwrap();
    bytes
}

fn hot(mode: WriteMode) -> WriteOptions {
    WriteOptions::hot(mode)
}

/// What every clause gets: the storage through the shared commit path, the driver itself,
/// and a local folder for source files.
struct Contract {
    driver: Arc<dyn Driver>,
    storage: Storage,
    dir: tempfile::TempDir,
    /// A 3 MB archive-like object, the same bytes each time.
    big: Vec<u8>,
}

impl Contract {
    fn who(&self) -> String {
        self.storage.describe()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> Source {
        local_file(self.dir.path(), name, bytes)
    }

    /// Uploads the big object as `name`.
    async fn upload_big(&self, name: &str) {
        let source = self.file("big", &self.big);
        self.storage
            .upload(&source, name, &WriteOptions::archive(), &|_| {})
            .await
            .unwrap();
    }
}

/// Runs each clause of the contract against `driver`, whose root must be empty, each clause
/// on an empty storage (what one leaves, even by failing, is removed before the next). A
/// failure names its clause; all clauses run, and the test fails naming every one that failed.
pub async fn check(driver: Arc<dyn Driver>) {
    let storage = Unprepared::new(Arc::clone(&driver))
        .prepare(PreflightMode::Prepare)
        .await
        .unwrap();
    assert_eq!(storage.readiness, Readiness::Ready);
    let storage = storage.storage;
    if storage.conditions_need_probe() {
        // Every server this suite runs against honours the conditions its driver claims.
        let probed = storage
            .probe_conditions("oiseau-probe.conformance")
            .await
            .unwrap();
        let claimed = driver.capabilities();
        assert_eq!(
            (probed.create_if_absent, probed.replace_if_match),
            (claimed.atomic_create, claimed.replace_if_match),
            "{}: the probe found other conditional writes than the driver claims",
            driver.describe()
        );
        storage.trust_conditions(probed);
    }
    let contract = Contract {
        driver,
        storage,
        dir: tempfile::tempdir().unwrap(),
        big: (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
            .collect(),
    };
    let mut failed = Vec::new();
    macro_rules! clauses {
        ($($clause:ident),* $(,)?) => {$(
            let outcome = AssertUnwindSafe($clause(&contract)).catch_unwind().await;
            if let Err(panic) = outcome {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failed.push(format!("{}: {why}", stringify!($clause)));
            }
            for object in contract.driver.list().await.unwrap() {
                let _ = contract.driver.delete(&object.name).await;
            }
        )*};
    }
    clauses!(
        an_empty_storage_lists_nothing_and_missing_objects_are_not_found,
        an_upload_streams_a_file_in_with_its_progress_and_reads_back_the_same,
        ranged_reads_return_exactly_the_bytes_asked_for,
        an_archive_is_never_overwritten,
        an_empty_object_exists_and_reads_back_empty,
        a_replace_swaps_the_whole_object,
        a_conditional_replace_fails_once_another_write_came_in_between,
        a_listing_shows_finished_objects_sorted_with_their_sizes,
        a_growing_source_is_named_only_once_complete,
        an_abandoned_source_leaves_nothing_behind,
        a_missing_source_file_creates_nothing,
        a_delete_removes_exactly_one_object,
        the_declared_capabilities_hold_on_the_driver_itself,
    );
    assert!(
        failed.is_empty(),
        "{}: clauses of the storage contract not kept:\n{}",
        contract.who(),
        failed.join("\n")
    );
}

async fn an_empty_storage_lists_nothing_and_missing_objects_are_not_found(c: &Contract) {
    let (storage, who) = (&c.storage, c.who());
    assert_eq!(
        storage.list().await.unwrap(),
        Vec::<ObjectMeta>::new(),
        "{who}"
    );
    assert!(is(storage.stat("absent").await, ErrorKind::NotFound));
    assert!(is(
        storage.read("absent", ByteRange::ALL).await,
        ErrorKind::NotFound
    ));
    assert!(is(
        storage.read("absent", ByteRange::new(10, 5)).await,
        ErrorKind::NotFound
    ));
    assert!(is(storage.read_small("absent").await, ErrorKind::NotFound));
    assert!(is(storage.delete("absent").await, ErrorKind::NotFound));
}

async fn an_upload_streams_a_file_in_with_its_progress_and_reads_back_the_same(c: &Contract) {
    let source = c.file("big", &c.big);
    let last_progress = std::sync::atomic::AtomicU64::new(0);
    let meta = c
        .storage
        .upload(
            &source,
            "1_replays_1.tar.gz",
            &WriteOptions::archive(),
            &|sent| last_progress.store(sent, std::sync::atomic::Ordering::Relaxed),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, c.big.len() as u64);
    assert_eq!(last_progress.into_inner(), c.big.len() as u64);
    let streamed = read(&c.storage, "1_replays_1.tar.gz", ByteRange::ALL).await;
    assert!(streamed == c.big, "{}: streamed bytes differ", c.who());
    assert_eq!(
        c.storage.stat("1_replays_1.tar.gz").await.unwrap().size,
        c.big.len() as u64
    );
}

async fn ranged_reads_return_exactly_the_bytes_asked_for(c: &Contract) {
    let (storage, big, who) = (&c.storage, &c.big, c.who());
    c.upload_big("1_replays_1.tar.gz").await;
    // Inside, at the end, past the end.
    for (start, len) in [
        (0, 1),
        (1_234_567, 300_000),
        (2_999_000, 1_000),
        (2_999_990, 100),
    ] {
        let part = read(storage, "1_replays_1.tar.gz", ByteRange::new(start, len)).await;
        let end = usize::try_from(start + len).unwrap().min(big.len());
        let start = usize::try_from(start).unwrap();
        assert!(
            part == big[start..end],
            "{who}: bytes {start}..{end} differ"
        );
    }
    let tail = read(
        storage,
        "1_replays_1.tar.gz",
        ByteRange {
            start: 2_000_000,
            end: None,
        },
    )
    .await;
    assert!(tail == big[2_000_000..], "{who}: the tail differs");
    let past = read(storage, "1_replays_1.tar.gz", ByteRange::new(3_000_000, 10)).await;
    assert!(past.is_empty(), "{who}: a range past the end reads nothing");
}

/// And a refused upload leaves the original intact.
async fn an_archive_is_never_overwritten(c: &Contract) {
    c.upload_big("1_replays_1.tar.gz").await;
    let other = c.file("other", b"something else");
    let refused = c
        .storage
        .upload(
            &other,
            "1_replays_1.tar.gz",
            &WriteOptions::archive(),
            &|_| {},
        )
        .await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == ErrorKind::AlreadyExists),
        "{}: {refused:?}",
        c.who()
    );
    assert_eq!(
        c.storage.stat("1_replays_1.tar.gz").await.unwrap().size,
        c.big.len() as u64
    );
}

/// A new index is empty.
async fn an_empty_object_exists_and_reads_back_empty(c: &Contract) {
    c.storage
        .write("c14_index.txt", b"", &hot(WriteMode::CreateNew))
        .await
        .unwrap();
    assert_eq!(c.storage.stat("c14_index.txt").await.unwrap().size, 0);
    assert_eq!(c.storage.read_small("c14_index.txt").await.unwrap().1, b"");
}

async fn a_replace_swaps_the_whole_object(c: &Contract) {
    for bytes in [&b"1\t10\n2\t20\n"[..], b"1\t10\n"] {
        c.storage
            .write("c14_index.txt", bytes, &hot(WriteMode::Replace))
            .await
            .unwrap();
        assert_eq!(
            c.storage.read_small("c14_index.txt").await.unwrap().1,
            bytes
        );
    }
}

/// It leaves the newer object alone; on the current version it goes through.
async fn a_conditional_replace_fails_once_another_write_came_in_between(c: &Contract) {
    let storage = &c.storage;
    storage
        .write("c14_index.txt", b"1\t10\n", &hot(WriteMode::Replace))
        .await
        .unwrap();
    let (read_at, _) = storage.read_small("c14_index.txt").await.unwrap();
    storage
        .write("c14_index.txt", b"1\t10\n2\t20\n", &hot(WriteMode::Replace))
        .await
        .unwrap();
    let stale = storage
        .write(
            "c14_index.txt",
            b"1\t10\n2\t99\n",
            &hot(WriteMode::ReplaceIfUnchanged(read_at.version_token())),
        )
        .await;
    assert!(is(stale, ErrorKind::ConditionFailed), "{}", c.who());
    assert_eq!(
        storage.read_small("c14_index.txt").await.unwrap().1,
        b"1\t10\n2\t20\n"
    );
    let current = storage.stat("c14_index.txt").await.unwrap().version_token();
    storage
        .write(
            "c14_index.txt",
            b"1\t10\n2\t20\n",
            &hot(WriteMode::ReplaceIfUnchanged(current)),
        )
        .await
        .unwrap();
}

/// No partial uploads among them.
async fn a_listing_shows_finished_objects_sorted_with_their_sizes(c: &Contract) {
    c.storage
        .write("c14_index.txt", b"1\t10\n2\t20\n", &hot(WriteMode::Replace))
        .await
        .unwrap();
    c.upload_big("1_replays_1.tar.gz").await;
    let listed = c.storage.list().await.unwrap();
    let sizes: Vec<(&str, u64)> = listed.iter().map(|o| (o.name.as_str(), o.size)).collect();
    assert_eq!(
        sizes,
        [
            ("1_replays_1.tar.gz", c.big.len() as u64),
            ("c14_index.txt", 10)
        ],
        "{}",
        c.who()
    );
    assert!(listed.iter().all(|o| !o.name.ends_with(PARTIAL_SUFFIX)));
}

/// A source still being written is streamed as it grows.
async fn a_growing_source_is_named_only_once_complete(c: &Contract) {
    let (storage, who) = (&c.storage, c.who());
    let uploaded =
        upload_while_growing(storage, c.dir.path(), &c.big, "3_replays_3.tar.gz", true).await;
    assert_eq!(uploaded.unwrap().size, c.big.len() as u64, "{who}");
    assert!(
        storage.read_small("3_replays_3.tar.gz").await.unwrap().1 == c.big,
        "{who}: grown bytes differ"
    );
}

/// It fails its upload and leaves not even a partial object.
async fn an_abandoned_source_leaves_nothing_behind(c: &Contract) {
    let (storage, who) = (&c.storage, c.who());
    let half = &c.big[..1_000_000];
    let refused =
        upload_while_growing(storage, c.dir.path(), half, "4_replays_4.tar.gz", false).await;
    assert!(refused.is_err(), "{who}: an abandoned source was uploaded");
    assert!(
        storage
            .list()
            .await
            .unwrap()
            .iter()
            .all(|o| !o.name.starts_with("4_replays_4")),
        "{who}: the abandoned upload left something"
    );
}

/// The upload fails.
async fn a_missing_source_file_creates_nothing(c: &Contract) {
    let missing = c
        .storage
        .upload(
            &Source::file(c.dir.path().join("no-such-file")),
            "2_replays_2.tar.gz",
            &WriteOptions::archive(),
            &|_| {},
        )
        .await;
    assert!(missing.is_err());
    assert!(is(
        c.storage.stat("2_replays_2.tar.gz").await,
        ErrorKind::NotFound
    ));
}

async fn a_delete_removes_exactly_one_object(c: &Contract) {
    c.upload_big("1_replays_1.tar.gz").await;
    c.storage
        .write("c14_index.txt", b"", &hot(WriteMode::CreateNew))
        .await
        .unwrap();
    c.storage.delete("1_replays_1.tar.gz").await.unwrap();
    assert!(is(
        c.storage.stat("1_replays_1.tar.gz").await,
        ErrorKind::NotFound
    ));
    assert_eq!(
        names(c.driver.as_ref()).await,
        ["c14_index.txt"],
        "{}",
        c.who()
    );
}

/// Each capability checked leaves the storage as it found it.
async fn the_declared_capabilities_hold_on_the_driver_itself(c: &Contract) {
    let (driver, dir) = (c.driver.as_ref(), c.dir.path());
    let capabilities = driver.capabilities();
    let who = driver.describe();
    assert!(
        capabilities.atomic_create || capabilities.rename,
        "{who}: with neither an atomic create nor a rename, nothing can be committed safely"
    );
    let first = local_file(dir, "first", b"first");
    let second = local_file(dir, "second", b"second, longer");
    if capabilities.atomic_create {
        let create = |source| Put {
            if_absent: true,
            ..Put::new(source)
        };
        assert_eq!(driver.put("created", &create(&first)).await.unwrap(), 5);
        let refused = driver.put("created", &create(&second)).await;
        assert!(
            is(refused, ErrorKind::AlreadyExists),
            "{who}: replaced an object"
        );
        assert_eq!(driver.stat("created").await.unwrap().size, 5, "{who}");
        driver.delete("created").await.unwrap();
    }
    if capabilities.atomic_replace {
        driver.put("replaced", &Put::new(&first)).await.unwrap();
        driver.put("replaced", &Put::new(&second)).await.unwrap();
        assert_eq!(driver.stat("replaced").await.unwrap().size, 14, "{who}");
        driver.delete("replaced").await.unwrap();
    }
    if capabilities.rename {
        driver.put("from", &Put::new(&second)).await.unwrap();
        driver.put("to", &Put::new(&first)).await.unwrap();
        driver.rename("from", "to").await.unwrap();
        assert_eq!(
            driver.stat("to").await.unwrap().size,
            14,
            "{who}: rename replaces"
        );
        assert!(is(driver.stat("from").await, ErrorKind::NotFound), "{who}");
        driver.delete("to").await.unwrap();
    }
    if capabilities.server_side_hash {
        driver.put("hashed", &Put::new(&first)).await.unwrap();
        driver.check_hash("hashed", first.path()).await.unwrap();
        let mismatch = driver.check_hash("hashed", second.path()).await;
        assert!(
            mismatch.is_err(),
            "{who}: a different local file passed the hash check"
        );
        driver.delete("hashed").await.unwrap();
    }
    assert_eq!(names(driver).await, Vec::<String>::new(), "{who}");
}

/// The names the storage lists.
async fn names(driver: &dyn Driver) -> Vec<String> {
    let listed = driver.list().await.unwrap();
    listed.into_iter().map(|o| o.name).collect()
}
