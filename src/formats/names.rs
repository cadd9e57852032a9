//! Every object name on the storage, built and parsed here and nowhere else: the index, the
//! archives, their manifests and access windows, the index copies and the lock. The names are
//! the original tool's (plus the manifests, the windows and the lock), so an existing backup
//! is taken over as it is. Partial
//! uploads are the storage layer's own (`backends::partial_name`).

/// Name of the index in the storage root.
pub const INDEX_NAME: &str = "c14_index.txt";

/// The lock a writer holds on the storage from choosing an archive id to committing it.
pub const LOCK_NAME: &str = "oiseau.lock";

/// A writer's probe of the storage's conditional writes, `oiseau-probe.<token>`: made and
/// removed within one command.
pub fn probe_name(token: &str) -> String {
    format!("oiseau-probe.{token}")
}

/// `<unix_time>_replays_<id>.tar.gz`, the original tool's archive name.
pub fn archive_name(timestamp: u64, archive_id: u64) -> String {
    format!("{timestamp}_replays_{archive_id}.tar.gz")
}

/// The id in `<unix_time>_replays_<id>.tar.gz`.
pub fn archive_id_of(name: &str) -> Option<u64> {
    let (stamp, rest) = name.split_once("_replays_")?;
    let id = rest.strip_suffix(".tar.gz")?;
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// The `<unix_time>` an archive's name starts with.
pub fn archive_timestamp(name: &str) -> Option<u64> {
    archive_id_of(name)?;
    name.split('_').next()?.parse().ok()
}

/// The manifest's object name for an archive.
pub fn manifest_name(archive_name: &str) -> String {
    format!("{archive_name}.json")
}

/// The object holding the access windows of an archive that is one gzip stream (see
/// `formats::access`).
pub fn access_name(archive_name: &str) -> String {
    format!("{archive_name}.access")
}

/// `<unix_time>_c14_index.txt`: the index as it was after the run of that time.
pub fn index_copy_name(timestamp: u64) -> String {
    format!("{timestamp}_{INDEX_NAME}")
}

/// The `<unix_time>` of an index copy's name; `None` for any other name.
pub fn index_copy_timestamp(name: &str) -> Option<u64> {
    let stamp = name.strip_suffix(INDEX_NAME)?.strip_suffix('_')?;
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stamp.parse().ok()
}

/// The archive a manifest's name describes; `None` for any other name.
pub fn manifest_archive(name: &str) -> Option<&str> {
    let archive = name.strip_suffix(".json")?;
    archive_id_of(archive).map(|_| archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_round_trip_and_others_are_not_archives() {
        let name = archive_name(1_571_000_000, 12);
        assert_eq!(name, "1571000000_replays_12.tar.gz");
        assert_eq!(archive_id_of(&name), Some(12));
        assert_eq!(archive_timestamp(&name), Some(1_571_000_000));
        for other in [
            "c14_index.txt",
            "1571000000_c14_index.txt",
            "1571000000_replays_12.tar.gz.json",
            "x_replays_12.tar.gz",
            "_replays_12.tar.gz",
            "1571000000_replays_12.tar.gz.1-0.oiseau-part",
        ] {
            assert_eq!(archive_id_of(other), None, "{other}");
        }
        assert_eq!(archive_id_of(&backends::partial_name(&name)), None);
        assert_eq!(manifest_name(&name), "1571000000_replays_12.tar.gz.json");
        assert_eq!(index_copy_name(5), "5_c14_index.txt");
        assert_eq!(index_copy_timestamp("5_c14_index.txt"), Some(5));
        assert_eq!(index_copy_timestamp("c14_index.txt"), None);
        assert_eq!(index_copy_timestamp("x_c14_index.txt"), None);
        assert_eq!(manifest_archive(&manifest_name(&name)), Some(name.as_str()));
        assert_eq!(manifest_archive("notes.json"), None);
    }
}
