#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_milter_dkim.py: relaykit-milter signs the final message (DKIM) behind a real Postfix.

A private Postfix with relaykit-milter in smtpd_milters (SMTP) and non_smtpd_milters (sendmail)
relays into smtp-sink. relaykit-milter runs the seed relay's rules (From and envelope sender
rewriting, header removals) and `milter: dkim:` with an RSA-2048 and an Ed25519 key for corp.com
made by `relaykit dkim keygen`, so every signed message carries two signatures. Every delivered
message is checked by two independent verifiers: Debian's python3-dkim (public keys through its
dnsfunc hook) and OpenDKIM (`opendkim -t` in verify mode, keys from TestPublicKeys), in
relaxed/relaxed and simple/simple, for messages of the milter corpus (folded, 8-bit and very long
headers, no final newline, empty, 1-byte and 10 MiB bodies) and the seed relay's root@ and
nagios@ mail. A tampered delivered copy must fail both verifiers. Also: a From domain without a
key passes unsigned and is counted in /metrics; existing signatures are kept, or replaced for the
signed domain only (`existing: replace`); `sign: [non_smtpd]` signs sendmail submissions only; a
failed signature (RELAYKIT_MILTER_FAULT=sign) answers per on_error; a signature held 2 s on its
worker (RELAYKIT_MILTER_FAULT=slow-sign) delays no other session's reply (raw milter packets).
"""

import os
import re
import smtplib
import socket
import struct
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from milter_fixtures import SEED_MILTER, MilterTestCase  # noqa: E402

try:
    import dkim  # noqa: E402
except ImportError:  # Debian's python3-dkim, when python3 is not Debian's own
    sys.path.append("/usr/lib/python3/dist-packages")
    import dkim  # noqa: E402

OPENDKIM = "/usr/sbin/opendkim"
KEYS = [("rsa2026", ["--algorithm", "rsa", "--bits", "2048"]),
        ("ed2026", ["--algorithm", "ed25519"])]

HEADERS = ("From: Root <root@relay.corp.local>\n"
           "To: Ops Team <ops@example.net>,\n\tsecond@example.net\n"
           "Subject: =?UTF-8?B?RGlzayBmdWxs?= on   srv12\t\n"
           "Date: Mon, 7 Dec 2026 02:00:00 +0000\n"
           "Message-ID: <20261207020000.1@relay.corp.local>\n"
           "X-Originating-IP: 10.1.2.3\n"
           "X-Mailer: cron\n")

CORPUS = {
    "plain": HEADERS + "\nDisk /var is 97% full.  \n\nRegards,\n cron\n\n\n",
    "eight_bit": HEADERS.replace("Subject: ", "Subject: J\u00f6rg's \u20ac ") +
    "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n\nGr\u00fc\u00dfe \u2013 \t trailing \t\n",
    "long_header": HEADERS + "X-Long: " + "\n\t".join("w%d-%s" % (i, "x" * 60)
                                                       for i in range(200)) + "\n\nbody\n",
    "no_final_newline": HEADERS + "\nlast line without newline",
    "empty_body": HEADERS + "\n",
    "one_byte": HEADERS + "\nx",
    "nagios": HEADERS.replace("Root <root@", "Nagios <nagios@") + "\nPROBLEM: load\n",
}
TEN_MIB = HEADERS + "\n" + ("%s\n" % ("0123456789abcdef" * 62)) * 10570
# A signature another system added before the relay (not verifiable: its b= is made up).
OLD_CORP = ("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=corp.com; s=app;\n"
            "\th=from:subject; bh=AAAA; b=BBBB\n")
OLD_OTHER = OLD_CORP.replace("d=corp.com", "d=other.org")


def tag(sig, name):
    m = re.search(r"(?:^|;)\s*%s=([^;]*)" % name, sig)
    return re.sub(r"\s", "", m.group(1)) if m else None


class MilterDkimTest(MilterTestCase):
    def setUp(self):
        super().setUp()
        self.keyfile = {}
        self.records = {}
        d = self.subdir("keys")
        for selector, args in KEYS:
            path = os.path.join(d, selector + ".pem")
            out = harness.run([harness.binary_path("relaykit"), "dkim", "keygen", "--domain",
                               "corp.com", "--selector", selector, "--out", path] + args).stdout
            self.keyfile[selector] = path
            self.records[selector] = "".join(re.findall(r'"([^"]*)"', out))
        self.public_keys = harness.write_file(
            os.path.join(d, "public-keys"),
            "".join("%s._domainkey.corp.com %s\n" % (s, r) for s, r in self.records.items()))

    def start_signing_stack(self, canon="relaxed/relaxed", extra="", on_error="tempfail"):
        self.metrics_port = harness.free_port()
        keys = "".join("    - {domain: corp.com, selector: %s, key_file: %s}\n"
                       % (s, self.keyfile[s]) for s, _ in KEYS)
        body = (SEED_MILTER.replace("on_error: tempfail", "on_error: " + on_error) +
                "metrics_listen: 127.0.0.1:%d\n" % self.metrics_port +
                "dkim:\n  canonicalization: %s\n%s  keys:\n%s" % (canon, extra, keys))
        stack = self.start_milter_stack(body, extra_main_cf={"message_size_limit": "20000000"})
        harness.wait_port(self.metrics_port, what="metrics endpoint")
        return stack

    def metric(self, series):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                    timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0

    # ---- the verifiers: one bool per DKIM-Signature, top to bottom ----
    def dkimpy(self, text, count):
        def dnsfunc(name, timeout=5):
            name = name.decode() if isinstance(name, bytes) else name
            sel = name.split("._domainkey.")[0]
            return self.records.get(sel, "").encode() if name.endswith("corp.com.") else None
        d = dkim.DKIM(text.replace("\r\n", "\n").replace("\n", "\r\n").encode(
            "utf-8", errors="surrogateescape"))
        results = []
        for i in range(count):
            try:
                results.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
            except dkim.ValidationError:
                results.append(False)
        return results

    def opendkim_results(self, text):
        """{selector: result} for relaykit's selectors, from OpenDKIM's A-R header."""
        path = os.path.join(self.tmp, "verify.eml")
        with open(path, "wb") as f:
            f.write(text.encode("utf-8", errors="surrogateescape"))
        conf = harness.write_file(os.path.join(self.tmp, "verify.conf"),
                                  "Mode v\nSyslog no\nAlwaysAddARHeader yes\n"
                                  "TestPublicKeys %s\n" % self.public_keys)
        proc = harness.run([OPENDKIM, "-x", conf, "-t", path, "-vv"], check=False)
        out = proc.stdout + proc.stderr
        m = re.search(r"hname='Authentication-Results' hvalue='(.*?)'\n", out, re.S)
        self.assertIsNotNone(m, out)
        results = {}
        for part in m.group(1).split(";"):
            r = re.search(r"\bdkim=(\w+)", part)
            s = re.search(r"header\.s=([\w.-]+)", part)
            if r and s:
                results[s.group(1)] = r.group(1)
        return results

    def ours(self, m):
        """relaykit's DKIM-Signature values (s= one of our selectors), in header order, with
        their index among all DKIM-Signature headers."""
        sigs = m.header_all("DKIM-Signature")
        return [(i, s) for i, s in enumerate(sigs) if tag(s, "s") in self.records]

    def assert_signed(self, m, canon, name):
        sigs = m.header_all("DKIM-Signature")
        ours = self.ours(m)
        self.assertEqual(sorted(tag(s, "s") for _, s in ours), ["ed2026", "rsa2026"], name)
        # At the top of the message as delivered, in key order (RSA, then Ed25519).
        self.assertEqual([n for n, _ in m.headers][:2], ["DKIM-Signature", "DKIM-Signature"])
        self.assertEqual([tag(s, "s") for _, s in ours], ["rsa2026", "ed2026"])
        for _, s in ours:
            self.assertEqual(tag(s, "d"), "corp.com")
            self.assertEqual(tag(s, "c"), canon)
            self.assertIsNone(tag(s, "l"))
            self.assertTrue(tag(s, "h").lower().startswith("from:from:"), s)
        self.assertEqual(sorted(tag(s, "a") for _, s in ours),
                         ["ed25519-sha256", "rsa-sha256"])
        py = self.dkimpy(m.text, len(sigs))
        self.assertEqual([py[i] for i, _ in ours], [True, True], name + ": python3-dkim")
        od = self.opendkim_results(m.text)
        self.assertEqual((od.get("rsa2026"), od.get("ed2026")), ("pass", "pass"),
                         name + ": opendkim " + repr(od))
        # A tampered copy fails both verifiers (one body byte; then the Subject).
        text = m.text.replace("\r\n", "\n")
        head, sep, body = text.partition("\n\n")
        self.assertEqual(sep, "\n\n")
        for bad in (head + sep + ("X" + body[1:] if len(body) > 1 else "X\n"),
                    text.replace("\nSubject:", "\nSubject: Re:", 1)):
            py = self.dkimpy(bad, len(sigs))
            self.assertEqual([py[i] for i, _ in ours], [False, False], name + ": tampered")
            od = self.opendkim_results(bad)
            self.assertNotEqual(od.get("rsa2026"), "pass", name + ": tampered")
            self.assertNotEqual(od.get("ed2026"), "pass", name + ": tampered")

    def check_corpus(self, canon):
        sink, milter, pf = self.start_signing_stack(canon)
        sent = []
        for name, text in CORPUS.items():
            sender = "nagios@relay.corp.local" if name == "nagios" else "root@relay.corp.local"
            self.send(pf, sender, ["ops@example.net"], text)
            sent.append(name)
            pf.sendmail(text, sender, ["ops@example.net"])
            sent.append(name + " (sendmail)")
        msgs = sink.messages(wait_for=len(sent), timeout=60)
        self.assertEqual(len(msgs), len(sent))
        for m in msgs:
            name = "%s from %s" % (m.header("Message-ID"), m.sender)
            with self.subTest(canon=canon, message=name):
                self.assertIn(m.sender, ("noreply@corp.com", "alerts@corp.com"))
                self.assertRegex(m.header("From"), r"<(noreply|alerts)@corp\.com>$")
                self.assertIsNone(m.header("X-Originating-IP"))
                self.assert_signed(m, canon, name)
        self.assertEqual(self.metric('relaykit_milter_dkim_messages_total{result="signed"}'),
                         len(sent))
        self.assertEqual(self.metric("relaykit_milter_dkim_signatures_total"), 2 * len(sent))
        return sink, milter, pf

    def test_relaxed_corpus_smtp_and_sendmail(self):
        sink, milter, pf = self.check_corpus("relaxed/relaxed")
        # The 10 MiB body, and a message that already carries signatures (existing: keep).
        sink.clear()
        self.send(pf, "root@relay.corp.local", ["ops@example.net"], TEN_MIB)
        self.send(pf, "root@relay.corp.local", ["ops@example.net"],
                  OLD_CORP + OLD_OTHER + CORPUS["plain"])
        msgs = sink.messages(wait_for=2, timeout=60)
        big = [m for m in msgs if len(m.body) > 10 * 1024 * 1024]
        self.assertEqual(len(big), 1)
        self.assert_signed(big[0], "relaxed/relaxed", "10 MiB")
        kept = [m for m in msgs if m is not big[0]][0]
        self.assertEqual([tag(s, "s") for s in kept.header_all("DKIM-Signature")],
                         ["rsa2026", "ed2026", "app", "app"])
        self.assertEqual([tag(s, "d") for s in kept.header_all("DKIM-Signature")][2:],
                         ["corp.com", "other.org"])
        self.assert_signed(kept, "relaxed/relaxed", "kept")
        self.assertIn("dkim: signed for corp.com (2 signatures)", milter.stderr())

    def test_simple_corpus_smtp_and_sendmail(self):
        self.check_corpus("simple/simple")

    def test_no_key_replace_and_non_smtpd_only(self):
        sink, milter, pf = self.start_signing_stack(
            "relaxed/relaxed", extra="  sign: [non_smtpd]\n  existing: replace\n")
        plain = CORPUS["plain"]
        # SMTP from 127.0.0.1: not covered by sign: [non_smtpd], passes unsigned.
        self.send(pf, "root@relay.corp.local", ["ops@example.net"],
                  plain.replace("<2026", "<smtp-2026"))
        # sendmail: signed; the old corp.com signature replaced, the other.org one kept.
        pf.sendmail(OLD_CORP + OLD_OTHER + plain.replace("<2026", "<replace-2026"),
                    "root@relay.corp.local", ["ops@example.net"])
        # sendmail, From in a domain without a key: passes unsigned, counted as no_key.
        pf.sendmail(plain.replace("root@relay.corp.local", "someone@example.org")
                    .replace("<2026", "<nokey-2026"), "someone@example.org",
                    ["ops@example.net"])
        msgs = {m.header("Message-ID").split(".")[0].lstrip("<"): m
                for m in sink.messages(wait_for=3, timeout=60)}
        self.assertEqual(sorted(msgs), ["nokey-20261207020000", "replace-20261207020000",
                                        "smtp-20261207020000"])
        self.assertEqual(msgs["smtp-20261207020000"].header_all("DKIM-Signature"), [])
        self.assertEqual(msgs["nokey-20261207020000"].header_all("DKIM-Signature"), [])
        self.assertEqual(msgs["nokey-20261207020000"].header("From"), "Root <someone@example.org>")
        replaced = msgs["replace-20261207020000"]
        self.assertEqual([(tag(s, "s"), tag(s, "d")) for s in replaced.header_all("DKIM-Signature")],
                         [("rsa2026", "corp.com"), ("ed2026", "corp.com"), ("app", "other.org")])
        self.assert_signed(replaced, "relaxed/relaxed", "replaced")
        self.assertEqual(self.metric('relaykit_milter_dkim_messages_total{result="signed"}'), 1)
        self.assertEqual(self.metric('relaykit_milter_dkim_messages_total{result="no_key"}'), 1)
        self.assertEqual(
            self.metric('relaykit_milter_dkim_messages_total{result="not_selected"}'), 1)
        self.assertIn("dkim: no key for example.org: passed unsigned", milter.stderr())

    def check_signing_failure(self, on_error):
        # RELAYKIT_MILTER_FAULT=sign: every signature fails after the pool ran it.
        os.environ["RELAYKIT_MILTER_FAULT"] = "sign"
        try:
            sink, milter, pf = self.start_signing_stack(on_error=on_error)
        finally:
            del os.environ["RELAYKIT_MILTER_FAULT"]
        try:
            self.send(pf, "root@relay.corp.local", ["ops@example.net"], CORPUS["plain"])
            delivered = True
        except smtplib.SMTPDataError as e:
            self.assertEqual(e.smtp_code // 100, 4, e)
            delivered = False
        self.assertEqual(delivered, on_error == "accept")
        self.assertIn("dkim: signing for corp.com failed: injected by "
                      "RELAYKIT_MILTER_FAULT=sign; on_error=" + on_error, milter.stderr())
        self.assertEqual(self.metric('relaykit_milter_dkim_messages_total{result="error"}'), 1)
        if delivered:
            m = self.one_message(sink)
            self.assertEqual(m.header_all("DKIM-Signature"), [])
            self.assertEqual(m.header("From"), "Root <noreply@corp.com>")  # still rewritten
        else:
            time.sleep(1)
            self.assertEqual(sink.count(), 0)

    def test_signing_failure_tempfails_by_default(self):
        self.check_signing_failure("tempfail")

    def test_signing_failure_with_on_error_accept(self):
        self.check_signing_failure("accept")

    def test_a_slow_signature_delays_no_other_session(self):
        # RELAYKIT_MILTER_FAULT=slow-sign holds each signature 2 s on its worker thread. Session A
        # (signed) waits for its reply; session B (a From without a key) is answered meanwhile.
        keys = "".join("    - {domain: corp.com, selector: %s, key_file: %s}\n"
                       % (s, self.keyfile[s]) for s, _ in KEYS)
        port = harness.free_port()
        config = self.write_config(SEED_MILTER + "dkim:\n  sign: all\n  keys:\n" + keys,
                                   "inet:127.0.0.1:%d" % port)
        os.environ["RELAYKIT_MILTER_FAULT"] = "slow-sign"
        try:
            milter = self.start_daemon("relaykit-milter", config, port=port)
        finally:
            del os.environ["RELAYKIT_MILTER_FAULT"]

        def packet(cmd, data=b""):
            return struct.pack(">I", len(data) + 1) + cmd + data

        buffers = {}

        def recv(sock):
            """The next reply packet (command, data), or None when the milter closed."""
            data = buffers.get(sock, b"")
            while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
            n = struct.unpack(">I", data[:4])[0]
            buffers[sock] = data[4 + n:]
            return data[4:5], data[5:4 + n]

        def message(sock, sender):
            sock.sendall(packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)))
            self.assertEqual(recv(sock)[0], b"O")
            sock.sendall(packet(b"C", b"client\x004\x00\x19127.0.0.1\x00") +
                         packet(b"M", b"<%s>\x00" % sender) +
                         packet(b"L", b"From\x00 <%s>\x00" % sender) +
                         packet(b"L", b"Subject\x00 hello\x00") +
                         packet(b"B", b"body\r\n") + packet(b"E"))
            return time.monotonic()

        a = socket.create_connection(("127.0.0.1", port), timeout=10)
        b = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a_sent = message(a, b"root@relay.corp.local")
        time.sleep(0.2)
        b_sent = time.monotonic()  # from its first packet: negotiation must not wait either
        message(b, b"someone@example.org")
        b_reply = b""
        while True:  # B: its header edits (none: no rule matches) and continue, at once
            got = recv(b)
            self.assertIsNotNone(got)
            b_reply += got[0]
            if got[0] == b"c":
                break
        b_took = time.monotonic() - b_sent
        self.assertLess(b_took, 1.5, "session B waited for A's signature")
        replies = []
        while True:
            got = recv(a)
            self.assertIsNotNone(got)
            replies.append(got)
            if got[0] == b"c":
                break
        a_took = time.monotonic() - a_sent
        self.assertGreaterEqual(a_took, 1.9)  # the signature came back after the delay
        inserted = [d for c, d in replies if c == b"i"]
        self.assertEqual(len(inserted), 2)
        for d in inserted:
            self.assertEqual(struct.unpack(">I", d[:4])[0], 0)  # at the top
            self.assertTrue(d[4:].startswith(b"DKIM-Signature\x00 v=1; a="), d)
        self.assertEqual(replies[-1], (b"c", b""))
        self.assertEqual(b_reply, b"c")


if __name__ == "__main__":
    harness.main()
