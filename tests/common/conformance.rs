//! The storage contract, written once and run against every driver.
//!
//! Each driver's test builds a storage over a fresh, empty root and hands it to [`check`].

use std::path::Path;

use std::time::Duration;

use backends::{
    ObjectMeta, PARTIAL_SUFFIX, Preflight, PreflightMode, Source, SourceFeed, Storage,
    StorageError, WriteMode,
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
    storage: &dyn Storage,
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
        matches!(storage.stat(name).await, Err(StorageError::NotFound { .. })),
        "{}: {name} has its final name before its source is complete",
        storage.describe()
    );
    if complete {
        feed.complete(written);
    }
}

/// Uploads `bytes` as `name` from a growing source that [`grow`] writes meanwhile.
async fn upload_while_growing(
    storage: &dyn Storage,
    dir: &Path,
    bytes: &[u8],
    name: &str,
    complete: bool,
) -> backends::Result<ObjectMeta> {
    let path = dir.join(format!("{name}.growing"));
    std::fs::write(&path, b"").unwrap();
    let (source, feed) = Source::growing(&path);
    let (uploaded, ()) = tokio::join!(
        storage.upload(&source, name, WriteMode::CreateNew, &|_| {}),
        grow(storage, &path, feed, bytes, name, complete),
    );
    uploaded
}

/// Runs every clause of the contract against `storage`, whose root must be empty.
pub async fn check(storage: &mut dyn Storage) {
    assert_eq!(
        storage.preflight(PreflightMode::Prepare).await.unwrap(),
        Preflight::Ready
    );
    let storage = &*storage;
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let who = storage.describe();

    // An empty storage lists nothing, and missing objects are NotFound everywhere.
    assert_eq!(
        storage.list().await.unwrap(),
        Vec::<ObjectMeta>::new(),
        "{who}"
    );
    assert!(matches!(
        storage.stat("absent").await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        storage.open("absent").await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        storage.read("absent").await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        storage.delete("absent").await,
        Err(StorageError::NotFound { .. })
    ));

    // Upload streams a file in, reports its progress, and the bytes read back are the same.
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let source = local_file(dir, "big", &big);
    let last_progress = std::sync::atomic::AtomicU64::new(0);
    let meta = storage
        .upload(
            &source,
            "1_replays_1.tar.gz",
            WriteMode::CreateNew,
            &|sent| last_progress.store(sent, std::sync::atomic::Ordering::Relaxed),
        )
        .await
        .unwrap();
    assert_eq!(meta.size, big.len() as u64);
    assert_eq!(last_progress.into_inner(), big.len() as u64);
    let mut streamed = Vec::new();
    storage
        .open("1_replays_1.tar.gz")
        .await
        .unwrap()
        .read_to_end(&mut streamed)
        .await
        .unwrap();
    assert!(streamed == big, "{who}: streamed bytes differ");
    assert_eq!(
        storage.stat("1_replays_1.tar.gz").await.unwrap().size,
        big.len() as u64
    );

    // An archive is never overwritten, and a refused upload leaves the original intact.
    let other = local_file(dir, "other", b"something else");
    let refused = storage
        .upload(&other, "1_replays_1.tar.gz", WriteMode::CreateNew, &|_| {})
        .await;
    assert!(
        matches!(refused, Err(StorageError::AlreadyExists { .. })),
        "{who}: {refused:?}"
    );
    assert_eq!(
        storage.stat("1_replays_1.tar.gz").await.unwrap().size,
        big.len() as u64
    );

    // 0-byte objects exist and read back empty (a new index is empty).
    storage
        .write("c14_index.txt", b"", WriteMode::CreateNew)
        .await
        .unwrap();
    assert_eq!(storage.stat("c14_index.txt").await.unwrap().size, 0);
    assert_eq!(storage.read("c14_index.txt").await.unwrap(), b"");

    // Replace swaps the whole object.
    storage
        .write("c14_index.txt", b"1\t10\n", WriteMode::Replace)
        .await
        .unwrap();
    storage
        .write("c14_index.txt", b"1\t10\n2\t20\n", WriteMode::Replace)
        .await
        .unwrap();
    assert_eq!(
        storage.read("c14_index.txt").await.unwrap(),
        b"1\t10\n2\t20\n"
    );

    // Listing shows finished objects, sorted, with their sizes, and no partial uploads.
    let listed = storage.list().await.unwrap();
    assert_eq!(
        listed,
        vec![
            ObjectMeta {
                name: "1_replays_1.tar.gz".into(),
                size: big.len() as u64
            },
            ObjectMeta {
                name: "c14_index.txt".into(),
                size: 10
            },
        ],
        "{who}"
    );
    assert!(listed.iter().all(|o| !o.name.ends_with(PARTIAL_SUFFIX)));

    // A source still being written is streamed as it grows, and gets its final name only once
    // it is complete.
    let uploaded = upload_while_growing(storage, dir, &big, "3_replays_3.tar.gz", true).await;
    assert_eq!(uploaded.unwrap().size, big.len() as u64, "{who}");
    assert!(
        storage.read("3_replays_3.tar.gz").await.unwrap() == big,
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
            WriteMode::CreateNew,
            &|_| {},
        )
        .await;
    assert!(missing.is_err());
    assert!(matches!(
        storage.stat("2_replays_2.tar.gz").await,
        Err(StorageError::NotFound { .. })
    ));

    // Delete removes exactly one object.
    storage.delete("1_replays_1.tar.gz").await.unwrap();
    assert!(matches!(
        storage.stat("1_replays_1.tar.gz").await,
        Err(StorageError::NotFound { .. })
    ));
    let names: Vec<String> = storage
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["c14_index.txt"]);
}
