//! Several hosts writing to one storage: two deployments (their own temp folder and work
//! folder) on the same storage, started together round after round, never lose a replay.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::target::Target;
use common::{Deployment, add_sized_replays, assert_nothing_lost, set_age};

/// A second deployment writing to `first`'s storage.
fn sharing(first: &Target, tables: &str) -> Deployment {
    let second = Deployment::new("");
    if tables.is_empty() {
        // Its local storage folder is the first one's.
        std::os::unix::fs::symlink(&first.storage, &second.storage).unwrap();
    } else {
        second.write_settings_with_tables("", tables);
    }
    second
}

fn spawn(deployment: &Deployment, env: &[(&'static str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_oiseau"))
        .arg("--config")
        .arg(&deployment.config)
        .arg("run")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().unwrap();
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `rounds` rounds of both deployments adding `per_round` replays each, then (after
/// `before_round`) running at once: every exit is 0 or 75 and nothing is lost after each. Then
/// each runs alone until both temp folders are empty, never stuck: every replay ends in exactly
/// one indexed archive, and the lock is free. Returns how many runs of the rounds exited with
/// each code.
fn race(
    first: &Target,
    second: &Deployment,
    rounds: u64,
    per_round: u64,
    before_round: impl Fn(u64),
) -> BTreeMap<i32, usize> {
    first.init();
    let mut mine = BTreeMap::new();
    let mut theirs = BTreeMap::new();
    let mut codes = BTreeMap::new();
    for round in 0..rounds {
        let first_id = 1 + round * per_round;
        mine.extend(add_sized_replays(&first.d.temp, first_id, per_round, 2048));
        theirs.extend(add_sized_replays(
            &second.temp,
            1_000_000 + first_id,
            per_round,
            2048,
        ));
        before_round(round);
        let (a, b) = (spawn(&first.d, &first.env), spawn(second, &first.env));
        for (code, stderr) in [wait(a), wait(b)] {
            assert!(
                code == 0 || code == 75,
                "round {round}: exit {code}: {stderr}"
            );
            *codes.entry(code).or_insert(0) += 1;
        }
        let seen = first.seen();
        assert_nothing_lost(&mine, &first.d.temp, seen, true);
        assert_nothing_lost(&theirs, &second.temp, seen, true);
    }
    eprintln!("exit codes over {rounds} rounds (exit code: runs): {codes:?}");
    for _ in 0..2 {
        assert_eq!(wait(spawn(&first.d, &first.env)).0, 0);
        assert_eq!(wait(spawn(second, &first.env)).0, 0);
    }
    let seen = first.seen();
    assert!(first.d.temp_names().is_empty() && second.temp_names().is_empty());
    let archived = assert_nothing_lost(&mine, &first.d.temp, seen, true);
    let all = assert_nothing_lost(&theirs, &second.temp, seen, true);
    assert_eq!(archived.len(), mine.len() + theirs.len());
    assert_eq!(all.len(), archived.len());
    assert!(!seen.join("oiseau.lock").exists(), "the lock is free");
    codes
}

/// Twenty rounds of both deployments adding 100 replays and running at once.
fn two_writers(first: &Target, second: &Deployment) {
    race(first, second, 20, 100, |_| {});
}

#[test]
fn two_writers_on_one_local_storage_lose_nothing() {
    let first = Target::local();
    let second = sharing(&first, "");
    two_writers(&first, &second);
}

/// `rclone serve s3` checks signatures but ignores `If-None-Match` and `If-Match`: oiseau finds
/// out, says so, and takes the lock by writing the lease and reading it back.
#[test]
fn two_writers_on_an_s3_server_that_ignores_conditions_lose_nothing() {
    let first = Target::s3_ignoring_conditions();
    let second = sharing(&first, &first.storage_tables());
    two_writers(&first, &second);

    // The probe's finding is remembered in work_dir; found again, it is said again.
    std::fs::remove_file(first.d.work.join("capabilities.json")).unwrap();
    add_sized_replays(&first.d.temp, 4_000_000, 3, 2048);
    let out = first.oiseau(&["run"]).expect_code(0);
    assert!(
        out.stderr().contains("ignores conditional writes")
            && out.stderr().contains("reading it back"),
        "{}",
        out.stderr()
    );

    // A live lease of another host is never overwritten there either.
    let lease = serde_json::json!({
        "host": "another-host", "pid": 1, "token": "7", "taken_at": 1, "expires_at": 2,
    })
    .to_string();
    first.plant_lock(lease.as_bytes());
    add_sized_replays(&first.d.temp, 5_000_000, 3, 2048);
    let out = first.oiseau(&["run"]).expect_code(75);
    out.assert_stderr_has("another writer holds the lock");
    assert_eq!(
        std::fs::read_to_string(first.storage.join("oiseau.lock")).unwrap(),
        lease
    );
    assert_eq!(first.d.temp_names().len(), 3);
}

#[test]
fn two_writers_on_one_ftp_server_lose_nothing() {
    let first = Target::ftp();
    let second = sharing(&first, &first.storage_tables());
    two_writers(&first, &second);
}

/// SeaweedFS honours conditional writes: the lock is one exclusive create, taken over by one
/// conditional replace.
#[test]
fn two_writers_on_seaweedfs_lose_nothing() {
    let first = Target::seaweedfs();
    let second = sharing(&first, &first.storage_tables());
    two_writers(&first, &second);
}

/// A lease whose holder is gone: a process of this host that no longer runs, or (where the
/// test can age the lock object) another host's lease that has not been written for 7 hours.
fn plant_dead_lease(target: &Target, round: u64) {
    let foreign = round % 2 == 1 && target.is_folder();
    let lease = serde_json::json!({
        "host": if foreign { "a-host-long-gone".to_owned() } else { shared::host_name() },
        // Above any pid Linux hands out.
        "pid": 4_194_304,
        "token": format!("dead-{round}"),
        "taken_at": 1,
        "expires_at": 2,
    });
    target.plant_lock(lease.to_string().as_bytes());
    if foreign {
        set_age(
            &target.storage.join("oiseau.lock"),
            Duration::from_secs(7 * 3600),
        );
    }
}

/// Forty rounds of a dead writer's lease left in the lock and two live writers racing to take
/// it over: one wins each time, the other exits 75 (never 1), nothing is lost, and neither is
/// stuck afterwards.
fn two_writers_race_for_a_dead_lease(first: &Target, second: &Deployment) {
    let codes = race(first, second, 40, 10, |round| {
        plant_dead_lease(first, round)
    });
    assert!(codes.get(&0).copied().unwrap_or(0) >= 40, "{codes:?}");
}

#[test]
fn two_writers_racing_for_a_dead_lease_on_local_storage_lose_nothing() {
    let first = Target::local();
    let second = sharing(&first, "");
    two_writers_race_for_a_dead_lease(&first, &second);
}

#[test]
fn two_writers_racing_for_a_dead_lease_on_ftp_lose_nothing() {
    let first = Target::ftp();
    let second = sharing(&first, &first.storage_tables());
    two_writers_race_for_a_dead_lease(&first, &second);
}

#[test]
fn two_writers_racing_for_a_dead_lease_on_seaweedfs_lose_nothing() {
    let first = Target::seaweedfs();
    let second = sharing(&first, &first.storage_tables());
    two_writers_race_for_a_dead_lease(&first, &second);
}
