#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/policyd/request_cpu.py: where relaykit-policyd's CPU per request goes, without Postfix.

Three servers side by side, each driven in turn by bench/policyd/policy_load (4 connections,
open loop at --rate requests/s, one client and one sender, RCPT then END-OF-MESSAGE, full
Postfix 3.7 attribute sets), the turns interleaved round by round so the machine's load hits
them alike:
  full     relaykit-policyd with the policy section of bench/fullstack/run.py (one per-sender
           limit, a sender exemption, a relay rule; memory store; bench/policyd/instructions.py);
  minimal  relaykit-policyd with no limit and no relay rule: the daemon skeleton, the codec and
           the reply, no decision work (every answer DUNNO);
  floor    bench/netstring_echo -P: a bare epoll loop answering DUNNO without parsing.
CPU per request is the server's run time from /proc/PID/task/*/schedstat (nanoseconds) over the
requests policy_load completed. Prints the medians over --rounds and the ratios to the floor:
full / floor is what bench/fullstack compares; minimal / floor is the skeleton's and codec's
share; full / minimal the decision's.
Usage (from the repository): bench/policyd/request_cpu.py [--build-dir build] [--rounds 12]
                               [--rate 1000] [--seconds 2]
Exits 1 when a server cannot be started or policy_load fails.
"""

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

_spec = importlib.util.spec_from_file_location("instructions",
                                               os.path.join(HERE, "instructions.py"))
instructions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(instructions)

MINIMAL = """\
policy:
  listen: inet:127.0.0.1:{port}
  metrics_listen: 127.0.0.1:{metrics}
  store: memory
"""


def run_time(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
            total += int(f.read().split()[0])
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    load = os.path.join(build, "bench", "policy_load")
    policyd = os.path.join(build, "policyd", "relaykit-policyd")
    tmp = os.path.join("/tmp", "relaykit-request-cpu-%d" % os.getpid())
    os.makedirs(tmp, exist_ok=True)
    servers = []
    try:
        for name, text in (("full", instructions.CONFIG), ("minimal", MINIMAL)):
            port, metrics = harness.free_port(), harness.free_port()
            conf = os.path.join(tmp, name + ".yaml")
            harness.write_file(conf, text.format(port=port, metrics=metrics))
            proc = subprocess.Popen([policyd, "-c", conf, "-f"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            servers.append((name, proc, port))
        port = harness.free_port()
        proc = subprocess.Popen([os.path.join(build, "bench", "netstring_echo"), "-p", str(port),
                                 "-P"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(("floor", proc, port))
        for name, proc, port in servers:
            harness.wait_port(port, proc=proc, what=name, timeout=30)
        per = {name: [] for name, _, _ in servers}
        for _ in range(args.rounds):
            for name, proc, port in servers:
                before = run_time(proc.pid)
                out = subprocess.run(
                    [load, "--port", str(port), "--connections", "4", "--seconds",
                     str(args.seconds), "--principals", "1", "--max-recipients", "1", "--rate",
                     str(args.rate)], capture_output=True, text=True, check=True).stdout
                spent = run_time(proc.pid) - before
                requests = int(re.search(r'"requests": (\d+)', out).group(1))
                if requests <= 0:
                    sys.exit("%s answered no request" % name)
                per[name].append(spent / 1000.0 / requests)
    finally:
        for _, proc, _ in servers:
            harness.stop_process(proc)
    med = {name: statistics.median(v) for name, v in per.items()}
    for name, values in per.items():
        print("%-8s %6.2f µs/request (median of %d: %s)"
              % (name, med[name], len(values), " ".join("%.1f" % v for v in values)))
    print("full / floor %.2f, minimal / floor %.2f, full / minimal %.2f"
          % (med["full"] / med["floor"], med["minimal"] / med["floor"],
             med["full"] / med["minimal"]))


if __name__ == "__main__":
    main()
