#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/policyd/script_cost.py: Redis CPU per rate-limit decision, before and after.

Loads the rate-limit scripts into one private redis-server: "before" (bench/policyd/
rate_script_before.lua, the script as it was before its reworks, with its argument layout),
"previous" (bench/policyd/rate_script_previous.lua, the first rework), "after" (the script
relaykit-policyd runs today, read from policyd/redis_script.h, with the arguments
policyd/redis_script.h's appendRateScriptArgs builds) and "strings" (bench/policyd/
rate_script_strings.lua, a candidate layout measured and not adopted: one STRING key per charge
holding binary-packed windows, read by one MGET and written by one SET ... PX per charged key;
its arguments are built by eval_args below), and drives all with the same decisions, interleaved
round by round, by EVALSHA exactly as policyd sends it (now = 0: the script reads Redis's clock
with TIME). Each script gets its own keys ({before...} / {after...} / ...) so none sees
another's state. After every batch it reads `INFO commandstats`, reset before the
batch: `cmdstat_evalsha` usec_per_call is the time Redis spends per decision (the commands the
script calls run inside it and are included in that time).

Workloads (one decision each; "allowed" in the output: the share of decisions allowed):
  1limit     one charge, one window (100 per minute), 1,000 principals: relaykit's bench
             config; principals reach their limit over the rounds, so later rounds are mostly
             refusals (read only);
  3limits    three charges of different principals (100/min; 10/min + 1000/h; a warn-only bytes
             limit of 100,000 per minute), mostly refused after the first rounds likewise;
  check      one charge, commit 0 (the RCPT-stage check: reads only), of 1,000 principals
             whose counters are half full (set before each batch, unmeasured);
  1limit-ok  as 1limit with a max nobody reaches: every decision charges (TIME, HMGET, HSET,
             PEXPIRE);
  3limits-ok as 3limits with maxima nobody reaches: every decision writes three keys, four
             windows (TIME, 3 HMGET, 3 HSET, 3 PEXPIRE);
  seed       the stream bench/policyd/policy_load.cc sends against the seed config (one limit,
             100 messages per minute per client, 10,000 clients): per message 1-3 RCPT checks
             then one END-OF-MESSAGE charge.
All scripts also get a random workload with several windows, warn-only charges, refusals,
rescaled maxima and windows dropped by a reload and put back, and their replies must agree (a
guard, not a benchmark).

Also reads redis-server's own CPU time (INFO cpu) around each batch: on a shared, loaded machine
usec_per_call (wall clock around each call) includes time the server was preempted, CPU time
does not (it adds parsing the request and writing the reply). Prints per workload the median
usec_per_call over --rounds rounds of each script, the ratio, and
what one Redis core sustains (decisions/s = 1e6 / usec per decision) against a relay's peak
(--relay-peak decisions/s, default 34,611: the Redis-store saturation figure in RESULTS.md).

--breakdown: instead, where the time of a 3limits-ok decision goes: the same EVALSHA arguments
run by scripts that do only part of the work (the reply alone; + TIME; + the three HMGET; + the
three HSET; + the three PEXPIRE: the commands the semantics need with no logic, i.e. the floor),
then the whole script; then the same for the strings layout (the reply alone; + TIME; + one
MGET of the three keys; + three SET ... PX: its floor; the whole strings script), interleaved;
per step its redis-server CPU per decision. With --instructions: the same steps counted by
callgrind instead of timed.
--instructions: instead, the instructions redis-server executes per decision of each workload
and script, counted by valgrind's callgrind (exact and repeatable on a loaded machine; use
--calls 2000, valgrind is slow).
--ops: instead, the instructions one operation costs inside a script (callgrind): argument
access, conversions between strings and numbers, string.match/format, struct.unpack, each
redis.call the script makes, and each EVALSHA argument.
Usage: bench/policyd/script_cost.py [--rounds 7] [--calls 20000] [--relay-peak 34611]
       [--after FILE.lua] [--breakdown [--instructions] | --instructions | --ops]
"""

import argparse
import os
import random
import re
import socket
import statistics
import struct
import subprocess
import time
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
    """name -> (Lua source, argument layout): the original script, the first rework, and the
    script policyd runs today."""
    header = open(os.path.join(ROOT, "policyd", "redis_script.h")).read()
    after = re.search(r'R"LUA\((.*)\)LUA"', header, re.S).group(1)
    return {"before": (open(os.path.join(HERE, "rate_script_before.lua")).read(), "before"),
            "previous": (open(os.path.join(HERE, "rate_script_previous.lua")).read(), "before"),
            "after": (after, "after"),
            "strings": (open(os.path.join(HERE, "rate_script_strings.lua")).read(), "strings")}


def increment(cost, m, period):
    """gcraIncrement: floor(cost * period / max) in doubles, 0 for cost <= 0."""
    return 0 if cost <= 0 else int(float(cost) * float(period) / float(m))


def eval_args(layout, sha, keys, charges, now=0, commit=True):
    """One EVALSHA. charges: (enforce, cost, [(max, period µs), ...]) per key.
    layout "before" (or "previous"): now, commit, then per charge enforce, cost, window count, max and period per
    window. layout "after": as policyd/redis_script.h's appendRateScriptArgs builds it."""
    args = ["EVALSHA", sha, len(keys)] + list(keys)
    if layout in ("before", "previous"):
        args += [now, 1 if commit else 0]
        for enforce, cost, windows in charges:
            args += [1 if enforce else 0, cost, len(windows)]
            for m, p in windows:
                args += [m, p]
        return args
    numbers = [1 if commit else 0]
    strings = []
    if layout == "strings":
        for enforce, cost, windows in charges:
            numbers += [1 if enforce else 0, len(windows)]
            strings.append((max(p for _, p in windows) + 999) // 1000 + 1000)
            for m, p in windows:
                numbers += [p, -1 if cost > m else increment(cost, m, p), m]
        return args + [now, "<" + "d" * len(numbers),
                       struct.pack("<%dd" % len(numbers), *numbers)] + strings
    for enforce, cost, windows in charges:
        numbers += [1 if enforce else 0, len(windows)]
        strings.append((max(p for _, p in windows) + 999) // 1000 + 1000)
        for m, p in windows:
            numbers += [p, -1 if cost > m else increment(cost, m, p)]
        strings += [p for _, p in windows] + [m for m, _ in windows]
    return args + [now, "<" + "d" * len(numbers),
                   struct.pack("<%dd" % len(numbers), *numbers)] + strings


MINUTE = 60000000
OK = 10 ** 12  # a max no workload reaches


def decisions(kind, layout, sha, tag, i, rng):
    """The decisions of workload `kind` number i (seed: one message, 2-4 decisions)."""
    def one(keys, charges, commit=True):
        return eval_args(layout, sha, keys, charges, 0, commit)
    if kind == "check":
        return [one(["relaykit:rl:{%schk%d}:c" % (tag, i % 1000)], [(True, 1, [(100, MINUTE)])],
                    False)]
    if kind in ("1limit", "1limit-ok"):
        m = OK if kind == "1limit-ok" else 100
        return [one(["relaykit:rl:{%s%d}:c" % (tag, i % 1000)], [(True, 1, [(m, MINUTE)])])]
    if kind == "seed":
        key = ["relaykit:rl:{%sseed%d}:c" % (tag, rng.randrange(10000))]
        charge = [(True, 1, [(100, MINUTE)])]
        return [one(key, charge, False)] * rng.randint(1, 3) + [one(key, charge)]
    ok = kind == "3limits-ok"
    return [one(["relaykit:rl:{%s%d}:c" % (tag, i % 1000), "relaykit:rl:{%ss%d}:s" % (tag, i % 300),
                 "relaykit:rl:{%sz%d}:b" % (tag, i % 50)],
                [(True, 1, [(OK if ok else 100, MINUTE)]),
                 (True, 1, [(OK if ok else 10, MINUTE), (OK if ok else 1000, 60 * MINUTE)]),
                 (False, 5000 + i % 7000, [(OK if ok else 100000, MINUTE)])])]


def prime(r, kind, layout, sha, tag):
    """Before a check batch (not measured): each of its 1,000 keys afresh holds a counter half
    full (cost 50 of 100 per minute), so every script's checks read and parse a stored TAT 30 s
    ahead, whatever TTL the script gives its keys."""
    if kind != "check":
        return
    batch = []
    for i in range(1000):
        key = "relaykit:rl:{%schk%d}:c" % (tag, i)
        batch.append(["DEL", key])
        batch.append(eval_args(layout, sha, [key], [(True, 50, [(100, MINUTE)])]))
    r.pipe(batch)


def batch_of(kind, layout, sha, tag, first, calls):
    rng = random.Random(first)
    out = []
    i = first
    while len(out) < calls:
        out += decisions(kind, layout, sha, tag, i, rng)
        i += 1
    return out


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


def agree(r, shas, layouts):
    """All scripts answer a random workload identically (an injected clock, fresh keys)."""
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
            if len(shape) > 1 and rng.randrange(8) == 0:  # a reload dropped a window (for now)
                shape = shape[rng.randrange(len(shape)):][:1]
            cost = rng.randrange(3000) if k % 3 == 2 else 1 + rng.randrange(3)
            charges.append((k, shape, cost, rng.randrange(5) != 0))
        commit = rng.randrange(4) != 0
        replies = []
        for tag, sha in shas.items():
            keys = ["agree:{%s%d}:%d" % (tag, k // 3, k) for k, _, _, _ in charges]
            replies.append(r.cmd(*eval_args(layouts[tag], sha, keys, [(e, c, s) for _, s, c, e in charges],
                                             now, commit)))
        if any(reply != replies[0] for reply in replies):
            raise SystemExit("scripts disagree at step %d: %r" % (step, replies))
        now += rng.randrange(2000) * 1000


# --breakdown: scripts that do part of a 3limits-ok decision's work, with its exact arguments
# (after layout: ARGV[4] TTL, ARGV[5] field, ARGV[6] max of key 1; ARGV[7] TTL, ARGV[8], ARGV[9]
# fields, ARGV[10], ARGV[11] maxima of key 2; ARGV[12] TTL, ARGV[13] field, ARGV[14] max of key 3).
STEPS = [
    ("reply only", ""),
    ("+ TIME", "redis.call('TIME')\n"),
    ("+ 3 HMGET (4 fields)", "redis.call('HMGET', KEYS[1], ARGV[5])\n"
     "redis.call('HMGET', KEYS[2], ARGV[8], ARGV[9])\nredis.call('HMGET', KEYS[3], ARGV[13])\n"),
    ("+ 3 HSET (4 fields)", "redis.call('HSET', KEYS[1], ARGV[5], '1765000000000000:1000000000000')\n"
     "redis.call('HSET', KEYS[2], ARGV[8], '1765000000000000:1000000000000', ARGV[9], "
     "'1765000000000000:1000000000000')\n"
     "redis.call('HSET', KEYS[3], ARGV[13], '1765000000000000:1000000000000')\n"),
    ("+ 3 PEXPIRE (the floor)", "redis.call('PEXPIRE', KEYS[1], ARGV[4])\n"
     "redis.call('PEXPIRE', KEYS[2], ARGV[7])\nredis.call('PEXPIRE', KEYS[3], ARGV[12])\n"),
]


# The same for the strings layout (bench/policyd/rate_script_strings.lua: ARGV[4], ARGV[5],
# ARGV[6] the three keys' TTLs), whose floor is TIME, one MGET and three SET ... PX.
STRING_STEPS = [
    ("strings: reply only", ""),
    ("strings: + TIME", "redis.call('TIME')\n"),
    ("strings: + MGET (3 keys)", "redis.call('MGET', KEYS[1], KEYS[2], KEYS[3])\n"),
    ("strings: + 3 SET PX (the floor)", "redis.call('SET', KEYS[1], '%s', 'PX', ARGV[4])\n"
     "redis.call('SET', KEYS[2], '%s', 'PX', ARGV[5])\n"
     "redis.call('SET', KEYS[3], '%s', 'PX', ARGV[6])\n" % ("x" * 24, "x" * 48, "x" * 24)),
]


def run_batches(r, shas, layouts, kinds, opts):
    """Interleaved rounds; returns per (kind, name): usec_per_call list, CPU µs list, calls,
    allowed decisions."""
    usec = {(k, s): [] for k in kinds for s in shas}
    cpu = {(k, s): [] for k in kinds for s in shas}
    calls = {(k, s): 0 for k in kinds for s in shas}
    allowed = {(k, s): 0 for k in kinds for s in shas}
    for rnd in range(opts.rounds):
        for kind in kinds:
            order = list(shas) if rnd % 2 == 0 else list(reversed(list(shas)))
            for name in order:
                batch = batch_of(kind, layouts[name], shas[name], name, rnd * opts.calls,
                                 opts.calls)
                prime(r, kind, layouts[name], shas[name], name)
                r.cmd("CONFIG", "RESETSTAT")
                cpu0 = cpu_seconds(r)
                replies = r.pipe(batch)
                cpu1 = cpu_seconds(r)
                u, c = evalsha_usec(r)
                usec[(kind, name)].append(u)
                cpu[(kind, name)].append((cpu1 - cpu0) * 1e6 / c)
                calls[(kind, name)] += c
                allowed[(kind, name)] += sum(1 for x in replies if all(x[1::2]))
    return usec, cpu, calls, allowed


def breakdown_scripts():
    """name -> (Lua source, layout) of each --breakdown step, hash layout then strings layout."""
    out = {}
    for steps, whole, layout in ((STEPS, "whole script", "after"),
                                 (STRING_STEPS, "strings: whole script", "strings")):
        body = ""
        for name, code in steps:
            body += code
            out[name] = (body + "return {1, 1, 0, 1, 0, 1, 0}\n", layout)
        out[whole] = (scripts()[layout][0], layout)
    return out


def print_breakdown(values, unit, what):
    print("Where a 3limits-ok decision's Redis %s goes (%s; each step adds to the one above)"
          % (unit, what))
    print("| step | %s per decision | added |" % unit)
    print("|---|---|---|")
    prev = 0.0
    for name, m in values.items():
        if name == "strings: reply only":
            prev = 0.0
        print("| %s | %.2f | %+.2f |" % (name, m, m - prev))
        prev = m


def breakdown(r, opts):
    named = breakdown_scripts()
    shas = {n: r.cmd("SCRIPT", "LOAD", src) for n, (src, _) in named.items()}
    layouts = {n: layout for n, (_, layout) in named.items()}
    _, cpu, _, _ = run_batches(r, shas, layouts, ["3limits-ok"], opts)
    print_breakdown({n: statistics.median(cpu[("3limits-ok", n)]) for n in shas}, "CPU µs",
                    "INFO cpu per decision, median of %d rounds of %d calls"
                    % (opts.rounds, opts.calls))


def breakdown_instructions(opts):
    named = breakdown_scripts()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        cg = CallgrindRedis(tmp)
        try:
            for name, (src, layout) in named.items():
                sha = cg.r.cmd("SCRIPT", "LOAD", src)
                cg.r.pipe(batch_of("3limits-ok", layout, sha, name, 0, opts.calls))
                batch = batch_of("3limits-ok", layout, sha, name, opts.calls, opts.calls)
                result[name] = cg.count(lambda: cg.r.pipe(batch)) / len(batch)
        finally:
            cg.stop()
    print_breakdown(result, "instructions", "callgrind, %d decisions after a warm-up batch"
                    % opts.calls)


class CallgrindRedis:
    """A private redis-server under valgrind's callgrind; count(fn) runs fn() and returns the
    instructions redis-server executed meanwhile (exact and repeatable on a loaded machine)."""

    def __init__(self, tmp):
        self.port = harness.free_port()
        self.out = os.path.join(tmp, "callgrind.out")
        self.dumps = 0
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + self.out, "redis-server",
             "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tmp, "--hz", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_port(self.port, proc=self.proc, what="redis-server under valgrind",
                          timeout=60)
        self.r = Resp(self.port)

    def control(self, flag):
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def count(self, fn):
        self.control("-z")
        fn()
        self.control("-d")
        self.dumps += 1
        dump = "%s.%d" % (self.out, self.dumps)
        for _ in range(100):
            if os.path.exists(dump):
                break
            time.sleep(0.1)
        return int(re.search(r"^(?:summary|totals): (\d+)", open(dump).read(), re.M).group(1))

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def instructions(opts, kinds):
    """Instructions redis-server executes per decision: per workload and script a warm-up
    batch, then one batch of --calls decisions counted."""
    named = scripts()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        cg = CallgrindRedis(tmp)
        try:
            shas = {n: cg.r.cmd("SCRIPT", "LOAD", src) for n, (src, _) in named.items()}
            for kind in kinds:
                for name, sha in shas.items():
                    layout = named[name][1]
                    cg.r.pipe(batch_of(kind, layout, sha, name, 0, opts.calls))
                    prime(cg.r, kind, layout, sha, name)
                    batch = batch_of(kind, layout, sha, name, opts.calls, opts.calls)
                    result[(kind, name)] = cg.count(lambda: cg.r.pipe(batch)) / len(batch)
        finally:
            cg.stop()
    names = list(named)
    print("Instructions redis-server executes per decision (callgrind, %d decisions per "
          "workload after a warm-up batch)" % opts.calls)
    print("| workload | " + " | ".join(names) + " | after ÷ previous | strings ÷ after |")
    print("|---|" + "---|" * len(names) + "---|---|")
    for kind in kinds:
        print("| %s | %s | %.2f | %.2f |" % (
            kind, " | ".join("%.0f" % result[(kind, n)] for n in names),
            result[(kind, "after")] / result[(kind, "previous")],
            result[(kind, "strings")] / result[(kind, "after")]))


# --ops: what one operation costs inside a script: each body runs 10,000 times in one EVALSHA
# (KEYS[1] a hash holding field 60000000 = "1765000000000000:100", ARGV[1] 24 packed bytes),
# an empty loop subtracted.
OPS = [
    ("ARGV[i] (global table)", "x = ARGV[2]"),
    ("tonumber('1765000000000000')", "x = tonumber(s16)"),
    ("tonumber('1')", "x = tonumber(s1)"),
    ("string.match(v, '^(%d+):(%d+)$')", "x, y = string.match(v, '^(%d+):(%d+)$')"),
    ("string.format('%.0f:%d', tat, max)", "x = string.format('%.0f:%d', n + i, 100)"),
    ("string.format('%d:%d', tat, max)", "x = string.format('%d:%d', n + i, 100)"),
    ("struct.unpack('<ddd', 24 bytes)", "x, y, z = struct.unpack('<ddd', ARGV[1])"),
    ("math.floor(x)", "x = math.floor(i * 1.5)"),
    ("a table {0}", "x = {0}"),
    ("redis.call('TIME')", "x = redis.call('TIME')"),
    ("redis.call('HMGET', key, 1 field)", "x = redis.call('HMGET', KEYS[1], '60000000')"),
    ("redis.call('HMGET', key, 2 fields)", "x = redis.call('HMGET', KEYS[1], '60000000', 'f')"),
    ("redis.call('HSET', key, field, string)", "redis.call('HSET', KEYS[1], 'f', v)"),
    ("redis.call('HSET', key, field, number)", "redis.call('HSET', KEYS[1], 'f', n)"),
    ("redis.call('PEXPIRE', key, string)", "redis.call('PEXPIRE', KEYS[1], '61000')"),
    ("redis.call('PEXPIRE', key, number)", "redis.call('PEXPIRE', KEYS[1], 61000)"),
    ("struct.unpack('<ddd', 24-byte value, pos)", "x, y, z = struct.unpack('<ddd', b24, 1)"),
    ("struct.pack('<ddd', period, tat, max)", "x = struct.pack('<ddd', 60000000, n + i, 100)"),
    ("redis.call('MGET', 1 key)", "x = redis.call('MGET', 'sk')"),
    ("redis.call('MGET', 3 keys)", "x = redis.call('MGET', 'sk', 'sk', 'sk')"),
    ("redis.call('SET', key, 24 bytes, 'PX', string)",
     "redis.call('SET', 'sk2', b24, 'PX', '61000')"),
    ("redis.call('SET', key, 24 bytes, 'PXAT', string)",
     "redis.call('SET', 'sk2', b24, 'PXAT', '1865000000000')"),
    ("redis.call('PSETEX', key, string, 24 bytes)", "redis.call('PSETEX', 'sk2', '61000', b24)"),
    ("redis.call('SET', key, 24 bytes) (no TTL)", "redis.call('SET', 'sk3', b24)"),
]


def ops():
    prologue = ("local s16, s1, v = '1765000000000000', '1', '1765000000000000:100' "
                "local n = 1765000000000000 local x, y, z "
                "local b24 = struct.pack('<ddd', 60000000, n, 100) ")
    with tempfile.TemporaryDirectory() as tmp:
        cg = CallgrindRedis(tmp)
        try:
            cg.r.cmd("HSET", "k", "60000000", "1765000000000000:100")
            cg.r.cmd("SET", "sk", struct.pack("<ddd", 60000000, 1765000000000000, 100))
            packed = struct.pack("<ddd", 1, 2, 3)

            def run(body):
                sha = cg.r.cmd("SCRIPT", "LOAD", prologue + "for i = 1, 10000 do " + body +
                               " end return 1")
                cg.r.cmd("EVALSHA", sha, 1, "k", packed, "x")
                return cg.count(lambda: cg.r.cmd("EVALSHA", sha, 1, "k", packed, "x"))
            empty = run("")
            rows = [(name, (run(body) - empty) / 10000.0) for name, body in OPS]
            args = {}
            for n in (2, 22):
                sha = cg.r.cmd("SCRIPT", "LOAD", "return 1")
                batch = [["EVALSHA", sha, 1, "k"] + ["1765000000000000"] * n] * 1000
                args[n] = cg.count(lambda: cg.r.pipe(batch)) / 1000.0
        finally:
            cg.stop()
    print("Instructions per operation inside a script (callgrind; 10,000 in one EVALSHA, an "
          "empty loop subtracted)")
    print("| operation | instructions |")
    print("|---|---|")
    for name, n in rows:
        print("| %s | %.0f |" % (name, n))
    print("| EVALSHA of `return 1` with 1 key and 2 arguments (whole command) | %.0f |" % args[2])
    print("| each further argument (22 instead of 2) | %.0f |" % ((args[22] - args[2]) / 20))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--relay-peak", type=float, default=34611.0)
    ap.add_argument("--after", help="a Lua file to use as \"after\" instead of redis_script.h's")
    ap.add_argument("--breakdown", action="store_true")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions under valgrind instead (use --calls 2000)")
    ap.add_argument("--ops", action="store_true",
                    help="count instructions per operation inside a script (valgrind)")
    opts = ap.parse_args()
    kinds = ["1limit", "3limits", "check", "1limit-ok", "3limits-ok", "seed"]
    if opts.instructions and opts.breakdown:
        breakdown_instructions(opts)
        return
    if opts.instructions:
        instructions(opts, kinds)
        return
    if opts.ops:
        ops()
        return
    named = scripts()
    if opts.after:
        named["after"] = (open(opts.after).read(), "after")
    print("load average before: %.2f %.2f %.2f" % os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        server = harness.redis_server(tmp)
        try:
            r = Resp(server.port)
            if opts.breakdown:
                breakdown(r, opts)
                return
            shas = {n: r.cmd("SCRIPT", "LOAD", src) for n, (src, _) in named.items()}
            layouts = {n: layout for n, (_, layout) in named.items()}
            agree(r, shas, layouts)
            r.cmd("FLUSHALL")
            usec, cpu, calls, allowed = run_batches(r, shas, layouts, kinds, opts)
        finally:
            server.stop()
            print("load average after: %.2f %.2f %.2f" % os.getloadavg())
    names = list(shas)
    print("Redis time per decision (cmdstat_evalsha usec_per_call; median of %d rounds of %d "
          "calls, min-max)" % (opts.rounds, opts.calls))
    print("| workload | allowed | " + " | ".join("%s µs" % n for n in names) +
          " | after ÷ previous | strings ÷ after |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for kind in kinds:
        cells = ["%.2f (%.2f–%.2f)" % (statistics.median(usec[(kind, n)]), min(usec[(kind, n)]),
                                      max(usec[(kind, n)])) for n in names]
        med = {n: statistics.median(usec[(kind, n)]) for n in names}
        print("| %s | %.0f %% | %s | %.2f | %.2f |" % (
            kind, 100.0 * allowed[(kind, "after")] / calls[(kind, "after")], " | ".join(cells),
            med["after"] / med["previous"], med["strings"] / med["after"]))
    print()
    print("redis-server CPU time per decision (INFO cpu user+sys over each batch ÷ calls: also "
          "parsing the request and writing the reply; median, min), and what it means: decisions/s "
          "per Redis core, relays per primary at %.0f decisions/s each" % opts.relay_peak)
    print("| workload | " + " | ".join("%s µs" % n for n in names) +
          " | after ÷ previous | strings ÷ after | decisions/s per core (after) |"
          " relays per primary (previous → after) |")
    print("|---|" + "---|" * len(names) + "---|---|---|---|")
    for kind in kinds:
        med = {n: statistics.median(cpu[(kind, n)]) for n in names}
        cells = ["%.2f (min %.2f)" % (med[n], min(cpu[(kind, n)])) for n in names]
        print("| %s | %s | %.2f | %.2f | %.0f | %.1f → %.1f |" % (
            kind, " | ".join(cells), med["after"] / med["previous"], med["strings"] / med["after"],
            1e6 / med["after"],
            1e6 / med["previous"] / opts.relay_peak, 1e6 / med["after"] / opts.relay_peak))
    print("calls counted: " + ", ".join("%s/%s %d" % (k, s, calls[(k, s)]) for k, s in calls))


if __name__ == "__main__":
    main()
