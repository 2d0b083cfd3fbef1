#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/policyd/sentinel.py: relaykit-policyd through Redis Sentinel against direct, and the
failover gap.

Topology, all on loopback: one redis-server primary, one replica, three redis-sentinel (quorum 2,
down-after-milliseconds --down-after, default 1000); the test topology of
tests/e2e/test_policy_sentinel.py.

Steady state: two relaykit-policyd with the same limit as bench/policyd/run.py (100 messages per
minute per client address) and `on_store_error: closed`, one with `redis: address:` the primary
("direct"), the other with `redis: sentinels:` and `master_name:` ("sentinel", which finds the
same primary). bench/policyd/policy_load drives each in turn at --connections (closed loop:
saturation), interleaved direct, sentinel, direct, ... --repeat times. Per run: decisions/s,
relaykit-policyd's CPU per decision (utime + stime of the process from /proc/PID/stat over the
run, divided by the decisions), redis-server's CPU per decision (the same, for the primary) and
`cmdstat_evalsha` usec_per_call (INFO commandstats, reset before the run). Prints the medians and
sentinel / direct for each (target for decisions/s: >= 0.95).

Failover: --failovers times, with the sentinel policyd under an open-loop load (--rate requests/s
on 10 connections): SIGKILL the primary; the sentinels promote the replica. Measured: the time
without a primary as policyd saw it (/health polled every 20 ms: from the first answer that is not
"ok" to the last), when the sentinels switched (+switch-master in a sentinel's log, from the
kill), and the decisions answered by on_store_error meanwhile (relaykit_policy_answers_total
store_error_closed, i.e. DEFER_IF_PERMIT). The killed server is started again, rejoins as a
replica, and the next failover goes back to it.

Usage: bench/policyd/sentinel.py [--build-dir build] [--seconds 3] [--repeat 5]
       [--connections 10,100] [--failovers 5] [--rate 2000] [--down-after 1000]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import run as policy_bench  # noqa: E402
from test_policy_sentinel import MASTER, Topology, cli  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of pid (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def evalsha_usec_per_call(port):
    m = re.search(r"^cmdstat_evalsha:.*usec_per_call=([\d.]+)", cli(port, "INFO", "commandstats"),
                  re.M)
    return float(m.group(1)) if m else None


def answers(metrics_port, kind):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port,
                                  timeout=5).read().decode()
    m = re.search(r'^relaykit_policy_answers_total\{answer="%s"\} (\d+)' % kind, text, re.M)
    return int(m.group(1)) if m else 0


def policyd(build_dir, tmp, name, redis_text):
    port, metrics_port = harness.free_port(), harness.free_port()
    text = ("policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: 127.0.0.1:%d\n"
            "  store: redis\n  on_store_error: closed\n  limits:\n"
            "    - name: per-client\n      key: [client_address]\n      count: messages\n"
            "      max: %d\n      per: %ds\n" % (port, metrics_port, policy_bench.LIMIT_MAX,
                                                   policy_bench.LIMIT_SECONDS)) + redis_text
    path = os.path.join(tmp, "relaykit-%s.yaml" % name)
    harness.write_file(path, text)
    server = policy_bench.Server(name, [os.path.join(build_dir, "policyd", "relaykit-policyd"),
                                        "-c", path, "-f"], port, tmp)
    server.metrics_port = metrics_port
    return server


def steady_state(load, servers, primary, args):
    results = []
    redis_pid = primary[1].pid
    for _ in range(args.repeat):
        for conns in args.connections:
            for server in servers:
                cli(primary[0], "CONFIG", "RESETSTAT")
                cpu0, rcpu0 = cpu_seconds(server.proc.pid), cpu_seconds(redis_pid)
                r = policy_bench.measure(load, server.port, server.name, conns, args.seconds)
                if "error" in r:
                    sys.exit("%s: %s" % (server.name, r["error"]))
                r["policyd_us"] = (cpu_seconds(server.proc.pid) - cpu0) / r["requests"] * 1e6
                r["redis_us"] = (cpu_seconds(redis_pid) - rcpu0) / r["requests"] * 1e6
                r["usec_per_call"] = evalsha_usec_per_call(primary[0])
                results.append(r)
                print(json.dumps(r), flush=True)
    return results


def failovers(load, topo, server, args):
    """Kills the primary under load args.failovers times; returns one dict per failover."""
    out = []
    names = ("a", "b")
    for n in range(args.failovers):
        victim, survivor = names[n % 2], names[(n + 1) % 2]
        deferred0 = answers(server.metrics_port, "store_error_closed")
        samples, stop = [], threading.Event()

        def poll():
            while not stop.is_set():
                t = time.monotonic()
                samples.append((t, harness.http_health(server.metrics_port)))
                stop.wait(0.02)
        poller = threading.Thread(target=poll)
        poller.start()
        seconds = 6 + args.down_after / 1000.0 * 3
        gen = subprocess.Popen([load, "--port", str(server.port), "--connections", "10",
                                "--seconds", str(seconds), "--rate", str(args.rate),
                                "--label", "failover"], stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        killed_wall, killed_at = time.time(), time.monotonic()
        topo.kill(victim)
        harness.wait_until(lambda: topo.primary_port() == topo.ports[survivor] and
                           harness.http_health(server.metrics_port) == (200, "ok\n"),
                           60, "failover %d" % (n + 1))
        time.sleep(0.5)
        stop.set()
        poller.join()
        load_result = json.loads(gen.communicate(timeout=seconds * 4 + 60)[0].splitlines()[-1])
        down = [t for t, (code, body) in samples if t >= killed_at and code and body != "ok\n"]
        switched = topo.switch_master_time(killed_wall)
        r = {"failover": n + 1, "from": victim, "to": survivor,
             "gap_s": down[-1] - down[0] if down else 0.0,
             "first_seen_s": down[0] - killed_at if down else None,
             "switch_master_s": switched - killed_wall if switched else None,
             "on_store_error": answers(server.metrics_port, "store_error_closed") - deferred0,
             "load_rps": load_result.get("rps"), "load_errors": load_result.get("errors")}
        out.append(r)
        print(json.dumps(r), flush=True)
        # The killed server comes back as a replica of the new primary before the next.
        topo.restart_as_replica(victim)
    return out


def report(results, gaps, args):
    def med(label, conns, field):
        runs = [r[field] for r in results if r["label"] == label and r["connections"] == conns]
        return statistics.median(runs)
    print("\n%-9s %6s %10s %14s %14s %14s" % ("policyd", "conns", "req/s", "policyd µs/dec",
                                            "redis µs/dec", "usec_per_call"))
    for r in results:
        print("%-9s %6d %10.0f %14.1f %14.2f %14.2f" % (
            r["label"], r["connections"], r["rps"], r["policyd_us"], r["redis_us"],
            r["usec_per_call"] or 0))
    print("\nmedians over %d interleaved runs of %.0f s each:" % (args.repeat, args.seconds))
    for conns in args.connections:
        d = [med("direct", conns, f) for f in ("rps", "policyd_us", "redis_us", "usec_per_call")]
        s = [med("sentinel", conns, f) for f in ("rps", "policyd_us", "redis_us",
                                                  "usec_per_call")]
        print("%3d conns: decisions/s sentinel %.0f, direct %.0f: %.3fx (target >= 0.95); "
              "policyd CPU/decision %.1f vs %.1f µs (%.2fx); redis CPU/decision %.2f vs %.2f µs; "
              "evalsha usec_per_call %.2f vs %.2f" % (
                  conns, s[0], d[0], s[0] / d[0], s[1], d[1], s[1] / d[1], s[2], d[2], s[3],
                  d[3]))
    if gaps:
        g = sorted(x["gap_s"] for x in gaps)
        sw = sorted(x["switch_master_s"] for x in gaps if x["switch_master_s"] is not None)
        e = sorted(x["on_store_error"] for x in gaps)
        print("failover (down-after-milliseconds %d, %d failovers, %d req/s offered): no primary "
              "as policyd saw it median %.2f s (%.2f-%.2f); +switch-master %.2f s after the "
              "kill (median); decisions answered by on_store_error median %d (%d-%d)" % (
                  args.down_after, len(gaps), args.rate, statistics.median(g), g[0], g[-1],
                  statistics.median(sw) if sw else float("nan"), statistics.median(e), e[0],
                  e[-1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=harness.build_dir())
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--connections", default="10,100")
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--down-after", type=int, default=1000)
    ap.add_argument("--json", help="write every result here")
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    args.connections = [int(c) for c in args.connections.split(",")]
    tmp = tempfile.mkdtemp(prefix="relaykit-bench-sentinel-")
    os.chmod(tmp, 0o755)
    load = policy_bench.load_binary(args.build_dir, tmp)
    topo = Topology(os.path.join(tmp, "redis"))
    os.makedirs(topo.dir)
    try:
        topo.start_replicated(extra=["sentinel down-after-milliseconds %s %d"
                                     % (MASTER, args.down_after)])
        timeout = "  timeout_ms: 100\n"
        direct = policyd(args.build_dir, tmp, "direct",
                         "redis:\n  address: 127.0.0.1:%d\n" % topo.ports["a"] + timeout)
        sentinel = policyd(args.build_dir, tmp, "sentinel",
                           "redis:\n  sentinels: [%s]\n  master_name: %s\n" % (
                               ", ".join("127.0.0.1:%d" % p for p in topo.sentinel_ports),
                               MASTER) + timeout)
        with sentinel:
            with direct:
                for s in (direct, sentinel):
                    harness.wait_until(lambda: harness.http_health(s.metrics_port) ==
                                       (200, "ok\n"), 30, s.name + " healthy")
                results = steady_state(load, [direct, sentinel],
                                       (topo.ports["a"], topo.procs["a"]), args)
            gaps = failovers(load, topo, sentinel, args)
    finally:
        topo.stop()
    report(results, gaps, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steady": results, "failovers": gaps}, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
