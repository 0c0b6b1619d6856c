//! Validation of the output cache's fields of `[settings]`: `cache`, `cache_max_size`,
//! `remote_cache` (an `http://` URL), `remote_cache_mode` and the auth pair. Each value is
//! checked with its span.

use super::raw::RawSettings;
use super::validate::Validator;
use crate::plan::limits::{REMOTE_CACHE_CONNECT_TIMEOUT, REMOTE_CACHE_STALL_TIMEOUT};
use crate::plan::{
    parse_size, AuthScheme, CacheSettings, RemoteAuth, RemoteCache, RemoteMode,
    DEFAULT_REMOTE_CONNECT_TIMEOUT, DEFAULT_REMOTE_STALL_TIMEOUT,
};

impl Validator<'_> {
    pub(super) fn cache_settings(&mut self, raw: &RawSettings) -> CacheSettings {
        let mut c = CacheSettings::default();
        if let Some(on) = raw.cache {
            c.enabled = on;
        }
        if let Some(v) = &raw.cache_max_size {
            match parse_size(v.get_ref()) {
                Ok(n) => c.max_size = n,
                Err(e) => self.err(
                    "orch::bad_value",
                    format!("invalid cache_max_size: {e}"),
                    v.span(),
                    "not a size",
                ),
            }
        }
        let mode = match raw.remote_cache_mode.as_ref() {
            None => RemoteMode::ReadWrite,
            Some(m) => match m.get_ref().as_str() {
                "read" => RemoteMode::Read,
                "read-write" => RemoteMode::ReadWrite,
                other => {
                    self.err(
                        "orch::bad_value",
                        format!("remote_cache_mode must be read or read-write, not `{other}`"),
                        m.span(),
                        "unknown mode",
                    );
                    RemoteMode::ReadWrite
                }
            },
        };
        let scheme = match raw.remote_cache_auth.as_ref() {
            None => AuthScheme::Bearer,
            Some(a) => match a.get_ref().as_str() {
                "bearer" => AuthScheme::Bearer,
                "basic" => AuthScheme::Basic,
                other => {
                    self.err(
                        "orch::bad_value",
                        format!("remote_cache_auth must be bearer or basic, not `{other}`"),
                        a.span(),
                        "unknown scheme",
                    );
                    AuthScheme::Bearer
                }
            },
        };
        if let (Some(a), None) = (&raw.remote_cache_auth, &raw.remote_cache_auth_env) {
            self.errors.push(
                self.src
                    .error(
                        "orch::bad_value",
                        "remote_cache_auth needs remote_cache_auth_env".to_string(),
                        Some(a.span()),
                        "no variable to read the credentials from",
                    )
                    .with_help("name the environment variable, e.g. remote_cache_auth_env = \"ORCH_CACHE_TOKEN\""),
            );
        }
        let auth = raw.remote_cache_auth_env.as_ref().and_then(|env| {
            let name = env.get_ref();
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                self.err(
                    "orch::bad_value",
                    format!("remote_cache_auth_env `{name}` is not an environment variable name"),
                    env.span(),
                    "letters, digits and _",
                );
                return None;
            }
            Some(RemoteAuth {
                scheme,
                env: name.clone(),
            })
        });
        let connect_timeout = self
            .duration(
                &raw.remote_cache_connect_timeout,
                REMOTE_CACHE_CONNECT_TIMEOUT,
            )
            .unwrap_or(DEFAULT_REMOTE_CONNECT_TIMEOUT);
        let stall_timeout = self
            .duration(&raw.remote_cache_stall_timeout, REMOTE_CACHE_STALL_TIMEOUT)
            .unwrap_or(DEFAULT_REMOTE_STALL_TIMEOUT);
        if let Some(url) = &raw.remote_cache {
            let u = url.get_ref().trim();
            let rest = u.strip_prefix("http://");
            match rest {
                Some(host) if !host.is_empty() && !host.starts_with('/') => {
                    c.remote = Some(RemoteCache {
                        url: u.trim_end_matches('/').to_string(),
                        mode,
                        auth,
                        connect_timeout,
                        stall_timeout,
                    });
                }
                _ => {
                    let https = u.starts_with("https://");
                    let mut e = self.src.error(
                        "orch::bad_value",
                        format!("remote_cache `{u}` is not an http:// URL"),
                        Some(url.span()),
                        if https {
                            "https is not built in"
                        } else {
                            "not http://host[:port][/prefix]"
                        },
                    );
                    e = e.with_help(if https {
                        "this orch speaks plain HTTP to the cache: reach an https cache through a local TLS proxy (stunnel, nginx) on 127.0.0.1"
                    } else {
                        "write it as http://host:port/prefix"
                    });
                    self.errors.push(e);
                }
            }
        } else if let Some(m) = &raw.remote_cache_mode {
            self.err(
                "orch::bad_value",
                "remote_cache_mode without remote_cache".to_string(),
                m.span(),
                "no remote cache to read",
            );
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::plan::orchfile::parse;
    use crate::plan::{AuthScheme, RemoteMode};

    fn parse_str(text: &str) -> Result<crate::plan::Plan, Box<crate::plan::PlanError>> {
        parse(Path::new("/p/Orchfile.toml"), text)
    }

    #[test]
    fn cache_fields_parse() {
        let plan = parse_str(
            r#"
[settings]
cache_max_size = "2G"
remote_cache = "http://127.0.0.1:9090/orch/"
remote_cache_mode = "read"
remote_cache_auth = "basic"
remote_cache_auth_env = "CACHE_CREDS"
remote_cache_stall_timeout = "2m"

[tasks.a]
run = "true"
cache = false
[tasks.b]
run = "true"
"#,
        )
        .unwrap();
        let c = &plan.settings.cache;
        assert!(c.enabled);
        assert_eq!(c.max_size, 2 << 30);
        let r = c.remote.as_ref().unwrap();
        assert_eq!(r.url, "http://127.0.0.1:9090/orch");
        assert_eq!(r.mode, RemoteMode::Read);
        assert_eq!(r.stall_timeout, std::time::Duration::from_secs(120));
        assert_eq!(
            r.connect_timeout,
            crate::plan::DEFAULT_REMOTE_CONNECT_TIMEOUT
        );
        let auth = r.auth.as_ref().unwrap();
        assert_eq!(
            (auth.scheme, auth.env.as_str()),
            (AuthScheme::Basic, "CACHE_CREDS")
        );
        assert!(!plan.tasks[0].cache);
        assert!(plan.tasks[1].cache);
    }

    #[test]
    fn bad_cache_fields_point_at_their_values() {
        for (text, needle) in [
            ("cache_max_size = \"lots\"", "invalid cache_max_size"),
            ("remote_cache = \"https://c.example\"", "not an http:// URL"),
            ("remote_cache = \"ftp://x\"", "not an http:// URL"),
            (
                "remote_cache = \"http://x\"\nremote_cache_mode = \"write\"",
                "remote_cache_mode must be",
            ),
            ("remote_cache_mode = \"read\"", "without remote_cache"),
            (
                "remote_cache = \"http://x\"\nremote_cache_stall_timeout = \"0s\"",
                "remote_cache_stall_timeout must be",
            ),
            (
                "remote_cache = \"http://x\"\nremote_cache_connect_timeout = \"soon\"",
                "invalid remote_cache_connect_timeout",
            ),
            (
                "remote_cache = \"http://x\"\nremote_cache_auth = \"basic\"",
                "needs remote_cache_auth_env",
            ),
            (
                "remote_cache = \"http://x\"\nremote_cache_auth_env = \"A-B\"",
                "not an environment variable name",
            ),
        ] {
            let e = parse_str(&format!("[settings]\n{text}\n[tasks.a]\nrun = \"true\"\n"))
                .expect_err(text);
            let shown = format!("{e:?}");
            assert!(shown.contains(needle), "{text}: {shown}");
        }
    }
}
