#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_dkim_opendkim_chain.py: users who keep OpenDKIM: relaykit-milter, then Debian's OpenDKIM.

A private Postfix with `smtpd_milters = relaykit, opendkim` (and the same non_smtpd_milters)
relays into smtp-sink. relaykit-milter rewrites root@relay.corp.local to noreply@corp.com;
OpenDKIM, placed after it, signs for corp.com with a key made by `relaykit dkim keygen`. Every
delivered message (SMTP and sendmail paths, relaxed/relaxed and simple/simple) carries an
OpenDKIM signature over the REWRITTEN From, which Debian's python3-dkim and
`relaykit dkim verify` accept; a tampered copy fails both.
"""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from milter_fixtures import SEED_MILTER, MilterTestCase  # noqa: E402

try:
    import dkim  # noqa: E402
except ImportError:  # Debian's python3-dkim, when python3 is not Debian's own
    sys.path.append("/usr/lib/python3/dist-packages")
    import dkim  # noqa: E402

OPENDKIM = "/usr/sbin/opendkim"
MESSAGE = ("From: Root User <root@relay.corp.local>\n"
           "To: ops@example.com\n"
           "Subject: disk  full on srv12\n"
           "Date: Mon, 7 Dec 2026 02:00:00 +0000\n"
           "Message-ID: <chain-1@relay.corp.local>\n"
           "\n"
           "Disk /var is 97% full.  \n\n")


class OpenDkimChainTest(MilterTestCase):
    def start_opendkim(self, canon):
        d = self.subdir("opendkim")
        key = os.path.join(d, "corp.com.rsa2026.pem")
        out = harness.run([harness.binary_path("relaykit"), "dkim", "keygen", "--domain",
                           "corp.com", "--selector", "rsa2026", "--out", key]).stdout
        self.record = "".join(re.findall(r'"([^"]*)"', out))
        port = harness.free_port()
        conf = harness.write_file(os.path.join(d, "opendkim.conf"), (
            "Mode s\nSyslog no\nLogWhy yes\nRequireSafeKeys false\nDomain corp.com\n"
            "Selector rsa2026\nKeyFile %s\nCanonicalization %s\nSignatureAlgorithm rsa-sha256\n"
            "OversignHeaders From\nInternalHosts 127.0.0.1\nSocket inet:%d@127.0.0.1\n"
            "PidFile %s/opendkim.pid\n") % (key, canon, port, d))
        log = open(os.path.join(d, "opendkim.log"), "w")
        proc = subprocess.Popen([OPENDKIM, "-f", "-x", conf], stdout=log, stderr=log)
        self.addCleanup(log.close)
        self.addCleanup(harness.stop_process, proc)
        self.register_log("opendkim", log.name)
        harness.wait_port(port, proc=proc, what="opendkim")
        return "inet:127.0.0.1:%d" % port

    def dkimpy_ok(self, text):
        def dnsfunc(name, timeout=5):
            name = name.decode() if isinstance(name, bytes) else name
            return self.record.encode() if name == "rsa2026._domainkey.corp.com." else None
        try:
            return bool(dkim.verify(text.replace("\r\n", "\n").replace("\n", "\r\n").encode(),
                                    dnsfunc=dnsfunc))
        except dkim.ValidationError:
            return False

    def relaykit_ok(self, text):
        path = harness.write_file(os.path.join(self.tmp, "check.eml"), text)
        proc = harness.run([harness.binary_path("relaykit"), "dkim", "verify", path, "--txt",
                            self.record], check=False)
        return proc.returncode == 0 and proc.stdout.startswith("pass d=corp.com s=rsa2026")

    def check_chain(self, canon):
        opendkim = self.start_opendkim(canon)
        port = harness.free_port()
        relaykit = "inet:127.0.0.1:%d" % port
        sink = self.start_sink("sink")
        self.start_daemon("relaykit-milter", self.write_config(SEED_MILTER, relaykit), port=port)
        # relaykit first, OpenDKIM second: OpenDKIM sees (and signs) relaykit's edits.
        pf = self.start_postfix(relay_port=sink.port, extra_main_cf={
            "smtpd_milters": "%s, %s" % (relaykit, opendkim),
            "non_smtpd_milters": "%s, %s" % (relaykit, opendkim),
            "milter_default_action": "tempfail", "milter_protocol": "6"})
        self.send(pf, "root@relay.corp.local", ["ops@example.com"], MESSAGE)
        pf.sendmail(MESSAGE, "root@relay.corp.local", ["ops@example.com"])
        for m in sink.messages(wait_for=2):
            self.assertEqual(m.header("From"), "Root User <noreply@corp.com>")
            sig = m.header("DKIM-Signature")
            self.assertIsNotNone(sig, m.text)
            self.assertIn("d=corp.com", sig)
            self.assertIn("c=%s" % canon, sig)
            self.assertTrue(self.dkimpy_ok(m.text), m.text)
            self.assertTrue(self.relaykit_ok(m.text), m.text)
            tampered = m.text.replace("noreply@corp.com", "norepli@corp.com")
            self.assertFalse(self.dkimpy_ok(tampered))
            self.assertFalse(self.relaykit_ok(tampered))

    def test_opendkim_after_relaykit_relaxed(self):
        self.check_chain("relaxed/relaxed")

    def test_opendkim_after_relaykit_simple(self):
        self.check_chain("simple/simple")


if __name__ == "__main__":
    harness.main()
