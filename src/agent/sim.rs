//! The built-in `sim` agent: no network, no model. It waits for the task's estimate scaled
//! down by `--sim-speed`, then replies with a deterministic result that echoes its task file,
//! so demos, tests and benches exercise the whole pipeline offline.

use std::time::Duration;

use crate::cancel::Cancel;
use crate::clock::Active;

/// Default scale: an estimate of 2m simulates in 1.2s.
pub const DEFAULT_SPEED: f64 = 100.0;

/// Sleeps for `estimate / speed` of active time (a stop of orch does not count); returns
/// false if cancelled first.
pub fn wait(estimate: Option<Duration>, speed: f64, cancel: &Cancel) -> bool {
    let total = estimate.unwrap_or(Duration::from_secs(30));
    let scaled = Duration::try_from_secs_f64(total.as_secs_f64() / speed)
        .unwrap_or(crate::duration::MAX_DURATION)
        .min(crate::duration::MAX_DURATION);
    let end = Active::now() + scaled;
    loop {
        if cancel.is_cancelled() {
            return false;
        }
        let left = end.remaining();
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
}

/// `--sim-speed`: a finite number above zero.
pub fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "`{text}` is not a positive number (e.g. 100, or 0.5 to slow down)"
        )),
    }
}

/// The simulated result for a task.
pub fn reply(task_id: &str, title: &str, agent_id: &str, task_file: &str) -> String {
    let digest = blake3::hash(task_file.as_bytes()).to_hex();
    let mut s = format!(
        "# {title}\n\n_Simulated result of {task_id} by {agent_id} (sim agent, task digest {})._\n\n",
        &digest[..12]
    );
    s.push_str("## Task as received\n\n");
    for line in task_file.lines() {
        s.push_str("> ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// Content the sim agent writes into each declared output file.
pub fn output_content(task_id: &str, path: &str, prompt_digest: &str) -> String {
    format!("simulated output of {task_id}: {path}\nprompt digest: {prompt_digest}\n")
}
