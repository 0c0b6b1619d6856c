//! Keeps secrets from the environment out of everything orch writes (logs, master_plan.md,
//! failure messages): values of variables whose names look secret are masked.

const SECRET_NAME_PARTS: &[&str] = &[
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
];

/// Shorter values are too likely to appear by chance to mask.
const MIN_SECRET_LEN: usize = 6;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn from_env() -> Redactor {
        Redactor::from_vars(std::env::vars())
    }

    /// The environment's secrets plus those written into the plan's `env` tables.
    pub fn for_plan(plan: &crate::plan::Plan) -> Redactor {
        let agent_env = plan.agents.values().flat_map(|a| a.env.iter());
        let task_env = plan.tasks.iter().flat_map(|t| t.env.iter());
        let from_plan = agent_env
            .chain(task_env)
            .map(|(k, v)| (k.clone(), v.clone()));
        Redactor::from_vars(std::env::vars().chain(from_plan))
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Redactor {
        let mut secrets: Vec<String> = vars
            .into_iter()
            .filter(|(k, v)| {
                let k = k.to_ascii_uppercase();
                v.len() >= MIN_SECRET_LEN && SECRET_NAME_PARTS.iter().any(|p| k.contains(p))
            })
            .map(|(_, v)| v)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[REDACTED]");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secret_looking_variables_only() {
        let r = Redactor::from_vars([
            ("ANTHROPIC_API_KEY".to_string(), "sk-ant-123456".to_string()),
            ("GITHUB_TOKEN".to_string(), "ghp_abcdef".to_string()),
            ("HOME".to_string(), "/home/someone".to_string()),
            ("MY_KEY".to_string(), "abc".to_string()),
        ]);
        let text = "auth sk-ant-123456 and ghp_abcdef in /home/someone with abc";
        assert_eq!(
            r.redact(text),
            "auth [REDACTED] and [REDACTED] in /home/someone with abc"
        );
    }
}
