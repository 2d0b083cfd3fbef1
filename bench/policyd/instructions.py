#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/policyd/instructions.py: relaykit-policyd's instructions per policy request (callgrind).

Runs relaykit-policyd (memory store, the policy section of bench/fullstack/run.py: one
per-sender limit, a sender exemption, a relay rule) under `valgrind --tool=callgrind` and drives
it with bench/policyd/policy_load (full Postfix 3.7 attribute sets, RCPT then END-OF-MESSAGE,
one recipient per message, like Postfix in the full-stack bench). After a warm-up the counters
are zeroed, --requests requests are sent, the profile is dumped, and the instructions of the
event loop divided by the requests answered (relaykit_policy_requests_total) are printed: one
number, stable under load unlike CPU time. --principals 1 (default) is the full-stack stream
(one client, one sender); more spreads the requests over that many clients and senders.
Usage (from the repository): bench/policyd/instructions.py [--build-dir build] [--seconds 4]
                              [--principals 1] [--out FILE.callgrind] [--annotate]
Exits 1 when the server cannot be started or no request was answered.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

CONFIG = """\
postfix:
  local_domains: [relay.corp.local, localhost]
  recipient_delimiter: "+"
policy:
  listen: inet:127.0.0.1:{port}
  metrics_listen: 127.0.0.1:{metrics}
  store: memory
  on_store_error: open
  exempt:
    senders: ["monitoring@corp.com"]
  limits:
    - name: per-sender
      key: [sender]
      count: messages
      max: 100000000
      per: 1m
      reply: "450 4.7.1 Too many messages from $sender, slow down"
  relay:
    - sender: nagios@relay.corp.local
      filter: "smtp:[127.0.0.1]:2525"
"""


def requests_answered(metrics_port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port, timeout=30) as r:
        text = r.read().decode()
    return sum(float(m) for m in
               re.findall(r"^relaykit_policy_requests_total\{[^}]*\} (\S+)$", text, re.M))


def dumped_total(out):
    """The dump callgrind_control -d wrote for --callgrind-out-file=`out`, and its Ir total."""
    dumps = sorted(f for f in os.listdir(os.path.dirname(out))
                   if f.startswith(os.path.basename(out) + ".") and not f.endswith(".log"))
    dump = os.path.join(os.path.dirname(out), dumps[0]) if dumps else out
    with open(dump) as f:
        return dump, int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--principals", type=int, default=1)
    ap.add_argument("--out", default="")
    ap.add_argument("--annotate", action="store_true")
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    tmp = tempfile.mkdtemp(prefix="relaykit-callgrind-")
    port, metrics = harness.free_port(), harness.free_port()
    conf = os.path.join(tmp, "relaykit.yaml")
    harness.write_file(conf, CONFIG.format(port=port, metrics=metrics))
    out = os.path.abspath(args.out or os.path.join(tmp, "policyd.callgrind"))
    load = os.path.join(build, "bench", "policy_load")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--compress-strings=no", "--callgrind-out-file=" + out,
         os.path.join(build, "policyd", "relaykit-policyd"), "-c", conf, "-f"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "valgrind.log"), "w"))
    try:
        harness.wait_port(port, proc=server, what="relaykit-policyd", timeout=60)

        def drive(seconds):
            subprocess.run([load, "--port", str(port), "--connections", "4", "--seconds",
                            str(seconds), "--principals", str(args.principals),
                            "--max-recipients", "1"], check=True, stdout=subprocess.DEVNULL)

        drive(1)
        before = requests_answered(metrics)
        subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        drive(args.seconds)
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        answered = requests_answered(metrics) - before
    finally:
        harness.stop_process(server)
    dump, total = dumped_total(out)
    if answered <= 0:
        sys.exit("no request answered")
    print("requests %d, instructions %d, per request %.0f (profile %s)"
          % (answered, total, total / answered, dump))
    if args.annotate:
        subprocess.run(["callgrind_annotate", "--inclusive=no", dump])


if __name__ == "__main__":
    main()
