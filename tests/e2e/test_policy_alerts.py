#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_policy_alerts.py: alerts when a limit trips (policy.alerts), end to end.

Two private Postfix relays, each with its own relaykit-policyd, share one redis-server (as an
ACL user with exactly the rights policyd/README.md documents); a per-sender limit trips for one
principal on both relays again and again within one alert window: exactly one alert mail is
delivered (submitted with `sendmail -t -i` through the relay's own Postfix, pickup -> cleanup ->
smtp, to the sink), exactly one `relaykit-alert:` line is in the two daemons' logs together, the
counters agree (trips = alerts + suppressed); a second principal alerts separately; after the
window a new trip alerts again. The memory store alone on one relay: once per principal and
window, warn_only limits alert marked as such, `alert: false` limits never. A sendmail that
hangs or fails does not delay decisions and is counted (failed, dropped when the queue is full).
"""

import os
import re
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_policy_postfix import POLICY, send  # noqa: E402

SENDMAIL = "/usr/sbin/sendmail"
ACL_RIGHTS = ["+evalsha", "+eval", "+time", "+hmget", "+hset", "+pexpire", "+set", "+pttl"]
PASSWORD = "alert-Secret-9"


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def metric(text, name, **labels):
    """The sum of the series of `name` whose labels include `labels`."""
    total = 0
    for line in text.splitlines():
        m = re.match(r"^%s(\{(.*)\})? (\S+)$" % re.escape(name), line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return int(total)


def ask(port, sender, client="192.0.2.10"):
    """One END-OF-MESSAGE request straight to policyd; (action, seconds it took)."""
    req = ("request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nsender=%s\n"
           "client_address=%s\nrecipient_count=1\nsize=100\n\n" % (sender, client))
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req.encode())
        reply = harness.read_policy_reply(s)
    return reply, time.monotonic() - t0


def alert_mails(sink, count):
    """The alert mails among the sink's messages, once `count` of them arrived."""
    harness.wait_until(lambda: len([m for m in sink.messages() if m.header("X-Relaykit-Alert")])
                       >= count, 30, "%d alert mail(s)" % count)
    return [m for m in sink.messages() if m.header("X-Relaykit-Alert")]


class PolicyAlertsTest(harness.E2ETestCase):
    def policyd(self, body, name, port, metrics_port, redis=None):
        text = "policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: 127.0.0.1:%d\n" % (
            port, metrics_port)
        if redis is not None:
            pass_file = os.path.join(self.tmp, "redis.pass")
            harness.write_file(pass_file, PASSWORD + "\n", mode=0o600)
            text += "  store: redis\n"
        text += body
        if redis is not None:
            text += ("redis:\n  address: 127.0.0.1:%d\n  timeout_ms: 500\n  username: relaykit\n"
                     "  password_file: %s\n" % (redis.port, pass_file))
        path = os.path.join(self.tmp, name + ".yaml")
        harness.write_file(path, text)
        return self.start_daemon("relaykit-policyd", path, port=port)

    def relay(self, name, sink, body, redis=None):
        """A private Postfix whose policy service is a fresh policyd; alerts go out through
        this Postfix's own sendmail (-C its config)."""
        port, metrics_port = harness.free_port(), harness.free_port()
        pf = self.start_postfix(name, relay_port=sink.port, extra_main_cf={
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": POLICY % port,
            "smtpd_end_of_data_restrictions": POLICY % port,
        })
        alerts = ("  alerts:\n    mail_to: [ops@example.net, postmaster@example.net]\n"
                  "    mail_from: relaykit@corp.local\n    sendmail: [%s, -C, %s]\n"
                  "    relay_name: %s.test.invalid\n" % (SENDMAIL, pf.etc, name))
        d = self.policyd(alerts + body, "policy-" + name, port, metrics_port, redis)
        return pf, d, metrics_port

    def test_two_relays_one_alert_per_window(self):
        redis = self.start_redis()
        self.assertEqual(redis.cli("ACL", "SETUSER", "relaykit", "on", ">" + PASSWORD,
                                   "resetkeys", "~relaykit:*", "resetchannels", "-@all",
                                   *ACL_RIGHTS), "OK")
        sink = self.start_sink()
        body = ("    interval: 6s\n"
                "  limits:\n"
                "    - name: per-sender\n      key: [sender]\n      max: 2\n      per: 1h\n")
        pf1, d1, m1 = self.relay("relay1", sink, body, redis)
        pf2, d2, m2 = self.relay("relay2", sink, body, redis)
        results = []
        for i in range(10):
            pf = pf1 if i % 2 == 0 else pf2
            results.append(send(pf.port, "cron@corp.local", ["r@example.net"], "cron %d" % i))
        self.assertEqual([r is None for r in results], [True] * 2 + [False] * 8, results)
        [alert] = alert_mails(sink, 1)
        # Nothing more comes: trips on both relays within the window are not alerted again.
        time.sleep(2)
        self.assertEqual(len(alert_mails(sink, 1)), 1)
        self.assertEqual(alert.sender, "relaykit@corp.local")
        self.assertEqual(sorted(alert.recipients), ["ops@example.net", "postmaster@example.net"])
        self.assertEqual(alert.header("X-Relaykit-Alert"), "per-sender")
        self.assertEqual(alert.header("Auto-Submitted"), "auto-generated")
        self.assertEqual(alert.header("Subject"),
                         "relaykit alert: limit per-sender exceeded by sender=cron@corp.local")
        self.assertIn("(by any relay sharing the Redis store)", alert.body)
        log = d1.stderr() + d2.stderr()
        self.assertEqual(log.count("relaykit-alert:"), 1, log)
        line = re.search(r"relaykit-alert: .*", log).group(0)
        self.assertRegex(line, r'^relaykit-alert: limit=per-sender mode=enforce '
                               r'principal="sender=cron@corp.local" interval=6s '
                               r'relay=relay[12]\.test\.invalid stage=RCPT ')
        # The window in Redis: under the prefix, the hash tag of the principal, the winner's name.
        [key] = redis.cli("--scan", "--pattern", "relaykit:alert:*").split()
        self.assertRegex(key, r"^relaykit:alert:\{[0-9a-f]{32}\}:per-sender$")
        self.assertIn(redis.cli("GET", key), ("relay1.test.invalid", "relay2.test.invalid"))
        self.assertGreater(int(redis.cli("PTTL", key)), 0)

        # A second principal alerts on its own.
        for i in range(4):
            send(pf2.port if i % 2 else pf1.port, "backup@corp.local", ["r@example.net"],
                 "backup %d" % i)
        alerts = alert_mails(sink, 2)
        self.assertEqual(sorted(m.header("Subject").split()[-1] for m in alerts),
                         ["sender=backup@corp.local", "sender=cron@corp.local"])

        # The counters of both relays together: every trip is alerted once or suppressed.
        def totals():
            texts = [metrics(m1), metrics(m2)]
            return {k: sum(metric(t, *v[0], **v[1]) for t in texts) for k, v in {
                "trips": (("relaykit_policy_limit_exceeded_total",), {}),
                "syslog": (("relaykit_policy_alerts_total",), {"channel": "syslog",
                                                              "result": "sent"}),
                "mail": (("relaykit_policy_alerts_total",), {"channel": "mail",
                                                            "result": "sent"}),
                "failed": (("relaykit_policy_alerts_total",), {"result": "failed"}),
                "suppressed": (("relaykit_policy_alerts_suppressed_total",), {}),
                "dropped": (("relaykit_policy_alerts_dropped_total",), {}),
            }.items()}
        t = totals()
        self.assertEqual(t["trips"], 8 + 2, t)
        self.assertEqual(t["syslog"], 2, t)
        self.assertEqual(t["mail"], 2, t)
        self.assertEqual(t["failed"] + t["dropped"], 0, t)
        self.assertEqual(t["suppressed"], t["trips"] - t["syslog"], t)

        # After the window, a new trip alerts again (once, whichever relay sees it first).
        time.sleep(6.5)
        for i in range(4):
            send(pf1.port if i % 2 else pf2.port, "cron@corp.local", ["r@example.net"],
                 "later %d" % i)
        alerts = alert_mails(sink, 3)
        time.sleep(1.5)
        self.assertEqual(len(alert_mails(sink, 3)), 3)
        log = d1.stderr() + d2.stderr()
        self.assertEqual(log.count("relaykit-alert:"), 3, log)
        t = totals()
        self.assertEqual((t["syslog"], t["mail"]), (3, 3), t)
        self.assertEqual(t["suppressed"], t["trips"] - 3, t)
        # The alert mails were submitted through the relays' own Postfix (pickup), never asked
        # of the policy service: the policy counted only the test's own messages.
        self.assertEqual(t["trips"], 8 + 2 + 4, t)
        pf1.wait_queue_empty()
        pf2.wait_queue_empty()

    def test_memory_store_one_relay(self):
        sink = self.start_sink()
        body = ("  limits:\n"
                "    - {name: per-sender, key: [sender], max: 1, per: 6s}\n"
                "    - {name: watch, key: [sender_domain], max: 1, per: 1h, warn_only: true}\n"
                "    - {name: silent, key: [client_address], max: 1, per: 1h, warn_only: true,"
                " alert: false}\n")
        pf, d, m = self.relay("relay", sink, body)
        self.assertIsNone(send(pf.port, "a@corp.local", ["r@example.net"], "a0"))
        for i in range(3):
            self.assertIsNotNone(send(pf.port, "a@corp.local", ["r@example.net"], "a%d" % i))
        self.assertIsNone(send(pf.port, "b@other.local", ["r@example.net"], "b0"))
        self.assertIsNotNone(send(pf.port, "b@other.local", ["r@example.net"], "b1"))
        alerts = alert_mails(sink, 4)
        time.sleep(1.5)
        alerts = alert_mails(sink, 4)
        subjects = sorted(m.header("Subject") for m in alerts)
        self.assertEqual(subjects, [
            "relaykit alert: limit per-sender exceeded by sender=a@corp.local",
            "relaykit alert: limit per-sender exceeded by sender=b@other.local",
            "relaykit alert: limit watch (warn_only) exceeded by sender_domain=corp.local",
            "relaykit alert: limit watch (warn_only) exceeded by sender_domain=other.local",
        ])
        self.assertIn("(by this relay)", alerts[0].body)
        log = d.stderr()
        self.assertEqual(log.count("relaykit-alert:"), 4, log)
        self.assertEqual(log.count("relaykit-alert: limit=watch mode=warn_only"), 2, log)
        self.assertNotIn("limit=silent", "\n".join(
            l for l in log.splitlines() if "relaykit-alert:" in l))
        self.assertIn("warn_only: would refuse at", log)  # silent tripped (logged, not alerted)
        # The per-sender window (its 6s period) passes: a new trip alerts again.
        time.sleep(6.5)
        self.assertIsNone(send(pf.port, "a@corp.local", ["r@example.net"], "a again"))
        self.assertIsNotNone(send(pf.port, "a@corp.local", ["r@example.net"], "a over"))
        alert_mails(sink, 5)
        text = metrics(m)
        self.assertEqual(metric(text, "relaykit_policy_alerts_total", limit="per-sender",
                                channel="mail", result="sent"), 3)
        self.assertEqual(metric(text, "relaykit_policy_alerts_total", limit="watch",
                                channel="syslog", result="sent"), 2)
        self.assertEqual(metric(text, "relaykit_policy_alerts_total", limit="silent"), 0)
        pf.wait_queue_empty()

    def test_sendmail_hangs_or_fails(self):
        hang = os.path.join(self.tmp, "sendmail-hang")
        harness.write_file(hang, "#!/bin/sh\ncat > /dev/null\nexec sleep 60\n", mode=0o755)
        fail = os.path.join(self.tmp, "sendmail-fail")
        harness.write_file(fail, "#!/bin/sh\necho 'sendmail: fatal: no queue here' >&2\n"
                                 "exit 75\n", mode=0o755)
        for program, expect in ((hang, "hang"), (fail, "fail")):
            port, metrics_port = harness.free_port(), harness.free_port()
            d = self.policyd(
                "  alerts:\n    mail_to: ops@example.net\n    sendmail: %s\n    queue: 2\n"
                "    timeout: 2s\n"
                "  limits:\n    - {name: one, key: [sender], max: 1, per: 1h}\n" % program,
                "policy-" + expect, port, metrics_port)
            slowest = 0
            for i in range(20):  # 20 principals trip: 20 alerts for a queue of 2
                sender = "s%d@corp.local" % i
                self.assertEqual(ask(port, sender)[0], "action=DUNNO\n\n")
                reply, took = ask(port, sender)
                self.assertTrue(reply.startswith("action=450 "), reply)
                slowest = max(slowest, took)
            self.assertLess(slowest, 0.5, "a decision waited for sendmail")
            text = metrics(metrics_port)
            self.assertEqual(metric(text, "relaykit_policy_alerts_total", channel="syslog"), 20)
            if expect == "hang":
                # One sendmail runs, two wait, the rest are dropped at once and counted.
                self.assertGreaterEqual(metric(text, "relaykit_policy_alerts_dropped_total",
                                               reason="queue_full"), 17)
                harness.wait_until(lambda: metric(metrics(metrics_port),
                                                  "relaykit_policy_alerts_total",
                                                  result="failed") >= 1, 10, "a killed sendmail")
                self.assertIn("not submitted: sendmail: timed out after 2000 ms", d.stderr())
                self.assertIn("warning: alerts: dropped the alert of limit one (2 alert mails "
                              "already wait for sendmail): queue_full", d.stderr())
                reply, took = ask(port, "s0@corp.local")  # still fast while sendmail hangs
                self.assertLess(took, 0.5)
            else:
                harness.wait_until(lambda: metric(metrics(metrics_port),
                                                  "relaykit_policy_alerts_total",
                                                  result="failed")
                                   + metric(metrics(metrics_port),
                                            "relaykit_policy_alerts_dropped_total") == 20,
                                   20, "every alert mail failed or dropped")
                self.assertGreaterEqual(metric(metrics(metrics_port),
                                               "relaykit_policy_alerts_total",
                                               result="failed"), 3)
                self.assertIn("not submitted: sendmail: exit 75: sendmail: fatal: no queue here",
                              d.stderr())
            t0 = time.monotonic()
            d.stop()
            self.assertLess(time.monotonic() - t0, 3)  # a running sendmail is killed


if __name__ == "__main__":
    harness.main()
