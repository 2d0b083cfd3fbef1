#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_policy_health.py: relaykit-policyd's /health tells the truth about its Redis store.

With a real redis-server that is stopped and started again on the same port: while Redis is
unreachable, `on_store_error: closed` answers 503 "unavailable: store unreachable ..." (every
limited request is deferred) and `on_store_error: open` answers 200 "degraded: store
unreachable ..." (mail flows unlimited); with Redis up, and with the memory store, 200 "ok".
The policy answers are checked in the same states, so /health and the decisions agree.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def request(state="END-OF-MESSAGE", client="10.0.0.1"):
    attrs = {"request": "smtpd_access_policy", "protocol_state": state,
             "client_address": client, "sender": "app@corp.local", "recipient": "r@example.net",
             "recipient_count": "1", "instance": "1.1", "size": "100"}
    return "".join("%s=%s\n" % kv for kv in attrs.items()).encode() + b"\n"


def ask(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return harness.read_policy_reply(s)


health = harness.http_health


class PolicyHealthTest(harness.E2ETestCase):
    def start_policyd(self, mode, redis_port):
        port, metrics = harness.free_port(), harness.free_port()
        path = os.path.join(self.tmp, "relaykit.yaml")
        harness.write_file(path, (
            "policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: 127.0.0.1:%d\n"
            "  store: redis\n  on_store_error: %s\n"
            "  limits:\n    - {name: c, key: [client_address], max: 100, per: 1h}\n"
            "redis:\n  address: 127.0.0.1:%d\n  timeout_ms: 200\n")
            % (port, metrics, mode, redis_port))
        d = self.start_daemon("relaykit-policyd", path, port=port)
        return d, metrics

    def wait_health(self, metrics, code, prefix):
        last = [None]

        def check():
            last[0] = health(metrics)
            return last[0][0] == code and last[0][1].startswith(prefix)
        harness.wait_until(check, 15, "/health %d %r (last: %r)" % (code, prefix, last))
        return last[0]

    def run_mode(self, mode):
        redis = self.start_redis()
        d, metrics = self.start_policyd(mode, redis.port)
        self.assertEqual(self.wait_health(metrics, 200, "ok"), (200, "ok\n"))
        self.assertEqual(ask(d.port, request()), "action=DUNNO\n\n")

        redis.stop()
        if mode == "closed":
            code, body = self.wait_health(metrics, 503, "unavailable: store unreachable")
            self.assertIn("redis at 127.0.0.1:%d" % redis.port, body)
            self.assertIn("on_store_error: closed", body)
            self.assertTrue(ask(d.port, request()).startswith("action=DEFER_IF_PERMIT "))
        else:
            code, body = self.wait_health(metrics, 200, "degraded: store unreachable")
            self.assertIn("on_store_error: open", body)
            self.assertEqual(ask(d.port, request()), "action=DUNNO\n\n")
        self.assertEqual(body.count("\n"), 1, body)  # one line

        redis.start()  # the same port: the daemon reconnects with backoff
        self.assertEqual(self.wait_health(metrics, 200, "ok"), (200, "ok\n"))
        self.assertEqual(ask(d.port, request()), "action=DUNNO\n\n")
        self.assertEqual(redis.cli("DBSIZE"), "1")  # counting again
        return d

    def test_closed_mode_is_unavailable_while_redis_is_down(self):
        self.run_mode("closed")

    def test_open_mode_is_degraded_while_redis_is_down(self):
        self.run_mode("open")

    def test_never_reachable_redis_is_unavailable_from_the_start(self):
        d, metrics = self.start_policyd("closed", harness.free_port())
        code, body = self.wait_health(metrics, 503, "unavailable: store unreachable")
        self.assertEqual(code, 503)

    def test_acl_user_right_and_wrong_password(self):
        # An ACL user with only the commands the rate script and the alert window need
        # (policyd/README.md; the alerts themselves: test_policy_alerts.py).
        redis = self.start_redis()
        self.assertEqual(redis.cli("ACL", "SETUSER", "relaykit", "on", ">right-Secret-1",
                                   "resetkeys", "~relaykit:*", "resetchannels", "-@all",
                                   "+evalsha", "+eval", "+time", "+hmget", "+hset", "+pexpire",
                                   "+set", "+pttl"),
                         "OK")
        for password, healthy in (("wrong-Secret-2", False), ("right-Secret-1", True)):
            port, metrics = harness.free_port(), harness.free_port()
            pass_file = os.path.join(self.tmp, "redis.pass")
            harness.write_file(pass_file, password + "\n", mode=0o600)
            path = os.path.join(self.tmp, "relaykit.yaml")
            harness.write_file(path, (
                "policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: 127.0.0.1:%d\n"
                "  store: redis\n  on_store_error: closed\n"
                "  limits:\n    - {name: c, key: [client_address], max: 100, per: 1h}\n"
                "redis:\n  address: 127.0.0.1:%d\n  username: relaykit\n"
                "  password_file: %s\n  timeout_ms: 200\n")
                % (port, metrics, redis.port, pass_file))
            d = self.start_daemon("relaykit-policyd", path, port=port)
            if healthy:
                self.assertEqual(self.wait_health(metrics, 200, "ok"), (200, "ok\n"))
                self.assertEqual(ask(d.port, request()), "action=DUNNO\n\n")
                self.assertEqual(redis.cli("EXISTS", redis.cli("KEYS", "relaykit:*")), "1")
            else:
                harness.wait_until(lambda: "AUTH as user" in d.stderr(), 10, "AUTH error line")
                self.assertIn('redis: AUTH as user "relaykit" failed: WRONGPASS', d.stderr())
                self.assertTrue(ask(d.port, request()).startswith("action=DEFER_IF_PERMIT "))
                self.wait_health(metrics, 503, "unavailable: store unreachable")
            self.assertNotIn(password, d.stderr())
            d.stop()

    def test_memory_store_is_ok(self):
        port, metrics = harness.free_port(), harness.free_port()
        path = os.path.join(self.tmp, "relaykit.yaml")
        harness.write_file(path, "policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: "
                           "127.0.0.1:%d\n  on_store_error: closed\n" % (port, metrics))
        self.start_daemon("relaykit-policyd", path, port=port)
        self.assertEqual(self.wait_health(metrics, 200, "ok"), (200, "ok\n"))


if __name__ == "__main__":
    harness.main()
