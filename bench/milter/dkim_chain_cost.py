#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/milter/dkim_chain_cost.py: what signing with Debian's OpenDKIM after relaykit costs.

smtp-source sends --count 1 KiB messages (sender root@relay.corp.local, so relaykit-milter rewrites
the envelope sender and From to noreply@corp.com) in 4 sessions into a private Postfix relaying to
a bare smtp-sink, for three milter chains:
  relaykit          relaykit-milter alone (seed rules, no signing), on inet:;
  +opendkim-rsa     relaykit-milter, then OpenDKIM (unix socket) signing corp.com, RSA-2048;
  +opendkim-both    relaykit-milter, then two OpenDKIM instances (RSA-2048, then Ed25519): the
                    two daemons and two milter hops Debian's OpenDKIM 2.11 needs for both
                    algorithms.
Per chain: messages accepted per second (smtp-source's wall time, median of --repeat runs, runs
interleaved across chains) and the CPU each milter process spent per message (utime + stime from
/proc/PID/stat, over all runs). Compare with relaykit's own signing cost from dkim_sign_cost.
Usage (as root): bench/milter/dkim_chain_cost.py [--build-dir build] [--count 400] [--repeat 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
import milter_fixtures  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
OPENDKIM = "/usr/sbin/opendkim"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class OpenDkim:
    def __init__(self, tmp, name, algorithm):
        d = os.path.join(tmp, name)
        os.makedirs(d, exist_ok=True)
        key = os.path.join(d, "key.pem")
        args = ["--algorithm", "ed25519"] if algorithm.startswith("ed") else []
        harness.run([harness.binary_path("relaykit"), "dkim", "keygen", "--domain", "corp.com",
                     "--selector", name, "--out", key] + args)
        # A unix socket, as Debian runs it (local:/run/opendkim/opendkim.sock): libmilter on TCP
        # without TCP_NODELAY would measure Nagle's delays, not OpenDKIM.
        self.name = name
        sock = os.path.join(d, "opendkim.sock")
        conf = harness.write_file(os.path.join(d, "opendkim.conf"), (
            "Mode s\nSyslog no\nRequireSafeKeys false\nDomain corp.com\nSelector %s\n"
            "KeyFile %s\nCanonicalization relaxed/relaxed\nSignatureAlgorithm %s\n"
            "OversignHeaders From\nInternalHosts 127.0.0.1\nSocket local:%s\nUMask 000\n"
            "PidFile %s/pid\n") % (name, key, algorithm, sock, d))
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: harness.unix_accepts(sock), 10, "opendkim socket")
        self.listen = "unix:" + sock

    def stop(self):
        harness.stop_process(self.proc)


class Chain:
    def __init__(self, name, tmp, sink_port, opendkims):
        self.name = name
        port = harness.free_port()
        listen = "inet:127.0.0.1:%d" % port
        config = harness.write_file(os.path.join(tmp, "relaykit.yaml"),
                                    milter_fixtures.config_text(milter_fixtures.SEED_MILTER,
                                                                listen))
        self.milter = harness.RelaykitDaemon("relaykit-milter", config, port=port, workdir=tmp)
        self.milter.start()
        self.opendkim = [OpenDkim(tmp, n, a) for n, a in opendkims]
        milters = ", ".join([listen] + [o.listen for o in self.opendkim])
        self.pf = harness.PostfixInstance(os.path.join(tmp, "postfix"), relay_port=sink_port,
                                          extra_main_cf={
                                              "default_process_limit": 100,
                                              "smtpd_client_connection_count_limit": 0,
                                              "smtpd_client_message_rate_limit": 0,
                                              "smtpd_milters": milters,
                                              "milter_default_action": "tempfail"})
        self.pf.start()
        self.rates = []
        self.cpu = {}
        self.messages = 0

    def procs(self):
        out = [("relaykit-milter", self.milter.proc.pid)]
        out += [("opendkim-" + o.name, o.proc.pid) for o in self.opendkim]
        return out

    def run(self, count):
        before = {n: cpu_seconds(p) for n, p in self.procs()}
        t0 = time.monotonic()
        proc = subprocess.run([SMTP_SOURCE, "-s", "4", "-l", "1024", "-m", str(count), "-f",
                               "root@relay.corp.local", "-t", "ops@example.com",
                               "127.0.0.1:%d" % self.pf.port],
                              capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError("smtp-source failed: %s" % proc.stderr)
        self.rates.append(count / elapsed)
        for n, p in self.procs():
            self.cpu[n] = self.cpu.get(n, 0.0) + cpu_seconds(p) - before[n]
        self.messages += count

    def stop(self):
        self.pf.stop()
        for o in self.opendkim:
            o.stop()
        self.milter.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ["RELAYKIT_BUILD_DIR"] = os.path.abspath(args.build_dir)
    tmp = harness.make_tmpdir("relaykit-dkim-bench-")
    sink_port = harness.free_port()
    sink = subprocess.Popen([harness.SMTP_SINK, "-u", "nobody", "127.0.0.1:%d" % sink_port,
                             "512"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    harness.wait_port(sink_port, proc=sink, what="smtp-sink")
    specs = [("relaykit", []),
             ("+opendkim-rsa", [("rsa", "rsa-sha256")]),
             ("+opendkim-both", [("rsa", "rsa-sha256"), ("ed", "ed25519-sha256")])]
    chains = []
    try:
        for name, od in specs:
            chains.append(Chain(name, os.path.join(tmp, name.strip("+")), sink_port, od))
        for _ in range(args.repeat):
            for c in chains:
                c.run(args.count)
        base = statistics.median(chains[0].rates)
        print("%-16s %10s %7s   %s" % ("chain", "msg/s", "ratio", "CPU per message (us)"))
        for c in chains:
            rate = statistics.median(c.rates)
            cpu = ", ".join("%s %.0f" % (n, c.cpu[n] * 1e6 / c.messages) for n, _ in c.procs())
            print("%-16s %10.1f %7.2f   %s" % (c.name, rate, rate / base, cpu))
    finally:
        for c in chains:
            c.stop()
        harness.stop_process(sink)
    return 0


if __name__ == "__main__":
    sys.exit(main())
