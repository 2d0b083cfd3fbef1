#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_hostile_config.py: hostile configuration files and command lines against the real binaries.

What it proves (every case bounded by CASE_TIMEOUT: a hang fails the case):
  - `relaykit check` and each daemon's `--check` refuse at once, with one clear
    FILE:LINE:COL: message, config paths that are not regular files (FIFO, directory, /dev/zero,
    /dev/null), oversized files, empty / comment-only / null documents (a lone ',', "!,", "~"),
    a second YAML document, NUL bytes, deep nesting, alias bombs, bad regexps, out-of-range
    $n references, host-less endpoints, bad ports, table / rule / password files that are FIFOs,
    directories or oversized, daemon users that do not exist or cannot read what the config names;
    and report every problem of a file in one run;
  - `relaykit query` and `relaykit rewrite` with hostile keys and messages answer in bounded time
    (a transport key of "x@" and 99,990 dots, keys over the lookup limit, garbage messages);
  - SIGHUP with each bad file keeps the old configuration serving; a good file afterwards is
    taken (the loop is alive);
  - a reload of a large configuration compiles off the event loop: lookups keep being answered
    (latency measured by a client during the reload).
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# Upper bound for one hostile case (binary start to exit). A hang fails the case.
CASE_TIMEOUT = 20
# Limits the binaries enforce (common/bounded_file.h, common/table.h).
MAX_CONFIG_BYTES = 64 * 1024 * 1024
MAX_TABLE_FILE_BYTES = 256 * 1024 * 1024
MAX_LOOKUP_KEY_BYTES = 100000

GOOD = """\
tables:
  t:
    sources:
      - entries: {a@example.com: found}
  transport:
    search: transport
    sources:
      - entries: {"..": "smtp:twodots", "*": "smtp:any"}
"""

STOPPED = r"YAML parsing stopped here"


def run_binary(name, args, input=None, timeout=CASE_TIMEOUT):
    """(returncode, stdout, stderr, seconds); a timeout or a sanitizer report raises (the case
    fails: under ASan a crash may exit 1, the code a refused config expects)."""
    started = time.monotonic()
    p = subprocess.run([harness.binary_path(name)] + list(args), input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    err = p.stderr.decode("utf-8", "replace")
    report = harness.sanitizer_report(err)
    if report:
        raise AssertionError("%s %s: sanitizer report:\n%s" % (name, list(args)[:3], report))
    return (p.returncode, p.stdout.decode("utf-8", "replace"), err, time.monotonic() - started)


class HostileConfigFiles(harness.E2ETestCase):
    """`relaykit check -c FILE` on hostile files: exit 1 and a clear first line, in bounded time."""

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, data, mode=0o644):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(p, mode)
        return p

    def fifo(self, name):
        p = self.path(name)
        os.mkfifo(p, 0o644)
        return p

    def sparse(self, name, size):
        p = self.path(name)
        with open(p, "wb") as f:
            f.truncate(size)
        return p

    def check(self, path, rc, pattern, binary="relaykit", args=None):
        args = ["check", "-c", path] if args is None else args
        code, out, err, seconds = run_binary(binary, args)
        text = err + out
        self.assertEqual(code, rc, "%s %s: exit %d\n%s" % (binary, args, code, text[:2000]))
        if pattern:
            self.assertRegex(text, pattern)
        return text

    # ---- the file itself -----------------------------------------------------------------------

    def test_config_path_kinds(self):
        cases = [
            ("fifo", self.fifo("fifo.yaml"), r"fifo\.yaml:0:0: cannot read configuration: a "
                                             r"FIFO, not a regular file"),
            ("directory", self.tmp, r":0:0: cannot read configuration: a directory, not a "
                                    r"regular file"),
            ("/dev/zero", "/dev/zero", r"^/dev/zero:0:0: cannot read configuration: a character "
                                       r"device, not a regular file"),
            ("/dev/null", "/dev/null", r"^/dev/null:0:0: cannot read configuration: a character "
                                       r"device"),
            ("missing", self.path("none.yaml"), r"none\.yaml:0:0: cannot read configuration: No "
                                                r"such file or directory"),
            ("huge", self.sparse("huge.yaml", MAX_CONFIG_BYTES + 1),
             r"huge\.yaml:0:0: cannot read configuration: %d bytes, larger than the limit of %d "
             r"bytes" % (MAX_CONFIG_BYTES + 1, MAX_CONFIG_BYTES)),
        ]
        for name, path, pattern in cases:
            with self.subTest(name):
                self.check(path, 1, pattern)

    def test_daemon_check_never_hangs_on_a_fifo(self):
        fifo = self.fifo("fifo.yaml")
        for binary in ("relaykit-socketmapd", "relaykit-policyd", "relaykit-milter"):
            with self.subTest(binary):
                self.check(fifo, 1, r"a FIFO, not a regular file", binary=binary,
                           args=["--check", "-c", fifo])
        for args in (["query", "-c", fifo, "t", "k"], ["rewrite", "-c", fifo, "/dev/null"]):
            with self.subTest(args[0]):
                code, out, err, _ = run_binary("relaykit", args)
                self.assertEqual(code, 2, err)
                self.assertIn("a FIFO, not a regular file", err)

    def test_empty_and_null_documents(self):
        cases = [
            ("empty", "", r"empty\.yaml:1:1: the configuration is empty"),
            ("comments", "# nothing here\n\n   # still nothing\n",
             r"comments\.yaml:1:1: the configuration is empty"),
            ("lone comma", ",\n" + GOOD, r"lone comma\.yaml:1:1: " + STOPPED),
            ("bang comma", "!,\n" + GOOD, STOPPED),
            ("tilde", "# c\n~\n", r"tilde\.yaml:2:1: expected a map of sections .* got null"),
            ("second document", GOOD + "---\ntables: {}\n", r"second document\.yaml:9:1: "
                                                            + STOPPED),
            ("a list", "- a\n- b\n", r"expected a map for the configuration, got a list"),
            ("a string", "hello\n", r"expected a map for the configuration, got a string"),
        ]
        for name, text, pattern in cases:
            with self.subTest(name):
                self.check(self.write(name + ".yaml", text), 1, pattern)

    def test_malformed_yaml(self):
        bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        for i in range(1, 20):
            bomb.append("a%d: &a%d [%s]" % (i, i, ", ".join(["*a%d" % (i - 1)] * 10)))
        entries_bomb = ["tables:", "  t:", "    sources:", "      - entries: &e {a: b}"]
        entries_bomb += ["      - entries: *e"] * 2000
        cases = [
            ("nul byte", GOOD.replace("found", "fo\0und"), r"nul byte\.yaml:4:36: NUL byte"),
            ("tab indent", "tables:\n\tt: 1\n", r"tab indent\.yaml:2:\d+: "),
            ("deep flow", "[" * 100000 + "\n", r"deep flow\.yaml:\d+:\d+: "),
            ("deep block", "".join("  " * i + "a:\n" for i in range(3000)),
             r"deep block\.yaml:\d+:\d+: "),
            ("alias bomb", "\n".join(bomb) + "\n", r"alias bomb\.yaml:1:1: unknown key \"a0\""),
            ("alias bomb in sources", "\n".join(bomb) + "\ntables:\n  t:\n    sources: *a19\n",
             r"expected a source"),
            ("repeated aliased entries", "\n".join(entries_bomb) + "\n", None),
            ("unterminated quote", 'tables: {t: "abc\n', r"unterminated quote\.yaml:\d+:\d+: "),
            ("duplicate keys", "tables: {}\ntables: {}\n", r"duplicate key \"tables\""),
            ("invalid utf-8", "tables:\n  t:\n    sources:\n      - entries: {\"a\xff\": b}\n",
             r"is not UTF-8"),
        ]
        for name, text, pattern in cases:
            with self.subTest(name):
                data = text.encode("latin-1") if name == "invalid utf-8" else text
                path = self.write(name + ".yaml", data)
                if name == "repeated aliased entries":
                    # 2000 sources sharing one node: valid, and compiled in bounded time.
                    self.check(path, 0, None)
                else:
                    self.check(path, 1, pattern)

    def test_huge_values_are_bounded(self):
        with self.subTest("200 kB key"):
            # YAML limits implicit keys to 1024 characters: refused by the parser, at the key.
            path = self.write("bigkey.yaml", "tables:\n  t:\n    sources:\n      - entries: {%s: v}\n"
                              % ("k" * 200000))
            self.check(path, 1, r"bigkey\.yaml:4:19: end of map flow not found")
        with self.subTest("10 MB scalar"):
            path = self.write("bigvalue.yaml", "tables:\n  t:\n    sources:\n      - entries: "
                              "{k: %s}\n" % ("v" * 10000000))
            self.check(path, 0, None)
        with self.subTest("100,000 table entries"):
            lines = ["tables:", "  t:", "    sources:", "      - entries:"]
            lines += ["          k%d: v%d" % (i, i) for i in range(100000)]
            self.check(self.write("many.yaml", "\n".join(lines) + "\n"), 0, None)

    # ---- rules and endpoints -------------------------------------------------------------------

    def test_bad_rules_and_endpoints(self):
        table = "tables:\n  t:\n    sources:\n      - regexp: |\n          %s\n"
        cases = [
            ("bad regexp", table % "/(/ x", r"bad regexp\.yaml:5:\d+: .*(missing \)|parenthes)"),
            ("huge regexp", table % "/((a{100}){100}){100}/ x", r"huge regexp\.yaml:5:\d+: "),
            ("regexp $n overflow", table % "/(a)/ x$99999999999",
             r"regexp \$n overflow\.yaml:5:\d+: out of range replacement index"),
            ("header_rules $n overflow",
             "milter:\n  header_rules:\n    - match: '^X: (a)'\n      action: replace\n"
             "      with: 'X: $99999999999'\n",
             r"header_rules \$n overflow\.yaml:5:13: \$99999999999 refers to group 99999999999 "
             r"but the pattern has only 1 group"),
            ("header_rules ${3}",
             "milter:\n  header_rules:\n    - match: '^X: (a)(b)'\n      action: warn\n"
             "      with: 'saw ${3}'\n", r"refers to group 3 but the pattern has only 2 groups"),
            ("hostless metrics", "socketmap:\n  metrics_listen: \":9441\"\n",
             r"hostless metrics\.yaml:2:19: metrics_listen \":9441\" has no host"),
            ("hostless listen", "socketmap:\n  listen: \"inet::10041\"\n",
             r"hostless listen\.yaml:2:11: listen \"inet::10041\" has no host"),
            ("bad port", "policy:\n  metrics_listen: 127.0.0.1:99999\n", r"port out of range"),
            ("long unix path", "milter:\n  listen: unix:/%s\n" % ("x" * 300),
             r"path longer than"),
            ("unknown key", "tables: {}\nsocketmapd: {}\n", r"unknown key \"socketmapd\""),
            ("bad search", "tables:\n  t:\n    search: fuzzy\n    sources: [{entries: {a: b}}]\n",
             r"unknown search \"fuzzy\""),
        ]
        for name, text, pattern in cases:
            with self.subTest(name):
                self.check(self.write(name + ".yaml", text), 1, pattern)
        with self.subTest("explicit wildcard is a warning"):
            text = self.check(self.write("wild.yaml", "socketmap:\n  metrics_listen: "
                                         "0.0.0.0:9441\n"), 0, None)
            self.assertIn("warning: metrics_listen \"0.0.0.0:9441\" listens on every interface",
                          text)

    def test_named_files(self):
        fifo = self.fifo("table.fifo")
        big = self.sparse("big.txt", MAX_TABLE_FILE_BYTES + 1)
        os.makedirs(self.path("adir"))
        cases = [
            ("table fifo", "tables:\n  t:\n    sources:\n      - file: hash:%s\n" % fifo,
             r"table fifo\.yaml:4:15: cannot read .*table\.fifo: a FIFO, not a regular file"),
            ("table dir", "tables:\n  t:\n    sources:\n      - file: texthash:%s\n"
             % self.path("adir"), r"cannot read .*adir: a directory, not a regular file"),
            ("table device", "tables:\n  t:\n    sources:\n      - file: regexp:/dev/zero\n",
             r"cannot read /dev/zero: a character device"),
            ("table huge", "tables:\n  t:\n    sources:\n      - file: hash:%s\n" % big,
             r"larger than the limit of %d bytes" % MAX_TABLE_FILE_BYTES),
            ("header_checks_file fifo", "milter:\n  header_checks_file: regexp:%s\n" % fifo,
             r"cannot read header_checks_file .*table\.fifo: a FIFO"),
            ("password_file fifo", "policy:\n  store: redis\nredis:\n  password_file: %s\n"
             % fifo, r"cannot read redis password_file: a FIFO, not a regular file"),
        ]
        for name, text, pattern in cases:
            with self.subTest(name):
                self.check(self.write(name + ".yaml", text), 1, pattern)

    def test_users_and_access(self):
        os.chmod(self.tmp, 0o755)
        secret = self.write("secret.txt", "a b\n", mode=0o600)
        text = ("tables:\n  t:\n    sources:\n      - file: texthash:%s\n"
                "socketmap:\n  user: no-such-user-relaykit\nmilter:\n  user: nobody\n" % secret)
        with self.subTest("user missing, file unreadable"):
            out = self.check(self.write("users.yaml", text, mode=0o600), 1, None)
            self.assertRegex(out, r"users\.yaml:6:9: socketmap: user \"no-such-user-relaykit\" "
                                  r"does not exist")
            self.assertRegex(out, r"users\.yaml:8:9: milter: user \"nobody\" cannot read "
                                  r".*users\.yaml \(root:root 0600\)")
            self.assertRegex(out, r"users\.yaml:4:15: milter: user \"nobody\" cannot read "
                                  r".*secret\.txt \(root:root 0600\)")
        with self.subTest("daemon --check of its own section"):
            path = self.path("users.yaml")
            self.check(path, 1, r"socketmap: user \"no-such-user-relaykit\" does not exist",
                       binary="relaykit-socketmapd", args=["--check", "-c", path])
            # policy: has no user: the other sections' users are not its business.
            out = self.check(path, 0, None, binary="relaykit-policyd", args=["--check", "-c", path])
            self.assertNotIn("no-such-user", out)
        with self.subTest("policyd --check: its own user"):
            path = self.write("policy-user.yaml", "policy:\n  user: no-such-user-relaykit\n")
            self.check(path, 1, r"policy-user\.yaml:2:9: policy: user \"no-such-user-relaykit\" "
                                r"does not exist", binary="relaykit-policyd",
                       args=["--check", "-c", path])
        with self.subTest("readable: accepted"):
            os.chmod(secret, 0o644)
            os.chmod(self.path("users.yaml"), 0o644)
            ok = text.replace("no-such-user-relaykit", "nobody")
            self.check(self.write("ok.yaml", ok), 0, None)

    def test_every_problem_at_once(self):
        lines = ["tables:"]
        for i in range(200):
            lines.append("  t%d: {search: bogus%d, sources: [{entries: {a: b}}]}" % (i, i))
        lines += ["socketmap:", "  metrics_listen: \":1\"",
                  "milter:", "  on_error: maybe", "  header_rules:",
                  "    - {match: '^X: (a)', action: warn, with: '$7'}"]
        out = self.check(self.write("many.yaml", "\n".join(lines) + "\n"), 1, None)
        self.assertEqual(len(re.findall(r"unknown search \"bogus\d+\"", out)), 200)
        self.assertIn("metrics_listen \":1\" has no host", out)
        self.assertIn("on_error must be tempfail or accept", out)  # milter section, same run
        self.assertIn("$7 refers to group 7", out)


class HostileCommandLines(harness.E2ETestCase):
    """`relaykit query` and `relaykit rewrite` with hostile input: bounded time, clear exits."""

    def setUp(self):
        self.config = os.path.join(self.tmp, "good.yaml")
        harness.write_file(self.config, GOOD + "milter:\n  header_rules:\n"
                           "    - {match: '^Subject: (.*)', action: replace, "
                           "with: 'Subject: [x] $1'}\n")

    def query(self, args, input=None):
        return run_binary("relaykit", ["query", "-c", self.config] + args, input=input)

    def test_query(self):
        with self.subTest("99,990 dots, transport search"):
            code, out, err, seconds = self.query(["transport", "x@" + "." * 99990])
            self.assertEqual((code, out.strip()), (0, "smtp:twodots"), err)
            self.assertLess(seconds, 5)
        with self.subTest("key over the lookup limit"):
            code, out, err, _ = self.query(["transport", "x@" + "a" * MAX_LOOKUP_KEY_BYTES])
            self.assertEqual(code, 2)
            self.assertIn("key longer than %d bytes" % MAX_LOOKUP_KEY_BYTES, err)
        with self.subTest("hostile keys from stdin"):
            keys = [b"x@" + b"." * 50000, b"\xff\xfe@\xc0\x80", b"a@example.com", b"",
                    b"@" * 1000, b"\"\\\"@\"" * 100, b"a+" * 5000 + b"@example.com"]
            code, out, err, seconds = self.query(["t", "-"], input=b"\n".join(keys) + b"\n")
            self.assertEqual(code, 1, err)  # some not found, no error
            self.assertEqual(out, "a@example.com\tfound\n")
            self.assertLess(seconds, 10)
        with self.subTest("a 300 kB line on stdin"):
            code, out, err, _ = self.query(["t", "-"], input=b"a@example.com\n" + b"k" * 300000
                                           + b"\nzz\n")
            self.assertEqual(code, 2)
            self.assertEqual(out, "a@example.com\tfound\n")
            self.assertIn("a key on stdin is longer than %d bytes" % MAX_LOOKUP_KEY_BYTES, err)
        with self.subTest("unknown table"):
            code, _, err, _ = self.query(["nosuch", "k"])
            self.assertEqual(code, 2)
            self.assertIn("unknown table \"nosuch\"", err)
        with self.subTest("unknown subcommand"):
            code, _, _, _ = run_binary("relaykit", ["frobnicate"])
            self.assertEqual(code, 2)

    def rewrite(self, message, args=()):
        return run_binary("relaykit", ["rewrite", "-c", self.config] + list(args) + ["-"],
                          input=message)

    def test_rewrite(self):
        with self.subTest("group reference"):
            code, out, err, _ = self.rewrite(b"Subject: hello\n\nbody\n")
            self.assertEqual(code, 0, err)
            self.assertIn("Subject: [x] hello", out)
        with self.subTest("binary garbage"):
            code, _, err, seconds = self.rewrite(bytes(range(256)) * 4000)
            self.assertIn(code, (0, 2), err)
            self.assertLess(seconds, 10)
        with self.subTest("100,000 headers"):
            code, _, err, seconds = self.rewrite(b"Subject: a\n" * 100000 + b"\nbody\n")
            self.assertIn(code, (0, 2), err)
            self.assertLess(seconds, CASE_TIMEOUT)
        with self.subTest("one 5 MB header"):
            code, _, err, _ = self.rewrite(b"Subject: " + b"a" * 5000000 + b"\n\nbody\n")
            self.assertIn(code, (0, 2), err)
        with self.subTest("over the size limit"):
            code, _, err, _ = self.rewrite(b"Subject: a\n\n" + b"x" * 2000, ["--size-limit", "1000"])
            self.assertEqual(code, 2, err)


class HostileReload(harness.E2ETestCase):
    """SIGHUP with a bad file keeps the old configuration serving."""

    def start(self, text):
        self.port = harness.free_port()
        self.config = os.path.join(self.tmp, "relaykit.yaml")
        harness.write_file(self.config, text + "socketmap:\n  listen: inet:127.0.0.1:%d\n"
                           % self.port)
        return self.start_daemon("relaykit-socketmapd", self.config)

    def refusals(self, daemon):
        return daemon.stderr().count("reload refused")

    def test_bad_files_keep_the_old_config(self):
        d = self.start(GOOD)
        self.assertEqual(harness.socketmap_query(self.port, "t", "a@example.com"), ("OK", "found"))
        bad = [("empty", ""), ("comments", "# nothing\n"), ("lone comma", ",\n" + GOOD),
               ("bang comma", "!,\n"), ("nul", GOOD.replace("found", "f\0")),
               ("hostless", GOOD + "socketmap:\n  metrics_listen: \":1\"\n"),
               ("fifo", None), ("directory", None)]
        for name, text in bad:
            with self.subTest(name):
                before = self.refusals(d)
                if os.path.isdir(self.config):
                    os.rmdir(self.config)
                elif os.path.lexists(self.config):
                    os.unlink(self.config)
                if name == "fifo":
                    os.mkfifo(self.config)
                elif name == "directory":
                    os.mkdir(self.config)
                else:
                    with open(self.config, "wb") as f:
                        f.write(text.encode())
                d.hup()
                harness.wait_until(lambda: self.refusals(d) > before, 15, "reload refused")
                self.assertEqual(harness.socketmap_query(self.port, "t", "a@example.com"),
                                 ("OK", "found"))
        if os.path.isdir(self.config):
            os.rmdir(self.config)
        harness.write_file(self.config, GOOD.replace("found", "changed")
                           + "socketmap:\n  listen: inet:127.0.0.1:%d\n" % self.port)
        d.hup()
        harness.wait_until(lambda: harness.socketmap_query(self.port, "t", "a@example.com")
                           == ("OK", "changed"), 15, "the good file taken")

    def test_large_reload_does_not_stall_lookups(self):
        d = self.start(GOOD)
        entries = 300000
        lines = [GOOD.rstrip("\n"), "  big:", "    sources:", "      - entries:"]
        lines += ["          k%d@example.com: v%d" % (i, i) for i in range(entries)]
        big = "\n".join(lines) + "\nsocketmap:\n  listen: inet:127.0.0.1:%d\n" % self.port
        tmp = self.config + ".new"
        with open(tmp, "w") as f:
            f.write(big)
        os.rename(tmp, self.config)
        latencies = []
        stop = threading.Event()

        def client():
            with harness.SocketmapClient(self.port, timeout=60) as c:
                while not stop.is_set():
                    started = time.monotonic()
                    self.assertEqual(c.query("t", "a@example.com"), ("OK", "found"))
                    latencies.append(time.monotonic() - started)
                    time.sleep(0.005)

        thread = threading.Thread(target=client)
        thread.start()
        try:
            time.sleep(0.3)
            hup_at = time.monotonic()
            d.hup()
            harness.wait_until(lambda: "configuration reloaded" in d.stderr(), 120,
                               "the large configuration reloaded")
            reload_seconds = time.monotonic() - hup_at
        finally:
            stop.set()
            thread.join(70)
        self.assertEqual(harness.socketmap_query(self.port, "big", "k123@example.com"),
                         ("OK", "v123"))
        worst = max(latencies)
        sys.stderr.write("reload took %.1f s; %d lookups during it, worst %.3f s\n"
                         % (reload_seconds, len(latencies), worst))
        # The compile must have taken long enough for the test to mean something.
        self.assertGreater(reload_seconds, 1.0)
        self.assertLess(worst, min(0.5, reload_seconds / 3))


if __name__ == "__main__":
    harness.main()
