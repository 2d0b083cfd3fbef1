#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/socketmap/instructions.py: relaykit-socketmapd's instructions per lookup (callgrind).

Runs relaykit-socketmapd (one `address` table of 100 entries, the configuration of
bench/socketmap/run.py) under `valgrind --tool=callgrind` and drives it with
bench/socketmap/socketmap_load on 4 connections (2,000 keys, half hits, half misses). After a
1 s warm-up the counters are zeroed, the load runs --seconds, the profile is dumped, and the
instructions of the whole process divided by the lookups the client completed are printed: one
number, stable under load unlike CPU time.
Usage (from the repository): bench/socketmap/instructions.py [--build-dir build] [--seconds 4]
                               [--annotate]
Exits 1 when the server cannot be started or no lookup was answered.
"""

import argparse
import importlib.util
import os
import random
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import run as socketmap_bench  # noqa: E402

# dumped_total() of bench/policyd/instructions.py (same file name as this one: loaded by path).
_spec = importlib.util.spec_from_file_location(
    "policyd_instructions", os.path.join(ROOT, "bench", "policyd", "instructions.py"))
policyd_instructions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(policyd_instructions)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--annotate", action="store_true")
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    tmp = tempfile.mkdtemp(prefix="relaykit-callgrind-")
    port = harness.free_port()
    conf = harness.write_file(os.path.join(tmp, "relaykit.yaml"),
                              socketmap_bench.entries_yaml(port, n_entries=100))
    keys = socketmap_bench.keys_for(100, 0, random.Random(42))
    keys_file = harness.write_file(os.path.join(tmp, "keys"), "".join(k + "\n" for k in keys))
    out = os.path.join(tmp, "socketmapd.callgrind")
    load = os.path.join(build, "bench", "socketmap_load")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--compress-strings=no", "--callgrind-out-file=" + out,
         os.path.join(build, "socketmapd", "relaykit-socketmapd"), "-c", conf, "-f"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "valgrind.log"), "w"))
    try:
        harness.wait_port(port, proc=server, what="relaykit-socketmapd", timeout=60)

        def drive(seconds):
            proc = subprocess.run([load, "-p", str(port), "-k", keys_file, "-c", "4", "-d",
                                   str(seconds), "-m", socketmap_bench.MAP],
                                  check=True, capture_output=True, text=True)
            return int(re.search(r"lookups=(\d+)", proc.stdout).group(1))

        drive(1)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        answered = drive(args.seconds)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        harness.stop_process(server)
    dump, total = policyd_instructions.dumped_total(out)
    if answered <= 0:
        sys.exit("no lookup answered")
    print("lookups %d, instructions %d, per lookup %.0f (profile %s)"
          % (answered, total, total / answered, dump))
    if args.annotate:
        subprocess.run(["callgrind_annotate", "--inclusive=no", dump])


if __name__ == "__main__":
    main()
