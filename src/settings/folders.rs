//! The folders oiseau writes to and deletes from stay apart: the temp folder (replays are
//! deleted from it once archived), `work_dir` (its spool is cleared of stale archives), the
//! serve cache (its least recently used replays are evicted) and a storage that is a folder of
//! this machine. Two of them sharing files would let one's cleanup delete the other's data, so
//! an overlap is refused when the settings load, after symbolic links and `..` are resolved.

use std::path::{Component, Path, PathBuf};

use super::SettingsError;

/// What oiseau keeps directly in `work_dir`: no other folder may be, or be inside, one of them.
const WORK_DIR_ENTRIES: &[&str] = &[
    "spool",
    "catalog",
    "lock",
    "journal.json",
    "last-run.json",
    "capabilities",
];

/// One folder from the settings: the key that sets it, and where it really is.
struct Folder {
    key: &'static str,
    real: PathBuf,
}

/// Fails when two of `folders` (setting key, path) are the same folder or one lies inside the
/// other, except a folder inside `work_dir` outside oiseau's own entries there (the serve
/// cache's default is `work_dir/serve-cache`).
pub fn check_apart(folders: &[(&'static str, &Path)]) -> Result<(), SettingsError> {
    let folders: Vec<Folder> = folders
        .iter()
        .map(|(key, path)| Folder {
            key,
            real: resolve(path),
        })
        .collect();
    for (at, a) in folders.iter().enumerate() {
        for b in &folders[at + 1..] {
            if let Some(problem) = overlap(a, b).or_else(|| overlap(b, a)) {
                return Err(SettingsError(problem));
            }
        }
    }
    Ok(())
}

/// Why `inner` may not be where it is relative to `outer`, if it may not.
fn overlap(outer: &Folder, inner: &Folder) -> Option<String> {
    let Ok(below) = inner.real.strip_prefix(&outer.real) else {
        return None;
    };
    let place = match below.components().next() {
        None => {
            return Some(format!(
                "{} and {} are the same folder ({}); give each its own folder, as the files \
                 one of them deletes would be the other's",
                outer.key,
                inner.key,
                outer.real.display()
            ));
        }
        Some(Component::Normal(first)) if outer.key == "work_dir" => {
            let first = first.to_string_lossy();
            if !WORK_DIR_ENTRIES.contains(&first.as_ref()) {
                return None;
            }
            format!("oiseau's own {first} in work_dir")
        }
        Some(_) => outer.key.to_owned(),
    };
    Some(format!(
        "{} ({}) is inside {place} ({}); move it out, as the files one of them deletes would be \
         the other's",
        inner.key,
        inner.real.display(),
        outer.real.display()
    ))
}

/// The path with symbolic links and `..` resolved, also where its last parts do not exist yet:
/// the longest existing ancestor is resolved by the system, the rest is added part by part.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let parts: Vec<Component<'_>> = absolute.components().collect();
    for existing in (1..=parts.len()).rev() {
        let ancestor: PathBuf = parts[..existing].iter().collect();
        let Ok(mut real) = ancestor.canonicalize() else {
            continue;
        };
        for part in &parts[existing..] {
            match part {
                Component::ParentDir => {
                    real.pop();
                }
                Component::Normal(name) => real.push(name),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return real;
    }
    absolute
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_through_links_and_dot_dot_even_where_they_do_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("real")).unwrap();
        std::os::unix::fs::symlink(real.join("real"), real.join("link")).unwrap();
        assert_eq!(
            resolve(&real.join("link/new/../other")),
            real.join("real/other")
        );
        assert_eq!(resolve(&real.join("link")), real.join("real"));
    }

    #[test]
    fn the_same_folder_or_one_inside_another_is_refused_naming_both_settings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("work")).unwrap();
        std::os::unix::fs::symlink(root.join("work"), root.join("alias")).unwrap();
        let temp = root.join("temp");
        let work = root.join("work");
        let refused = [
            (root.join("alias"), "same folder"),
            (root.join("work/spool/backup"), "oiseau's own spool"),
            (root.join("work/catalog"), "oiseau's own catalog"),
            (root.join("temp/backup"), "inside temp_dir"),
            (root.clone(), "inside storage.local.path"),
        ];
        for (storage, why) in refused {
            let err = check_apart(&[
                ("temp_dir", &temp),
                ("work_dir", &work),
                ("storage.local.path", &storage),
            ])
            .expect_err(why)
            .0;
            assert!(err.contains("storage.local.path"), "{err}");
            assert!(err.contains(why), "{why}: {err}");
        }
        let fine = [
            ("temp_dir", temp.as_path()),
            ("work_dir", work.as_path()),
            ("serve.cache_dir", &work.join("serve-cache")),
            ("storage.local.path", &root.join("backup")),
        ];
        check_apart(&fine).unwrap();
    }
}
