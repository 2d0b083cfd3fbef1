#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_policy_fleet.py: two Postfix relays share one limit through Redis Sentinel, and keep
every message through a failover and back.

A real topology on loopback: redis-server primary + replica and three redis-sentinel processes
(quorum 2, down-after 1 s; the topology class of test_policy_sentinel.py); two private Postfix
relays, each with `smtpd_end_of_data_restrictions = check_policy_service` to its own
relaykit-policyd with `redis: sentinels:` (relay 1 `on_store_error: open`, relay 2 `closed`, so
both failure modes run side by side); both relay to one smtp-sink. Limits, shared by both relays:
`fleet` (key sender_domain, 20000 per 366 d: every message charges it, the count of all charges)
and `capped` (key sender, 6 per 366 d: the flood uses a new sender per message, so each message
also leaves one key of its own on the primary; `capped-<round>@` is the principal that must be
refused on both relays after the failover).

Each round: 4 messages of the capped principal (2 per relay), replication caught up; then 3
SMTP clients per relay flood (one unique subject and sender per message), the primary is
SIGKILLed mid-flood, the sentinels promote the replica. Checked and printed:
  - the time without a primary as each policyd saw it (/health polled every 50 ms, and the
    largest relaykit_policy_redis_no_primary_seconds seen), and what relaykit adds to the
    sentinels' own failover: the new primary in use within 0.5 s of the +switch-master of the
    sentinel policyd asks;
  - the decisions under on_store_error meanwhile (answers_total store_error_open on relay 1:
    accepted, not counted; store_error_closed on relay 2: each one a 450 the client saw);
  - counts lost: the charges policyd had acknowledged (answers_total dunno) against the fleet
    counter on the new primary; and, per message of the closed relay, which accepted message's
    own key is missing on the new primary. Redis replicates asynchronously and relaykit does
    not WAIT, so a lost charge must have been acknowledged within the replication lag before
    the kill (asserted: within 1 s);
  - no 5xx ever; every 4xx message is sent again after the failover until accepted; every
    accepted message is delivered exactly once (sink, by subject);
  - the capped principal gets exactly its 2 remaining messages, then 450 on both relays;
  - metrics: failovers_total, the primary in use.
Round 2 restarts the killed server (it rejoins as a replica of the new primary) and kills the
new primary: the same checks, back to the first server.
"""

import collections
import hashlib
import os
import re
import smtplib
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_policy_sentinel import MASTER, Topology, cli  # noqa: E402

CLIENTS_PER_RELAY = 3
MAX_MESSAGES_PER_CLIENT = 1500  # bounds a round's flood whatever happens
FLEET_MAX = 20000  # 366 d / 20000 = 26 min per message: no refill while the test runs
CAPPED_MAX = 6
LOST_WINDOW = 1.0  # seconds before the kill within which a lost charge must have been acked
POLICY = "check_policy_service { inet:127.0.0.1:%d, timeout=10s, default_action=DUNNO }"
UNAVAILABLE = "Rate limit service unavailable"


def metrics(port):
    """{(name, labels): value} from /metrics."""
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def answers(snapshot, kind):
    return int(snapshot.get(("relaykit_policy_answers_total", '{answer="%s"}' % kind), 0))


def capped_key(sender):
    """The Redis key of the `capped` limit for this sender (policyd/README.md: key names)."""
    digest = hashlib.sha256(("sender=" + sender.lower()).encode()).hexdigest()[:32]
    return "relaykit:rl:{%s}:capped" % digest


def offsets_equal(primary_port, replica_port):
    def offset(port, field):
        m = re.search(r"^%s:(\d+)" % field, cli(port, "INFO", "replication"), re.M)
        return int(m.group(1)) if m else -1
    return offset(primary_port, "master_repl_offset") == offset(replica_port, "slave_repl_offset")


class Outcome:
    """One SMTP transaction as the client saw it."""

    def __init__(self, relay, sender, subject, t0, t1, code, text=""):
        self.relay, self.sender, self.subject = relay, sender, subject
        self.t0, self.t1, self.code, self.text = t0, t1, code, text


def send_on(session, port, sender, subject):
    """Sends one message on session[0] (an smtplib.SMTP, reopened when needed). Returns
    (code, text): 250 when accepted."""
    msg = harness.make_message(sender, "r@example.net", subject)
    msg = msg.replace("\n", "\r\n").encode()
    try:
        if session[0] is None:
            session[0] = smtplib.SMTP("127.0.0.1", port, timeout=30)
            session[0].ehlo("client.test.invalid")
        session[0].sendmail(sender, ["r@example.net"], msg)
        return 250, ""
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error.decode(errors="replace")
    except (smtplib.SMTPServerDisconnected, OSError) as e:
        # Not accepted as far as the client knows: it sends the message again later.
        if session[0] is not None:
            session[0].close()
        session[0] = None
        return 0, "disconnected: %s" % e
    except smtplib.SMTPException as e:  # anything else: recorded, and the test fails on it
        return -1, "%s: %s" % (type(e).__name__, e)


class Poller(threading.Thread):
    """/health of one policyd every 50 ms, and every fourth time its /metrics: (time, health
    code, body, no_primary_seconds or None)."""

    def __init__(self, metrics_port):
        super().__init__(daemon=True)
        self.port, self.samples, self.stop = metrics_port, [], threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            t = time.monotonic()
            code, body = harness.http_health(self.port)
            gauge = None
            n += 1
            if n % 4 == 0:  # the gauge changes once a second; /health is the timing
                try:
                    gauge = metrics(self.port).get(("relaykit_policy_redis_no_primary_seconds",
                                                    ""))
                except OSError:
                    pass
            self.samples.append((t, code, body, gauge))
            self.stop.wait(0.05)


class PolicyFleetTest(harness.E2ETestCase):
    def policyd(self, name, mode, sentinels):
        port, metrics_port = harness.free_port(), harness.free_port()
        path = os.path.join(self.tmp, name + ".yaml")
        harness.write_file(path, (
            "policy:\n  listen: inet:127.0.0.1:%d\n  metrics_listen: 127.0.0.1:%d\n"
            "  store: redis\n  on_store_error: %s\n  limits:\n"
            "    - {name: fleet, key: [sender_domain], max: %d, per: 366d}\n"
            "    - {name: capped, key: [sender], max: %d, per: 366d}\n"
            "redis:\n  sentinels: [%s]\n  master_name: %s\n  timeout_ms: 300\n")
            % (port, metrics_port, mode, FLEET_MAX, CAPPED_MAX,
               ", ".join("127.0.0.1:%d" % p for p in sentinels), MASTER))
        d = self.start_daemon("relaykit-policyd", path, port=port)
        d.metrics_port, d.config, d.mode = metrics_port, path, mode
        return d

    def fleet_used(self, config):
        """Charges on the `fleet` counter of corp.local, read through the sentinels."""
        out = harness.run([harness.binary_path("relaykit"), "limits", "-c", config, "show",
                           "--limit", "fleet", "sender=any@corp.local"]).stdout
        m = re.search(r"(\d+) left", out)
        self.assertIsNotNone(m, out)
        return FLEET_MAX - int(m.group(1))

    def test_fleet_failover(self):
        self.offset = 0
        topo = Topology(self.subdir("redis"))
        self.addCleanup(topo.stop)
        for i in range(3):
            self.register_log("sentinel%d" % i, os.path.join(topo.dir, "sentinel%d.log" % i))
        topo.start_replicated()

        sink = self.start_sink()
        daemons = [self.policyd("policy1", "open", topo.sentinel_ports),
                   self.policyd("policy2", "closed", topo.sentinel_ports)]
        relays = []
        for i, d in enumerate(daemons):
            relays.append(self.start_postfix("postfix%d" % (i + 1), relay_port=sink.port,
                                             extra_main_cf={
                                                 "smtpd_end_of_data_restrictions": POLICY % d.port,
                                                 "smtpd_policy_service_retry_delay": "1s"}))
            harness.wait_until(lambda: harness.http_health(d.metrics_port) == (200, "ok\n"), 20,
                               "policyd %d healthy" % (i + 1))
        outcomes = []  # every transaction of the test, in any phase, from any thread

        def transact(session, relay, sender, subject):
            t0 = time.monotonic()
            code, text = send_on(session, relays[relay].port, sender, subject)
            outcomes.append(Outcome(relay, sender, subject, t0, time.monotonic(), code, text))
            return code, text
        sessions = [[None], [None]]  # the main thread's own session per relay
        self.addCleanup(lambda: [s[0].close() for s in sessions if s[0] is not None])

        def send(relay, sender, subject):
            return transact(sessions[relay], relay, sender, subject)

        for rnd, (victim, survivor) in enumerate((("a", "b"), ("b", "a"))):
            self.round(rnd, topo, victim, survivor, daemons, send, transact, outcomes)
            if rnd == 0:
                # The killed server comes back as a replica of the new one.
                topo.restart_as_replica(victim, survivor)

        # No 5xx ever; every message the clients saw accepted delivered exactly once, and only
        # those.
        self.assertEqual([(o.code, o.text) for o in outcomes if o.code >= 500], [])
        accepted = collections.Counter(o.subject for o in outcomes if o.code == 250)
        self.assertEqual([s for s, n in accepted.items() if n != 1], [])
        for pf in relays:
            pf.wait_queue_empty(timeout=90)
        delivered = collections.Counter(m.header("Subject")
                                        for m in sink.messages(wait_for=len(accepted)))
        self.assertEqual(sorted(s for s, n in delivered.items() if n != 1), [])
        self.assertEqual(set(delivered), set(accepted))
        for pf in relays:
            self.assertNotRegex(pf.maillog(), r"status=(bounced|expired)")
        sys.stderr.write("fleet: %d transactions, %d messages accepted and delivered once each, "
                         "0 refused with 5xx, 0 bounced\n" % (len(outcomes), len(accepted)))
        for d in daemons:
            self.assertTrue(d.running())

    def round(self, rnd, topo, victim, survivor, daemons, send, transact, outcomes):
        capped = "capped-%d@corp.local" % rnd
        for i in range(4):  # 4 of 6 used, through both relays
            self.assertEqual(send(i % 2, capped, "capped r%d %d" % (rnd, i)), (250, ""))
        self.assertEqual(cli(topo.ports[victim], "EXISTS", capped_key(capped)), "1")
        harness.wait_until(lambda: offsets_equal(topo.ports[victim], topo.ports[survivor]), 30,
                           "replica caught up")
        before = [metrics(d.metrics_port) for d in daemons]
        fleet_before = self.fleet_used(daemons[0].config)
        acked_before = sum(answers(m, "dunno") for m in before)
        # Acknowledged minus counted: 0 at first, then what the last failover lost (or counted
        # unacknowledged); nothing changes it between failovers.
        offset_before = acked_before - fleet_before
        self.assertEqual(offset_before, self.offset)

        pollers = [Poller(d.metrics_port) for d in daemons]
        for p in pollers:
            p.start()
        stop = threading.Event()
        first = len(outcomes)

        def flood(relay, client):
            session = [None]  # one SMTP session per client, as a sending application keeps
            for n in range(MAX_MESSAGES_PER_CLIENT):
                if stop.is_set():
                    break
                code, _ = transact(session, relay,
                                   "f%d-%d-%d-%d@corp.local" % (rnd, relay, client, n),
                                   "fleet r%d relay%d c%d n%d" % (rnd, relay, client, n))
                if code != 250 and session[0] is not None:
                    # Refused: this client quits and comes back (Postfix would otherwise slow
                    # the session down after smtpd_soft_error_limit errors).
                    session[0].close()
                    session[0] = None
                time.sleep(0.01)
            if session[0] is not None:
                session[0].close()
        threads = [threading.Thread(target=flood, args=(relay, client))
                   for relay in range(2) for client in range(CLIENTS_PER_RELAY)]
        for t in threads:
            t.start()
        try:
            harness.wait_until(lambda: all(
                sum(1 for o in outcomes[first:] if o.relay == r and o.code == 250) >= 40
                for r in range(2)), 30, "flood under way")
            killed_at, killed_wall = time.monotonic(), time.time()
            topo.kill(victim)

            def recovered():
                return (topo.primary_port() == topo.ports[survivor] and
                        all(harness.http_health(d.metrics_port) == (200, "ok\n")
                            for d in daemons))
            harness.wait_until(recovered, 60, "failover %d" % (rnd + 1))
            back_at = time.monotonic()
            # The flood goes on until both relays have accepted mail again.
            harness.wait_until(lambda: all(
                sum(1 for o in outcomes[first:] if o.relay == r and o.code == 250 and
                    o.t0 > back_at) >= 5 for r in range(2)), 30, "both relays accept again")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
            for p in pollers:
                p.stop.set()
                p.join(10)
        flood_outcomes = outcomes[first:]

        # Messages the clients saw deferred (4xx, or a dropped session) are sent again now, each
        # until accepted (bounded): a deferred message is the client's to retry, never lost.
        retry = [o for o in flood_outcomes if o.code != 250]
        self.assertEqual([o.text for o in retry if o.code >= 500], [])
        pending = {o.subject: o for o in retry}
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for subject, o in list(pending.items()):
                if send(o.relay, o.sender, subject)[0] == 250:
                    del pending[subject]
            if pending:
                time.sleep(0.5)
        self.assertEqual(sorted(pending), [], "deferred messages never accepted")

        # The capped principal: its 2 remaining messages, then refused on both relays.
        results = [send(i % 2, capped, "capped r%d after %d" % (rnd, i)) for i in range(4)]
        self.assertEqual([c for c, _ in results], [250, 250, 450, 450], results)
        for _, text in results[2:]:
            self.assertIn("Too much mail (capped)", text)

        after = [metrics(d.metrics_port) for d in daemons]
        delta = [{k: answers(a, k) - answers(b, k) for k in
                  ("dunno", "refused", "store_error_open", "store_error_closed")}
                 for a, b in zip(after, before)]

        # The gap without a primary, as each policyd saw it.
        gaps = []
        for i, p in enumerate(pollers):
            # Samples that got an answer (a loaded machine may miss one), after the kill.
            down = [s for s in p.samples if s[0] >= killed_at and s[1] and s[2] != "ok\n"]
            self.assertTrue(down, "policyd %d never saw the primary gone" % (i + 1))
            gauge = max(s[3] or 0 for s in p.samples)
            gaps.append((down[-1][0] - down[0][0], gauge, down[0][0] - killed_at))
            expected = ((200, "degraded") if daemons[i].mode == "open" else (503, "unavailable"))
            self.assertEqual((down[0][1], down[0][2].split(":")[0]), expected, down[0])
            # The gauge counts from the moment the store lost its primary and is refreshed once
            # a second (read every 200 ms here): never above the gap, and its largest reading
            # within 1.5 s of it.
            self.assertLess(gauge, gaps[-1][0] + 0.5)
            self.assertGreater(gauge, gaps[-1][0] - 1.5)

        # What relaykit adds to the sentinels' own failover time: from the +switch-master of the
        # sentinel policyd asks (the first of its list) to the primary in use again (relaykit
        # asks every 250 ms while the primary they name cannot be reached).
        switched = topo.switch_master_time(killed_wall, sentinels=[0])
        self.assertIsNotNone(switched, "no +switch-master logged")
        switched -= killed_wall
        added = [g[0] + g[2] - switched for g in gaps]
        self.assertLess(max(added), 0.5, (switched, gaps))

        # Decisions under on_store_error: relay 1 (open) accepted them uncounted; relay 2
        # (closed) deferred each one, and the client saw exactly that many 450s.
        self.assertGreater(delta[0]["store_error_open"], 0, delta)
        self.assertEqual(delta[0]["store_error_closed"], 0, delta)
        self.assertGreater(delta[1]["store_error_closed"], 0, delta)
        self.assertEqual(delta[1]["store_error_open"], 0, delta)
        unavailable = [o for o in flood_outcomes if UNAVAILABLE in o.text]
        self.assertTrue(all(o.relay == 1 and o.code == 450 for o in unavailable),
                        [(o.relay, o.code, o.text) for o in unavailable][:3])
        retried_unavailable = [o for o in outcomes[first + len(flood_outcomes):]
                               if UNAVAILABLE in o.text]
        self.assertEqual(len(unavailable) + len(retried_unavailable),
                         delta[1]["store_error_closed"])
        # Anything else was a 4xx of Postfix's own (421 after too many errors) or a dropped
        # session, sent again like the others.
        self.assertEqual([o.text for o in flood_outcomes
                          if o.code not in (250, 0) and o.code // 100 != 4], [])

        # Counts lost: every charge acknowledged (answer dunno) against the shared counter on
        # the new primary. Fewer there: lost (acknowledged, not yet replicated at the kill);
        # more: charged but not acknowledged (in flight at the kill, or after timeout_ms).
        acked = sum(answers(m, "dunno") for m in after)
        fleet = self.fleet_used(daemons[0].config)
        lost = acked - fleet - offset_before
        self.offset = acked - fleet
        self.assertEqual(acked - acked_before, sum(d["dunno"] for d in delta))
        # Per message of the closed relay: accepted means charged; is its own key there?
        charged = [o for o in flood_outcomes if o.relay == 1 and o.code == 250]
        exists = harness.run(["redis-cli", "-p", str(topo.ports[survivor])],
                             input="".join("EXISTS %s\n" % capped_key(o.sender)
                                           for o in charged)).stdout.split()
        self.assertEqual(len(exists), len(charged))
        missing = [o for o, e in zip(charged, exists) if e != "1"]
        for o in missing:  # acknowledged within the replication lag before the kill
            self.assertGreater(o.t1, killed_at - LOST_WINDOW, o.subject)
            self.assertLess(o.t0, killed_at, o.subject)
        window = sum(1 for o in flood_outcomes if o.code == 250 and
                     killed_at - LOST_WINDOW < o.t1 and o.t0 < killed_at)
        in_flight = 2 * CLIENTS_PER_RELAY
        timeouts = sum(int(a.get(("relaykit_policy_redis_timeouts_total", ""), 0)) -
                       int(b.get(("relaykit_policy_redis_timeouts_total", ""), 0))
                       for a, b in zip(after, before))
        self.assertLessEqual(lost, window)
        self.assertGreaterEqual(lost, -(in_flight + timeouts))

        # Metrics: the new primary in use, the failover counted.
        for d in daemons:
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % d.metrics_port,
                                          timeout=5).read().decode().splitlines()
            self.assertIn("relaykit_policy_redis_failovers_total %d" % (rnd + 1), text)
            self.assertIn('relaykit_policy_redis_primary{address="127.0.0.1:%d"} 1'
                          % topo.ports[survivor], text)
            self.assertIn("sentinels report primary 127.0.0.1:%d" % topo.ports[survivor],
                          d.stderr())

        sent = len(flood_outcomes)
        ok = sum(1 for o in flood_outcomes if o.code == 250)
        sys.stderr.write(
            "failover %d (%s -> %s, down-after 1000 ms): %d messages offered during the flood, "
            "%d accepted at once, %d deferred and accepted on retry\n"
            "  no primary as policyd saw it (/health every 50 ms): relay 1 %.2f s, relay 2 "
            "%.2f s (first seen %.2f / %.2f s after the kill; largest "
            "relaykit_policy_redis_no_primary_seconds seen %.2f / %.2f)\n"
            "  the sentinel policyd asks switched %.2f s after the kill; the policyds used the "
            "new primary %.2f / %.2f s later\n"
            "  on_store_error meanwhile: relay 1 (open) %d decisions DUNNO, accepted uncounted; "
            "relay 2 (closed) %d DEFER_IF_PERMIT, each a 450 its client sent again\n"
            "  counts: %d charges acknowledged in this round, %d more on the new primary: %d lost (bound: the %d charges "
            "acknowledged within %.0f s before the kill; %d redis timeouts, %d clients in "
            "flight); closed relay: %d of %d accepted messages' own keys missing\n"
            "  capped principal: 2 more accepted after the failover, then 450 on both relays\n"
            % (rnd + 1, victim, survivor, sent, ok, sent - ok,
               gaps[0][0], gaps[1][0], gaps[0][2], gaps[1][2], gaps[0][1], gaps[1][1],
               switched, added[0], added[1],
               delta[0]["store_error_open"], delta[1]["store_error_closed"],
               acked - acked_before, fleet - fleet_before, lost, window, LOST_WINDOW, timeouts, in_flight,
               len(missing), len(charged)))


if __name__ == "__main__":
    harness.main()
