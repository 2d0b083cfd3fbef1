#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/policyd/script_cost.py: Redis CPU per rate-limit decision, before and after.

Loads two rate-limit scripts into one private redis-server: "before" (bench/policyd/
rate_script_before.lua, the script as it was before its rework) and "after" (the script
relaykit-policyd runs today, read from policyd/redis_script.h), and drives both with the same
workloads, interleaved round by round, by EVALSHA exactly as policyd sends it (ARGV[1] = 0: the
script reads Redis's clock with TIME). Each script gets its own keys ({before...} / {after...}) so
neither sees the other's state. After every batch it reads `INFO commandstats`, reset before the
batch: `cmdstat_evalsha` usec_per_call is the CPU Redis spends per decision (the commands the
script calls run inside it and are included in that time).

Workloads (one decision each):
  1limit  one charge, one window (100 per minute), 1,000 principals: relaykit's bench config;
  3limits three charges of different principals (100/min; 10/min + 1000/h; a warn-only bytes
          limit of 100,000 per minute), as a config with per-client, per-sender and size limits;
  check   one charge, commit 0 (the RCPT-stage check: reads only).
Both scripts also get a random workload with several windows, warn-only charges, refusals and
rescaled maxima, and their replies must agree (a guard, not a benchmark).

Also reads redis-server's own CPU time (INFO cpu) around each batch: on a shared, loaded machine
usec_per_call (wall clock around each call) includes time the server was preempted, CPU time
does not (it adds parsing the request and writing the reply). Prints per workload the median
usec_per_call over --rounds rounds of each script, the ratio, and
what one Redis core sustains (decisions/s = 1e6 / usec per decision) against a relay's peak
(--relay-peak decisions/s, default 34,611: the Redis-store saturation figure in RESULTS.md).
Usage: bench/policyd/script_cost.py [--rounds 7] [--calls 20000] [--relay-peak 34611]
       [--after FILE.lua]
"""

import argparse
import os
import random
import re
import socket
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

PIPELINE = 500  # commands written before their replies are read


class Resp:
    """A minimal pipelining RESP2 client (the bench has no redis module to rely on)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            return self.file.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)

    def cmd(self, *args):
        self.sock.sendall(self.encode(args))
        return self.read()

    def pipe(self, cmds):
        replies = []
        for i in range(0, len(cmds), PIPELINE):
            chunk = cmds[i:i + PIPELINE]
            self.sock.sendall(b"".join(self.encode(c) for c in chunk))
            replies.extend(self.read() for _ in chunk)
        return replies


def scripts():
    header = open(os.path.join(ROOT, "policyd", "redis_script.h")).read()
    after = re.search(r'R"LUA\((.*)\)LUA"', header, re.S).group(1)
    before = open(os.path.join(HERE, "rate_script_before.lua")).read()
    return before, after


def decision(sha, tag, i, kind):
    """One EVALSHA as policyd builds it: keys, now (0), commit, then per charge: enforce, cost,
    window count, max and period (µs) per window."""
    if kind == "1limit":
        return ["EVALSHA", sha, 1, "relaykit:rl:{%s%d}:c" % (tag, i % 1000),
                0, 1, 1, 1, 1, 100, 60000000]
    if kind == "check":
        return ["EVALSHA", sha, 1, "relaykit:rl:{%s%d}:c" % (tag, i % 1000),
                0, 0, 1, 1, 1, 100, 60000000]
    return ["EVALSHA", sha, 3,
            "relaykit:rl:{%s%d}:c" % (tag, i % 1000), "relaykit:rl:{%ss%d}:s" % (tag, i % 300),
            "relaykit:rl:{%sz%d}:b" % (tag, i % 50),
            0, 1,
            1, 1, 1, 100, 60000000,
            1, 1, 2, 10, 60000000, 1000, 3600000000,
            0, 5000 + i % 7000, 1, 100000, 60000000]


def cpu_seconds(r):
    """redis-server's own CPU time so far (INFO cpu: getrusage, user + system)."""
    info = r.cmd("INFO", "cpu")
    fields = dict(l.split(":", 1) for l in info.split("\r\n") if ":" in l)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def evalsha_usec(r):
    info = r.cmd("INFO", "commandstats")
    for line in info.split("\r\n"):
        if line.startswith("cmdstat_evalsha:"):
            fields = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            return float(fields["usec_per_call"]), int(fields["calls"])
    raise RuntimeError("no cmdstat_evalsha")


def agree(r, shas):
    """Both scripts answer a random workload identically (an injected clock, fresh keys)."""
    rng = random.Random(7)
    shapes = [[(3, 10000000)], [(10, 60000000), (20, 600000000)], [(5000, 60000000)]]
    now = 1765000000000000
    for step in range(2000):
        n = rng.randint(1, 3)
        names = sorted(set(rng.randrange(4) * 3 + rng.randrange(3) for _ in range(n)))
        charges = []
        for k in names:
            shape = shapes[k % 3]
            if rng.randrange(10) == 0:  # a reload changed the max
                shape = [(m * 2, p) for m, p in shape]
            cost = rng.randrange(3000) if k % 3 == 2 else 1 + rng.randrange(3)
            charges.append((k, shape, cost, rng.randrange(5) != 0))
        commit = rng.randrange(4) != 0
        replies = []
        for tag, sha in shas.items():
            args = ["EVALSHA", sha, len(charges)]
            args += ["agree:{%s%d}:%d" % (tag, k // 3, k) for k, _, _, _ in charges]
            args += [now, 1 if commit else 0]
            for _, shape, cost, enforce in charges:
                args += [1 if enforce else 0, cost, len(shape)]
                for m, p in shape:
                    args += [m, p]
            replies.append(r.cmd(*args))
        if replies[0] != replies[1]:
            raise SystemExit("scripts disagree at step %d: %r vs %r" % (step, replies[0], replies[1]))
        now += rng.randrange(2000) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--relay-peak", type=float, default=34611.0)
    ap.add_argument("--after", help="a Lua file to use as \"after\" instead of redis_script.h's")
    opts = ap.parse_args()
    before, after = scripts()
    if opts.after:
        after = open(opts.after).read()
    with tempfile.TemporaryDirectory() as tmp:
        server = harness.redis_server(tmp)
        try:
            r = Resp(server.port)
            shas = {"before": r.cmd("SCRIPT", "LOAD", before), "after": r.cmd("SCRIPT", "LOAD", after)}
            agree(r, shas)
            r.cmd("FLUSHALL")
            kinds = ["1limit", "3limits", "check"]
            usec = {(k, s): [] for k in kinds for s in shas}
            calls = {(k, s): 0 for k in kinds for s in shas}
            cpu = {(k, s): [] for k in kinds for s in shas}
            for rnd in range(opts.rounds):
                for kind in kinds:
                    order = list(shas) if rnd % 2 == 0 else list(reversed(list(shas)))
                    for name in order:
                        batch = [decision(shas[name], name, rnd * opts.calls + i, kind)
                                 for i in range(opts.calls)]
                        r.cmd("CONFIG", "RESETSTAT")
                        cpu0 = cpu_seconds(r)
                        r.pipe(batch)
                        cpu1 = cpu_seconds(r)
                        u, c = evalsha_usec(r)
                        usec[(kind, name)].append(u)
                        cpu[(kind, name)].append((cpu1 - cpu0) * 1e6 / c)
                        calls[(kind, name)] += c
        finally:
            server.stop()
    print("Redis CPU per decision (cmdstat_evalsha usec_per_call; median of %d rounds of %d "
          "calls, min-max)" % (opts.rounds, opts.calls))
    print("| workload | before µs | after µs | after ÷ before | decisions/s per Redis core "
          "(after) | relays per primary at %.0f decisions/s each (before → after) |"
          % opts.relay_peak)
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        b = statistics.median(usec[(kind, "before")])
        a = statistics.median(usec[(kind, "after")])
        print("| %s | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.2f | %.0f | %.1f → %.1f |" % (
            kind, b, min(usec[(kind, "before")]), max(usec[(kind, "before")]),
            a, min(usec[(kind, "after")]), max(usec[(kind, "after")]), a / b, 1e6 / a,
            1e6 / b / opts.relay_peak, 1e6 / a / opts.relay_peak))
    print()
    print("redis-server CPU time per decision (INFO cpu user+sys over each batch ÷ calls: also "
          "parsing the request and writing the reply; median, min)")
    print("| workload | before µs | after µs | after ÷ before |")
    print("|---|---|---|---|")
    for kind in kinds:
        b = statistics.median(cpu[(kind, "before")])
        a = statistics.median(cpu[(kind, "after")])
        print("| %s | %.2f (min %.2f) | %.2f (min %.2f) | %.2f |" % (
            kind, b, min(cpu[(kind, "before")]), a, min(cpu[(kind, "after")]), a / b))
    print("calls counted: " + ", ".join("%s/%s %d" % (k, s, calls[(k, s)]) for k, s in calls))


if __name__ == "__main__":
    main()
