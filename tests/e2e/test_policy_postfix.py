#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_policy_postfix.py: relaykit-policyd behind a real private Postfix (and a real Redis).

Checks, end to end: the (N+1)th message of a window gets a 4xx and is not delivered; a limit on
recipients refuses at END-OF-MESSAGE without counting the refused mail; an exempt client passes;
a per-principal allowance (Redis store) lets one sender send more than the default;
FILTER reroutes nagios@ mail to the alerts sink, answered at RCPT and at END-OF-MESSAGE (both
honoured by Postfix); two Postfix instances with their own policyd sharing one Redis enforce one
global limit; Redis killed mid-run gives the configured fail mode (open and closed) and policyd
recovers when Redis returns; policyd killed gives Postfix's default_action and nothing is lost.
"""

import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

POLICY = "check_policy_service { inet:127.0.0.1:%d, timeout=10s, default_action=DUNNO }"


def send(port, sender, rcpts, subject, source="127.0.0.1"):
    """Sends one message; returns (code, text) of the refusal, or None when accepted."""
    msg = harness.make_message(sender, ", ".join(rcpts), subject)
    msg = msg.replace("\n", "\r\n").encode()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as s:
            s.ehlo("client.test.invalid")
            refused = s.sendmail(sender, rcpts, msg)
            if refused:
                code, text = next(iter(refused.values()))
                return code, text.decode(errors="replace")
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        return code, text.decode(errors="replace")
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")
    return None


class PolicyPostfixTest(harness.E2ETestCase):
    # Test names stay short: the temp dir is named after them, and Postfix's unix socket paths
    # inside it must fit in sun_path (108 bytes).
    # ---- fixtures -------------------------------------------------------------------------
    def policyd(self, body, name="policy", redis=None, on_store_error="open", port=None):
        port = port or harness.free_port()
        text = "policy:\n  listen: inet:127.0.0.1:%d\n" % port
        if redis is not None:
            text += "  store: redis\n  on_store_error: %s\n" % on_store_error
        text += body
        if redis is not None:
            text += "redis:\n  address: 127.0.0.1:%d\n  timeout_ms: 100\n" % redis.port
        path = os.path.join(self.tmp, name + ".yaml")
        harness.write_file(path, text)
        return self.start_daemon("relaykit-policyd", path, port=port)

    def postfix(self, policy_port, sink, name="postfix", rcpt=True, eod=True, extra=None):
        params = {
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": POLICY % policy_port if rcpt else "",
            "smtpd_end_of_data_restrictions": POLICY % policy_port if eod else "",
            "smtpd_policy_service_retry_delay": "1s",
        }
        params.update(extra or {})
        return self.start_postfix(name, relay_port=sink.port, extra_main_cf=params)

    def assert_stays(self, sink, count, seconds=1.5):
        """The sink has exactly `count` messages now and still after `seconds`."""
        sink.messages(wait_for=count)
        time.sleep(seconds)
        self.assertEqual(sink.count(), count)

    # ---- rate limits ----------------------------------------------------------------------
    def test_nth_plus_one_deferred_exempt_ok(self):
        sink = self.start_sink()
        d = self.policyd(
            "  exempt:\n    clients: [127.0.0.2]\n"
            "  limits:\n"
            "    - name: per-client\n      key: [client_address]\n      count: messages\n"
            "      max: 3\n      per: 1h\n"
            "      reply: \"450 4.7.1 Too many messages from $client_address, retry in $retry_after s\"\n")
        pf = self.postfix(d.port, sink)
        for i in range(3):
            self.assertIsNone(send(pf.port, "app@corp.local", ["u%d@example.net" % i], "ok %d" % i))
        code, text = send(pf.port, "app@corp.local", ["u9@example.net"], "one too many")
        self.assertEqual(code, 450)
        self.assertIn("Too many messages from 127.0.0.1, retry in", text)
        # An exempt client is never limited.
        for i in range(5):
            self.assertIsNone(send(pf.port, "app@corp.local", ["x%d@example.net" % i], "exempt %d" % i,
                                   source="127.0.0.2"))
        self.assert_stays(sink, 8)
        self.assertNotIn("one too many", "".join(m.header("Subject") for m in sink.messages()))
        pf.wait_queue_empty()
        self.assertIn("refused at RCPT: limit=per-client", d.stderr())

    def test_rcpt_limit_at_eom_uncounted(self):
        sink = self.start_sink()
        d = self.policyd(
            "  limits:\n"
            "    - name: rcpts\n      key: [sender]\n      count: recipients\n"
            "      max: 5\n      per: 1h\n")
        pf = self.postfix(d.port, sink)
        three = ["a@example.net", "b@example.net", "c@example.net"]
        self.assertIsNone(send(pf.port, "batch@corp.local", three, "first three"))
        # Each RCPT check passes (one recipient fits), END-OF-MESSAGE needs 3 > 2 left: 4xx.
        code, text = send(pf.port, "batch@corp.local", three, "second three")
        self.assertEqual(code, 450, text)
        # The refused message was not counted: two recipients still fit, twice refused above.
        self.assertIsNone(send(pf.port, "batch@corp.local", three[:2], "last two"))
        self.assert_stays(sink, 2)
        self.assertIn("refused at END-OF-MESSAGE: limit=rcpts", d.stderr())

    def test_allowances(self):
        """A per-principal allowance through Postfix and the Redis store: the monitoring sender
        gets 4 messages an hour, everyone else the default 1; refused mail is never delivered."""
        sink = self.start_sink()
        redis = self.start_redis()
        d = self.policyd(
            "  limits:\n"
            "    - name: per-sender\n      key: [sender]\n      max: 1\n      per: 1h\n"
            "      allowances:\n        - match: {sender: monitor@corp.local}\n"
            "          max: 4\n          per: 1h\n", redis=redis)
        pf = self.postfix(d.port, sink)
        for i in range(4):
            self.assertIsNone(send(pf.port, "monitor@corp.local", ["ops@example.net"], "m%d" % i))
        code, _ = send(pf.port, "monitor@corp.local", ["ops@example.net"], "m over")
        self.assertEqual(code, 450)
        self.assertIsNone(send(pf.port, "app@corp.local", ["ops@example.net"], "a0"))
        code, _ = send(pf.port, "app@corp.local", ["ops@example.net"], "a over")
        self.assertEqual(code, 450)
        self.assert_stays(sink, 5)
        subjects = sorted(m.header("Subject") for m in sink.messages())
        self.assertEqual(subjects, ["a0", "m0", "m1", "m2", "m3"])
        pf.wait_queue_empty()

    # ---- FILTER ---------------------------------------------------------------------------
    def _filter_case(self, rcpt, eod):
        sink = self.start_sink("main")
        alerts = self.start_sink("alerts")
        d = self.policyd(
            "  relay:\n"
            "    - sender: nagios@corp.local\n      filter: \"smtp:[127.0.0.1]:%d\"\n"
            "    - sender: \"/^zabbix@/\"\n      client: [10.0.0.0/8]\n"
            "      filter: \"smtp:[127.0.0.1]:%d\"\n" % (alerts.port, alerts.port))
        pf = self.postfix(d.port, sink, rcpt=rcpt, eod=eod)
        self.assertIsNone(send(pf.port, "nagios@corp.local", ["ops@example.net"], "alert"))
        self.assertIsNone(send(pf.port, "zabbix@corp.local", ["ops@example.net"], "not 10/8"))
        self.assertIsNone(send(pf.port, "app@corp.local", ["ops@example.net"], "normal"))
        [alert] = alerts.messages(wait_for=1)
        self.assertEqual(alert.header("Subject"), "alert")
        self.assertEqual(alert.sender, "nagios@corp.local")
        subjects = sorted(m.header("Subject") for m in sink.messages(wait_for=2))
        self.assertEqual(subjects, ["normal", "not 10/8"])
        pf.wait_queue_empty()
        self.assertEqual(alerts.count(), 1)

    def test_filter_at_rcpt(self):
        self._filter_case(rcpt=True, eod=False)

    def test_filter_at_eom(self):
        self._filter_case(rcpt=False, eod=True)

    # ---- Redis: one global limit, fail modes, recovery ------------------------------------
    LIMIT = ("  limits:\n"
             "    - name: global-sender\n      key: [sender]\n      count: messages\n"
             "      max: 4\n      per: 1h\n")

    def test_two_relays_one_redis_limit(self):
        redis = self.start_redis()
        sink = self.start_sink()
        d1 = self.policyd(self.LIMIT, "policy1", redis=redis)
        d2 = self.policyd(self.LIMIT, "policy2", redis=redis)
        pf1 = self.postfix(d1.port, sink, "postfix1")
        pf2 = self.postfix(d2.port, sink, "postfix2")
        results = []
        for i in range(8):
            pf = pf1 if i % 2 == 0 else pf2
            results.append(send(pf.port, "cron@corp.local", ["r@example.net"], "msg %d" % i))
        self.assertEqual([r is None for r in results], [True] * 4 + [False] * 4, results)
        self.assertTrue(all(r[0] == 450 for r in results[4:]), results)
        self.assert_stays(sink, 4)
        # Keys: digest inside one hash tag, never the address; they expire.
        keys = redis.cli("--scan", "--pattern", "relaykit:*").split()
        self.assertEqual(len(keys), 1, keys)
        self.assertRegex(keys[0], r"^relaykit:rl:\{[0-9a-f]{32}\}:global-sender$")
        self.assertGreater(int(redis.cli("PTTL", keys[0])), 0)

    def _outage(self, mode):
        redis = self.start_redis()
        sink = self.start_sink()
        d = self.policyd(self.LIMIT, redis=redis, on_store_error=mode)
        pf = self.postfix(d.port, sink)
        self.assertIsNone(send(pf.port, "cron@corp.local", ["r@example.net"], "before"))
        redis.stop()
        t0 = time.monotonic()
        during = send(pf.port, "cron@corp.local", ["r@example.net"], "during")
        self.assertLess(time.monotonic() - t0, 5)
        if mode == "closed":
            self.assertIsNotNone(during)
            self.assertEqual(during[0] // 100, 4, during)
        else:
            self.assertIsNone(during)
        redis.start()  # same port, empty
        deadline = time.monotonic() + 20
        after = "never tried"
        while time.monotonic() < deadline:
            after = send(pf.port, "cron@corp.local", ["r@example.net"], "after")
            if after is None:
                break
            time.sleep(0.5)
        self.assertIsNone(after, "policyd did not recover after Redis came back")
        self.assert_stays(sink, 3 if mode == "open" else 2)
        self.assertIn("store error (on_store_error=%s" % mode, d.stderr())
        self.assertIn("redis: connected", d.stderr().split("store error")[-1])

    def test_redis_down_closed(self):
        self._outage("closed")

    def test_redis_down_open(self):
        self._outage("open")

    # ---- policyd down ---------------------------------------------------------------------
    def test_policyd_down_default_action(self):
        sink = self.start_sink()
        d = self.policyd(
            "  limits:\n"
            "    - name: per-client\n      key: [client_address]\n      max: 100\n      per: 1h\n")
        pf = self.postfix(d.port, sink)
        self.assertIsNone(send(pf.port, "app@corp.local", ["a@example.net"], "up"))
        d.kill()
        for i in range(3):
            self.assertIsNone(send(pf.port, "app@corp.local", ["a@example.net"], "down %d" % i))
        d.start()
        self.assertIsNone(send(pf.port, "app@corp.local", ["a@example.net"], "back"))
        self.assert_stays(sink, 5)
        pf.wait_queue_empty()
        self.assertRegex(pf.maillog(), r"policy|connect to 127\.0\.0\.1:%d" % d.port)


if __name__ == "__main__":
    harness.main()
