#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/socketmap/run.py: how fast relaykit-socketmapd answers, against Postfix and the floor.

Measures, on loopback, with bench's C++ client socketmap_load (one thread per connection,
strictly sequential requests, like Postfix):
  1. lookups/s, p50, p99 on 1, 10 and 100 connections: relaykit-socketmapd vs netstring_echo
     (a bare epoll server answering "NOTFOUND " to everything: the cost of the round trip alone);
  2. cost as tables grow: `entries:` from 10 to 100k keys, `regexp:` from 10 to 10k rules, one
     connection, side by side with `postmap -q -` on Postfix hash: and regexp: tables holding the
     same rules (postmap reads keys from stdin in one process: no network, exact-key lookups only,
     so it is a lower bound for Postfix's own in-process cost).
Prints tables and ratios ("relaykit mean / postmap" < 1: relaykit answers a lookup, network round
trip included, faster than Postfix looks the key up in-process). Usage:
  bench/socketmap/run.py [--build-dir build] [--seconds 2] [--quick]
Needs root only for nothing; needs the build (relaykit-socketmapd, socketmap_load, netstring_echo)
and Postfix's postmap. Exits 1 if a server cannot be started or the client reports errors.
"""

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

MAP = "bench"
# On machines with 2+ CPUs the server runs on CPU 0 and the client on the others, so the two do
# not fight for one core and runs are comparable (the same for relaykit and the floor).
SERVER_CPUS = {0}


def pin(cpus):
    def apply():
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, cpus)
    return apply


def client_cpus():
    n = os.cpu_count() or 1
    return set(range(1, n)) if n > 1 else {0}
N_KEYS = 2000  # distinct request keys per scenario (half hits, half misses)


def entries_yaml(port, n_entries=0, n_regexps=0):
    lines = ["postfix:", "  local_domains: [relay.corp.local]", '  recipient_delimiter: "+"',
             "tables:", "  %s:" % MAP, "    search: address", "    sources:"]
    if n_entries:
        lines.append("      - entries:")
        lines += ['          "user%d@host%d.example": "mapped%d@corp.com"' % (i, i % 97, i)
                  for i in range(n_entries)]
    if n_regexps:
        lines.append("      - regexp: |")
        lines += ["          /^user%d@rx%d\\.example$/ rx%d@corp.com" % (i, i, i)
                  for i in range(n_regexps)]
    lines += ["socketmap:", "  listen: inet:127.0.0.1:%d" % port]
    return "\n".join(lines) + "\n"


def hash_source(n_entries):
    return "".join("user%d@host%d.example\tmapped%d@corp.com\n" % (i, i % 97, i)
                   for i in range(n_entries))


def regexp_source(n_regexps):
    return "".join("/^user%d@rx%d\\.example$/ rx%d@corp.com\n" % (i, i, i)
                   for i in range(n_regexps))


def keys_for(n_entries, n_regexps, rng):
    keys = []
    for i in range(N_KEYS):
        if i % 2 == 0 and (n_entries or n_regexps):
            if n_regexps and (not n_entries or i % 4 == 0):
                j = rng.randrange(n_regexps)
                keys.append("user%d@rx%d.example" % (j, j))
            else:
                j = rng.randrange(n_entries)
                keys.append("user%d@host%d.example" % (j, j % 97))
        else:
            keys.append("nobody%d@miss%d.example" % (i, i % 13))
    rng.shuffle(keys)
    return keys


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build_dir)
        self.load = os.path.join(self.build, "bench", "socketmap_load")
        self.echo = os.path.join(self.build, "bench", "netstring_echo")
        os.environ["RELAYKIT_BUILD_DIR"] = self.build
        self.socketmapd = harness.binary_path("relaykit-socketmapd")
        self.relaykit = harness.binary_path("relaykit")
        for b in (self.load, self.echo):
            if not os.access(b, os.X_OK):
                sys.exit("not built: %s (cmake --build %s --target socketmap_load netstring_echo)"
                         % (b, self.build))
        self.tmp = tempfile.mkdtemp(prefix="relaykit-bench-", dir="/tmp")
        os.chmod(self.tmp, 0o755)
        self.rng = random.Random(42)
        self.pf = harness.PostfixInstance(os.path.join(self.tmp, "postfix"))
        self.pf.write_config()  # postmap needs a main.cf

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_load(self, port, keys_file, conns):
        proc = subprocess.run([self.load, "-p", str(port), "-k", keys_file, "-c", str(conns),
                               "-d", str(self.args.seconds), "-m", MAP],
                              capture_output=True, text=True, timeout=self.args.seconds + 60,
                              preexec_fn=pin(client_cpus()))
        if proc.returncode != 0:
            raise RuntimeError("socketmap_load failed: %s" % proc.stderr.strip())
        return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", proc.stdout)}

    def write_keys(self, keys, name):
        return harness.write_file(os.path.join(self.tmp, name), "".join(k + "\n" for k in keys))

    def start_socketmapd(self, n_entries, n_regexps):
        port = harness.free_port()
        cfg = harness.write_file(os.path.join(self.tmp, "sm-%d-%d.yaml" % (n_entries, n_regexps)),
                                 entries_yaml(port, n_entries, n_regexps))
        err = open(os.path.join(self.tmp, "socketmapd.stderr"), "a")
        t0 = time.monotonic()
        proc = subprocess.Popen([self.socketmapd, "-c", cfg, "-f"], stdout=err, stderr=err,
                                preexec_fn=pin(SERVER_CPUS))
        try:
            harness.wait_port(port, proc=proc, what="relaykit-socketmapd", timeout=300)
        except Exception:
            harness.stop_process(proc)
            raise
        return proc, port, time.monotonic() - t0

    def start_echo(self):
        port = harness.free_port()
        proc = subprocess.Popen([self.echo, "-p", str(port)], preexec_fn=pin(SERVER_CPUS))
        harness.wait_port(port, proc=proc, what="netstring_echo", timeout=10)
        return proc, port

    def postmap_cost(self, table_spec, keys):
        """Microseconds per lookup of `postmap -q - TABLE` (start-up cost subtracted)."""
        def timed(ks):
            t0 = time.perf_counter()
            subprocess.run(["/usr/sbin/postmap", "-c", self.pf.etc, "-q", "-", table_spec],
                           input="".join(k + "\n" for k in ks), capture_output=True, text=True,
                           timeout=600)
            return time.perf_counter() - t0
        base = min(timed(keys[:1]) for _ in range(3))
        total = timed(keys)
        return max(total - base, 0.0) / len(keys) * 1e6

    def query_cost(self, cfg, keys):
        """Microseconds per lookup of `relaykit query -c CFG MAP -` (start-up and table load
        subtracted): the same engine as the server, in one process reading keys on stdin, the
        same method as postmap_cost, so the two compare the lookup engines alone."""
        def timed(ks):
            t0 = time.perf_counter()
            subprocess.run([self.relaykit, "query", "-c", cfg, MAP, "-"],
                           input="".join(k + "\n" for k in ks), capture_output=True, text=True,
                           timeout=600)
            return time.perf_counter() - t0
        base = min(timed(keys[:1]) for _ in range(3))
        total = min(timed(keys) for _ in range(3))
        return max(total - base, 0.0) / len(keys) * 1e6

    # ---- scenarios ----
    def concurrency(self):
        print("\n== 1. concurrency: 1000 entries + 100 regexps, half hits ==")
        keys = self.write_keys(keys_for(1000, 100, self.rng), "keys-conc")
        sm, sm_port, _ = self.start_socketmapd(1000, 100)
        echo, echo_port = self.start_echo()
        rows = []
        try:
            for conns in self.args.connections:
                r = self.run_load(sm_port, keys, conns)
                f = self.run_load(echo_port, keys, conns)
                rows.append((conns, r, f))
        finally:
            harness.stop_process(sm)
            harness.stop_process(echo)
        print("%5s | %12s %9s %9s | %12s %9s %9s | %s" % (
            "conns", "relaykit/s", "p50 us", "p99 us", "floor/s", "p50 us", "p99 us",
            "relaykit/floor"))
        for conns, r, f in rows:
            print("%5d | %12.0f %9.1f %9.1f | %12.0f %9.1f %9.1f | %.2f" % (
                conns, r["rate"], r["p50_us"], r["p99_us"], f["rate"], f["p50_us"],
                f["p99_us"], r["rate"] / f["rate"]))

    def growth(self, label, sizes, make_cfg_args, native_type, native_source):
        print("\n== %s ==" % label)
        print("%8s | %7s | %11s %8s %8s %9s | %13s | %11s | %s" % (
            "size", "load s", "relaykit/s", "mean us", "p50 us", "p99 us", "postmap us/lk",
            "query us/lk", "round trip / postmap; postmap / query"))
        for size in sizes:
            n_entries, n_regexps = make_cfg_args(size)
            key_list = keys_for(n_entries, n_regexps, self.rng)
            keys = self.write_keys(key_list, "keys-%s-%d" % (native_type, size))
            sm, port, load_s = self.start_socketmapd(n_entries, n_regexps)
            try:
                r = self.run_load(port, keys, 1)
            finally:
                harness.stop_process(sm)
            path = harness.write_file(os.path.join(self.tmp, "%s-%d" % (native_type, size)),
                                      native_source(size))
            if native_type == "hash":
                self.pf.postmap(path)
            # Slow regexp tables: fewer keys keep postmap's run short.
            pk = key_list if native_type == "hash" or size <= 1000 else key_list[:200]
            native = self.postmap_cost("%s:%s" % (native_type, path), pk)
            # relaykit's engine alone, on many keys so the per-key cost dominates the run.
            cfg = os.path.join(self.tmp, "sm-%d-%d.yaml" % (n_entries, n_regexps))
            engine = self.query_cost(cfg, key_list * max(1, 20000 // len(key_list)))
            mean = 1e6 / r["rate"]
            print("%8d | %7.2f | %11.0f %8.1f %8.1f %9.1f | %13.1f | %11.2f | %.3g; %.3g" % (
                size, load_s, r["rate"], mean, r["p50_us"], r["p99_us"], native, engine,
                mean / native if native > 0 else float("inf"),
                native / engine if engine > 0 else float("inf")))

    def main(self):
        print("relaykit-socketmapd: %s\nclient: %s, %.1fs per run after 0.3s warm-up, %d "
              "distinct keys, nproc=%d" % (self.socketmapd, self.load, self.args.seconds,
                                           N_KEYS, os.cpu_count()))
        self.concurrency()
        self.growth("2. indexed table growth (entries:, 1 connection) vs postmap -q - hash:",
                    self.args.entry_sizes, lambda n: (n, 0), "hash", hash_source)
        self.growth("3. regexp table growth (regexp:, 1 connection) vs postmap -q - regexp:",
                    self.args.regexp_sizes, lambda n: (0, n), "regexp", regexp_source)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--quick", action="store_true", help="smaller sizes, 1s runs")
    args = p.parse_args()
    args.connections = [1, 10, 100]
    args.entry_sizes = [10, 1000, 100000]
    args.regexp_sizes = [10, 100, 1000, 10000]
    if args.quick:
        args.seconds = 1.0
        args.entry_sizes = [10, 10000]
        args.regexp_sizes = [10, 1000]
    b = Bench(args)
    try:
        b.main()
    finally:
        b.close()


if __name__ == "__main__":
    main()
