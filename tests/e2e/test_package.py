# SPDX-License-Identifier: Apache-2.0
"""test_package.py: the Debian package, built from this tree, installed and run.

Builds the .debs with scripts/package (into BUILD/package/; RELAYKIT_PACKAGE_DEBS="a.deb b.deb"
reuses debs built before), extracts relaykit_*.deb into a staging root with dpkg-deb -x, then:
  - contents: the fixed paths (daemons, CLI, units, man pages, config as a conffile, sysusers
    and tmpfiles snippets), stripped binaries whose debug info is in relaykit-dbgsym;
  - lintian on every .deb: no error and no warning (the explained ones are overridden in
    debian/relaykit.lintian-overrides);
  - `systemd-analyze verify --root=STAGE` on the four units: no output at all; the units carry
    Type=notify, User=relaykit, the hardening and Before=postfix.service;
  - the installed man pages render without warnings;
  - the installed daemons, run as an unprivileged user (nobody stands in for relaykit) with the
    installed default configuration adapted to loopback ports and to a private Postfix that runs
    Debian's stock master.cf (chroot = y): milter and policy sockets in QUEUE/relaykit/ (a setgid
    directory of group postfix, as the package creates /var/spool/postfix/relaykit), named in
    main.cf relative to the queue directory; mail flows through all three daemons and the
    sockets are gone after the daemons stop. The absolute socket path fails in the chroot, as
    documented.
  - README.md's "## Installing from the package" block, run literally (it installs the .deb
    with apt-get and then purges it): only when RELAYKIT_TEST_SYSTEM_INSTALL=1 (CI sets it on
    its throwaway machine), skipped otherwise because it changes the machine (a system user,
    /etc/relaykit, dpkg's database).
"""

import glob
import os
import pwd
import re
import grp
import shutil
import smtplib
import stat
import subprocess
import tempfile
import unittest
import urllib.request

import harness

BUILD_TIMEOUT = 1800   # seconds for scripts/package (a cold build on a busy 2-core machine)
LINTIAN_TIMEOUT = 300
UNITS = ["relaykit-socketmapd.service", "relaykit-milter.service", "relaykit-policyd.service",
         "relaykit.target"]
SERVICES = UNITS[:3]
DAEMONS = ["relaykit-socketmapd", "relaykit-milter", "relaykit-policyd"]
MAN_PAGES = ["usr/share/man/man1/relaykit.1.gz", "usr/share/man/man8/relaykit-socketmapd.8.gz",
             "usr/share/man/man8/relaykit-milter.8.gz", "usr/share/man/man8/relaykit-policyd.8.gz",
             "usr/share/man/man5/relaykit.yaml.5.gz"]
# The unprivileged user the staged daemons run as (the package's relaykit user does not exist on
# a build machine).
RUN_USER = "nobody"
RUN_GROUP = "nogroup"

_debs = None


def build_debs():
    """The .deb paths (built once per process)."""
    global _debs
    if _debs is not None:
        return _debs
    given = os.environ.get("RELAYKIT_PACKAGE_DEBS", "").split()
    if given:
        _debs = [os.path.abspath(p) for p in given]
        return _debs
    env = dict(os.environ, RELAYKIT_PACKAGE_DIR=os.path.join(harness.build_dir(), "package"))
    proc = subprocess.run([os.path.join(harness.source_dir(), "scripts", "package"),
                           "--no-install"], capture_output=True, text=True, env=env,
                          timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError("scripts/package failed (%d):\n%s" % (proc.returncode,
                                                                   proc.stderr[-6000:]))
    lines = proc.stdout.strip().splitlines()
    _debs = [l for l in lines if l.endswith(".deb")]
    if not _debs or lines[-len(_debs):] != _debs:
        raise RuntimeError("scripts/package did not end with the .deb paths:\n" + proc.stdout)
    return _debs


def main_deb():
    debs = [d for d in build_debs() if re.search(r"/relaykit_[^/]*\.deb$", d)]
    assert len(debs) == 1, build_debs()
    return debs[0]


def dbgsym_deb():
    debs = [d for d in build_debs() if "/relaykit-dbgsym_" in d]
    assert len(debs) == 1, build_debs()
    return debs[0]


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def build_id(path):
    out = run(["readelf", "-n", path]).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return m.group(1) if m else None


class PackageTest(harness.E2ETestCase):

    @classmethod
    def setUpClass(cls):
        cls.debs = build_debs()
        cls.stage = tempfile.mkdtemp(prefix="relaykit-stage-", dir="/tmp")
        os.chmod(cls.stage, 0o755)
        subprocess.run(["dpkg-deb", "-x", main_deb(), cls.stage], check=True)
        cls.dbg = tempfile.mkdtemp(prefix="relaykit-dbgsym-", dir="/tmp")
        subprocess.run(["dpkg-deb", "-x", dbgsym_deb(), cls.dbg], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.stage, ignore_errors=True)
        shutil.rmtree(cls.dbg, ignore_errors=True)

    def staged(self, rel):
        return os.path.join(self.stage, rel.lstrip("/"))

    # -- contents --------------------------------------------------------------------------

    def test_contents(self):
        for rel in (["usr/sbin/" + d for d in DAEMONS] + ["usr/bin/relaykit"]):
            with self.subTest(path=rel):
                path = self.staged(rel)
                self.assertTrue(os.access(path, os.X_OK), rel)
                sections = run(["readelf", "-S", "-W", path]).stdout
                self.assertNotIn(".debug_info", sections, "%s is not stripped" % rel)
                bid = build_id(path)
                self.assertTrue(bid, rel)
                debug = os.path.join(self.dbg, "usr/lib/debug/.build-id", bid[:2], bid[2:] + ".debug")
                self.assertTrue(os.path.isfile(debug), "no debug info for %s in dbgsym" % rel)
        for rel in (["lib/systemd/system/" + u for u in UNITS] + MAN_PAGES +
                    ["etc/relaykit/relaykit.yaml", "usr/lib/sysusers.d/relaykit.conf",
                     "usr/lib/tmpfiles.d/relaykit.conf", "usr/share/doc/relaykit/copyright"]):
            with self.subTest(path=rel):
                self.assertTrue(os.path.isfile(self.staged(rel)), rel)
        ctrl = os.path.join(self.tmp, "control")
        subprocess.run(["dpkg-deb", "-e", main_deb(), ctrl], check=True)
        with open(os.path.join(ctrl, "conffiles")) as f:
            self.assertIn("/etc/relaykit/relaykit.yaml", f.read().split())
        with open(os.path.join(ctrl, "postinst")) as f:
            postinst = f.read()
        self.assertIn("dpkg-statoverride --update --add root relaykit 0640 "
                      "/etc/relaykit/relaykit.yaml", postinst)
        self.assertIn("systemd-sysusers", postinst)
        self.assertEqual(run(["sh", "-n", os.path.join(ctrl, "postinst")]).returncode, 0)
        with open(self.staged("usr/lib/sysusers.d/relaykit.conf")) as f:
            self.assertRegex(f.read(), r"(?m)^u relaykit ")
        with open(self.staged("usr/lib/tmpfiles.d/relaykit.conf")) as f:
            self.assertRegex(f.read(), r"(?m)^d /var/spool/postfix/relaykit 2750 relaykit postfix")
        # The staged CLI is the packaged one and answers --version.
        proc = run([self.staged("usr/bin/relaykit"), "--version"])
        self.assertEqual(proc.returncode, 0)
        version = run(["dpkg-deb", "-f", main_deb(), "Version"]).stdout.strip()
        self.assertIn(version, proc.stdout)
        # The packaged configuration is valid as shipped.
        proc = run([self.staged("usr/bin/relaykit"), "check", "-c",
                    self.staged("etc/relaykit/relaykit.yaml")])
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_lintian_clean(self):
        proc = run(["lintian", "--fail-on", "error,warning", "--tag-display-limit", "0"]
                   + self.debs, timeout=LINTIAN_TIMEOUT)
        tags = [l for l in proc.stdout.splitlines() if re.match(r"^[EW]: ", l)]
        self.assertEqual(tags, [], proc.stdout)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    # -- units -----------------------------------------------------------------------------

    def verify_root(self):
        """A copy of the staged tree that systemd-analyze verify can load on its own: the
        package's files plus the system targets and /bin/kill (ExecReload) of this machine."""
        root = os.path.join(self.tmp, "root")
        shutil.copytree(self.stage, root, symlinks=True)
        units = os.path.join(root, "lib/systemd/system")
        for target in glob.glob("/lib/systemd/system/*.target"):
            dest = os.path.join(units, os.path.basename(target))
            if not os.path.exists(dest):
                shutil.copy(target, dest)
        os.makedirs(os.path.join(root, "usr/bin"), exist_ok=True)
        shutil.copy("/usr/bin/kill", os.path.join(root, "usr/bin/kill"))
        if not os.path.exists(os.path.join(root, "bin")):
            os.symlink("usr/bin", os.path.join(root, "bin"))
        return root

    def verify(self, root, units):
        return run(["systemd-analyze", "verify", "--man=no", "--root=" + root]
                   + ["/lib/systemd/system/" + u for u in units])

    def test_units_verify_clean(self):
        root = self.verify_root()
        proc = self.verify(root, UNITS)
        self.assertEqual((proc.returncode, proc.stdout + proc.stderr), (0, ""))
        # The check bites: a unit whose ExecStart is missing is reported.
        os.unlink(os.path.join(root, "usr/sbin/relaykit-policyd"))
        proc = self.verify(root, ["relaykit-policyd.service"])
        self.assertIn("relaykit-policyd", proc.stdout + proc.stderr)
        self.assertNotEqual(proc.returncode, 0)

    def test_unit_settings(self):
        for unit in SERVICES:
            daemon = unit[:-len(".service")]
            with open(self.staged("lib/systemd/system/" + unit)) as f:
                text = f.read()
            with self.subTest(unit=unit):
                for line in ("Type=notify", "User=relaykit", "Group=relaykit",
                             "ExecReload=/bin/kill -HUP $MAINPID", "Before=postfix.service",
                             "RuntimeDirectory=%s" % daemon, "PartOf=relaykit.target",
                             "WantedBy=relaykit.target", "ProtectSystem=strict",
                             "NoNewPrivileges=true", "PrivateTmp=true",
                             "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                             "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
                             "ReadWritePaths=-/var/spool/postfix/relaykit",
                             "ExecStart=/usr/sbin/%s -f -c /etc/relaykit/relaykit.yaml" % daemon):
                    self.assertRegex(text, r"(?m)^%s$" % re.escape(line))
        with open(self.staged("lib/systemd/system/relaykit.target")) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^WantedBy=multi-user.target$")
        self.assertRegex(text, r"(?m)^Before=postfix.service$")

    def test_man_pages_render(self):
        for rel in MAN_PAGES:
            with self.subTest(page=rel):
                env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
                proc = run(["man", "--warnings", "-E", "UTF-8", "-l", self.staged(rel)], env=env)
                self.assertEqual(proc.returncode, 0)
                self.assertEqual(proc.stderr, "")
                self.assertIn("SEE ALSO", proc.stdout)

    # -- the installed daemons next to a chrooted Postfix -----------------------------------

    def adapted_config(self, queue, ports):
        """The installed relaykit.yaml with loopback ports and the private queue directory; every
        replacement must apply (a changed default config fails here, not silently)."""
        with open(self.staged("etc/relaykit/relaykit.yaml")) as f:
            text = f.read()
        replacements = [
            ("inet:127.0.0.1:10041", "inet:127.0.0.1:%d" % ports["socketmap"]),
            ("metrics_listen: 127.0.0.1:9441", "metrics_listen: 127.0.0.1:%d" % ports["m1"]),
            ("metrics_listen: 127.0.0.1:9442", "metrics_listen: 127.0.0.1:%d" % ports["m2"]),
            ("metrics_listen: 127.0.0.1:9443", "metrics_listen: 127.0.0.1:%d" % ports["m3"]),
            ("listen: unix:/var/spool/postfix/relaykit/milter",
             "listen: unix:%s/relaykit/milter" % queue),
            ("listen: unix:/var/spool/postfix/relaykit/policy",
             "listen: unix:%s/relaykit/policy" % queue),
            ("/run/relaykit-policyd/admin.sock", os.path.join(self.tmp, "run", "admin.sock")),
            # The commented example rule, switched on so the test can see the milter at work.
            ("  # header_checks: |\n  #   /^X-Originating-IP:/      IGNORE\n",
             "  header_checks: |\n    /^X-Originating-IP:/      IGNORE\n"),
        ]
        for old, new in replacements:
            self.assertIn(old, text, "the packaged relaykit.yaml changed: adapt this test")
            text = text.replace(old, new)
        etc = os.path.join(self.tmp, "etc")
        os.makedirs(etc)
        os.chmod(etc, 0o755)
        path = os.path.join(etc, "relaykit.yaml")
        harness.write_file(path, text)
        # As the package sets it: root:<the daemons' group> 0640.
        os.chown(path, 0, grp.getgrnam(RUN_GROUP).gr_gid)
        os.chmod(path, 0o640)
        run_dir = os.path.join(self.tmp, "run")
        os.makedirs(run_dir)
        os.chown(run_dir, pwd.getpwnam(RUN_USER).pw_uid, grp.getgrnam(RUN_GROUP).gr_gid)
        return path

    def start_staged(self, daemon, config, port=None, unix_socket=None):
        """The staged daemon, started as RUN_USER (as the unit's User= does), with -f."""
        wrapper = os.path.join(self.tmp, "run-" + daemon)
        harness.write_file(wrapper, "#!/bin/sh\nexec setpriv --reuid=%s --regid=%s --clear-groups "
                           "%s \"$@\"\n" % (RUN_USER, RUN_GROUP, self.staged("usr/sbin/" + daemon)),
                           mode=0o755)
        d = harness.RelaykitDaemon(daemon, config, port=port, workdir=self.tmp,
                                   unix_socket=unix_socket)
        d.binary = wrapper
        self.addCleanup(d.stop)
        d.start()
        self.register_log(daemon, d.stderr_path)
        return d

    def start_chrooted_postfix(self, relay_port, extra_main_cf):
        pf = DebianMasterCfPostfix(self.subdir("postfix"), relay_port=relay_port,
                                   extra_main_cf=extra_main_cf)
        self.addCleanup(pf.stop)
        pf.start()
        self.register_log("postfix maillog", pf.maillog_path)
        return pf

    def test_installed_daemons_with_chrooted_postfix(self):
        ports = {k: harness.free_port() for k in ("socketmap", "m1", "m2", "m3")}
        pf_dir = self.subdir("postfix")
        queue = os.path.join(pf_dir, "queue")
        os.makedirs(queue, exist_ok=True)
        # What the package does for /var/spool/postfix/relaykit (postinst and tmpfiles.d).
        sockdir = os.path.join(queue, "relaykit")
        os.makedirs(sockdir)
        os.chown(sockdir, pwd.getpwnam(RUN_USER).pw_uid, grp.getgrnam("postfix").gr_gid)
        os.chmod(sockdir, 0o2750)
        config = self.adapted_config(queue, ports)
        milter_sock = os.path.join(sockdir, "milter")
        policy_sock = os.path.join(sockdir, "policy")

        sink = self.start_sink()
        daemons = [self.start_staged("relaykit-socketmapd", config, port=ports["socketmap"]),
                   self.start_staged("relaykit-milter", config, unix_socket=milter_sock),
                   self.start_staged("relaykit-policyd", config, unix_socket=policy_sock)]
        for sock in (milter_sock, policy_sock):
            st = os.stat(sock)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(grp.getgrgid(st.st_gid).gr_name, "postfix", sock)
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660, sock)
            self.assertEqual(pwd.getpwuid(st.st_uid).pw_name, RUN_USER, sock)

        # The wiring the packaged config documents: names relative to the queue directory.
        policy = "check_policy_service { unix:relaykit/policy, timeout=10s, default_action=DUNNO }"
        pf = self.start_chrooted_postfix(sink.port, {
            "smtpd_milters": "unix:relaykit/milter",
            "non_smtpd_milters": "$smtpd_milters",
            "milter_default_action": "tempfail",
            "smtpd_recipient_restrictions": policy + ", permit_mynetworks, reject_unauth_destination",
            "smtpd_end_of_data_restrictions": policy,
            "transport_maps": "socketmap:inet:127.0.0.1:%d:transport" % ports["socketmap"],
        })
        # Sanity: this Postfix runs Debian's master.cf, chrooted.
        self.assertRegex(pf.postconf("-Fh", "cleanup/unix/chroot"), r"^y")
        self.assertRegex(pf.postconf("-Fh", "%s/inet/chroot" % pf.smtpd_service), r"^y")

        msg = harness.make_message("root@example.test", "user@corp.test", "through the chroot",
                                   extra_headers=[("X-Originating-IP", "[10.9.9.9]")])
        self.assertEqual(harness.send_smtp(pf.port, "root@example.test", ["user@corp.test"], msg),
                         {})
        got = sink.messages(wait_for=1)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].header("Subject"), "through the chroot")
        self.assertIsNone(got[0].header("X-Originating-IP"), "the milter did not run")
        # The policy server was asked at RCPT and END-OF-MESSAGE.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ports["m3"], timeout=10) as r:
            metrics = r.read().decode()
        self.assertRegex(metrics, r'relaykit_policy_requests_total\{stage="rcpt"\} [1-9]')
        self.assertRegex(metrics,
                         r'relaykit_policy_requests_total\{stage="end_of_message"\} [1-9]')
        # The packaged transport table, over TCP from the chrooted trivial-rewrite.
        # (smtpd refuses the recipient at RCPT with the error transport's text.)
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as refused:
            harness.send_smtp(pf.port, "root@example.test", ["nobody@relaykit.invalid"],
                              harness.make_message("root@example.test", "nobody@relaykit.invalid",
                                                   "to the example entry"))
        self.assertIn(b"relaykit example entry", refused.exception.recipients[
            "nobody@relaykit.invalid"][1])

        # Stopped: clean exits, no socket left behind.
        for d in daemons:
            self.assertEqual(d.stop(), 0, d.stderr())
        self.assertEqual(sorted(os.listdir(sockdir)), [])

    def test_absolute_socket_path_fails_in_the_chroot(self):
        """The trap the documentation warns about: an absolute unix: path for smtpd_milters is
        resolved inside the chroot, so the milter is not found and mail is tempfailed."""
        ports = {k: harness.free_port() for k in ("socketmap", "m1", "m2", "m3")}
        pf_dir = self.subdir("postfix")
        queue = os.path.join(pf_dir, "queue")
        sockdir = os.path.join(queue, "relaykit")
        os.makedirs(sockdir)
        os.chown(sockdir, pwd.getpwnam(RUN_USER).pw_uid, grp.getgrnam("postfix").gr_gid)
        os.chmod(sockdir, 0o2750)
        config = self.adapted_config(queue, ports)
        milter_sock = os.path.join(sockdir, "milter")
        sink = self.start_sink()
        self.start_staged("relaykit-milter", config, unix_socket=milter_sock)
        pf = self.start_chrooted_postfix(sink.port, {"smtpd_milters": "unix:" + milter_sock,
                                                     "milter_default_action": "tempfail"})
        proc = harness.swaks("--from", "root@example.test", "--to", "user@corp.test",
                             port=pf.port, check=False)
        self.assertRegex(proc.stdout, r"451 4\.7\.1")
        pf.wait_log(r"No such file or directory")


class DebianMasterCfPostfix(harness.PostfixInstance):
    """A private Postfix whose master.cf is Debian's stock one (/usr/share/postfix/master.cf.dist:
    smtpd, cleanup, trivial-rewrite, smtp ... chroot = y), only the smtpd listener moved to
    127.0.0.1:PORT."""

    smtpd_service = None

    def write_config(self):
        super().write_config()
        with open("/usr/share/postfix/master.cf.dist") as f:
            text = f.read()
        listener = "127.0.0.1:%d" % self.port
        text, n = re.subn(r"(?m)^smtp      inet  n       -       y       -       -       smtpd$",
                          listener + " inet n - y - - smtpd", text)
        assert n == 1, "Debian's master.cf.dist changed"
        self.smtpd_service = listener
        harness.write_file(os.path.join(self.etc, "master.cf"), text)
        self._backdate_main_cf()


class ReadmeInstallTest(harness.E2ETestCase):
    """README.md's install section, run as written (it installs and then purges the package)."""

    def readme_block(self):
        with open(os.path.join(harness.source_dir(), "README.md")) as f:
            text = f.read()
        m = re.search(r"(?ms)^## Installing from the package\n(.*?)(?=^## |\Z)", text)
        self.assertTrue(m, "README.md has no '## Installing from the package' section")
        blocks = re.findall(r"(?ms)^```sh\n(.*?)^```", m.group(1))
        self.assertEqual(len(blocks), 1, "expected one ```sh block in the install section")
        return blocks[0]

    def test_block_present(self):
        block = self.readme_block()
        self.assertIn("scripts/package", block)
        self.assertIn("apt-get install", block)

    @unittest.skipUnless(os.environ.get("RELAYKIT_TEST_SYSTEM_INSTALL") == "1",
                         "installs the package on this machine: set "
                         "RELAYKIT_TEST_SYSTEM_INSTALL=1 (CI does, on a throwaway machine)")
    def test_readme_install_block(self):
        block = self.readme_block()
        self.assertNotEqual(run(["dpkg-query", "-W", "relaykit"]).returncode, 0,
                            "relaykit is already installed here; not touching it")
        user_existed = run(["getent", "passwd", "relaykit"]).returncode == 0
        self.addCleanup(self.purge, user_existed)
        script = os.path.join(self.tmp, "install.sh")
        harness.write_file(script, block)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive",
                   RELAYKIT_PACKAGE_DIR=os.path.join(harness.build_dir(), "package"))
        proc = subprocess.run(["bash", "-euo", "pipefail", script], cwd=harness.source_dir(),
                              capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT,
                              stdin=subprocess.DEVNULL)
        self.assertEqual(proc.returncode, 0, proc.stdout[-4000:] + proc.stderr[-4000:])
        # What the package promises once installed.
        self.assertEqual(run(["getent", "passwd", "relaykit"]).returncode, 0)
        st = os.stat("/etc/relaykit/relaykit.yaml")
        self.assertEqual((st.st_uid, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)),
                         (0, "relaykit", 0o640))
        st = os.stat("/var/spool/postfix/relaykit")
        self.assertEqual((pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
                          stat.S_IMODE(st.st_mode)), ("relaykit", "postfix", 0o2750))
        proc = run(["runuser", "-u", "relaykit", "--", "relaykit", "check"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        proc = run(["dpkg-query", "-W", "-f", "${Conffiles}", "relaykit"])
        self.assertIn("/etc/relaykit/relaykit.yaml", proc.stdout)
        for daemon in DAEMONS:
            self.assertEqual(run(["/usr/sbin/" + daemon, "--check"]).returncode, 0, daemon)

    def purge(self, user_existed):
        run(["dpkg", "--purge", "relaykit", "relaykit-dbgsym"], timeout=300)
        if not user_existed and run(["getent", "passwd", "relaykit"]).returncode == 0:
            run(["userdel", "relaykit"])
            run(["groupdel", "relaykit"])
        self.assertFalse(os.path.exists("/etc/relaykit/relaykit.yaml"))


if __name__ == "__main__":
    harness.main()
