//! The names uploads are written under before they are moved into place: whose they are is
//! in the name, so that a tidy step removes only its own host's leftovers.

/// Suffix of the temporary name an upload is written under before it is renamed into place.
///
/// A name carrying it is never a finished object: listings show it only so that stray partial
/// uploads left by a killed run can be reported and removed.
pub const PARTIAL_SUFFIX: &str = ".oiseau-part";

/// A fresh temporary name for an upload of `name`, in the same directory:
/// `<name>.<pid>-<attempt>@<host>.oiseau-part`.
///
/// Unique per host, process and attempt, so that no two writers (a killed run's leftover child
/// and the run that resumes it, two hosts sharing a storage) ever write into the same partial
/// file, and a tidy step can tell whose a partial upload is (see [`partial_owner`]).
pub fn partial_name(name: &str) -> String {
    static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attempt = ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{name}.{}-{attempt}@{}{PARTIAL_SUFFIX}",
        std::process::id(),
        shared::host_name()
    )
}

/// The host and process that wrote a partial upload, from its name; `None` for a name that is
/// not a partial upload. Partial uploads of earlier versions carry no host: `Some(None, pid)`.
pub fn partial_owner(name: &str) -> Option<(Option<String>, u32)> {
    let stem = name.strip_suffix(PARTIAL_SUFFIX)?;
    let (stem, host) = match stem.rsplit_once('@') {
        Some((stem, host)) => (stem, Some(host.to_owned())),
        None => (stem, None),
    };
    let (_, writer) = stem.rsplit_once('.')?;
    let (pid, _attempt) = writer.split_once('-')?;
    Some((host, pid.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_say_whose_they_are() {
        let partial = partial_name("1_replays_1.tar.gz");
        assert!(partial.starts_with("1_replays_1.tar.gz."), "{partial}");
        assert_eq!(
            partial_owner(&partial),
            Some((Some(shared::host_name()), std::process::id()))
        );
        assert_eq!(
            partial_owner("1_replays_1.tar.gz.4242-0.oiseau-part"),
            Some((None, 4242)),
            "an earlier version's partial upload"
        );
        assert_eq!(partial_owner("1_replays_1.tar.gz"), None);
    }
}
