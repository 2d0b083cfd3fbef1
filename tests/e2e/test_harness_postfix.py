#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_harness_postfix.py: self-test of the e2e harness with no relaykit at all.

A private Postfix relays to smtp-sink; the test checks that the harness sees exactly what was sent
(envelope, headers in order with folding, body) on both submission paths (SMTP and sendmail),
that mail to a dead smarthost is deferred and delivered once it is back, that postmap_q reads
native tables, and that the socketmap client and Postfix agree on the wire format (a tiny Python
socketmap server stands in for relaykit-socketmapd).
"""

import os
import socketserver
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class TinySocketmap(socketserver.ThreadingTCPServer):
    """A netstring socketmap server answering from a dict: {(name, key): reply}."""
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, answers):
        self.answers = answers
        self.seen = []
        super().__init__(("127.0.0.1", 0), _SocketmapHandler)


class _SocketmapHandler(socketserver.BaseRequestHandler):
    def handle(self):
        buf = b""
        while True:
            while b":" not in buf:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                buf += chunk
            n, _, rest = buf.partition(b":")
            n = int(n)
            while len(rest) < n + 1:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                rest += chunk
            req, buf = rest[:n].decode(), rest[n + 1:]
            name, _, key = req.partition(" ")
            self.server.seen.append((name, key))
            reply = self.server.answers.get((name, key), "NOTFOUND ")
            self.request.sendall(harness.netstring(reply))


class HarnessPostfixTest(harness.E2ETestCase):
    def test_smtp_submission_reaches_sink_intact(self):
        sink = self.start_sink("sink")
        pf = self.start_postfix(relay_port=sink.port)
        msg = ("From: Alice Example <alice@example.org>\n"
               "To: bob@example.net, carol@example.net\n"
               "Subject: harness self-test\n"
               "X-Folded: first part\n"
               "\tsecond part\n"
               "\n"
               "line one\n"
               "line two\n")
        refused = harness.send_smtp(pf.port, "alice@example.org",
                                    ["bob@example.net", "carol@example.net"], msg)
        self.assertEqual(refused, {})
        [m] = sink.messages(wait_for=1)
        self.assertEqual(m.sender, "alice@example.org")
        self.assertEqual(sorted(m.recipients), ["bob@example.net", "carol@example.net"])
        self.assertEqual(m.header("From"), "Alice Example <alice@example.org>")
        self.assertEqual(m.header("Subject"), "harness self-test")
        self.assertEqual(m.header("X-Folded"), "first part second part")
        self.assertIn(("X-Folded", " first part\n\tsecond part"), m.raw_headers)
        names = [n for n, _ in m.headers]
        # Postfix prepends its Received:; the sink's own Received: is not part of the message.
        self.assertEqual(names[0], "Received")
        self.assertEqual(names.count("Received"), 1, m.raw_headers)
        self.assertLess(names.index("From"), names.index("To"))
        self.assertLess(names.index("To"), names.index("Subject"))
        self.assertEqual(m.body, "line one\nline two")
        pf.wait_queue_empty()
        self.assertRegex(pf.maillog(), r"status=sent")

    def test_sendmail_and_null_sender(self):
        sink = self.start_sink("sink")
        pf = self.start_postfix(relay_port=sink.port)
        pf.sendmail(harness.make_message("root", "ops@example.net", "via sendmail"),
                    "root@relay.test.invalid", ["ops@example.net"])
        pf.sendmail(harness.make_message("MAILER-DAEMON", "ops@example.net", "null sender"),
                    "", ["ops@example.net"])
        msgs = sink.messages(wait_for=2)
        self.assertEqual(len(msgs), 2)
        by_subject = {m.header("Subject"): m for m in msgs}
        self.assertEqual(by_subject["via sendmail"].sender, "root@relay.test.invalid")
        # Postfix qualifies the bare From: header with myorigin.
        self.assertEqual(by_subject["via sendmail"].header("From"), "root@relay.test.invalid")
        self.assertEqual(by_subject["null sender"].sender, "")
        self.assertEqual(by_subject["null sender"].recipients, ["ops@example.net"])

    def test_dead_smarthost_defers_then_delivers(self):
        port = harness.free_port()
        pf = self.start_postfix(relay_port=port)
        harness.send_smtp(pf.port, "a@example.org", ["b@example.net"],
                          harness.make_message("a@example.org", "b@example.net", "deferred"))
        pf.wait_queued(1, status="deferred")
        self.assertNotRegex(pf.maillog(), r"status=bounced")
        sink = self.start_sink("late", port=port)
        pf.flush()
        [m] = sink.messages(wait_for=1)
        self.assertEqual(m.header("Subject"), "deferred")
        pf.wait_queue_empty()

    def test_two_sinks_by_transport_map(self):
        a = self.start_sink("a")
        b = self.start_sink("b")
        pf = self.start_postfix(relay_port=a.port)
        tmap = harness.write_file(os.path.join(pf.etc, "transport"),
                                  "example.net smtp:[127.0.0.1]:%d\n" % b.port)
        pf.postmap(tmap)
        pf.set_params({"transport_maps": "hash:" + tmap})
        self.assertEqual(pf.postmap_q("example.net", "hash:" + tmap),
                         "smtp:[127.0.0.1]:%d" % b.port)
        self.assertIsNone(pf.postmap_q("example.org", "hash:" + tmap))
        harness.send_smtp(pf.port, "x@example.org", ["y@example.net"],
                          harness.make_message("x@example.org", "y@example.net", "to b"))
        harness.send_smtp(pf.port, "x@example.org", ["y@example.com"],
                          harness.make_message("x@example.org", "y@example.com", "to a"))
        self.assertEqual([m.header("Subject") for m in b.messages(wait_for=1)], ["to b"])
        self.assertEqual([m.header("Subject") for m in a.messages(wait_for=1)], ["to a"])

    def test_socketmap_client_and_postfix_agree(self):
        server = TinySocketmap({("generic", "John.Doe+x@Example.COM"): "OK jd@example.com",
                                ("generic", '"john doe"@corp.local'): "OK jd2@example.com",
                                ("generic", "bad"): "TEMP try later"})
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        port = server.server_address[1]
        self.assertEqual(harness.socketmap_query(port, "generic", "John.Doe+x@Example.COM"),
                         ("OK", "jd@example.com"))
        self.assertEqual(harness.socketmap_query(port, "generic", "nobody"), ("NOTFOUND", ""))
        with harness.SocketmapClient(port) as c:
            self.assertEqual(c.query("generic", "bad"), ("TEMP", "try later"))
            self.assertEqual(c.query("generic", '"john doe"@corp.local'),
                             ("OK", "jd2@example.com"))
        sink = self.start_sink("sink")
        pf = self.start_postfix(relay_port=sink.port)
        table = "socketmap:inet:127.0.0.1:%d:generic" % port
        # Keys reach the server in their original case, quoted localparts quoted.
        self.assertEqual(pf.postmap_q("John.Doe+x@Example.COM", table), "jd@example.com")
        self.assertEqual(pf.postmap_q('"john doe"@corp.local', table), "jd2@example.com")
        self.assertIsNone(pf.postmap_q("other@example.com", table))
        with self.assertRaises(RuntimeError):
            pf.postmap_q("bad", table)


if __name__ == "__main__":
    harness.main()
