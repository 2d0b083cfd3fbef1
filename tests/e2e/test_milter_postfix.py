#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_milter_postfix.py: relaykit-milter behind a real private Postfix, into smtp-sink.

Covers each rule kind (header_checks IGNORE/REPLACE/PREPEND/WARN/INFO/DUNNO, if/endif, $n;
header_rules remove/replace/prepend), each `when` condition Postfix can exercise here (sender,
recipient any/all, client, authenticated false, helo, not), From rewriting with display names,
encoded words, groups and several From headers, envelope sender rewriting with RET/ENVID kept,
the null sender untouched, folded, 8-bit and very long headers, both listeners (inet, unix) and
both submission paths (smtpd_milters via SMTP, non_smtpd_milters via sendmail -C).
"""

import json
import os
import re
import shutil
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from milter_fixtures import SEED_MILTER, MilterTestCase  # noqa: E402

SEED_MESSAGE = (
    "Received: from web1.corp.local (web1 [10.1.2.3])\n\tby relay.corp.local; Mon, 1 Jan 2024\n"
    "Received: from app (localhost\n\t[127.0.0.1]) by srv1.corp.local; Mon, 1 Jan 2024\n"
    "X-Originating-IP: 10.1.2.3\n"
    "From: Root User <root@relay.corp.local>\n"
    "To: ops@example.com\n"
    "Subject: seed\n"
    "X-Originating-IP: 10.9.9.9\n"
    "Message-ID: <seed@relay.corp.local>\n"
    "\n"
    "body\n")


class MilterPostfixTest(MilterTestCase):
    def check_seed_result(self, m):
        names = [n for n, _ in m.headers]
        self.assertNotIn("X-Originating-IP", names)
        received = m.header_all("Received")
        # Postfix's own Received (invisible to the milter) stays first; the internal one from
        # localhost (matched across the fold) is gone; the other one stays.
        self.assertEqual(len(received), 2, received)
        self.assertIn("(Postfix", received[0])
        self.assertIn("web1.corp.local", received[1])
        self.assertEqual(m.header("From"), "Root User <noreply@corp.com>")
        self.assertEqual(m.sender, "noreply@corp.com")
        self.assertEqual(m.body.strip(), "body")

    def test_seed_rules_over_inet_smtp(self):
        sink, milter, pf = self.start_milter_stack()
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
            s.ehlo("client.test.invalid")
            s.sendmail("root@relay.corp.local", ["ops@example.com"],
                       SEED_MESSAGE.replace("\n", "\r\n").encode(),
                       mail_options=["RET=HDRS", "ENVID=seed-42"])
        m = self.one_message(sink)
        self.check_seed_result(m)
        self.assertIn("RET=HDRS", m.mail_args)
        self.assertIn("ENVID=seed-42", m.mail_args)
        log = harness.wait_until(
            lambda: [l for l in milter.stderr().splitlines() if "from=<root@" in l], 10, "log")
        self.assertRegex(log[0], r"[0-9A-F]+: from=<root@relay\.corp\.local> -> "
                                 r"<noreply@corp\.com>, header Received removed, "
                                 r"header X-Originating-IP removed \(x2\), header From "
                                 r"<root@relay\.corp\.local> -> <noreply@corp\.com>")
        self.assertNotIn("Ignoring bad ESMTP parameter", pf.maillog())

    def test_seed_rules_over_unix_socket(self):
        sink, milter, pf = self.start_milter_stack(unix=True)
        self.send(pf, "root@relay.corp.local", ["ops@example.com"], SEED_MESSAGE)
        self.check_seed_result(self.one_message(sink))

    def test_unneeded_macro_stages_sent_empty(self):
        # Where relaykit-milter reads no macro it asks for one Postfix never defines: Postfix
        # still sends that stage's macro packet, empty, instead of its default macros. A proxy
        # between Postfix and the milter records what Postfix sends.
        proxy = socket.socket()
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(8)
        self.addCleanup(proxy.close)
        target = {}
        recorded = []

        def pump(src, dst, keep):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    if keep is not None:
                        keep.extend(data)
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        def serve():
            while True:
                try:
                    client, _ = proxy.accept()
                except OSError:
                    return  # the test is over
                upstream = socket.create_connection(("127.0.0.1", target["port"]), timeout=30)
                recorded.append(bytearray())
                for args in ((client, upstream, recorded[-1]), (upstream, client, None)):
                    threading.Thread(target=pump, args=args, daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        spec = "inet:127.0.0.1:%d" % proxy.getsockname()[1]
        sink, milter, pf = self.start_milter_stack(
            extra_main_cf={"smtpd_milters": spec, "non_smtpd_milters": spec})
        with open(self.config_path) as f:
            target["port"] = int(re.search(r"inet:127\.0\.0\.1:(\d+)", f.read()).group(1))
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
            s.ehlo("client.test.invalid")
            s.sendmail("root@relay.corp.local", ["ops@example.com"],
                       SEED_MESSAGE.replace("\n", "\r\n").encode())
        self.check_seed_result(self.one_message(sink))
        # The session that carried the message (the harness's readiness probe made one before).
        data = next(bytes(r) for r in recorded if b"M<root@relay.corp.local>" in r)
        macros = {}
        pos = 0
        while pos + 5 <= len(data):
            length = struct.unpack(">I", data[pos:pos + 4])[0]
            command, body = data[pos + 4:pos + 5], data[pos + 5:pos + 4 + length]
            pos += 4 + length
            if command == b"D":
                macros[body[:1]] = body[1:]
        # SMFIC_CONNECT, HELO, MAIL (no {auth_authen} without SASL), RCPT, DATA: empty (no
        # end-of-header packet at all: SMFIP_NOEOH); end of message: the queue ID.
        for stage in (b"C", b"H", b"M", b"R", b"T"):
            self.assertEqual(macros.get(stage), b"", (stage, macros))
        self.assertRegex(macros[b"E"], rb"^i\x00[0-9A-F]+\x00$")
        self.assertEqual([line for line in pf.maillog().splitlines()
                          if "warning" in line and "milter" in line], [])

    def test_sendmail_path_uses_non_smtpd_milters(self):
        sink, milter, pf = self.start_milter_stack()
        pf.sendmail(SEED_MESSAGE, "root@relay.corp.local", ["ops@example.com"])
        m = self.one_message(sink)
        self.check_seed_result(m)


    def test_localhost_from_and_null_sender(self):
        sink, milter, pf = self.start_milter_stack()
        msg = harness.make_message("Daemon <daemon@localhost>", "ops@example.com", "bounce")
        self.send(pf, "", ["ops@example.com"], msg)
        m = self.one_message(sink)
        self.assertEqual(m.sender, "")
        self.assertEqual(m.header("From"), '"Server Notifications" <noreply@corp.com>')

    def test_header_checks_actions_in_postfix_syntax(self):
        body = """\
header_checks: |
  /^X-Mailer: (.*)/        REPLACE X-Mailer: relaykit (was $1)
  /^Subject:/              PREPEND X-Subject-Seen: yes
  /^X-Warn:/               WARN looks odd
  /^X-Info:/               INFO noted
  /^X-Keep:/               DUNNO
  /^X-Keep:/               IGNORE
  if /^X-Internal-/
  /secret/                 IGNORE
  endif
"""
        sink, milter, pf = self.start_milter_stack(body)
        msg = harness.make_message("a@corp.com", "b@example.com", "actions", extra_headers=[
            ("X-Mailer", "mutt 2.2"), ("X-Warn", "w"), ("X-Info", "i"), ("X-Keep", "k"),
            ("X-Internal-A", "secret stuff"), ("X-Internal-B", "public")])
        self.send(pf, "a@corp.com", ["b@example.com"], msg)
        m = self.one_message(sink)
        names = [n for n, _ in m.headers]
        self.assertEqual(m.header("X-Mailer"), "relaykit (was mutt 2.2)")
        self.assertEqual(names[names.index("Subject") - 1], "X-Subject-Seen")
        self.assertEqual(m.header("X-Keep"), "k")
        self.assertNotIn("X-Internal-A", names)
        self.assertEqual(m.header("X-Internal-B"), "public")
        err = harness.wait_until(lambda: "noted" in milter.stderr() and milter.stderr(), 10, "log")
        # No rule needs recipients, so RCPT is not negotiated and the line has no to=<>.
        self.assertIn("warning: header X-Warn: w; from=<a@corp.com>: looks odd", err)
        self.assertIn("info: header X-Info: i", err)

    def test_header_rules_conditions(self):
        body = """\
header_rules:
  - match: '^X-Sender-Cond:'
    action: remove
    when: {sender: '@relay\\.corp\\.local$'}
  - match: '^X-Rcpt-Any:'
    action: remove
    when: {recipient: '@partner\\.com$'}
  - match: '^X-Rcpt-All:'
    action: remove
    when: {recipient: {all: '@partner\\.com$'}}
  - match: '^X-Client-Local:'
    action: remove
    when: {client: [127.0.0.0/8]}
  - match: '^X-Client-Ten:'
    action: remove
    when: {client: [10.0.0.0/8]}
  - match: '^X-Unauth:'
    action: remove
    when: {authenticated: false}
  - match: '^X-Auth:'
    action: remove
    when: {authenticated: true}
  - match: '^X-Helo:'
    action: replace
    with: 'X-Helo: matched'
    when: {helo: '^client\\.test\\.invalid$'}
  - match: '^X-Not-Ten:'
    action: prepend
    with: 'X-Not-Ten-Seen: yes'
    when: {not: {client: [10.0.0.0/8]}}
"""
        sink, milter, pf = self.start_milter_stack(body)
        extra = [(n, "1") for n in ("X-Sender-Cond", "X-Rcpt-Any", "X-Rcpt-All", "X-Client-Local",
                                    "X-Client-Ten", "X-Unauth", "X-Auth", "X-Helo",
                                    "X-Not-Ten")]
        # 1: internal sender, mixed recipients.
        self.send(pf, "app@relay.corp.local", ["x@partner.com", "y@example.com"],
                  harness.make_message("app@relay.corp.local", "x@partner.com", "one",
                                       extra_headers=extra))
        # 2: other sender, only partner recipients.
        self.send(pf, "user@corp.com", ["x@partner.com"],
                  harness.make_message("user@corp.com", "x@partner.com", "two",
                                       extra_headers=extra))
        msgs = sink.messages(wait_for=2)
        by_subject = {m.header("Subject"): m for m in msgs}
        one, two = by_subject["one"], by_subject["two"]
        names1 = [n for n, _ in one.headers]
        names2 = [n for n, _ in two.headers]
        self.assertNotIn("X-Sender-Cond", names1)
        self.assertIn("X-Sender-Cond", names2)
        self.assertNotIn("X-Rcpt-Any", names1)
        self.assertIn("X-Rcpt-All", names1)
        self.assertNotIn("X-Rcpt-All", names2)
        for names in (names1, names2):
            self.assertNotIn("X-Client-Local", names)
            self.assertIn("X-Client-Ten", names)
            self.assertNotIn("X-Unauth", names)
            self.assertIn("X-Auth", names)
            self.assertIn("X-Not-Ten-Seen", names)
        self.assertEqual(one.header("X-Helo"), "matched")

    def test_from_names_encoded_words_several(self):
        body = SEED_MILTER.replace("headers: [From]", "headers: [From, Reply-To, Sender]")
        sink, milter, pf = self.start_milter_stack(body)
        msg = ("From: =?UTF-8?Q?J=C3=B6rg_Root?= <root@relay.corp.local>,\n"
               "\t\"Cron, Daily\" <cron@relay.corp.local> (the cron)\n"
               "From: app@srv12.corp.local (App)\n"
               "Sender: nagios@relay.corp.local\n"
               "Reply-To: Team: root@relay.corp.local, x@example.org;\n"
               "To: ops@example.com\n"
               "Subject: from\n"
               "Message-ID: <from@test>\n\nbody\n")
        self.send(pf, "root@relay.corp.local", ["ops@example.com"], msg)
        m = self.one_message(sink)
        froms = [v for n, v in m.raw_headers if n == "From"]
        self.assertEqual(froms, [" =?UTF-8?Q?J=C3=B6rg_Root?= <noreply@corp.com>,\n"
                                 "\t\"Cron, Daily\" <cron@corp.com> (the cron)",
                                 " app@corp.com (App)"])
        self.assertEqual(m.header("Sender"), "alerts@corp.com")
        self.assertEqual(m.header("Reply-To"), "Team: noreply@corp.com, x@example.org;")
        self.assertEqual(m.header("To"), "ops@example.com")

    def test_postfix_address_forms_in_headers_and_sender(self):
        # Found by tests/e2e/explore_rewrite_from.py against Postfix's own canonical/generic
        # maps: a rewritten address loses its obsolete source route and keeps the comments from
        # inside its addr-spec (behind it, as Postfix writes them); "a@b@x" has the localpart
        # "a@b"; a missing comma and a stray ';' do not stop the rewrite; the envelope sender is
        # looked up as cleanup would (route, pointless quotes and trailing dot dropped).
        # Also: two words with nothing between them are two addresses ("Name root@x" is "Name"
        # and "root@x") and a '>' after a bare address is ignored, as Postfix reads them; when a
        # header is rewritten, ", " goes where such a separator was missing, as Postfix's
        # smtp_generic_maps and canonical_maps write it ("Name, R@x", "<R@x>, x@y").
        body = SEED_MILTER.replace("headers: [From]",
                                   "headers: [From, Reply-To, Sender, Resent-From, Resent-Sender]")
        # As for a remote client: Postfix's cleanup does not rewrite headers before the milter.
        sink, milter, pf = self.start_milter_stack(
            body, extra_main_cf={"local_header_rewrite_clients": ""})
        msg = ("From: Jo <@a.example,@b.example:root(ops)@relay.corp.local> (team),"
               " cron@relay.corp.local;\n"
               "Reply-To: <nagios@relay.corp.local> x@example.org\n"
               "Sender: a@b@srv3.corp.local\n"
               "Resent-From: Name cron@relay.corp.local\n"
               "Resent-Sender: root@relay.corp.local>\n"
               "To: ops@example.com\nSubject: forms\nMessage-ID: <forms@test>\n\nbody\n")
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
            s.ehlo("client.test.invalid")
            code, _ = s.docmd("MAIL", 'FROM:<@a.example,@b.example:"root"@relay.corp.local.>')
            self.assertEqual(code, 250)
            self.assertEqual(s.rcpt("ops@example.com")[0], 250)
            self.assertEqual(s.data(msg.replace("\n", "\r\n").encode())[0], 250)
        m = self.one_message(sink)
        self.assertEqual(m.header("From"), "Jo <noreply@corp.com (ops)> (team), cron@corp.com;")
        self.assertEqual(m.header("Reply-To"), "<alerts@corp.com>, x@example.org")
        self.assertEqual(m.header("Sender"), '"a@b"@corp.com')
        self.assertEqual(m.header("Resent-From"), "Name, cron@corp.com")
        self.assertEqual(m.header("Resent-Sender"), "noreply@corp.com>")
        self.assertEqual(m.sender, "noreply@corp.com")

    def test_table_results_read_as_postfix_reads_them(self):
        # Found by tests/e2e/explore_rewrite_from.py: to Postfix a generic(5)/canonical(5)
        # result is an address list (mail_addr_map): a display name, comments and a route are
        # dropped, the first of several addresses is used (with a note in the log), a bare
        # localpart gets @myorigin, one trailing dot goes, "<>" is the empty address (a null
        # sender, "" in a header) and a result holding no address defers the mail. The same table through Postfix's own
        # canonical_maps (headers too: local_header_rewrite_clients = static:all) and through
        # relaykit's rewrite_sender and rewrite_from, message by message.
        entries = {
            "display@relay.corp.local": "Display Name <shown@corp.com>",
            "multi@relay.corp.local": "first@corp.com, second@corp.com",
            "bare@relay.corp.local": "justlocal",
            "route@relay.corp.local": "<@x.example:routed@corp.com> (c)",
            "trail@relay.corp.local": "t@corp.com.",
            "quoted@relay.corp.local": '"first last"@corp.com',
            "bang@relay.corp.local": "host!buser",
            "atat@relay.corp.local": "a@b@corp.com",
            "dot@relay.corp.local": "dot.@corp.com",
            "upper@relay.corp.local": "Mixed.Case@Corp.COM",
            "empty@relay.corp.local": "<>",
            "emptyfirst@relay.corp.local": "<>, later@corp.com",
            "nonaddr@relay.corp.local": "(no address)",
        }
        common = {"myorigin": "relay.corp.local", "mydestination": "relay.corp.local, localhost"}
        native_path = harness.write_file(os.path.join(self.subdir("native"), "odd"),
                                         "".join("%s\t%s\n" % kv for kv in entries.items()))
        native_sink = self.start_sink("native-sink")
        native = self.start_postfix("native", relay_port=native_sink.port, extra_main_cf=dict(
            common, canonical_maps="texthash:" + native_path,
            local_header_rewrite_clients="static:all"))
        quoted = "".join("\n          %s: %s" % (k, json.dumps(v)) for k, v in entries.items())
        port = harness.free_port()
        yaml_path = harness.write_file(os.path.join(self.tmp, "odd.yaml"), (
            "postfix:\n  local_domains: [relay.corp.local, localhost]\n"
            "  smtputf8_enable: false\n"
            "tables:\n  odd:\n    search: address\n    sources:\n      - entries:" + quoted +
            "\nmilter:\n  listen: inet:127.0.0.1:%d\n  on_error: tempfail\n"
            "  rewrite_from:\n    table: odd\n    headers: [From]\n"
            "  rewrite_sender:\n    table: odd\n" % port))
        milter = self.start_daemon("relaykit-milter", yaml_path, port=port)
        relaykit_sink = self.start_sink("relaykit-sink")
        relaykit = self.start_postfix("relaykit", relay_port=relaykit_sink.port, extra_main_cf=dict(
            common, smtpd_milters="inet:127.0.0.1:%d" % port, milter_default_action="tempfail",
            milter_protocol="6", local_header_rewrite_clients=""))

        def send(pf, sender):
            msg = ("From: Ops <%s>\nTo: ops@example.com\nSubject: %s\nMessage-ID: <%s@t>\n\n"
                   "body\n" % (sender, sender, sender.split("@")[0]))
            try:
                harness.send_smtp(pf.port, sender, ["ops@example.com"], msg)
                return "ok"
            except smtplib.SMTPDataError as e:
                return "refused %d" % e.smtp_code

        expected = len(entries) - 1
        for sender in entries:
            answers = [send(pf, sender) for pf in (native, relaykit)]
            if sender.startswith("nonaddr"):
                self.assertEqual([a[:10] for a in answers], ["refused 45"] * 2, answers)
            else:
                self.assertEqual(answers, ["ok", "ok"], sender)
        got = [{m.header("Subject"): m for m in sink.messages(wait_for=expected)}
               for sink in (native_sink, relaykit_sink)]
        for sender in entries:
            if sender.startswith("nonaddr"):
                continue
            want, have = got[0][sender], got[1][sender]
            self.assertEqual(have.sender, want.sender, sender)
            self.assertEqual(re.sub(r"\s+", " ", have.header("From")),
                             re.sub(r"\s+", " ", want.header("From")), sender)
        self.assertEqual(got[1]["empty@relay.corp.local"].sender, "")
        self.assertEqual(got[1]["multi@relay.corp.local"].sender, "first@corp.com")
        # Postfix warns of a multi-valued entry; relaykit logs a note the first time.
        harness.wait_until(
            lambda: "returns 2 addresses for <multi@relay.corp.local>" in milter.stderr(), 10,
            "the multi-valued note in the milter's log")

    def test_unparsable_header_untouched(self):
        # Postfix itself repairs From/To/Reply-To of local clients before milters see them, so
        # use a header only relaykit parses.
        body = SEED_MILTER.replace("headers: [From]", "headers: [From, X-Original-From]")
        sink, milter, pf = self.start_milter_stack(body)
        msg = ("From: root@relay.corp.local\nX-Original-From: Broken <root@relay.corp.local\n"
               "To: ops@example.com\nSubject: broken\nMessage-ID: <b@test>\n\nbody\n")
        self.send(pf, "user@corp.com", ["ops@example.com"], msg)
        m = self.one_message(sink)
        self.assertEqual(m.header("X-Original-From"), "Broken <root@relay.corp.local")
        self.assertEqual(m.header("From"), "noreply@corp.com")
        harness.wait_until(lambda: "header X-Original-From left unchanged" in milter.stderr(),
                           10, "log")

    def test_folded_8bit_and_very_long_headers(self):
        sink, milter, pf = self.start_milter_stack()
        long_to = ",\n\t".join("user%d@example.com" % i for i in range(1500))  # ~30 KB
        msg = ("From: J\u00f6rg R\u00f6\u00f6t <root@relay.corp.local>\n"
               "To: " + long_to + "\n"
               "Subject: =?ISO-8859-1?Q?caf=E9?= and 8-bit caf\u00e9\n"
               "X-Originating-IP: 10.0.0.1\n"
               "Message-ID: <long@test>\n\nbody\n").encode("utf-8")
        self.send(pf, "root@relay.corp.local", ["ops@example.com"], msg)
        m = self.one_message(sink)
        self.assertIn("<noreply@corp.com>", m.header("From"))
        self.assertTrue(m.header("From").startswith("J"))
        self.assertNotIn("root@", m.header("From"))
        self.assertIsNone(m.header("X-Originating-IP"))
        self.assertEqual(m.header("To").count("@example.com"), 1500)

    def test_state_reset_between_messages_of_one_session(self):
        body = """\
header_rules:
  - match: '^X-Tag:'
    action: remove
    when: {sender: '^internal@', recipient: '@partner\\.com$'}
rewrite_sender:
  table: canonical
"""
        sink, milter, pf = self.start_milter_stack(body)
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
            s.ehlo("client.test.invalid")
            s.sendmail("internal@corp.com", ["x@partner.com"],
                       harness.make_message("i@corp.com", "x@partner.com", "first",
                                            extra_headers=[("X-Tag", "1")]))
            # An aborted transaction in between (RSET) must not leak into the next one.
            s.mail("root@relay.corp.local")
            s.rcpt("x@partner.com")
            s.rset()
            s.sendmail("other@corp.com", ["y@example.com"],
                       harness.make_message("o@corp.com", "y@example.com", "second",
                                            extra_headers=[("X-Tag", "2")]))
        msgs = {m.header("Subject"): m for m in sink.messages(wait_for=2)}
        self.assertIsNone(msgs["first"].header("X-Tag"))
        self.assertEqual(msgs["second"].header("X-Tag"), "2")
        self.assertEqual(msgs["second"].sender, "other@corp.com")
        self.assertEqual(msgs["second"].recipients, ["y@example.com"])

    def test_sender_only_config_negotiates_no_header_steps(self):
        sink, milter, pf = self.start_milter_stack("rewrite_sender:\n  table: canonical\n")
        msg = harness.make_message("root@relay.corp.local", "ops@example.com", "sender only",
                                   extra_headers=[("X-Originating-IP", "10.0.0.1")])
        self.send(pf, "cron+daily@relay.corp.local", ["ops@example.com"], msg)
        m = self.one_message(sink)
        self.assertEqual(m.sender, "cron+daily@corp.com")  # +ext propagated (canonical)
        self.assertEqual(m.header("From"), "root@relay.corp.local")
        self.assertEqual(m.header("X-Originating-IP"), "10.0.0.1")

    @unittest.skipUnless(shutil.which("saslpasswd2"), "needs sasl2-bin (saslpasswd2)")
    def test_sasl_conditions(self):
        # Debian's Postfix reads $config_directory/sasl/smtpd.conf (cyrus_sasl_config_path is
        # set too, for upstream Postfix).
        sasl_dir = os.path.join(self.subdir("postfix"), "etc", "sasl")
        os.makedirs(sasl_dir, exist_ok=True)
        os.chmod(sasl_dir, 0o755)
        db = os.path.join(sasl_dir, "sasldb2")
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", db, "-u", "relay.test.invalid",
                        "alice"], input=b"secret", check=True)
        os.chmod(db, 0o644)
        harness.write_file(os.path.join(sasl_dir, "smtpd.conf"),
                           "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                           "mech_list: PLAIN LOGIN\nsasldb_path: %s\n" % db)
        body = """\
header_rules:
  - match: '^X-Auth:'
    action: replace
    with: 'X-Auth: authenticated'
    when: {authenticated: true}
  - match: '^X-Auth:'
    action: replace
    with: 'X-Auth: anonymous'
    when: {authenticated: false}
  - match: '^X-User:'
    action: remove
    when: {sasl_user: '^alice@'}
"""
        sink, milter, pf = self.start_milter_stack(body, extra_main_cf={
            "smtpd_sasl_auth_enable": "yes", "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd", "cyrus_sasl_config_path": sasl_dir,
            "smtpd_sasl_security_options": "noanonymous"})
        msg = harness.make_message("a@corp.com", "b@example.com", "sasl",
                                   extra_headers=[("X-Auth", "?"), ("X-User", "u")])
        out = harness.swaks("--from", "a@corp.com", "--to", "b@example.com", "--auth", "PLAIN",
                            "--auth-user", "alice@relay.test.invalid", "--auth-password",
                            "secret", "--data", msg, port=pf.port)
        self.assertIn("235 ", out.stdout)
        self.send(pf, "a@corp.com", ["b@example.com"], msg)
        msgs = sink.messages(wait_for=2)
        self.assertEqual(sorted(m.header("X-Auth") for m in msgs), ["anonymous", "authenticated"])
        for m in msgs:
            if m.header("X-Auth") == "authenticated":
                self.assertIsNone(m.header("X-User"))
            else:
                self.assertEqual(m.header("X-User"), "u")



class RewriteCommandTest(MilterTestCase):
    """`relaykit rewrite` on message files against Postfix's own header_checks on the same files
    submitted with sendmail -C (the cases tests/e2e/explore_rewrite_offline.py found): CRLF and
    a leading mbox From line, bare CR, "Name : value", a dropped header, a REPLACE/PREPEND text
    carrying a newline, NUL, header_size_limit, no final newline, a header block only, no empty
    line before the body. Then refused inputs: clear message, exit 2."""

    RULES = ("/^X-Drop:/ IGNORE\n"
             "/^Subject: (.*)/ REPLACE Subject: [ext] $1\n"
             "/^X-To: ([^ ]+)/ PREPEND X-Copy: $1\n"
             "/^X-Spaced: v/ REPLACE X-Spaced: seen\n")
    FILES = {
        "crlf-mbox": (b"From s@corp.com  Mon Jan  1 00:00:00 2024\r\nSubject: hi\r\n"
                      b"X-Drop: 1\r\nX-Spaced \t: v\r\nContent-Length: 5\r\n"
                      b"X-To: [192.0.2.7]\r\n next\r\nX-Cr: a\rb\r\n\r\nbody\rcr\r\n"),
        "header-only": b"Subject: only\nX-Nul: a\x00b\nX-Keep: 1",
        "long-no-newline": b"Subject: s\nX-Long: " + b"y" * 110000 + b"\n\nbody no newline",
        "no-blank-line": b"X-Keep: 1\nnot a header\nmore\n",
    }

    def rewrite(self, *args):
        return subprocess.run([harness.binary_path("relaykit"), "rewrite"] + list(args),
                              capture_output=True, timeout=60)

    def test_rewrite_command_matches_postfix_on_files(self):
        import explore_rewrite_offline as offline  # noqa: E402 - the explorer's comparison
        rules = os.path.join(self.tmp, "header_checks")
        harness.write_file(rules, self.RULES)
        config = self.write_config("header_checks_file: regexp:%s\n" % rules,
                                   "inet:127.0.0.1:1")
        sink = self.start_sink("sink")
        pf = self.start_postfix(relay_port=sink.port, extra_main_cf={
            "header_checks": "regexp:" + rules, "smtp_line_length_limit": "0"})
        for name, data in self.FILES.items():
            pf.sendmail(data, "s@corp.com", ["%s@example.com" % name])
        delivered = {}
        for m in sink.messages(wait_for=len(self.FILES)):
            delivered[m.recipients[0]] = offline.split_delivered(m.text)
        for name, data in self.FILES.items():
            path = os.path.join(self.tmp, name + ".eml")
            with open(path, "wb") as f:
                f.write(data)
            proc = self.rewrite("-c", config, "--sender", "s@corp.com", path)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            ours = offline.parse_message(proc.stdout.decode("utf-8", "surrogateescape"))
            theirs = offline.parse_message(delivered["%s@example.com" % name])
            theirs = (offline.strip_added(theirs[0], "sendmail"), theirs[1])
            self.assertEqual(ours, theirs, name)

    def test_rewrite_command_refuses_bad_inputs_clearly(self):
        config = self.write_config("header_checks: |\n  /^X-A:/ IGNORE\n", "inet:127.0.0.1:1")
        big = os.path.join(self.tmp, "big.eml")
        with open(big, "wb") as f:
            f.write(b"X-A: 1\n\n" + b"x" * 100)
        cases = [([os.path.join(self.tmp, "missing.eml")], "No such file or directory"),
                 ([self.tmp], "is a directory"),
                 (["--size-limit", "50", big], "larger than the size limit (50 bytes")]
        for args, reason in cases:
            proc = self.rewrite("-c", config, *args)
            self.assertEqual(proc.returncode, 2, args)
            self.assertIn(reason, proc.stderr.decode(), args)
            self.assertEqual(proc.stdout, b"", args)
        binary = os.path.join(self.tmp, "binary")
        with open(binary, "wb") as f:
            f.write(b"\x7fELF" + bytes(range(256)) * 4)
        proc = self.rewrite("-c", config, binary)
        self.assertEqual(proc.returncode, 0)
        self.assertIn(b"no header found", proc.stderr)
        self.assertTrue(proc.stdout.startswith(b"\n"))  # the empty line cleanup inserts


if __name__ == "__main__":
    harness.main()
