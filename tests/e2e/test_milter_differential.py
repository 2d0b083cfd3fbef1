#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_milter_differential.py: relaykit's header_checks against Postfix's own, same rules.

One private Postfix applies HEADER_CHECKS natively (header_checks = regexp:FILE); another sends the
same corpus through relaykit-milter configured with the same text. Both relay into their own
smtp-sink; for every message the headers must be identical (names, values, folding, order),
Postfix's own Received: line aside (native header_checks see it, a milter never does).
Header address rewriting is off in both (local_header_rewrite_clients empty), so what native
header_checks and the milter see is the same text.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from milter_fixtures import MilterTestCase  # noqa: E402

HEADER_CHECKS = r"""# strip trace headers
/^X-Originating-IP:/                       IGNORE
/^Received:.*\[10\.[0-9.]+\]/              IGNORE
/^Received:.*by internal\.corp\.local/     IGNORE
/^X-Mailer: (.*) \(([0-9.]+)\)$/           REPLACE X-Mailer: $1 version $2
/^Subject: \[SPAM\] (.*)/                  REPLACE Subject: $1
/^Subject:.*urgent/                        PREPEND X-Priority-Flag: urgent
/^X-Case: exact/i                          IGNORE
/^X-Warn:/                                 WARN flagged
/^X-Info:/                                 INFO seen
/^X-Keep-Me:/                              DUNNO
/^X-Keep-Me:/                              IGNORE
if /^X-Internal-/
/^X-Internal-Debug:/                       IGNORE
!/^X-Internal-Public:/                      REPLACE X-Internal: hidden
endif
/^X-Dollar: (.*)/                          REPLACE X-Dollar: $$1 and ${1}
/^Comments:.*line two/                     IGNORE
/^X-Latin: (.*) end$/                      REPLACE X-Latin: seen $1
/^X-Uni: café/                             IGNORE
/^X-Spacy:/                                PREPEND X-Added : spaced
/^X-Spacy-Replace:/                        REPLACE X-Replaced  : yes
/^X-Secret-Path:/                          REPLACE Return-Path: <hidden@corp.com>
/^Content-Description:/                    REPLACE Bcc: kept, a MIME header
/^X-Stack: a**b+?c/                        IGNORE
/^X-Space:a\sb/                            IGNORE
If /^X-Upper-/
/^X-Upper-Drop:/                           IGNORE
ENDIF
"""

CORPUS = [
    ["Received: from web1 (web1 [10.1.2.3])\n\tby relay; Mon, 1 Jan 2024",
     "Received: from mx (mx [192.0.2.1])\n\tby internal.corp.local; Mon, 1 Jan 2024",
     "Received: from ext (ext [198.51.100.7]) by gw; Mon, 1 Jan 2024",
     "X-Originating-IP: 10.1.2.3", "X-Originating-IP: [10.9.9.9]"],
    ["X-Mailer: Thunderbird (115.3.1)", "X-Mailer: plain mailer"],
    ["Subject: [SPAM] buy now"],
    ["Subject: this is urgent"],
    ["Subject: folded\n urgent line"],
    ["X-Case: exact", "X-Case: EXACT"],
    ["X-Warn: a", "X-Info: b", "X-Keep-Me: yes"],
    ["X-Internal-Debug: 1", "X-Internal-Public: 2", "X-Internal-Other: 3"],
    ["X-Dollar: cash"],
    ["Comments: line one\n\tline two", "Comments: just one line"],
    ["X-Long: " + ",\n\t".join("item%d" % i for i in range(300))],
    ["X-Originating-IP: 1.2.3.4", "X-Originating-IP: 5.6.7.8", "X-Originating-IP: 9.9.9.9"],
    ["Subject: =?UTF-8?Q?urgent_caf=C3=A9?="],
    ["X-Eight-Bit: caf\u00e9 cr\u00e8me"],
    # Found by explore_header_checks.py: regcomp runs in the C locale (a Latin-1 byte is a
    # character; case folding is ASCII only), "Name :" is a header to Postfix, cleanup drops a
    # REPLACE result named in message_drop_headers, keywords are case-insensitive, stacked
    # operators are one operator, \s includes \v, and Postfix has no header count limit.
    ["X-Latin: caf\udce9 end", "X-Uni: CAF\u00c9", "X-Uni: caf\u00e9 removed"],
    ["X-Spacy: 1", "X-Spacy-Replace: 2", "X-Secret-Path: 3", "Content-Description: 4"],
    ["X-Stack: aaabc", "X-Space:a\x0bb", "X-Upper-Drop: 5", "X-Upper-Keep: 6"],
    ["X-Originating-IP: 10.0.%d.%d" % (i // 256, i % 256) for i in range(2100)],
]


def build(i, extra):
    lines = ["From: sender%d@corp.com" % i, "To: rcpt@example.com"]
    lines += extra
    if not any(h.startswith("Subject:") for h in extra):
        lines.append("Subject: corpus %d" % i)
    lines += ["Message-ID: <corpus%d@test.invalid>" % i, "Date: Mon, 1 Jan 2024 00:00:00 +0000",
              "X-Corpus: %d" % i]
    return "\n".join(lines) + "\n\nbody %d\n" % i


class MilterDifferentialTest(MilterTestCase):
    def test_same_headers_as_native_header_checks(self):
        common = {"local_header_rewrite_clients": "", "nested_header_checks": ""}
        body = "header_checks: |\n" + "".join("  " + l + "\n" for l in HEADER_CHECKS.splitlines())
        sink_m, milter, pf_m = self.start_milter_stack(body, extra_main_cf=common)

        sink_n = self.start_sink("sink-native")
        hc_path = harness.write_file(os.path.join(self.tmp, "header_checks"), HEADER_CHECKS)
        native = dict(common, header_checks="regexp:" + hc_path)
        pf_n = self.start_postfix("native", relay_port=sink_n.port, extra_main_cf=native)

        for i, extra in enumerate(CORPUS):
            msg = build(i, extra).encode("utf-8", errors="surrogateescape")
            self.send(pf_m, "s@corp.com", ["rcpt@example.com"], msg)
            self.send(pf_n, "s@corp.com", ["rcpt@example.com"], msg)
        got_m = {m.header("X-Corpus"): m for m in sink_m.messages(wait_for=len(CORPUS))}
        got_n = {m.header("X-Corpus"): m for m in sink_n.messages(wait_for=len(CORPUS))}
        self.assertEqual(len(got_m), len(CORPUS))
        for key in sorted(got_n, key=int):
            native_headers = got_n[key].raw_headers[1:]  # Postfix's own Received: aside
            milter_headers = got_m[key].raw_headers[1:]
            self.assertIn("(Postfix)", got_n[key].raw_headers[0][1])
            self.assertIn("(Postfix)", got_m[key].raw_headers[0][1])
            self.assertEqual(milter_headers, native_headers, "corpus message %s" % key)
        # The rules really acted (not two untouched copies).
        self.assertEqual(got_m["1"].header_all("X-Mailer"),
                         ["Thunderbird version 115.3.1", "plain mailer"])
        self.assertEqual(got_m["0"].header_all("Received")[1:],
                         ["from ext (ext [198.51.100.7]) by gw; Mon, 1 Jan 2024"])
        self.assertEqual(got_m["9"].header_all("Comments"), ["just one line"])
        self.assertEqual(got_m["8"].header("X-Dollar"), "$1 and cash")
        self.assertEqual(got_m["14"].header_all("X-Latin"), ["seen caf\udce9"])
        self.assertEqual(got_m["14"].header_all("X-Uni"), ["CAF\u00c9"])
        self.assertEqual([n for n, _ in got_m["15"].raw_headers if n.startswith(("X-A", "X-S", "X-R", "Bcc"))],
                         ["X-Added ", "X-Spacy", "X-Replaced  ", "Bcc"])
        self.assertEqual(got_m["16"].header_all("X-Upper-Keep"), ["6"])
        self.assertIsNone(got_m["16"].header("X-Stack"))
        self.assertIsNone(got_m["16"].header("X-Space"))
        self.assertIsNone(got_m["17"].header("X-Originating-IP"))


if __name__ == "__main__":
    harness.main()
