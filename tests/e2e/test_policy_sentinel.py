#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_policy_sentinel.py: relaykit-policyd follows a Redis Sentinel failover without restart.

A real topology on loopback: redis-server primary + replica, three redis-sentinel processes
(quorum 2, down-after 1 s), relaykit-policyd with `redis: sentinels:` and `master_name:`
(`on_store_error: closed`). A client floods END-OF-MESSAGE requests; the primary is SIGKILLed;
the sentinels promote the replica. Checked: discovery at start (ROLE is master), the decisions
taken while no primary is known are on_store_error's (DEFER_IF_PERMIT, each within timeout_ms),
the gap without a primary as policyd saw it (printed), that the limit's counters charged before
the failover are still enforced after it (replication was awaited, so none were lost), /health
503 during and 200 after, `relaykit limits show` through the sentinels, and a second failover
back to the first server.
"""

import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

MASTER = "relaykit-test"


def request(client, state="END-OF-MESSAGE"):
    attrs = {"request": "smtpd_access_policy", "protocol_state": state,
             "client_address": client, "sender": "app@corp.local", "recipient": "r@example.net",
             "recipient_count": "1", "instance": "1.1", "size": "100"}
    return "".join("%s=%s\n" % kv for kv in attrs.items()).encode() + b"\n"


read_reply = harness.read_policy_reply


health = harness.http_health


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                          text=True, timeout=10).stdout.strip()


class Topology:
    """Primary, replica and three sentinels, each a child process with its own log."""

    def __init__(self, dir):
        self.dir = dir
        self.ports = {"a": harness.free_port(), "b": harness.free_port()}
        self.sentinel_ports = [harness.free_port() for _ in range(3)]
        self.procs = {}

    def start_server(self, name, replica_of=None):
        args = ["redis-server", "--port", str(self.ports[name]), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
                "--dbfilename", "%s.rdb" % name, "--logfile", os.path.join(self.dir, name + ".log")]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.ports[replica_of])]
        self.procs[name] = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        harness.wait_port(self.ports[name], proc=self.procs[name], what="redis " + name)

    def start_sentinels(self, primary, count=3, extra=()):
        for i, port in enumerate(self.sentinel_ports[:count]):
            conf = os.path.join(self.dir, "sentinel%d.conf" % i)
            harness.write_file(conf, "\n".join([
                "port %d" % port, "bind 127.0.0.1", "dir %s" % self.dir,
                "logfile %s" % os.path.join(self.dir, "sentinel%d.log" % i),
                "sentinel resolve-hostnames no",
                "sentinel monitor %s 127.0.0.1 %d %d" % (MASTER, self.ports[primary],
                                                         min(2, count)),
                "sentinel down-after-milliseconds %s 1000" % MASTER,
                "sentinel failover-timeout %s 5000" % MASTER,
                "sentinel parallel-syncs %s 1" % MASTER] + list(extra) + [""]))
            name = "sentinel%d" % i
            self.procs[name] = subprocess.Popen(["redis-sentinel", conf],
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
            harness.wait_port(port, proc=self.procs[name], what=name)

    def start_replicated(self, extra=()):
        """Server a the primary, b its replica, three sentinels (`extra`: more sentinel.conf
        lines); returns once every sentinel knows the replica and has its quorum."""
        self.start_server("a")
        self.start_server("b", replica_of="a")
        self.start_sentinels("a", extra=extra)
        self.wait_sentinels_ready()

    def wait_sentinels_ready(self, timeout=30):
        harness.wait_until(lambda: all(
            "slave" in cli(p, "SENTINEL", "replicas", MASTER) and
            cli(p, "SENTINEL", "ckquorum", MASTER).startswith("OK")
            for p in self.sentinel_ports), timeout, "sentinels ready")

    def restart_as_replica(self, name, primary):
        """Starts the killed server `name` again as a replica of the new primary `primary` (as an
        administrator brings an old primary back; left to the sentinels' own reconfiguration,
        the restart took from 10 s to over a minute); returns once its link is up and every
        sentinel is ready again."""
        self.start_server(name, replica_of=primary)
        harness.wait_until(
            lambda: cli(self.ports[name], "ROLE").startswith("slave") and
            "master_link_status:up" in cli(self.ports[name], "INFO", "replication"),
            60, "old primary rejoined as a replica")
        self.wait_sentinels_ready(60)

    def switch_master_time(self, after, sentinels=None):
        """Wall-clock time of the first +switch-master logged at or after `after` by any of
        `sentinels` (indexes; default all), None when none did. Sentinel 0 is the one policyd
        asks while every sentinel answers (the first of its `sentinels:`)."""
        times = []
        for i in sentinels if sentinels is not None else range(len(self.sentinel_ports)):
            with open(os.path.join(self.dir, "sentinel%d.log" % i)) as f:
                for line in f:
                    m = re.match(r"^\d+:X (\d+ \w+ \d+ [\d:.]+) . \+switch-master ", line)
                    if m:
                        t = datetime.datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S.%f")
                        if t.timestamp() >= after:
                            times.append(t.timestamp())
        return min(times) if times else None

    def primary_port(self):
        out = cli(self.sentinel_ports[0], "SENTINEL", "get-master-addr-by-name", MASTER).split()
        return int(out[1]) if len(out) == 2 else None

    def kill(self, name):
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


class PolicySentinelTest(harness.E2ETestCase):
    def test_failover_and_back(self):
        topo = Topology(self.subdir("redis"))
        self.addCleanup(topo.stop)
        for i in range(3):
            self.register_log("sentinel%d" % i, os.path.join(topo.dir, "sentinel%d.log" % i))
        # Every sentinel knows the replica (and the others) before anything is killed.
        topo.start_replicated()

        port, metrics = harness.free_port(), harness.free_port()
        path = os.path.join(self.tmp, "relaykit.yaml")
        harness.write_file(path, (
            "policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: 127.0.0.1:%d\n"
            "  store: redis\n  on_store_error: closed\n"
            "  limits:\n    - {name: c, key: [client_address], max: 6, per: 1h}\n"
            "redis:\n  sentinels: [%s]\n  master_name: %s\n  timeout_ms: 200\n")
            % (port, metrics, ", ".join("127.0.0.1:%d" % p for p in topo.sentinel_ports), MASTER))
        d = self.start_daemon("relaykit-policyd", path, port=port)
        harness.wait_until(lambda: health(metrics) == (200, "ok\n"), 15, "health ok")
        self.assertIn("sentinels report primary 127.0.0.1:%d" % topo.ports["a"], d.stderr())

        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(conn.close)

        def ask(client):
            conn.sendall(request(client))
            return read_reply(conn)

        for _ in range(5):  # 5 of 6 used by 10.0.0.1
            self.assertEqual(ask("10.0.0.1"), "action=DUNNO\n\n")
        self.assertEqual(cli(topo.ports["a"], "WAIT", "1", "5000"), "1")  # replicated

        # `relaykit limits` finds the primary through the sentinels too.
        out = harness.run([harness.binary_path("relaykit"), "limits", "-c", path, "show",
                           "client_address=10.0.0.1"]).stdout
        self.assertIn("1 left", out)

        for rnd, (victim, survivor) in enumerate((("a", "b"), ("b", "a"))):
            answers = []  # (time, answer) from a flooding client
            stop = threading.Event()

            def flood():
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                i = 0
                while not stop.is_set():
                    i += 1
                    t0 = time.monotonic()
                    s.sendall(request("10.%d.%d.%d" % (rnd + 1, (i // 250) % 250, i % 250)))
                    answers.append((t0, time.monotonic() - t0, read_reply(s)))
                    time.sleep(0.01)
                s.close()
            thread = threading.Thread(target=flood)
            thread.start()
            time.sleep(0.5)
            killed_at = time.monotonic()
            topo.kill(victim)
            saw_503 = [False]

            def recovered():
                code, body = health(metrics)
                if code == 503:
                    saw_503[0] = True
                    self.assertTrue(body.startswith("unavailable: store unreachable"), body)
                return (saw_503[0] and code == 200 and topo.primary_port() == topo.ports[survivor]
                        and answers and answers[-1][2] == "action=DUNNO\n\n")
            harness.wait_until(recovered, 60, "failover %d" % rnd)
            time.sleep(0.3)
            stop.set()
            thread.join(10)

            after = [a for a in answers if a[0] >= killed_at]
            deferred = [a for a in after if a[2].startswith("action=DEFER_IF_PERMIT")]
            served = [a for a in after if a[2] == "action=DUNNO\n\n"]
            self.assertTrue(deferred, "no store errors seen")
            self.assertTrue(served, "never served again")
            self.assertEqual(len(deferred) + len(served), len(after),
                             [a[2] for a in after if a not in deferred and a not in served][:3])
            gap = max(a[0] for a in deferred) - killed_at
            slowest = max(a[1] for a in after)
            sys.stderr.write(
                "failover %d (%s -> %s): no primary for %.2f s as policyd saw it; %d decisions "
                "under on_store_error (DEFER_IF_PERMIT), %d served; slowest answer %.0f ms\n"
                % (rnd + 1, victim, survivor, gap, len(deferred), len(served), slowest * 1000))
            self.assertLess(slowest, 1.0)  # bounded by timeout_ms, never Postfix's 10 s
            self.assertIn("sentinels report primary 127.0.0.1:%d" % topo.ports[survivor],
                          d.stderr())
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics,
                                          timeout=5).read().decode().splitlines()
            self.assertIn("relaykit_policy_redis_failovers_total %d" % (rnd + 1), text)
            self.assertIn('relaykit_policy_redis_primary{address="127.0.0.1:%d"} 1'
                          % topo.ports[survivor], text)
            self.assertIn('relaykit_policy_redis_primary{address="127.0.0.1:%d"} 0'
                          % topo.ports[victim], text)
            self.assertIn("relaykit_policy_redis_no_primary_seconds 0", text)
            if rnd == 0:
                # The counters charged before the failover were replicated: 1 left for 10.0.0.1.
                self.assertEqual(ask("10.0.0.1"), "action=DUNNO\n\n")
                self.assertTrue(ask("10.0.0.1").startswith("action=450 "))
                # The old primary comes back; the sentinels make it a replica of the new one.
                topo.restart_as_replica(victim, survivor)
                self.assertEqual(cli(topo.ports[survivor], "WAIT", "1", "5000"), "1")
            else:
                self.assertTrue(ask("10.0.0.1").startswith("action=450 "))  # still enforced
        self.assertTrue(d.running())

    def test_sentinel_password(self):
        topo = Topology(self.subdir("redis"))
        self.addCleanup(topo.stop)
        topo.start_server("a")
        topo.start_sentinels("a", count=1, extra=["requirepass sentinel-Secret-9"])
        sentinel = topo.sentinel_ports[0]
        for password, healthy in (("wrong-Secret-3", False), ("sentinel-Secret-9", True)):
            port, metrics = harness.free_port(), harness.free_port()
            pass_file = os.path.join(self.tmp, "sentinel.pass")
            harness.write_file(pass_file, password + "\n", mode=0o600)
            path = os.path.join(self.tmp, "relaykit.yaml")
            harness.write_file(path, (
                "policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: 127.0.0.1:%d\n"
                "  store: redis\n  on_store_error: closed\n"
                "  limits:\n    - {name: c, key: [client_address], max: 6, per: 1h}\n"
                "redis:\n  sentinels: [127.0.0.1:%d]\n  master_name: %s\n"
                "  sentinel_password_file: %s\n  timeout_ms: 200\n")
                % (port, metrics, sentinel, MASTER, pass_file))
            d = self.start_daemon("relaykit-policyd", path, port=port)
            if healthy:
                harness.wait_until(lambda: health(metrics) == (200, "ok\n"), 15, "health ok")
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(request("10.0.0.1"))
                    self.assertEqual(read_reply(s), "action=DUNNO\n\n")
                out = harness.run([harness.binary_path("relaykit"), "limits", "-c", path, "show",
                                   "client_address=10.0.0.1"]).stdout
                self.assertIn("5 left", out)
            else:
                harness.wait_until(lambda: "AUTH failed" in d.stderr(), 10, "AUTH error line")
                self.assertIn("redis: sentinel 127.0.0.1:%d: AUTH failed: WRONGPASS" % sentinel,
                              d.stderr())
                code, body = health(metrics)
                self.assertEqual(code, 503, body)
                self.assertIn('primary of "%s", none known' % MASTER, body)
                r = harness.run([harness.binary_path("relaykit"), "limits", "-c", path, "show",
                                 "client_address=10.0.0.1"], check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("AUTH failed", r.stdout + r.stderr)
                self.assertNotIn(password, r.stdout + r.stderr)
            self.assertNotIn(password, d.stderr())
            d.stop()


if __name__ == "__main__":
    harness.main()
