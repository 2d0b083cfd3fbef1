#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_milter_resilience.py: relaykit-milter never loses mail and restarts/reloads cleanly.

- Milter down: Postfix (milter_default_action = tempfail) refuses SMTP mail with 4xx and keeps
  sendmail submissions; once the milter is back, everything is delivered, rewritten.
- Milter killed (SIGKILL) and restarted in the middle of a stream of SMTP sessions: every message
  Postfix accepted arrives rewritten; every refused one (4xx) is delivered when retried.
- SIGHUP reload applies new rules to new messages; a bad config is refused and the old one keeps
  serving; a reload that adds a client condition works although the old rules negotiated no
  CONNECT step. SIGTERM stops the milter fast (libmilter alone takes seconds).
- on_error (RELAYKIT_MILTER_FAULT=eom makes every message fail inside the milter): tempfail
  gives the SMTP client a 4xx and nothing is delivered until the milter is healthy again, then
  the retry arrives rewritten; accept lets the message through unchanged.
- Sessions (session_runner.cc, socket_wrap.cc): 30 concurrent SMTP sessions and connections that
  carry several messages each all get every message rewritten, and idle session threads stay
  bounded; with max_sessions: 2, eight concurrent SMTP sessions wait their turn and every
  message still arrives rewritten, the milter never running more than two session threads.
"""

import os
import signal
import smtplib
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from milter_fixtures import SEED_MILTER, MilterTestCase  # noqa: E402


def message(i):
    return harness.make_message("Root <root@relay.corp.local>", "ops@example.com", "msg %d" % i,
                                extra_headers=[("X-Originating-IP", "10.0.0.%d" % (i % 250))])


def try_send(port, i):
    """True when Postfix accepted message i, False on a 4xx; raises on anything else."""
    try:
        refused = harness.send_smtp(port, "root@relay.corp.local", ["ops@example.com"],
                                    message(i))
        return not refused
    except smtplib.SMTPResponseException as e:
        if 400 <= e.smtp_code < 500:
            return False
        raise
    except smtplib.SMTPRecipientsRefused as e:
        codes = [c for c, _ in e.recipients.values()]
        if all(400 <= c < 500 for c in codes):
            return False
        raise
    except (smtplib.SMTPServerDisconnected, ConnectionError):
        return False


class MilterResilienceTest(MilterTestCase):
    def reload(self, milter, body, logged):
        """Writes a new config for the (inet) milter, SIGHUPs it, waits for `logged` in its log."""
        self.write_config(body, "inet:127.0.0.1:%d" % milter.port)
        milter.hup()
        harness.wait_until(lambda: logged in milter.stderr(), 10, logged)

    def assert_rewritten(self, msgs):
        for m in msgs:
            self.assertEqual(m.sender, "noreply@corp.com", m)
            self.assertEqual(m.header("From"), "Root <noreply@corp.com>")
            self.assertIsNone(m.header("X-Originating-IP"))

    def test_milter_down_then_back_nothing_lost(self):
        sink, milter, pf = self.start_milter_stack()
        milter.kill(signal.SIGKILL)
        self.assertFalse(try_send(pf.port, 1), "accepted without the milter")
        pf.sendmail(message(2), "root@relay.corp.local", ["ops@example.com"])
        time.sleep(2)
        self.assertEqual(sink.count(), 0)
        milter.start()
        self.assertTrue(try_send(pf.port, 1))
        # The sendmail submission waits in the queue (maildrop) and is picked up again.
        def delivered():
            if sink.count() >= 2:
                return True
            try:
                pf.flush()
            except RuntimeError:
                pass
            return False
        harness.wait_until(delivered, 60, "both messages", interval=1.0)
        msgs = sink.messages(wait_for=2)
        self.assertEqual(sorted(m.header("Subject") for m in msgs), ["msg 1", "msg 2"])
        self.assert_rewritten(msgs)

    def test_milter_killed_mid_stream(self):
        sink, milter, pf = self.start_milter_stack()
        total = 40
        accepted, refused = [], []
        stop_at = threading.Event()

        def sender():
            for i in range(total):
                (accepted if try_send(pf.port, i) else refused).append(i)
                if i == 10:
                    stop_at.set()

        t = threading.Thread(target=sender)
        t.start()
        stop_at.wait(60)
        milter.kill(signal.SIGKILL)
        time.sleep(1.0)
        milter.start()
        t.join(120)
        self.assertFalse(t.is_alive())
        self.assertEqual(len(accepted) + len(refused), total)
        for i in refused:  # the client's retry
            self.assertTrue(try_send(pf.port, i), "retry of %d refused" % i)
        msgs = sink.messages(wait_for=total, timeout=60)
        self.assertEqual(sorted(int(m.header("Subject").split()[1]) for m in msgs),
                         list(range(total)))
        self.assert_rewritten(msgs)

    def test_reload_applies_new_rules_and_refuses_bad_config(self):
        sink, milter, pf = self.start_milter_stack()
        self.assertTrue(try_send(pf.port, 1))
        # New rules: also strip X-Mailer.
        new_body = SEED_MILTER.replace("/^X-Originating-IP:/      IGNORE",
                                       "/^X-Originating-IP:/      IGNORE\n  /^Subject:/ "
                                       "REPLACE Subject: reloaded")
        self.reload(milter, new_body, "reload: configuration")
        self.assertTrue(try_send(pf.port, 2))
        # A bad config: refused, the reloaded one keeps serving.
        self.reload(milter, new_body.replace("IGNORE", "FROB"), "reload refused")
        self.assertIn("unknown header_checks action \"FROB\"", milter.stderr())
        self.assertTrue(try_send(pf.port, 3))
        msgs = sink.messages(wait_for=3)
        subjects = sorted(m.header("Subject") for m in msgs)
        self.assertEqual(subjects, ["msg 1", "reloaded", "reloaded"])
        self.assertTrue(milter.running())

    def start_faulty_stack(self, on_error):
        os.environ["RELAYKIT_MILTER_FAULT"] = "eom"
        try:
            return self.start_milter_stack(SEED_MILTER.replace("on_error: tempfail",
                                                               "on_error: " + on_error))
        finally:
            del os.environ["RELAYKIT_MILTER_FAULT"]

    def test_on_error_tempfail(self):
        sink, milter, pf = self.start_faulty_stack("tempfail")
        self.assertFalse(try_send(pf.port, 1), "accepted although the milter failed")
        self.assertIn("injected by RELAYKIT_MILTER_FAULT=eom); on_error=tempfail", milter.stderr())
        time.sleep(1)
        self.assertEqual(sink.count(), 0)
        milter.kill(signal.SIGTERM)
        milter.start()  # healthy now (the hook is not in its environment any more)
        self.assertTrue(try_send(pf.port, 1))  # the client's retry
        self.assert_rewritten(sink.messages(wait_for=1))

    def test_on_error_accept(self):
        sink, milter, pf = self.start_faulty_stack("accept")
        self.assertTrue(try_send(pf.port, 2))
        msgs = sink.messages(wait_for=1)
        self.assertEqual(msgs[0].sender, "root@relay.corp.local")  # passed unchanged
        self.assertIsNotNone(msgs[0].header("X-Originating-IP"))
        self.assertIn("on_error=accept", milter.stderr())

    def test_reload_adds_client_condition(self):
        # The seed rules need no client address, so sessions negotiate SMFIP_NOCONNECT; rules
        # loaded later that test the client must still see it on new sessions.
        sink, milter, pf = self.start_milter_stack()
        self.assertTrue(try_send(pf.port, 1))
        body = SEED_MILTER.replace("header_rules:\n", "header_rules:\n"
                                   "  - match: '^Subject:'\n    action: replace\n"
                                   "    with: 'Subject: from loopback'\n"
                                   "    when: {client: [127.0.0.0/8]}\n")
        self.reload(milter, body, "reload: configuration")
        self.assertTrue(try_send(pf.port, 2))
        msgs = sink.messages(wait_for=2)
        self.assertEqual(sorted(m.header("Subject") for m in msgs), ["from loopback", "msg 1"])
        self.assert_rewritten(msgs)

    def test_many_sessions(self):
        # (a short name: the unix socket path lives under the test's directory)
        sink, milter, pf = self.start_milter_stack(unix=True)
        source = "/usr/sbin/smtp-source"
        common = ["-f", "root@relay.corp.local", "-t", "ops@example.com", "-l", "2000",
                  "127.0.0.1:%d" % pf.port]
        # 30 sessions at once, one message each; then 3 connections carrying 20 messages each.
        subprocess.run([source, "-s", "30", "-m", "120"] + common, check=True, timeout=120,
                       capture_output=True)
        subprocess.run([source, "-d", "-s", "3", "-m", "60"] + common, check=True, timeout=120,
                       capture_output=True)
        msgs = sink.messages(wait_for=180, timeout=120)
        self.assertEqual(len(msgs), 180)
        for m in msgs:
            self.assertEqual(m.sender, "noreply@corp.com")
            self.assertIn("noreply@corp.com", m.header("From"))
        self.assertEqual(milter.stderr().count("from=<root@relay.corp.local> -> "
                                               "<noreply@corp.com>"), 180)
        with open("/proc/%d/status" % milter.proc.pid) as f:
            threads = int([ln for ln in f if ln.startswith("Threads:")][0].split()[1])
        # Idle session threads are kept for reuse, 64 at most; plus libmilter's and ours.
        self.assertLessEqual(threads, 64 + 10)
        self.assertTrue(milter.running())

    def test_max_sessions(self):
        sink, milter, pf = self.start_milter_stack("max_sessions: 2\n" + SEED_MILTER, unix=True)
        source = subprocess.Popen(
            ["/usr/sbin/smtp-source", "-s", "8", "-m", "40", "-l", "2000", "-f",
             "root@relay.corp.local", "-t", "ops@example.com", "127.0.0.1:%d" % pf.port],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        most = 0
        while source.poll() is None:
            with open("/proc/%d/status" % milter.proc.pid) as f:
                threads = int([ln for ln in f if ln.startswith("Threads:")][0].split()[1])
            most = max(most, threads)
            time.sleep(0.01)
        self.assertEqual(source.returncode, 0, source.stderr.read())
        msgs = sink.messages(wait_for=40, timeout=120)
        self.assertEqual(len(msgs), 40)
        for m in msgs:
            self.assertEqual(m.sender, "noreply@corp.com")
        self.assertIn("sessions busy (max_sessions)", milter.stderr())
        # Two session threads plus libmilter's own (listener, signal thread, its idle pool of
        # two and its controller) and relaykit's signal thread: far below the eight sessions'
        # worth a thread each would need on top.
        self.assertLessEqual(most, 2 + 6, "threads seen: %d" % most)

    def test_sigterm_stops_fast(self):
        sink, milter, pf = self.start_milter_stack()
        self.assertTrue(try_send(pf.port, 1))
        t0 = time.monotonic()
        rc = milter.kill(signal.SIGTERM)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertLess(elapsed, 1.5)


if __name__ == "__main__":
    harness.main()
