#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/fullstack/run.py: the whole relay as users run it, against Postfix doing the same work.

Each configuration is a private Postfix relaying 1 KiB messages from smtp-source (sender
root@relay.corp.local, so every message has its envelope sender and From rewritten) to one bare
smtp-sink:
  none          Postfix alone (no rewriting, no tables);
  native        Postfix doing the same jobs itself: hash/regexp transport_maps, smtp_generic_maps,
                sender_canonical_maps, sender_dependent_relayhost_maps, header_checks;
  wired-memory  relaykit wired as every hook allows (socketmap for all four maps, the milter,
                the policy server at RCPT and END-OF-DATA), memory store;
  wired-redis   the same with the Redis store;
  rec-memory    relaykit's recommended wiring (each job once, see the README): the milter rewrites
                the envelope sender and From before the queue, the socketmap serves only what a
                table must (transport, sender_dependent_relayhost), the policy server is asked at
                END-OF-DATA only (the seed rules count messages per sender; nothing needs RCPT);
  rec-redis     the same with the Redis store;
  floor         the recommended wiring with do-nothing servers in place of relaykit's daemons
                (bench/milter_floor, netstring_echo answering NOTFOUND, netstring_echo -P
                answering DUNNO): what Postfix's own side of the three protocols costs here;
  floor-wired   the same do-nothing servers wired as wired-*: the floor per socketmap lookup
                and per policy request, to compare relaykit's CPU per request with.
Limits are set high enough that nothing is refused. All configurations run side by side and
their runs interleave (none, native, ..., none, ...), so drifting load on a shared machine hits
them alike.

Per run and configuration it records: accepted msg/s (smtp-source's wall time), relayed msg/s
(until the queue is empty), CPU µs per message per process group (Postfix: utime+stime from
/proc of the master, its children and their reaped children via the master's cutime/cstime;
each relaykit daemon, each floor server and redis-server: its threads' run time from
/proc/PID/task/*/schedstat, in nanoseconds, as ticks are too coarse for them) and in total, context switches per message (live processes'
voluntary+nonvoluntary; Postfix processes are kept alive for the whole run, max_use/max_idle),
socketmap lookups per message per map and policy requests per message (relaykit's /metrics;
the floor servers count what they answer), and each daemon's CPU µs per request beside its floor's.
Prints medians over --repeat runs and the ratios to `native`, with the targets of the full-stack
issue (rec-memory >= 0.85x native msg/s and <= 1.25x its CPU; rec-redis >= 0.75x).
Usage (as root): bench/fullstack/run.py [--build-dir build] [--repeat 5] [--messages 2000]
                   [--sessions 4,20] [--kinds none,native,...] [--json FILE]
Exits 1 when a server cannot be started, smtp-source fails or mail is not rewritten.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
SENDER = "root@relay.corp.local"
RCPT = "ops@example.com"
CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = ["none", "native", "wired-memory", "wired-redis", "rec-memory", "rec-redis", "floor",
         "floor-wired"]

# The jobs of conf/relaykit.yaml, as Postfix's own tables (the native equivalent).
NATIVE_GENERIC_HASH = ("root@relay.corp.local noreply@corp.com\n"
                       "cron@relay.corp.local cron@corp.com\n"
                       "nagios@relay.corp.local alerts@corp.com\n"
                       "@localhost noreply@corp.com\n")
NATIVE_CANONICAL_HASH = ("root@relay.corp.local noreply@corp.com\n"
                         "cron@relay.corp.local cron@corp.com\n"
                         "nagios@relay.corp.local alerts@corp.com\n")
NATIVE_DOMAIN_REGEXP = "/^(.*)@srv[0-9]+\\.corp\\.local$/ ${1}@corp.com\n"
NATIVE_SENDER_RELAY = ("nagios@relay.corp.local [127.0.0.1]:{alerts}\n"
                       "zabbix@relay.corp.local [127.0.0.1]:{alerts}\n"
                       "alerts@corp.com [127.0.0.1]:{alerts}\n")
NATIVE_TRANSPORT = ("corp.local smtp:[127.0.0.1]:{exch}\n"
                    ".corp.local smtp:[127.0.0.1]:{exch}\n"
                    "corp.com smtp:[127.0.0.1]:{exch}\n"
                    "partner.com smtp:[127.0.0.1]:{partner}\n")
NATIVE_HEADER_CHECKS = ("/^X-Originating-IP:/ IGNORE\n"
                        "/^Received:.*\\blocalhost\\b/ IGNORE\n"
                        "/^From:.*<.*@localhost>$/ REPLACE From: \"Server Notifications\" "
                        "<noreply@corp.com>\n")

CONFIG = """\
postfix:
  local_domains: [relay.corp.local, localhost]
  recipient_delimiter: "+"
  smtputf8_enable: false
tables:
  generic:
    search: address
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          cron@relay.corp.local: cron@corp.com
          nagios@relay.corp.local: alerts@corp.com
          "@localhost": noreply@corp.com
      - regexp: |
          /^(.*)@srv[0-9]+\\.corp\\.local$/   ${{1}}@corp.com
  canonical:
    search: address
    propagate_unmatched_extensions: true
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          cron@relay.corp.local: cron@corp.com
          nagios@relay.corp.local: alerts@corp.com
      - regexp: |
          /^(.*)@srv[0-9]+\\.corp\\.local$/   ${{1}}@corp.com
  transport:
    search: transport
    sources:
      - entries:
          corp.local: "smtp:[127.0.0.1]:{exch}"
          .corp.local: "smtp:[127.0.0.1]:{exch}"
          corp.com: "smtp:[127.0.0.1]:{exch}"
          partner.com: "smtp:[127.0.0.1]:{partner}"
  sender_relay:
    search: sender
    sources:
      - entries:
          nagios@relay.corp.local: "[127.0.0.1]:{alerts}"
          zabbix@relay.corp.local: "[127.0.0.1]:{alerts}"
          alerts@corp.com: "[127.0.0.1]:{alerts}"
socketmap:
  listen: inet:127.0.0.1:{sm_port}
  metrics_listen: 127.0.0.1:{sm_metrics}
milter:
  listen: unix:{milter_sock}
  socket_mode: "0666"
  metrics_listen: 127.0.0.1:{milter_metrics}
  on_error: tempfail
  header_checks: |
    /^X-Originating-IP:/      IGNORE
  header_rules:
    - match: '^Received:.*\\blocalhost\\b'
      action: remove
    - match: '^From:.*<.*@localhost>$'
      action: replace
      with: 'From: "Server Notifications" <noreply@corp.com>'
  rewrite_from:
    table: generic
    headers: [From]
  rewrite_sender:
    table: canonical
policy:
  listen: inet:127.0.0.1:{policy_port}
  metrics_listen: 127.0.0.1:{policy_metrics}
  store: {store}
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
      filter: "smtp:[127.0.0.1]:{alerts}"
redis:
  address: 127.0.0.1:{redis_port}
  timeout_ms: 200
  key_prefix: "bench{n}:"
"""

POSTFIX_KEEPALIVE = {
    # Postfix processes live through the whole run, so their context switches can be read from
    # /proc (a reaped child's CPU still reaches the master's cutime, its switches would not).
    "max_use": 1000000, "max_idle": 3600, "default_process_limit": 100,
    "smtpd_client_connection_count_limit": 0, "smtpd_client_message_rate_limit": 0,
    "smtpd_client_connection_rate_limit": 0,
}


def proc_stat(pid):
    """(utime+stime, cutime+cstime) in seconds, or None when the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is state (field 3); utime is field 14 -> index 11.
    return ((int(fields[11]) + int(fields[12])) / CLK_TCK,
            (int(fields[13]) + int(fields[14])) / CLK_TCK)


def run_time(pid):
    """CPU seconds of every thread of pid from /proc/PID/task/*/schedstat (nanoseconds, not
    clock ticks: a daemon's few milliseconds per run are below utime+stime's 10 ms resolution),
    or None when the process is gone."""
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError):
        return None
    return total / 1e9


def ctx_switches(pid):
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def descendants(root, kids):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


class Group:
    """CPU and context switches of a process tree (root's reaped children through cutime)."""

    def __init__(self, name, root_pid, tree=True):
        self.name = name
        self.root = root_pid
        self.tree = tree

    def snapshot(self, kids):
        pids = descendants(self.root, kids) if self.tree else [self.root]
        cpu, csw = {}, {}
        reaped = 0.0
        for pid in pids:
            st = proc_stat(pid)
            if st is None:
                continue
            cpu[pid] = st[0]
            if not self.tree:
                precise = run_time(pid)
                cpu[pid] = precise if precise is not None else st[0]
            csw[pid] = ctx_switches(pid)
            if pid == self.root:
                reaped = st[1]
        return cpu, csw, reaped

    @staticmethod
    def delta(before, after):
        cpu0, csw0, reaped0 = before
        cpu1, csw1, reaped1 = after
        cpu = reaped1 - reaped0
        csw = 0
        for pid, v in cpu1.items():
            cpu += v - cpu0.get(pid, 0.0)
            csw += csw1[pid] - csw0.get(pid, 0)
        return cpu, csw


def echo_count(proc, path):
    """Requests answered so far by a netstring_echo started with -s PATH (asked by SIGUSR1)."""
    def read():
        try:
            with open(path) as f:
                seq, n = f.read().split()
            return int(seq), int(n)
        except (OSError, ValueError):
            return 0, 0
    seq0 = read()[0]
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        seq, n = read()
        if seq > seq0:
            return float(n)
        time.sleep(0.01)
    raise RuntimeError("netstring_echo did not report its request count to %s" % path)


def master_pid(pf):
    with open(os.path.join(pf.queue, "pid", "master.pid")) as f:
        return int(f.read().split()[0])


def metric_values(port, name):
    """{labels-text: value} of one metric family from a /metrics endpoint."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^%s(\{[^}]*\})?\s+(\S+)$" % re.escape(name), line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def queued(pf):
    n = 0
    for d in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _, _, files in os.walk(os.path.join(pf.queue, d)):
            n += len(files)
    return n


class Stack:
    """One configuration: a Postfix and what it is wired to."""

    def __init__(self, kind, sink_port, redis, n):
        self.kind = kind
        self.tmp = harness.make_tmpdir("relaykit-bench-full-%s-" % kind)
        self.daemons = {}   # name -> RelaykitDaemon or Popen
        self.procs = []
        self.metrics = {}   # daemon name -> metrics port
        self.redis = redis if kind.endswith("redis") else None
        params = dict(POSTFIX_KEEPALIVE)
        ports = {"exch": sink_port, "partner": sink_port, "alerts": sink_port}
        if kind == "native":
            params.update(self._native(ports))
        elif kind in ("wired-memory", "wired-redis", "rec-memory", "rec-redis"):
            params.update(self._relaykit(kind, ports, redis, n))
        elif kind in ("floor", "floor-wired"):
            params.update(self._floor(kind))
        self.pf = harness.PostfixInstance(os.path.join(self.tmp, "postfix"),
                                          relay_port=sink_port, extra_main_cf=params)
        self.pf.write_config()
        for path in getattr(self, "to_postmap", []):
            self.pf.postmap(path)
        self.pf.start()

    def _native(self, ports):
        w = lambda name, text: harness.write_file(os.path.join(self.tmp, name), text)  # noqa
        generic = w("generic", NATIVE_GENERIC_HASH)
        canonical = w("canonical", NATIVE_CANONICAL_HASH)
        domre = w("domains.regexp", NATIVE_DOMAIN_REGEXP)
        relay = w("sender_relay", NATIVE_SENDER_RELAY.format(**ports))
        transport = w("transport", NATIVE_TRANSPORT.format(**ports))
        hc = w("header_checks", NATIVE_HEADER_CHECKS)
        self.to_postmap = [generic, canonical, relay, transport]
        return {
            "transport_maps": "hash:" + transport,
            "smtp_generic_maps": "hash:%s, regexp:%s" % (generic, domre),
            "sender_canonical_maps": "hash:%s, regexp:%s" % (canonical, domre),
            "sender_dependent_relayhost_maps": "hash:" + relay,
            "header_checks": "regexp:" + hc,
        }

    def _relaykit(self, kind, ports, redis, n):
        store = "redis" if kind.endswith("redis") else "memory"
        p = dict(ports)
        p.update(sm_port=harness.free_port(), sm_metrics=harness.free_port(),
                 milter_sock=os.path.join(self.tmp, "milter.sock"),
                 milter_metrics=harness.free_port(), policy_port=harness.free_port(),
                 policy_metrics=harness.free_port(), store=store,
                 redis_port=redis.port if redis else 1, n=n)
        config = harness.write_file(os.path.join(self.tmp, "relaykit.yaml"), CONFIG.format(**p))
        sm = harness.RelaykitDaemon("relaykit-socketmapd", config, port=p["sm_port"],
                                    workdir=self.tmp).start()
        milter = harness.RelaykitDaemon("relaykit-milter", config, workdir=self.tmp,
                                        unix_socket=p["milter_sock"]).start()
        policy = harness.RelaykitDaemon("relaykit-policyd", config, port=p["policy_port"],
                                        workdir=self.tmp).start()
        self.daemons = {"socketmapd": sm, "milter": milter, "policyd": policy}
        self.metrics = {"socketmapd": p["sm_metrics"], "milter": p["milter_metrics"],
                        "policyd": p["policy_metrics"]}
        sm_base = "socketmap:inet:127.0.0.1:%d:" % p["sm_port"]
        policy_svc = ("check_policy_service { inet:127.0.0.1:%d, timeout=10s, "
                      "default_action=DUNNO }" % p["policy_port"])
        params = {
            "transport_maps": sm_base + "transport",
            "sender_dependent_relayhost_maps": sm_base + "sender_relay",
            "smtpd_milters": "unix:" + p["milter_sock"],
            "non_smtpd_milters": "$smtpd_milters",
            "milter_default_action": "tempfail",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_end_of_data_restrictions": policy_svc,
        }
        if kind.startswith("wired"):
            params.update({
                "smtp_generic_maps": sm_base + "generic",
                "sender_canonical_maps": sm_base + "canonical",
                "smtpd_recipient_restrictions": policy_svc,
            })
        return params

    def _floor(self, kind):
        build = os.environ["RELAYKIT_BUILD_DIR"]
        sm_port, policy_port = harness.free_port(), harness.free_port()
        sock = os.path.join(self.tmp, "floor.sock")
        echo = os.path.join(build, "bench", "netstring_echo")
        # Each echo server counts the requests it answers (written to a file on SIGUSR1): the
        # floors' requests per message, which differ from relaykit's (Postfix asks for fewer or
        # other keys when every answer is NOTFOUND).
        self.floor_counts = {"lookup (floor)": os.path.join(self.tmp, "echo-socketmap.count"),
                             "policy (floor)": os.path.join(self.tmp, "echo-policy.count")}
        self.procs = [
            subprocess.Popen([echo, "-p", str(sm_port), "-s",
                              self.floor_counts["lookup (floor)"]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([echo, "-p", str(policy_port), "-P", "-s",
                              self.floor_counts["policy (floor)"]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([os.path.join(build, "bench", "milter_floor"), "-u", sock],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        harness.wait_port(sm_port, proc=self.procs[0], what="netstring_echo")
        harness.wait_port(policy_port, proc=self.procs[1], what="netstring_echo -P")
        harness.wait_until(lambda: os.path.exists(sock), 10, "milter_floor socket")
        self.daemons = {"socketmapd": self.procs[0], "policyd": self.procs[1],
                        "milter": self.procs[2]}
        sm_base = "socketmap:inet:127.0.0.1:%d:" % sm_port
        policy_svc = ("check_policy_service { inet:127.0.0.1:%d, timeout=10s, "
                      "default_action=DUNNO }" % policy_port)
        params = {
            "transport_maps": sm_base + "transport",
            "sender_dependent_relayhost_maps": sm_base + "sender_relay",
            "smtpd_milters": "unix:" + sock,
            "milter_default_action": "tempfail",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_end_of_data_restrictions": policy_svc,
        }
        if kind == "floor-wired":
            params.update({
                "smtp_generic_maps": sm_base + "generic",
                "sender_canonical_maps": sm_base + "canonical",
                "smtpd_recipient_restrictions": policy_svc,
            })
        return params

    def groups(self):
        out = [Group("postfix", master_pid(self.pf))]
        for name, d in sorted(self.daemons.items()):
            out.append(Group(name, d.pid, tree=False))
        if self.redis is not None:
            out.append(Group("redis", self.redis.proc.pid, tree=False))
        return out

    def counters(self):
        """Socketmap lookups per map and policy requests per stage, from /metrics."""
        out = {}
        if getattr(self, "floor_counts", None):
            for (key, path), proc in zip(sorted(self.floor_counts.items()), self.procs):
                out[key] = echo_count(proc, path)
        if "socketmapd" in self.metrics:
            for labels, v in metric_values(self.metrics["socketmapd"],
                                           "relaykit_socketmap_requests_total").items():
                out["lookup " + labels.strip("{}").replace("map=", "").strip('"')] = v
        if "policyd" in self.metrics:
            for labels, v in metric_values(self.metrics["policyd"],
                                           "relaykit_policy_requests_total").items():
                out["policy " + labels.strip("{}").replace("stage=", "").strip('"')] = v
        return out

    def stop(self):
        self.pf.stop()
        for d in self.daemons.values():
            if isinstance(d, subprocess.Popen):
                harness.stop_process(d)
            else:
                d.stop()
        subprocess.run(["rm", "-rf", self.tmp])


def run_source(port, sessions, count):
    t0 = time.monotonic()
    proc = subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-l", "1024", "-m", str(count),
                           "-f", SENDER, "-t", RCPT, "127.0.0.1:%d" % port],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % proc.stderr)
    return count / (time.monotonic() - t0)


def measure(stack, sessions, count):
    groups = stack.groups()
    kids = children_map()
    before = [g.snapshot(kids) for g in groups]
    counters0 = stack.counters()
    t0 = time.monotonic()
    accepted = run_source(stack.pf.port, sessions, count)
    deadline = time.monotonic() + 600
    while queued(stack.pf) and time.monotonic() < deadline:
        time.sleep(0.02)
    relayed = count / (time.monotonic() - t0)
    kids = children_map()
    after = [g.snapshot(kids) for g in groups]
    result = {"accepted": accepted, "relayed": relayed, "cpu": {}, "csw": {}, "counts": {}}
    for g, b, a in zip(groups, before, after):
        cpu, csw = Group.delta(b, a)
        result["cpu"][g.name] = cpu * 1e6 / count
        result["csw"][g.name] = csw / count
    for key, v in stack.counters().items():
        result["counts"][key] = (v - counters0.get(key, 0.0)) / count
    stack.pf.wait_queue_empty(timeout=300)
    return result


def median_of(runs, path):
    vals = []
    for r in runs:
        v = r
        for p in path:
            v = v.get(p, 0.0) if isinstance(v, dict) else 0.0
        vals.append(v)
    return statistics.median(vals) if vals else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", default="4,20")
    ap.add_argument("--kinds", help="comma-separated configurations (default: all)")
    ap.add_argument("--json", help="write every run's figures to this file")
    args = ap.parse_args()
    os.environ["RELAYKIT_BUILD_DIR"] = os.path.abspath(args.build_dir)
    kinds = KINDS if not args.kinds else [k for k in KINDS if k in args.kinds.split(",")]
    sessions_list = [int(s) for s in args.sessions.split(",")]
    sink_port = harness.free_port()
    sink = subprocess.Popen([harness.SMTP_SINK, "-u", "nobody", "127.0.0.1:%d" % sink_port,
                             "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    harness.wait_port(sink_port, proc=sink, what="smtp-sink")
    redis_tmp = harness.make_tmpdir("relaykit-bench-full-redis-")
    redis = harness.RedisServer(redis_tmp).start()
    stacks = {}
    runs = {}
    try:
        for n, kind in enumerate(kinds):
            stacks[kind] = Stack(kind, sink_port, redis, n)
            try:
                run_source(stacks[kind].pf.port, 4, 100)  # warm-up: processes, connections
            except RuntimeError as e:
                raise RuntimeError("%s: %s" % (kind, e))
            stacks[kind].pf.wait_queue_empty(timeout=120)
        for rep in range(args.repeat):
            for sessions in sessions_list:
                for kind in kinds:
                    r = measure(stacks[kind], sessions, args.messages)
                    runs.setdefault((kind, sessions), []).append(r)
                    print("run %d %-13s %2d sessions: %6.1f msg/s accepted, %6.1f relayed, "
                          "%6.0f CPU µs/msg" % (rep + 1, kind, sessions, r["accepted"],
                                                r["relayed"], sum(r["cpu"].values())),
                          flush=True)
        for kind in kinds:
            if kind.startswith(("wired", "rec")):
                log = stacks[kind].daemons["milter"].stderr()
                if "-> <noreply@corp.com>" not in log:
                    raise RuntimeError("the %s milter did not rewrite:\n%s" % (kind, log[-2000:]))
    finally:
        for s in stacks.values():
            s.stop()
        redis.stop()
        harness.stop_process(sink)
        subprocess.run(["rm", "-rf", redis_tmp])

    report(kinds, sessions_list, runs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"%s/%d" % k: v for k, v in runs.items()}, f, indent=1)
    return 0


def report(kinds, sessions_list, runs):
    print()
    print("medians of %d runs; ratios to native" % len(next(iter(runs.values()))))
    for sessions in sessions_list:
        print()
        print("%d sessions" % sessions)
        print("%-13s %9s %9s %6s %9s %6s %8s  %s" % ("config", "accepted", "relayed", "x nat",
                                                     "CPU µs", "x nat", "csw/msg",
                                                     "CPU µs per group"))
        nat_acc = median_of(runs.get(("native", sessions), []), ["accepted"]) or None
        nat_cpu = None
        if ("native", sessions) in runs:
            nat_cpu = statistics.median(sum(r["cpu"].values())
                                        for r in runs[("native", sessions)])
        for kind in kinds:
            rs = runs[(kind, sessions)]
            acc = median_of(rs, ["accepted"])
            rel = median_of(rs, ["relayed"])
            cpu = statistics.median(sum(r["cpu"].values()) for r in rs)
            csw = statistics.median(sum(r["csw"].values()) for r in rs)
            groups = sorted(rs[0]["cpu"].keys())
            per = " ".join("%s %.0f" % (g, median_of(rs, ["cpu", g])) for g in groups)
            print("%-13s %9.1f %9.1f %6s %9.0f %6s %8.1f  %s" % (
                kind, acc, rel, "%.2f" % (acc / nat_acc) if nat_acc else "-", cpu,
                "%.2f" % (cpu / nat_cpu) if nat_cpu else "-", csw, per))
        for kind in kinds:
            counts = runs[(kind, sessions)][0]["counts"]
            if counts:
                keys = sorted(counts)
                print("  %-11s per message: %s" % (kind, ", ".join(
                    "%s %.2f" % (k, median_of(runs[(kind, sessions)], ["counts", k]))
                    for k in keys)))
    print()
    print("CPU µs per request (daemon CPU / its requests; floors: floor-wired's echo servers, "
          "each divided by the requests it answered)")
    for sessions in sessions_list:
        for kind in kinds:
            rs = runs[(kind, sessions)]
            counts = rs[0]["counts"]
            lookups = sum(median_of(rs, ["counts", k]) for k in counts if k.startswith("lookup"))
            policy = sum(median_of(rs, ["counts", k]) for k in counts if k.startswith("policy"))
            parts = []
            if lookups:
                parts.append("socketmap %.1f" % (median_of(rs, ["cpu", "socketmapd"]) / lookups))
            if policy:
                parts.append("policy %.1f" % (median_of(rs, ["cpu", "policyd"]) / policy))
            if parts:
                print("  %2d sessions %-13s %s" % (sessions, kind, ", ".join(parts)))
    print()
    print("targets: rec-memory >= 0.85x native accepted msg/s and <= 1.25x native CPU per "
          "message; rec-redis >= 0.75x native accepted msg/s (both session counts)")


if __name__ == "__main__":
    sys.exit(main())
