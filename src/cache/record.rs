//! The action record: what one cached task run left (its outputs and result as blobs, with
//! their modes) and what it cost, so a restore can say what it saved. JSON, the same bytes
//! locally (`ac/<key>.json`) and on a remote (`/ac/<key>`); it names no machine, no user and
//! no absolute path.

use serde::{Deserialize, Serialize};

use super::key::is_hex64;
use crate::agent::Usage;

pub const RECORD_VERSION: u32 = 1;

/// One file of a cached run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedFile {
    /// The output's path as the Orchfile declares it; empty for the result.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub blake3: String,
    pub sha256: String,
    pub size: u64,
    /// Unix permission bits (`0o644`, `0o755` for a script an agent wrote).
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub orch_cache: u32,
    /// The task id, for people reading a cache; not part of the key.
    pub task: String,
    /// `shell` or the agent's name.
    pub runner: String,
    pub outputs: Vec<CachedFile>,
    /// The result file; none for a shell task that printed nothing.
    pub result: Option<CachedFile>,
    /// What the run cost (every attempt's): what a restore saves.
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// The agent session it ran in (the answer can be looked at there).
    pub session: Option<String>,
    pub duration_ms: u64,
    /// When it was stored, Unix seconds.
    pub created_unix: u64,
}

impl ActionRecord {
    pub fn usage(&self) -> Usage {
        Usage {
            cost_usd: self.cost_usd,
            input_tokens: self.input_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens,
            output_tokens: self.output_tokens,
        }
    }

    pub fn set_usage(&mut self, u: &Usage) {
        self.cost_usd = u.cost_usd;
        self.input_tokens = u.input_tokens;
        self.cache_read_tokens = u.cache_read_tokens;
        self.cache_write_tokens = u.cache_write_tokens;
        self.output_tokens = u.output_tokens;
    }

    pub fn files(&self) -> impl Iterator<Item = &CachedFile> {
        self.outputs.iter().chain(self.result.as_ref())
    }

    /// Parses a record, refusing one of another version or with a digest that could not
    /// name a blob (a remote's record is not trusted).
    pub fn parse(bytes: &[u8]) -> Result<ActionRecord, String> {
        let r: ActionRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("not an orch action record: {e}"))?;
        if r.orch_cache != RECORD_VERSION {
            return Err(format!("action record version {}", r.orch_cache));
        }
        if let Some(f) = r
            .files()
            .find(|f| !is_hex64(&f.blake3) || !is_hex64(&f.sha256))
        {
            return Err(format!("bad digest in the record of {}", f.path));
        }
        Ok(r)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serializes")
    }
}
