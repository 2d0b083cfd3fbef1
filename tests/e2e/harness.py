# SPDX-License-Identifier: Apache-2.0
"""harness.py: black-box test fixtures for relaykit (Python 3 stdlib only).

Every tests/e2e/test_*.py imports this module and is a standalone unittest program run by ctest
with RELAYKIT_BUILD_DIR and RELAYKIT_SOURCE_DIR in its environment. What it provides:

  free_port()                      a TCP port free on 127.0.0.1 right now
  E2ETestCase                      unittest.TestCase with self.tmp (a fresh dir under /tmp, removed
                                   after a passing test, kept and printed after a failure) and
                                   start_* helpers that register their own cleanup
  PostfixInstance                  a private Postfix (its own queue, config, log, smtpd port)
  SmtpSink                         smtp-sink dumping one file per message; messages() parses them
  RelaykitDaemon                   one relaykit daemon in the foreground, stderr captured to a file
  RedisServer                      a private redis-server on a loopback port, no persistence
  swaks(), send_smtp()             SMTP clients (output captured, never piped)
  socketmap_query(), SocketmapClient   netstring socketmap client

Guarantees: every wait is bounded (TimeoutError with what was seen so far); every process a
fixture starts is stopped by its cleanup even when the test fails; nothing listens anywhere but
127.0.0.1. Failures raise AssertionError/TimeoutError/RuntimeError with the relevant log text.
"""

import glob
import json
import os
import pwd
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

# ---- Limits (seconds) ----
DEFAULT_TIMEOUT = 30.0       # waits for mail, queues, ports
PROCESS_STOP_TIMEOUT = 10.0  # SIGTERM to SIGKILL
POLL_INTERVAL = 0.05

POSTFIX_SBIN = "/usr/sbin"
SMTP_SINK = "/usr/sbin/smtp-sink"


# ---------------------------------------------------------------------------------------------
# Paths and small utilities
# ---------------------------------------------------------------------------------------------

def source_dir():
    """The relaykit source tree (RELAYKIT_SOURCE_DIR, else two levels above this file)."""
    return os.environ.get("RELAYKIT_SOURCE_DIR") or os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", ".."))


def build_dir():
    """The build tree (RELAYKIT_BUILD_DIR, else SOURCE/build)."""
    return os.environ.get("RELAYKIT_BUILD_DIR") or os.path.join(source_dir(), "build")


# Where each binary lives inside the build tree.
_BINARY_SUBDIRS = {
    "relaykit-socketmapd": "socketmapd",
    "relaykit-milter": "milters",
    "relaykit-policyd": "policyd",
    "relaykit": "cli",
}


def binary_path(name):
    """Absolute path of a relaykit binary in the build tree; raises FileNotFoundError if absent."""
    sub = _BINARY_SUBDIRS.get(name)
    candidates = []
    if sub:
        candidates.append(os.path.join(build_dir(), sub, name))
    candidates.extend(glob.glob(os.path.join(build_dir(), "**", name), recursive=True))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError("%s not built: looked in %s" % (name, build_dir()))


# Ports handed out by free_port() come from below the kernel's ephemeral range (Linux default
# 32768-60999): a port the kernel picked for bind(0) is also the kind it hands to outgoing
# connections (Postfix's smtp client, the tests' own clients), which can take it between the
# check and the daemon's bind ("Address already in use" under load). Random order across
# processes, and never the same port twice within one test process.
FREE_PORT_RANGE = (20000, 32000)
_ports_given = set()


def free_port():
    """A TCP port that is free on 127.0.0.1 at the time of the call, outside the ephemeral range."""
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(*FREE_PORT_RANGE)
        if port in _ports_given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise RuntimeError("no free TCP port in %d-%d" % FREE_PORT_RANGE)


def wait_until(predicate, timeout=DEFAULT_TIMEOUT, what="condition", interval=POLL_INTERVAL):
    """Polls predicate() until it returns a true value, which is returned. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_accepts(port, host="127.0.0.1"):
    """True if a TCP connect to host:port succeeds now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


def unix_accepts(path):
    """True if a connect to the unix socket path succeeds now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def wait_port(port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, proc=None, what=None):
    """Waits until host:port accepts connections. If proc (a Popen) dies first, raises."""
    def ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening on %s:%d"
                               % (what or "process", proc.returncode, host, port))
        return port_accepts(port, host)
    wait_until(ready, timeout, "%s listening on %s:%d" % (what or "port", host, port))


def run(cmd, check=True, timeout=60, input=None, env=None):
    """Runs cmd (a list), capturing stdout/stderr as text. Raises with both on failure."""
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                          env=env)
    if check and proc.returncode != 0:
        raise RuntimeError("command failed (%d): %s\nstdout:\n%s\nstderr:\n%s"
                           % (proc.returncode, " ".join(cmd), proc.stdout, proc.stderr))
    return proc


def stop_process(proc, timeout=PROCESS_STOP_TIMEOUT, sig=signal.SIGTERM):
    """Signals proc, waits up to timeout, then SIGKILLs. Returns the exit status."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    try:
        proc.send_signal(sig)
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout)
    except ProcessLookupError:
        return proc.wait(timeout)


def write_file(path, text, mode=None):
    """Writes text to path (creating parent dirs) and returns path."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)
    return path


def make_tmpdir(prefix="relaykit-e2e-"):
    """A fresh directory under /tmp, world-traversable (Postfix and smtp-sink drop privileges)."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(path, 0o755)
    return path


def explorer_start(seed, tmp_prefix, what="private Postfix instances"):
    """A seeded explorer's start: needs root, prints the seed, returns (rng, fresh tmp dir)."""
    if os.geteuid() != 0:
        sys.exit("needs root (%s)" % what)
    print("seed %d" % seed)
    return random.Random(seed), make_tmpdir(tmp_prefix)


def read_header_block(lines, i=0):
    """Headers from lines[i:] (LF-split text) up to the first empty line.

    Returns ([(name, raw value)], the index after the empty line, whether there was one); a
    continuation line is joined to its header with "\n", the value keeps its leading space."""
    headers = []
    while i < len(lines):
        line = lines[i]
        if line == "":
            return [tuple(h) for h in headers], i + 1, True
        if line[:1] in (" ", "\t") and headers:
            headers[-1][1] += "\n" + line
        else:
            name, _, value = line.partition(":")
            headers.append([name, value])
        i += 1
    return [tuple(h) for h in headers], i, False


class RawSmtpSession:
    """A minimal SMTP client for the explorers: commands go out byte for byte (8-bit, quotes,
    spaces and surrogate-escaped bytes as given), which smtplib would refuse or rewrite."""

    MAX_REPLY_LINES = 100

    def __init__(self, port, helo="client.test.invalid"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.reply()
        self.cmd("EHLO " + helo)

    def reply(self):
        """-> (code, text of every line of the reply)."""
        lines = []
        for _ in range(self.MAX_REPLY_LINES):
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("smtpd closed the connection")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                break
        return int(lines[-1][:3]), "\n".join(lines)

    def cmd(self, text):
        self.sock.sendall(text.encode("utf-8", errors="surrogateescape") + b"\r\n")
        return self.reply()

    def close(self):
        try:
            self.cmd("QUIT")
        except OSError:
            pass
        self.sock.close()


class OwnedProcesses:
    """For the explorers (tests/e2e/explore_*.py): what they start under `tmp`, stopped in reverse
    order by close(); a failing stop is reported and the others still run."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.cleanups = []

    def _dir(self, name):
        """tmp/name, created world-traversable (Postfix and smtp-sink drop privileges)."""
        path = os.path.join(self.tmp, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)
        return path

    def _start(self, thing):
        """Starts thing (anything with start() and stop()) and owns its stop."""
        thing.start()
        self.cleanups.append(thing.stop)
        return thing

    def close(self, keep=None):
        """Stops everything; then keep=True prints "kept TMP", keep=False removes tmp, and
        keep=None (the default) leaves tmp alone."""
        for c in reversed(self.cleanups):
            try:
                c()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                sys.stderr.write("cleanup: %s\n" % e)
        self.cleanups = []
        if keep:
            print("kept %s" % self.tmp)
        elif keep is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Test case base class
# ---------------------------------------------------------------------------------------------

class E2ETestCase(unittest.TestCase):
    """A TestCase with a private temp dir and fixture helpers.

    self.tmp is created before setUp and removed after all cleanups when the test passed (unless
    RELAYKIT_KEEP_TMP is set); after a failure or error it is kept and its path printed (with the tail of every log a fixture
    registered). Fixtures started with self.start_*() are stopped by addCleanup in reverse order.
    """

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        self.tmp = make_tmpdir("relaykit-%s-" % self._testMethodName)
        self._logs = []
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            failed = len(result.failures) + len(result.errors) > before
            if failed:
                sys.stderr.write("\n*** %s failed; kept %s\n" % (self.id(), self.tmp))
                for name, path in self._logs:
                    sys.stderr.write(tail_file(path, name))
            elif os.environ.get("RELAYKIT_KEEP_TMP"):
                sys.stderr.write("\n(RELAYKIT_KEEP_TMP) kept %s\n" % self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def register_log(self, name, path):
        """Shows the tail of path in the output if this test fails."""
        self._logs.append((name, path))

    def subdir(self, name):
        path = os.path.join(self.tmp, name)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)
        return path

    def start_sink(self, name="sink", port=None):
        sink = SmtpSink(self.subdir(name), port)
        sink.start()
        self.addCleanup(sink.stop)
        self.register_log("smtp-sink %s" % name, sink.log_path)
        return sink

    def start_postfix(self, name="postfix", relay_port=None, extra_main_cf=None,
                      extra_master_cf=""):
        pf = PostfixInstance(self.subdir(name), relay_port=relay_port,
                             extra_main_cf=extra_main_cf, extra_master_cf=extra_master_cf)
        self.addCleanup(pf.stop)
        pf.start()
        self.register_log("postfix %s maillog" % name, pf.maillog_path)
        return pf

    def start_daemon(self, binary_name, config_path, port=None, host="127.0.0.1", args=(),
                     unix_socket=None):
        d = RelaykitDaemon(binary_name, config_path, port=port, host=host, args=args,
                           workdir=self.tmp, unix_socket=unix_socket)
        self.addCleanup(d.stop)
        d.start()
        self.register_log(binary_name, d.stderr_path)
        return d

    def start_redis(self, port=None):
        r = RedisServer(self.subdir("redis"), port)
        self.addCleanup(r.stop)
        r.start()
        self.register_log("redis", r.log_path)
        return r


def tail_file(path, name, lines=60):
    try:
        with open(path, errors="replace") as f:
            content = f.read().splitlines()[-lines:]
    except OSError as e:
        return "--- %s: %s\n" % (name, e)
    return "--- %s (%s, last %d lines)\n%s\n" % (name, path, lines, "\n".join(content))


def main():
    """Runs the calling module's tests verbosely; exits non-zero on failure."""
    if os.geteuid() != 0:
        sys.stderr.write("end-to-end tests need root (a private Postfix runs as root)\n")
        sys.exit(1)
    unittest.main(module="__main__", verbosity=2)


# ---------------------------------------------------------------------------------------------
# Postfix
# ---------------------------------------------------------------------------------------------

_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{smtpd_port} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       5       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _main_cf_value(value):
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class PostfixInstance:
    """A private Postfix instance in DIR (etc/, queue/, data/, log/maillog).

    relay_port: relayhost = [127.0.0.1]:relay_port (an SmtpSink), default none (mail is deferred).
    extra_main_cf: dict of main.cf parameters, applied last (override the defaults below).
    extra_master_cf: text appended to master.cf.
    self.port is the smtpd port on 127.0.0.1. Usable as a context manager (stop on exit).
    """

    def __init__(self, dir, relay_port=None, extra_main_cf=None, extra_master_cf="",
                 smtpd_port=None):
        self.dir = os.path.abspath(dir)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maillog_path = os.path.join(self.dir, "log", "maillog")
        self.port = smtpd_port or free_port()
        self.relay_port = relay_port
        self.extra_master_cf = extra_master_cf
        self.params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "relay.test.invalid",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "mydestination": "",
            "relay_domains": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtp_dns_support_level": "disabled",
            "relayhost": "[127.0.0.1]:%d" % relay_port if relay_port else "",
            "maillog_file": self.maillog_path,
            "maillog_file_prefixes": self.dir,
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            # A failed smtp(8) (e.g. a generic map error) throttles the transport this long.
            "transport_retry_time": "1s",
            "in_flow_delay": "0",
            "smtp_connect_timeout": "5s",
            "delay_warning_time": "0",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
            "smtputf8_enable": "no",
            "smtpd_banner": "$myhostname ESMTP",
        }
        if extra_main_cf:
            self.params.update(extra_main_cf)
        self.started = False

    # -- configuration --
    def write_config(self):
        os.makedirs(self.etc, exist_ok=True)
        os.makedirs(os.path.dirname(self.maillog_path), exist_ok=True)
        # The queue directory must exist and belong to root before `postfix check`.
        os.makedirs(self.queue, exist_ok=True)
        os.chown(self.queue, 0, 0)
        os.chmod(self.queue, 0o755)
        lines = ["# written by tests/e2e/harness.py"]
        for k, v in self.params.items():
            lines.append("%s = %s" % (k, _main_cf_value(v)))
        write_file(os.path.join(self.etc, "main.cf"), "\n".join(lines) + "\n")
        write_file(os.path.join(self.etc, "master.cf"),
                   _MASTER_CF.format(smtpd_port="127.0.0.1:%d" % self.port)
                   + self.extra_master_cf + "\n")
        self._backdate_main_cf()

    def _backdate_main_cf(self):
        # A main.cf modified in the current second makes postfix commands re-read it for ~1.5 s.
        t = time.time() - 2
        os.utime(os.path.join(self.etc, "main.cf"), (t, t))

    def set_params(self, params, reload=True):
        """Updates main.cf parameters (dict), rewrites the config and reloads a running instance."""
        self.params.update(params)
        self.write_config()
        if reload and self.started:
            self.reload()

    # -- lifecycle --
    def _postfix(self, *args, check=True, timeout=60):
        return run([os.path.join(POSTFIX_SBIN, "postfix"), "-c", self.etc] + list(args),
                   check=check, timeout=timeout)

    def start(self):
        self.write_config()
        self._postfix("check")
        self.started = True
        self._postfix("start")
        wait_port(self.port, what="postfix smtpd")
        return self

    def stop(self):
        """Stops the instance (idempotent, never raises); `postfix stop` then kill the master."""
        if not self.started:
            return
        self.started = False
        pid = None
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            pass
        try:
            self._postfix("stop", check=False, timeout=30)
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            sys.stderr.write("postfix stop failed: %s\n" % e)
        if pid is None:
            return
        try:
            deadline = time.monotonic() + PROCESS_STOP_TIMEOUT
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(POLL_INTERVAL)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reload(self):
        """`postfix reload` (re-reads main.cf/master.cf; lookup tables are reopened)."""
        self._backdate_main_cf()
        self._postfix("reload")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- commands --
    def postconf(self, *args):
        """Runs `postconf -c ETC ARGS...` and returns its stdout. postconf('-h', 'relayhost')."""
        out = run([os.path.join(POSTFIX_SBIN, "postconf"), "-c", self.etc] + list(args)).stdout
        if any(a.startswith("-e") or a == "-X" or a == "-#" for a in args):
            self._backdate_main_cf()
        return out

    def postmap_q(self, key, table):
        """`postmap -c ETC -q KEY TABLE`: the value, or None when not found.

        Raises RuntimeError on a lookup error (postmap exit status > 1)."""
        proc = run([os.path.join(POSTFIX_SBIN, "postmap"), "-c", self.etc, "-q", key, table],
                   check=False)
        if proc.returncode == 0:
            return proc.stdout.rstrip("\n")
        if proc.returncode == 1 and "fatal" not in proc.stderr and "error" not in proc.stderr:
            return None
        raise RuntimeError("postmap -q %r %s failed (%d): %s"
                           % (key, table, proc.returncode, proc.stderr.strip()))

    def postmap_q_many(self, keys, table):
        """`postmap -q - TABLE` with keys on stdin: dict key -> value for the keys found.

        Keys must not contain tabs or newlines; postmap prints `key<TAB>value` per hit."""
        proc = run([os.path.join(POSTFIX_SBIN, "postmap"), "-c", self.etc, "-q", "-", table],
                   check=False, input="".join(k + "\n" for k in keys))
        if proc.returncode > 1 or "fatal" in proc.stderr:
            raise RuntimeError("postmap -q - %s failed (%d): %s"
                               % (table, proc.returncode, proc.stderr.strip()))
        found = {}
        for line in proc.stdout.splitlines():
            k, _, v = line.partition("\t")
            found[k] = v
        return found

    def postmap(self, path, type="hash"):
        """Builds an indexed table: `postmap -c ETC TYPE:PATH`."""
        run([os.path.join(POSTFIX_SBIN, "postmap"), "-c", self.etc, "%s:%s" % (type, path)])

    def sendmail(self, msg, sender, rcpts, extra_args=()):
        """Submits msg (str or bytes) via `sendmail -C ETC -f SENDER -- RCPTS` (the pickup path).

        sender "" submits with the null sender."""
        if isinstance(msg, str):
            msg = msg.encode()
        cmd = [os.path.join(POSTFIX_SBIN, "sendmail"), "-C", self.etc, "-i",
               "-f", sender] + list(extra_args) + ["--"] + list(rcpts)
        proc = subprocess.run(cmd, input=msg, capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError("sendmail failed (%d): %s" % (proc.returncode,
                                                            proc.stderr.decode(errors="replace")))

    def maillog(self):
        """The instance's log so far (text)."""
        try:
            with open(self.maillog_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def queue_ids(self):
        """Queue ids of every message in any queue (postqueue -j; empty list: queue empty)."""
        proc = run([os.path.join(POSTFIX_SBIN, "postqueue"), "-c", self.etc, "-j"])
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def wait_queue_empty(self, timeout=DEFAULT_TIMEOUT, flush=False):
        """Waits until no message is queued. flush=True runs `postqueue -f` on every poll."""
        last = []

        def empty():
            nonlocal last
            if flush:
                self.flush()
            last = self.queue_ids()
            return not last
        try:
            wait_until(empty, timeout, "empty queue", interval=0.2)
        except TimeoutError:
            raise TimeoutError("queue not empty after %.1fs: %s\nmaillog tail:\n%s"
                               % (timeout, json.dumps(last)[:2000],
                                  "\n".join(self.maillog().splitlines()[-30:])))

    def wait_queued(self, count=1, status=None, timeout=DEFAULT_TIMEOUT):
        """Waits until at least count messages are queued (optionally with queue_name status,
        e.g. "deferred") and returns their records."""
        def enough():
            # Distinct ids: postqueue may list a file twice while the queue manager moves it.
            recs = list({r["queue_id"]: r for r in self.queue_ids()
                         if status is None or r.get("queue_name") == status}.values())
            return recs if len(recs) >= count else None
        return wait_until(enough, timeout, "%d queued message(s) %s" % (count, status or ""),
                          interval=0.2)

    def wait_log(self, pattern, timeout=DEFAULT_TIMEOUT, count=1):
        """Waits until regexp pattern matches count times in the maillog; returns the matches."""
        rx = re.compile(pattern)

        def found():
            m = rx.findall(self.maillog())
            return m if len(m) >= count else None
        try:
            return wait_until(found, timeout, "maillog %r" % pattern, interval=0.1)
        except TimeoutError:
            raise TimeoutError("no %r (x%d) in maillog after %.1fs; tail:\n%s"
                               % (pattern, count, timeout,
                                  "\n".join(self.maillog().splitlines()[-30:])))

    def flush(self):
        """`postqueue -f`: attempt delivery of all queued mail now."""
        run([os.path.join(POSTFIX_SBIN, "postqueue"), "-c", self.etc, "-f"])


# ---------------------------------------------------------------------------------------------
# smtp-sink
# ---------------------------------------------------------------------------------------------

class SinkMessage:
    """One message as an smtp-sink received it.

    sender: envelope sender ("" for the null sender); mail_args: the full MAIL FROM arguments;
    recipients: envelope recipients in order; rcpt_args: full RCPT TO arguments;
    headers: [(name, value)] in order, value unfolded (continuations joined, CR/LF removed);
    raw_headers: [(name, raw value with folding)]; body: text after the blank line;
    helo, client_addr; path: the dump file.
    """

    def __init__(self, path, text):
        self.path = path
        self.text = text
        self.sender = None
        self.mail_args = ""
        self.recipients = []
        self.rcpt_args = []
        self.helo = None
        self.client_addr = None
        self.raw_headers = []
        self.body = ""
        self._parse(text)

    @staticmethod
    def _angle_addr(args):
        # smtp-sink records "<a@b> SIZE=1" ("FROM:" also accepted) -> "a@b"; a quoted localpart
        # may contain '>' inside its quotes.
        m = re.match(r'\s*(?:(?:FROM|TO):\s*)?<((?:"(?:[^"\\]|\\.)*"|[^>"])*)>', args, re.I)
        if m:
            return m.group(1)
        return args.split()[0].split(":", 1)[-1] if args.split() else ""

    def _parse(self, text):
        lines = text.replace("\r\n", "\n").split("\n")
        i = 0
        # smtp-sink's own records, then its 3-line Received: header.
        while i < len(lines):
            line = lines[i]
            if line.startswith("X-Client-Addr:"):
                self.client_addr = line.split(":", 1)[1].strip()
            elif line.startswith("X-Helo-Args:"):
                self.helo = line.split(":", 1)[1].strip()
            elif line.startswith("X-Mail-Args:"):
                self.mail_args = line.split(":", 1)[1].strip()
                self.sender = self._angle_addr(self.mail_args)
            elif line.startswith("X-Rcpt-Args:"):
                args = line.split(":", 1)[1].strip()
                self.rcpt_args.append(args)
                self.recipients.append(self._angle_addr(args))
            elif line.startswith("Received:"):
                i += 1
                while i < len(lines) and lines[i][:1] in (" ", "\t"):
                    i += 1
                break
            i += 1
        # The message: headers up to the first empty line.
        self.raw_headers, i, _ = read_header_block(lines, i)
        body_lines = lines[i:]
        # smtp-sink appends one empty line after the message; the split adds one more "".
        if body_lines and body_lines[-1] == "":
            body_lines.pop()
        if body_lines and body_lines[-1] == "":
            body_lines.pop()
        self.body = "\n".join(body_lines)

    @property
    def headers(self):
        """[(name, value)] with folding removed and the leading space after ':' stripped."""
        return [(n, re.sub(r"\n[ \t]*", " ", v).strip()) for n, v in self.raw_headers]

    def header(self, name):
        """The first header named name (case-insensitive), unfolded, or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self):
        return "SinkMessage(sender=%r, recipients=%r, from=%r, subject=%r)" % (
            self.sender, self.recipients, self.header("From"), self.header("Subject"))


class _LoggedProcess:
    """A child process whose output goes to self._log: stop() ends it and closes the log;
    usable as a context manager (start() on enter, stop() on exit). Subclasses set self.proc and
    self._log in start()."""

    proc = None
    _log = None

    def stop(self):
        stop_process(self.proc)
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SmtpSink(_LoggedProcess):
    """`smtp-sink -u nobody -d DIR/mail/%Y%m%d%H%M%S. 127.0.0.1:PORT 256`: one file per message.

    messages(wait_for=N) returns the complete messages (the sink no longer holds the file open),
    oldest first. Several sinks on different ports act as different smarthosts."""

    def __init__(self, dir, port=None, name=None):
        self.dir = os.path.abspath(dir)
        self.mail_dir = os.path.join(self.dir, "mail")
        self.port = port or free_port()
        self.name = name or os.path.basename(self.dir)
        self.log_path = os.path.join(self.dir, "smtp-sink.log")
        self.proc = None
        self._log = None

    def start(self):
        os.makedirs(self.mail_dir, exist_ok=True)
        os.chown(self.mail_dir, pwd.getpwnam("nobody").pw_uid, -1)  # smtp-sink writes as nobody
        os.chmod(self.mail_dir, 0o755)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", "-h", "sink-%s" % self.name,
             "-d", os.path.join(self.mail_dir, "%Y%m%d%H%M%S."),
             "127.0.0.1:%d" % self.port, "256"],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc, what="smtp-sink", timeout=10)
        return self

    def _open_files(self):
        open_files = set()
        if self.proc is None or self.proc.poll() is not None:
            return open_files
        fd_dir = "/proc/%d/fd" % self.proc.pid
        try:
            for fd in os.listdir(fd_dir):
                try:
                    open_files.add(os.readlink(os.path.join(fd_dir, fd)))
                except OSError:
                    pass
        except OSError:
            pass
        return open_files

    def _complete_paths(self):
        try:
            names = os.listdir(self.mail_dir)
        except FileNotFoundError:
            return []
        busy = self._open_files()
        paths = [os.path.join(self.mail_dir, n) for n in names]
        paths = [p for p in paths if p not in busy]

        def key(p):
            try:
                return (os.stat(p).st_mtime_ns, p)
            except OSError:
                return (0, p)
        return sorted(paths, key=key)

    def count(self):
        """Number of complete messages now."""
        return len(self._complete_paths())

    def messages(self, wait_for=0, timeout=DEFAULT_TIMEOUT):
        """All complete messages, oldest first; waits (bounded) until there are >= wait_for."""
        if wait_for:
            try:
                wait_until(lambda: self.count() >= wait_for, timeout,
                           "%d message(s) at sink %s" % (wait_for, self.name), interval=0.1)
            except TimeoutError:
                raise TimeoutError("sink %s (port %d) has %d message(s), wanted %d after %.1fs"
                                   % (self.name, self.port, self.count(), wait_for, timeout))
        result = []
        for p in self._complete_paths():
            with open(p, "rb") as f:
                result.append(SinkMessage(p, f.read().decode("utf-8", errors="surrogateescape")))
        return result

    def clear(self):
        """Removes the complete messages (call when the sink is idle)."""
        for p in self._complete_paths():
            os.unlink(p)


# ---------------------------------------------------------------------------------------------
# relaykit daemons and redis
# ---------------------------------------------------------------------------------------------

_DAEMON_SECTIONS = {
    "relaykit-socketmapd": "socketmap",
    "relaykit-milter": "milter",
    "relaykit-policyd": "policy",
}


def listen_ports_from_config(config_path, section):
    """The inet ports of `listen:` in the YAML section (simple line scan, no YAML parser)."""
    with open(config_path) as f:
        lines = f.read().splitlines()
    ports = []
    in_section = False
    in_listen = False
    for line in lines:
        if re.match(r"^\S", line):
            in_section = line.split(":", 1)[0].strip() == section
            in_listen = False
            continue
        if not in_section:
            continue
        m = re.match(r"^\s+(\w+)\s*:", line)
        if m:
            in_listen = m.group(1) == "listen"
        if in_listen:
            for host, port in re.findall(r"inet:(\[[^\]]+\]|[^:\s\"',\]]+):(\d+)", line):
                ports.append((host.strip("[]"), int(port)))
    return ports


_SANITIZER_MARKERS = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|runtime error: |"
    r"WARNING: ThreadSanitizer")


def sanitizer_report(text):
    """The first sanitizer report in text (up to 60 lines), or None."""
    m = _SANITIZER_MARKERS.search(text)
    if not m:
        return None
    start = text.rfind("\n", 0, m.start()) + 1
    return "\n".join(text[start:].splitlines()[:60])


# What every daemon logs once it serves (common/server/daemon.cc).
READY_LINE = "ready: listening on "


class RelaykitDaemon:
    """One relaykit daemon: `BINARY -c CONFIG -f [args]`, stderr to DIR/<binary>.N.stderr.

    start() waits until the listen port accepts connections (port given, or the first inet
    endpoint of the binary's section of the config) and, with unix_socket=PATH, until that
    socket accepts. hup()/kill(sig)/stop() signal it; start() again after kill() restarts it."""

    _counter = 0

    def __init__(self, binary_name, config_path, port=None, host="127.0.0.1", args=(),
                 workdir=None, unix_socket=None):
        self.binary_name = binary_name
        self.unix_socket = unix_socket
        self.binary = binary_path(binary_name)
        self.config_path = config_path
        self.args = list(args)
        self.host = host
        if port is None:
            ports = listen_ports_from_config(config_path, _DAEMON_SECTIONS.get(binary_name, ""))
            if ports:
                self.host, port = ports[0]
        self.port = port
        RelaykitDaemon._counter += 1
        workdir = workdir or os.path.dirname(os.path.abspath(config_path))
        self.stderr_path = os.path.join(workdir, "%s.%d.stderr"
                                        % (binary_name, RelaykitDaemon._counter))
        self.proc = None
        self._err = None
        self._sanitizer_reported = False

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=DEFAULT_TIMEOUT):
        """Starts (or restarts after kill) the daemon; waits for its port. Raises with stderr."""
        if self.running():
            raise RuntimeError("%s already running" % self.binary_name)
        if self._err is None:
            self._err = open(self.stderr_path, "a")
        readies = self.stderr().count(READY_LINE)
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path, "-f"] + self.args,
                                     stdout=self._err, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if self.port:
            try:
                wait_port(self.port, host=self.host, proc=self.proc, what=self.binary_name,
                          timeout=timeout)
            except (RuntimeError, TimeoutError) as e:
                raise RuntimeError("%s\n%s stderr:\n%s" % (e, self.binary_name, self.stderr()))
        if self.unix_socket:
            def ready():
                if self.proc.poll() is not None:
                    raise RuntimeError("%s exited with %s\n%s" % (
                        self.binary_name, self.proc.returncode, self.stderr()))
                return unix_accepts(self.unix_socket)
            wait_until(ready, timeout, "%s on %s" % (self.binary_name, self.unix_socket))
        if self.port or self.unix_socket:
            # The port accepts as soon as it is bound; the metrics listener and the service
            # start a moment later: "ready" is logged when everything is up.
            def logged_ready():
                if self.proc.poll() is not None:
                    raise RuntimeError("%s exited with %s\n%s" % (
                        self.binary_name, self.proc.returncode, self.stderr()))
                return self.stderr().count(READY_LINE) > readies
            wait_until(logged_ready, timeout, "%s ready" % self.binary_name)
        return self

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def hup(self):
        """Sends SIGHUP (reload). Poll for the effect; the reload is asynchronous."""
        self.proc.send_signal(signal.SIGHUP)

    def kill(self, sig=signal.SIGKILL, timeout=PROCESS_STOP_TIMEOUT):
        """Sends sig; for SIGKILL/SIGTERM waits (bounded) for the exit and returns the status."""
        self.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            return self.proc.wait(timeout)
        return None

    def stop(self):
        """SIGTERM, then SIGKILL after PROCESS_STOP_TIMEOUT. Returns the exit status.

        Raises AssertionError when the daemon's output holds a sanitizer report (ASan, UBSan,
        LSan: scripts/test --sanitize), so such a report fails the test even from a cleanup."""
        rc = stop_process(self.proc)
        if self._err:
            self._err.close()
            self._err = None
        report = sanitizer_report(self.stderr())
        if report and not self._sanitizer_reported:
            self._sanitizer_reported = True
            raise AssertionError("%s: sanitizer report in %s:\n%s"
                                 % (self.binary_name, self.stderr_path, report))
        return rc

    def restart(self, timeout=DEFAULT_TIMEOUT):
        self.stop()
        return self.start(timeout)


class RedisServer(_LoggedProcess):
    """A private `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no`."""

    def __init__(self, dir, port=None):
        self.dir = os.path.abspath(dir)
        self.port = port or free_port()
        self.log_path = os.path.join(self.dir, "redis.log")
        self.proc = None
        self._log = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc, what="redis-server", timeout=15)
        return self

    def cli(self, *args):
        """redis-cli -p PORT ARGS... stdout (stripped)."""
        return run(["redis-cli", "-p", str(self.port)] + list(args)).stdout.strip()


def redis_server(dir, port=None):
    """Starts and returns a RedisServer (call .stop(), or use as a context manager)."""
    return RedisServer(dir, port).start()


# ---------------------------------------------------------------------------------------------
# SMTP clients
# ---------------------------------------------------------------------------------------------

def swaks(*args, port=None, server="127.0.0.1", timeout=60, check=True):
    """Runs `swaks --server 127.0.0.1:PORT ARGS...`; returns CompletedProcess with output captured
    (never piped into another command: SIGPIPE). check=True raises on a non-zero exit."""
    cmd = ["swaks"]
    if port is not None:
        cmd += ["--server", "%s:%d" % (server, port)]
    cmd += list(args)
    return run(cmd, check=check, timeout=timeout)


def make_message(sender_header, to_header, subject, body="test body\n", extra_headers=()):
    """A simple RFC 5322 message (str, LF line ends)."""
    lines = ["From: %s" % sender_header, "To: %s" % to_header, "Subject: %s" % subject]
    lines += ["%s: %s" % (n, v) for n, v in extra_headers]
    lines += ["Message-ID: <%s.%d@test.invalid>" % (re.sub(r"\W", "", subject)[:40],
                                                    time.monotonic_ns())]
    return "\n".join(lines) + "\n\n" + body


def send_smtp(port, sender, rcpts, msg, host="127.0.0.1", timeout=30):
    """Sends msg via smtplib to host:port. Returns the dict of refused recipients (empty: all
    accepted). Raises smtplib exceptions when the whole transaction fails."""
    if isinstance(msg, str):
        msg = msg.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    with smtplib.SMTP(host, port, timeout=timeout) as s:
        s.ehlo("client.test.invalid")
        return s.sendmail(sender, list(rcpts), msg)


# ---------------------------------------------------------------------------------------------
# socketmap client
# ---------------------------------------------------------------------------------------------

MAX_NETSTRING = 100000  # Postfix's socketmap_max_reply_size


def netstring(data):
    if isinstance(data, str):
        data = data.encode()
    return str(len(data)).encode() + b":" + data + b","


class SocketmapClient:
    """A persistent socketmap connection (requests strictly sequential, as Postfix does)."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""

    def _read_netstring(self):
        while b":" not in self.buf:
            if len(self.buf) > 10:
                raise ValueError("bad netstring length prefix %r" % self.buf[:20])
            self._recv()
        length_text, _, rest = self.buf.partition(b":")
        if not length_text.isdigit():
            raise ValueError("bad netstring length %r" % length_text)
        length = int(length_text)
        if length > MAX_NETSTRING:
            raise ValueError("netstring too long: %d" % length)
        while len(rest) < length + 1:
            self._recv()
            length_text, _, rest = self.buf.partition(b":")
        if rest[length:length + 1] != b",":
            raise ValueError("netstring not terminated by ','")
        self.buf = rest[length + 1:]
        return rest[:length]

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("socketmap server closed the connection")
        self.buf += chunk

    def query_raw(self, request):
        """Sends one netstring request (bytes/str), returns the raw reply bytes."""
        self.sock.sendall(netstring(request))
        return self._read_netstring()

    def query(self, name, key):
        """Returns (status, data): ("OK", value), ("NOTFOUND", ""), ("TEMP", reason), ..."""
        reply = self.query_raw(("%s %s" % (name, key)).encode("utf-8", "surrogateescape"))
        text = reply.decode("utf-8", "surrogateescape")
        status, _, data = text.partition(" ")
        return status, data

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()



def read_policy_reply(sock):
    """Reads one policy-protocol reply (up to its empty line) from `sock`; ConnectionError when
    the server closes first."""
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed after %r" % data)
        data += chunk
    return data.decode()


def http_health(port):
    """(status code, body) of GET /health on 127.0.0.1:port; (0, "no answer: ...") when nothing
    answers (callers poll with wait_until)."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError) as e:
        return 0, "no answer: %s" % e

def socketmap_query(port, name, key, host="127.0.0.1", timeout=5.0):
    """One query on a fresh connection: (status, data)."""
    with SocketmapClient(port, host, timeout) as c:
        return c.query(name, key)
