//! `oiseau demo`: a real backup into a scratch folder, with nothing set up beforehand.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use backends::local::LocalConfig;

use crate::commands::init::init;
use crate::formats::names::INDEX_NAME;
use crate::run::{RunOptions, RunReport, run};
use crate::sample;
use crate::settings::Settings;
use crate::units::ByteSize;

const DEMO_SETTINGS: &str = r#"# Written by `oiseau demo`; every setting is described in settings.sample.toml.
temp_dir = "temp"
threshold = "5 MiB"
min_age = "60s"
work_dir = ".oiseau"

[storage]
backend = "local"

[storage.local]
path = "backup"
"#;

/// Left in every demo folder: a folder without it that is not empty is someone's, and the
/// demo, which archives and deletes replays, never touches it.
const MARKER: &str = ".oiseau-demo";

/// Makes the scratch folder, fills its temp folder with sample replays (old enough to be
/// archived, plus a few that just arrived and a file that is not a replay), initialises a local
/// storage, runs a backup and prints what it made.
pub async fn demo(dir: Option<PathBuf>) -> Result<()> {
    let dir = match dir {
        Some(dir) => dir,
        None => {
            let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
            std::env::temp_dir().join(format!("oiseau-demo-{stamp}"))
        }
    };
    claim_folder(&dir)?;
    let temp = dir.join("temp");
    std::fs::create_dir_all(&temp)
        .with_context(|| format!("cannot create the demo folder {}", dir.display()))?;
    let config = dir.join("settings.toml");
    std::fs::write(&config, DEMO_SETTINGS)?;

    let landed_earlier = SystemTime::now() - Duration::from_secs(600);
    let old_bytes = sample::write_replays(&temp, 1000, 240, 1, landed_earlier)?;
    let new_bytes = sample::write_replays(&temp, 1240, 5, 2, SystemTime::now())?;
    std::fs::write(
        temp.join("README.txt"),
        "not a replay: oiseau leaves it here\n",
    )?;
    say!(
        "demo folder {}: 240 replays ({}) ready, 5 just arrived ({}), 1 other file",
        dir.display(),
        ByteSize(old_bytes),
        ByteSize(new_bytes)
    );

    let settings = Settings::load(&config, true, &|_| None)?;
    let storage_dir = LocalConfig::from_storage(&settings.storage)?.path;
    if !storage_dir.join(INDEX_NAME).exists() {
        init(&settings).await?;
    }
    match run(&settings, RunOptions::default()).await? {
        RunReport::Archived(done) => say!(
            "archived {} replays into {} ({}) in {:.1?}",
            done.replays,
            done.archive_name,
            ByteSize(done.archive_bytes),
            done.duration
        ),
        other => anyhow::bail!("the demo run archived nothing: {other:?}"),
    }
    print_tree(&storage_dir, "storage")?;
    print_tree(&temp, "temp folder now")?;
    // The path that works from here, whether or not oiseau is on PATH.
    let oiseau = std::env::current_exe()
        .map_or_else(|_| "oiseau".to_owned(), |exe| exe.display().to_string());
    say!(
        "\ntry: {oiseau} --config {config} status\n     {oiseau} --config {config} locate 1000\n     \
         {oiseau} --config {config} restore 1000 --to {restored}\n     {oiseau} --config {config} verify --deep",
        config = config.display(),
        restored = dir.join("restored").display(),
    );
    Ok(())
}

/// Makes `dir` the demo's: a new or empty folder, or one an earlier demo made. Anything else
/// may hold real replays, and is refused.
fn claim_folder(dir: &Path) -> Result<()> {
    let marker = dir.join(MARKER);
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the demo folder {}", dir.display()));
        }
    };
    if !empty && !marker.exists() {
        anyhow::bail!(
            "{} is not empty and was not made by `oiseau demo`: the demo archives and deletes \
             replays, so it only uses a new or empty folder; pass another --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&marker, "made by `oiseau demo`\n"))
        .with_context(|| format!("cannot create the demo folder {}", dir.display()))
}

fn print_tree(dir: &Path, title: &str) -> Result<()> {
    let mut entries: Vec<(String, u64)> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| {
            let size = e.metadata().map_or(0, |m| m.len());
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    entries.sort();
    say!("\n{title} ({}):", dir.display());
    for (name, size) in entries {
        say!("  {size:>10}  {name}");
    }
    Ok(())
}
