#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_policy_allowance_files.py: per-principal allowances from files (`allowances_file:`).

relaykit-policyd on the wire (direct policy requests at END-OF-MESSAGE), memory and Redis
stores: a texthash: source and a hash: .db built by the real `postmap` give principals their
own allowance (exact keys, composite keys, @domain); `relaykit limits show` names the line or
key an allowance comes from; changing either file WITHOUT a SIGHUP is picked up within seconds
and the counts already used are kept; a bad line refuses the reload (the old allowances keep
serving) and `relaykit check` reports it as FILE:LINE:COL. Every key of a postmap-built .db
(with and without -N, the trailing NUL) reads as `postmap -q` answers it. A 100,000-entry file
reloads off the event loop: the worst decision latency during the reload is measured.
"""

import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DUNNO = "action=DUNNO\n\n"


def request(sender, sasl="", client="10.0.0.1"):
    attrs = {"request": "smtpd_access_policy", "protocol_state": "END-OF-MESSAGE",
             "protocol_name": "ESMTP", "client_address": client, "client_name": "unknown",
             "sender": sender, "recipient": "r@example.net", "recipient_count": "1",
             "instance": "1.1", "size": "0", "sasl_username": sasl}
    return "".join("%s=%s\n" % kv for kv in attrs.items()).encode() + b"\n"


def ask(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        return harness.read_policy_reply(s)


def rewrite(path, text):
    """Rewrites a file in place (same inode), as an editor or `cat >` does."""
    with open(path, "w") as f:
        f.write(text)


class AllowanceFilesTest(harness.E2ETestCase):
    def postfix_etc(self):
        """A Postfix configuration directory for postmap (no running Postfix needed)."""
        etc = os.path.join(self.tmp, "postfix-etc")
        os.makedirs(etc, exist_ok=True)
        harness.write_file(os.path.join(etc, "main.cf"), "compatibility_level = 3.6\n")
        return etc

    def postmap(self, etc, *args):
        return harness.run([os.path.join(harness.POSTFIX_SBIN, "postmap"), "-c", etc] + list(args))

    def postmap_q(self, etc, key, table):
        proc = harness.run([os.path.join(harness.POSTFIX_SBIN, "postmap"), "-c", etc, "-q", key,
                            table], check=False)
        self.assertIn(proc.returncode, (0, 1), proc.stderr)
        return proc.stdout.rstrip("\n") if proc.returncode == 0 else None

    def config(self, body, port, store, redis=None):
        head = "  admin_socket: %s\n" % os.path.join(self.tmp, "admin.%d.sock" % port)
        tail = ""
        if store == "redis":
            head = "  store: redis\n"
            tail = "redis:\n  address: 127.0.0.1:%d\n  timeout_ms: 500\n" % redis.port
        path = os.path.join(self.tmp, "relaykit.%d.yaml" % port)
        harness.write_file(path, "policy:\n  listen: inet:127.0.0.1:%d\n%s%s%s"
                           % (port, head, body, tail))
        return path

    def limits_show(self, path, *attrs):
        r = subprocess.run([harness.binary_path("relaykit"), "limits", "show"] + list(attrs)
                           + ["-c", path], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_texthash_and_hash_files_memory_and_redis(self):
        etc = self.postfix_etc()
        for store in ("memory", "redis"):
            with self.subTest(store=store):
                redis = self.start_redis() if store == "redis" else None
                text = os.path.join(self.tmp, "senders-%s" % store)
                harness.write_file(text, "# per-sender allowances\n"
                                         "Monitor@corp.local   3/1h\n"
                                         "@bulk.org            2/1h\n"
                                         "@batch.org           100/1h\n")
                pairs = os.path.join(self.tmp, "pairs-%s" % store)
                harness.write_file(pairs, "batch,batch.org 4/1h\n")
                self.postmap(etc, "hash:" + pairs)
                port = harness.free_port()
                path = self.config(
                    "  limits:\n"
                    "    - name: s\n      key: [sender]\n      max: 1\n      per: 1h\n"
                    "      allowances_file: texthash:%s\n"
                    "    - name: h\n      key: [sasl_username, sender_domain]\n"
                    "      max: 1\n      per: 1h\n      allowances_file: hash:%s\n"
                    % (text, pairs), port, store, redis)
                check = subprocess.run([harness.binary_path("relaykit"), "check", "-c", path],
                                       capture_output=True, text=True, timeout=30)
                self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
                d = self.start_daemon("relaykit-policyd", path)

                def eom(sender, sasl=""):
                    return ask(d.port, request(sender, sasl))

                self.assertEqual([eom("monitor+disk@corp.local") for _ in range(3)], [DUNNO] * 3)
                self.assertTrue(eom("monitor@corp.local").startswith("action=450 "))
                self.assertEqual([eom("a@bulk.org") for _ in range(2)], [DUNNO] * 2)
                self.assertTrue(eom("a@bulk.org").startswith("action=450 "))
                self.assertEqual(eom("b@bulk.org"), DUNNO)  # each sender its own counter
                self.assertEqual(eom("app@corp.local"), DUNNO)
                self.assertTrue(eom("app@corp.local").startswith("action=450 "))
                # hash: [sasl_username, sender_domain] "batch,batch.org" from the postmap .db.
                self.assertEqual([eom("x@batch.org", "Batch") for _ in range(4)], [DUNNO] * 4)
                self.assertTrue(eom("y@batch.org", "batch").startswith("action=450 "))
                self.assertEqual(eom("z@batch.org", "other"), DUNNO)
                self.assertTrue(eom("z@batch.org", "other").startswith("action=450 "))

                shown = self.limits_show(path, "sender=monitor@corp.local")
                self.assertIn("s\tsender=monitor@corp.local\t(messages, own allowance)\tfrom "
                              "texthash:%s, line 2: monitor@corp.local\n" % text, shown)
                self.assertIn("3 per 1.0h: 0 left", shown)
                shown = self.limits_show(path, "sender=q@bulk.org")
                self.assertIn("(messages, own allowance)\tfrom texthash:%s, line 3: @bulk.org"
                              % text, shown)
                shown = self.limits_show(path, "sender=app@corp.local")
                self.assertIn("s\tsender=app@corp.local\t(messages, default allowance)\n", shown)
                shown = self.limits_show(path, "--limit", "h", "sasl_username=batch",
                                         "sender=x@batch.org")
                self.assertIn("(messages, own allowance)\tfrom hash:%s: batch,batch.org" % pairs,
                              shown)
                self.assertIn("4 per 1.0h: 0 left", shown)

                # No SIGHUP: the texthash file is rewritten in place; the 3 units used are kept.
                reloads = d.stderr().count("configuration reloaded")
                rewrite(text, "monitor@corp.local 5/1h\n@bulk.org 2/1h\n@batch.org 100/1h\n")
                harness.wait_until(lambda: d.stderr().count("configuration reloaded") > reloads,
                                   15, "reload after the texthash change")
                self.assertIn("%s changed: reloading" % text, d.stderr())
                self.assertEqual([eom("monitor@corp.local") for _ in range(2)], [DUNNO] * 2)
                self.assertTrue(eom("monitor@corp.local").startswith("action=450 "))
                self.assertIn("5 per 1.0h: 0 left",
                              self.limits_show(path, "sender=monitor@corp.local"))

                # No SIGHUP: postmap rebuilds the .db (in place, under its lock).
                reloads = d.stderr().count("configuration reloaded")
                harness.write_file(pairs, "batch,batch.org 6/1h\n")
                self.postmap(etc, "hash:" + pairs)
                harness.wait_until(lambda: d.stderr().count("configuration reloaded") > reloads,
                                   15, "reload after postmap")
                self.assertEqual([eom("x@batch.org", "batch") for _ in range(2)], [DUNNO] * 2)
                self.assertTrue(eom("x@batch.org", "batch").startswith("action=450 "))

                # A bad line: the reload is refused, the old allowances keep serving, once.
                refused = d.stderr().count("reload refused")
                rewrite(text, "monitor@corp.local 5/1h\n@bulk.org lots\n@batch.org 100/1h\n")
                harness.wait_until(lambda: d.stderr().count("reload refused") > refused, 15,
                                   "refused reload")
                self.assertIn("%s:2:1: limit \"s\" allowances_file: key \"@bulk.org\": bad "
                              "allowance \"lots\"" % text, d.stderr())
                self.assertEqual(eom("c@bulk.org"), DUNNO)
                self.assertEqual(eom("c@bulk.org"), DUNNO)  # still 2/1h for @bulk.org
                self.assertTrue(eom("c@bulk.org").startswith("action=450 "))
                time.sleep(2.5)  # not retried while the file stays the same
                self.assertEqual(d.stderr().count("reload refused"), refused + 1)
                check = subprocess.run([harness.binary_path("relaykit"), "check", "-c", path],
                                       capture_output=True, text=True, timeout=30)
                self.assertEqual(check.returncode, 1)
                self.assertIn("%s:2:1: limit \"s\" allowances_file: key \"@bulk.org\": bad "
                              "allowance" % text, check.stdout + check.stderr)
                self.assertTrue(d.running())
                d.stop()

    def test_hash_reads_what_postmap_q_returns(self):
        etc = self.postfix_etc()
        source = os.path.join(self.tmp, "allow")
        entries = ["Monitor@Corp.Local 10000/1d", "app@corp.local 5/1m, 100/1h",
                   "@bulk.org 7/1h", "user+tag@x.org 3/60", "\"quoted user\"@x.org 9/1h",
                   "ops@x.org\t 11/1w , 12/2w"]
        entries += ["u%d@load.org %d/1h" % (i, i + 1) for i in range(200)]
        harness.write_file(source, "\n".join(entries) + "\n")
        port = harness.free_port()
        keys = ["monitor@corp.local", "app@corp.local", "@bulk.org", "user+tag@x.org",
                "\"quoted user\"@x.org", "ops@x.org", "u0@load.org", "u199@load.org"]
        for flags in ([], ["-N"]):  # with and without the trailing NUL
            with self.subTest(flags=flags):
                self.postmap(etc, *(flags + ["hash:" + source]))
                path = self.config("  limits:\n    - name: s\n      key: [sender]\n"
                                   "      recipient_delimiter: \"\"\n      max: 1\n"
                                   "      per: 1h\n      allowances_file: hash:%s\n" % source,
                                   port, "memory")
                d = self.start_daemon("relaykit-policyd", path)
                for key in keys:
                    value = self.postmap_q(etc, key, "hash:" + source)
                    self.assertIsNotNone(value, key)
                    shown = self.limits_show(path, "sender=" + key)
                    self.assertIn("\tfrom hash:%s: %s\n" % (source, key), shown)
                    maxes = [int(w.split("/")[0]) for w in value.split(",")]
                    self.assertEqual([int(m) for m in re.findall(r"^  (\d+) per ", shown, re.M)],
                                     maxes, (key, value, shown))
                self.assertIsNone(self.postmap_q(etc, "nobody@x.org", "hash:" + source))
                self.assertIn("(messages, default allowance)\n",
                              self.limits_show(path, "sender=nobody@x.org"))
                d.stop()
                port = harness.free_port()

    def test_big_file_reload_does_not_stall_decisions(self):
        for kind in ("texthash", "hash"):
            with self.subTest(kind=kind):
                self.big_file_reload(kind)

    def big_file_reload(self, kind):
        n = 100000
        etc = self.postfix_etc()
        text = os.path.join(self.tmp, "big-" + kind)
        watched = text + ".db" if kind == "hash" else text

        def write_big(special):
            """Writes the source aside; change() then puts it in place."""
            with open(text + ".new", "w") as f:
                f.write("special@corp.local %d/1h\n" % special)
                for i in range(n - 1):
                    f.write("user%06d@load%d.corp.local %d/1h, %d/1d\n"
                            % (i, i % 97, 10 + i % 50, 1000 + i % 5))

        def change():
            # texthash: replaced whole by rename (a new inode), as editors and deploy tools do;
            # hash: postmap rewrites the .db in place under its lock.
            os.rename(text + ".new", text)
            if kind == "hash":
                self.postmap(etc, "hash:" + text)

        write_big(2)
        change()
        port = harness.free_port()
        path = self.config("  limits:\n    - name: s\n      key: [sender]\n      max: 1\n"
                           "      per: 1h\n      allowances_file: %s:%s\n" % (kind, text),
                           port, "memory")
        started = time.monotonic()
        d = self.start_daemon("relaykit-policyd", path)
        startup = time.monotonic() - started
        self.assertEqual([ask(d.port, request("special@corp.local")) for _ in range(2)],
                         [DUNNO] * 2)
        self.assertTrue(ask(d.port, request("special@corp.local")).startswith("action=450 "))

        def measure_reload(special):
            """Reloads with `special`'s new allowance under load: (latencies, change time,
            reload time, decisions of the second before)."""
            latencies = []
            stop = threading.Event()
            errors = []

            def load():
                try:
                    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
                        i = 0
                        while not stop.is_set():
                            payload = request("user%06d@load1.corp.local" % (i % 1000))
                            t0 = time.monotonic()
                            s.sendall(payload)
                            reply = harness.read_policy_reply(s)
                            latencies.append((t0, time.monotonic() - t0))
                            if not reply.startswith("action="):
                                errors.append(reply)
                            i += 1
                            time.sleep(0.002)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))

            write_big(special)  # before the load starts: the client measures the daemon
            worker = threading.Thread(target=load)
            worker.start()
            try:
                time.sleep(1.0)
                baseline = [lat for _, lat in latencies]
                reloads = d.stderr().count("configuration reloaded")
                changed = time.monotonic()
                change()
                harness.wait_until(lambda: d.stderr().count("configuration reloaded") > reloads,
                                   60, "reload of the big file")
                reloaded = time.monotonic()
                time.sleep(0.5)
            finally:
                stop.set()
                worker.join(30)
            self.assertEqual(errors, [])
            return latencies, changed, reloaded, baseline

        # A stall would show in every reload; the shared VM's scheduling hiccups (tens of ms,
        # before reloads as well) in some: up to three reloads, the best one must pass.
        special = 2
        for attempt in range(3):
            special += 2
            latencies, changed, reloaded, baseline = measure_reload(special)
            during = [lat for t0, lat in latencies if changed <= t0 <= reloaded]
            self.assertGreater(len(during), 10)
            worst = max(during)
            slowest = sorted(((lat, t0 - changed) for t0, lat in latencies if changed <= t0),
                             reverse=True)[:5]
            print("\n100,000-entry %s: start-up %.2f s; change to reload %.2f s; decisions "
                  "during the reload: %d, worst %.1f ms (the second before: %d, worst %.1f ms, "
                  "median %.2f ms); slowest (ms, s after the change): %s"
                  % (kind, startup, reloaded - changed, len(during), worst * 1000,
                     len(baseline), max(baseline) * 1000,
                     sorted(baseline)[len(baseline) // 2] * 1000,
                     ", ".join("%.1f@%.2f" % (lat * 1000, at) for lat, at in slowest)))
            if worst < 0.25:
                break
        self.assertIn("%s changed: reloading" % watched, d.stderr())
        # The file is read and compiled off the loop; only the snapshot swap is on it.
        self.assertLess(worst, 0.25)
        # The new allowance is enforced with the 2 units used kept, then 450.
        self.assertEqual([ask(d.port, request("special@corp.local")) for _ in range(special - 2)],
                         [DUNNO] * (special - 2))
        self.assertTrue(ask(d.port, request("special@corp.local")).startswith("action=450 "))
        d.stop()

if __name__ == "__main__":
    harness.main()
