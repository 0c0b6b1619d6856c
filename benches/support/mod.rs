//! Shared by the benches and `tests/makespan.rs` (included with `#[path]`): a seeded RNG,
//! random DAGs, a generated Orchfile, and the virtual-time makespan simulation that drives the
//! real [`Scheduler`].
//!
//! Everything here is deterministic: the same seed gives the same graph, durations and schedule.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt::Write as _;

use orchfile::graph::TaskGraph;
use orchfile::scheduler::{SchedTask, Scheduler};

/// SplitMix64: tiny, seedable, good enough for generating benchmark inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..hi` (`lo < hi`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `exp(N(mu, sigma))`.
    pub fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        (mu + sigma * self.normal()).exp()
    }

    /// Log-uniform integer in `lo..=hi`.
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (a, b) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
        ((a + (b - a) * self.unit()).exp() as usize).clamp(lo, hi)
    }
}

/// A layered DAG shaped like `benches/gen_graph.py`'s: `n` tasks spread evenly over `layers`
/// layers; every task after layer 0 has one dep in the previous layer (so the longest chain
/// really has `layers` tasks) and up to `fanin - 1` more, uniform over all earlier tasks. Deps
/// always have smaller indexes, so plan order is a topological order.
pub fn layered_dag(n: usize, layers: usize, fanin: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    let layers = layers.clamp(1, n.max(1));
    let layer_of = |i: usize| i * layers / n;
    let mut first = vec![usize::MAX; layers + 1];
    for i in (0..n).rev() {
        first[layer_of(i)] = i;
    }
    first[layers] = n;
    (0..n)
        .map(|i| {
            let layer = layer_of(i);
            if layer == 0 || fanin == 0 {
                return Vec::new();
            }
            let (lo, hi) = (first[layer - 1], first[layer]);
            let mut chosen = vec![rng.range(lo, hi)];
            let want = fanin.min(hi);
            while chosen.len() < want {
                let d = rng.below(hi);
                if !chosen.contains(&d) {
                    chosen.push(d);
                }
            }
            chosen.sort_unstable();
            chosen
        })
        .collect()
}

/// An unlayered random DAG: task `i` draws `0..=max_fanin` deps uniformly from the `window`
/// tasks before it. A small window gives long, narrow graphs; a large one, wide and shallow.
pub fn window_dag(n: usize, window: usize, max_fanin: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    (0..n)
        .map(|i| {
            let lo = i.saturating_sub(window.max(1));
            let k = rng.below(max_fanin + 1).min(i - lo);
            let mut chosen: Vec<usize> = Vec::with_capacity(k);
            while chosen.len() < k {
                let d = rng.range(lo, i);
                if !chosen.contains(&d) {
                    chosen.push(d);
                }
            }
            chosen.sort_unstable();
            chosen
        })
        .collect()
}

/// `SchedTask`s the way `build` makes them: default priority, the graph's critical path.
pub fn sched_tasks(graph: &TaskGraph) -> Vec<SchedTask> {
    graph
        .critical
        .iter()
        .map(|&c| SchedTask {
            priority: 2,
            critical: c,
            ..Default::default()
        })
        .collect()
}

/// Runs a whole schedule as `scheduler::drive` would with a runner that finishes instantly:
/// fill up to `jobs` slots, finish the oldest running task, repeat. Returns the tasks run.
pub fn run_noop(sched: &mut Scheduler, jobs: usize) -> usize {
    let mut running = VecDeque::with_capacity(jobs);
    let mut done = 0;
    loop {
        while running.len() < jobs {
            match sched.next_task() {
                Some(t) => running.push_back(t),
                None => break,
            }
        }
        match running.pop_front() {
            Some(t) => {
                sched.finish(t, true);
                done += 1;
            }
            None => return done,
        }
    }
}

/// The Orchfile `benches/gen_graph.py` writes: shell tasks `cat inputs | cksum`.
pub fn shell_orchfile(deps: &[Vec<usize>]) -> String {
    let mut s = String::with_capacity(deps.len() * 160);
    s.push_str("[settings]\njobs = 2\n\n");
    for (i, ds) in deps.iter().enumerate() {
        let cat: String = ds.iter().map(|d| format!(" out/t_{d}.txt")).collect();
        let names: Vec<String> = ds.iter().map(|d| format!("\"t{d}\"")).collect();
        let _ = write!(
            s,
            "[tasks.t{i}]\nrun = \"cat src/in_{i}.txt{cat} | cksum > out/t_{i}.txt\"\n\
             inputs = [\"src/in_{i}.txt\"]\noutputs = [\"out/t_{i}.txt\"]\ndeps = [{}]\n\n",
            names.join(", ")
        );
    }
    s
}

/// An Orchfile of agent tasks (prompt, title, priority, estimate in whole seconds).
pub fn agent_orchfile(deps: &[Vec<usize>], estimates: &[u64], agent: &str) -> String {
    let mut s = String::with_capacity(deps.len() * 220);
    let _ = write!(s, "[settings]\ndefault_agent = \"{agent}\"\n\n");
    for (i, ds) in deps.iter().enumerate() {
        let names: Vec<String> = ds.iter().map(|d| format!("\"t{d}\"")).collect();
        let _ = write!(
            s,
            "[tasks.t{i}]\ntitle = \"Task {i}\"\n\
             prompt = \"Summarize part {i} of the design and list open questions.\"\n\
             outputs = [\"out/t_{i}.md\"]\npriority = \"P{}\"\nestimate = {}\ndeps = [{}]\n\n",
            1 + i % 3,
            estimates[i],
            names.join(", ")
        );
    }
    s
}

// --- makespan simulation ---------------------------------------------------------------------

/// One random scheduling problem: a DAG and each task's true duration.
#[derive(Debug, Clone)]
pub struct Instance {
    pub family: &'static str,
    pub deps: Vec<Vec<usize>>,
    pub dur: Vec<f64>,
}

impl Instance {
    /// Instance `index` of the suite: 50..=`max_n` tasks (log-uniform), a layered or windowed
    /// DAG of random width (1..128) and fan-in (1..4), lognormal durations (median 1, sigma
    /// 0.5..1.5).
    pub fn random(seed: u64, index: u64, max_n: usize) -> Instance {
        let mut rng = Rng::new(seed.wrapping_mul(0x1000_0000_01B3) ^ index);
        let n = rng.log_uniform(50, max_n);
        // Width (tasks per layer, or how far back deps reach) log-uniform from 1 to 128, so
        // path-bound, balanced and work-bound instances all occur for -j2..-j8.
        let width = rng.log_uniform(1, 128).min(n);
        let fanin = rng.range(1, 5);
        let (family, deps) = if rng.below(2) == 0 {
            let layers = n.div_ceil(width).max(2);
            ("layered", layered_dag(n, layers, fanin, &mut rng))
        } else {
            ("window", window_dag(n, 2 * width, fanin, &mut rng))
        };
        let sigma = 0.5 + rng.unit();
        let dur = (0..n).map(|_| rng.lognormal(0.0, sigma)).collect();
        Instance { family, deps, dur }
    }

    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// max(critical path, total work / jobs): no schedule on `jobs` workers can be shorter.
    pub fn lower_bound(&self, jobs: usize) -> f64 {
        let g = TaskGraph::new(self.deps.clone(), &self.dur).expect("acyclic");
        let work: f64 = self.dur.iter().sum();
        g.critical_path_length().max(work / jobs as f64)
    }
}

/// What the scheduler is told: each task's `estimate` (durations), and its `priority`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimates {
    /// `estimate` equal to the true duration.
    Exact,
    /// True duration times a lognormal error of this sigma (0.5: typically off by x/÷1.6).
    Noisy(f64),
    /// No `estimate` set: every task weighs 1, the critical path counts tasks.
    Unset,
    /// No critical-path priority at all (critical = 0 everywhere): plan order.
    PlanOrder,
    /// Exact estimates, but each task gets a random `priority` P0..P3, which the scheduler
    /// honours before the critical path.
    ExactRandomPriority,
}

impl Estimates {
    pub fn label(self) -> String {
        match self {
            Estimates::Exact => "critical path, exact estimates".into(),
            Estimates::Noisy(s) => format!("critical path, estimates off by lognormal σ={s}"),
            Estimates::Unset => "critical path, no estimates (unit weights)".into(),
            Estimates::PlanOrder => "plan order (no critical-path priority)".into(),
            Estimates::ExactRandomPriority => {
                "critical path, exact estimates, random P0..P3 priorities".into()
            }
        }
    }

    fn weights(self, inst: &Instance, seed: u64) -> Vec<f64> {
        match self {
            Estimates::Exact | Estimates::ExactRandomPriority => inst.dur.clone(),
            Estimates::Noisy(sigma) => {
                let mut rng = Rng::new(seed ^ 0xE57);
                inst.dur
                    .iter()
                    .map(|d| d * rng.lognormal(0.0, sigma))
                    .collect()
            }
            Estimates::Unset | Estimates::PlanOrder => vec![1.0; inst.len()],
        }
    }
}

/// Discrete-event simulation in virtual time with the real [`Scheduler`]: whenever fewer than
/// `jobs` tasks run, start what `next_task` hands out; then advance to the earliest finish and
/// report it (and every other task finishing at that same instant) with `finish`.
/// Returns the makespan.
pub fn simulate(inst: &Instance, jobs: usize, est: Estimates, seed: u64) -> f64 {
    let n = inst.len();
    let graph = TaskGraph::new(inst.deps.clone(), &est.weights(inst, seed)).expect("acyclic");
    let mut tasks = sched_tasks(&graph);
    if est == Estimates::PlanOrder {
        for t in &mut tasks {
            t.critical = 0.0;
        }
    }
    if est == Estimates::ExactRandomPriority {
        let mut rng = Rng::new(seed ^ 0x9A1);
        for t in &mut tasks {
            t.priority = rng.below(4) as u8;
        }
    }
    let mut sched = Scheduler::new(&graph, tasks, &vec![true; n], vec![], 0, false);
    let mut running: Vec<(f64, usize)> = Vec::with_capacity(jobs);
    let mut now = 0.0f64;
    let mut done = 0;
    loop {
        while running.len() < jobs {
            match sched.next_task() {
                Some(t) => running.push((now + inst.dur[t], t)),
                None => break,
            }
        }
        if running.is_empty() {
            break;
        }
        now = running
            .iter()
            .map(|&(end, _)| end)
            .fold(f64::INFINITY, f64::min);
        // Finish in start order among ties, like workers reporting back.
        let mut k = 0;
        while k < running.len() {
            if running[k].0 <= now {
                let (_, t) = running.remove(k);
                sched.finish(t, true);
                done += 1;
            } else {
                k += 1;
            }
        }
    }
    assert_eq!(done, n, "every task must run");
    now
}

/// Ratio statistics over many instances.
#[derive(Debug, Clone)]
pub struct Stats {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
    /// Share of instances with a ratio above 1.05.
    pub over_105: f64,
}

impl Stats {
    pub fn of(mut ratios: Vec<f64>) -> Stats {
        ratios.sort_by(f64::total_cmp);
        let count = ratios.len();
        let at = |q: f64| ratios[((count - 1) as f64 * q).round() as usize];
        Stats {
            count,
            mean: ratios.iter().sum::<f64>() / count as f64,
            p50: at(0.5),
            p90: at(0.9),
            max: ratios[count - 1],
            over_105: ratios.iter().filter(|&&r| r > 1.05).count() as f64 / count as f64,
        }
    }
}

/// makespan / lower bound for instances `0..count` of the suite at `seed`, for one `jobs`.
pub fn ratios(
    seed: u64,
    count: u64,
    max_n: usize,
    jobs: usize,
    est: Estimates,
) -> Vec<(Instance, f64)> {
    (0..count)
        .map(|i| {
            let inst = Instance::random(seed, i, max_n);
            let ratio = simulate(&inst, jobs, est, seed ^ i) / inst.lower_bound(jobs);
            (inst, ratio)
        })
        .collect()
}
