#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_postconf_command.py: `relaykit postconf` against a real private Postfix.

- The printed settings are applied to a private Postfix with `postconf -e`, one line each, and
  mail then flows through all three daemons: the policy service is asked (a limit refuses the
  (N+1)th message), the milter rewrites the envelope sender and removes a header, socketmapd
  routes by transport and rewrites with generic; `--check` on that Postfix finds no trap.
- Unix listeners under the queue directory are printed relative to it, and that wiring carries
  mail through a Postfix whose smtpd, cleanup, trivial-rewrite and smtp are chrooted (as in
  Debian's master.cf), where the absolute path fails with 451 4.7.1.
- `--check` on a main.cf/master.cf holding each known trap reports it (exit 1), and exits 0 on
  a clean one; MAIL_CONFIG is honoured as Postfix's own tools honour it.
"""

import os
import re
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

POSTCONF = os.path.join(harness.POSTFIX_SBIN, "postconf")


def config_text(socketmap_port, milter_port, policy_port, transport_port,
                transport_catchall=False, milter_listen=None, policy_listen=None):
    catchall = '          "*": "smtp:[127.0.0.1]:%d"\n' % transport_port if transport_catchall else ""
    return (
        "postfix:\n"
        "  local_domains: [relay.test.invalid]\n"
        "  smtputf8_enable: false\n"
        "tables:\n"
        "  generic:\n"
        "    search: address\n"
        "    sources:\n"
        "      - entries:\n"
        "          app@srv1.corp.local: app@corp.com\n"
        "  canonical:\n"
        "    search: address\n"
        "    sources:\n"
        "      - entries:\n"
        "          root@srv1.corp.local: noreply@corp.com\n"
        "  transport:\n"
        "    search: transport\n"
        "    sources:\n"
        "      - entries:\n"
        "          partner.example: \"smtp:[127.0.0.1]:%d\"\n" % transport_port
        + catchall +
        "  sender_relay:\n"
        "    search: sender\n"
        "    sources:\n"
        "      - entries:\n"
        "          alerts@corp.com: \"[127.0.0.1]:%d\"\n" % transport_port
        + "socketmap:\n  listen: inet:127.0.0.1:%d\n" % socketmap_port
        + "milter:\n  listen: %s\n" % (milter_listen or "inet:127.0.0.1:%d" % milter_port)
        + "  header_rules:\n    - match: '^X-Secret:'\n      action: remove\n"
        "  rewrite_sender:\n    table: canonical\n"
        "policy:\n  listen: %s\n" % (policy_listen or "inet:127.0.0.1:%d" % policy_port)
        + "  store: memory\n"
        "  limits:\n"
        "    - name: per-sender\n      key: [sender]\n      count: messages\n"
        "      max: 2\n      per: 1h\n"
        "      reply: \"450 4.7.1 Too many messages from $sender\"\n")


def relaykit(*args, env=None):
    return subprocess.run([harness.binary_path("relaykit")] + list(args), capture_output=True,
                          text=True, timeout=60, env=env)


def settings_lines(output):
    """The `name = value` lines of relaykit postconf output, before any `# master.cf` line."""
    lines = []
    for line in output.splitlines():
        if line.strip() == "# master.cf":
            break
        if line.strip() and not line.startswith("#"):
            lines.append(line)
    return lines


# Debian's stock master.cf services that matter here: smtpd, cleanup, trivial-rewrite and smtp
# chrooted, as Debian ships them.
DEBIAN_MASTER_CF = """\
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
bounce    unix  -       -       y       -       0       bounce
smtp      unix  -       -       y       -       -       smtp
showq     unix  n       -       y       -       -       showq
"""


class PostconfCommandTest(harness.E2ETestCase):

    def ports(self):
        return [harness.free_port() for _ in range(4)]

    def write_config(self, text):
        path = os.path.join(self.tmp, "relaykit.yaml")
        harness.write_file(path, text)
        return path

    # ---- the printed wiring, applied to a real Postfix ----------------------------------------
    def test_wired_postfix_mail_flows(self):
        sink = self.start_sink("smarthost")
        partner = self.start_sink("partner")
        sm, mi, po, _ = self.ports()
        path = self.write_config(config_text(sm, mi, po, partner.port))
        self.start_daemon("relaykit-socketmapd", path)
        self.start_daemon("relaykit-milter", path)
        policyd = self.start_daemon("relaykit-policyd", path)
        pf = self.start_postfix(relay_port=sink.port)

        out = relaykit("postconf", "-c", path)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = settings_lines(out.stdout)
        for line in out.stdout.splitlines():
            self.assertTrue(line.startswith("#") or " = " in line, line)
        names = [line.split(" = ", 1)[0] for line in lines]
        for name in ("transport_maps", "smtp_generic_maps", "sender_dependent_relayhost_maps",
                     "smtpd_milters", "non_smtpd_milters", "milter_default_action",
                     "smtpd_relay_restrictions", "smtpd_end_of_data_restrictions"):
            self.assertIn(name, names)
        # The canonical table is the milter's rewrite_sender: not wired twice.
        self.assertNotIn("sender_canonical_maps", names)
        # No limit needs the recipients: the policy service is asked at END-OF-DATA only.
        self.assertNotIn("smtpd_recipient_restrictions", names)
        for line in lines:
            pf.postconf("-e", line)
        pf.reload()
        self.assertIn("check_policy_service", pf.postconf("-h", "smtpd_end_of_data_restrictions"))

        check = relaykit("postconf", "-c", path, "--check", "-C", pf.etc)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn("no known trap", check.stdout)

        msg = harness.make_message("root@srv1.corp.local", "user@example.net", "wired",
                                   extra_headers=(("X-Secret", "42"),))
        harness.send_smtp(pf.port, "root@srv1.corp.local", ["user@example.net"], msg)
        harness.send_smtp(pf.port, "app@srv1.corp.local", ["someone@partner.example"],
                          harness.make_message("app@srv1.corp.local", "someone@partner.example",
                                               "to the partner"))
        got = sink.messages(wait_for=1)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].sender, "noreply@corp.com")    # milter rewrite_sender
        self.assertIsNone(got[0].header("X-Secret"))            # milter header rule
        routed = partner.messages(wait_for=1)
        self.assertEqual(routed[0].sender, "app@corp.com")      # socketmap generic
        self.assertEqual(routed[0].header("Subject"), "to the partner")  # socketmap transport
        # The policy service counts at END-OF-DATA: the third message of a sender is refused.
        harness.send_smtp(pf.port, "root@srv1.corp.local", ["b@example.net"],
                          harness.make_message("root@srv1.corp.local", "b@example.net", "two"))
        with self.assertRaises(smtplib.SMTPException) as refused:
            harness.send_smtp(pf.port, "root@srv1.corp.local", ["c@example.net"],
                              harness.make_message("root@srv1.corp.local", "c@example.net", "3"))
        self.assertIn("Too many messages", str(refused.exception))
        self.assertIn("limit=per-sender", policyd.stderr())

    def test_chroot(self):
        """Unix listeners in the queue directory, smtpd/cleanup/trivial-rewrite/smtp chrooted as
        Debian's master.cf has them: the printed (relative) wiring works; the absolute path
        gives 451 4.7.1, and --check says so."""
        sink = self.start_sink("smarthost")
        pf = self.start_postfix(relay_port=sink.port)
        private = os.path.join(pf.queue, "private")
        socks = {k: os.path.join(private, "rk" + k) for k in ("s", "m", "p")}
        text = config_text(0, 0, 0, harness.free_port(),
                           milter_listen="unix:" + socks["m"], policy_listen="unix:" + socks["p"])
        text = text.replace("socketmap:\n  listen: inet:127.0.0.1:0\n",
                            "socketmap:\n  listen: unix:%s\n  socket_mode: \"0666\"\n" % socks["s"])
        text = text.replace("milter:\n  listen: unix:%s\n" % socks["m"],
                            "milter:\n  listen: unix:%s\n  socket_mode: \"0666\"\n" % socks["m"])
        text = text.replace("policy:\n  listen: unix:%s\n" % socks["p"],
                            "policy:\n  listen: unix:%s\n  socket_mode: \"0666\"\n" % socks["p"])
        path = self.write_config(text)
        for binary, key in (("relaykit-socketmapd", "s"), ("relaykit-milter", "m"),
                            ("relaykit-policyd", "p")):
            self.start_daemon(binary, path, unix_socket=socks[key])
        out = relaykit("postconf", "-c", path, "--queue-directory", pf.queue)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("smtpd_milters = unix:private/rkm\n", out.stdout)
        self.assertIn("transport_maps = socketmap:unix:private/rks:transport\n", out.stdout)
        for line in settings_lines(out.stdout):
            pf.postconf("-e", line)
        master = os.path.join(pf.etc, "master.cf")
        with open(master) as f:
            lines = f.read().splitlines()
        chrooted = []
        for line in lines:
            fields = line.split()
            if len(fields) >= 8 and fields[7] in ("smtpd", "cleanup", "trivial-rewrite", "smtp"):
                fields[4] = "y"
                line = " ".join(fields)
            chrooted.append(line)
        harness.write_file(master, "\n".join(chrooted) + "\n")
        pf.reload()
        check = relaykit("postconf", "-c", path, "--check", "-C", pf.etc)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

        harness.send_smtp(pf.port, "root@srv1.corp.local", ["user@example.net"],
                          harness.make_message("root@srv1.corp.local", "user@example.net",
                                               "chrooted", extra_headers=(("X-Secret", "1"),)))
        got = sink.messages(wait_for=1)
        self.assertEqual(got[0].sender, "noreply@corp.com")
        self.assertIsNone(got[0].header("X-Secret"))

        # The absolute path, as a non-chrooted setup would write it: smtpd cannot see it.
        pf.postconf("-e", "smtpd_milters = unix:" + socks["m"])
        pf.reload()
        check = relaykit("postconf", "-c", path, "--check", "-C", pf.etc)
        self.assertEqual(check.returncode, 1, check.stdout)
        self.assertIn("unix-socket-outside-chroot: smtpd_milters:", check.stdout)
        with self.assertRaises(smtplib.SMTPException) as refused:
            harness.send_smtp(pf.port, "app@corp.local", ["user@example.net"],
                              harness.make_message("app@corp.local", "user@example.net", "abs"))
        self.assertIn("4.7.1", str(refused.exception))
        pf.wait_log(r"connect to Milter service unix:%s: No such file or directory"
                    % re.escape(socks["m"]))

    def test_unix_listeners_relative_to_queue_directory(self):
        sm, _, _, tp = self.ports()
        path = self.write_config(config_text(
            sm, 0, 0, tp, milter_listen="unix:/var/spool/postfix/private/relaykit-milter",
            policy_listen="unix:/run/relaykit/policy.sock"))
        out = relaykit("postconf", "-c", path)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("smtpd_milters = unix:private/relaykit-milter\n", out.stdout)
        # Outside the queue directory the path stays absolute (and --check reports it when
        # smtpd is chrooted: see test_each_trap).
        self.assertIn("check_policy_service { unix:/run/relaykit/policy.sock,", out.stdout)

    def test_config_error_exits_1(self):
        path = self.write_config("tables:\n  t:\n    search: nonsense\n")
        out = relaykit("postconf", "-c", path)
        self.assertEqual(out.returncode, 1)
        self.assertIn("relaykit.yaml:3:", out.stderr)

    # ---- --check on written main.cf / master.cf -------------------------------------------------
    def postfix_dir(self, name, main_cf, master_cf=DEBIAN_MASTER_CF):
        d = self.subdir(name)
        harness.write_file(os.path.join(d, "main.cf"),
                           "compatibility_level = 3.6\nmynetworks = 127.0.0.0/8\n" + main_cf)
        harness.write_file(os.path.join(d, "master.cf"), master_cf)
        return d

    def clean_main_cf(self, sm, mi, po):
        return (
            "relayhost = [127.0.0.1]:2527\n"
            "transport_maps = socketmap:inet:127.0.0.1:%d:transport\n" % sm
            + "smtp_generic_maps = socketmap:inet:127.0.0.1:%d:generic\n" % sm
            + "sender_dependent_relayhost_maps = socketmap:inet:127.0.0.1:%d:sender_relay\n" % sm
            + "smtpd_milters = inet:127.0.0.1:%d\n" % mi
            + "non_smtpd_milters = $smtpd_milters\n"
            "milter_default_action = tempfail\n"
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
            "smtpd_recipient_restrictions = check_policy_service "
            "{ inet:127.0.0.1:%d, timeout=10s, default_action=DUNNO }\n" % po
            + "smtpd_end_of_data_restrictions = check_policy_service inet:127.0.0.1:%d\n" % po)

    def test_clean_main_cf_and_mail_config(self):
        sm, mi, po, tp = self.ports()
        path = self.write_config(config_text(sm, mi, po, tp))
        d = self.postfix_dir("clean", self.clean_main_cf(sm, mi, po))
        out = relaykit("postconf", "-c", path, "--check", "-C", d)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        # MAIL_CONFIG names the instance when -C is absent, as for postconf(1) itself.
        bad = self.postfix_dir("bad", self.clean_main_cf(sm, mi, po)
                               + "milter_default_action = accept\n")
        env = dict(os.environ, MAIL_CONFIG=bad)
        out = relaykit("postconf", "-c", path, "--check", env=env)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("milter-default-accept", out.stdout)
        env = dict(os.environ, MAIL_CONFIG=d)
        self.assertEqual(relaykit("postconf", "-c", path, "--check", env=env).returncode, 0)

    def test_each_trap(self):
        sm, mi, po, tp = self.ports()
        clean = self.clean_main_cf(sm, mi, po)
        cases = {
            "permit-before-policy":
                clean + "smtpd_recipient_restrictions = permit_mynetworks, "
                        "reject_unauth_destination, check_policy_service inet:127.0.0.1:%d\n" % po,
            "milter-default-accept": clean + "milter_default_action = accept\n",
            "table-not-served":
                clean + "recipient_canonical_maps = socketmap:inet:127.0.0.1:%d:nosuchtable\n" % sm,
            "anvil-exempts-mynetworks": clean + "smtpd_client_message_rate_limit = 100\n",
            "sender-rewritten-twice":
                clean + "sender_canonical_maps = socketmap:inet:127.0.0.1:%d:canonical\n" % sm,
        }
        path = self.write_config(config_text(sm, mi, po, tp))
        for trap, main_cf in cases.items():
            with self.subTest(trap=trap):
                d = self.postfix_dir(trap, main_cf)
                out = relaykit("postconf", "-c", path, "--check", "-C", d)
                self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
                self.assertIn(trap + ":", out.stdout)
                self.assertIn("  fix: ", out.stdout)
                self.assertIn("1 trap(s) found", out.stdout)

        # A transport catch-all beating sender_dependent_relayhost_maps (the table has "*").
        catchall = self.write_config(config_text(sm, mi, po, tp, transport_catchall=True))
        d = self.postfix_dir("catchall", clean)
        out = relaykit("postconf", "-c", catchall, "--check", "-C", d)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("transport-catchall:", out.stdout)

        # Unix sockets outside the chroot: absolute paths with Debian's chrooted smtpd/cleanup,
        # fine when the same services are not chrooted.
        unix_cfg = self.write_config(config_text(
            sm, mi, po, tp, milter_listen="unix:/var/spool/postfix/private/relaykit-milter",
            policy_listen="unix:/run/relaykit/policy.sock"))
        main_cf = clean.replace("inet:127.0.0.1:%d" % mi,
                                "unix:/var/spool/postfix/private/relaykit-milter")
        main_cf = main_cf.replace("inet:127.0.0.1:%d" % po, "unix:/run/relaykit/policy.sock")
        d = self.postfix_dir("chroot", main_cf)
        out = relaykit("postconf", "-c", unix_cfg, "--check", "-C", d)
        self.assertEqual(out.returncode, 1, out.stdout)
        self.assertIn("unix-socket-outside-chroot: smtpd_milters:", out.stdout)
        self.assertIn("unix-socket-outside-chroot: smtpd_recipient_restrictions:", out.stdout)
        self.assertIn("write unix:private/relaykit-milter", out.stdout)
        d = self.postfix_dir("nochroot", main_cf, DEBIAN_MASTER_CF.replace(" y ", " n "))
        out = relaykit("postconf", "-c", unix_cfg, "--check", "-C", d)
        self.assertEqual(out.returncode, 0, out.stdout)
        # The relative form relaykit postconf prints passes in the chroot.
        d = self.postfix_dir("relative", main_cf.replace(
            "unix:/var/spool/postfix/private/relaykit-milter", "unix:private/relaykit-milter"))
        out = relaykit("postconf", "-c", unix_cfg, "--check", "-C", d)
        self.assertNotIn("smtpd_milters", out.stdout)

    def test_postconf_missing_instance_exits_2(self):
        sm, mi, po, tp = self.ports()
        path = self.write_config(config_text(sm, mi, po, tp))
        out = relaykit("postconf", "-c", path, "--check", "-C", os.path.join(self.tmp, "none"))
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertIn("postconf", out.stderr)


if __name__ == "__main__":
    harness.main()
