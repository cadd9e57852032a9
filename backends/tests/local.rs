//! The local driver against the storage contract, and what only a local directory can show.

mod conformance;

use backends::local::{LocalConfig, LocalStorage};
use backends::{Storage, StorageError};

#[tokio::test]
async fn local_directory_keeps_the_storage_contract() {
    let root = tempfile::tempdir().unwrap();
    let storage = LocalStorage::new(&LocalConfig {
        path: root.path().to_owned(),
    })
    .unwrap();
    conformance::check(&storage).await;
    // Nothing is left behind under a temporary name.
    let names: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["c14_index.txt"]);
}

#[tokio::test]
async fn a_missing_root_is_an_error_not_an_empty_listing() {
    let root = tempfile::tempdir().unwrap();
    let storage = LocalStorage::new(&LocalConfig {
        path: root.path().join("gone"),
    })
    .unwrap();
    std::fs::remove_dir_all(root.path()).unwrap();
    assert!(matches!(
        storage.list().await,
        Err(StorageError::NotFound { .. })
    ));
}
