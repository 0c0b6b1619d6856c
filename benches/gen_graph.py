#!/usr/bin/env python3
"""Generate one random layered DAG as a Makefile, build.ninja, Orchfile.toml and Snakefile.

Usage:
    gen_graph.py OUTDIR N [--layers L] [--fanin K] [--seed S] [--sleep SECONDS]
    gen_graph.py --verify DIR     # check every out/t_i.txt is up to date

Task i reads src/in_i.txt plus its deps' outputs and writes out/t_i.txt via
`cat ... | cksum` (after `sleep SECONDS` with --sleep, for tasks that take time, as
slurm_compare.sh wants), so every tool runs exactly the same shell commands.
Besides the build files, OUTDIR gets graph.json (used by --verify) and
graph.env (ROOT_INPUT / LEAF_INPUT / ROOT_CONE / CRITICAL, sourced by the benches).
"""

import argparse
import json
import math
import os
import random
import sys


def build_graph(n, layers, fanin, seed):
    """Return (layer_of, deps) for n tasks spread evenly over `layers` layers."""
    rng = random.Random(seed)
    layer_of = [i * layers // n for i in range(n)]
    first = {}  # layer -> index of its first task
    for i, layer in enumerate(layer_of):
        first.setdefault(layer, i)
    deps = []
    for i, layer in enumerate(layer_of):
        if layer == 0 or fanin == 0:
            deps.append([])
            continue
        # One dep always comes from the previous layer so the critical path
        # really is `layers` long; the rest are uniform over all earlier tasks.
        prev_lo, prev_hi = first[layer - 1], first[layer]
        chosen = {rng.randrange(prev_lo, prev_hi)}
        want = min(fanin, prev_hi)
        while len(chosen) < want:
            chosen.add(rng.randrange(0, prev_hi))
        deps.append(sorted(chosen))
    return layer_of, deps


def critical_path(deps):
    """Tasks on the longest dependency chain (deps have smaller indices)."""
    depth = []
    for ds in deps:
        depth.append(1 + max((depth[d] for d in ds), default=0))
    return max(depth, default=0)


def cone_sizes(deps):
    """Number of tasks rebuilt when each task's input changes (itself included)."""
    n = len(deps)
    rdeps = [[] for _ in range(n)]
    for i, ds in enumerate(deps):
        for d in ds:
            rdeps[d].append(i)
    # Bitset per task: union of its dependents' cones. Tasks are already in
    # topological order (deps always have smaller indices), so walk backwards.
    cone = [0] * n
    for i in range(n - 1, -1, -1):
        bits = 1 << i
        for r in rdeps[i]:
            bits |= cone[r]
        cone[i] = bits
    return [c.bit_count() if hasattr(c, "bit_count") else bin(c).count("1") for c in cone]


def out(i):
    return f"out/t_{i}.txt"


def inp(i):
    return f"src/in_{i}.txt"


def command(i, ds, sleep=0.0):
    work = " ".join(["cat", inp(i)] + [out(d) for d in ds]) + f" | cksum > {out(i)}"
    return f"sleep {sleep:g}; {work}" if sleep > 0 else work


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def generate(outdir, n, layers, fanin, seed, sleep=0.0):
    layer_of, deps = build_graph(n, layers, fanin, seed)
    os.makedirs(os.path.join(outdir, "src"), exist_ok=True)
    # out/ is created up front so no tool has to (or gets charged for) mkdir.
    os.makedirs(os.path.join(outdir, "out"), exist_ok=True)
    for i in range(n):
        write(os.path.join(outdir, inp(i)), f"input {i} seed {seed}\n")

    # Makefile: builtin/implicit rules off, otherwise make spends its time
    # probing for RCS/SCCS/%.c candidates that ninja and orch never look for.
    mk = ["MAKEFLAGS += -r", ".SUFFIXES:", ".PHONY: all", ""]
    mk.append("all: " + " ".join(out(i) for i in range(n)))
    mk.append("")
    for i, ds in enumerate(deps):
        mk.append(f"{out(i)}: " + " ".join([inp(i)] + [out(d) for d in ds]))
        mk.append(f"\t{command(i, ds, sleep)}")
    write(os.path.join(outdir, "Makefile"), "\n".join(mk) + "\n")

    # build.ninja: one generic rule, the concrete command is a per-edge variable.
    nj = ["rule r", "  command = $cmd", ""]
    for i, ds in enumerate(deps):
        nj.append(f"build {out(i)}: r " + " ".join([inp(i)] + [out(d) for d in ds]))
        nj.append(f"  cmd = {command(i, ds, sleep)}")
    nj.append("")
    nj.append("default " + " ".join(out(i) for i in range(n)))
    write(os.path.join(outdir, "build.ninja"), "\n".join(nj) + "\n")

    of = ["[settings]", "jobs = 2", ""]
    for i, ds in enumerate(deps):
        of.append(f"[tasks.t{i}]")
        of.append(f'run = "{command(i, ds, sleep)}"')
        of.append(f'inputs = ["{inp(i)}"]')
        of.append(f'outputs = ["{out(i)}"]')
        of.append("deps = [" + ", ".join(f'"t{d}"' for d in ds) + "]")
        of.append("")
    write(os.path.join(outdir, "Orchfile.toml"), "\n".join(of))

    # Snakefile: one rule per task, the same command; `all` wants every output.
    sm = ["rule all:", "    input:"]
    sm += [f'        "{out(i)}",' for i in range(n)]
    sm.append("")
    for i, ds in enumerate(deps):
        sm.append(f"rule t{i}:")
        sm.append("    input: " + ", ".join(f'"{p}"' for p in [inp(i)] + [out(d) for d in ds]))
        sm.append(f'    output: "{out(i)}"')
        sm.append(f'    shell: "{command(i, ds, sleep)}"')
        sm.append("")
    write(os.path.join(outdir, "Snakefile"), "\n".join(sm))

    # Root for the "root changed" scenario: the layer-0 task with the largest
    # downstream cone, so the scenario is a meaningful partial rebuild.
    cones = cone_sizes(deps)
    roots = [i for i in range(n) if layer_of[i] == 0]
    root = max(roots, key=lambda i: (cones[i], -i))
    leaf = n - 1  # last layer, so nothing depends on it
    write(
        os.path.join(outdir, "graph.env"),
        f"ROOT_INPUT={inp(root)}\nROOT_CONE={cones[root]}\n"
        f"LEAF_INPUT={inp(leaf)}\nLEAF_CONE={cones[leaf]}\n"
        f"N={n}\nLAYERS={layers}\nEDGES={sum(map(len, deps))}\n"
        f"CRITICAL={critical_path(deps)}\n",
    )
    write(os.path.join(outdir, "graph.json"), json.dumps({"deps": deps}))
    print(
        f"{outdir}: {n} tasks, {layers} layers, {sum(map(len, deps))} edges, "
        f"root {inp(root)} rebuilds {cones[root]}",
        file=sys.stderr,
    )


def _crc_table():
    table = []
    for b in range(256):
        c = b << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def posix_cksum(data):
    """Output line of POSIX `cksum` reading stdin (CRC then length)."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ b]
    length = len(data)
    while length:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ (length & 0xFF)]
        length >>= 8
    return f"{~crc & 0xFFFFFFFF} {len(data)}\n".encode()


def verify(d):
    """Recompute every output in topological order; exit 1 on any stale one."""
    with open(os.path.join(d, "graph.json")) as f:
        deps = json.load(f)["deps"]
    expected = []
    bad = []
    for i, ds in enumerate(deps):
        with open(os.path.join(d, inp(i)), "rb") as f:
            data = f.read()
        data += b"".join(expected[j] for j in ds)
        expected.append(posix_cksum(data))
        try:
            with open(os.path.join(d, out(i)), "rb") as f:
                ok = f.read() == expected[i]
        except FileNotFoundError:
            ok = False
        if not ok:
            bad.append(i)
    if bad:
        print(f"{d}: {len(bad)} stale/missing outputs, e.g. {out(bad[0])}", file=sys.stderr)
        return 1
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--verify":
        sys.exit(verify(sys.argv[2]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir")
    p.add_argument("n", type=int)
    p.add_argument("--layers", type=int, help="default: sqrt(N), capped at 50")
    p.add_argument("--fanin", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds each task sleeps first")
    a = p.parse_args()
    if a.n < 1:
        p.error("N must be >= 1")
    layers = a.layers or min(50, max(1, round(math.sqrt(a.n))))
    layers = max(1, min(layers, a.n))
    generate(a.outdir, a.n, layers, max(0, a.fanin), a.seed, max(0.0, a.sleep))


if __name__ == "__main__":
    main()
