#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_milter_protocol.py: relaykit-milter's milter protocol engine against clients that are not
Postfix, hostile packets, connection floods, and the daemon skeleton's common behaviour.

- Debian's miltertest (Lua scripts): protocol version 6 with every option offered (no-reply flags,
  leading space, end-of-message edits checked with mt.eom_check), version 2 with every step
  answered, unknown SMTP commands, abort, a second message on one connection, on_error both ways.
- Raw packets: a length of 4 GiB and a command code outside the protocol close that connection
  only; a header packet of 100 KiB (Postfix's header_size_limit) is served; an MTA that does not
  allow sender changes gets tempfail with nothing half-applied. A long header through a real
  Postfix is filtered (Postfix itself hands milters at most ~60 KB of one header).
- 200 idle connections that never negotiate do not keep Postfix out (max_sessions: 4); they are
  closed after the first-packet deadline. Negotiated sessions idle between messages give their
  slot to Postfix. /health says 503 "saturated" while every slot is busy.
- The shared skeleton: --version, reload metrics, the unix socket removed at stop.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from milter_fixtures import SEED_MILTER, TABLES, MilterTestCase  # noqa: E402

MILTERTEST = "/usr/bin/miltertest"

# Header rules that exercise every modification relaykit makes.
EDIT_RULES = """\
on_error: tempfail
header_checks: |
  /^X-Originating-IP:/   IGNORE
  /^Subject: old/        REPLACE Subject: new
  /^X-Tag:/              PREPEND X-Seen: yes
rewrite_from:
  table: generic
  headers: [From]
rewrite_sender:
  table: canonical
"""


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def optneg(version=6, actions=0x1FF, protocol=0x1FFFFF):
    return packet(b"O", struct.pack(">III", version, actions, protocol))


def recv_packet(sock):
    """One reply packet (command, data), or None when the milter closed the connection."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (length,) = struct.unpack(">I", head)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return body[:1], body[1:]


def closed_by_peer(sock, timeout=5.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class MilterProtocolTest(MilterTestCase):
    def start_milter(self, body=EDIT_RULES, unix=False, env=None):
        if unix:
            sock = os.path.join(self.subdir("milter"), "m.sock")
            listen, port = "unix:" + sock, None
        else:
            port = harness.free_port()
            listen = "inet:127.0.0.1:%d" % port
        self.config_path = self.write_config(body, listen)
        saved = dict(os.environ)
        os.environ.update(env or {})
        try:
            milter = self.start_daemon("relaykit-milter", self.config_path, port=port,
                                       unix_socket=sock if unix else None)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return milter, listen

    def connect(self, milter):
        s = socket.create_connection(("127.0.0.1", milter.port), timeout=10)
        self.addCleanup(s.close)
        return s

    def miltertest(self, listen, script):
        """Runs a miltertest Lua script against `listen`; it must print 'ok' and exit 0."""
        path = os.path.join(self.tmp, "t%d.lua" % time.monotonic_ns())
        spec = listen
        if listen.startswith("inet:"):
            host, port = listen[len("inet:"):].rsplit(":", 1)
            spec = "inet:%s@%s" % (port, host)
        # miltertest exits 1 without a word on a Lua error: say what failed first.
        prologue = ('function fail(m) mt.echo("FAIL: " .. m); error(m) end\n'
                    'conn = mt.connect("%s")\nif conn == nil then fail("connect") end\n' % spec)
        harness.write_file(path, prologue + script.replace("error(", "fail(")
                           + '\nmt.disconnect(conn)\nmt.echo("ok")\n')
        p = subprocess.run([MILTERTEST, "-s", path], capture_output=True, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout.strip().splitlines()[-1:] if p.stdout else []),
                         (0, ["ok"]), "miltertest:\n%s\n%s" % (p.stdout, p.stderr))

    # ---- miltertest ----

    def test_miltertest_version6_all_options(self):
        milter, listen = self.start_milter()
        self.miltertest(listen, r'''
if mt.negotiate(conn, nil, nil, nil) ~= nil then error("negotiate") end
for _, o in ipairs({SMFIP_HDR_LEADSPC, SMFIP_NR_HDR, SMFIP_NR_MAIL, SMFIP_NOCONNECT,
                    SMFIP_NOHELO, SMFIP_NOBODY, SMFIP_NORCPT}) do
  if not mt.test_option(conn, o) then error("option not requested: " .. o) end
end
if mt.test_option(conn, SMFIP_NOHDRS) then error("headers skipped") end
for _, a in ipairs({SMFIF_CHGHDRS, SMFIF_ADDHDRS, SMFIF_CHGFROM}) do
  if not mt.test_action(conn, a) then error("action not requested: " .. a) end
end
if mt.test_action(conn, SMFIF_ADDRCPT) then error("asks to add recipients") end
mt.macro(conn, SMFIC_MAIL, "{auth_authen}", "alice")
if mt.mailfrom(conn, "<root@relay.corp.local>", "RET=HDRS") ~= nil then error("mail") end
for _, h in ipairs({{"From", "Root <root@relay.corp.local>"}, {"Subject", "old news"},
                    {"X-Originating-IP", "[10.1.2.3]"}, {"X-Tag", "t"}}) do
  if mt.header(conn, h[1], h[2]) ~= nil then error("header " .. h[1]) end
end
-- (no mt.eoh: relaykit asked to skip it, and miltertest then refuses to send it)
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("eom reply") end
if not mt.eom_check(conn, MT_HDRDELETE, "X-Originating-IP") then error("no delete") end
if not mt.eom_check(conn, MT_HDRCHANGE, "Subject", " new") then error("no subject") end
if not mt.eom_check(conn, MT_HDRCHANGE, "From", " Root <noreply@corp.com>") then
  error("no from") end
if not mt.eom_check(conn, MT_HDRINSERT, "X-Seen", " yes") then error("no insert") end
-- the next message on the same connection: state was reset
if mt.mailfrom(conn, "<someone@partner.example>") ~= nil then error("mail 2") end
if mt.header(conn, "From", "someone@partner.example") ~= nil then error("header 2") end
if mt.eom(conn) ~= nil then error("eom 2") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("eom 2 reply") end
if mt.eom_check(conn, MT_HDRCHANGE) then error("changed an unrelated message") end
''')
        self.assertIn("from=<root@relay.corp.local> -> <noreply@corp.com>", milter.stderr())

    def test_miltertest_version2_every_step_answered(self):
        # Version 2 with the v2 steps offered: no no-reply flags, no leading space; every step
        # gets CONTINUE, unknown SMTP commands included.
        # Rules that need the client, HELO and recipients, so those steps are not skipped.
        milter, listen = self.start_milter(EDIT_RULES.replace(
            "rewrite_sender:\n  table: canonical\n", "").replace(
            "header_checks:", "header_rules:\n"
            "  - match: '^X-Never:'\n    action: remove\n"
            "    when: {client: [192.0.2.0/24], helo: 'x', recipient: 'y'}\n"
            "header_checks:"), unix=True)
        self.miltertest(listen, r'''
if mt.negotiate(conn, 2, 0x3F, 0x7F) ~= nil then error("negotiate") end
if mt.test_option(conn, SMFIP_HDR_LEADSPC) then error("leading space on v2") end
if mt.conninfo(conn, "client.example", "192.0.2.7") ~= nil then error("conninfo") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("conninfo reply") end
if mt.helo(conn, "client.example") ~= nil then error("helo") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("helo reply") end
if mt.mailfrom(conn, "<root@relay.corp.local>") ~= nil then error("mail") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("mail reply") end
if mt.rcptto(conn, "<ops@example.com>") ~= nil then error("rcpt") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("rcpt reply") end
if mt.header(conn, "Subject", "old one") ~= nil then error("header") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("header reply") end
-- (no EOH and body: relaykit asks to skip them on every version)
if not mt.test_option(conn, SMFIP_NOBODY) then error("body not skipped") end
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("eom reply") end
if not mt.eom_check(conn, MT_HDRCHANGE, "Subject", " new") then error("no subject") end
if mt.abort(conn) ~= nil then error("abort") end
if mt.unknown(conn, "XYZZY") ~= nil then error("unknown") end
if mt.getreply(conn) ~= SMFIR_CONTINUE then error("unknown reply") end
''')
        self.assertTrue(milter.running())

    def test_mta_without_sender_changes_gets_tempfail(self):
        # An MTA offering header changes but not SMFIF_CHGFROM (raw packets: miltertest always
        # offers every action): the sender rewrite cannot be made, so on_error (tempfail)
        # applies and no header edit is sent half-way.
        milter, _ = self.start_milter()
        s = self.connect(milter)
        s.sendall(optneg(6, 0x3F))
        cmd, data = recv_packet(s)
        self.assertEqual(cmd, b"O")
        (actions,) = struct.unpack(">I", data[4:8])
        self.assertEqual(actions & 0x40, 0)  # SMFIF_CHGFROM not taken
        s.sendall(packet(b"M", b"<root@relay.corp.local>\0")
                  + packet(b"L", b"X-Originating-IP\0 1.2.3.4\0") + packet(b"E"))
        self.assertEqual(recv_packet(s), (b"t", b""))
        self.assertIn("the MTA did not allow sender changes; on_error=tempfail", milter.stderr())

    def test_miltertest_injected_fault_each_on_error(self):
        for on_error, reply in (("tempfail", "SMFIR_TEMPFAIL"), ("accept", "SMFIR_CONTINUE")):
            milter, listen = self.start_milter(
                EDIT_RULES.replace("on_error: tempfail", "on_error: " + on_error),
                env={"RELAYKIT_MILTER_FAULT": "eom"})
            self.miltertest(listen, r'''
if mt.negotiate(conn, nil, nil, nil) ~= nil then error("negotiate") end
if mt.mailfrom(conn, "<root@relay.corp.local>") ~= nil then error("mail") end
if mt.header(conn, "X-Originating-IP", "1.2.3.4") ~= nil then error("header") end
if mt.eom(conn) ~= nil then error("eom") end
if mt.getreply(conn) ~= %s then error("reply") end
if mt.eom_check(conn, MT_HDRDELETE) then error("edited a failed message") end
''' % reply)
            milter.stop()

    # ---- raw packets ----

    def test_4gib_length_and_unknown_command_close_that_connection_only(self):
        milter, _ = self.start_milter()
        bad = self.connect(milter)
        bad.sendall(b"\xff\xff\xff\xffL")
        self.assertTrue(closed_by_peer(bad), "a 4 GiB packet header left the session open")
        odd = self.connect(milter)
        odd.sendall(optneg())
        self.assertEqual(recv_packet(odd)[0], b"O")
        odd.sendall(packet(b"z", b"junk"))
        self.assertTrue(closed_by_peer(odd))
        # Others are served meanwhile.
        good = self.connect(milter)
        good.sendall(optneg())
        self.assertEqual(recv_packet(good)[0], b"O")
        err = milter.stderr()
        self.assertIn("packet length 4294967295 over the limit of 131070", err)
        self.assertIn("unknown milter command 0x7a", err)
        self.assertTrue(milter.running())

    def test_100k_header_packet_is_served(self):
        # Postfix's own bound is 2 x 65535 bytes per packet; a header of 100 KiB (Postfix's
        # default header_size_limit) is one packet, and the session goes on.
        milter, _ = self.start_milter()
        s = self.connect(milter)
        s.sendall(optneg())
        self.assertEqual(recv_packet(s)[0], b"O")
        big = b"x" * 102400
        s.sendall(packet(b"M", b"<root@relay.corp.local>\0")
                  + packet(b"L", b"X-Big\0 " + big + b"\0")
                  + packet(b"L", b"From\0 root@relay.corp.local\0")
                  + packet(b"L", b"X-Originating-IP\0 [10.1.2.3]\0")
                  + packet(b"E"))
        replies = []
        while not replies or replies[-1][0] not in (b"c", b"t"):
            r = recv_packet(s)
            self.assertIsNotNone(r, "session closed on a 100 KiB header")
            replies.append(r)
        self.assertEqual([r[0] for r in replies], [b"m", b"m", b"e", b"c"])
        self.assertEqual(replies[2][1], b"<noreply@corp.com>\0")

    def test_long_header_through_postfix_is_filtered(self):
        # A folded header of 84 KiB: Postfix (3.7) hands milters at most ~60 KB of one header
        # and delivers what it handed; the message is filtered, neither deferred nor bounced.
        sink, milter, pf = self.start_milter_stack()
        big = "X-Big:" + "\r\n".join(" " + " ".join("w%05d" % (i * 120 + j) for j in range(120))
                                     for i in range(100))
        msg = ("From: Root <root@relay.corp.local>\r\nTo: ops@example.com\r\nSubject: big\r\n"
               + big + "\r\nX-Originating-IP: [10.1.2.3]\r\n\r\nbody\r\n")
        self.send(pf, "root@relay.corp.local", ["ops@example.com"], msg)
        m = self.one_message(sink)
        self.assertEqual(m.sender, "noreply@corp.com")
        self.assertEqual(m.header("From"), "Root <noreply@corp.com>")
        self.assertIsNone(m.header("X-Originating-IP"))
        self.assertTrue(m.header("X-Big").startswith("w00000 w00001"))

    # ---- floods, slots, health ----

    def test_idle_flood_does_not_keep_postfix_out(self):
        metrics = harness.free_port()
        body = "max_sessions: 4\nmetrics_listen: 127.0.0.1:%d\n" % metrics + SEED_MILTER
        sink, milter, pf = self.start_milter_stack(body)
        idle = [self.connect(milter) for _ in range(200)]
        t0 = time.monotonic()
        self.send(pf, "root@relay.corp.local", ["ops@example.com"],
                  "From: root@relay.corp.local\r\nSubject: through\r\n\r\nhi\r\n")
        self.assertEqual(self.one_message(sink).sender, "noreply@corp.com")
        self.assertLess(time.monotonic() - t0, 8)
        # Connections that never send a packet are closed after the first-packet deadline.
        deadline = time.monotonic() + 30
        for s in idle:
            self.assertTrue(closed_by_peer(s, max(0.1, deadline - time.monotonic())))
        self.assertIn("no milter command within 10 s", milter.stderr())
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics,
                                      timeout=5).read().decode()
        self.assertIn('relaykit_milter_sessions_closed_total{reason="timeout"} 200', text)

    def test_idle_sessions_give_their_slot_to_postfix(self):
        # Every slot held by negotiated sessions: the one idle between messages for 30 s is
        # closed when Postfix needs a slot; the one inside a message is kept.
        metrics = harness.free_port()
        body = "max_sessions: 2\nmetrics_listen: 127.0.0.1:%d\n" % metrics + SEED_MILTER
        sink, milter, pf = self.start_milter_stack(body)
        idle = self.connect(milter)
        busy = self.connect(milter)
        for s in (idle, busy):
            s.sendall(optneg())
            self.assertEqual(recv_packet(s)[0], b"O")
        busy.sendall(packet(b"M", b"<someone@partner.example>\0"))
        time.sleep(31)
        t0 = time.monotonic()
        self.send(pf, "root@relay.corp.local", ["ops@example.com"],
                  "From: root@relay.corp.local\r\nSubject: through\r\n\r\nhi\r\n")
        self.assertEqual(self.one_message(sink).sender, "noreply@corp.com")
        self.assertLess(time.monotonic() - t0, 8)
        self.assertTrue(closed_by_peer(idle, 5))
        self.assertFalse(closed_by_peer(busy, 0.5))
        self.assertIn("while every session is busy (max_sessions)", milter.stderr())
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics,
                                      timeout=5).read().decode()
        self.assertIn('relaykit_milter_sessions_closed_total{reason="evicted"} 1', text)

    def test_health_saturated_and_waiting_session_served_later(self):
        metrics = harness.free_port()
        milter, _ = self.start_milter("max_sessions: 1\nmetrics_listen: 127.0.0.1:%d\n"
                                      % metrics + EDIT_RULES)

        def health():
            try:
                r = urllib.request.urlopen("http://127.0.0.1:%d/health" % metrics, timeout=5)
                return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        self.assertEqual(health()[0], 200)
        first = self.connect(milter)
        first.sendall(optneg())
        self.assertEqual(recv_packet(first)[0], b"O")
        code, text = health()
        self.assertEqual(code, 503)
        self.assertIn("saturated", text)
        second = self.connect(milter)
        second.sendall(optneg())
        second.settimeout(1.0)
        with self.assertRaises(socket.timeout):
            recv_packet(second)  # waits for the slot
        self.assertIn("sessions busy (max_sessions)", milter.stderr())
        first.sendall(packet(b"Q"))
        second.settimeout(10)
        self.assertEqual(recv_packet(second)[0], b"O")
        second.sendall(packet(b"Q"))
        harness.wait_until(lambda: health()[0] == 200, 10, "health back to 200")

    # ---- the shared daemon skeleton ----

    def test_version_reload_metrics_and_socket_cleanup(self):
        out = subprocess.run([harness.binary_path("relaykit-milter"), "--version"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        self.assertIn("relaykit", out.stdout)
        metrics = harness.free_port()
        milter, listen = self.start_milter("metrics_listen: 127.0.0.1:%d\n" % metrics
                                           + EDIT_RULES, unix=True)
        sock = listen[len("unix:"):]
        milter.hup()
        harness.wait_until(lambda: "reload: configuration loaded" in milter.stderr(), 10,
                           "reload")
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics,
                                      timeout=5).read().decode()
        self.assertIn('relaykit_config_reloads_total{result="ok"} 1', text)
        self.assertEqual(milter.kill(signal.SIGTERM), 0)
        self.assertFalse(os.path.exists(sock), "socket left behind")


if __name__ == "__main__":
    harness.main()
