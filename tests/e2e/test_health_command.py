#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_health_command.py: `relaykit health` (a Nagios plugin) against real parts.

A healthy stack (three daemons with metrics_listen, a real Redis with a password, a private
Postfix relaying to an smtp-sink smarthost) is OK (exit 0); Redis down is WARNING with
on_store_error: open and CRITICAL with closed; a dead daemon, a daemon without tables, a stopped
Postfix, a smarthost that is down or does not offer a required STARTTLS are CRITICAL; deferred
mail held by the private Postfix crosses the queue thresholds (YAML and command line); an
unreadable config is UNKNOWN (exit 3). Each case checks the exit code and the first line; the
Redis password never appears in the output.
"""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SECRET = "s3cret-Pa55word"


def health(*args, env=None):
    out = subprocess.run([harness.binary_path("relaykit"), "health"] + list(args),
                         capture_output=True, text=True, timeout=120, env=env)
    return out.returncode, out.stdout, out.stderr


class HealthCommandTest(harness.E2ETestCase):

    # ---- fixtures ---------------------------------------------------------------------------
    def stack(self, on_store_error="open", redis=True, password=True, health_yaml="",
              tables=True, with_daemons=("relaykit-socketmapd", "relaykit-milter",
                                         "relaykit-policyd")):
        """Writes relaykit.yaml (loopback ports, metrics_listen for each daemon), starts Redis
        and the daemons; returns (config path, {binary: daemon}, redis or None)."""
        ports = {k: harness.free_port() for k in ("sm", "smm", "mi", "mim", "po", "pom")}
        r = self.start_redis() if redis else None
        pw_file = os.path.join(self.tmp, "redis.pw")
        if r is not None and password:
            r.cli("CONFIG", "SET", "requirepass", SECRET)
            harness.write_file(pw_file, SECRET + "\n", mode=0o600)
        text = "postfix:\n  local_domains: [relay.test.invalid]\n"
        if tables:
            text += ("tables:\n  generic:\n    search: address\n    sources:\n"
                     "      - entries:\n          root@relay.test.invalid: noreply@corp.com\n")
        if "relaykit-socketmapd" in with_daemons:
            text += ("socketmap:\n  listen: inet:127.0.0.1:%(sm)d\n"
                     "  metrics_listen: 127.0.0.1:%(smm)d\n" % ports)
        if "relaykit-milter" in with_daemons:
            text += ("milter:\n  listen: inet:127.0.0.1:%(mi)d\n"
                     "  metrics_listen: 127.0.0.1:%(mim)d\n" % ports)
        if "relaykit-policyd" not in with_daemons:
            pass
        elif r is not None:
            text += ("policy:\n  listen: inet:127.0.0.1:%(po)d\n"
                     "  metrics_listen: 127.0.0.1:%(pom)d\n" % ports)
            text += "  store: redis\n  on_store_error: %s\n" % on_store_error
            text += "redis:\n  address: 127.0.0.1:%d\n  timeout_ms: 100\n" % r.port
            if password:
                text += "  password_file: %s\n" % pw_file
        else:
            text += ("policy:\n  listen: inet:127.0.0.1:%(po)d\n"
                     "  metrics_listen: 127.0.0.1:%(pom)d\n  store: memory\n" % ports)
        text += health_yaml
        path = os.path.join(self.tmp, "relaykit.yaml")
        harness.write_file(path, text)
        daemons = {b: self.start_daemon(b, path) for b in with_daemons}
        return path, daemons, r

    def assertStatus(self, result, code, first):
        rc, out, err = result
        self.assertEqual(rc, code, "exit %d\n%s%s" % (rc, out, err))
        self.assertTrue(out.startswith(first), out)
        self.assertNotIn(SECRET, out + err)
        return out.splitlines()[0]

    # ---- cases ------------------------------------------------------------------------------
    def test_healthy_stack_ok(self):
        sink = self.start_sink("smarthost")
        path, _, _ = self.stack()
        pf = self.start_postfix(relay_port=sink.port)
        first = self.assertStatus(health("-c", path, "-C", pf.etc), 0, "OK - relaykit:")
        for check in ("socketmap", "milter", "policy", "redis", "queue", "smarthost"):
            self.assertIn(check, first)
        perf = first.split(" | ", 1)[1]
        self.assertRegex(perf, r"\bqueue=0;100;500;0\b")
        self.assertRegex(perf, r"\bdeferred=0;20;100;0\b")
        self.assertRegex(perf, r"\bsmarthost_time=[0-9.]+s\b")
        # MAIL_CONFIG names the Postfix instance when -C is absent, as for Postfix's own tools.
        env = dict(os.environ, MAIL_CONFIG=pf.etc)
        self.assertStatus(health("-c", path, env=env), 0, "OK")

    def test_redis_down_open_warning_closed_critical(self):
        for mode, code, first in (("open", 1, "WARNING"), ("closed", 2, "CRITICAL")):
            with self.subTest(mode=mode):
                sub = os.path.join(self.tmp, mode)
                os.makedirs(sub)
                self.tmp_orig, self.tmp = self.tmp, sub
                try:
                    path, _, r = self.stack(on_store_error=mode)
                finally:
                    self.tmp = self.tmp_orig
                args = ("-c", path, "--no-queue", "--no-smarthost")
                self.assertStatus(health(*args), 0, "OK")
                r.stop()
                line = self.assertStatus(health(*args), code, first + " - relaykit:")
                self.assertIn("redis", line)
                self.assertIn("on_store_error: " + mode, line)
                if mode == "open":
                    # keepalived: fail over only when the relay cannot work.
                    self.assertStatus(health(*args, "--critical-only"), 0, "WARNING")
                else:
                    self.assertStatus(health(*args, "--critical-only"), 2, "CRITICAL")

    def test_wrong_redis_password_never_printed(self):
        path, _, r = self.stack(on_store_error="closed")
        r.cli("-a", SECRET, "CONFIG", "SET", "requirepass", "another-one")
        line = self.assertStatus(health("-c", path, "--no-queue", "--no-smarthost"), 2,
                                 "CRITICAL")
        self.assertIn("AUTH", line)

    def test_dead_daemon_and_no_tables_critical(self):
        path, daemons, _ = self.stack(redis=False)
        args = ("-c", path, "--no-queue", "--no-smarthost")
        self.assertStatus(health(*args), 0, "OK")
        daemons["relaykit-milter"].kill(signal.SIGKILL)
        line = self.assertStatus(health(*args), 2, "CRITICAL - relaykit: milter:")
        self.assertNotIn("socketmap:", line)

    def test_socketmapd_without_tables_is_unavailable(self):
        path, _, _ = self.stack(redis=False, tables=False, with_daemons=("relaykit-socketmapd",))
        with open(path) as f:
            port = int(re.search(r"metrics_listen: 127.0.0.1:(\d+)", f.read()).group(1))
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=10)
        self.assertEqual(e.exception.code, 503)
        self.assertIn("unavailable: no tables loaded", e.exception.read().decode())
        line = self.assertStatus(
            health("-c", path, "--no-queue", "--no-smarthost"), 2, "CRITICAL")
        self.assertIn("socketmap: unavailable: no tables loaded", line)

    def test_queue_thresholds_with_deferred_mail(self):
        dead = harness.free_port()  # nothing listens: every delivery is deferred
        path, _, _ = self.stack(redis=False, tables=False, with_daemons=(), health_yaml=(
            "health:\n  timeout: 2s\n  queue:\n    deferred: {warning: 2, critical: 5}\n"
            "    oldest: {warning: 1h, critical: 0}\n"))
        pf = self.start_postfix(relay_port=dead)
        for i in range(3):
            harness.send_smtp(pf.port, "app@corp.local", ["u%d@example.net" % i],
                              harness.make_message("app@corp.local", "u@example.net", "m%d" % i))
        records = pf.wait_queued(3, status="deferred")
        oldest_arrival = min(r["arrival_time"] for r in records)
        line = self.assertStatus(health("-c", path, "-C", pf.etc, "--no-smarthost"), 1,
                                 "WARNING - relaykit: queue:")
        self.assertIn("3 deferred", line)
        self.assertRegex(line, r"\bdeferred=3;2;5;0\b")
        self.assertRegex(line, r"\bqueue=3;100;500;0\b")
        # Command-line thresholds override the YAML ones.
        line = self.assertStatus(health("-c", path, "-C", pf.etc, "--no-smarthost",
                                        "--deferred-critical", "3"), 2, "CRITICAL")
        self.assertIn("deferred 3 >= 3", line)
        self.assertStatus(health("-c", path, "-C", pf.etc, "--no-smarthost",
                                 "--deferred-warning", "0", "--deferred-critical", "0"), 0, "OK")
        # The oldest message is at least 2 s old before a 1 s age threshold is asked for.
        harness.wait_until(lambda: time.time() >= oldest_arrival + 2, 10, "2 s of queue age")
        line = self.assertStatus(health("-c", path, "-C", pf.etc, "--no-smarthost",
                                        "--oldest-warning", "1"), 1, "WARNING")
        self.assertIn("oldest age", line)
        # The smarthost (main.cf's relayhost) is down too.
        line = self.assertStatus(health("-c", path, "-C", pf.etc, "--deferred-warning", "0"),
                                 2, "CRITICAL - relaykit: smarthost:")
        self.assertIn("[127.0.0.1]:%d" % dead, line)
        # Postfix stopped (postqueue run by root would still read the queue).
        pf.stop()
        line = self.assertStatus(health("-c", path, "-C", pf.etc, "--no-smarthost"), 2,
                                 "CRITICAL - relaykit: postfix: not running")

    def test_smarthost_starttls_required(self):
        sink = self.start_sink("smarthost")  # smtp-sink offers no STARTTLS
        path, _, _ = self.stack(redis=False, tables=False, with_daemons=())
        pf = self.start_postfix(relay_port=sink.port)
        args = ("-c", path, "-C", pf.etc, "--no-queue")
        self.assertStatus(health(*args), 0, "OK")
        pf.postconf("-e", "smtp_tls_security_level = encrypt")
        line = self.assertStatus(health(*args), 2, "CRITICAL - relaykit: smarthost:")
        self.assertIn("STARTTLS not offered", line)
        self.assertIn("smtp_tls_security_level = encrypt", line)
        # An explicit address and starttls: off in YAML override main.cf.
        with open(path, "a") as f:
            f.write("health:\n  smarthost:\n    address: \"[127.0.0.1]:%d\"\n"
                    "    starttls: \"off\"\n" % sink.port)
        self.assertStatus(health(*args), 0, "OK")

    def test_bad_config_unknown(self):
        path = os.path.join(self.tmp, "bad.yaml")
        harness.write_file(path, "health:\n  queue:\n    size: {warning: many}\n")
        self.assertStatus(health("-c", path), 3, "UNKNOWN - relaykit:")
        self.assertStatus(health("-c", os.path.join(self.tmp, "missing.yaml")), 3, "UNKNOWN")


if __name__ == "__main__":
    harness.main()
