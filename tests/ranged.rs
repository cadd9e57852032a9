//! Ranged restores: one replay read back from its archive's range on every backend, for
//! about its own size; the archives without ranges (the original tool's, format 2 manifests)
//! still restored by streaming; a damaged range caught by the replay's hash.

mod common;

use common::Deployment;
use common::ftp::{FTP_PASSWORD, PyFtpServer};
use common::s3::MotoServer;
use common::target::Target;

/// Replays of 300 KiB of noise: 40 of them make an archive of 12 MiB, twelve gzip members.
const REPLAY_SIZE: usize = 300 * 1024;
const REPLAYS: u64 = 40;
/// What one replay may cost beyond its own size, read from the storage.
const MARGIN: u64 = 2 << 20;

/// Archives the replays, restores `ids` and checks what came back and what it cost.
fn restore_costs_about_the_replays(
    label: &str,
    oiseau: &dyn Fn(&[&str]) -> common::Finished,
    d: &Deployment,
) {
    oiseau(&["init"]).expect_code(0);
    let replays = common::add_sized_replays(&d.temp, 1, REPLAYS, REPLAY_SIZE);
    oiseau(&["run"]).expect_code(0);
    let to = d.root.path().join("restored");
    for ids in [vec!["17"], vec!["3", "29"]] {
        let mut args = vec!["restore", "--to", to.to_str().unwrap(), "--overwrite"];
        args.extend(ids.iter().copied());
        let out = oiseau(&args).expect_code(0);
        for id in &ids {
            let name = format!("replay_{id}.osr");
            assert_eq!(
                std::fs::read(to.join(&name)).unwrap(),
                replays[&name],
                "{label}: {name}"
            );
        }
        let read = common::bytes_read(&out.stdout());
        let bound = ids.len() as u64 * (REPLAY_SIZE as u64 + MARGIN);
        assert!(
            read <= bound,
            "{label}: {read} bytes read for {ids:?}, more than {bound}"
        );
        assert!(
            read >= ids.len() as u64 * REPLAY_SIZE as u64,
            "{label}: {read}"
        );
    }
}

#[test]
fn one_replay_costs_about_its_size_on_every_backend() {
    for (backend, target) in Target::all() {
        restore_costs_about_the_replays(backend, &|args| target.oiseau(args), &target.d);
    }
    let pyftpdlib = PyFtpServer::start();
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!(
            "[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"{}\"\ntimeout = \"10s\"\n",
            pyftpdlib.url("")
        ),
    );
    restore_costs_about_the_replays(
        "pyftpdlib",
        &|args| d.oiseau(args, &[("FTP_PASSWORD", FTP_PASSWORD)]),
        &d,
    );
    let moto = MotoServer::start();
    moto.create_bucket("ranged");
    let d = Deployment::new("");
    d.write_settings_with_tables("", &moto.settings("ranged", "STANDARD"));
    restore_costs_about_the_replays("s3", &|args| d.oiseau(args, &common::s3::env()), &d);
}

/// The storage's manifest of the only archive, with its ranges taken out (format 2), and
/// the local cache of manifests emptied.
fn downgrade_manifest(d: &Deployment) {
    let archive = &d.archives()[0];
    let path = d.storage.join(format!("{archive}.json"));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(manifest["format"], 3);
    let object = manifest.as_object_mut().unwrap();
    object.remove("ranges");
    object.insert("format".into(), 2.into());
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(d.work.join("catalog"));
}

#[test]
fn archives_without_ranges_are_streamed_and_a_damaged_range_is_caught() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    let replays = common::add_sized_replays(&d.temp, 1, REPLAYS, REPLAY_SIZE);
    d.oiseau(&["run"], &[]).expect_code(0);
    let archive = d.storage.join(&d.archives()[0]);
    let to = d.root.path().join("restored");
    let to_arg = to.to_str().unwrap();

    // A replay in the middle of the archive's 2nd MiB: damage a byte of its data.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.storage.join(format!("{}.json", d.archives()[0]))).unwrap(),
    )
    .unwrap();
    let range = &manifest["ranges"][5];
    let offset = range[0].as_u64().unwrap() + range[1].as_u64().unwrap() / 2;
    let pristine = std::fs::read(&archive).unwrap();
    let mut damaged = pristine.clone();
    damaged[usize::try_from(offset).unwrap()] ^= 0xff;
    std::fs::write(&archive, &damaged).unwrap();
    let out = d
        .oiseau(&["restore", "6", "30", "--to", to_arg], &[])
        .expect_code(1);
    out.assert_stdout_has("not restored: replay_6.osr");
    assert!(
        !to.join("replay_6.osr").exists(),
        "nothing is left of a damaged replay"
    );
    assert_eq!(
        std::fs::read(to.join("replay_30.osr")).unwrap(),
        replays["replay_30.osr"]
    );
    let out = d
        .oiseau(&["verify", "--deep", "--sample", "40"], &[])
        .expect_code(1);
    // Whichever replay the sample starts at, the damaged one is named; its neighbours in
    // the same gzip member may be named too.
    let stdout = out.stdout();
    let damaged = stdout
        .lines()
        .find(|line| line.contains("replays read from their ranges are wrong"))
        .unwrap_or_else(|| panic!("no damaged archive in {stdout}"));
    assert!(damaged.contains("replay_6.osr ("), "{stdout}");
    std::fs::write(&archive, &pristine).unwrap();
    let out = d
        .oiseau(&["verify", "--deep", "--sample", "3"], &[])
        .expect_code(0);
    assert!(
        out.stdout()
            .contains("replays read from their ranges and hashed, at most 3 per archive"),
        "{}",
        out.stdout()
    );

    // A replay whose entry spans two gzip members comes back whole from its range.
    let ranges = manifest["ranges"].as_array().unwrap();
    let spanning = ranges
        .iter()
        .position(|range| range[1].as_u64().unwrap() > 1 << 20)
        .expect("300 KiB replays cross some 1 MiB member boundary");
    let id = manifest["replays"][spanning][0]
        .as_u64()
        .unwrap()
        .to_string();
    let out = d
        .oiseau(&["restore", &id, "--to", to_arg, "--overwrite"], &[])
        .expect_code(0);
    let name = format!("replay_{id}.osr");
    assert_eq!(std::fs::read(to.join(&name)).unwrap(), replays[&name]);
    assert!(common::bytes_read(&out.stdout()) <= REPLAY_SIZE as u64 + MARGIN);

    // Format 2: no ranges, the archive is streamed until the replay is out.
    downgrade_manifest(&d);
    let out = d
        .oiseau(&["restore", "40", "--to", to_arg], &[])
        .expect_code(0);
    assert_eq!(
        std::fs::read(to.join("replay_40.osr")).unwrap(),
        replays["replay_40.osr"]
    );
    assert!(
        common::bytes_read(&out.stdout()) > (REPLAYS - 1) * REPLAY_SIZE as u64,
        "the whole archive up to the last replay: {}",
        out.stdout()
    );
    // And a sampled verify reads such an archive whole.
    let out = d
        .oiseau(&["verify", "--deep", "--sample", "3"], &[])
        .expect_code(0);
    let read: u64 = out
        .stdout()
        .split(" bytes read)")
        .next()
        .and_then(|head| head.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {}", out.stdout()));
    let size = std::fs::metadata(&archive).unwrap().len();
    assert!(read >= size, "{read} bytes read of an archive of {size}");
}
