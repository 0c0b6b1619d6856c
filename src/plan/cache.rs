//! The output cache's settings as a plan holds them (`cache`, `cache_max_size` and the
//! `remote_cache*` fields of `[settings]`), and the size values `cache_max_size` takes.
//! What the cache does with them is [`crate::cache`]'s.

use std::time::Duration;

/// `[settings]`'s cache fields, resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheSettings {
    /// `cache = false` turns the cache off for every task (a task's own `cache = false`
    /// turns it off for that task).
    pub enabled: bool,
    /// The local store is pruned to this many bytes, least recently used first.
    pub max_size: u64,
    /// `remote_cache = "http://..."`: a Bazel HTTP cache shared with others.
    pub remote: Option<RemoteCache>,
}

/// 5 GiB: a few thousand agent answers with their outputs fit many times over, and it is
/// small next to a disk.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 5 << 30;

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            max_size: DEFAULT_CACHE_MAX_SIZE,
            remote: None,
        }
    }
}

/// A task's `cache` when it says nothing (serde's default for a plan read back).
pub fn on() -> bool {
    true
}

/// A remote cache speaking the Bazel HTTP protocol.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteCache {
    /// `http://host:port/prefix`, without a trailing `/`.
    pub url: String,
    pub mode: RemoteMode,
    /// Where the credentials are read from at build time (never the credentials).
    pub auth: Option<RemoteAuth>,
    /// `remote_cache_connect_timeout`: a server that has not taken the connection by then
    /// is not there.
    pub connect_timeout: Duration,
    /// `remote_cache_stall_timeout`: how long a request may go without a byte moving either
    /// way (waiting for an answer, or in the middle of a body). Never a limit on a whole
    /// transfer: a multi-GB blob on a slow link takes what it takes while it moves.
    pub stall_timeout: Duration,
}

/// A cache on the network takes a connection in milliseconds.
pub const DEFAULT_REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A server answers a cache request in milliseconds and a body moves without pause; this
/// much silence is a server or link that hangs, and costs the build this once.
pub const DEFAULT_REMOTE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RemoteMode {
    /// Restore from it, never upload (CI readers, untrusted machines).
    Read,
    ReadWrite,
}

impl RemoteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteMode::Read => "read",
            RemoteMode::ReadWrite => "read-write",
        }
    }
}

/// `remote_cache_auth = "bearer" | "basic"` with `remote_cache_auth_env = "NAME"`: the
/// variable holds the token (bearer) or `user:password` (basic).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteAuth {
    pub scheme: AuthScheme,
    pub env: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AuthScheme {
    Bearer,
    Basic,
}

/// A size: a number of bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024,
/// an optional `B` or `iB` after it: `500M`, `10GB`, `1.5GiB`).
pub fn parse_size(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(i) if *i > 0 => Ok(*i as u64),
        toml::Value::String(s) => {
            let t = s.trim();
            let upper = t.to_ascii_uppercase();
            let body = upper
                .strip_suffix("IB")
                .or_else(|| upper.strip_suffix('B'))
                .unwrap_or(&upper);
            let (digits, unit) = match body.char_indices().last() {
                Some((i, c)) if c.is_ascii_alphabetic() => (&body[..i], Some(c)),
                _ => (body, None),
            };
            let shift = match unit {
                None => 0,
                Some('K') => 10,
                Some('M') => 20,
                Some('G') => 30,
                Some('T') => 40,
                Some(_) => return Err(format!("unknown unit in `{s}` (K, M, G or T)")),
            };
            let n: f64 = digits
                .trim()
                .parse()
                .map_err(|_| format!("expected a size like \"5G\" or \"500M\", found `{s}`"))?;
            let bytes = n * (1u64 << shift) as f64;
            if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
                return Err(format!("`{s}` is not a size above zero"));
            }
            Ok(bytes as u64)
        }
        other => Err(format!(
            "expected a size like \"5G\" or a number of bytes, found {other}"
        )),
    }
}

/// `5.0 GiB`, `312 KiB`, `17 B`: a size for people.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        let s = |x: &str| parse_size(&toml::Value::String(x.into()));
        assert_eq!(s("500M"), Ok(500 << 20));
        assert_eq!(s("10GB"), Ok(10 << 30));
        assert_eq!(s("1.5GiB"), Ok(3 << 29));
        assert_eq!(s("4096"), Ok(4096));
        assert_eq!(s("2k"), Ok(2048));
        assert_eq!(parse_size(&toml::Value::Integer(7)), Ok(7));
        assert!(s("lots").is_err());
        assert!(s("5X").is_err());
        assert!(s("0").is_err());
        assert!(parse_size(&toml::Value::Integer(-1)).is_err());
        assert_eq!(format_size(17), "17 B");
        assert_eq!(format_size(5 << 30), "5.0 GiB");
    }
}
