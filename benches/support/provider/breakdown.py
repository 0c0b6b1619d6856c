#!/usr/bin/env python3
"""Where a build's time at the mock provider went, for benches/providers.sh (BREAKDOWN=1).

    breakdown.py EVENTS.jsonl CALLS.log K

EVENTS: the build's `--json` events; CALLS: the mock's call log (task, arrival, end, status,
the agent's first line). Over the makespan, the provider's K places x seconds split into the
calls it served and the idle rest: idle while orch's limit was below K (after a cut; the
slow start's raises are not events, so its first seconds count as "other"), and other idle
(a place freed and no call came yet). Per served call: from its attempt's start to the
agent's first line (orch's work and the interpreter's start) and to the call (its imports,
and, for a CLI started before its turn, the wait at its stdin), and from the call's end to
the attempt's. Refused calls: how many, and how long their attempts took.
"""
import json
import sys

events = [json.loads(line) for line in open(sys.argv[1])]
k = int(sys.argv[3])
calls = []
for line in open(sys.argv[2]):
    task, arrived, ended, status, first_line = line.split()
    calls.append((task, float(arrived), float(ended), int(status), float(first_line)))

starts = [e["ts_ms"] / 1000 for e in events if e["event"] == "task_started"]
ends = [e["ts_ms"] / 1000 for e in events if e["event"] in ("task_finished", "task_failed")]
t0, t1 = min(starts), max(ends)
makespan = t1 - t0

# Each task's attempts: from its (re)start to its retry or end.
attempts = {}
for e in events:
    t, at = e.get("task"), e["ts_ms"] / 1000
    if e["event"] == "task_started":
        attempts.setdefault(t, []).append([at, None])
    elif e["event"] in ("task_retried", "task_finished", "task_failed") and attempts.get(t):
        attempts[t][-1][1] = at


def attempt_of(task, at):
    for a, b in attempts.get("t" + task, []):
        if a <= at and (b is None or at <= b):
            return a, b
    return None


served = [c for c in calls if c[3] == 200]
refused = [c for c in calls if c[3] != 200]
to_first_line = to_call = after = refused_attempts = 0.0
for task, arrived, ended, status, first_line in calls:
    span = attempt_of(task, arrived)
    if span is None or span[1] is None:
        continue
    if status == 200:
        to_first_line += first_line - span[0]
        to_call += arrived - span[0]
        after += span[1] - ended
    else:
        refused_attempts += span[1] - span[0]

# Integrate the provider's free places over time, against orch's limit then.
changes = sorted(
    [(a, 1) for _, a, _, _, _ in served] + [(b, -1) for _, _, b, _, _ in served]
)
limits = [(e["ts_ms"] / 1000, e["limit"]) for e in events if e["event"] == "provider_limit"]
marks = sorted(set([t for t, _ in changes] + [t for t, _ in limits] + [t1]))
busy, limit, last = 0, k, t0
ci = li = 0
idle_cut = idle_other = 0.0
cuts, spells, below_since = 0, [], None
for t in marks:
    t = min(max(t, t0), t1)
    free = max(0, k - busy)
    cut = min(free, max(0, k - limit))
    idle_cut += cut * (t - last)
    idle_other += (free - cut) * (t - last)
    last = t
    while ci < len(changes) and changes[ci][0] <= t:
        busy += changes[ci][1]
        ci += 1
    while li < len(limits) and limits[li][0] <= t:
        new = limits[li][1]
        cuts += new < limit
        if new < k and below_since is None:
            below_since = t
        elif new >= k and below_since is not None:
            spells.append(t - below_since)
            below_since = None
        limit = new
        li += 1
if below_since is not None:
    spells.append(t1 - below_since)

places = k * makespan
n = max(1, len(served))
print(
    f"makespan {makespan:.1f} s, {k} places: {places:.0f} place-s: served {sum(b - a for _, a, b, _, _ in served):.0f}"
    f" ({100 * sum(b - a for _, a, b, _, _ in served) / places:.0f}%), idle with the limit below K"
    f" {idle_cut:.0f}, other idle {idle_other:.0f}. A served call: {to_first_line / n:.2f} s from its"
    f" attempt's start to the agent's first line, {to_call / n:.2f} s to the call,"
    f" {after / n:.2f} s after it. {len(refused)} refused calls ({refused_attempts:.0f} s of attempts)."
    f" {cuts} cuts; {len(spells)} spells below K: {' '.join(f'{s:.1f}' for s in spells) or '-'} s"
)
