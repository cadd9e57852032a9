//! `[serve]`: `oiseau serve`, the HTTP endpoint a game server asks for replays it no longer has.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ByteSize;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSettings {
    /// Address and port to listen on; loopback by default, as the game server is the client.
    pub listen: String,
    /// Replays fetched from the storage are kept here; empty = `<work_dir>/serve-cache`.
    pub cache_dir: PathBuf,
    /// The cache's bound: the least recently used replays are evicted past it.
    pub cache_size: ByteSize,
    /// Storage reads at once; more requests wait their turn.
    pub max_concurrent_reads: usize,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings {
            listen: "127.0.0.1:8750".to_owned(),
            cache_dir: PathBuf::new(),
            cache_size: ByteSize(1 << 30),
            max_concurrent_reads: 4,
        }
    }
}
