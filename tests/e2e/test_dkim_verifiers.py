#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_dkim_verifiers.py: relaykit's DKIM signatures checked by independent implementations.

Keys come from `relaykit dkim keygen` (RSA-2048, RSA-4096, Ed25519). Each message of a small
corpus (folded and 8-bit headers, trailing whitespace and blank lines, no final newline, empty,
1-byte and 10 MiB bodies) goes through `relaykit rewrite` with the seed relay's From rewriting
(root@relay.corp.local -> noreply@corp.com) and `milter: dkim:` for corp.com, in relaxed/relaxed
and simple/simple. Every signature of every output is verified by:
  - Debian's python3-dkim (dkimpy), the public key handed over through its dnsfunc hook;
  - Debian's OpenDKIM 2.11 (`opendkim -t` in verify mode, keys from TestPublicKeys);
  - `relaykit dkim verify` with the TXT record `relaykit dkim keygen` printed.
A tampered copy (one body byte, or the Subject) must fail all three. Differential: OpenDKIM
signs the same rewritten message with the same key, selector, canonicalization and header list
(`opendkim -t` in sign mode): the same bh=, and its signature verifies with dkimpy and relaykit.
No Postfix here: relaykit-milter's signing through Postfix is test_milter_dkim.py.
"""

import grp
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

try:
    import dkim  # noqa: E402
except ImportError:  # Debian's python3-dkim, when python3 is not Debian's own
    sys.path.append("/usr/lib/python3/dist-packages")
    import dkim  # noqa: E402

OPENDKIM = "/usr/sbin/opendkim"
# The h= candidates relaykit signs by default (dkim_signer.h), for OpenDKIM's SignHeaders.
DEFAULT_HEADERS = ("From,Reply-To,Subject,Date,To,Cc,Resent-Date,Resent-From,Resent-To,"
                   "Resent-Cc,In-Reply-To,References,List-Id,List-Help,List-Unsubscribe,"
                   "List-Subscribe,List-Post,List-Owner,List-Archive,Message-ID,MIME-Version,"
                   "Content-Type,Content-Transfer-Encoding")

KEYS = [  # selector, keygen arguments
    ("rsa2026", ["--algorithm", "rsa", "--bits", "2048"]),
    ("big2026", ["--algorithm", "rsa", "--bits", "4096"]),
    ("ed2026", ["--algorithm", "ed25519"]),
]

HEADERS = ("From: Root <root@relay.corp.local>\n"
           "To: Ops Team <ops@example.net>,\n\tsecond@example.net\n"
           "Subject: =?UTF-8?B?RGlzayBmdWxs?= on   srv12\t\n"
           "Date: Mon, 7 Dec 2026 02:00:00 +0000\n"
           "Message-ID: <20261207020000.1@relay.corp.local>\n"
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
    "ten_mib": HEADERS + "\n" + ("%s\n" % ("0123456789abcdef" * 62)) * 10570,
}


def zone_record(keygen_output):
    """The TXT record text of a `relaykit dkim keygen` zone line, strings joined."""
    strings = re.findall(r'"([^"]*)"', keygen_output)
    for s in strings:
        assert len(s.encode()) <= 255, "TXT string longer than 255 bytes"
    return "".join(strings)


def signatures_of(message):
    """The DKIM-Signature header values of a message (LF line ends), unfolded text kept."""
    head = message.split("\n\n", 1)[0]
    out = []
    for m in re.finditer(r"^DKIM-Signature:(.*(?:\n[ \t].*)*)", head, re.M):
        out.append(m.group(1))
    return out


def read_text(path):
    with open(path) as f:
        return f.read()


def tag(sig, name):
    m = re.search(r"(?:^|;)\s*%s=([^;]*)" % name, sig)
    return re.sub(r"\s", "", m.group(1)) if m else None


class DkimVerifiersTest(harness.E2ETestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.make_tmpdir("relaykit-dkim-")
        cls.relaykit = harness.binary_path("relaykit")
        cls.keyfile = {}
        cls.records = {}
        for selector, args in KEYS:
            path = os.path.join(cls.dir, selector + ".pem")
            out = harness.run([cls.relaykit, "dkim", "keygen", "--domain", "corp.com",
                               "--selector", selector, "--out", path] + args).stdout
            assert oct(os.stat(path).st_mode & 0o777) == "0o600", "key file mode"
            cls.keyfile[selector] = path
            cls.records[selector] = zone_record(out)
        # OpenDKIM's TestPublicKeys: "NAME RECORD" lines.
        cls.public_keys = harness.write_file(
            os.path.join(cls.dir, "public-keys"),
            "".join("%s._domainkey.corp.com %s\n" % (s, r) for s, r in cls.records.items()))
        cls.configs = {c: cls.write_config(c) for c in ("relaxed/relaxed", "simple/simple")}

    @classmethod
    def write_config(cls, canon):
        keys = "".join("      - {domain: corp.com, selector: %s, key_file: %s}\n"
                       % (s, cls.keyfile[s]) for s, _ in KEYS)
        text = ("tables:\n"
                "  generic:\n"
                "    search: address\n"
                "    sources:\n"
                "      - entries: {root@relay.corp.local: noreply@corp.com}\n"
                "milter:\n"
                "  rewrite_from: {table: generic}\n"
                "  rewrite_sender: {table: generic}\n"
                "  dkim:\n"
                "    canonicalization: %s\n"
                "    keys:\n%s" % (canon, keys))
        return harness.write_file(os.path.join(cls.dir, canon.replace("/", "-") + ".yaml"), text)

    # ---- the three verifiers: each returns one bool per DKIM-Signature, top to bottom ----
    def dkimpy(self, message):
        def dnsfunc(name, timeout=5):
            name = name.decode() if isinstance(name, bytes) else name
            sel = name.split("._domainkey.")[0]
            return self.records.get(sel, "").encode() if name.endswith("corp.com.") else None
        raw = message.encode("utf-8").replace(b"\n", b"\r\n")
        d = dkim.DKIM(raw)
        results = []
        for i in range(len(signatures_of(message))):
            try:
                results.append(bool(d.verify(idx=i, dnsfunc=dnsfunc)))
            except dkim.ValidationError:
                results.append(False)
        return results

    def opendkim(self, message):
        path = harness.write_file(os.path.join(self.tmp, "verify.eml"), message)
        conf = harness.write_file(os.path.join(self.tmp, "verify.conf"),
                                  "Mode v\nSyslog no\nAlwaysAddARHeader yes\n"
                                  "TestPublicKeys %s\n" % self.public_keys)
        proc = harness.run([OPENDKIM, "-x", conf, "-t", path, "-vv"], check=False)
        out = proc.stdout + proc.stderr
        m = re.search(r"hname='Authentication-Results' hvalue='(.*?)'\n", out, re.S)
        self.assertIsNotNone(m, out)
        return [r == "pass" for r in re.findall(r"\bdkim=(\w+)", m.group(1))]

    def relaykit_verify(self, message):
        path = harness.write_file(os.path.join(self.tmp, "rk.eml"), message)
        args = [self.relaykit, "dkim", "verify", path]
        for r in self.records.values():
            args += ["--txt", r]
        proc = harness.run(args, check=False)
        self.assertIn(proc.returncode, (0, 1), proc.stderr)
        return [line.startswith("pass ") for line in proc.stdout.splitlines()]

    def sign(self, canon, message):
        path = harness.write_file(os.path.join(self.tmp, "in.eml"), message)
        proc = harness.run([self.relaykit, "rewrite", "-c", self.configs[canon],
                            "--sender", "root@relay.corp.local", "--size-limit", "20000000",
                            path])
        self.assertIn("dkim: signed for corp.com (3 signatures)", proc.stderr)
        return proc.stdout

    def assert_all(self, message, expected, count):
        for name, verifier in (("dkimpy", self.dkimpy), ("opendkim", self.opendkim),
                               ("relaykit dkim verify", self.relaykit_verify)):
            self.assertEqual(verifier(message), [expected] * count, name)

    def test_corpus_signed_and_verified(self):
        for canon in ("relaxed/relaxed", "simple/simple"):
            for name, text in CORPUS.items():
                with self.subTest(canon=canon, message=name):
                    out = self.sign(canon, text)
                    sigs = signatures_of(out)
                    self.assertEqual(len(sigs), 3)
                    self.assertEqual(sorted(tag(s, "a") for s in sigs),
                                     ["ed25519-sha256", "rsa-sha256", "rsa-sha256"])
                    for s in sigs:
                        self.assertEqual(tag(s, "c"), canon)
                        self.assertEqual(tag(s, "d"), "corp.com")
                        self.assertIsNone(tag(s, "l"))
                        self.assertTrue(tag(s, "h").lower().startswith("from:from:"))
                    self.assertIn("\nFrom: Root <noreply@corp.com>\n", out)
                    self.assert_all(out, True, 3)
                    # Tampered copies fail everywhere: the test can fail.
                    head, body = out.split("\n\n", 1)
                    changed = head + "\n\n" + ("X" + body[1:] if body else "X\n")
                    self.assert_all(changed, False, 3)
                    self.assert_all(out.replace("\nSubject: ", "\nSubject: Re: ", 1), False, 3)

    def test_unsigned_when_the_from_is_ambiguous(self):
        text = HEADERS + "From: other@corp.com\n\nbody\n"
        path = harness.write_file(os.path.join(self.tmp, "dup.eml"), text)
        proc = harness.run([self.relaykit, "rewrite", "-c", self.configs["relaxed/relaxed"],
                            path])
        self.assertIn("dkim: not signed: no_domain", proc.stderr)
        self.assertNotIn("DKIM-Signature", proc.stdout)

    def test_keygen_dns_and_check(self):
        rk = self.relaykit
        key = os.path.join(self.tmp, "k.pem")
        out = harness.run([rk, "dkim", "keygen", "--domain", "corp.com", "--selector", "k",
                           "--out", key, "--algorithm", "ed25519", "--group", "daemon"]).stdout
        st = os.stat(key)
        self.assertEqual(st.st_mode & 0o777, 0o640)
        self.assertEqual(st.st_gid, grp.getgrnam("daemon").gr_gid)
        before = read_text(key)
        again = harness.run([rk, "dkim", "keygen", "--domain", "corp.com", "--selector", "k",
                             "--out", key], check=False)
        self.assertEqual(again.returncode, 1)
        self.assertIn("--force", again.stderr)
        self.assertEqual(read_text(key), before)  # not overwritten
        dns = harness.run([rk, "dkim", "dns", "--key", key, "--domain", "corp.com",
                           "--selector", "k"]).stdout
        self.assertEqual(dns, out)
        self.assertNotIn("PRIVATE", out + dns)
        harness.run([rk, "dkim", "keygen", "--domain", "corp.com", "--selector", "k",
                     "--out", key, "--force"])
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        self.assertNotEqual(read_text(key), before)
        listed = harness.run([rk, "dkim", "dns", "-c", self.configs["relaxed/relaxed"]]).stdout
        for selector, record in self.records.items():
            self.assertIn("%s._domainkey.corp.com. IN TXT" % selector, listed)
        # A world-readable key refuses the configuration, at the key_file line.
        os.chmod(key, 0o644)
        conf = harness.write_file(os.path.join(self.tmp, "bad.yaml"),
                                  "milter:\n  dkim:\n    keys:\n"
                                  "      - domain: corp.com\n        selector: k\n"
                                  "        key_file: %s\n" % key)
        check = harness.run([rk, "check", "-c", conf], check=False)
        self.assertEqual(check.returncode, 1)
        self.assertIn("bad.yaml:6:19: key_file %s: mode 0644" % key, check.stderr)

    def opendkim_sign(self, canon, selector, algorithm, message):
        path = harness.write_file(os.path.join(self.tmp, "unsigned.eml"), message)
        conf = harness.write_file(
            os.path.join(self.tmp, "sign.conf"),
            "Mode s\nSyslog no\nRequireSafeKeys false\nDomain corp.com\nSelector %s\n"
            "KeyFile %s\nCanonicalization %s\nSignatureAlgorithm %s\nSignHeaders %s\n"
            "OversignHeaders From\n"
            % (selector, self.keyfile[selector], canon, algorithm, DEFAULT_HEADERS))
        proc = harness.run([OPENDKIM, "-x", conf, "-t", path, "-vv"])
        m = re.search(r"hname='DKIM-Signature' hvalue='(.*?)'\n", proc.stdout + proc.stderr, re.S)
        self.assertIsNotNone(m, proc.stdout + proc.stderr)
        return m.group(1)

    def test_differential_with_opendkim(self):
        for canon in ("relaxed/relaxed", "simple/simple"):
            for name in ("plain", "eight_bit", "no_final_newline", "empty_body"):
                out = self.sign(canon, CORPUS[name])
                ours = {tag(s, "s"): s for s in signatures_of(out)}
                unsigned = re.sub(r"^DKIM-Signature:.*(?:\n[ \t].*)*\n", "", out, flags=re.M)
                for selector, algorithm in (("rsa2026", "rsa-sha256"),
                                            ("ed2026", "ed25519-sha256")):
                    with self.subTest(canon=canon, message=name, algorithm=algorithm):
                        theirs = self.opendkim_sign(canon, selector, algorithm, unsigned)
                        self.assertEqual(tag(theirs, "bh"), tag(ours[selector], "bh"))
                        self.assertEqual(tag(theirs, "c"), canon)
                        # The same header fields signed, From oversigned (order may differ).
                        self.assertEqual(sorted(tag(theirs, "h").lower().split(":")),
                                         sorted(tag(ours[selector], "h").lower().split(":")))
                        signed = "DKIM-Signature: " + theirs + "\n" + unsigned
                        # Debian's OpenDKIM 2.11.0~beta2 makes Ed25519 signatures with simple
                        # header canonicalization that no verifier accepts, OpenDKIM included
                        # (its RSA ones and its relaxed Ed25519 ones verify): compare bh= only.
                        ok = not (algorithm == "ed25519-sha256" and canon.startswith("simple"))
                        self.assertEqual(self.dkimpy(signed), [ok])
                        self.assertEqual(self.relaykit_verify(signed), [ok])
                        self.assertEqual(self.opendkim(signed), [ok])


if __name__ == "__main__":
    unittest.main(verbosity=2)
