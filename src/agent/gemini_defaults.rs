//! gemini's one retry knob, `general.maxAttempts`, set for orch's runs without touching the
//! person's settings.json. gemini 0.61 has no flag or variable for it; its settings come in
//! layers (schema defaults < system defaults < user < workspace < system), and the lowest file
//! layer can be moved with `GEMINI_CLI_SYSTEM_DEFAULTS_PATH`. So orch writes a system-defaults
//! file with `maxAttempts: 1` and points the child at it: a `maxAttempts` the person set in
//! their own settings.json (or the project's) still wins.
//!
//! gemini reads a system file only when the file and every directory above it are owned by
//! root and writable by no one else (`isFileAndDirectorySecureSync` in its bundle): a file
//! under `/tmp`, or one a non-root user wrote, is skipped with "Security Warning: Skipping
//! system defaults file". So the knob exists only when orch runs as root, with the file in a
//! directory that passes that test; otherwise the CLI keeps its own 10 attempts (and the
//! README says to set `maxAttempts` in settings.json).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The variable naming gemini's system-defaults file.
pub const DEFAULTS_VAR: &str = "GEMINI_CLI_SYSTEM_DEFAULTS_PATH";

/// The system-defaults file for a child whose environment is `var`, written if need be; `None`
/// when gemini would not read it (orch is not `as_root`, no secure directory) or when the
/// defaults gemini would read anyway already set `general.maxAttempts`.
pub fn defaults_file(var: &dyn Fn(&str) -> Option<String>, as_root: bool) -> Option<PathBuf> {
    if !as_root {
        return None;
    }
    // The file gemini reads without the variable: beside its system settings.
    let system_settings = var("GEMINI_CLI_SYSTEM_SETTINGS_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/gemini-cli/settings.json"));
    let stock = system_settings.with_file_name("system-defaults.json");
    let content = with_one_attempt(read_if_secure(&stock))?;
    let dirs: Vec<PathBuf> = [
        var("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("orch")),
        var("HOME").map(|h| PathBuf::from(h).join(".cache/orch")),
        Some(PathBuf::from("/run/orch")),
    ]
    .into_iter()
    .flatten()
    .collect();
    write_in_first_secure(&dirs, &content)
}

/// gemini's own defaults with `general.maxAttempts = 1` added, as the file's text; `None`
/// when they set it already (theirs is kept) or are not a JSON object.
fn with_one_attempt(existing: Option<String>) -> Option<String> {
    let mut settings = match existing {
        // gemini strips comments first; a file with comments is left to gemini as it is.
        Some(text) => serde_json::from_str::<Value>(&text).ok()?,
        None => Value::Object(Default::default()),
    };
    let general = settings
        .as_object_mut()?
        .entry("general")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()?;
    if general.contains_key("maxAttempts") {
        return None;
    }
    general.insert("maxAttempts".into(), Value::from(1));
    Some(serde_json::to_string_pretty(&settings).ok()? + "\n")
}

fn read_if_secure(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    secure(path).then_some(text)
}

/// Writes `content` into the first of `dirs` gemini would trust, under a name of its own
/// digest (so runs side by side write the same bytes, each by rename); its path.
fn write_in_first_secure(dirs: &[PathBuf], content: &str) -> Option<PathBuf> {
    let digest = blake3::hash(content.as_bytes()).to_hex();
    let name = format!("gemini-system-defaults-{}.json", &digest[..16]);
    dirs.iter().find_map(|dir| {
        // Checked before creating anything: no directory is made where it would not count.
        let existing = dir.ancestors().find(|a| a.exists())?;
        if !secure(existing) {
            return None;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .ok()?;
        let file = dir.join(&name);
        if std::fs::read_to_string(&file).ok().as_deref() != Some(content) {
            // Tasks side by side share the pid: a counter keeps their temp files apart.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = dir.join(format!("{name}.{}-{n}.tmp", std::process::id()));
            std::fs::write(&tmp, content).ok()?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).ok()?;
            std::fs::rename(&tmp, &file).ok()?;
        }
        secure(&file).then_some(file)
    })
}

/// gemini's test of a system file: it and every directory above it belong to root and are
/// writable by neither group nor others (a symlink on the way must be root's too).
fn secure(path: &Path) -> bool {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .all(|p| {
            let link_ok = std::fs::symlink_metadata(p)
                .is_ok_and(|m| !m.file_type().is_symlink() || m.uid() == 0);
            let ok = std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
            link_ok && ok
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_attempt_is_added_to_gemini_own_defaults_unless_they_set_it() {
        let fresh: Value = serde_json::from_str(&with_one_attempt(None).unwrap()).unwrap();
        assert_eq!(fresh, serde_json::json!({"general": {"maxAttempts": 1}}));
        let merged = with_one_attempt(Some(r#"{"general": {"vimMode": true}, "ui": {}}"#.into()));
        let merged: Value = serde_json::from_str(&merged.unwrap()).unwrap();
        assert_eq!(
            merged,
            serde_json::json!({"general": {"vimMode": true, "maxAttempts": 1}, "ui": {}})
        );
        assert_eq!(
            with_one_attempt(Some(r#"{"general": {"maxAttempts": 4}}"#.into())),
            None
        );
        assert_eq!(with_one_attempt(Some("[1]".into())), None);
    }

    #[test]
    fn no_file_where_gemini_would_skip_it() {
        // Under the temp dir (world-writable /tmp here): gemini would skip the file, so orch
        // makes none.
        let dir = tempfile::tempdir().unwrap();
        let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
        perms.set_mode(0o777);
        std::fs::set_permissions(dir.path(), perms).unwrap();
        let target = dir.path().join("orch");
        assert_eq!(
            write_in_first_secure(std::slice::from_ref(&target), "{}\n"),
            None
        );
        assert!(!target.exists());
        assert!(!secure(dir.path()));
    }
}
