//! The catalog kept in `work_dir` answers exactly what the manifests on the storage say: late
//! replays, a replay archived twice, a damaged manifest, and a manifest that appears on the
//! storage after the catalog was made (another host's).

mod common;

use common::{Deployment, add_sized_replays, noise};

fn locate(d: &Deployment, id: u64) -> String {
    d.oiseau(&["locate", &id.to_string()], &[]).stdout()
}

#[test]
fn the_catalog_answers_what_the_manifests_say() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    add_sized_replays(&d.temp, 10, 5, 3000);
    d.oiseau(&["run"], &[]).expect_code(0);
    // 5 arrives late, after archive 1 took ids up to 14.
    add_sized_replays(&d.temp, 20, 5, 3000);
    add_sized_replays(&d.temp, 5, 1, 3000);
    d.oiseau(&["run"], &[]).expect_code(0);
    // 12 comes back changed: archived a second time.
    std::fs::write(d.temp.join("replay_12.osr"), noise(1012, 3000)).unwrap();
    add_sized_replays(&d.temp, 30, 3, 3000);
    d.oiseau(&["run"], &[]).expect_code(0);
    let archives = d.archives();
    assert_eq!(archives.len(), 3);

    // Built from the storage, then read back from work_dir: the same answers.
    for _ in 0..2 {
        assert_eq!(
            locate(&d, 5),
            format!("replay 5\tarchive 2\t{}\n", archives[1])
        );
        assert_eq!(
            locate(&d, 12),
            format!(
                "replay 12\tarchive 1\t{}\nreplay 12\tarchive 3\t{}\n",
                archives[0], archives[2]
            )
        );
        d.oiseau(&["locate", "15"], &[]).expect_code(1);
        assert!(
            d.work
                .join("catalog")
                .join(format!("{}.replays", archives[1]))
                .exists()
        );
    }
    // The latest copy is the one restored, its recorded hash checked.
    let to = d.root.path().join("restored");
    let out = d
        .oiseau(&["restore", "12", "--to", to.to_str().unwrap()], &[])
        .expect_code(0);
    out.assert_stdout_has("(hash checked)");
    assert_eq!(
        std::fs::read(to.join("replay_12.osr")).unwrap(),
        noise(1012, 3000)
    );

    // Archive 1's manifest gone from the storage: by the index's range; back (as another host
    // would upload it): exact again, though the catalog was made without it.
    let manifest = d.storage.join(format!("{}.json", archives[0]));
    let kept = std::fs::read(&manifest).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    std::fs::remove_dir_all(d.work.join("catalog")).unwrap();
    assert!(locate(&d, 11).contains("by the index's id range: no manifest"));
    std::fs::write(&manifest, &kept).unwrap();
    assert_eq!(
        locate(&d, 11),
        format!("replay 11\tarchive 1\t{}\n", archives[0])
    );

    // A manifest damaged on the storage is said so, whatever the catalog kept of it before.
    std::fs::write(&manifest, b"{\"format\": 3, \"damaged\"").unwrap();
    assert!(
        locate(&d, 11).contains("this archive's manifest is damaged"),
        "{}",
        locate(&d, 11)
    );
    let out = d.oiseau(&["verify"], &[]).expect_code(1);
    assert!(out.stdout().contains("archive 1 ("), "{}", out.stdout());
}
