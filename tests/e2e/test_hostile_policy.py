#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_hostile_policy.py: hostile policy requests against the real relaykit-policyd.

Every case states its expected behaviour: an answer (DUNNO, or the limit's 4xx), or a clear
close without a reply (logged and counted as malformed/flood). In every case the daemon keeps
running and a client connected before the hostile one (the "canary", a persistent connection
like Postfix's) still gets its answer afterwards. Cases: oversize lines and requests, a request
without its empty line (closed mid-request, or completed later), NUL bytes, garbage bytes,
attribute floods, pipelining floods, huge and malformed numbers (size, recipient_count: the
GCRA overflow finding), thousands of long recipients in one message (memory bounded),
separator injection into composite keys, address-extension evasion (user+N@) and its `+` forms,
IPv4-mapped client addresses in keys and in exemptions, reply-text injection. Run against
whatever build RELAYKIT_BUILD_DIR names (the ASan build reports any sanitizer finding on stderr,
which fails the test through the harness).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLOSE_TIMEOUT = 5


def encode(attrs):
    out = b""
    for k, v in attrs:
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        out += k + b"=" + v + b"\n"
    return out + b"\n"


def request(state="END-OF-MESSAGE", client="10.0.0.1", sender="app@corp.local",
            recipient="r@example.net", **extra):
    attrs = [("request", "smtpd_access_policy"), ("protocol_state", state),
             ("protocol_name", "ESMTP"), ("client_address", client), ("client_name", "unknown"),
             ("helo_name", "client.example"), ("sender", sender), ("recipient", recipient),
             ("recipient_count", "1"), ("instance", "1.1"), ("size", "100")]
    names = [k for k, _ in attrs]
    for k, v in extra.items():
        if k in names:
            attrs[names.index(k)] = (k, v)
        else:
            attrs.append((k, v))
    return encode(attrs)


def read_reply(sock):
    data = b""
    while not data.endswith(b"\n\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed after %r" % data)
        data += chunk
    return data.decode("latin-1")


def read_replies(sock, count):
    """`count` pipelined replies (several may arrive in one segment)."""
    data = b""
    while data.count(b"\n\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed after %r" % data)
        data += chunk
    return [r.decode("latin-1") + "\n\n" for r in data.split(b"\n\n")[:count]]


def asan_build():
    """True when relaykit-policyd is an AddressSanitizer build (its RSS needs a tweak)."""
    out = subprocess.run(["ldd", harness.binary_path("relaykit-policyd")], capture_output=True,
                         text=True).stdout
    return "libasan" in out


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


LIMITS = """\
  exempt:
    clients: [192.0.2.0/24]
  limits:
    - {name: per-sender, key: [sender], max: 2, per: 1h}
    - {name: per-net, key: [client_address/24], max: 3, per: 1h}
    - {name: per-host, key: [client_address], max: 50, per: 1h}
    - {name: composite, key: [sasl_username, helo_name], max: 1, per: 1h}
    - {name: bytes, key: [sasl_username], count: bytes, max: 1000, per: 1h}
    - {name: bytes-dry, key: [ccert_subject], count: bytes, max: 1000, per: 1h, warn_only: true}
    - {name: per-rcpt-domain, key: [recipient_domain], count: recipients, max: 100000, per: 1h}
    - name: echo
      key: [ccert_fingerprint]
      max: 1
      per: 1h
      reply: "450 4.7.1 slow down $sender"
"""


class HostilePolicyTest(harness.E2ETestCase):
    def setUp(self):
        if asan_build():
            # ASan's quarantine keeps freed memory: RSS would measure it, not what the daemon
            # holds. Without quarantine RSS reflects live memory (plus redzones) again.
            os.environ["ASAN_OPTIONS"] = "quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
        self.port, self.metrics = harness.free_port(), harness.free_port()
        path = os.path.join(self.tmp, "relaykit.yaml")
        harness.write_file(path, "policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: "
                           "127.0.0.1:%d\n%s" % (self.port, self.metrics, LIMITS))
        self.d = self.start_daemon("relaykit-policyd", path, port=self.port)
        # The canary: a persistent connection opened before any hostile input, like Postfix's.
        self.canary = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(self.canary.close)
        self.assertEqual(self.ask_canary(), "action=DUNNO\n\n")
        self.clients = 0

    def tearDown(self):
        self.assertTrue(self.d.running(), "relaykit-policyd died")
        self.assertEqual(self.ask_canary(), "action=DUNNO\n\n")

    def ask_canary(self):
        # RCPT checks charge nothing: the canary can ask any number of times.
        self.canary.sendall(request("RCPT", client="198.51.100.1", sender="canary@corp.local"))
        return read_reply(self.canary)

    def ask(self, payload, timeout=10):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(payload)
            return read_reply(s)

    def expect_closed(self, payload, what=None):
        """The daemon closes the connection without a reply (no bytes before EOF)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=CLOSE_TIMEOUT) as s:
            try:
                s.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                return  # closed while we were still sending: fine
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
            self.assertEqual(data, b"", what or payload[:60])
        self.assertEqual(self.ask_canary(), "action=DUNNO\n\n")

    def metric(self, line_prefix):
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics,
                                      timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.split()[-1])
        return 0.0

    # ---- framing and size ----------------------------------------------------------------

    def test_01_oversize_attribute_line_closes(self):
        self.expect_closed(request(sender="a" * 5000 + "@x"))
        self.assertIn("attribute line longer than 4096 bytes", self.d.stderr())

    def test_02_oversize_request_closes(self):
        attrs = [("x%d" % i, "v" * 4000) for i in range(20)]  # 80 KB in lines under 4096
        self.expect_closed(encode(attrs))
        self.assertIn("policy request larger than 65536 bytes", self.d.stderr())

    def test_03_missing_empty_line_then_eof_is_truncated(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(request()[:-1])  # no terminating empty line
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(s.recv(100), b"")
        harness.wait_until(lambda: "closed in the middle of a request" in self.d.stderr(), 5,
                           "truncated log line")
        self.assertGreaterEqual(self.metric('relaykit_policy_errors_total{kind="truncated"}'), 1)

    def test_04_missing_empty_line_waits_then_answers_when_completed(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(request(sender="late@corp.local")[:-1])
            s.settimeout(0.5)
            with self.assertRaises(socket.timeout):
                s.recv(100)  # no answer to an incomplete request
            self.assertEqual(self.ask_canary(), "action=DUNNO\n\n")
            s.settimeout(5)
            s.sendall(b"\n")
            self.assertEqual(read_reply(s), "action=DUNNO\n\n")

    def test_05_empty_request_and_lines_without_equals_close(self):
        self.expect_closed(b"\n")
        self.expect_closed(b"no equals sign\n\n")
        self.expect_closed(b"=value without a name\n\n")

    def test_06_garbage_bytes_close(self):
        import random
        rng = random.Random(1234)
        for i in range(5):
            junk = bytes(rng.randrange(256) for _ in range(3000)).replace(b"=", b"")
            self.expect_closed(junk + b"\n\n", "garbage %d" % i)
        self.assertTrue(self.d.running())

    def test_07_attribute_flood_closes(self):
        self.expect_closed(encode([("a%d" % i, "b") for i in range(200)]))
        self.assertIn("too many attributes", self.d.stderr())

    def test_08_pipelined_flood_closes(self):
        self.expect_closed(request("RCPT") * 40, "40 pipelined requests")
        self.assertGreaterEqual(self.metric('relaykit_policy_errors_total{kind="flood"}'), 1)

    def test_09_crlf_line_endings_are_answered(self):
        self.assertEqual(self.ask(request().replace(b"\n", b"\r\n")), "action=DUNNO\n\n")

    def test_10_byte_by_byte_is_answered_once(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for b in request("RCPT"):
                s.sendall(bytes([b]))
            self.assertEqual(read_reply(s), "action=DUNNO\n\n")

    # ---- NULs and odd bytes in values ---------------------------------------------------------

    def test_11_nul_bytes_in_values_are_answered_and_never_echoed(self):
        reply = self.ask(request(sender=b"a\x00b@corp.local", helo_name=b"h\x00",
                                 instance=b"\x00"))
        self.assertEqual(reply, "action=DUNNO\n\n")

    def test_12_nul_in_client_address_is_not_that_address(self):
        # per-net allows 3 per /24: three charges with a NUL-suffixed address must not use up
        # 10.7.7.0/24's allowance (the address is not truncated at the NUL).
        for i in range(4):
            self.assertEqual(self.ask(request(client=b"10.7.7.1\x00junk", sender="n%d@x" % i)),
                             "action=DUNNO\n\n", i)
        for i in range(3):
            self.assertEqual(self.ask(request(client="10.7.7.%d" % (i + 1), sender="m%d@x" % i)),
                             "action=DUNNO\n\n", i)
        self.assertTrue(self.ask(request(client="10.7.7.9", sender="m9@x")).startswith(
            "action=450 "))

    def test_13_eight_bit_and_control_bytes_in_sender(self):
        self.assertEqual(self.ask(request(sender=b"\xff\xfe\x80@\xc3\xa9.example")),
                         "action=DUNNO\n\n")
        self.assertEqual(self.ask(request(sender=b"tab\there@x", helo_name=b"\x01\x02")),
                         "action=DUNNO\n\n")

    def test_14_reply_expansion_cannot_inject_a_line(self):
        payload = request(sender=b"evil\rX-Injected: 1\r@x.example", ccert_fingerprint="AA:BB")
        self.assertEqual(self.ask(payload), "action=DUNNO\n\n")
        reply = self.ask(payload)
        self.assertTrue(reply.startswith("action=450 4.7.1 slow down evil"), reply)
        self.assertEqual(reply.count("\n"), 2, reply)
        self.assertNotIn("\r", reply)

    # ---- numbers --------------------------------------------------------------------------

    def test_15_huge_size_against_bytes_limit_is_refused_not_overflowed(self):
        # The fuzz finding: count: bytes, max 1000 per 1h, size=99999999999999.
        reply = self.ask(request(sasl_username="big", size="99999999999999"))
        self.assertTrue(reply.startswith("action=450 "), reply)
        self.assertIn("retry in 3600 s", reply)
        # Nothing was charged: a message of exactly max still fits, then the next does not.
        self.assertEqual(self.ask(request(sasl_username="big", size="1000")), "action=DUNNO\n\n")
        self.assertTrue(self.ask(request(sasl_username="big", size="1")).startswith("action=450"))

    def test_16_huge_size_with_warn_only_passes_and_charges_nothing(self):
        self.assertEqual(self.ask(request(ccert_subject="dry", size="99999999999999")),
                         "action=DUNNO\n\n")
        self.assertIn("warn_only: would refuse", self.d.stderr())
        # The warn-only bucket is still empty: 1000 bytes then 1 more would refuse (warned).
        before = self.d.stderr().count("warn_only: would refuse")
        self.assertEqual(self.ask(request(ccert_subject="dry", size="1000")), "action=DUNNO\n\n")
        self.assertEqual(self.d.stderr().count("warn_only: would refuse"), before)

    def test_17_out_of_range_and_malformed_numbers_close(self):
        for size in ("1125899906842625", "-1", "1e9", "12abc", " 5", "+5",
                     "99999999999999999999999999", "0x10"):
            self.expect_closed(request(sasl_username="num", size=size), "size=%s" % size)
        for count in ("10000001", "-3", "many"):
            self.expect_closed(request(recipient_count=count), "recipient_count=%s" % count)
        self.assertIn("bad size attribute", self.d.stderr())
        self.assertGreaterEqual(self.metric('relaykit_policy_errors_total{kind="malformed"}'), 11)
        # In range: answered.
        self.assertTrue(self.ask(request(sasl_username="num2", size="1125899906842624"))
                        .startswith("action=450"))
        # 10,000,000 recipients is in range, and above per-rcpt-domain's max: never fits.
        reply = self.ask(request(recipient_count="10000000", sender="many@x"))
        self.assertTrue(reply.startswith("action=450 4.7.1 Too much mail (per-rcpt-domain)"),
                        reply)

    # ---- per-message recipient tracking -----------------------------------------------------

    def test_18_thousands_of_long_recipients_in_one_message_stay_bounded(self):
        pid = self.d.pid
        before = rss_kib(pid)
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            for i in range(3000):
                rcpt = "%s%d@dom%d.example" % ("r" * 3900, i, i % 7)
                s.sendall(request("RCPT", sender="bulk@corp.local", recipient=rcpt,
                                  instance="BIG.1"))
                self.assertEqual(read_reply(s), "action=DUNNO\n\n")
            grown = rss_kib(pid) - before
            # Bounded in count only, 1000 x 3.9 KB = 3.9 MB were kept; the bound is 128 KiB.
            sys.stderr.write("RSS growth with 3000 long recipients: %d KiB\n" % grown)
            self.assertLess(grown, 2 * 1024, "RSS grew by %d KiB" % grown)
            s.sendall(request("END-OF-MESSAGE", sender="bulk@corp.local", recipient="",
                              recipient_count="3000", instance="BIG.1"))
            self.assertEqual(read_reply(s), "action=DUNNO\n\n")
        self.assertIn("the rest are not charged to recipient-keyed limits", self.d.stderr())
        self.assertGreaterEqual(
            self.metric('relaykit_policy_errors_total{kind="untracked_recipients"}'), 1)

    def test_19_many_open_messages_stay_bounded(self):
        # Messages that never reach END-OF-MESSAGE, one 4 KB recipient each: 20000 of them are
        # 80+ MB if kept; the total bound (64 MiB) forgets the oldest. A second 20000 must not
        # grow the daemon further (unbounded, it would double).
        pid = self.d.pid
        before = rss_kib(pid)
        sizes = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            batch = 8  # pipelined below kMaxQueuedRequests
            for i in range(0, 40000, batch):
                s.sendall(b"".join(request("RCPT", sender="s@corp.local", recipient="%s%d@d.example"
                                           % ("q" * 4000, i + j), instance="OPEN.%d" % (i + j))
                                   for j in range(batch)))
                self.assertEqual(read_replies(s, batch), ["action=DUNNO\n\n"] * batch)
                if i + batch in (20000, 40000):
                    sizes.append(rss_kib(pid) - before)
        sys.stderr.write("RSS growth with 20000 / 40000 open messages: %d / %d KiB\n"
                         % tuple(sizes))
        self.assertLess(sizes[1] - sizes[0], 8 * 1024, sizes)
        if not asan_build():  # redzones make ASan's allocations larger than what is accounted
            self.assertLess(sizes[1], 74 * 1024, sizes)
        self.assertIn("oldest message(s)", self.d.stderr())

    # ---- key integrity ----------------------------------------------------------------------

    def test_20_separator_injection_cannot_charge_another_principal(self):
        # composite: key [sasl_username, helo_name], max 1. Two different principals whose
        # values joined naively with 0x1f would be the same string.
        a = request(sasl_username=b"a\x1fhelo_name=b", helo_name="c")
        b = request(sasl_username="a", helo_name=b"b\x1fhelo_name=c")
        self.assertEqual(self.ask(a), "action=DUNNO\n\n")
        self.assertEqual(self.ask(b), "action=DUNNO\n\n")  # its own counter: not refused
        self.assertTrue(self.ask(a).startswith("action=450 "))  # a's counter is used up
        self.assertTrue(self.ask(b).startswith("action=450 "))

    def test_21_extension_evasion_is_counted_as_one_sender(self):
        self.assertEqual(self.ask(request(sender="user+1@corp.example", client="10.1.1.1")),
                         "action=DUNNO\n\n")
        self.assertEqual(self.ask(request(sender="user+2@corp.example", client="10.1.2.1")),
                         "action=DUNNO\n\n")
        for sender in ("user+3@corp.example", "user@corp.example", "USER+x@Corp.Example"):
            reply = self.ask(request(sender=sender, client="10.1.3.1"))
            self.assertTrue(reply.startswith("action=450 "), (sender, reply))

    def test_22_plus_forms(self):
        # An empty user is never split ("+x@" is its own principal), a second '+' stays in the
        # extension, and the null sender is not an address at all (no per-sender limit).
        for i in range(2):
            self.assertEqual(self.ask(request(sender="+x@corp.example", client="10.2.%d.1" % i)),
                             "action=DUNNO\n\n")
        self.assertTrue(self.ask(request(sender="+x@corp.example", client="10.2.9.1"))
                        .startswith("action=450"))
        self.assertEqual(self.ask(request(sender="+y@corp.example", client="10.2.8.1")),
                         "action=DUNNO\n\n")
        self.assertEqual(self.ask(request(sender="p+a+b@corp.example", client="10.3.1.1")),
                         "action=DUNNO\n\n")
        self.assertEqual(self.ask(request(sender="p+c@corp.example", client="10.3.2.1")),
                         "action=DUNNO\n\n")
        self.assertTrue(self.ask(request(sender="p@corp.example", client="10.3.3.1"))
                        .startswith("action=450"))
        for i in range(4):
            self.assertEqual(self.ask(request(sender="", client="10.4.%d.1" % i)),
                             "action=DUNNO\n\n")

    def test_23_ipv4_mapped_client_is_the_ipv4_address(self):
        # per-net: 3 per /24, whichever way the address is written.
        for i, client in enumerate(("::ffff:10.9.9.1", "10.9.9.2", "::FFFF:10.9.9.3")):
            self.assertEqual(self.ask(request(client=client, sender="v%d@x" % i)),
                             "action=DUNNO\n\n", client)
        for client in ("10.9.9.4", "::ffff:10.9.9.5"):
            self.assertTrue(self.ask(request(client=client, sender="w@%s" % client))
                            .startswith("action=450"), client)
        # Another mapped network is another principal (not one shared "::/64").
        self.assertEqual(self.ask(request(client="::ffff:10.8.8.1", sender="u@x")),
                         "action=DUNNO\n\n")

    def test_24_ipv4_mapped_client_matches_exemptions(self):
        for i in range(6):  # exempt 192.0.2.0/24: never limited, also when written mapped
            self.assertEqual(self.ask(request(client="::ffff:192.0.2.5", sender="same@x")),
                             "action=DUNNO\n\n", i)

    def test_25_unknown_stage_and_missing_attributes(self):
        self.assertEqual(self.ask(request("VRFY")), "action=DUNNO\n\n")
        self.assertEqual(self.ask(encode([("protocol_state", "END-OF-MESSAGE")])),
                         "action=DUNNO\n\n")
        self.assertEqual(self.ask(encode([("x", "")])), "action=DUNNO\n\n")

    def test_26_many_hostile_connections_then_the_canary(self):
        for i in range(50):
            self.expect_closed(b"junk\n\n" if i % 2 else b"a" * 5000 + b"\n")
        self.assertTrue(self.d.running())
        self.assertEqual(self.ask(request("RCPT", sender="after@corp.local")), "action=DUNNO\n\n")


if __name__ == "__main__":
    harness.main()
