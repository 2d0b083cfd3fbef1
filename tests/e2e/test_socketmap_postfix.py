#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""test_socketmap_postfix.py: relaykit-socketmapd behind a real private Postfix.

What it proves:
  - routing and rewriting: transport_maps, smtp_generic_maps, sender_canonical_maps and
    sender_dependent_relayhost_maps all as socketmap:inet:127.0.0.1:PORT:NAME deliver each message
    to the right smtp-sink ("exchange", "partner", "smarthost", "alerts") with the right envelope
    sender and From header;
  - differential: the same rules loaded into Postfix's own hash: and regexp: tables give the same
    answers (postmap -q on the socketmap vs Postfix's search over its native tables) and the same
    delivered mail, for a corpus of awkward addresses. Where they differ, relaykit is wrong;
  - socketmapd killed (SIGKILL) while mail flows: mail is deferred, never bounced, and every
    message is delivered exactly once after a restart;
  - SIGHUP with a broken config keeps the old rules; SIGHUP with a good one serves the new ones.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SOCKETMAPD = "relaykit-socketmapd"
# myorigin of both Postfix instances, compared as is; mydestination is empty, but Postfix's
# resolve_local() also counts the inet_interfaces address literal, compared with one trailing
# dot stripped ("postmaster@[127.0.0.1]." is local, "root@relay.corp.local." is not).
MYORIGIN = "relay.corp.local"
LOCAL_DOMAINS = ["[127.0.0.1]"]
DELIMITER = "+"
SINKS = ("exchange", "partner", "smarthost", "alerts")

# Rules, written once and loaded both into relaykit (YAML) and into Postfix (hash:/regexp:).
# "{exchange}" etc. are replaced by the sinks' ports.
GENERIC_ENTRIES = {
    "root@relay.corp.local": "noreply@corp.com",
    "cron@relay.corp.local": "cron@corp.com",
    "nagios@relay.corp.local": "alerts@corp.com",
    "postmaster": "pm@corp.com",             # bare localpart: only for local domains
    "@old.corp.local": "@corp.com",          # keeps the localpart
    "@relay.corp.local": "relay@corp.com",   # catch-all for the relay's own domain
    "multi@relay.corp.local": "multi@corp.com",
    "web": "web-local@corp.com",              # bare localpart vs +ext forms
}
GENERIC_REGEXP = (
    "/^(.*)@srv[0-9]+\\.corp\\.local$/   ${1}@corp.com\n"
    "/^bounce-[0-9]+@lists\\.corp\\.com$/i   lists@corp.com\n"
    "/^empty-result@/\n"                      # no result text: Postfix fails the lookup
    "/^(x)?void@/   ${1}\n"                  # expands to nothing without the x
)
CANONICAL_ENTRIES = {
    "root@relay.corp.local": "admin@relay.corp.local",
    "webmaster@relay.corp.local": "web@corp.com",
    "@legacy.corp.local": "@corp.local",
    "chain1@relay.corp.local": "chain2@relay.corp.local",   # Postfix re-applies canonical maps
    "chain2@relay.corp.local": "final@corp.com",
}
CANONICAL_REGEXP = "/^(.*)@old-([a-z]+)\\.corp\\.local$/   ${1}.${2}@corp.local\n"
TRANSPORT_ENTRIES = {
    "corp.local": "smtp:[127.0.0.1]:{exchange}",
    ".corp.local": "smtp:[127.0.0.1]:{exchange}",
    "corp.com": "smtp:[127.0.0.1]:{exchange}",
    "partner.com": "smtp:[127.0.0.1]:{partner}",
    "special@example.org": "smtp:[127.0.0.1]:{partner}",
}
SENDER_RELAY_ENTRIES = {
    "nagios@relay.corp.local": "[127.0.0.1]:{alerts}",
    "@srv7.corp.local": "[127.0.0.1]:{alerts}",
    "<>": "[127.0.0.1]:{partner}",
}

# Addresses as senders (generic, canonical, sender_relay) and recipients (transport, generic).
SENDER_CORPUS = [
    "root@relay.corp.local", "ROOT@Relay.Corp.Local", "root+cron@relay.corp.local",
    "cron@relay.corp.local", "Cron+Daily@RELAY.corp.local", "nagios@relay.corp.local",
    "someone@relay.corp.local", "postmaster@relay.corp.local", "postmaster@corp.local",
    "webmaster@relay.corp.local", "x@old.corp.local", "X.Y+z@OLD.corp.local",
    "app@srv12.corp.local", "App.User+tag@SRV7.corp.local", "x@sub.srv12.corp.local",
    "x@srv12.corp.local.evil.com", '"john doe"@corp.local', '"john doe"@srv3.corp.local',
    "user@corp.com", "bounce-123@lists.corp.com", "BOUNCE-9@LISTS.CORP.COM",
    "joe@legacy.corp.local", "ann@old-sales.corp.local", "someone@example.org", "",
    "multi+x+y@relay.corp.local", "web+shop@relay.corp.local", "web+shop@corp.local",
    '"John Doe"@Corp.Local', '"a@b"@srv4.corp.local', "x@sub.relay.corp.local",
    "chain1@relay.corp.local", "+tag@relay.corp.local", "postmaster@[127.0.0.1]",
    "Joe+x@Legacy.Corp.Local", "root@relay.corp.local.",
]
# Only looked up (never sent: a lookup error defers the mail): trailing dots on local domains,
# empty regexp results.
LOOKUP_ONLY_CORPUS = [
    "postmaster@[127.0.0.1].", "web+x@[127.0.0.1].", "postmaster@relay.corp.local.",
    "empty-result@corp.local", "void@corp.local", "xvoid@corp.local",
]
RECIPIENT_CORPUS = [
    "user@corp.local", "User@CORP.LOCAL", "a@sub.corp.local", "a@deep.sub.corp.local",
    "x@corp.com", "x@sub.corp.com", "p@partner.com", "p@PARTNER.COM", "p+tag@partner.com",
    "q@sub.partner.com", "special@example.org", "Special+tag@Example.org", "other@example.org",
    '"john doe"@corp.local', "x@corp.local.evil.com", "x@old.corp.local", "bob@example.net",
    "corp.local!bob", "user@[192.0.2.1]", "postmaster@relay.corp.local", "x@CORP.COM.",
    "special+a+b@example.org", "+tag@partner.com", '"a b"@partner.com', "y@sub.relay.corp.local",
]


def fill(entries, ports):
    return {k: v.format(**ports) for k, v in entries.items()}


def yq(s):
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(s)


def block(text, indent):
    return "".join(" " * indent + line + "\n" for line in text.splitlines())


def socketmapd_yaml(port, ports, generic=None, transport=None):
    """The relaykit YAML for the rules above (generic/transport entries overridable)."""
    generic = GENERIC_ENTRIES if generic is None else generic
    transport = fill(TRANSPORT_ENTRIES if transport is None else transport, ports)

    def entries(d):
        return "".join("          %s: %s\n" % (yq(k), yq(v)) for k, v in d.items())
    return (
        "postfix:\n"
        "  myorigin: %s\n"
        "  local_domains: [%s]\n"
        "  recipient_delimiter: %s\n"
        "  parent_domain_matches_subdomains: false\n"
        "  smtputf8_enable: false\n"  # as the harness's main.cf
        "tables:\n"
        "  generic:\n"
        "    search: address\n"
        "    sources:\n"
        "      - entries:\n" + entries(generic) +
        "      - regexp: |\n" + block(GENERIC_REGEXP, 10) +
        "  canonical:\n"
        "    search: address\n"
        "    propagate_unmatched_extensions: true\n"
        "    sources:\n"
        "      - entries:\n" + entries(CANONICAL_ENTRIES) +
        "      - regexp: |\n" + block(CANONICAL_REGEXP, 10) +
        "  transport:\n"
        "    search: transport\n"
        "    sources:\n"
        "      - entries:\n" + entries(transport) +
        "  sender_relay:\n"
        "    search: sender\n"
        "    sources:\n"
        "      - entries:\n" + entries(fill(SENDER_RELAY_ENTRIES, ports)) +
        "socketmap:\n"
        "  listen: inet:127.0.0.1:%d\n"
    ) % (yq(MYORIGIN), ", ".join(yq(d) for d in LOCAL_DOMAINS), yq(DELIMITER), port)


def socketmap_params(port):
    sm = "socketmap:inet:127.0.0.1:%d:" % port
    return {
        "transport_maps": sm + "transport",
        "smtp_generic_maps": sm + "generic",
        "sender_canonical_maps": sm + "canonical",
        "sender_dependent_relayhost_maps": sm + "sender_relay",
    }


def write_native_tables(pf, ports):
    """Writes the same rules as Postfix hash:/regexp: tables; returns main.cf parameters."""
    def hash_table(name, entries):
        path = harness.write_file(os.path.join(pf.etc, name),
                                  "".join("%s\t%s\n" % kv for kv in entries.items()))
        pf.postmap(path)
        return "hash:" + path

    def regexp_table(name, text):
        return "regexp:" + harness.write_file(os.path.join(pf.etc, name), text)

    return {
        "transport_maps": hash_table("transport", fill(TRANSPORT_ENTRIES, ports)),
        "smtp_generic_maps": "%s, %s" % (hash_table("generic", GENERIC_ENTRIES),
                                         regexp_table("generic.re", GENERIC_REGEXP)),
        "sender_canonical_maps": "%s, %s" % (hash_table("canonical", CANONICAL_ENTRIES),
                                             regexp_table("canonical.re", CANONICAL_REGEXP)),
        "sender_dependent_relayhost_maps": hash_table("sender_relay",
                                                      fill(SENDER_RELAY_ENTRIES, ports)),
    }


# ---- Postfix's search over its own tables, each lookup answered by `postmap -q` ----

def split_address(key):
    if "@" in key:
        local, _, domain = key.rpartition("@")
        return local, domain
    return key, None


def strip_extension(local):
    """(base, ext) split at the first recipient_delimiter character, or (local, None)."""
    for i, c in enumerate(local):
        if c in DELIMITER and i > 0:
            return local[:i], local[i + 1:]
    return local, None


def is_local_domain(domain):
    """mail_addr_find(): myorigin as is, or resolve_local() (one trailing dot stripped)."""
    if domain.lower() == MYORIGIN:
        return True
    d = domain[:-1] if domain.endswith(".") else domain
    return d != "" and not d.endswith(".") and d.lower() in LOCAL_DOMAINS


def key_forms(mode, key, pdms=False):
    """The keys Postfix tries for an indexed table, in order (as Postfix's mail_addr_find does).

    pdms: parent_domain_matches_subdomains lists transport_maps (parents asked without dot)."""
    local, domain = split_address(key)
    base, ext = strip_extension(local)
    is_local = domain is None or is_local_domain(domain)
    forms = [key]
    if mode in ("address", "sender"):
        if key == "<>":
            return forms
        if ext is not None and domain is not None:
            forms.append("%s@%s" % (base, domain))
        if is_local and domain is not None:
            if ext is not None:
                forms.append(local)
            forms.append(base)
        elif domain is None and ext is not None:
            forms.append(base)
        if domain is not None:
            forms.append("@" + domain)
    elif mode == "transport":
        if domain is not None:
            forms = [key]
            if ext is not None:
                forms.append("%s@%s" % (base, domain))
            forms.append(domain)
            labels = domain.split(".")
            for i in range(1, len(labels)):
                forms.append(("" if pdms else ".") + ".".join(labels[i:]))
        forms.append("*")
    return forms


def postfix_search(pf, mode, key, sources, propagate=False, pdms=False):
    """Postfix's answer for key over its native `sources` ([(spec, is_pattern)]), or None."""
    forms = key_forms(mode, key, pdms)
    for i, form in enumerate(forms):
        for spec, is_pattern in sources:
            if is_pattern and i != 0:
                continue
            value = pf.postmap_q(form, spec)
            if value is None:
                continue
            if value == "":
                return "<lookup error>"  # maps_find(): an empty result fails the lookup
            local, domain = split_address(key)
            if mode == "address" and value.startswith("@"):
                return local + value
            base, ext = strip_extension(local)
            if (mode == "address" and propagate and ext is not None and domain is not None
                    and form in ("%s@%s" % (base, domain), base)):
                vlocal, vdomain = split_address(value)
                return "%s%s%s@%s" % (vlocal, DELIMITER, ext, vdomain) if vdomain else value
            return value
    return None


# ---- Variant 2: regexp_table(5) semantics, one regexp source, compared key by key ----
REGEXP_SEMANTICS = r"""# comments and blank lines are ignored

if /@corp\.local$/
/^admin@/                       admin-team@corp.com
!/^a/                           not-a@corp.com
endif
if !/^skip/
/^(x)?y-(.*)@old\.example$/     z${1}-$2@corp.com
endif
/^cost@dollar\.example$/        cost$$@corp.com
/^CaseSens@exact\.example$/i    exact@corp.com
/^(.+)@UPPER\.example$/         $(1)@corp.com
/^(a|b)(c)?@alt\.example$/      ${1}${2}x@corp.com
/^[^@]+@brackets\.example$/     brackets@corp.com
"""
REGEXP_CORPUS = [
    "admin@corp.local", "Admin@CORP.LOCAL", "bob@corp.local", "alice@corp.local",
    "y-foo@old.example", "xy-foo@old.example", "XY-Foo@OLD.example", "skipy-foo@old.example",
    "cost@dollar.example", "CaseSens@exact.example", "casesens@exact.example",
    "Mixed@upper.example", "a@alt.example", "bc@alt.example", "ac@alt.example",
    "q@brackets.example", "q@x@brackets.example", "nothing@example.org", '"a b"@corp.local',
]

# ---- Variant 3: transport with parent_domain_matches_subdomains and special results ----
TRANSPORT_PDMS = {
    "corp.local": "smtp:[127.0.0.1]:{exchange}",
    "partner.com": ":[127.0.0.1]:{partner}",        # empty transport: keep the default (smtp)
    "bare.example": "smtp:",                        # empty nexthop: the recipient domain
    "blocked.example": "error:5.7.1 blocked domain",  # refused at RCPT time
    "vip@example.org": "smtp:[127.0.0.1]:{alerts}",
    "*": "smtp:[127.0.0.1]:{smarthost}",
}
TRANSPORT_PDMS_CORPUS = [
    "u@corp.local", "u@sub.corp.local", "u@a.b.corp.local", "u@xcorp.local", "u@Partner.Com",
    "u@eu.partner.com", "u@bare.example", "u@sub.bare.example", "u@blocked.example",
    "u@sub.blocked.example", "vip@example.org", "VIP+x@EXAMPLE.ORG", "u@example.org", "u@local",
]


def variant_yaml(port, tables, pdms=False, smtputf8=False):
    """YAML for [(name, search, entries or None, regexp text or None)]."""
    out = ["postfix:", "  myorigin: %s" % yq(MYORIGIN),
           "  local_domains: [%s]" % ", ".join(yq(d) for d in LOCAL_DOMAINS),
           "  recipient_delimiter: %s" % yq(DELIMITER),
           "  parent_domain_matches_subdomains: %s" % ("true" if pdms else "false"),
           "  smtputf8_enable: %s" % ("true" if smtputf8 else "false"), "tables:"]
    for name, search, entries, regexp in tables:
        out += ["  %s:" % name, "    search: %s" % search, "    sources:"]
        if entries:
            out.append("      - entries:")
            out += ["          %s: %s" % (yq(k), yq(v)) for k, v in entries.items()]
        if regexp:
            out.append("      - regexp: |")
            out.append(block(regexp, 10).rstrip("\n"))
    out += ["socketmap:", "  listen: inet:127.0.0.1:%d" % port]
    return "\n".join(out) + "\n"


class SocketmapPostfixTest(harness.E2ETestCase):
    def setUp(self):
        harness.binary_path(SOCKETMAPD)  # fail early and clearly when it is not built
        self.sinks = {name: self.start_sink(name) for name in SINKS}
        self.ports = {name: s.port for name, s in self.sinks.items()}
        self.sink_by_port = {s.port: name for name, s in self.sinks.items()}
        self.map_port = harness.free_port()
        self.config = harness.write_file(os.path.join(self.tmp, "relaykit.yaml"),
                                         socketmapd_yaml(self.map_port, self.ports))

    def start_socketmapd(self):
        return self.start_daemon(SOCKETMAPD, self.config, port=self.map_port)

    def relay_params(self):
        return {"myhostname": "relay.corp.local", "mydestination": "",
                "recipient_delimiter": DELIMITER}

    def start_relaykit_postfix(self, name="relaykit"):
        params = self.relay_params()
        params.update(socketmap_params(self.map_port))
        return self.start_postfix(name, relay_port=self.ports["smarthost"], extra_main_cf=params)

    def start_native_postfix(self, name="native"):
        pf = harness.PostfixInstance(self.subdir(name), relay_port=self.ports["smarthost"],
                                     extra_main_cf=self.relay_params())
        pf.write_config()  # postmap needs main.cf
        pf.params.update(write_native_tables(pf, self.ports))
        self.addCleanup(pf.stop)
        pf.start()
        self.register_log("postfix %s maillog" % name, pf.maillog_path)
        return pf

    def all_messages(self):
        out = []
        for name, sink in self.sinks.items():
            for m in sink.messages():
                out.append((name, m))
        return out

    def clear_sinks(self):
        for s in self.sinks.values():
            s.clear()

    def deliver(self, pf, sender, rcpt, case, from_header=None):
        msg = harness.make_message(from_header if from_header is not None else (sender or
                                                                              "MAILER-DAEMON"),
                                   rcpt, "case %s" % case, extra_headers=[("X-Case", case)])
        pf.sendmail(msg, sender, [rcpt])

    # -----------------------------------------------------------------------------------------

    def test_routing_and_rewriting(self):
        """Each message reaches the right sink with the right envelope sender and From."""
        self.start_socketmapd()
        pf = self.start_relaykit_postfix()
        cases = [
            # (sender, recipient, expected sink, expected envelope sender, expected From)
            ("root@relay.corp.local", "user@corp.local", "exchange",
             "relay@corp.com", "relay@corp.com"),
            ("cron@relay.corp.local", "p@partner.com", "partner", "cron@corp.com",
             "cron@corp.com"),
            ("app@srv12.corp.local", "bob@example.net", "smarthost", "app@corp.com",
             "app@corp.com"),
            ("nagios@relay.corp.local", "oncall@example.net", "alerts", "alerts@corp.com",
             "alerts@corp.com"),
            ("x@old.corp.local", "a@sub.corp.local", "exchange", "x@corp.com", "x@corp.com"),
            ("user@corp.com", "special@example.org", "partner", "user@corp.com",
             "user@corp.com"),
        ]
        # root@relay.corp.local: canonical -> admin@relay.corp.local, generic -> the @relay
        # catch-all relay@corp.com (admin@ has no entry of its own).
        for i, (sender, rcpt, _, _, _) in enumerate(cases):
            self.deliver(pf, sender, rcpt, "r%d" % i)
        pf.wait_queue_empty()
        got = {m.header("X-Case"): (name, m) for name, m in self.all_messages()}
        for i, (sender, rcpt, sink, env, from_) in enumerate(cases):
            with self.subTest(sender=sender, rcpt=rcpt):
                self.assertIn("r%d" % i, got, "message not delivered")
                name, m = got["r%d" % i]
                self.assertEqual(name, sink)
                self.assertEqual(m.sender, env)
                self.assertEqual(m.header("From"), from_)
        self.assertNotRegex(pf.maillog(), r"status=(bounced|deferred)|warning|error|fatal")

    def test_star_and_special_keys(self):
        """The literal '*' key, empty and odd keys get deliberate answers."""
        ports = dict(self.ports)
        transport = dict(TRANSPORT_ENTRIES)
        transport["*"] = "smtp:[127.0.0.1]:{smarthost}"
        harness.write_file(self.config, socketmapd_yaml(self.map_port, ports,
                                                        transport=transport))
        self.start_socketmapd()
        star = "smtp:[127.0.0.1]:%d" % ports["smarthost"]
        self.assertEqual(harness.socketmap_query(self.map_port, "transport", "*"), ("OK", star))
        self.assertEqual(harness.socketmap_query(self.map_port, "transport", "x@nowhere.test"),
                         ("OK", star))
        self.assertEqual(harness.socketmap_query(self.map_port, "generic", ""),
                         ("NOTFOUND", ""))
        status, _ = harness.socketmap_query(self.map_port, "no_such_table", "x")
        self.assertIn(status, ("PERM", "NOTFOUND"))
        with harness.SocketmapClient(self.map_port) as c:
            # Several requests on one connection; keys with spaces split at the first space.
            self.assertEqual(c.query("generic", '"john doe"@srv3.corp.local'),
                             ("OK", '"john doe"@corp.com'))
            self.assertEqual(c.query("sender_relay", "<>"),
                             ("OK", "[127.0.0.1]:%d" % ports["partner"]))
            self.assertEqual(c.query("generic", "nobody@example.org"), ("NOTFOUND", ""))

    def test_many_connections_and_bad_clients(self):
        """Hundreds of concurrent connections are served; garbage or oversized requests cost the
        offending connection only."""
        self.start_socketmapd()
        clients = []
        try:
            for _ in range(300):  # Postfix: up to default_process_limit (100) per service
                clients.append(harness.SocketmapClient(self.map_port))
            for c in clients:
                self.assertEqual(c.query("generic", "cron@relay.corp.local"),
                                 ("OK", "cron@corp.com"))
            bad = [b"garbage", b"99999999999:x,", b"5:ab,", b"%d:generic %s,"
                   % (200011, b"x" * 200003)]
            for payload in bad:
                with harness.SocketmapClient(self.map_port) as c:
                    try:
                        c.sock.sendall(payload)
                        c.sock.shutdown(harness.socket.SHUT_WR)
                        reply = c.sock.recv(1000)
                        # Only an error answer or a close is acceptable, never OK/NOTFOUND.
                        self.assertFalse(reply.startswith((b"3:OK", b"9:NOTFOUND")), reply)
                    except OSError:
                        pass  # closed by the server: fine
            for c in clients[:10]:
                self.assertEqual(c.query("generic", "cron@relay.corp.local"),
                                 ("OK", "cron@corp.com"))
        finally:
            for c in clients:
                c.close()

    def test_differential_postmap(self):
        """postmap -q on the socketmap == Postfix's own search over hash:/regexp: tables."""
        self.start_socketmapd()
        native = self.start_native_postfix()
        p = native.params

        def sources(param):
            return [(s.strip(), s.strip().startswith("regexp:")) for s in p[param].split(",")]
        tables = [
            ("generic", "address", sources("smtp_generic_maps"), False,
             SENDER_CORPUS + RECIPIENT_CORPUS + LOOKUP_ONLY_CORPUS),
            ("canonical", "address", sources("sender_canonical_maps"), True, SENDER_CORPUS),
            ("transport", "transport", sources("transport_maps"), False, RECIPIENT_CORPUS),
            ("sender_relay", "sender", sources("sender_dependent_relayhost_maps"), False,
             [s or "<>" for s in SENDER_CORPUS] + LOOKUP_ONLY_CORPUS),
        ]
        differences = []
        for name, mode, srcs, propagate, corpus in tables:
            spec = "socketmap:inet:127.0.0.1:%d:%s" % (self.map_port, name)
            for key in corpus:
                if key == "":
                    continue  # postmap -q cannot send an empty key
                want = postfix_search(native, mode, key, srcs, propagate)
                try:
                    got = native.postmap_q(key, spec)
                except RuntimeError:
                    got = "<lookup error>"   # relaykit answered TEMP/PERM
                if want != got:
                    differences.append("%s %r: postfix %r, relaykit %r" % (name, key, want, got))
        self.assertEqual(differences, [], "relaykit differs from Postfix:\n  "
                         + "\n  ".join(differences))

    def test_differential_regexp_semantics(self):
        """A regexp source answers every key exactly as Postfix's regexp: table does."""
        harness.write_file(self.config, variant_yaml(self.map_port, [
            ("generic", "address", None, REGEXP_SEMANTICS)]))
        self.start_socketmapd()
        native = self.start_native_postfix()
        re_path = harness.write_file(os.path.join(native.etc, "semantics.re"), REGEXP_SEMANTICS)
        native_spec = "regexp:" + re_path
        spec = "socketmap:inet:127.0.0.1:%d:generic" % self.map_port
        differences = []
        for key in REGEXP_CORPUS:
            want = native.postmap_q(key, native_spec)
            got = native.postmap_q(key, spec)
            if want != got:
                differences.append("%r: postfix %r, relaykit %r" % (key, want, got))
        self.assertEqual(differences, [], "regexp answers differ:\n  " + "\n  ".join(differences))

    def test_differential_smtputf8(self):
        """smtputf8_enable = yes (Postfix's default): non-ASCII keys fold as Postfix's hash does."""
        entries = {"jos\u00e9@example.com": "found-hash", "stra\u00dfe@example.com": "strasse",
                   "\u00c9LODIE@Example.COM": "elodie", "@ex\u00e4mple.org": "domain",
                   "root@relay.corp.local": "ascii"}
        regexp = ("/^jos.@/ dot1\n/^jos..@/ dot2\n/^[\u00e9]x/ bracket\n"
                  "/^\u00fcmlaut/ umlaut\n/^[a-z]+\u00df$/ eszett\n")
        harness.write_file(self.config, variant_yaml(self.map_port, [
            ("u8hash", "exact", entries, None), ("u8re", "exact", None, regexp)], smtputf8=True))
        self.start_socketmapd()
        u8 = harness.PostfixInstance(self.subdir("u8"), extra_main_cf={"smtputf8_enable": "yes"})
        u8.write_config()
        hash_path = harness.write_file(os.path.join(u8.etc, "u8hash"), "".join(
            "%s\t%s\n" % kv for kv in entries.items()))
        u8.postmap(hash_path)
        re_path = harness.write_file(os.path.join(u8.etc, "u8re"), regexp)
        keys = ["jos\u00e9@example.com", "JOS\u00c9@EXAMPLE.COM", "Jos\u00e9@Example.Com",
                "STRASSE@example.com", "Stra\u00dfe@EXAMPLE.com", "strasse@example.com",
                "\u00e9lodie@example.com", "\u00c9LODIE@EXAMPLE.COM", "@EX\u00c4MPLE.ORG",
                "@ex\u00e4mple.org", "ROOT@Relay.Corp.Local", "josx@x", "\u00e9x", "\u00c9x",
                "\u00fcmlaut", "\u00dcMLAUT", "gro\u00df", "GRO\u00df", "GROSS"]
        differences = []
        for native, name in (("hash:" + hash_path, "u8hash"), ("regexp:" + re_path, "u8re")):
            spec = "socketmap:inet:127.0.0.1:%d:%s" % (self.map_port, name)
            for key in keys:
                want, got = u8.postmap_q(key, native), u8.postmap_q(key, spec)
                if want != got:
                    differences.append("%s %r: postfix %r, relaykit %r" % (name, key, want, got))
        self.assertEqual(differences, [], "smtputf8 answers differ:\n  " + "\n  ".join(differences))
        # Postfix really folded (not two tables that never match): and relaykit's CLI agrees.
        self.assertEqual(u8.postmap_q("STRASSE@example.com", "hash:" + hash_path), "strasse")
        out = harness.run([harness.binary_path("relaykit"), "query", "-c", self.config, "u8hash",
                           "JOS\u00c9@EXAMPLE.COM", "jos\udce9@example.com"], check=False)
        self.assertIn("found-hash", out.stdout)
        self.assertEqual(out.stdout.count("found-hash"), 1, out.stdout)

    def test_differential_transport_pdms(self):
        """parent_domain_matches_subdomains and special transport results, native vs relaykit."""
        entries = fill(TRANSPORT_PDMS, self.ports)
        harness.write_file(self.config, variant_yaml(self.map_port, [
            ("transport", "transport", entries, None)], pdms=True))
        self.start_socketmapd()
        extra = dict(self.relay_params(), parent_domain_matches_subdomains="transport_maps")
        native = harness.PostfixInstance(self.subdir("native"), relay_port=self.ports["smarthost"],
                                         extra_main_cf=extra)
        native.write_config()
        path = harness.write_file(os.path.join(native.etc, "transport"),
                                  "".join("%s\t%s\n" % kv for kv in entries.items()))
        native.postmap(path)
        native.params["transport_maps"] = "hash:" + path
        self.addCleanup(native.stop)
        native.start()
        self.register_log("postfix native maillog", native.maillog_path)
        spec = "socketmap:inet:127.0.0.1:%d:transport" % self.map_port
        differences = []
        for key in TRANSPORT_PDMS_CORPUS + ["*"]:
            want = postfix_search(native, "transport", key, [("hash:" + path, False)],
                                  pdms=True) if key != "*" else native.postmap_q("*", "hash:"
                                                                                  + path)
            got = native.postmap_q(key, spec)
            if want != got:
                differences.append("%r: postfix %r, relaykit %r" % (key, want, got))
        # Delivered: which sink, or which SMTP reply at RCPT time, for each recipient.
        relay = self.start_postfix("relaykit", relay_port=self.ports["smarthost"],
                                   extra_main_cf=dict(extra, transport_maps=spec))
        routable = [r for r in TRANSPORT_PDMS_CORPUS if "bare.example" not in r]

        def outcomes(pf, tag):
            result = {}
            for i, rcpt in enumerate(routable):
                try:
                    refused = harness.send_smtp(pf.port, "tester@example.net", [rcpt],
                                                harness.make_message(
                                                    "tester@example.net", rcpt, "t",
                                                    extra_headers=[("X-Case", "%s-%d" % (tag, i))]))
                    result[i] = refused.get(rcpt, ("accepted",))[0]
                except harness.smtplib.SMTPRecipientsRefused as e:
                    result[i] = e.recipients[rcpt][0]
            pf.wait_queue_empty()
            for name, m in self.all_messages():
                case = m.header("X-Case") or ""
                if case.startswith(tag + "-"):
                    result[int(case.split("-")[1])] = (result[int(case.split("-")[1])], name)
            self.clear_sinks()
            return result
        want_out = outcomes(native, "native")
        got_out = outcomes(relay, "relaykit")
        for i, rcpt in enumerate(routable):
            if want_out.get(i) != got_out.get(i):
                differences.append("delivery to %r: postfix %r, relaykit %r"
                                   % (rcpt, want_out.get(i), got_out.get(i)))
        self.assertEqual(differences, [], "transport answers differ:\n  "
                         + "\n  ".join(differences))

    def run_corpus(self, pf, tag):
        """Sends every corpus address as sender and as recipient; returns case -> outcome."""
        cases = {}
        for i, s in enumerate(SENDER_CORPUS):
            cases["%s-s%d" % (tag, i)] = (s, "rcpt@example.org")
        for i, r in enumerate(RECIPIENT_CORPUS):
            cases["%s-r%d" % (tag, i)] = ("tester@example.net", r)
        for case, (sender, rcpt) in cases.items():
            self.deliver(pf, sender, rcpt, case)
        pf.wait_queue_empty(timeout=60)
        outcome = {}
        for name, m in self.all_messages():
            case = m.header("X-Case")
            if case is None or not case.startswith(tag + "-"):
                continue
            case = case.split("-", 1)[1]
            self.assertNotIn(case, outcome, "delivered twice: %s" % case)
            outcome[case] = {
                "sink": name, "sender": m.sender, "recipients": m.recipients,
                "From": m.header("From"), "To": m.header("To")}
        self.clear_sinks()
        bounced = [line for line in pf.maillog().splitlines() if "status=bounced" in line]
        return cases, outcome, bounced

    def test_differential_delivery(self):
        """The same corpus through a native-table Postfix and a relaykit Postfix: same mail."""
        native = self.start_native_postfix()
        n_cases, n_out, n_bounced = self.run_corpus(native, "native")
        native.stop()
        self.start_socketmapd()
        pf = self.start_relaykit_postfix()
        r_cases, r_out, r_bounced = self.run_corpus(pf, "relaykit")
        self.assertEqual(len(n_out), len(n_cases), "native Postfix lost mail: %s" % n_bounced)
        differences = []
        for case in sorted(n_out, key=lambda c: (c[0], int(c[1:]))):
            sender, rcpt = n_cases["native-" + case]
            want, got = n_out.get(case), r_out.get(case)
            if want != got:
                differences.append("sender %r rcpt %r:\n      postfix  %s\n      relaykit %s"
                                   % (sender, rcpt, want, got))
        self.assertEqual(r_bounced, [], "relaykit Postfix bounced mail")
        self.assertEqual(differences, [], "delivered mail differs:\n  "
                         + "\n  ".join(differences))

    def test_socketmapd_killed_mid_stream(self):
        """SIGKILL while mail flows: deferred, not bounced; all delivered once after restart."""
        daemon = self.start_socketmapd()
        pf = self.start_relaykit_postfix()
        total = 30
        for i in range(total):
            if i == 10:
                daemon.kill(signal.SIGKILL)
            if i == 20:
                # Everything submitted while the server was down waits in a queue (maildrop
                # when cleanup's canonical lookup fails, deferred when the resolver's does).
                pf.wait_queued(10)
                pf.wait_log(r"warning: .*(socketmap|lookup|resolver)")
                self.assertNotRegex(pf.maillog(), r"status=bounced")
                self.assertLess(sum(s.count() for s in self.sinks.values()), 11)
                daemon.start()
            self.deliver(pf, "cron@relay.corp.local", "user%d@corp.local" % i, "k%d" % i)
        pf.wait_queue_empty(timeout=60, flush=True)
        seen = {}
        for name, m in self.all_messages():
            case = m.header("X-Case")
            seen.setdefault(case, []).append((name, m))
        for i in range(total):
            with self.subTest(message=i):
                got = seen.get("k%d" % i, [])
                self.assertEqual(len(got), 1, "delivered %d times" % len(got))
                name, m = got[0]
                self.assertEqual(name, "exchange")
                self.assertEqual(m.sender, "cron@corp.com")
                self.assertEqual(m.header("From"), "cron@corp.com")
        log = pf.maillog()
        self.assertNotRegex(log, r"status=bounced")
        self.assertRegex(log, r"status=deferred|resolver failure|lookup error|Temporary lookup")

    def test_socketmapd_down_with_mail_in_queue(self):
        """Queued mail meets a dead socketmapd at the queue manager and smtp stages: it stays
        deferred (address resolver / generic lookup failures) and is delivered after a restart."""
        daemon = self.start_socketmapd()
        pf = self.start_relaykit_postfix()
        exchange = self.sinks["exchange"]
        exchange.stop()  # Exchange unreachable: mail waits in the deferred queue
        for i in range(5):
            self.deliver(pf, "cron@relay.corp.local", "user%d@corp.local" % i, "q%d" % i)
        pf.wait_queued(5, status="deferred")
        daemon.kill(signal.SIGKILL)
        exchange.start()
        log_before = len(pf.maillog())
        pf.flush()
        harness.wait_until(
            lambda: harness.re.search(r"resolver failure|lookup error",
                                      pf.maillog()[log_before:]),
            30, "a lookup failure logged for the queued mail")
        pf.flush()
        harness.wait_until(lambda: "status=deferred" in pf.maillog()[log_before:], 30,
                           "the queued mail deferred again")
        # postqueue scans the queue directories one after the other while the queue manager moves
        # files between them, so one file can be listed twice (or missed) for a moment: wait for
        # the distinct ids to settle at the five messages.
        harness.wait_until(lambda: len({q["queue_id"] for q in pf.queue_ids()}) == 5, 10,
                           "five distinct messages queued")
        self.assertEqual(exchange.count(), 0)
        self.assertNotIn("status=bounced", pf.maillog())
        daemon.start()
        pf.wait_queue_empty(timeout=60, flush=True)
        msgs = exchange.messages(wait_for=5)
        self.assertEqual(sorted(m.header("X-Case") for m in msgs), ["q%d" % i for i in range(5)])
        for m in msgs:
            self.assertEqual(m.sender, "cron@corp.com")
            self.assertEqual(m.header("From"), "cron@corp.com")
        self.assertNotIn("status=bounced", pf.maillog())

    def test_sighup_reload(self):
        """SIGHUP: a broken config is refused (old rules serve), a good one replaces them."""
        daemon = self.start_socketmapd()
        pf = self.start_relaykit_postfix()
        q = (lambda key: harness.socketmap_query(self.map_port, "generic", key))
        self.assertEqual(q("cron@relay.corp.local"), ("OK", "cron@corp.com"))
        # A long-lived connection, like a Postfix process's, must follow reloads too.
        persistent = harness.SocketmapClient(self.map_port)
        self.addCleanup(persistent.close)
        self.assertEqual(persistent.query("generic", "cron@relay.corp.local"),
                         ("OK", "cron@corp.com"))
        # Broken: an unterminated regexp and a YAML that still parses.
        broken = socketmapd_yaml(self.map_port, self.ports).replace(
            "/^bounce-[0-9]+@lists", "/^bounce-[0-9+@lists")
        harness.write_file(self.config, broken)
        before = len(daemon.stderr())
        daemon.hup()
        harness.wait_until(lambda: len(daemon.stderr()) > before, 10,
                           "socketmapd to say why it refused the broken config")
        self.assertTrue(daemon.running(), "socketmapd died on a broken config")
        self.assertEqual(q("cron@relay.corp.local"), ("OK", "cron@corp.com"))
        self.assertEqual(pf.postmap_q("cron@relay.corp.local",
                                      "socketmap:inet:127.0.0.1:%d:generic" % self.map_port),
                         "cron@corp.com")
        # Good: new rules.
        generic = dict(GENERIC_ENTRIES)
        generic["cron@relay.corp.local"] = "cron-v2@corp.com"
        harness.write_file(self.config, socketmapd_yaml(self.map_port, self.ports,
                                                        generic=generic))
        daemon.hup()
        harness.wait_until(lambda: q("cron@relay.corp.local") == ("OK", "cron-v2@corp.com"),
                           10, "the new rules after SIGHUP")
        self.assertTrue(daemon.running())
        self.assertEqual(persistent.query("generic", "cron@relay.corp.local"),
                         ("OK", "cron-v2@corp.com"))
        self.deliver(pf, "cron@relay.corp.local", "user@corp.local", "hup")
        [m] = self.sinks["exchange"].messages(wait_for=1)
        self.assertEqual(m.sender, "cron-v2@corp.com")
        self.assertEqual(m.header("From"), "cron-v2@corp.com")


if __name__ == "__main__":
    harness.main()
