#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_milter_reference.py: relaykit-milter against a milter built on libmilter, same edits.

tests/tools/reference_milter.cc makes with libmilter's own engine (smfi_chgheader, smfi_insheader,
smfi_chgfrom) the edits that relaykit-milter makes with REFERENCE_RULES: X-Originating-IP removed,
X-Seen: yes prepended before X-Tag, the From address and the envelope sender rewritten through the
same exact table. Two private Postfix instances, one per milter, get the same SMTP sessions
(several messages per session, ESMTP arguments, the null sender, unrelated senders) and the same
sendmail(1) submissions (non_smtpd_milters); the delivered messages must be identical: envelope
sender, recipients and their arguments, every header with its folding, Postfix's own Received:
line aside (it names the instance's queue id).
"""

import os
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from milter_fixtures import MilterTestCase  # noqa: E402

REFERENCE_RULES = """\
on_error: tempfail
header_checks: |
  /^X-Originating-IP:/   IGNORE
  /^X-Tag:/              PREPEND X-Seen: yes
rewrite_from:
  table: generic
  headers: [From]
rewrite_sender:
  table: canonical
"""


def message(key, headers, body="body"):
    lines = ["Message-ID: <ref%s@test.invalid>" % key, "Date: Mon, 1 Jan 2024 00:00:00 +0000",
             "X-Corpus: %s" % key] + headers
    return "\r\n".join(lines) + "\r\n\r\n" + body + "\r\n"


# (sender, ESMTP options, header lines) per message; each inner list is one SMTP session.
SESSIONS = [
    [("root@relay.corp.local", [], ["From: Root <root@relay.corp.local>", "Subject: one",
                                    "X-Originating-IP: [10.1.2.3]"])],
    [("cron@relay.corp.local", ["RET=HDRS", "ENVID=abc123"],
      ["From: cron@relay.corp.local", "X-Tag: t1", "Subject: two", "X-Originating-IP: 1.1.1.1",
       "X-Originating-IP: 2.2.2.2"]),
     ("someone@partner.example", [], ["From: Someone <someone@partner.example>",
                                      "X-Tag: keep", "Subject: three"]),
     ("", [], ["From: MAILER-DAEMON <root@relay.corp.local>", "Subject: bounce"])],
    [("nagios@relay.corp.local", ["RET=FULL"],
      ["Received: from web1 (web1 [10.9.9.9])\r\n\tby relay; Mon, 1 Jan 2024",
       "From: Nagios\r\n <nagios@relay.corp.local>", "X-Tag: a", "X-Tag: b",
       "Subject: folded\r\n\tsubject", "X-Originating-IP: 3.3.3.3"])],
]

SENDMAIL = [
    ("root@relay.corp.local", ["From: Root <root@relay.corp.local>", "Subject: local one",
                               "X-Originating-IP: 4.4.4.4", "X-Tag: local"]),
    ("cron@relay.corp.local", ["From: Cron Daemon <cron@relay.corp.local>", "Subject: cron"]),
]


def send_session(port, msgs):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.test.invalid")
        for key, sender, options, headers in msgs:
            refused = s.sendmail(sender, ["ops@example.com"], message(key, headers).encode(),
                                 mail_options=options)
            assert not refused, refused


class MilterReferenceTest(MilterTestCase):
    def start_reference(self, sink):
        port = harness.free_port()
        binary = os.path.join(harness.build_dir(), "tests", "reference_milter")
        err = open(os.path.join(self.tmp, "reference_milter.stderr"), "w")
        proc = subprocess.Popen([binary, "inet:%d@127.0.0.1" % port], stdout=err, stderr=err,
                                stdin=subprocess.DEVNULL)
        self.addCleanup(err.close)
        self.addCleanup(harness.stop_process, proc)
        harness.wait_port(port, proc=proc, what="reference_milter")
        spec = "inet:127.0.0.1:%d" % port
        return self.start_postfix("reference", relay_port=sink.port, extra_main_cf={
            "smtpd_milters": spec, "non_smtpd_milters": spec,
            "milter_default_action": "tempfail", "milter_protocol": "6"})

    def test_same_delivered_messages_as_libmilter_reference(self):
        sink_r, milter, pf_r = self.start_milter_stack(REFERENCE_RULES)
        sink_l = self.start_sink("sink-reference")
        pf_l = self.start_reference(sink_l)

        total = 0
        for n, session in enumerate(SESSIONS):
            msgs = [("%d.%d" % (n, i), s, o, h) for i, (s, o, h) in enumerate(session)]
            send_session(pf_r.port, msgs)
            send_session(pf_l.port, msgs)
            total += len(msgs)
        for i, (sender, headers) in enumerate(SENDMAIL):
            text = message("sendmail.%d" % i, headers)
            pf_r.sendmail(text, sender, ["ops@example.com"])
            pf_l.sendmail(text, sender, ["ops@example.com"])
            total += 1

        got_r = {m.header("X-Corpus"): m for m in sink_r.messages(wait_for=total, timeout=60)}
        got_l = {m.header("X-Corpus"): m for m in sink_l.messages(wait_for=total, timeout=60)}
        self.assertEqual(sorted(got_r), sorted(got_l))
        self.assertEqual(len(got_r), total)
        for key in sorted(got_l):
            r, l = got_r[key], got_l[key]
            self.assertEqual((r.sender, r.recipients, r.rcpt_args),
                             (l.sender, l.recipients, l.rcpt_args), key)
            self.assertEqual(r.raw_headers[1:], l.raw_headers[1:], key)
            self.assertEqual(r.body, l.body, key)
        # The edits really happened (not two untouched copies).
        self.assertEqual(got_r["0.0"].sender, "noreply@corp.com")
        self.assertEqual(got_r["0.0"].header("From"), "Root <noreply@corp.com>")
        self.assertIsNone(got_r["1.0"].header("X-Originating-IP"))
        self.assertEqual(got_r["2.0"].header_all("X-Seen"), ["yes", "yes"])
        self.assertEqual(got_r["sendmail.1"].sender, "cron@corp.com")
        self.assertEqual(got_r["1.2"].sender, "")


if __name__ == "__main__":
    harness.main()
