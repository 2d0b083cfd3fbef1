#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_hostile_input.py: a catalogue of hostile clients against the real relaykit-socketmapd and
relaykit-policyd binaries and their /metrics endpoint, each case with its expected behaviour.

Per case: what the hostile connection gets (a clear error reply, the connection closed without a
reply, or a normal answer), then a legitimate client's answer must be unchanged and prompt and the
daemon alive. Resource cases (floods of idle connections, many connections from one uid,
pipelining without reading, slow drip, oversize HTTP heads) also check the daemon's RSS and fd
count before and after, and the time a legitimate request takes during the flood. Postfix is the
legitimate client, so floods come both from root (trusted: reserved room, oldest idle evicted) and
from `nobody` (an untrusted local user: capped per uid). docs/connection-limits.md describes the
limits checked here. Everything is bounded in count and time (about a minute in all).

Run: RELAYKIT_BUILD_DIR=$PWD/build python3 tests/e2e/test_hostile_input.py [-k name]
"""

import errno
import os
import pwd
import resource
import select
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SOCKETMAPD = "relaykit-socketmapd"
POLICYD = "relaykit-policyd"

# Skeleton limits the checks rely on (common/server/connection.h, server defaults).
REQUEST_TIMEOUT = 10       # ServerLimits::requestTimeout
WRITE_TIMEOUT = 10         # ServerLimits::writeTimeout
PER_USER_CAP = 64          # ServerLimits::maxConnectionsPerUser
METRICS_MAX_CONNECTIONS = 32
# A legitimate request during a flood must be answered within this.
PROMPT = 1.0
# Growth allowed across a flood once its connections are gone.
RSS_SLACK_KB = 40 * 1024
FD_SLACK = 16

# Another user must be able to run it (the test's own interpreter may live under /root).
SYSTEM_PYTHON = "/usr/bin/python3"

BIG_VALUE = "v" * 60000  # one reply of ~60 KB: pipelining it without reading is 1 GB+ unbounded


def netstring(data):
    if isinstance(data, str):
        data = data.encode()
    return str(len(data)).encode() + b":" + data + b","


def policy_request(sender="app@corp.local", **extra):
    attrs = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
             "protocol_name": "ESMTP", "client_address": "10.0.0.1", "client_name": "unknown",
             "sender": sender, "recipient": "r@example.net", "recipient_count": "0",
             "instance": "1.1", "size": "0"}
    attrs.update(extra)
    return "".join("%s=%s\n" % kv for kv in attrs.items()).encode() + b"\n"


def proc_stats(pid):
    """(RSS in kB, open fds) of a process."""
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def wait_fds_at_most(pid, limit, timeout=5.0):
    """Waits until the process has at most `limit` open fds (closes are processed asynchronously);
    returns the last count."""
    deadline = time.monotonic() + timeout
    while True:
        count = proc_stats(pid)[1]
        if count <= limit or time.monotonic() >= deadline:
            return count
        time.sleep(0.05)


def raise_own_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(sock, timeout):
    """Everything the peer sends until it closes (returns (data, True)) or `timeout` passes
    (returns (data, False))."""
    data = b""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return data, False
            poller = select.poll()  # not select(): fds above 1024 during floods
            poller.register(sock, select.POLLIN)
            if not poller.poll(int(min(left, 0.2) * 1000)):
                continue
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return data, True
            except BlockingIOError:
                continue
            if not chunk:
                return data, True
            data += chunk
    finally:
        sock.setblocking(True)


def read_reply(sock, terminator, timeout=5.0):
    """Reads until `terminator` ends the data; raises ConnectionError on close."""
    data = b""
    sock.settimeout(timeout)
    while not data.endswith(terminator):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed after %r" % data[:200])
        data += chunk
    return data


def is_closed_by_peer(sock):
    """True when the peer has closed (EOF or reset pending), without blocking."""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # with a timeout, Python would poll for it before recv
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


# Runs as another user: opens N connections to 127.0.0.1:PORT, waits, prints how many the server
# still holds open and how many it closed, then holds them until stdin closes.
FLOOD_SCRIPT = r"""
import resource, socket, sys, time
port, n, payload = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks, failed = [], 0
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        if payload:
            s.sendall(payload)
        socks.append(s)
    except OSError:
        failed += 1
time.sleep(1.0)
open_count = 0
for s in socks:
    s.setblocking(False)
    try:
        closed = s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        closed = False
    except OSError:
        closed = True
    open_count += 0 if closed else 1
print("open=%d closed=%d failed=%d" % (open_count, len(socks) - open_count, failed), flush=True)
sys.stdin.read()
"""


class Flood:
    """N connections from `user` (None: this process, root) held until close()."""

    def __init__(self, port, n, user=None, payload=b""):
        self.socks = []
        self.proc = None
        self.result = {}
        if user is None:
            raise_own_fd_limit()
            for _ in range(n):
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                    if payload:
                        s.sendall(payload)
                    self.socks.append(s)
                except OSError:
                    pass
            time.sleep(1.0)
            open_count = sum(0 if is_closed_by_peer(s) else 1 for s in self.socks)
            self.result = {"open": open_count, "closed": len(self.socks) - open_count,
                           "failed": n - len(self.socks)}
        else:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, "-c", FLOOD_SCRIPT, str(port), str(n), payload.decode("latin-1")],
                user=user, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = self.proc.stdout.readline()
            for part in line.split():
                k, _, v = part.partition("=")
                self.result[k] = int(v)

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(30)
            self.proc.stdout.close()
            self.proc = None


class HostileBase(harness.E2ETestCase):
    """Shared helpers: one socketmapd (map `t`, a big-value key, metrics) and one policyd."""

    def start_socketmapd(self, extra="", nofile=None, listen=None):
        self.map_port = harness.free_port()
        self.metrics_port = harness.free_port()
        listen = listen or "inet:127.0.0.1:%d" % self.map_port
        cfg = harness.write_file(os.path.join(self.tmp, "socketmapd.yaml"), (
            "tables:\n"
            "  t:\n"
            "    search: exact\n"
            "    sources:\n"
            "      - entries:\n"
            "          a@example.com: b@example.com\n"
            "          big: %s\n"
            "socketmap:\n"
            "  listen: %s\n"
            "  metrics_listen: 127.0.0.1:%d\n%s") % (BIG_VALUE, listen, self.metrics_port, extra))
        d = harness.RelaykitDaemon(SOCKETMAPD, cfg, port=self.map_port if "inet" in listen else
                                   self.metrics_port, workdir=self.tmp)
        if nofile is not None:
            # The daemon starts under this RLIMIT_NOFILE (as systemd would start it).
            wrapper = harness.write_file(
                os.path.join(self.tmp, "limited-socketmapd"),
                "#!/bin/sh\nexec prlimit --nofile=%d:%d %s \"$@\"\n" % (nofile[0], nofile[1],
                                                                      d.binary), mode=0o755)
            d.binary = wrapper
        self.addCleanup(d.stop)
        d.start()
        harness.wait_port(self.metrics_port, proc=d.proc, what="metrics endpoint")
        self.register_log(SOCKETMAPD, d.stderr_path)
        self.smd = d
        return d

    def start_policyd(self, extra=""):
        self.policy_port = harness.free_port()
        cfg = harness.write_file(os.path.join(self.tmp, "policyd.yaml"), (
            "policy:\n"
            "  listen: inet:127.0.0.1:%d\n"
            "  limits:\n"
            "    - name: per_sender\n"
            "      key: [sender]\n"
            "      max: 1000000\n"
            "      per: 1h\n%s") % (self.policy_port, extra))
        self.pd = self.start_daemon(POLICYD, cfg, port=self.policy_port)
        return self.pd

    # -- legitimate clients --
    def legit_socketmap(self, port=None):
        """A fresh connection's answer to `t a@example.com` and the time it took."""
        started = time.monotonic()
        with connect(port or self.map_port) as s:
            s.sendall(netstring("t a@example.com"))
            reply = read_reply(s, b",")
        return reply, time.monotonic() - started

    def assert_socketmap_healthy(self):
        self.assertTrue(self.smd.running(), "socketmapd died:\n" + self.smd.stderr()[-2000:])
        reply, took = self.legit_socketmap()
        self.assertEqual(reply, netstring("OK b@example.com"))
        self.assertLess(took, PROMPT)

    def legit_policy(self):
        started = time.monotonic()
        with connect(self.policy_port) as s:
            s.sendall(policy_request())
            reply = read_reply(s, b"\n\n")
        return reply, time.monotonic() - started

    def assert_policy_healthy(self):
        self.assertTrue(self.pd.running(), "policyd died:\n" + self.pd.stderr()[-2000:])
        reply, took = self.legit_policy()
        self.assertEqual(reply, b"action=DUNNO\n\n")
        self.assertLess(took, PROMPT)

    def http(self, raw, timeout=5.0):
        """Sends raw bytes to the metrics port; returns everything until close (or timeout)."""
        with connect(self.metrics_port) as s:
            try:
                s.sendall(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass
            data, _ = read_until_closed(s, timeout)
            return data

    def metric(self, name_and_labels):
        """The value of one series on /metrics (0 when absent)."""
        text = self.http(b"GET /metrics HTTP/1.0\r\n\r\n").decode(errors="replace")
        for line in text.splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.split()[-1])
        return 0.0


# ---------------------------------------------------------------------------------------------
# Socketmap: one hostile connection per case
# ---------------------------------------------------------------------------------------------

# (name, bytes sent, expectation): "closed" = closed without a reply; bytes = the exact reply
# (the connection then stays usable); "eof" = we half-close after sending (truncated request).
SOCKETMAP_CASES = [
    ("garbage_text", b"hello world\n", "closed"),
    ("length_not_digits", b"x:abc,", "closed"),
    ("negative_length", b"-1:a,", "closed"),
    ("space_before_length", b" 5:t a@x,", "closed"),
    ("huge_length_prefix", b"99999999999999999999:", "closed"),
    ("length_over_100000", b"100001:" + b"t " + b"a" * 1000, "closed"),
    ("missing_comma", b"15:t a@example.comX", "closed"),
    ("empty_netstring", b"0:,", "closed"),
    ("no_space_in_request", b"1:t,", "closed"),
    ("only_nul_bytes", b"\0" * 64, "closed"),
    ("http_to_socketmap", b"GET / HTTP/1.0\r\n\r\n", "closed"),
    ("tls_client_hello", bytes.fromhex("160301002e0100002a0303") + b"\0" * 40, "closed"),
    ("binary_garbage", bytes(range(256)) * 16, "closed"),
    ("unknown_map", netstring("nosuchmap x"), netstring("PERM unknown map nosuchmap")),
    ("empty_key", netstring("t "), netstring("NOTFOUND ")),
    ("nul_in_key", netstring("t a\0b"), netstring("NOTFOUND ")),
    ("eight_bit_key", netstring("t \xff\xfe@example.com".encode("latin-1")), netstring("NOTFOUND ")),
    ("key_at_the_size_limit", netstring("t " + "k" * 99990), netstring("NOTFOUND ")),
    ("half_request_then_eof", b"20:t a@exa", "eof"),
    ("length_only_then_eof", b"20:", "eof"),
    ("digits_only_then_eof", b"123", "eof"),
]


class SocketmapHostileTest(HostileBase):
    def setUp(self):
        self.start_socketmapd()

    def run_case(self, payload, expect):
        before = proc_stats(self.smd.pid)
        with connect(self.map_port) as s:
            s.sendall(payload)
            if expect == "eof":
                s.shutdown(socket.SHUT_WR)
                data, closed = read_until_closed(s, 3)
                self.assertEqual(data, b"")
                self.assertTrue(closed)
            elif expect == "closed":
                data, closed = read_until_closed(s, 3)
                self.assertEqual(data, b"", "a reply to a malformed request")
                self.assertTrue(closed, "the connection stayed open after a malformed request")
            else:
                self.assertEqual(read_reply(s, b","), expect)
                # Still usable afterwards.
                s.sendall(netstring("t a@example.com"))
                self.assertEqual(read_reply(s, b","), netstring("OK b@example.com"))
        self.assert_socketmap_healthy()
        self.assertLessEqual(wait_fds_at_most(self.smd.pid, before[1] + 2), before[1] + 2,
                             "fds leaked")

    def test_pipelined_requests_are_answered_in_order(self):
        with connect(self.map_port) as s:
            s.sendall((netstring("t a@example.com") + netstring("t nope")) * 100)
            want = (netstring("OK b@example.com") + netstring("NOTFOUND ")) * 100
            got = b""
            while len(got) < len(want):
                chunk = s.recv(65536)
                self.assertTrue(chunk, "closed early")
                got += chunk
            self.assertEqual(got, want)

    def test_pipelining_without_reading_keeps_memory_bounded(self):
        rss0, fds0 = proc_stats(self.smd.pid)
        s = connect(self.map_port)
        s.setblocking(False)
        request = netstring("t big")
        sent = 0
        deadline = time.monotonic() + 5
        # Up to 20,000 requests for a 60 KB reply (1.2 GB of replies if buffered unbounded).
        burst = request * 1000
        while sent < 20 * len(burst) and time.monotonic() < deadline:
            try:
                sent += s.send(burst)
            except BlockingIOError:
                time.sleep(0.05)
        time.sleep(1.0)
        rss1, _ = proc_stats(self.smd.pid)
        self.assertLess(rss1 - rss0, RSS_SLACK_KB,
                        "socketmapd buffered %d kB for a client that does not read" % (rss1 - rss0))
        # Other clients are served meanwhile.
        self.assert_socketmap_healthy()
        s.close()
        self.assertLessEqual(wait_fds_at_most(self.smd.pid, fds0 + 2), fds0 + 2)

    def test_slow_clients_meet_the_request_and_write_deadlines(self):
        # A client dripping one byte per second, and one that pipelines big replies and never
        # reads them: both are closed within the deadlines (they used to be held forever).
        drip = connect(self.map_port)
        hog = connect(self.map_port)
        hog.setblocking(False)
        try:
            hog.send(netstring("t big") * 2000)
        except BlockingIOError:
            pass
        payload = netstring("t a@example.com")
        started = time.monotonic()
        drip_closed_at = None
        for i in range(REQUEST_TIMEOUT + 5):
            try:
                drip.send(payload[i % (len(payload) - 1):i % (len(payload) - 1) + 1])
            except (BrokenPipeError, ConnectionResetError):
                drip_closed_at = time.monotonic() - started
                break
            if is_closed_by_peer(drip):
                drip_closed_at = time.monotonic() - started
                break
            time.sleep(1)
        self.assertIsNotNone(drip_closed_at, "a client dripping one byte/s is never closed")
        self.assertLess(drip_closed_at, REQUEST_TIMEOUT + 3)
        # The hog: drain what the kernel holds; then the server must have closed it.
        hog.setblocking(True)
        _, closed = read_until_closed(hog, WRITE_TIMEOUT + 3 - (time.monotonic() - started))
        self.assertTrue(closed, "a client that never reads its replies is never closed")
        drip.close()
        hog.close()
        self.assertGreaterEqual(self.metric(
            'relaykit_connection_errors_total{server="socketmap",reason="request_timeout"}'), 1)
        self.assertGreaterEqual(self.metric(
            'relaykit_connection_errors_total{server="socketmap",reason="write_timeout"}'), 1)
        self.assert_socketmap_healthy()

    def test_idle_flood_from_root_evicts_the_oldest_idle(self):
        # 4,200 idle connections (the table holds 4,096): the newest still get in, a legitimate
        # request is answered promptly, and the fds come back once the flood ends.
        rss0, fds0 = proc_stats(self.smd.pid)
        persistent = connect(self.map_port)  # a Postfix-like persistent client, busy
        flood = Flood(self.map_port, 4200)
        try:
            self.assertGreater(flood.result["closed"], 0, "nothing evicted: table not bounded")
            reply, took = self.legit_socketmap()
            self.assertEqual(reply, netstring("OK b@example.com"))
            self.assertLess(took, PROMPT)
            _, fds1 = proc_stats(self.smd.pid)
            self.assertLess(fds1, fds0 + 4096 + FD_SLACK)
        finally:
            flood.close()
        persistent.close()
        wait_fds_at_most(self.smd.pid, fds0 + FD_SLACK)
        rss2, fds2 = proc_stats(self.smd.pid)
        self.assertLessEqual(fds2, fds0 + FD_SLACK)
        self.assertLess(rss2 - rss0, RSS_SLACK_KB)
        self.assertGreater(self.metric(
            'relaykit_connections_evicted_total{server="socketmap",reason="total"}'), 0)
        self.assert_socketmap_healthy()

    def test_idle_flood_from_another_user_is_capped_per_uid(self):
        # `nobody` opens 4,200 connections: at most PER_USER_CAP stay open; Postfix (root here)
        # and everyone else are served promptly during the flood.
        _, fds0 = proc_stats(self.smd.pid)
        flood = Flood(self.map_port, 4200, user="nobody")
        try:
            self.assertLessEqual(flood.result["open"], PER_USER_CAP)
            self.assertGreater(flood.result["closed"], 0)
            reply, took = self.legit_socketmap()
            self.assertEqual(reply, netstring("OK b@example.com"))
            self.assertLess(took, PROMPT)
            self.assertLess(proc_stats(self.smd.pid)[1], fds0 + PER_USER_CAP + FD_SLACK)
        finally:
            flood.close()
        self.assertGreater(self.metric(
            'relaykit_connections_evicted_total{server="socketmap",reason="per_peer"}'), 0)
        self.assert_socketmap_healthy()

    def test_flood_from_another_user_cannot_evict_postfix(self):
        # Postfix's idle connections (root and the postfix user here) survive a flood from
        # `nobody`: untrusted peers never evict trusted ones.
        held = [connect(self.map_port) for _ in range(20)]
        for s in held:
            s.sendall(netstring("t a@example.com"))
            self.assertEqual(read_reply(s, b","), netstring("OK b@example.com"))
        flood = Flood(self.map_port, 2000, user="nobody")
        try:
            for s in held:
                self.assertFalse(is_closed_by_peer(s), "a trusted idle connection was evicted")
                s.sendall(netstring("t a@example.com"))
                self.assertEqual(read_reply(s, b","), netstring("OK b@example.com"))
        finally:
            flood.close()
            for s in held:
                s.close()

    def test_connection_churn_leaves_no_fds(self):
        _, fds0 = proc_stats(self.smd.pid)
        for _ in range(1500):
            s = socket.create_connection(("127.0.0.1", self.map_port), timeout=2)
            s.close()
        self.assertLessEqual(wait_fds_at_most(self.smd.pid, fds0 + 2), fds0 + 2)
        self.assert_socketmap_healthy()

    def test_many_hostile_connections_at_once(self):
        # 200 connections each sending garbage at the same time: all closed, nothing leaks.
        _, fds0 = proc_stats(self.smd.pid)
        socks = [connect(self.map_port) for _ in range(200)]
        for s in socks:
            s.sendall(b"garbage" * 10)
        for s in socks:
            data, closed = read_until_closed(s, 3)
            self.assertEqual(data, b"")
            self.assertTrue(closed)
            s.close()
        self.assertLessEqual(wait_fds_at_most(self.smd.pid, fds0 + 2), fds0 + 2)
        self.assert_socketmap_healthy()


def _add_cases(cls, cases, runner):
    for name, payload, expect in cases:
        def test(self, payload=payload, expect=expect):
            getattr(self, runner)(payload, expect)
        test.__name__ = "test_case_" + name
        setattr(cls, test.__name__, test)


_add_cases(SocketmapHostileTest, SOCKETMAP_CASES, "run_case")


# ---------------------------------------------------------------------------------------------
# Resource limits: RLIMIT_NOFILE and allowed_users
# ---------------------------------------------------------------------------------------------

class LimitsTest(HostileBase):
    def test_soft_fd_limit_is_raised_to_the_hard_limit(self):
        d = self.start_socketmapd(nofile=(1024, 8192))
        with open("/proc/%d/limits" % d.pid) as f:
            line = [l for l in f if l.startswith("Max open files")][0]
        self.assertEqual(line.split()[3:5], ["8192", "8192"], line)
        self.assert_socketmap_healthy()

    def test_fd_limit_1024_and_1100_idle_connections(self):
        # systemd's default soft limit, and no higher hard limit: the caps fit below it, the
        # daemon keeps accepting (no "Too many open files") and answers promptly.
        d = self.start_socketmapd(nofile=(1024, 1024))
        flood = Flood(self.map_port, 1100)
        try:
            reply, took = self.legit_socketmap()
            self.assertEqual(reply, netstring("OK b@example.com"))
            self.assertLess(took, PROMPT)
            self.assertLess(proc_stats(d.pid)[1], 1024)
        finally:
            flood.close()
        self.assertNotIn("Too many open files", d.stderr())
        self.assert_socketmap_healthy()

    def test_fd_limit_1024_and_1100_idle_metrics_connections(self):
        d = self.start_socketmapd(nofile=(1024, 1024))
        flood = Flood(self.metrics_port, 1100)
        try:
            self.assertLessEqual(flood.result["open"], METRICS_MAX_CONNECTIONS)
            text = self.http(b"GET /health HTTP/1.0\r\n\r\n")
            self.assertTrue(text.startswith(b"HTTP/1.0 200"), text[:200])
            self.assert_socketmap_healthy()
        finally:
            flood.close()
        self.assertNotIn("Too many open files", d.stderr())

    def _allowed_users_case(self, listen, connect_as):
        """Returns the reply `connect_as` (a user name or None for root) gets."""
        script = (
            "import socket,sys\n"
            "fam=socket.AF_UNIX if sys.argv[1].startswith('/') else socket.AF_INET\n"
            "s=socket.socket(fam)\n"
            "s.settimeout(3)\n"
            "s.connect(sys.argv[1] if fam==socket.AF_UNIX else ('127.0.0.1',int(sys.argv[1])))\n"
            "print('connected', flush=True)\n"
            "d=b''\n"
            "try:\n"
            "  s.sendall(b'15:t a@example.com,')\n"
            "  while True:\n"
            "    c=s.recv(100)\n"
            "    if not c or d.endswith(b','): break\n"
            "    d+=c\n"
            "    if d.endswith(b','): break\n"
            "except OSError: pass\n"
            "print(repr(d))\n")
        out = subprocess.run([SYSTEM_PYTHON, "-c", script, listen], user=connect_as,
                             capture_output=True, text=True, timeout=10)
        self.assertTrue(out.stdout.startswith("connected"), out.stderr)
        return out.stdout.split("\n", 1)[1].strip()

    def test_allowed_users_on_a_unix_socket(self):
        sockdir = self.subdir("sock")
        os.chmod(sockdir, 0o755)
        path = os.path.join(sockdir, "socketmap")
        self.start_socketmapd(extra="  socket_mode: \"0666\"\n  allowed_users: [postfix]\n",
                              listen="unix:" + path)
        harness.wait_until(lambda: harness.unix_accepts(path), 10, "unix socket")
        ok = repr(netstring("OK b@example.com"))
        self.assertEqual(self._allowed_users_case(path, None), ok)          # root
        self.assertEqual(self._allowed_users_case(path, "postfix"), ok)
        self.assertEqual(self._allowed_users_case(path, "nobody"), "b''")  # refused
        self.assertGreaterEqual(self.metric(
            'relaykit_connections_refused_total{server="socketmap",reason="not_allowed"}'), 1)

    def test_allowed_users_on_loopback_tcp(self):
        self.start_socketmapd(extra="  allowed_users: [postfix]\n")
        ok = repr(netstring("OK b@example.com"))
        port = str(self.map_port)
        self.assertEqual(self._allowed_users_case(port, None), ok)
        self.assertEqual(self._allowed_users_case(port, "postfix"), ok)
        self.assertEqual(self._allowed_users_case(port, "nobody"), "b''")

    def test_unknown_allowed_user_refuses_the_config(self):
        cfg = harness.write_file(os.path.join(self.tmp, "bad.yaml"),
                                 "socketmap:\n  allowed_users: [no-such-user-rk]\n")
        out = subprocess.run([harness.binary_path(SOCKETMAPD), "-c", cfg, "--check"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 1)
        self.assertIn('allowed_users: unknown user "no-such-user-rk"', out.stderr)


# ---------------------------------------------------------------------------------------------
# Policy delegation
# ---------------------------------------------------------------------------------------------

POLICY_CASES = [
    ("line_without_equals", b"request smtpd_access_policy\n\n", "closed"),
    ("empty_attribute_name", b"=x\n\n", "closed"),
    ("overlong_line", b"sender=" + b"a" * 5000 + b"\n\n", "closed"),
    ("oversize_request", b"".join(b"x%d=%s\n" % (i, b"y" * 1000) for i in range(80)) + b"\n",
     "closed"),
    ("many_attributes", b"".join(b"a%d=1\n" % i for i in range(20000)) + b"\n", "closed"),
    ("only_newlines", b"\n\n\n", "closed"),
    ("nul_bytes", b"\0" * 100 + b"\n\n", "closed"),
    ("binary_garbage", bytes(range(256)) * 16, "closed"),
    ("http_to_policy", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "closed"),
    ("half_request_then_eof", b"request=smtpd_access_policy\nsender=a@b\n", "eof"),
    ("pipelined_flood", policy_request() * 200, "closed_after_replies"),
    ("crlf_line_ends", policy_request().replace(b"\n", b"\r\n"), b"action=DUNNO\n\n"),
    ("eight_bit_values", policy_request(sender="\xe9t\xe9@exampl\xe9.com"), b"action=DUNNO\n\n"),
    ("duplicate_attributes", policy_request() [:-1] + b"sender=other@x\n\n", b"action=DUNNO\n\n"),
    ("unknown_attributes", policy_request(zzz_unknown="1"), b"action=DUNNO\n\n"),
    ("huge_size_attribute", policy_request(size="99999999999999999999999"), "answer_or_closed"),
]


class PolicyHostileTest(HostileBase):
    def setUp(self):
        self.start_policyd()

    def run_case(self, payload, expect):
        _, fds0 = proc_stats(self.pd.pid)
        with connect(self.policy_port) as s:
            try:
                s.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if expect == "eof":
                s.shutdown(socket.SHUT_WR)
                data, closed = read_until_closed(s, 3)
                self.assertEqual(data, b"")
                self.assertTrue(closed)
            elif expect == "closed":
                data, closed = read_until_closed(s, 3)
                self.assertEqual(data, b"", "a reply to a malformed request")
                self.assertTrue(closed)
            elif expect == "closed_after_replies":
                data, closed = read_until_closed(s, 5)
                self.assertTrue(closed, "a client pipelining 200 requests was not closed")
                self.assertEqual(data.replace(b"action=DUNNO\n\n", b""), b"")
            elif expect == "answer_or_closed":
                data, _ = read_until_closed(s, 2)
                self.assertIn(data, (b"", b"action=DUNNO\n\n"))
            else:
                self.assertEqual(read_reply(s, b"\n\n"), expect)
        self.assert_policy_healthy()
        self.assertLessEqual(wait_fds_at_most(self.pd.pid, fds0 + 2), fds0 + 2)

    def test_request_one_byte_at_a_time_is_answered_once(self):
        with connect(self.policy_port) as s:
            for b in policy_request():
                s.send(bytes([b]))
            self.assertEqual(read_reply(s, b"\n\n"), b"action=DUNNO\n\n")

    def test_slow_drip_meets_the_request_deadline(self):
        s = connect(self.policy_port)
        payload = policy_request()
        started = time.monotonic()
        closed_at = None
        for i in range(REQUEST_TIMEOUT + 5):
            try:
                s.send(payload[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - started
                break
            if is_closed_by_peer(s):
                closed_at = time.monotonic() - started
                break
            time.sleep(1)
        s.close()
        self.assertIsNotNone(closed_at, "a client dripping one byte/s is never closed")
        self.assertLess(closed_at, REQUEST_TIMEOUT + 3)
        self.assert_policy_healthy()

    def test_idle_flood_from_another_user(self):
        rss0, fds0 = proc_stats(self.pd.pid)
        flood = Flood(self.policy_port, 4200, user="nobody")
        try:
            self.assertLessEqual(flood.result["open"], PER_USER_CAP)
            self.assert_policy_healthy()
        finally:
            flood.close()
        wait_fds_at_most(self.pd.pid, fds0 + FD_SLACK)
        rss1, fds1 = proc_stats(self.pd.pid)
        self.assertLessEqual(fds1, fds0 + FD_SLACK)
        self.assertLess(rss1 - rss0, RSS_SLACK_KB)

    def test_idle_flood_from_root(self):
        _, fds0 = proc_stats(self.pd.pid)
        flood = Flood(self.policy_port, 4200)
        try:
            self.assert_policy_healthy()
        finally:
            flood.close()
        self.assertLessEqual(wait_fds_at_most(self.pd.pid, fds0 + FD_SLACK), fds0 + FD_SLACK)

    def test_half_requests_from_many_connections(self):
        socks = [connect(self.policy_port) for _ in range(100)]
        for s in socks:
            s.sendall(b"request=smtpd_access_policy\nsender=")
        self.assert_policy_healthy()
        for s in socks:
            s.close()
        self.assert_policy_healthy()


_add_cases(PolicyHostileTest, POLICY_CASES, "run_case")


# ---------------------------------------------------------------------------------------------
# The /metrics HTTP endpoint (on socketmapd)
# ---------------------------------------------------------------------------------------------

# (name, raw request, expected status line prefix or "closed", must the connection close?)
HTTP_CASES = [
    ("get_metrics", b"GET /metrics HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK"),
    ("get_health", b"GET /health HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK"),
    ("get_healthz_query", b"GET /healthz?x=1 HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK"),
    ("head_metrics", b"HEAD /metrics HTTP/1.0\r\n\r\n", b"HTTP/1.0 200 OK"),
    ("post_metrics", b"POST /metrics HTTP/1.0\r\n\r\n", b"HTTP/1.0 405"),
    ("unknown_path", b"GET /nope HTTP/1.0\r\n\r\n", b"HTTP/1.0 404"),
    ("absolute_uri", b"GET http://x/metrics HTTP/1.0\r\n\r\n", b"HTTP/1.0 404"),
    ("request_body", b"POST /metrics HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000,
     b"HTTP/1.1 413"),
    ("chunked_body", b"POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     b"HTTP/1.1 501"),
    ("header_over_8k", b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
     b"HTTP/1.1 431"),
    ("too_many_headers", b"GET /metrics HTTP/1.1\r\n" + b"A: b\r\n" * 100 + b"\r\n",
     b"HTTP/1.1 431"),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"HTTP/1.1 505"),
    ("http_0_9", b"GET /metrics\r\n\r\n", b"HTTP/1.1 400"),
    ("bad_version", b"GET /metrics HTTP/x.y\r\n\r\n", b"HTTP/1.1 400"),
    ("header_without_colon", b"GET /metrics HTTP/1.1\r\nBroken\r\n\r\n", b"HTTP/1.1 400"),
    ("folded_header", b"GET /metrics HTTP/1.1\r\nA: b\r\n c\r\n\r\n", b"HTTP/1.1 400"),
    ("nul_in_request", b"GET /met\0rics HTTP/1.1\r\n\r\n", b"HTTP/1.1 400"),
    ("binary_garbage", bytes(range(1, 256)) * 4 + b"\r\n\r\n", b"HTTP/1.1 400"),
    ("bad_content_length", b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"HTTP/1.1 400"),
    ("half_request_then_eof", b"GET /metrics HTTP/1.1\r\nHost:", "eof"),
]


class MetricsHttpHostileTest(HostileBase):
    def setUp(self):
        self.start_socketmapd()

    def run_case(self, payload, expect):
        _, fds0 = proc_stats(self.smd.pid)
        if expect == "eof":
            with connect(self.metrics_port) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                data, closed = read_until_closed(s, 3)
                self.assertEqual(data, b"")
                self.assertTrue(closed)
        else:
            data = self.http(payload, timeout=3)
            self.assertTrue(data.startswith(expect), data[:300])
            if payload.startswith(b"HEAD"):
                self.assertTrue(data.endswith(b"\r\n\r\n"), "HEAD answered with a body")
        text = self.http(b"GET /metrics HTTP/1.0\r\n\r\n")
        self.assertIn(b"relaykit_socketmap_connections", text)
        self.assert_socketmap_healthy()
        self.assertLessEqual(wait_fds_at_most(self.smd.pid, fds0 + 2), fds0 + 2)

    def test_keep_alive_and_pipelined_requests(self):
        with connect(self.metrics_port) as s:
            for _ in range(3):
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                data = read_reply(s, b"ok\n")
                self.assertTrue(data.startswith(b"HTTP/1.1 200 OK"), data)
            s.sendall(b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n"
                      b"Connection: close\r\n\r\n")
            data, closed = read_until_closed(s, 3)
            self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 2)
            self.assertTrue(closed)

    def test_ten_megabyte_header_is_refused_early(self):
        rss0, _ = proc_stats(self.smd.pid)
        with connect(self.metrics_port) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nX: ")
            sent = 0
            chunk = b"a" * 65536
            try:
                while sent < 10 * 1024 * 1024:
                    sent += s.send(chunk)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                pass
            data, closed = read_until_closed(s, 3)
            self.assertTrue(closed)
            self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 431"), data[:200])
        self.assertLess(proc_stats(self.smd.pid)[0] - rss0, 8 * 1024)
        self.assert_socketmap_healthy()

    def test_slow_header_drip_meets_the_deadline(self):
        s = connect(self.metrics_port)
        started = time.monotonic()
        closed_at = None
        payload = b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 10
        for i in range(REQUEST_TIMEOUT + 5):
            try:
                s.send(payload[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - started
                break
            if is_closed_by_peer(s):
                closed_at = time.monotonic() - started
                break
            time.sleep(1)
        s.close()
        self.assertIsNotNone(closed_at)
        self.assertLess(closed_at, REQUEST_TIMEOUT + 3)

    def test_idle_flood_keeps_metrics_and_lookups_answering(self):
        _, fds0 = proc_stats(self.smd.pid)
        flood = Flood(self.metrics_port, 1100)
        try:
            self.assertLessEqual(flood.result["open"], METRICS_MAX_CONNECTIONS)
            self.assertLess(proc_stats(self.smd.pid)[1], fds0 + METRICS_MAX_CONNECTIONS + FD_SLACK)
            started = time.monotonic()
            text = self.http(b"GET /metrics HTTP/1.0\r\n\r\n")
            self.assertLess(time.monotonic() - started, PROMPT)
            self.assertTrue(text.startswith(b"HTTP/1.0 200"))
            self.assert_socketmap_healthy()
        finally:
            flood.close()


_add_cases(MetricsHttpHostileTest, HTTP_CASES, "run_case")


if __name__ == "__main__":
    harness.main()
