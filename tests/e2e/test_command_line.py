# SPDX-License-Identifier: Apache-2.0
"""test_command_line.py: the uniform command line of the relaykit binaries and their man pages.

Against the real binaries of the build tree:
  - every daemon: --help and --version on stdout with exit 0 (the version of project() in
    CMakeLists.txt); usage errors (unknown option, missing argument, stray argument) exit 2 with
    the message on stderr and nothing on stdout; a refused configuration and a failed start
    (a port in use) exit 1 and are printed on stderr with and without -f; --check prints on
    stderr only; -f writes sd-daemon "<N>" priority prefixes on every line (not on a terminal);
    -v adds debug lines; with NOTIFY_SOCKET (a datagram socket standing where systemd's is) they
    send READY=1 once listening, RELOADING=1 and READY=1 around SIGHUP, STOPPING=1 at stop;
  - relaykit: --version, --help, exit 2 on an unknown subcommand or option;
  - the man pages (build/man/): render with `man --warnings` without a single warning, and
    document every option each binary's --help lists, every subcommand of relaykit, and every
    configuration key the config parsers accept (keys scraped from the sources, so a key added
    without documentation fails here).
"""

import glob
import os
import pty
import re
import select
import socket
import subprocess
import textwrap
import time

import harness

# The daemons on the shared skeleton (common/server/daemon.cc).
DAEMONS = ["relaykit-socketmapd", "relaykit-policyd", "relaykit-milter"]
SECTIONS = {"relaykit-socketmapd": "socketmap", "relaykit-policyd": "policy",
            "relaykit-milter": "milter"}
MAN_PAGES = ["relaykit.1", "relaykit-socketmapd.8", "relaykit-milter.8", "relaykit-policyd.8",
             "relaykit.yaml.5"]
RUN_TIMEOUT = 30


def project_version():
    with open(os.path.join(harness.source_dir(), "CMakeLists.txt")) as f:
        m = re.search(r"project\(relaykit\s+VERSION\s+([0-9.]+)", f.read())
    assert m, "no project(relaykit VERSION ...) in CMakeLists.txt"
    return m.group(1)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          stdin=subprocess.DEVNULL, **kw)


def man_dir():
    return os.path.join(harness.build_dir(), "man")


def render_man(path, encoding="UTF-8", width="80"):
    """`man -l` of one page: (stdout, stderr). Warnings from groff/man go to stderr."""
    env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH=width, MAN_KEEP_FORMATTING="")
    proc = run(["man", "--warnings", "-E", encoding, "-l", path], env=env)
    return proc.stdout, proc.stderr


def plain_man(path):
    """The page rendered as plain ASCII text, wide lines, no overstriking."""
    env = dict(os.environ, LC_ALL="C", MANROFFSEQ="", MANWIDTH="200")
    proc = run(["man", "-E", "ascii", "-l", path], env=env)
    return re.sub(r".\x08", "", proc.stdout)


def help_options(text):
    """Long and short options listed by a CLI11 --help text."""
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text.split("Options:", 1)[-1]))


def config_keys():
    """Every YAML key the config parsers accept, scraped from the sources."""
    src = harness.source_dir()
    files = []
    for sub in ("common", "milters", "policyd", "socketmapd", "cli"):
        files += glob.glob(os.path.join(src, sub, "**", "*.cc"), recursive=True)
    patterns = [r"checkMap\([^{;]*?\{([^}]*)\}",
                r"std::vector<std::string>\s+k\w*(?:Keys|Kinds)\s*=\s*\{([^}]*)\}",
                r"allowedKeysWithDaemonKeys\(\s*\{([^}]*)\}",
                r"\bkeys\s*=\s*\{([^}]*)\}"]
    keys = set()
    for path in files:
        with open(path, errors="replace") as f:
            text = f.read()
        for pat in patterns:
            for m in re.finditer(pat, text, re.S):
                keys.update(re.findall(r'"([^"]+)"', m.group(1)))
    return keys


class DaemonCommandLineTest(harness.E2ETestCase):

    def config(self, text, name="relaykit.yaml"):
        path = os.path.join(self.tmp, name)
        harness.write_file(path, textwrap.dedent(text))
        return path

    def valid_config(self, daemon, port):
        return self.config("""\
            tables:
              t:
                sources:
                  - entries: {a: b}
            %s:
              listen: inet:127.0.0.1:%d
            """ % (SECTIONS[daemon], port), name="%s.yaml" % daemon)

    def test_version_and_help(self):
        version = project_version()
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                binary = harness.binary_path(daemon)
                proc = run([binary, "--version"])
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertEqual(proc.stderr, "")
                self.assertEqual(len(proc.stdout.splitlines()), 1, proc.stdout)
                self.assertIn(version, proc.stdout)
                self.assertIn(daemon, proc.stdout)
                for flag in ("--help", "-h"):
                    proc = run([binary, flag])
                    self.assertEqual(proc.returncode, 0, proc.stderr)
                    self.assertEqual(proc.stderr, "")
                    options = help_options(proc.stdout)
                    for opt in ("-c", "--config", "-f", "--foreground", "-v", "--verbose",
                                "--check", "--help", "--version"):
                        self.assertIn(opt, options, proc.stdout)

    def test_usage_errors_exit_2_on_stderr(self):
        good = self.valid_config("relaykit-socketmapd", harness.free_port())
        for daemon in DAEMONS:
            binary = harness.binary_path(daemon)
            for args in (["--bogus"], ["-x"], ["-c"], ["-c", good, "stray"],
                         ["--config"]):
                with self.subTest(daemon=daemon, args=args):
                    proc = run([binary] + args)
                    self.assertEqual(proc.returncode, 2, (proc.stdout, proc.stderr))
                    self.assertEqual(proc.stdout, "")
                    self.assertNotEqual(proc.stderr.strip(), "")

    def test_config_error_exit_1_printed_with_and_without_f(self):
        bad = self.config("""\
            socketmap:
              listen: inet:127.0.0.1:1
              no_such_key: 1
            policy:
              listen: inet:127.0.0.1:1
              no_such_key: 1
            milter:
              listen: inet:127.0.0.1:1
              no_such_key: 1
            """)
        for daemon in DAEMONS:
            for extra in ([], ["-f"]):
                with self.subTest(daemon=daemon, args=extra):
                    proc = run([harness.binary_path(daemon), "-c", bad] + extra)
                    self.assertEqual(proc.returncode, 1, proc.stderr)
                    self.assertEqual(proc.stdout, "")
                    self.assertIn("no_such_key", proc.stderr)
                    self.assertIn(bad + ":", proc.stderr)
            with self.subTest(daemon=daemon, args="--check"):
                proc = run([harness.binary_path(daemon), "-c", bad, "--check"])
                self.assertEqual(proc.returncode, 1)
                self.assertEqual(proc.stdout, "")
                self.assertRegex(proc.stderr, re.escape(bad) + r":\d+:\d+: .*no_such_key")
            with self.subTest(daemon=daemon, args="missing file"):
                missing = os.path.join(self.tmp, "missing.yaml")
                proc = run([harness.binary_path(daemon), "-c", missing])
                self.assertEqual(proc.returncode, 1)
                self.assertIn(missing, proc.stderr)

    def test_start_failure_printed_with_and_without_f(self):
        # A port held by another socket: the bind fails after the config was accepted.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
            held.bind(("127.0.0.1", 0))
            held.listen(1)
            port = held.getsockname()[1]
            for daemon in DAEMONS:
                cfg = self.valid_config(daemon, port)
                for extra in ([], ["-f"]):
                    with self.subTest(daemon=daemon, args=extra):
                        proc = run([harness.binary_path(daemon), "-c", cfg] + extra)
                        self.assertEqual(proc.returncode, 1, proc.stderr)
                        self.assertEqual(proc.stdout, "")
                        self.assertIn(str(port), proc.stderr)
                        self.assertRegex(proc.stderr, "(?i)address already in use")

    def test_foreground_priority_prefixes_and_verbose(self):
        for daemon in DAEMONS:
            for verbose in (False, True):
                with self.subTest(daemon=daemon, verbose=verbose):
                    cfg = self.valid_config(daemon, harness.free_port())
                    d = harness.RelaykitDaemon(daemon, cfg, args=["-v"] if verbose else [],
                                               workdir=self.tmp)
                    d.start()
                    # The port accepts before the loop handles signals: wait for "ready".
                    harness.wait_until(lambda: "ready: listening" in d.stderr(), 10, "ready")
                    d.hup()
                    harness.wait_until(lambda: "configuration reloaded" in d.stderr(), 10,
                                       "reload logged")
                    self.assertEqual(d.stop(), 0)
                    lines = d.stderr().splitlines()
                    self.assertTrue(lines)
                    for line in lines:
                        self.assertRegex(line, r"^<[0-7]>%s\[\d+\]: " % re.escape(daemon))
                    text = "\n".join(lines)
                    self.assertRegex(text, r"(?m)^<6>%s\[\d+\]: ready: listening on" % daemon)
                    # Running as root is a warning: level 4.
                    self.assertRegex(text, r"(?m)^<4>%s\[\d+\]: warning: running as root" % daemon)
                    self.assertRegex(text, r"(?m)^<6>%s\[\d+\]: stopped$" % daemon)
                    debug = re.search(r"(?m)^<7>%s\[\d+\]: debug: " % daemon, text)
                    if verbose:
                        self.assertTrue(debug, text)
                    else:
                        self.assertIsNone(debug, text)

    def test_no_priority_prefix_on_a_terminal(self):
        """-f on a terminal: plain lines for a human, no "<N>"."""
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                cfg = self.valid_config(daemon, harness.free_port())
                master, slave = pty.openpty()
                try:
                    proc = subprocess.Popen([harness.binary_path(daemon), "-c", cfg, "-f"],
                                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
                    os.close(slave)
                    slave = None
                    out = b""
                    deadline = time.monotonic() + 10
                    while b"ready: listening" not in out and time.monotonic() < deadline:
                        ready, _, _ = select.select([master], [], [], 0.5)
                        if ready:
                            out += os.read(master, 4096)
                    proc.terminate()
                    self.assertEqual(proc.wait(10), 0)
                finally:
                    os.close(master)
                    if slave is not None:
                        os.close(slave)
                text = out.decode(errors="replace")
                self.assertRegex(text, r"(?m)^%s\[\d+\]: ready: listening" % daemon)
                self.assertNotRegex(text, r"(?m)^<\d>")

    def test_sd_notify_ready_reloading_stopping(self):
        """Type=notify: the daemon tells NOTIFY_SOCKET (a datagram socket here, as systemd's)
        READY=1 once it listens, RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 at stop."""
        for daemon in DAEMONS:
            with self.subTest(daemon=daemon):
                path = os.path.join(self.tmp, "notify-%s" % daemon)
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.bind(path)
                    sock.settimeout(10)
                    cfg = self.valid_config(daemon, harness.free_port())
                    old = os.environ.get("NOTIFY_SOCKET")
                    os.environ["NOTIFY_SOCKET"] = path
                    try:
                        d = harness.RelaykitDaemon(daemon, cfg, workdir=self.tmp)
                        d.start()
                    finally:
                        if old is None:
                            del os.environ["NOTIFY_SOCKET"]
                        else:
                            os.environ["NOTIFY_SOCKET"] = old
                    try:
                        def states():
                            return sock.recv(4096).decode().split("\n")
                        self.assertIn("READY=1", states())
                        d.hup()
                        self.assertIn("RELOADING=1", states())
                        self.assertIn("READY=1", states())
                        self.assertIsNone(d.proc.poll())
                    finally:
                        self.assertEqual(d.stop(), 0)
                    self.assertIn("STOPPING=1", states())


class CliCommandLineTest(harness.E2ETestCase):

    def test_version_help_usage(self):
        binary = harness.binary_path("relaykit")
        proc = run([binary, "--version"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(project_version(), proc.stdout)
        self.assertEqual(proc.stderr, "")
        proc = run([binary, "--help"])
        self.assertEqual(proc.returncode, 0)
        self.assertIn("check", proc.stdout)
        for args in ([], ["bogus"], ["--bogus"], ["check", "--bogus"], ["query"],
                     ["check", "-c"]):
            with self.subTest(args=args):
                proc = run([binary] + args)
                self.assertEqual(proc.returncode, 2, (proc.stdout, proc.stderr))
                self.assertNotEqual(proc.stderr.strip(), "")


class ManPageTest(harness.E2ETestCase):

    def page(self, name):
        path = os.path.join(man_dir(), name)
        self.assertTrue(os.path.isfile(path), "%s not generated" % path)
        return path

    def test_pages_render_without_warnings(self):
        for name in MAN_PAGES:
            with self.subTest(page=name):
                out, err = render_man(self.page(name))
                self.assertEqual(err, "", "man --warnings on %s" % name)
                text = plain_man(self.page(name))
                for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "CONFIGURATION PARAMETERS",
                                "DIAGNOSTICS", "SEE ALSO"):
                    self.assertRegex(text, r"(?m)^%s$" % section, name)
                self.assertIn(project_version(), text)

    def test_a_broken_page_is_caught(self):
        # The warning check itself: an undefined macro must show up on stderr.
        bad = os.path.join(self.tmp, "bad.8")
        harness.write_file(bad, ".TH BAD 8\n.SH NAME\nbad \\- page\n.NOSUCHMACRO\n")
        _, err = render_man(bad)
        self.assertIn("NOSUCHMACRO", err)

    def test_every_option_is_documented(self):
        pages = {"relaykit-socketmapd": "relaykit-socketmapd.8",
                 "relaykit-policyd": "relaykit-policyd.8",
                 "relaykit-milter": "relaykit-milter.8"}
        for binary, page in pages.items():
            text = plain_man(self.page(page))
            proc = run([harness.binary_path(binary), "--help"])
            options = help_options(proc.stdout)
            self.assertTrue(options)
            for opt in options:
                with self.subTest(binary=binary, option=opt):
                    self.assertRegex(text, r"(?<![\w-])%s(?![\w-])" % re.escape(opt))

    def test_every_cli_subcommand_and_option_is_documented(self):
        binary = harness.binary_path("relaykit")
        text = plain_man(self.page("relaykit.1"))
        top = run([binary, "--help"]).stdout
        subcommands = re.findall(r"(?m)^  (\w[\w-]*)\s{2,}", top.split("Subcommands:", 1)[-1])
        self.assertIn("check", subcommands)
        todo = [[s] for s in subcommands]
        while todo:
            path = todo.pop()
            with self.subTest(command=" ".join(path)):
                self.assertRegex(text, r"\b%s\b" % re.escape(path[-1]))
                out = run([binary] + path + ["--help"]).stdout
                for opt in help_options(out.split("Subcommands:", 1)[0]):
                    self.assertRegex(text, r"(?<![\w-])%s(?![\w-])" % re.escape(opt),
                                     "relaykit %s %s" % (" ".join(path), opt))
                if "Subcommands:" in out:
                    for sub in re.findall(r"(?m)^  (\w[\w-]*)\s{2,}",
                                          out.split("Subcommands:", 1)[1]):
                        todo.append(path + [sub])

    def test_every_config_key_is_documented(self):
        with open(os.path.join(harness.source_dir(), "man", "relaykit.yaml.5.in")) as f:
            source = f.read()
        keys = config_keys()
        self.assertIn("listen", keys)
        self.assertIn("on_store_error", keys)
        for key in sorted(keys):
            with self.subTest(key=key):
                # Documented means: set in bold, as the page writes every key.
                self.assertIn("\\fB%s\\fR" % key, source)


if __name__ == "__main__":
    harness.main()
