#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_policy_daemon.py: relaykit-policyd as a black box on the wire (no Postfix needed).

600 concurrent persistent connections each get their answers; a request sent one byte at a time
is answered once, in one piece; malformed and oversized input closes the connection without a
reply; SIGHUP applies a new limit and a broken file is refused while the old config keeps
serving; --check prints FILE:LINE:COL problems; /metrics counts decisions and store errors
(Redis down with on_store_error: closed answers DEFER_IF_PERMIT within timeout_ms, and the
daemon reconnects when Redis comes up); `relaykit limits show|reset` reaches the memory store
through policy.admin_socket (mode 0600) and what it resets is what the daemon then enforces;
per-principal allowances are enforced (memory and Redis store), shown by `relaykit limits show`
and hot reloaded.
"""

import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def request(state="RCPT", client="10.0.0.1", sender="app@corp.local", **extra):
    attrs = {"request": "smtpd_access_policy", "protocol_state": state, "protocol_name": "ESMTP",
             "client_address": client, "client_name": "unknown", "sender": sender,
             "recipient": "r@example.net", "recipient_count": "0", "instance": "1.1", "size": "0"}
    attrs.update(extra)
    return "".join("%s=%s\n" % kv for kv in attrs.items()).encode() + b"\n"


read_reply = harness.read_policy_reply


def read(path):
    with open(path) as f:
        return f.read()


def ask(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return read_reply(s)


class PolicyDaemonTest(harness.E2ETestCase):
    def config(self, body, port):
        path = os.path.join(self.tmp, "relaykit.yaml")
        harness.write_file(path, "policy:\n  listen: inet:127.0.0.1:%d\n%s" % (port, body))
        return path

    def test_600_concurrent_connections(self):
        port = harness.free_port()
        d = self.start_daemon("relaykit-policyd", self.config(
            "  limits:\n    - name: c\n      key: [client_address]\n      max: 5\n      per: 1h\n",
            port))
        socks = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(600)]
        try:
            for rnd in range(2):
                for i, s in enumerate(socks):
                    s.sendall(request("END-OF-MESSAGE", client="10.1.%d.%d" % (i // 250, i % 250),
                                      recipient_count="1"))
                replies = [read_reply(s) for s in socks]
                self.assertEqual(replies, ["action=DUNNO\n\n"] * 600, "round %d" % rnd)
        finally:
            for s in socks:
                s.close()

    def test_byte_by_byte_malformed_and_oversized(self):
        port = harness.free_port()
        d = self.start_daemon("relaykit-policyd", self.config(
            "  relay:\n    - sender: nagios@corp.local\n      filter: \"smtp:[127.0.0.1]:2526\"\n",
            port))
        with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for b in request(sender="nagios@corp.local"):
                s.sendall(bytes([b]))
            self.assertEqual(read_reply(s), "action=FILTER smtp:[127.0.0.1]:2526\n\n")
            s.sendall(request())  # the connection stays open for the next request
            self.assertEqual(read_reply(s), "action=DUNNO\n\n")
        for bad in (b"no equals sign\n\n", b"=empty name\n\n", b"\n",
                    b"sender=" + b"a" * 5000 + b"\n\n",
                    b"".join(b"a%d=b\n" % i for i in range(200)) + b"\n"):
            with socket.create_connection(("127.0.0.1", d.port), timeout=5) as s:
                s.sendall(bad)
                self.assertEqual(s.recv(100), b"", bad[:30])  # closed, no reply
        self.assertIn("closing policy connection", d.stderr())
        self.assertTrue(d.running())

    def test_reload_applies_new_limit_and_refuses_broken_file(self):
        port = harness.free_port()
        path = self.config("  limits:\n    - name: c\n      key: [client_address]\n"
                           "      max: 1\n      per: 1h\n", port)
        d = self.start_daemon("relaykit-policyd", path)
        eom = request("END-OF-MESSAGE", recipient_count="1")
        self.assertEqual(ask(d.port, eom), "action=DUNNO\n\n")
        self.assertTrue(ask(d.port, eom).startswith("action=450 "))
        harness.write_file(path, read(path).replace("max: 1\n", "max: 3\n"))
        d.hup()
        # The unit used under max 1 is kept: two more fit under max 3, then 450.
        harness.wait_until(lambda: ask(d.port, eom) == "action=DUNNO\n\n", 10, "reloaded limit")
        self.assertEqual(ask(d.port, eom), "action=DUNNO\n\n")
        self.assertTrue(ask(d.port, eom).startswith("action=450 "))
        harness.write_file(path, read(path).replace("max: 3\n", "max: zero\n"))
        d.hup()
        harness.wait_until(lambda: "reload" in d.stderr() and "zero" in d.stderr() or None, 10,
                           "reload refusal logged")
        other = request("END-OF-MESSAGE", client="10.0.0.2", recipient_count="1")
        self.assertEqual([ask(d.port, other) for _ in range(3)], ["action=DUNNO\n\n"] * 3)
        self.assertTrue(ask(d.port, other).startswith("action=450 "))  # old config serving
        self.assertTrue(d.running())

    def test_limits_cli_memory_store(self):
        port = harness.free_port()
        admin = os.path.join(self.tmp, "admin.sock")
        path = self.config("  admin_socket: %s\n  limits:\n    - name: c\n"
                           "      key: [client_address]\n      max: 2\n      per: 1h\n" % admin,
                           port)
        d = self.start_daemon("relaykit-policyd", path)
        self.assertEqual(stat.S_IMODE(os.stat(admin).st_mode), 0o600)
        cli = harness.binary_path("relaykit")

        def limits(*args):
            return subprocess.run([cli, "limits"] + list(args) + ["-c", path],
                                  capture_output=True, text=True, timeout=30)

        eom = request("END-OF-MESSAGE", client="10.9.8.7", recipient_count="1")
        self.assertEqual([ask(d.port, eom) for _ in range(2)], ["action=DUNNO\n\n"] * 2)
        self.assertTrue(ask(d.port, eom).startswith("action=450 "))
        shown = limits("show", "client_address=10.9.8.7")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn("c\tclient_address=10.9.8.7\t(messages)", shown.stdout)
        self.assertIn("2 per 1.0h: 0 left", shown.stdout)
        self.assertIn("c\t1 active counter(s)", limits("show").stdout)
        other = limits("show", "client_address=10.0.0.99")
        self.assertIn("2 left", other.stdout)
        reset = limits("reset", "client_address=10.9.8.7")
        self.assertEqual(reset.returncode, 0, reset.stderr)
        self.assertIn("\treset", reset.stdout)
        self.assertEqual(ask(d.port, eom), "action=DUNNO\n\n")  # the daemon sees the reset
        self.assertIn("1 left", limits("show", "client_address=10.9.8.7").stdout)
        self.assertIn("deleted 1 counter(s)", limits("reset", "--all").stdout)
        self.assertIn("c\t0 active counter(s)", limits("show").stdout)
        self.assertIn("limits: reset ", d.stderr())
        # Without admin_socket the CLI says how to reach the memory store.
        bare = self.config("  limits:\n    - name: c\n      key: [client_address]\n"
                           "      max: 2\n      per: 1h\n", port)
        r = subprocess.run([cli, "limits", "show", "-c", bare], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("admin_socket", r.stderr)

    def test_per_principal_allowances_memory_and_redis(self):
        cli = harness.binary_path("relaykit")
        for store in ("memory", "redis"):
            with self.subTest(store=store):
                port = harness.free_port()
                if store == "memory":
                    head = "  admin_socket: %s\n" % os.path.join(self.tmp, "admin.sock")
                    tail = ""
                else:
                    redis = self.start_redis()
                    head = "  store: redis\n"
                    tail = "redis:\n  address: 127.0.0.1:%d\n  timeout_ms: 500\n" % redis.port
                path = self.config(
                    head + "  limits:\n    - name: s\n      key: [sender]\n      max: 1\n"
                    "      per: 1h\n      allowances:\n"
                    "        - match: {sender: monitor@corp.local}\n          max: 3\n"
                    "          per: 1h\n" + tail, port)
                d = self.start_daemon("relaykit-policyd", path)

                def eom(sender):
                    return ask(d.port, request("END-OF-MESSAGE", sender=sender,
                                               recipient_count="1"))

                def show(sender):
                    r = subprocess.run([cli, "limits", "show", "sender=" + sender, "-c", path],
                                       capture_output=True, text=True, timeout=30)
                    self.assertEqual(r.returncode, 0, r.stderr)
                    return r.stdout

                self.assertEqual([eom("Monitor+x@corp.local") for _ in range(3)],
                                 ["action=DUNNO\n\n"] * 3)
                self.assertTrue(eom("monitor@corp.local").startswith("action=450 "))
                self.assertEqual(eom("app@corp.local"), "action=DUNNO\n\n")
                self.assertTrue(eom("app@corp.local").startswith("action=450 "))
                shown = show("monitor@corp.local")
                self.assertIn("s\tsender=monitor@corp.local\t(messages, own allowance)", shown)
                self.assertIn("3 per 1.0h: 0 left", shown)
                shown = show("app@corp.local")
                self.assertIn("s\tsender=app@corp.local\t(messages, default allowance)", shown)
                self.assertIn("1 per 1.0h: 0 left", shown)
                # Hot reload: the monitor's allowance rises to 5, the 3 used are kept.
                harness.write_file(path, read(path).replace("max: 3\n", "max: 5\n"))
                d.hup()
                harness.wait_until(lambda: eom("monitor@corp.local") == "action=DUNNO\n\n", 10,
                                   "reloaded allowance")
                self.assertEqual(eom("monitor@corp.local"), "action=DUNNO\n\n")
                self.assertTrue(eom("monitor@corp.local").startswith("action=450 "))
                self.assertIn("5 per 1.0h: 0 left", show("monitor@corp.local"))
                self.assertTrue(eom("app@corp.local").startswith("action=450 "))
                d.stop()

    def test_check_reports_file_line_column(self):
        port = harness.free_port()
        path = self.config("  store: etcd\n  limits:\n    - name: x\n      key: [client_address/99]\n"
                           "      max: 1\n      per: 1h\n", port)
        proc = subprocess.run([harness.binary_path("relaykit-policyd"), "-c", path, "--check"],
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 1)
        out = proc.stdout + proc.stderr
        self.assertIn("%s:3:10: store: expected memory or redis" % path, out)
        self.assertIn("%s:6:12: limit \"x\": key: bad IPv4 prefix" % path, out)

    def test_redis_down_closed_answers_fast_and_counts(self):
        port, metrics = harness.free_port(), harness.free_port()
        dead_redis = harness.free_port()
        d = self.start_daemon("relaykit-policyd", self.config(
            "  metrics_listen: 127.0.0.1:%d\n  store: redis\n  on_store_error: closed\n"
            "  limits:\n    - name: c\n      key: [client_address]\n      max: 5\n      per: 1h\n"
            "redis:\n  address: 127.0.0.1:%d\n  timeout_ms: 50\n" % (metrics, dead_redis), port))
        t0 = time.monotonic()
        reply = ask(d.port, request())
        self.assertLess(time.monotonic() - t0, 0.5)
        self.assertTrue(reply.startswith("action=DEFER_IF_PERMIT "), reply)
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics, timeout=5).read().decode()
        self.assertIn('relaykit_policy_answers_total{answer="store_error_closed"} 1', text.splitlines())
        self.assertIn('relaykit_policy_errors_total{kind="store"} 1', text.splitlines())
        self.assertIn("relaykit_policy_redis_up 0", text.splitlines())
        # Redis comes up on that port: the daemon reconnects (backoff) and the gauge follows.
        redis = self.start_redis(port=dead_redis)

        def metrics_text():
            return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics,
                                          timeout=5).read().decode()
        # Whole sample lines: the HELP line ("# HELP relaykit_policy_redis_up 1 while ...") also
        # contains the text "relaykit_policy_redis_up 1".
        harness.wait_until(lambda: "relaykit_policy_redis_up 1" in metrics_text().splitlines(), 15,
                           "redis_up 1")
        self.assertEqual(ask(d.port, request()), "action=DUNNO\n\n")
        self.assertEqual(redis.cli("DBSIZE"), "0")  # RCPT checks charge nothing
        self.assertEqual(ask(d.port, request("END-OF-MESSAGE", recipient_count="1")),
                         "action=DUNNO\n\n")
        self.assertEqual(redis.cli("DBSIZE"), "1")


if __name__ == "__main__":
    harness.main()
