#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""explore_header_checks.py: seeded random differential explorer for header_checks.

Not a ctest test (no test_ prefix): run it by hand to look for inputs on which relaykit-milter's
header_checks and Postfix's own `header_checks = regexp:FILE` (cleanup) disagree.

Two private Postfix instances relay into their own smtp-sink: "native" applies the rule file
itself, "milter" hands every message to relaykit-milter configured with the same file
(header_checks_file). For each random rule set both load the same bytes; random messages go to
both over SMTP and the delivered headers (names, values, folding, order) and bodies are compared,
Postfix's own Received: line aside. Every difference is printed with the rule set, the message
headers involved and both results. A second mode compares load-time diagnostics of random
malformed tables: every line `postmap -q` warns about must be refused (or warned about) by
`relaykit check` at the same FILE:LINE, and a table Postfix reads silently must load.

  RELAYKIT_BUILD_DIR=build-milter python3 tests/e2e/explore_header_checks.py \
      --seed 1 --rulesets 40 --messages 25 [--load-tables 200] [--keep]

Exit status 0 when no unexplained difference was seen, 1 otherwise. Known, documented
differences a milter cannot reproduce (milters/README.md) are counted apart.
"""

import argparse
import os
import random
import re
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import milter_fixtures  # noqa: E402

# ---- limits ----
MAX_REDRAWS = 20             # rule sets drawn again when one hits Postfix's own Received:
MAX_RELOAD_TRIES = 40          # probes after a reload before giving up (0.25 s apart)
SEND_BATCH = 10                # messages per SMTP session
HEADER_SIZE_LIMIT = 102400     # Postfix's header_size_limit
MAX_PRINTED_DIFFS = 40
# Measured: with smtpd_milters set, Postfix 3.7 stores a header longer than this cut at a line
# boundary (whether or not the milter asked for headers); native header_checks see it whole.
MILTER_HEADER_CUT = 60000

RECEIVED_PROBE = ("Received: from client.test.invalid (localhost [127.0.0.1])\n"
                  "\tby relay.test.invalid (Postfix) with ESMTP id 4ABCD1234EF\n"
                  "\tfor <rcpt@example.com>; Mon,  1 Jan 2024 00:00:00 +0000 (UTC)")

# Postfix's message_drop_headers: cleanup removes these before a milter sees them.
DROPPED_HEADERS = {"bcc", "content-length", "resent-bcc", "return-path"}

NAMES = ["Subject", "X-Test", "X-Mailer", "Comments", "Keywords", "X-Originating-IP",
         "X-Spam-Flag", "X-a", "X_Under", "X.Dot", "x-lower", "X-UPPER", "Thread-Topic",
         "List-Id", "Organization", "X-Priority", "Reply-To", "Cc", "To", "From", "Sender",
         "Received", "X-Odd!#$%&'*+-/=?^_`{|}~", "MIME-Version", "Content-Type",
         "X-Dollar", "X-Empty"]
WORDS = ["alpha", "Beta", "GAMMA", "delta42", "urgent", "[SPAM]", "10.1.2.3", "[192.0.2.7]",
         "<a@b.example>", "user@corp.com", "a.b", "x$1y", "$$", "back\\slash", "(paren)",
         "{brace}", "a|b", "caf\u00e9", "na\u00efve", "\u00dcNI\u00c7ODE", "\u65e5\u672c",
         b"caf\xe9".decode("latin-1"), b"\xc9T\xc9".decode("latin-1"),
         "=?UTF-8?Q?caf=C3=A9?=", "=?ISO-8859-1?B?Y2Fm6Q==?=", "tab\there", "q\"uote",
         "semi;colon", "ends-with-space ", "x", "Y", "_", "-", "...", "#hash", "100%", "k",
         "\u212aelvin", "s\u017fx", "MiXeD", "localhost", "by", "with"]
# Literal-ish pieces for patterns (ERE text; the generator escapes nothing in these).
PATTERN_WORDS = ["alpha", "beta", "gamma", "delta", "urgent", "spam", "corp", "caf\u00e9",
                 "CAF\u00c9", "na\u00efve", "x", "k", "s", "mixed", "local", "by", "with",
                 "10", "192", "user", "tab", "ends"]
PATTERN_ATOMS = [".", ".*", ".+", ".?", "[[:alpha:]]", "[[:digit:]]+", "[[:space:]]",
                 "[[:upper:]]", "[[:lower:]]+", "[[:punct:]]", "[[:alnum:]_-]+", "[]a]",
                 "[^]]", "[^]a-c]*", "[a-z]+", "[A-Z0-9]", "[^[:space:]]+", "[-a]", "[a-]",
                 "[\\]", "[.]", "[$]", "[^a]", "[\u00e9]", "\\.", "\\$", "\\[", "\\(", "\\*",
                 "\\w+", "\\W", "\\s", "\\S+", "\\bk", "\\Bx", "\\<by\\>", "\\`", "(a|)",
                 "(alpha|beta)", "(x|y|z)+", "[0-9]{1,3}", "[0-9]{2}", "a{0,2}", "x{,2}",
                 "(..)?", "\\|", "[[:cntrl:]]", "[\t ]", "\u00e9", "[^\u00e9]"]
FLAGS = ["", "", "", "i", "m", "im", "ii"]
ACTION_NAMES = ["IGNORE", "REPLACE", "PREPEND", "WARN", "INFO", "DUNNO", "OK"]


def _rand_case(rng, s):
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in s)


# ---------------------------------------------------------------------------------------------
# Rule generation
# ---------------------------------------------------------------------------------------------

class RuleGen:
    def __init__(self, rng):
        self.rng = rng

    def name_prefix(self):
        rng = self.rng
        name = rng.choice(NAMES)
        esc = re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", name)
        r = rng.random()
        if r < 0.15:
            esc = _rand_case(rng, esc)
        if r < 0.25:
            other = re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", rng.choice(NAMES))
            return "^(%s|%s):" % (esc, other)
        return "^" + esc + ":"

    def atom(self, groups):
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            w = rng.choice(PATTERN_WORDS)
            return _rand_case(rng, w) if rng.random() < 0.3 else w
        if r < 0.45:
            groups[0] += 1
            return "(%s)" % rng.choice([".*", ".+", "[^ ]+", "[[:alnum:]]+", "[0-9.]+",
                                        "[^]]*", "alpha|beta", "[^,]*", "\\S+"])
        a = rng.choice(PATTERN_ATOMS)
        groups[0] += a.count("(")
        return a

    def pattern(self):
        """(pattern text, capture groups)."""
        rng = self.rng
        groups = [0]
        parts = []
        if rng.random() < 0.94:
            parts.append(self.name_prefix())
            if rng.random() < 0.5:
                parts.append(rng.choice([" ", " ?", "[[:space:]]*", ".*"]))
        for _ in range(rng.randint(0, 3)):
            parts.append(self.atom(groups))
            if rng.random() < 0.2:
                parts.append(rng.choice([".*", " ", "[ \t]", ".*"]))
        if rng.random() < 0.2:
            parts.append("$")
        pat = "".join(parts) or "^Subject:"
        if rng.random() < 0.05:
            groups[0] += 1
            pat = "(" + pat + ")"
        return pat, groups[0]

    def header_text(self, ngroups):
        rng = self.rng
        name = rng.choice(["X-New", "Subject", "X-Test", "X-Replaced", "Comments", "x-lower",
                           "X-Odd!#%", "Bcc", "Return-Path", "Content-Length", "X-Sp"])
        value = rng.choice(["", " ", " new value", " $$ cash", " \u00e9t\u00e9", " tab\tsep",
                            " long " + "y" * rng.choice([10, 100, 1000])])
        if ngroups and rng.random() < 0.8:
            g = rng.randint(1, ngroups)
            value += rng.choice([" $%d" % g, " ${%d}" % g, "$%d" % g, " $(%d)" % g,
                                 " [$%d] [$%d]" % (g, rng.randint(1, ngroups))])
        sep = rng.choice([":", ":", ":", " :"])
        return name + sep + value

    def action(self, ngroups, negated):
        rng = self.rng
        kind = rng.choice(ACTION_NAMES)
        word = kind.lower() if rng.random() < 0.2 else kind
        g = 0 if negated else ngroups
        if kind in ("REPLACE", "PREPEND"):
            return word + rng.choice([" ", "\t", "  "]) + self.header_text(g)
        if kind in ("WARN", "INFO"):
            text = rng.choice(["", " flagged", " seen $$", " group $1" if g else " none"])
            return word + text
        if kind == "IGNORE" and rng.random() < 0.2:
            return word + " trailing text"
        return word

    def delimited(self, pat, flags):
        rng = self.rng
        delim = "/"
        if rng.random() < 0.15:
            delim = rng.choice(["|", "%", ",", "@", "~", "{", "#"])
            if delim in pat:
                delim = "/"
        if delim == "/":
            pat = pat.replace("/", "\\/")
        return delim + pat + delim + flags

    def ruleset(self, n, marker):
        rng = self.rng
        lines = ["/^X-Explorer-Ruleset: %s$/ REPLACE X-Explorer-Ruleset: %s loaded"
                 % (marker, marker)]
        depth = 0
        for _ in range(n):
            r = rng.random()
            if r < 0.08:
                pat, _ = self.pattern()
                neg = "!" if rng.random() < 0.3 else ""
                kw = rng.choice(["if", "IF", "If"])
                lines.append("%s %s%s" % (kw, neg, self.delimited(pat, rng.choice(FLAGS))))
                depth += 1
                continue
            if r < 0.14 and depth:
                lines.append(rng.choice(["endif", "ENDIF", "Endif"]))
                depth -= 1
                continue
            if r < 0.17:
                lines.append(rng.choice(["# a comment", "", "   ", "\t# indented comment"]))
                continue
            pat, ngroups = self.pattern()
            negated = rng.random() < 0.08
            rule = ("!" if negated else "") + self.delimited(pat, rng.choice(FLAGS))
            if not negated and rng.random() < 0.06:
                pat2, _ = self.pattern()
                rule += "!" + self.delimited(pat2, rng.choice(FLAGS))
            act = self.action(ngroups, negated)
            sep = rng.choice([" ", "\t", "   "])
            if rng.random() < 0.08 and " " in act:
                head, _, tail = act.partition(" ")
                lines.append(rule + sep + head)
                lines.append(rng.choice([" ", "\t"]) + tail)   # continuation line
            else:
                lines.append(rule + sep + act)
        while depth:
            lines.append("endif")
            depth -= 1
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Message generation
# ---------------------------------------------------------------------------------------------

class MessageGen:
    def __init__(self, rng):
        self.rng = rng

    def value(self):
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            return ""
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6))]
        out = ""
        for i, w in enumerate(words):
            if i:
                out += rng.choice([" ", " ", " ", "\n ", "\n\t", "\n  \t", "  "])
            out += w
        lead = rng.choice([" ", " ", " ", "", "  ", "\t"])
        return lead + out

    def long_value(self):
        rng = self.rng
        target = rng.choice([1000, 1200, 5000, 50000, HEADER_SIZE_LIMIT - 200,
                             HEADER_SIZE_LIMIT - 20, HEADER_SIZE_LIMIT + 500, 110000])
        folded = rng.random() < 0.6
        parts = []
        size = 0
        i = 0
        while size < target:
            w = "w%d" % i if rng.random() < 0.9 else rng.choice(WORDS)
            parts.append(w)
            size += len(w) + 2
            i += 1
        if folded:
            lines = []
            cur = ""
            for w in parts:
                if len(cur) + len(w) > 70:
                    lines.append(cur)
                    cur = ""
                cur += (" " if cur else "") + w
            lines.append(cur + rng.choice(["", " urgent", " alpha"]))
            return " " + "\n\t".join(lines)
        return " " + " ".join(parts) + rng.choice(["", " urgent", " alpha"])

    def message(self, ident, marker):
        rng = self.rng
        headers = []
        n = rng.randint(1, 9)
        for _ in range(n):
            name = rng.choice(NAMES)
            if rng.random() < 0.15:
                name = _rand_case(rng, name)
            if rng.random() < 0.02:
                headers.append((name, self.long_value()))
            else:
                headers.append((name, self.value()))
        if rng.random() < 0.2:  # the same header several times
            h = rng.choice(headers)
            for _ in range(rng.randint(1, 3)):
                headers.insert(rng.randint(0, len(headers)), (h[0], self.value()))
        if rng.random() < 0.01:
            headers += [("X-Originating-IP", " 10.0.0.%d" % i) for i in range(2100)]
        headers.insert(rng.randint(0, len(headers)), ("X-Explorer-Ruleset", " " + marker))
        body = "explorer-id: %s\n" % ident
        if rng.random() < 0.1:
            body = ("explorer-id: %s\n--b1\nContent-Type: text/plain\nX-Test: part header\n\n"
                    "part\n--b1--\n" % ident)
            headers.append(("Content-Type", ' multipart/mixed; boundary="b1"'))
        return headers, body


def encode_message(headers, body):
    """Latin-1 stand-ins (U+0080..U+00FF from WORDS' latin-1 decode) stay single bytes only
    where they came from bytes; everything else is UTF-8."""
    out = bytearray()
    for n, v in headers:
        out += n.encode("utf-8") + b":" + _enc(v) + b"\r\n"
    out += b"\r\n" + body.replace("\n", "\r\n").encode("utf-8")
    return bytes(out)


_LATIN1_WORDS = {b"caf\xe9".decode("latin-1"), b"\xc9T\xc9".decode("latin-1")}


def _enc(v):
    data = v
    parts = []
    for w in sorted(_LATIN1_WORDS):
        data = data.replace(w, "\x00%d\x00" % len(parts))
        parts.append(w)
    out = bytearray()
    for i, chunk in enumerate(data.split("\x00")):
        if i % 2 == 1:
            out += parts[int(chunk)].encode("latin-1")
        else:
            out += chunk.encode("utf-8")
    return bytes(out).replace(b"\n", b"\r\n")


# ---------------------------------------------------------------------------------------------
# The two stacks
# ---------------------------------------------------------------------------------------------

class Stacks(harness.OwnedProcesses):
    def __init__(self, tmp):
        super().__init__(tmp)
        common = {"local_header_rewrite_clients": "", "nested_header_checks": ""}
        self.rules_path = os.path.join(tmp, "header_checks")
        harness.write_file(self.rules_path, "/^X-Never-Seen:/ DUNNO\n")
        self.sink_n = self._start(harness.SmtpSink(self._dir("sink-native")))
        self.sink_m = self._start(harness.SmtpSink(self._dir("sink-milter")))
        self.port = harness.free_port()
        self.config_path = os.path.join(tmp, "relaykit.yaml")
        body = "header_checks_file: regexp:%s\n" % self.rules_path
        harness.write_file(self.config_path, milter_fixtures.config_text(
            body, "inet:127.0.0.1:%d" % self.port))
        self.milter = harness.RelaykitDaemon("relaykit-milter", self.config_path, port=self.port,
                                             workdir=tmp)
        self._start(self.milter)
        spec = "inet:127.0.0.1:%d" % self.port
        self.pf_m = self._start(harness.PostfixInstance(
            self._dir("postfix-milter"), relay_port=self.sink_m.port,
            extra_main_cf=dict(common, smtpd_milters=spec, non_smtpd_milters=spec,
                               milter_default_action="tempfail", milter_protocol="6")))
        self.pf_n = self._start(harness.PostfixInstance(
            self._dir("postfix-native"), relay_port=self.sink_n.port,
            extra_main_cf=dict(common, header_checks="regexp:" + self.rules_path)))

    def load(self, text):
        """Installs a rule set in both; returns (ok, postfix warnings, relaykit diagnostics)."""
        with open(self.rules_path, "wb") as f:
            f.write(text.encode("utf-8", errors="surrogateescape"))
        pf_warn = postmap_warnings(self.pf_n.etc, self.rules_path)
        check = subprocess.run([harness.binary_path("relaykit"), "check", "-c",
                                self.config_path], capture_output=True, timeout=60)
        rk = check.stdout.decode(errors="replace") + check.stderr.decode(errors="replace")
        if check.returncode != 0:
            return False, pf_warn, rk
        self.milter.stop()
        self.milter.start()
        self.pf_n.reload()
        return True, pf_warn, rk

    def send(self, pf, msgs):
        for i in range(0, len(msgs), SEND_BATCH):
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=60) as s:
                s.ehlo("client.test.invalid")
                for data in msgs[i:i + SEND_BATCH]:
                    s.sendmail("s@corp.com", ["rcpt@example.com"], data)


def postmap_warnings(etc, path, key="probe"):
    proc = subprocess.run(["/usr/sbin/postmap", "-c", etc, "-q", key, "regexp:" + path],
                          capture_output=True, timeout=60, env=dict(os.environ, LANG="C"))
    return [l for l in proc.stderr.decode(errors="replace").splitlines() if l.strip()]


def postmap_query(etc, path, key):
    proc = subprocess.run(["/usr/sbin/postmap", "-c", etc, "-q", key, "regexp:" + path],
                          capture_output=True, timeout=60, env=dict(os.environ, LANG="C"))
    return proc.stdout.decode(errors="replace").rstrip("\n") if proc.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------

def strip_postfix_received(raw_headers):
    out = list(raw_headers)
    for i, (n, v) in enumerate(out):
        if n.lower() == "received" and "(Postfix) with ESMTP id" in v:
            del out[i]
            break
    return out


def by_id(messages):
    got = {}
    for m in messages:
        mm = re.search(r"explorer-id: (\S+)", m.body)
        if mm:
            got[mm.group(1)] = m
    return got


def show(h):
    n, v = h
    v = v if len(v) < 300 else v[:150] + "...<%d bytes>..." % len(v) + v[-100:]
    return "%r" % ("%s:%s" % (n, v))


def known_reason(etc, rules_path, headers, native, milter, has_mime):
    """Why a difference is a documented one a milter cannot reproduce, or None."""
    for n, v in headers:
        key = "%s:%s" % (n, v)
        if n.strip().lower() in DROPPED_HEADERS and postmap_query(etc, rules_path, key):
            return "header_checks matched a header cleanup drops (message_drop_headers)"
        if len(key) > MILTER_HEADER_CUT - 2048:
            return ("header longer than %d bytes: Postfix cuts it when a milter is configured"
                    % MILTER_HEADER_CUT)
    if has_mime:
        return "MIME part headers in the body (mime_header_checks = $header_checks)"
    return None


def diff_lists(a, b):
    """The minimal differing stretch of two header lists."""
    i = 0
    while i < len(a) and i < len(b) and a[i] == b[i]:
        i += 1
    j = 0
    while j < len(a) - i and j < len(b) - i and a[-1 - j] == b[-1 - j]:
        j += 1
    return a[i:len(a) - j], b[i:len(b) - j]


# ---------------------------------------------------------------------------------------------
# Load-time comparison of malformed tables
# ---------------------------------------------------------------------------------------------

MALFORMED_LINES = [
    "/(/ IGNORE", "/[/ IGNORE", "/a{2,1}/ IGNORE", "/x IGNORE", "/(x)/ REPLACE X: $2",
    "!/(x)/ REPLACE X: $1", "/x/", "/x/ REPLACE X: ${1", "/x/ WARN $a", "/x/ WARN $0",
    "if /x/", "endif", "/x/ WARN A $", "/x/X IGNORE", "/x/q IGNORE", "foo IGNORE",
    "/[[:foo:]]/ IGNORE", "/a|*b/ IGNORE", "/^*/ IGNORE", "/x/ REPLACE X: $(1)",
    "if /x/ extra", "endif extra", "/x/ ! /y/ IGNORE", "/x/!y IGNORE", "if", "/x/ WARN ${}",
    "/a**/ IGNORE", "/()/ IGNORE", "/x{,3}/ IGNORE", "/[[=a=]b]/ IGNORE", "/x/ IGNORE",
    "/x/ ignore", "If /^X-I/", "/(x)/ REPLACE X-$1: v", "/x/ REPLACE nocolon",
    "/x/ PREPEND : empty name", "/x/ REJECT", "/x/ DISCARD", "/x/ STRIP", "/x/ PASS",
]


def explore_load(rng, count, etc, tmp, known):
    """Random tables mixing good and malformed lines: Postfix's warnings vs relaykit check."""
    diffs = []
    path = os.path.join(tmp, "load_checks")
    cfg = os.path.join(tmp, "load.yaml")
    harness.write_file(cfg, milter_fixtures.config_text(
        "header_checks_file: regexp:%s\n" % path, "inet:127.0.0.1:1"))
    for t in range(count):
        lines = []
        for _ in range(rng.randint(1, 6)):
            lines.append(rng.choice(MALFORMED_LINES) if rng.random() < 0.5
                         else "/^X-%d:/ IGNORE" % rng.randint(0, 99))
        text = "\n".join(lines) + "\n"
        harness.write_file(path, text)
        pf = postmap_warnings(etc, path)
        pf_lines = {}
        for w in pf:
            m = re.search(r"line (\d+): (.*)", w)
            if m:
                pf_lines.setdefault(int(m.group(1)), []).append(m.group(2))
        rk = subprocess.run([harness.binary_path("relaykit"), "check", "-c", cfg],
                            capture_output=True, timeout=60)
        out = rk.stdout.decode(errors="replace") + rk.stderr.decode(errors="replace")
        rk_err, rk_warn = {}, {}
        for l in out.splitlines():
            m = re.match(re.escape(path) + r":(\d+):\d+: (warning: )?(.*)", l)
            if m:
                (rk_warn if m.group(2) else rk_err).setdefault(
                    int(m.group(1)), []).append(m.group(3))
        for ln, msgs in sorted(pf_lines.items()):
            skipped = any("skipping" in x or "unrecognized" in x or not
                          re.search(r"IF|ENDIF|no replacement|extra text|whitespace", x)
                          for x in msgs)
            if skipped and ln not in rk_err:
                diffs.append("table %d line %d %r: Postfix %s; relaykit accepted (%s)"
                             % (t, ln, lines[ln - 1], msgs, rk_warn.get(ln)))
            elif not skipped and ln not in rk_warn and ln not in rk_err:
                diffs.append("table %d line %d %r: Postfix warns %s; relaykit silent"
                             % (t, ln, lines[ln - 1], msgs))
        for ln, msgs in sorted(rk_err.items()):
            if ln not in pf_lines and all(x.startswith("header_checks:") for x in msgs):
                # Documented policy: an action Postfix would only warn about at run time (or
                # that a milter cannot carry out) refuses the table at load.
                known["action refused at load (Postfix warns at run time)"] = \
                    known.get("action refused at load (Postfix warns at run time)", 0) + 1
            elif ln not in pf_lines:
                diffs.append("table %d line %d %r: Postfix reads it silently; relaykit error %s"
                             % (t, ln, lines[ln - 1], msgs))
    return diffs


# ---------------------------------------------------------------------------------------------
# Main loop
# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--rulesets", type=int, default=10)
    ap.add_argument("--messages", type=int, default=20, help="messages per rule set")
    ap.add_argument("--rules", type=int, default=12, help="rules per rule set")
    ap.add_argument("--load-tables", type=int, default=0,
                    help="also compare load-time diagnostics of this many malformed tables")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    rng, tmp = harness.explorer_start(args.seed, "relaykit-explore-")
    stacks = Stacks(tmp)
    unexplained = []
    known = {}
    compared = 0
    refused = 0
    try:
        if args.load_tables:
            for d in explore_load(rng, args.load_tables, stacks.pf_n.etc, tmp, known):
                unexplained.append("LOAD " + d)
                print("LOAD " + d)
        rgen, mgen = RuleGen(rng), MessageGen(rng)
        for rs in range(args.rulesets):
            marker = "%d-%d" % (args.seed, rs)
            # A rule that hits Postfix's own Received: line acts natively only, by design:
            # draw again (bounded) until none does.
            for _ in range(MAX_REDRAWS):
                text = rgen.ruleset(args.rules, marker)
                harness.write_file(stacks.rules_path, text)
                if not postmap_query(stacks.pf_n.etc, stacks.rules_path, RECEIVED_PROBE):
                    break
            ok, pf_warn, rk = stacks.load(text)
            rs_skip = postmap_query(stacks.pf_n.etc, stacks.rules_path, RECEIVED_PROBE)
            warned = [w for w in pf_warn if "line" in w]
            if not ok:
                refused += 1
                print("ruleset %d refused by relaykit:\n%s--- Postfix: %s\n--- rules:\n%s"
                      % (rs, rk, warned or "no warning", text))
                if not warned:
                    unexplained.append("ruleset %d: relaykit refused a table Postfix reads "
                                       "silently: %s" % (rs, rk.strip()))
                continue
            if warned:
                unexplained.append("ruleset %d: Postfix warned %s, relaykit loaded it" %
                                   (rs, warned))
                print(unexplained[-1])
            if rs_skip:
                print("ruleset %d matches Postfix's own Received: line; skipped" % rs)
                continue
            probe_hdr = [("X-Explorer-Ruleset", " " + marker), ("Subject", " probe")]
            for attempt in range(MAX_RELOAD_TRIES):
                pid = "probe-%s-%d" % (marker, attempt)
                data = encode_message(probe_hdr, "explorer-id: %s\n" % pid)
                stacks.send(stacks.pf_n, [data])
                stacks.send(stacks.pf_m, [data])
                harness.wait_until(lambda: pid in by_id(stacks.sink_n.messages()), 30, "probe")
                harness.wait_until(lambda: pid in by_id(stacks.sink_m.messages()), 30, "probe")
                mn = by_id(stacks.sink_n.messages())[pid]
                if (mn.header("X-Explorer-Ruleset") or "").endswith("loaded"):
                    break
                time.sleep(0.25)
            else:
                raise RuntimeError("native Postfix did not pick up ruleset %d" % rs)
            stacks.sink_n.clear()
            stacks.sink_m.clear()
            msgs = {}
            for i in range(args.messages):
                ident = "%s-%d" % (marker, i)
                headers, body = mgen.message(ident, marker)
                msgs[ident] = (headers, body, encode_message(headers, body))
            stacks.send(stacks.pf_n, [m[2] for m in msgs.values()])
            stacks.send(stacks.pf_m, [m[2] for m in msgs.values()])
            got_n = by_id(stacks.sink_n.messages(wait_for=len(msgs), timeout=120))
            got_m = by_id(stacks.sink_m.messages(wait_for=len(msgs), timeout=120))
            for ident, (headers, body, _) in msgs.items():
                compared += 1
                n, m = got_n.get(ident), got_m.get(ident)
                if n is None or m is None:
                    unexplained.append("ruleset %d message %s: native %s, milter %s"
                                       % (rs, ident, bool(n), bool(m)))
                    print(unexplained[-1])
                    continue
                hn = strip_postfix_received(n.raw_headers)
                hm = strip_postfix_received(m.raw_headers)
                if hn == hm and n.body == m.body:
                    continue
                why = known_reason(stacks.pf_n.etc, stacks.rules_path,
                                   [(a, b.replace("\r\n", "\n")) for a, b in headers],
                                   hn, hm, "multipart" in "".join(v for _, v in headers))
                a, b = diff_lists(hn, hm)
                report = ["ruleset %d message %s:" % (rs, ident),
                          "  native: " + ", ".join(show(h) for h in a),
                          "  milter: " + ", ".join(show(h) for h in b)]
                if n.body != m.body:
                    report.append("  bodies differ: %r / %r" % (n.body[:200], m.body[:200]))
                if why:
                    known[why] = known.get(why, 0) + 1
                    continue
                sent = [h for h in headers if h[0] != "X-Explorer-Ruleset"]
                report.append("  sent:   " + ", ".join(show(h) for h in sent[:12]))
                report.append("  rules:\n    " + "\n    ".join(text.splitlines()))
                unexplained.append("\n".join(report))
                if len(unexplained) <= MAX_PRINTED_DIFFS:
                    print(unexplained[-1])
            stacks.sink_n.clear()
            stacks.sink_m.clear()
            sys.stdout.flush()
    finally:
        stacks.close(keep=bool(args.keep or unexplained))
    print("seed %d: %d rule sets (%d refused by relaykit), %d messages compared, "
          "%d unexplained differences, known: %s"
          % (args.seed, args.rulesets, refused, compared, len(unexplained), known or "none"))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
