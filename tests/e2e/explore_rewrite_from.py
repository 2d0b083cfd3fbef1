#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""explore_rewrite_from.py: seeded random differential explorer for rewrite_from/rewrite_sender.

Not a ctest test (not named test_*). It starts three private Postfix instances on loopback, each
relaying into its own smtp-sink, and sends every generated message to all three:

  generic    Postfix's own smtp_generic_maps (hash: + regexp:, the `generic` table below), no
             cleanup header rewriting (a remote client): what rewrite_from claims to do to headers
  canonical  Postfix's own canonical_maps (the `canonical` table below) with
             local_header_rewrite_clients = static:all: what rewrite_sender claims to do to the
             envelope sender (and Postfix's header rewriting in cleanup, shown for reference)
  relaykit   relaykit-milter (rewrite_from: generic, headers From/Sender/Reply-To/Resent-From;
             rewrite_sender: canonical), no native maps, no cleanup header rewriting

and compares the delivered From/Sender/Reply-To/Resent-From headers (relaykit vs generic) and the
envelope sender (relaykit vs canonical). Each difference is printed with the input and classified
as class 1 (different addresses), class 2 (same addresses, different quoting) or class 3
(formatting of untouched parts only; printed with --verbose). Senders that differ are DIFF.

    RELAYKIT_BUILD_DIR=/work/main/build-e2e python3 tests/e2e/explore_rewrite_from.py \
        --seed 1 --count 300 [--keep] [--verbose]

Exit status 0 when no DIFF was seen, 1 otherwise. Every wait is bounded.
"""

import argparse
import base64
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

LOCAL_DOMAINS = ["relay.corp.local", "localhost"]
DELIMITER = "+"

# The same rules for every instance. No key contains whitespace (postmap source syntax).
GENERIC_ENTRIES = {
    "root@relay.corp.local": "noreply@corp.com",
    "cron@relay.corp.local": "cron@corp.com",
    "nagios@relay.corp.local": "alerts@corp.com",
    "cron+daily@relay.corp.local": "daily@corp.com",
    "postmaster": "pm@corp.com",
    "admin": "admin@corp.com",
    "@old.corp.local": "@corp.com",
    "@localhost": "noreply@corp.com",
    '"john..doe"@relay.corp.local': "john.doe@corp.com",
    '"a@b"@relay.corp.local': "ab@corp.com",
    "user@relay.corp.local": '"first last"@corp.com',
    "quoted@relay.corp.local": '"q.u.o.t.e.d."@corp.com',
    "chain1@relay.corp.local": "chain2@relay.corp.local",
    "chain2@relay.corp.local": "final@corp.com",
    "owner-list@relay.corp.local": "list-owner@corp.com",
    "j\u00f6rg@relay.corp.local": "joerg@corp.com",
    "web": "web-local@corp.com",
    # Results that are not one bare address (mail_addr_map reads them as an address list).
    "display@relay.corp.local": "Display Name <shown@corp.com>",
    "multi@relay.corp.local": "first@corp.com, second@corp.com",
    "bare@relay.corp.local": "justlocal",
    "route@relay.corp.local": "<@x.example:routed@corp.com>",
    "trail@relay.corp.local": "t@corp.com.",
    "bang@relay.corp.local": "host!buser",
    "empty@relay.corp.local": "<>",
}
GENERIC_REGEXP = (
    "/^(.*)@srv[0-9]+\\.corp\\.local$/   ${1}@corp.com\n"
    "/^bounce-[0-9]+@lists\\.corp\\.com$/   lists@corp.com\n"
)
CANONICAL_ENTRIES = GENERIC_ENTRIES
CANONICAL_REGEXP = GENERIC_REGEXP

HEADERS = ["From", "Sender", "Reply-To", "Resent-From"]

# ---- random input ----------------------------------------------------------------------------

LOCALS = ["root", "Root", "ROOT", "cron", "cron+daily", "Cron+Weekly", "root+x", "nagios",
          "someone", "postmaster", "owner-list", "list-request", '"john..doe"', '"a@b"',
          '"john doe"', '"root"', '"Root"', "user", "quoted", "first.last", "web", "web+shop",
          "a+b+c", "+tag", '"x\\"y"', "j\u00f6rg", "app", "App.User+tag", "chain1", "admin",
          "admin+x", '"r\\oot"', "bounce-12", "x", "display", "multi", "bare", "route", "trail",
          "bang", "empty"]
DOMAINS = ["relay.corp.local", "Relay.Corp.LOCAL", "relay.corp.local.", "srv12.corp.local",
           "SRV7.corp.local", "old.corp.local", "example.org", "localhost", "LocalHost",
           "[127.0.0.1]", "[192.0.2.1]", "corp.com", "sub.relay.corp.local", "lists.corp.com"]
PLAIN_NAMES = ["Root User", "Cron", "J. Root", "Jo", "Root  Spaced", "Mr. X Y"]
QUOTED_NAMES = ['"Doe, John"', '"root@relay.corp.local"', '"a \\"b\\" c"', '"x (y) z"',
                '"Team; <ops>"', '""', '"Back\\\\slash"']
COMMENTS = ["(c)", "(the cron)", "(nested (c))", "(a@b)", "(\u00e9t\u00e9)", "(x\\)y)"]
GARBAGE = ["root@relay.corp.local <", "<root@relay.corp.local", '"unterminated root@relay',
           "root@relay.corp.local>", "(unterminated root@relay.corp.local",
           "Name root@relay.corp.local", "a@b@relay.corp.local", "root@", "@relay.corp.local",
           "root@relay.corp.local;", "Team: root@relay.corp.local", "<<root@relay.corp.local>>",
           "root@relay..corp.local", "root@[127.0.0.1", "<root@relay.corp.local> x", ":;",
           "root@relay.corp.local,,cron@relay.corp.local", ",root@relay.corp.local", "<>",
           "Name <>", "root.@relay.corp.local", ".root@relay.corp.local", "root..x@relay.corp.local"]


def encoded_word(rng, text):
    if rng.random() < 0.5:
        cs, data = "UTF-8", text.encode("utf-8")
    else:
        cs, data = "ISO-8859-1", text.encode("latin-1", errors="replace")
    if rng.random() < 0.5:
        return "=?%s?B?%s?=" % (cs if rng.random() < 0.7 else cs.lower(),
                                base64.b64encode(data).decode())
    out = []
    for b in data:
        c = chr(b)
        if c.isalnum():
            out.append(c)
        elif c == " ":
            out.append("_")
        else:
            out.append("=%02X" % b)
    return "=?%s?Q?%s?=" % (cs, "".join(out))


def ws(rng):
    return rng.choice(["", " ", " ", "  ", "\t", "\r\n\t", "\r\n "])


def maybe_comment(rng, p=0.15):
    return (ws(rng) + rng.choice(COMMENTS) + ws(rng)) if rng.random() < p else ""


def addr_spec(rng, domain=True):
    local = rng.choice(LOCALS)
    if local.startswith('"') or rng.random() < 0.7:
        pass
    else:
        local = "".join(c.upper() if rng.random() < 0.3 else c for c in local)
    if not domain or rng.random() < 0.05:
        return local + maybe_comment(rng, 0.05)
    dom = rng.choice(DOMAINS)
    r = rng.random()
    if r < 0.05:
        return local + " @ " + dom
    if r < 0.1:
        return local + rng.choice(COMMENTS) + "@" + dom
    if r < 0.13:
        return local + "@" + rng.choice(COMMENTS) + dom
    if r < 0.16 and not dom.startswith("["):
        return local + "@" + dom.replace(".", " . ", 1)
    return local + "@" + dom


def display_name(rng):
    r = rng.random()
    if r < 0.25:
        return rng.choice(PLAIN_NAMES)
    if r < 0.45:
        return rng.choice(QUOTED_NAMES)
    if r < 0.65:
        words = [encoded_word(rng, rng.choice(["J\u00f6rg R\u00f6\u00f6t", "Caf\u00e9",
                                                "Root, User", "\u00c9milie <x>", "a b"]))]
        if rng.random() < 0.3:
            words.append(encoded_word(rng, "Z\u00fcrich"))
        if rng.random() < 0.3:
            words.append("Plain")
        return (" " if rng.random() < 0.7 else "\r\n ").join(words)
    if r < 0.75:
        return "J\u00f6rg R\u00f6\u00f6t"  # raw 8-bit
    if r < 0.8:
        return "Root " + rng.choice(COMMENTS) + " User"
    return ""


def mailbox(rng):
    r = rng.random()
    if r < 0.3:
        return addr_spec(rng) + maybe_comment(rng)
    name = display_name(rng)
    route = ""
    if rng.random() < 0.07:
        route = rng.choice(["@a.example,@b.example:", "@relay.corp.local:", "@x,@y,@z:"])
    inner = ws(rng) if rng.random() < 0.1 else ""
    return (name + (ws(rng) or " " if name else "") + "<" + inner + route + addr_spec(rng) +
            inner + ">" + maybe_comment(rng))


def group(rng):
    name = rng.choice(["undisclosed-recipients", "Team", '"Ops, Team"', "List"])
    members = [] if rng.random() < 0.4 else [mailbox(rng) for _ in range(rng.randint(1, 2))]
    return name + ":" + ws(rng) + ("," + ws(rng)).join(members) + ";" + maybe_comment(rng)


def address_list(rng):
    if rng.random() < 0.08:
        return rng.choice(GARBAGE)
    items = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        items.append(group(rng) if rng.random() < 0.12 else mailbox(rng))
    sep = ","
    out = items[0]
    for it in items[1:]:
        out += sep + rng.choice([" ", "", "\r\n\t", "\r\n ", "  "]) + it
    lead = rng.choice(["", "", "", "  ", "\t", "\r\n "])
    trail = rng.choice(["", "", "", " ", "\t"])
    return lead + out + trail


def envelope(rng):
    """(MAIL FROM argument text, esmtp params list)."""
    r = rng.random()
    params = []
    if rng.random() < 0.3:
        params.append("SIZE=%d" % rng.randint(100, 5000))
    if rng.random() < 0.3:
        params.append("BODY=8BITMIME")
    if rng.random() < 0.15:
        params.append("RET=HDRS")
    if rng.random() < 0.1:
        params.append("ENVID=e%d" % rng.randint(1, 99))
    if r < 0.1:
        return "<>", params
    local = rng.choice(LOCALS)
    if rng.random() < 0.3 and not local.startswith('"'):
        local = "".join(c.upper() if rng.random() < 0.3 else c for c in local)
    if rng.random() < 0.04:
        return "<" + local + ">", params
    dom = rng.choice(DOMAINS)
    if rng.random() < 0.05:
        return "<@a.example,@b.example:" + local + "@" + dom + ">", params
    if rng.random() < 0.05 and not local.startswith('"'):
        return local + "@" + dom, params  # no angle brackets
    return "<" + local + "@" + dom + ">", params


def make_case(rng, n):
    headers = []
    names = list(HEADERS)
    for name in names:
        k = 0
        if name == "From":
            k = 2 if rng.random() < 0.1 else 1
        elif rng.random() < 0.45:
            k = 1
        for _ in range(k):
            headers.append((name, address_list(rng)))
    rng.shuffle(headers)
    mail_from, params = envelope(rng)
    return {"id": n, "headers": headers, "mail_from": mail_from, "params": params}


def message_bytes(case):
    lines = ["X-Explore-Id: %d" % case["id"]]
    for name, value in case["headers"]:
        lines.append("%s:%s%s" % (name, "" if value[:1] in (" ", "\t", "\r") else " ", value))
    lines += ["To: ops@example.com", "Subject: explore %d" % case["id"],
              "Message-ID: <explore.%d@test.invalid>" % case["id"], "", "body", ""]
    text = "\r\n".join(l.replace("\r\n", "\n").replace("\n", "\r\n") for l in lines)
    return text.encode("utf-8")


# ---- SMTP ------------------------------------------------------------------------------------

class RawSmtp(harness.RawSmtpSession):
    """Sends MAIL FROM exactly as given."""

    def send(self, mail_from, params, rcpt, data):
        code, text = self.cmd(("MAIL FROM:%s %s" % (mail_from, " ".join(params))).rstrip())
        if code != 250:
            self.cmd("RSET")
            return "MAIL %d %s" % (code, text)
        code, text = self.cmd("RCPT TO:<%s>" % rcpt)
        if code != 250:
            self.cmd("RSET")
            return "RCPT %d %s" % (code, text)
        code, text = self.cmd("DATA")
        if code != 354:
            self.cmd("RSET")
            return "DATA %d %s" % (code, text)
        body = data.replace(b"\r\n.", b"\r\n..")
        self.sock.sendall(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code, text = self.reply()
        return "ok" if code == 250 else "EOM %d %s" % (code, text)



# ---- instances -------------------------------------------------------------------------------

def yq(s):
    import json
    return json.dumps(s)


def relaykit_yaml(port):
    def entries(d):
        return "".join("          %s: %s\n" % (yq(k), yq(v)) for k, v in d.items())

    def block(text):
        return "".join("          " + l + "\n" for l in text.splitlines())
    return (
        "postfix:\n  local_domains: [%s]\n  recipient_delimiter: %s\n  smtputf8_enable: false\n"
        "tables:\n"
        "  generic:\n    search: address\n    sources:\n      - entries:\n%s"
        "      - regexp: |\n%s"
        "  canonical:\n    search: address\n    propagate_unmatched_extensions: true\n"
        "    sources:\n      - entries:\n%s      - regexp: |\n%s"
        "milter:\n  listen: inet:127.0.0.1:%d\n  on_error: tempfail\n"
        "  rewrite_from:\n    table: generic\n    headers: [%s]\n"
        "  rewrite_sender:\n    table: canonical\n"
    ) % (", ".join(yq(d) for d in LOCAL_DOMAINS + ["[127.0.0.1]"]), yq(DELIMITER),
         entries(GENERIC_ENTRIES), block(GENERIC_REGEXP), entries(CANONICAL_ENTRIES),
         block(CANONICAL_REGEXP), port, ", ".join(HEADERS))


COMMON_MAIN_CF = {
    "myorigin": "relay.corp.local",
    "mydestination": "relay.corp.local, localhost",
    "recipient_delimiter": DELIMITER,
    "smtputf8_enable": "no",  # smtp-sink does not offer SMTPUTF8
    "local_header_rewrite_clients": "",
    "header_size_limit": "1024000",
}


def native_tables(pf, prefix, entries, regexp):
    path = harness.write_file(os.path.join(pf.etc, prefix),
                              "".join("%s\t%s\n" % kv for kv in entries.items()))
    pf.postmap(path)
    re_path = harness.write_file(os.path.join(pf.etc, prefix + ".re"), regexp)
    return "hash:%s, regexp:%s" % (path, re_path)


class Stack(harness.OwnedProcesses):
    def sub(self, name):
        return self._dir(name)

    def sink(self, name):
        return self._start(harness.SmtpSink(self.sub("sink-" + name)))

    def postfix(self, name, sink, params):
        main = dict(COMMON_MAIN_CF)
        main.update(params)
        pf = harness.PostfixInstance(self.sub("pf-" + name), relay_port=sink.port,
                                     extra_main_cf=main)
        self.cleanups.append(pf.stop)  # started in start()
        pf.write_config()  # postmap -c ETC needs main.cf
        return pf

    def start(self):
        sinks = {n: self.sink(n) for n in ("generic", "canonical", "relaykit")}
        self.sinks = sinks
        g = self.postfix("generic", sinks["generic"], {})
        g.params["smtp_generic_maps"] = native_tables(g, "generic", GENERIC_ENTRIES,
                                                      GENERIC_REGEXP)
        c = self.postfix("canonical", sinks["canonical"],
                         {"local_header_rewrite_clients": "static:all"})
        c.params["canonical_maps"] = native_tables(c, "canonical", CANONICAL_ENTRIES,
                                                   CANONICAL_REGEXP)
        port = harness.free_port()
        cfg = harness.write_file(os.path.join(self.sub("milter"), "relaykit.yaml"),
                                 relaykit_yaml(port))
        self.milter = self._start(harness.RelaykitDaemon("relaykit-milter", cfg, port=port))
        r = self.postfix("relaykit", sinks["relaykit"], {
            "smtpd_milters": "inet:127.0.0.1:%d" % port, "milter_default_action": "tempfail",
            "milter_protocol": "6"})
        self.pfs = {"generic": g, "canonical": c, "relaykit": r}
        for pf in self.pfs.values():
            pf.start()


# ---- comparison ------------------------------------------------------------------------------

def collapse(v):
    return re.sub(r"\s+", " ", v.replace("\r", "")).strip()


def tokens(v):
    """A small tok822: quoted strings, domain literals, specials and atoms; comments dropped."""
    out, i = [], 0
    while i < len(v):
        c = v[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth = 0
            while i < len(v):
                if v[i] == "\\":
                    i += 1
                elif v[i] == "(":
                    depth += 1
                elif v[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
        elif c == '"':
            j, text = i + 1, ""
            while j < len(v) and v[j] != '"':
                if v[j] == "\\" and j + 1 < len(v):
                    j += 1
                text += v[j]
                j += 1
            out.append(("q", text, v[i:j + 1]))
            i = j + 1
        elif c == "[":
            j = v.find("]", i)
            j = len(v) - 1 if j < 0 else j
            out.append(("a", v[i:j + 1], v[i:j + 1]))
            i = j + 1
        elif c in "<>@,;:.":
            out.append(("s", c, c))
            i += 1
        else:
            j = i
            while j < len(v) and v[j] not in " \t\r\n()\"[<>@,;:.":
                j += 1
            j = max(j, i + 1)
            out.append(("a", v[i:j], v[i:j]))
            i = j
    return out


def addresses(v):
    """[(internal, external)] of every address in a header value, in order (rough, lenient)."""
    toks, result, elem = tokens(v), [], []

    def flush(e):
        if "<" in [t[1] for t in e if t[0] == "s"]:
            k = [t[1] for t in e].index("<")
            inner = []
            for t in e[k + 1:]:
                if t[0] == "s" and t[1] == ">":
                    break
                inner.append(t)
            if any(t[0] == "s" and t[1] == ":" for t in inner):  # source route
                k = max(n for n, t in enumerate(inner) if t[0] == "s" and t[1] == ":")
                inner = inner[k + 1:]
            e = inner
        if e:
            result.append(("".join(t[1] for t in e), "".join(t[2] for t in e)))

    angle = False
    for t in toks:
        if t[0] == "s" and t[1] == "<":
            angle = True
        elif t[0] == "s" and t[1] == ">":
            angle = False
        if not angle and t[0] == "s" and t[1] in ",;":
            flush(elem)
            elem = []
        elif not angle and t[0] == "s" and t[1] == ":":
            elem = []  # group name
        else:
            elem.append(t)
    flush(elem)
    return result


def classify(a, b):
    """1: different addresses; 2: same addresses, different quoting; 3: formatting only."""
    if a is None or b is None:
        return 1
    x, y = addresses(a), addresses(b)
    if [i for i, _ in x] != [i for i, _ in y]:
        return 1
    if [e for _, e in x] != [e for _, e in y]:
        return 2
    return 3


def header_values(msg, name):
    return [v for n, v in msg.raw_headers if n.lower() == name.lower()]


def show(v):
    return repr(v.replace("\r\n", "\n"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--verbose", action="store_true", help="print class 3 differences too")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    cases = [make_case(rng, i) for i in range(args.count)]
    tmp = harness.make_tmpdir("relaykit-explore-")
    stack = Stack(tmp)
    diffs = 1  # until the comparison has run
    try:
        stack.start()
        results = {}
        for name, pf in stack.pfs.items():
            c = RawSmtp(pf.port)
            try:
                for case in cases:
                    results[(name, case["id"])] = c.send(case["mail_from"], case["params"],
                                                          "ops@example.com", message_bytes(case))
            finally:
                c.close()
        want = {name: sum(1 for case in cases if results[(name, case["id"])] == "ok")
                for name in stack.pfs}
        got = {}
        for name, sink in stack.sinks.items():
            try:
                sink.messages(wait_for=want[name], timeout=60)
            except TimeoutError as e:  # a bounce: reported as a missing message below
                print("warning: %s" % e)
            got[name] = {int(m.header("X-Explore-Id")): m for m in sink.messages()
                         if (m.header("X-Explore-Id") or "").isdigit()}
        n_headers = n_senders = diffs = 0
        counts = {"same": 0, "class1": 0, "class2": 0, "class3": 0, "as-canonical": 0, "sender": 0, "smtp": 0}
        for case in cases:
            i = case["id"]
            status = {n: results[(n, i)] for n in stack.pfs}
            out = []
            if status["relaykit"] != status["generic"] or status["relaykit"] != \
                    status["canonical"]:
                out.append("  DIFF SMTP: %s" % status)
                out.append("    input: %r" % ({k: v for k, v in case.items() if k != "id"},))
                counts["smtp"] += 1
            missing = [n for n in stack.pfs if status[n] == "ok" and i not in got[n]]
            if missing:
                out.append("  DIFF SMTP: not delivered by %s" % missing)
                counts["smtp"] += 1
            elif all(s == "ok" for s in status.values()):
                g, c, r = got["generic"][i], got["canonical"][i], got["relaykit"][i]
                for name in HEADERS:
                    gv, rv = header_values(g, name), header_values(r, name)
                    n_headers += len(rv)
                    for k in range(max(len(gv), len(rv))):
                        a = gv[k] if k < len(gv) else None
                        b = rv[k] if k < len(rv) else None
                        if a == b:
                            counts["same"] += 1
                            continue
                        cls = classify(a, b)
                        cv = (header_values(c, name) + [None] * 3)[k]
                        if cls == 1 and classify(cv, b) > 1:
                            # Postfix's two mechanisms disagree (cleanup's local rewrite strips
                            # trailing dots and routes before canonical); relaykit = canonical.
                            counts["as-canonical"] += 1
                            if not args.verbose:
                                continue
                            kind = "as-canonical"
                        else:
                            counts["class%d" % cls] += 1
                            kind = "DIFF class%d" % cls if cls < 3 else "class3"
                        if cls < 3 or args.verbose:
                            inp = [v for n, v in case["headers"] if n == name]
                            out.append("  %s %s[%d]\n    input:    %s\n    postfix:  %s\n"
                                       "    relaykit: %s\n    canon.:   %s" % (
                                           kind, name, k, show(inp[k]) if k < len(inp) else "-",
                                           show(a or ""), show(b or ""),
                                           show((header_values(c, name) + [""] * 3)[k])))
                n_senders += 1
                if c.sender != r.sender:
                    counts["sender"] += 1
                    out.append("  DIFF sender\n    input:    %s %s\n    postfix:  <%s>\n"
                               "    relaykit: <%s>" % (case["mail_from"], case["params"],
                                                       c.sender, r.sender))
                else:
                    counts["same"] += 1
            if out:
                if any("DIFF" in o or "SMTP" in o for o in out):
                    diffs += 1
                print("case %d:\n%s" % (i, "\n".join(out)))
        print("compared %d header values and %d envelope senders over %d messages: %s" % (
            n_headers, n_senders, len(cases), counts))
    finally:
        stack.close(keep=bool(args.keep or diffs))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
