#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/milter/run.py: Postfix throughput with relaykit-milter, as ratios to Postfix alone.

One run measures, with smtp-source into a private Postfix relaying to a bare smtp-sink (no dump),
for 4 and 20 sessions and 1 KiB and 100 KiB messages (sender root@relay.corp.local, so the seed
rules rewrite the envelope sender and the From header of every message):
  none     Postfix alone;
  unix     relaykit-milter on unix: (smtpd_milters), seed rules;
  inet     relaykit-milter on inet: (smtpd_milters), seed rules;
  unix-nolog  as unix with the milter's stderr (its log) on /dev/null: what the log line of
           every changed message costs when stderr is a file (only when named in --kinds);
  unix-base  as unix with the relaykit-milter of another build (--baseline-build DIR, e.g. the
           parent commit's): a change's before and after in one interleaved run (only when
           named in --kinds);
  native   Postfix doing the same rewriting itself: header_checks + regexp sender_canonical_maps;
  floor    bench/milter_floor on unix: (smtpd_milters): the same protocol steps and edits as
           relaykit, answered at once with no work: Postfix's own side of the milter protocol,
           the best any milter can do here (skipped when the binary is not built);
  floor-inet  the same on inet:127.0.0.1 (TCP_NODELAY);
  floor-libevent  the floor's work on libevent's loop (a persistent read event per connection,
           as relaykit's daemons use it), on unix:: what the event library alone adds (only
           when named in --kinds);
  sign-rsa relaykit-milter on unix:, seed rules plus DKIM signing for corp.com (sign: all) with
           an RSA-2048 key made by `relaykit dkim keygen`;
  sign-ed25519  the same with an Ed25519 key.
Throughput is messages accepted per second (smtp-source's wall time: the milter sits in the
acceptance path), median of --repeat runs; the queue is drained between runs. A second table
gives messages relayed per second, from the first message in to the last one handed to the sink
(queue files counted every 20 ms): what the relay sustains when delivery shares the cores. All
four configurations run side by side and their runs interleave, so load drifting on a shared
machine hits them alike. Prints both tables and each configuration's ratio to `none` (target
>= 0.85 for unix and inet, on messages accepted per second), then, for each milter, the CPU it
spent per message (schedstat run time, utime + stime, and utime and stime apart: where a gap to
the floor lies, in user space or in the kernel) and its
context switches per message (voluntary + involuntary, all threads, /proc/PID/task/*/status),
measured over the same smtp-source runs, with relaykit's ratio to the floor's. Usage (as root):
  bench/milter/run.py [--build-dir build] [--repeat 3] [--quick]
                      [--kinds unix,inet,unix-nolog,native,floor,floor-inet,sign-rsa,
                               sign-ed25519] [--callgrind N [--per-wakeup]
                      [--callgrind-out DIR]]
                      [--strace N] [--perf N] [--lines N] [--baseline-build DIR]
With --perf N, instead of the throughput runs: CPU us per message of each milter kind sampled by
perf (cpu-clock, 10 kHz, attached after a warm-up, N messages, 4 sessions, 1 KiB), split by the
object the samples fell in (kernel, the milter's own code, libevent, libc, libstdc++, RE2, vdso),
and its twelve costliest user-space functions: where a gap in user time lies, with the cache and
TLB misses that callgrind does not see. Sampling inflates every figure; compare kinds in one run.
With --strace N, instead of the throughput runs: system calls per message of each milter kind
(strace -c -f attached after a warm-up, N messages, 4 sessions, 1 KiB), per call name.
With --callgrind N: instructions per message of each milter kind, and its code footprint: the
distinct 64-byte lines and 4 KiB pages of code it executed (per shared object), which each
message fetches again into the instruction cache and TLB after smtpd and cleanup ran; with
--per-wakeup, one session and one callgrind dump per wake-up (before each epoll_wait): the code
lines each wake-up executes. Under valgrind the milter is slower, so more packets wait per
wake-up than in a real run: compare wake-ups per message with the context switches of a
throughput run.
With --lines N: the code and data lines (64 bytes) each milter touches per message, summed over
its wake-ups, and which object's code touched each data line first (valgrind lackey, one
session; bench/milter/touched_lines.py): what each wake-up brings back from memory.
Exits 1 when a server cannot be started or smtp-source fails.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
import milter_fixtures  # noqa: E402
import touched_lines  # noqa: E402  (beside this script: sys.path[0])

SMTP_SOURCE = "/usr/sbin/smtp-source"
SENDER = "root@relay.corp.local"
RCPT = "ops@example.com"

NATIVE_HEADER_CHECKS = ("/^X-Originating-IP:/ IGNORE\n"
                        "/^Received:.*localhost/ IGNORE\n"
                        "/^From:.*<.*@localhost>$/ REPLACE From: \"Server Notifications\" "
                        "<noreply@corp.com>\n")
NATIVE_CANONICAL = ("/^root@relay\\.corp\\.local$/ noreply@corp.com\n"
                    "/^cron@relay\\.corp\\.local$/ cron@corp.com\n"
                    "/^nagios@relay\\.corp\\.local$/ alerts@corp.com\n"
                    "/^(.*)@srv[0-9]+\\.corp\\.local$/ ${1}@corp.com\n")


class FloorMilter:
    """bench/milter_floor on a unix socket (see the module docstring)."""

    def __init__(self, tmp, inet=False, prefix=(), libevent=False):
        if inet:
            port = harness.free_port()
            self.listen = "inet:127.0.0.1:%d" % port
            args = ["-p", str(port)]
        else:
            sock = os.path.join(tmp, "floor.sock")
            self.listen = "unix:" + sock
            args = ["-u", sock]
        if libevent:
            args = ["-e"] + args
        self.proc = subprocess.Popen(list(prefix) + [floor_binary()] + args,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if inet:
            harness.wait_port(port, proc=self.proc, what="milter_floor")
        else:
            harness.wait_until(lambda: os.path.exists(sock), 30, "milter_floor socket")

    def stop(self):
        harness.stop_process(self.proc)


def floor_binary():
    return os.path.join(os.environ["RELAYKIT_BUILD_DIR"], "bench", "milter_floor")


class BareSink:
    """smtp-sink without -d: accepts and discards (the floor for delivery)."""

    def __init__(self):
        self.port = harness.free_port()
        self.proc = subprocess.Popen([harness.SMTP_SINK, "-u", "nobody",
                                      "127.0.0.1:%d" % self.port, "512"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_port(self.port, proc=self.proc, what="smtp-sink")

    def stop(self):
        harness.stop_process(self.proc)


def queued(pf):
    """Messages still in the instance's queue (files, not postqueue: cheap enough to poll)."""
    n = 0
    for d in ("maildrop", "incoming", "active", "deferred", "hold"):
        for _, _, files in os.walk(os.path.join(pf.queue, d)):
            n += len(files)
    return n


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_usage(pid):
    """(CPU seconds from utime + stime, CPU seconds from schedstat, context switches, user CPU
    seconds, system CPU seconds) of a process so far, every thread included. utime + stime moves
    in clock ticks (10 ms); /proc/PID/task/*/schedstat counts each thread's run time in
    nanoseconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user = int(fields[11]) / CLOCK_TICKS
    system = int(fields[12]) / CLOCK_TICKS
    cpu = user + system
    run_ns = 0
    switches = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                run_ns += int(f.read().split()[0])
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return cpu, run_ns / 1e9, switches, user, system


def milter_pid(milter):
    if milter is None:
        return None
    return milter.pid if isinstance(milter, harness.RelaykitDaemon) else milter.proc.pid


def run_source(port, sessions, size, count):
    t0 = time.monotonic()
    proc = subprocess.run([SMTP_SOURCE, "-s", str(sessions), "-l", str(size), "-m", str(count),
                           "-f", SENDER, "-t", RCPT, "127.0.0.1:%d" % port],
                          capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % proc.stderr)
    return count / elapsed


SIGN_KINDS = {"sign-rsa": ["--algorithm", "rsa", "--bits", "2048"],
              "sign-ed25519": ["--algorithm", "ed25519"]}


def dkim_section(kind, tmp):
    """The milter's `dkim:` lines for a signing configuration ("" for the others)."""
    if kind not in SIGN_KINDS:
        return ""
    key = os.path.join(tmp, "corp.com.pem")
    harness.run([harness.binary_path("relaykit"), "dkim", "keygen", "--domain", "corp.com",
                 "--selector", "bench", "--out", key] + SIGN_KINDS[kind])
    return ("dkim:\n  sign: all\n  keys:\n"
            "    - {domain: corp.com, selector: bench, key_file: %s}\n" % key)


BASELINE_BUILD = None  # --baseline-build: the build directory unix-base runs its milter from


def start_stack(kind, tmp, sink_port, prefix=()):
    """Starts Postfix (and the milter) for one configuration; returns (postfix, milter|None).
    `prefix`: a command the milter runs under (valgrind ...), same process id."""
    params = {"default_process_limit": 100, "smtpd_client_connection_count_limit": 0,
              "smtpd_client_message_rate_limit": 0}
    milter = None
    if kind in ("unix", "inet", "unix-nolog", "unix-base") or kind in SIGN_KINDS:
        if kind != "inet":
            sock = os.path.join(tmp, "milter.sock")
            listen = "unix:" + sock
            port = None
        else:
            port = harness.free_port()
            listen = "inet:127.0.0.1:%d" % port
        config = harness.write_file(os.path.join(tmp, "relaykit.yaml"),
                                    milter_fixtures.config_text(
                                        milter_fixtures.SEED_MILTER + dkim_section(kind, tmp),
                                        listen))
        milter = harness.RelaykitDaemon("relaykit-milter", config, port=port, workdir=tmp)
        if kind == "unix-nolog":
            milter.stderr_path = os.devnull
        if kind == "unix-base":
            milter.binary = os.path.join(BASELINE_BUILD, "milters", "relaykit-milter")
        if prefix:
            wrapper = harness.write_file(os.path.join(tmp, "under-prefix"),
                                         "#!/bin/sh\nexec %s %s \"$@\"\n"
                                         % (" ".join(prefix), milter.binary), mode=0o755)
            milter.binary = wrapper
        milter.start(timeout=60)
        if kind != "inet":
            harness.wait_until(lambda: os.path.exists(sock), 60, "milter socket")
        params.update({"smtpd_milters": listen, "milter_default_action": "tempfail"})
    elif kind in ("floor", "floor-inet", "floor-libevent"):
        milter = FloorMilter(tmp, inet=kind == "floor-inet", prefix=prefix,
                             libevent=kind == "floor-libevent")
        params.update({"smtpd_milters": milter.listen, "milter_default_action": "tempfail"})
    elif kind == "native":
        hc = harness.write_file(os.path.join(tmp, "header_checks"), NATIVE_HEADER_CHECKS)
        canon = harness.write_file(os.path.join(tmp, "canonical"), NATIVE_CANONICAL)
        params.update({"header_checks": "regexp:" + hc, "sender_canonical_maps": "regexp:" + canon})
    pf = harness.PostfixInstance(os.path.join(tmp, "postfix"), relay_port=sink_port,
                                 extra_main_cf=params)
    pf.start()
    return pf, milter


def callgrind_totals(path):
    """The Ir total of a callgrind dump file."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("no totals in %s" % path)


def code_footprint(path):
    """{object: (distinct 64-byte lines, distinct 4 KiB pages)} of the code executed in a callgrind
    dump written with --dump-instr=yes --compress-strings=no --compress-pos=no: the same path runs
    for every message, so what one message's wake-ups fetch into the instruction cache and TLB
    when other processes ran in between (smtpd, cleanup)."""
    lines = {}
    obj = None
    after_calls = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                obj = os.path.basename(line[3:].strip())
            elif line.startswith("calls="):
                after_calls = True  # the next cost line is the call's inclusive cost
            elif line.startswith("0x"):
                if after_calls:
                    after_calls = False
                    continue
                lines.setdefault(obj, set()).add(int(line.split()[0], 16) >> 6)
    return {o: (len(s), len({n >> 6 for n in s})) for o, s in lines.items()}


def each_milter_under_load(kinds, count, measure, prefix_for=lambda kind, tmp: (), sessions=4):
    """For each milter kind: starts its stack (the milter under the command prefix_for(kind, tmp)
    gives, same process id), warms it up with 50 messages, then calls measure(kind, pid, tmp,
    load), where load() sends `count` messages of 1 KiB over `sessions` sessions and waits for the
    queue to empty. Returns {kind: what measure returned}; stops everything afterwards."""
    result = {}
    sink = BareSink()
    try:
        for kind in kinds:
            tmp = harness.make_tmpdir("relaykit-bench-milter-%s-" % kind)
            pf = milter = None
            try:
                pf, milter = start_stack(kind, tmp, sink.port, prefix=prefix_for(kind, tmp))
                run_source(pf.port, 4, 1024, 50)  # warm-up: first-use allocations, caches
                pf.wait_queue_empty(timeout=300)

                def load(port=pf.port, queue=pf):
                    run_source(port, sessions, 1024, count)
                    queue.wait_queue_empty(timeout=300)

                result[kind] = measure(kind, milter_pid(milter), tmp, load)
            finally:
                if pf:
                    pf.stop()
                if milter:
                    milter.stop()
                subprocess.run(["rm", "-rf", tmp])
    finally:
        sink.stop()
    return result


def callgrind_run(kinds, count, keep_dir, per_wakeup=False):
    """Instructions per message of each milter under callgrind (valgrind), on the same load:
    `count` messages of 1 KiB over 4 sessions after a warm-up; the counters are zeroed after the
    warm-up (callgrind_control -z) and dumped after the load (-d), so start-up and
    configuration loading are not counted. Returns {kind: (instructions per message, code lines
    per message, code pages per message)}. With per_wakeup, callgrind also dumps before every
    epoll_wait, so each dump is one wake-up, and the load runs over one session: returns {kind:
    (instructions per message, wake-ups per message, code lines per wake-up)}, the lines a
    wake-up brings back into the instruction cache when smtpd and cleanup ran in between."""
    if keep_dir:
        os.makedirs(keep_dir, exist_ok=True)

    def dump_path(kind, tmp):
        return os.path.join(os.path.abspath(keep_dir or tmp), "callgrind.%s" % kind)

    def prefix_for(kind, tmp):
        out = dump_path(kind, tmp)
        for stale in os.listdir(os.path.dirname(out)):
            if stale.startswith(os.path.basename(out) + "."):  # an earlier run's dump
                os.remove(os.path.join(os.path.dirname(out), stale))
        return (["valgrind", "--tool=callgrind", "--dump-instr=yes", "--compress-strings=no",
                 "--compress-pos=no", "--callgrind-out-file=" + out] +
                (["--dump-before=epoll_wait"] if per_wakeup else []))

    def dumps_of(out):
        return sorted((f for f in os.listdir(os.path.dirname(out))
                       if f.startswith(os.path.basename(out) + ".")),
                      key=lambda f: int(f.rsplit(".", 1)[1]))

    def measure(kind, pid, tmp, load):
        out = dump_path(kind, tmp)
        harness.run(["callgrind_control", "-z", str(pid)])
        before = set(dumps_of(out))  # per_wakeup: the warm-up's wake-ups
        load()
        harness.run(["callgrind_control", "-d", str(pid)])
        dumps = [f for f in dumps_of(out) if f not in before]
        if not dumps:
            raise RuntimeError("callgrind wrote no dump for %s" % kind)
        if per_wakeup:
            lines = []
            instructions = 0
            for f in dumps:
                path = os.path.join(os.path.dirname(out), f)
                ir = callgrind_totals(path)
                instructions += ir
                if ir > 0:
                    lines.append(sum(n for n, _ in code_footprint(path).values()))
            print("callgrind %-10s %12.0f instructions/msg, %d wake-ups, %.0f code lines per "
                  "wake-up" % (kind, instructions / count, len(lines),
                               statistics.mean(lines)), flush=True)
            return instructions / count, len(lines) / count, statistics.mean(lines)
        dump = os.path.join(os.path.dirname(out), dumps[-1])
        per_message = callgrind_totals(dump) / count
        print("callgrind %-10s %12.0f instructions/msg (%s)" % (kind, per_message, dump),
              flush=True)
        footprint = code_footprint(dump)
        for obj, (n, pages) in sorted(footprint.items(), key=lambda i: -i[1][0]):
            print("  code executed: %5d lines (%5.1f KiB) on %3d pages  %s"
                  % (n, n / 16, pages, obj))
        return (per_message, sum(n for n, _ in footprint.values()),
                sum(p for _, p in footprint.values()))

    # The dumps kept are in keep_dir; without it they go with the stack's directory. One session
    # per wake-up count: the milter is slower under valgrind, and concurrent sessions would pile
    # up in one wake-up far more than in a real run.
    return each_milter_under_load(kinds, count, measure, prefix_for,
                                  sessions=1 if per_wakeup else 4)


def while_attached(argv, load):
    """Runs load() while the tool `argv` (strace -p, perf record -p) is attached to the milter:
    started a second before (attached to every thread), stopped with SIGINT after (it writes its
    report then)."""
    tool = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        load()
        tool.send_signal(2)
        tool.wait(timeout=120)
    finally:
        if tool.poll() is None:
            tool.kill()


def strace_run(kinds, count):
    """System calls per message of each milter on the same load: strace -c -f attached to the
    running milter after a warm-up, detached after `count` messages of 1 KiB over 4 sessions.
    Returns {kind: {syscall: calls per message}}."""
    def measure(kind, pid, tmp, load):
        out = os.path.join(tmp, "strace.out")
        while_attached(["strace", "-c", "-f", "-o", out, "-p", str(pid)], load)
        calls = {}
        with open(out) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 5 and fields[0][0].isdigit() and not line.startswith("100"):
                    calls[fields[-1]] = int(fields[3]) / count
        return calls

    return each_milter_under_load(kinds, count, measure)


PERF_HZ = 10000


def perf_object(dso, binary_names):
    """The group a perf sample's object belongs to in --perf's table."""
    base = os.path.basename(dso.strip("[]"))
    if dso.startswith("[kernel") or base.startswith("kernel"):
        return "kernel"
    if base in binary_names:
        return "own code"
    for prefix, group in (("libevent", "libevent"), ("libc.so", "libc"),
                          ("libstdc++", "libstdc++"), ("libre2", "RE2"), ("vdso", "vdso")):
        if base.startswith(prefix):
            return group
    return "other"


def perf_run(kinds, count):
    """CPU per message of each milter on the same load, sampled by perf (cpu-clock at PERF_HZ,
    attached to the running milter after a warm-up, `count` messages of 1 KiB over 4 sessions)
    and split by the object the sample fell in: the kernel, the milter's own code, libevent,
    libc, libstdc++, RE2. Returns {kind: ({group: us per message}, [(us per message, symbol)])}.
    Sampling inflates every figure alike; compare the kinds, not with a throughput run."""
    if not shutil.which("perf"):
        raise RuntimeError("--perf needs perf (apt-get install linux-perf)")
    binary_names = {"relaykit-milter", "milter_floor"}

    def measure(kind, pid, tmp, load):
        data = os.path.join(tmp, "perf.data")
        while_attached(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(PERF_HZ), "-p",
                        str(pid), "-o", data], load)
        report = subprocess.run(["perf", "report", "-i", data, "--sort", "dso,sym", "-n",
                                 "--stdio", "-g", "none"],
                                capture_output=True, text=True, check=True).stdout
        groups = {}
        symbols = []
        us_per_sample = 1e6 / PERF_HZ / count
        for line in report.splitlines():
            fields = line.split()
            if len(fields) < 5 or line.startswith("#") or not fields[0].endswith("%"):
                continue
            samples, dso, sym = int(fields[1]), fields[2], " ".join(fields[4:])
            group = perf_object(dso, binary_names)
            groups[group] = groups.get(group, 0) + samples * us_per_sample
            if group != "kernel":
                symbols.append((samples * us_per_sample, "%s %s" % (group, sym)))
        symbols.sort(reverse=True)
        return groups, symbols[:12]

    return each_milter_under_load(kinds, count, measure)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer messages, one repetition")
    ap.add_argument("--kinds", help="comma-separated configurations to run (none is always run)")
    ap.add_argument("--callgrind", type=int, metavar="N",
                    help="instead of the throughput runs: instructions per message of each milter "
                         "kind under callgrind, N messages (4 sessions, 1 KiB) after a warm-up, "
                         "and the code lines and pages executed")
    ap.add_argument("--per-wakeup", action="store_true",
                    help="with --callgrind: one dump per wake-up (before each epoll_wait); "
                         "prints wake-ups per message and code lines per wake-up")
    ap.add_argument("--callgrind-out", metavar="DIR",
                    help="keep the callgrind dumps in DIR (for callgrind_annotate)")
    ap.add_argument("--strace", type=int, metavar="N",
                    help="instead of the throughput runs: system calls per message of each "
                         "milter kind under strace -c, N messages (4 sessions, 1 KiB)")
    ap.add_argument("--perf", type=int, metavar="N",
                    help="instead of the throughput runs: CPU us per message of each milter kind "
                         "sampled by perf, split by object (kernel, own code, libevent, libc, "
                         "libstdc++, RE2), N messages (4 sessions, 1 KiB)")
    ap.add_argument("--lines", type=int, metavar="N",
                    help="instead of throughput: code and data lines touched per message "
                         "(touched_lines.py), over N messages of one session")
    ap.add_argument("--baseline-build", metavar="DIR",
                    help="the build whose relaykit-milter the unix-base configuration runs")
    args = ap.parse_args()
    os.environ["RELAYKIT_BUILD_DIR"] = os.path.abspath(args.build_dir)
    global BASELINE_BUILD
    BASELINE_BUILD = os.path.abspath(args.baseline_build) if args.baseline_build else None
    if args.kinds and "unix-base" in args.kinds.split(",") and not BASELINE_BUILD:
        ap.error("unix-base needs --baseline-build DIR")
    repeat = 1 if args.quick else args.repeat
    counts = {1024: 300 if args.quick else 1000, 100 * 1024: 100 if args.quick else 300}
    kinds = ["none", "unix", "inet", "unix-nolog", "unix-base", "native"]
    if os.access(floor_binary(), os.X_OK):
        kinds += ["floor", "floor-inet", "floor-libevent"]
    kinds += list(SIGN_KINDS)
    if args.kinds:
        kinds = ["none"] + [k for k in kinds[1:] if k in args.kinds.split(",")]
    else:
        kinds.remove("unix-nolog")  # on request only
        kinds.remove("unix-base")
        if "floor-libevent" in kinds:
            kinds.remove("floor-libevent")
    if args.callgrind:
        milters = [k for k in kinds if k in ("unix", "unix-base", "inet", "floor", "floor-inet",
                                             "floor-libevent")]
        measured = callgrind_run(milters, args.callgrind, args.callgrind_out, args.per_wakeup)
        titles = ("instructions/msg", "code lines/msg", "code pages/msg")
        if args.per_wakeup:
            titles = ("instructions/msg", "wake-ups/msg", "code lines/wake-up")
        print()
        print("%-26s" % ("%d session%s 1KiB, %d msgs" % (1 if args.per_wakeup else 4,
                                                         "" if args.per_wakeup else "s",
                                                         args.callgrind)) +
              "".join(" %12s" % k for k in milters))
        for i, title in enumerate(titles):
            print("%-26s" % title + "".join((" %12.1f" if measured[k][i] < 100 else " %12.0f")
                                             % measured[k][i] for k in milters))
        for k, f in (("unix", "floor"), ("inet", "floor-inet")):
            if k in measured and f in measured:
                print("%s/%s: " % (k, f) + ", ".join(
                    "%.2f %s" % (measured[k][i] / measured[f][i], titles[i]) for i in range(3)))
        return 0
    if args.lines:
        milters = [k for k in kinds if k in ("unix", "unix-base", "inet", "floor", "floor-inet",
                                             "floor-libevent")]
        measured = touched_lines.lines_run(milters, args.lines, each_milter_under_load)
        print()
        print("%-26s" % ("1 session 1KiB, %d msgs" % args.lines) +
              "".join(" %12s" % k for k in milters))
        for i, title in enumerate(("wake-ups/msg", "code lines/msg", "data lines/msg")):
            print("%-26s" % title + "".join((" %12.2f" if i == 0 else " %12.0f") % measured[k][i]
                                             for k in milters))
        objects = sorted({o for k in milters for o in measured[k][3]},
                         key=lambda o: -max(measured[k][3].get(o, 0) for k in milters))
        for o in objects[:6]:
            print("%-26s" % ("  first by " + (o or "(no object)"))[:26] +
                  "".join(" %12.0f" % measured[k][3].get(o, 0) for k in milters))
        return 0
    if args.strace:
        milters = [k for k in kinds
                   if k in ("unix", "inet", "unix-nolog", "unix-base", "floor", "floor-inet",
                            "floor-libevent")]
        calls = strace_run(milters, args.strace)
        names = sorted({n for c in calls.values() for n in c},
                       key=lambda n: -max(c.get(n, 0) for c in calls.values()))
        print()
        print("%-26s" % "system calls/msg" + "".join(" %10s" % k for k in milters))
        for name in names + ["total"]:
            print("%-26s" % name + "".join(
                " %10.2f" % (sum(calls[k].values()) if name == "total" else calls[k].get(name, 0))
                for k in milters))
        return 0
    if args.perf:
        milters = [k for k in kinds
                   if k in ("unix", "inet", "unix-nolog", "unix-base", "floor", "floor-inet",
                            "floor-libevent")]
        measured = perf_run(milters, args.perf)
        groups = ["kernel", "own code", "libevent", "libc", "libstdc++", "RE2", "vdso", "other"]
        print()
        print("%-26s" % "perf us/msg" + "".join(" %10s" % k for k in milters))
        for group in groups + ["user", "total"]:
            def value(k, group=group):
                g = measured[k][0]
                if group == "total":
                    return sum(g.values())
                if group == "user":
                    return sum(v for n, v in g.items() if n != "kernel")
                return g.get(group, 0.0)
            print("%-26s" % group + "".join(" %10.2f" % value(k) for k in milters))
        for k in milters:
            print()
            print("%s: user-space functions, us/msg" % k)
            for us, sym in measured[k][1]:
                print("  %7.2f  %s" % (us, sym[:100]))
        return 0
    combos = [(s, size) for size in (1024, 100 * 1024) for s in (4, 20)]
    rates = {}
    relay_rates = {}
    # (kind, sessions, size) -> [CPU s (ticks), CPU s (schedstat), context switches, messages,
    # user s, system s]
    usage = {}
    sink = BareSink()
    stacks = {}
    tmps = []
    try:
        # Every configuration runs at once (idle ones cost nothing) and the runs interleave
        # (none, unix, inet, native, none, ...), so drifting load on a shared machine hits all
        # configurations alike.
        for kind in kinds:
            tmp = harness.make_tmpdir("relaykit-bench-milter-%s-" % kind)
            tmps.append(tmp)
            stacks[kind] = start_stack(kind, tmp, sink.port)
            run_source(stacks[kind][0].port, 4, 1024, 50)  # warm-up
            stacks[kind][0].wait_queue_empty(timeout=120)
        for rep in range(repeat):
            for sessions, size in combos:
                for kind in kinds:
                    pf = stacks[kind][0]
                    pid = milter_pid(stacks[kind][1])
                    before = process_usage(pid) if pid else None
                    t0 = time.monotonic()
                    rate = run_source(pf.port, sessions, size, counts[size])
                    if pid:
                        # Summed over the repetitions: /proc counts CPU in clock ticks (10 ms),
                        # too coarse for one run's per-message figure.
                        after = process_usage(pid)
                        key = (kind, sessions, size)
                        total = usage.setdefault(key, [0.0, 0.0, 0, 0, 0.0, 0.0])
                        for i in range(3):
                            total[i] += after[i] - before[i]
                        total[3] += counts[size]
                        total[4] += after[3] - before[3]
                        total[5] += after[4] - before[4]
                    deadline = time.monotonic() + 300
                    while queued(pf) and time.monotonic() < deadline:
                        time.sleep(0.02)
                    relayed = counts[size] / (time.monotonic() - t0)
                    pf.wait_queue_empty(timeout=300)
                    rates.setdefault((kind, sessions, size), []).append(rate)
                    relay_rates.setdefault((kind, sessions, size), []).append(relayed)
                    print("run %d %-10s %2d sessions %6d bytes: %7.1f msg/s accepted, %7.1f "
                          "relayed" % (rep + 1, kind, sessions, size, rate, relayed), flush=True)
        for kind in ["unix", "inet"] + list(SIGN_KINDS):
            if kind not in stacks:
                continue
            log = stacks[kind][1].stderr()
            if "from=<root@relay.corp.local> -> <noreply@corp.com>" not in log:
                raise RuntimeError("the %s milter did not rewrite:\n%s" % (kind, log[-2000:]))
            if kind in SIGN_KINDS and "dkim: signed for corp.com (1 signature)" not in log:
                raise RuntimeError("the %s milter did not sign:\n%s" % (kind, log[-2000:]))
    finally:
        for kind, (pf, milter) in stacks.items():
            pf.stop()
            if milter:
                milter.stop()
        sink.stop()
        for tmp in tmps:
            subprocess.run(["rm", "-rf", tmp])
    for title, table in (("accepted msg/s (median)", rates),
                         ("relayed msg/s (median)", relay_rates)):
        results = {k: statistics.median(v) for k, v in table.items()}
        print()
        print("%-24s" % title + "".join(" %10s" % k for k in kinds) +
              "   ratio to none: " + " ".join(kinds[1:]))
        for sessions, size in combos:
            row = [results[(k, sessions, size)] for k in kinds]
            print("%2d sessions %6s       " % (sessions, "1KiB" if size == 1024 else "100KiB") +
                  "".join(" %10.1f" % r for r in row) + "   " +
                  " ".join("%.2f" % (r / row[0]) for r in row[1:]))
    milters = [k for k in kinds
               if k in ("unix", "inet", "unix-nolog", "unix-base", "floor", "floor-inet",
                        "floor-libevent") or k in SIGN_KINDS]
    for title, index, scale in (("milter CPU us/msg (schedstat)", 1, 1e6),
                                ("milter CPU us/msg (utime+stime)", 0, 1e6),
                                ("milter user CPU us/msg (utime)", 4, 1e6),
                                ("milter system CPU us/msg (stime)", 5, 1e6),
                                ("milter ctx switches/msg", 2, 1)):
        results = {k: v[index] * scale / v[3] for k, v in usage.items()}
        pairs = [(k, f) for k, f in (("unix", "floor"), ("inet", "floor-inet"),
                                     ("unix-nolog", "floor"), ("unix-base", "floor"),
                                     ("floor-libevent", "floor"), ("unix", "floor-libevent"),
                                     ("sign-rsa", "unix"), ("sign-ed25519", "unix"))
                 if k in milters and f in milters]
        print()
        print("%-33s" % title + "".join(" %10s" % k for k in milters) +
              ("   ratios: " + " ".join("%s/%s" % p for p in pairs) if pairs else ""))
        for sessions, size in combos:
            row = [results[(k, sessions, size)] for k in milters]
            label = "%2d sessions %6s" % (sessions, "1KiB" if size == 1024 else "100KiB")
            print("%-33s" % label +
                  "".join(" %10.1f" % r for r in row) + "   " +
                  " ".join("%.2f" % (results[(k, sessions, size)] / results[(f, sessions, size)])
                           if results[(f, sessions, size)] else "-" for k, f in pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
