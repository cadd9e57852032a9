//! The storage contract, written once and run against every driver.
//!
//! Each driver's test builds a storage over a fresh, empty root and hands it to [`check`].

use std::path::Path;

use std::time::Duration;

use std::sync::Arc;

use backends::{
    ByteRange, Driver, ErrorKind, ObjectMeta, PARTIAL_SUFFIX, PreflightMode, Put, Readiness,
    Source, SourceFeed, Storage, WriteMode, WriteOptions,
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

/// Runs every clause of the contract against `driver`, whose root must be empty: through
/// the shared commit path, and the capabilities it declares on the driver itself.
pub async fn check(driver: Arc<dyn Driver>) {
    let storage = &Storage::new(Arc::clone(&driver));
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
    assert_eq!(
        storage.prepare(PreflightMode::Prepare).await.unwrap(),
        Readiness::Ready
    );
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let who = storage.describe();

    // An empty storage lists nothing, and missing objects are NotFound everywhere.
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

    // Upload streams a file in, reports its progress, and the bytes read back are the same.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    let source = local_file(dir, "big", &big);
    let last_progress = std::sync::atomic::AtomicU64::new(0);
    let meta = storage
        .upload(
            &source,
            "1_replays_1.tar.gz",
            &WriteOptions::archive(),
            &|sent| last_progress.store(sent, std::sync::atomic::Ordering::Relaxed),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, big.len() as u64);
    assert_eq!(last_progress.into_inner(), big.len() as u64);
    let streamed = read(storage, "1_replays_1.tar.gz", ByteRange::ALL).await;
    assert!(streamed == big, "{who}: streamed bytes differ");

    // Ranged reads return exactly the bytes asked for: inside, at the end, past the end.
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
    assert_eq!(
        storage.stat("1_replays_1.tar.gz").await.unwrap().size,
        big.len() as u64
    );

    // An archive is never overwritten, and a refused upload leaves the original intact.
    let other = local_file(dir, "other", b"something else");
    let refused = storage
        .upload(
            &other,
            "1_replays_1.tar.gz",
            &WriteOptions::archive(),
            &|_| {},
        )
        .await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == ErrorKind::AlreadyExists),
        "{who}: {refused:?}"
    );
    assert_eq!(
        storage.stat("1_replays_1.tar.gz").await.unwrap().size,
        big.len() as u64
    );

    // 0-byte objects exist and read back empty (a new index is empty).
    storage
        .write("c14_index.txt", b"", &hot(WriteMode::CreateNew))
        .await
        .unwrap();
    assert_eq!(storage.stat("c14_index.txt").await.unwrap().size, 0);
    assert_eq!(storage.read_small("c14_index.txt").await.unwrap().1, b"");

    // Replace swaps the whole object.
    storage
        .write("c14_index.txt", b"1\t10\n", &hot(WriteMode::Replace))
        .await
        .unwrap();
    let (read_at, _) = storage.read_small("c14_index.txt").await.unwrap();
    storage
        .write("c14_index.txt", b"1\t10\n2\t20\n", &hot(WriteMode::Replace))
        .await
        .unwrap();
    assert_eq!(
        storage.read_small("c14_index.txt").await.unwrap().1,
        b"1\t10\n2\t20\n"
    );

    // A replace conditional on the version read earlier fails once another write came in
    // between, and leaves the newer object alone; on the current version it goes through.
    let stale = storage
        .write(
            "c14_index.txt",
            b"1\t10\n2\t99\n",
            &hot(WriteMode::ReplaceIfUnchanged(read_at.version_token())),
        )
        .await;
    assert!(is(stale, ErrorKind::ConditionFailed), "{who}");
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

    // Listing shows finished objects, sorted, with their sizes, and no partial uploads.
    let listed = storage.list().await.unwrap();
    let sizes: Vec<(&str, u64)> = listed.iter().map(|o| (o.name.as_str(), o.size)).collect();
    assert_eq!(
        sizes,
        [
            ("1_replays_1.tar.gz", big.len() as u64),
            ("c14_index.txt", 10)
        ],
        "{who}"
    );
    assert!(listed.iter().all(|o| !o.name.ends_with(PARTIAL_SUFFIX)));

    // A source still being written is streamed as it grows, and gets its final name only once
    // it is complete.
    let uploaded = upload_while_growing(storage, dir, &big, "3_replays_3.tar.gz", true).await;
    assert_eq!(uploaded.unwrap().size, big.len() as u64, "{who}");
    assert!(
        storage.read_small("3_replays_3.tar.gz").await.unwrap().1 == big,
        "{who}: grown bytes differ"
    );
    storage.delete("3_replays_3.tar.gz").await.unwrap();

    // A source abandoned halfway fails its upload and leaves nothing behind, not even a
    // partial object.
    let refused =
        upload_while_growing(storage, dir, &big[..1_000_000], "4_replays_4.tar.gz", false).await;
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

    // A missing source file fails the upload and creates nothing.
    let missing = storage
        .upload(
            &Source::file(dir.join("no-such-file")),
            "2_replays_2.tar.gz",
            &WriteOptions::archive(),
            &|_| {},
        )
        .await;
    assert!(missing.is_err());
    assert!(is(
        storage.stat("2_replays_2.tar.gz").await,
        ErrorKind::NotFound
    ));

    // Delete removes exactly one object.
    storage.delete("1_replays_1.tar.gz").await.unwrap();
    assert!(is(
        storage.stat("1_replays_1.tar.gz").await,
        ErrorKind::NotFound
    ));
    assert_eq!(names(driver.as_ref()).await, ["c14_index.txt"], "{who}");

    check_capabilities(driver.as_ref(), dir).await;
}

/// The capabilities the driver declares, checked on the driver itself; each one checked
/// leaves the storage as it found it.
async fn check_capabilities(driver: &dyn Driver, dir: &Path) {
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
    assert_eq!(names(driver).await, ["c14_index.txt"], "{who}");
}

/// The names the storage lists.
async fn names(driver: &dyn Driver) -> Vec<String> {
    let listed = driver.list().await.unwrap();
    listed.into_iter().map(|o| o.name).collect()
}
