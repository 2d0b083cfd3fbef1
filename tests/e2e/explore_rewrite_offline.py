#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""explore_rewrite_offline.py: seeded random differential explorer for `relaykit rewrite`.

Not a ctest test (no test_ prefix): run it by hand. It reuses explore_header_checks.py's random
header_checks rule sets and messages, but the subject under test is the offline dry run: for
each message, `relaykit rewrite -c CONFIG --sender S --rcpt R FILE` (the milter's engine on a
message file, header_checks_file = the same rule file) against what a private Postfix with native
`header_checks = regexp:FILE` delivered to its smtp-sink, Postfix's own Received: line aside.

Two submission paths feed the oracle:
  smtp      the random messages over SMTP (CRLF), as explore_header_checks.py sends them;
  sendmail  file variants of some messages (LF, CRLF, mixed line ends, a leading mbox "From "
            line, no final newline, no body, a header block only, no blank line before the body,
            "Name : value" headers, a first line that is a continuation, 8-bit and long lines,
            bare CR, NUL bytes) submitted with `sendmail -C` exactly as written to the file that
            `relaykit rewrite` reads. Address headers are left out of these (the sendmail path
            rewrites them in cleanup, which relaykit does not claim to do), and the headers
            cleanup adds to local submissions (Received, Message-Id, Date, From, To) are
            removed from Postfix's copy before comparing.

The whole delivered message is compared: header lines with their folding, the blank line, and
the body byte for byte (line ends as LF). Each difference is printed with the input file, both
results and the rules; documented ones (explore_header_checks.py's known reasons) are counted
apart.

  RELAYKIT_BUILD_DIR=build-milter python3 tests/e2e/explore_rewrite_offline.py \
      --seed 1 --rulesets 20 --messages 20 --files 8 [--keep]

Exit status 0 when no unexplained difference was seen, 1 otherwise.
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
import explore_header_checks as ehc  # noqa: E402
import harness  # noqa: E402
import milter_fixtures  # noqa: E402

# ---- limits ----
MAX_RELOAD_TRIES = 40          # probes after a reload before giving up (0.25 s apart)
REWRITE_TIMEOUT = 60           # seconds for one `relaykit rewrite`
MAX_PRINTED_DIFFS = 40
SENDER = "s@corp.com"

# Headers cleanup rewrites on the sendmail path (HDR_OPT_SENDER/RECIP): kept out of file variants.
ADDRESS_HEADERS = {"from", "to", "cc", "sender", "reply-to", "bcc", "resent-from", "resent-to",
                   "resent-cc", "resent-sender", "resent-reply-to", "errors-to",
                   "return-receipt-to", "delivered-to", "x-original-to", "return-path"}

VARIANTS = ["lf", "crlf", "mixed", "mbox_from", "no_final_newline", "no_body", "header_only",
            "header_only_no_final_newline", "no_blank_line", "space_colon", "leading_space",
            "long_lines", "bare_cr", "nul", "empty_lines_body", "dot_lines", "dropped_headers", "huge_header", "huge_header"]


def rewrite(config, path, rcpt):
    """`relaykit rewrite` on a file: (exit status, stdout bytes, stderr text)."""
    proc = subprocess.run([harness.binary_path("relaykit"), "rewrite", "-c", config, "--sender",
                           SENDER, "--rcpt", rcpt, path], capture_output=True,
                          timeout=REWRITE_TIMEOUT)
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


def split_delivered(text):
    """smtp-sink dump (str, surrogateescape) -> the message as delivered, LF line ends."""
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    i = 0
    while i < len(lines) and not lines[i].startswith("Received:"):
        i += 1
    i += 1
    while i < len(lines) and lines[i][:1] in (" ", "\t"):
        i += 1
    msg = "\n".join(lines[i:])
    # smtp-sink ends the dump with one extra empty line.
    if msg.endswith("\n\n"):
        msg = msg[:-1]
    return msg


def parse_message(msg):
    """Message text (LF) -> ([(name, raw value)], body text or None without a blank line)."""
    lines = msg.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
        tail_nl = True
    else:
        tail_nl = False
    headers, i, blank = harness.read_header_block(lines)
    body = None
    if blank:
        body = "\n".join(lines[i:]) + ("\n" if tail_nl and i < len(lines) else "")
    return headers, body


def strip_added(headers, path):
    """Postfix's own Received: and the headers cleanup adds to a message that lacks them."""
    out = list(headers)
    for i, (n, v) in enumerate(out):
        if n.lower() == "received" and "(Postfix" in v and "relay.test.invalid" in v:
            del out[i]
            break
    if path == "sendmail":
        added = [(r"(resent-)?message-id", r" <\d{14}\.\w+@relay\.test\.invalid>$"),
                 (r"(resent-)?date", r" \w{3}, [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \(\w+\)$"),
                 (r"(resent-)?from", r" (%s( \(.*\))?|.* <%s>)$" % (re.escape(SENDER), re.escape(SENDER))),
                 (r"to", r" undisclosed-recipients:;$")]
        for name, rx in added:
            for i in range(len(out) - 1, -1, -1):
                n, v = out[i]
                if re.fullmatch(name, n.lower()) and re.match(rx, v):
                    del out[i]
                    break
    return out


# ---------------------------------------------------------------------------------------------
# File variants
# ---------------------------------------------------------------------------------------------

def header_lines(headers):
    """[(name, value)] -> list of byte lines (no line ends), folding kept."""
    out = []
    for n, v in headers:
        text = n.encode("utf-8") + b":" + ehc._enc(v).replace(b"\r\n", b"\n")
        out += text.split(b"\n")
    return out


def make_variant(rng, mgen, kind, headers, body_text):
    """(bytes for the file and for sendmail) of one variant."""
    headers = [h for h in headers if h[0].strip().lower() not in ADDRESS_HEADERS]
    hl = header_lines(headers)
    bl = body_text.encode("utf-8").split(b"\n")
    if bl and bl[-1] == b"":
        bl.pop()
    eol = b"\n"
    if kind == "crlf":
        eol = b"\r\n"
    if kind == "space_colon" and hl:
        i = rng.randrange(len(hl))
        if b":" in hl[i] and hl[i][:1] not in (b" ", b"\t"):
            n, _, v = hl[i].partition(b":")
            hl[i] = n + rng.choice([b" ", b"\t", b"  "]) + b":" + v
        hl.append(b"X-Spaced \t: spaced value")
    if kind == "leading_space":
        hl.insert(0, b" leading continuation")
    if kind == "long_lines":
        hl.append(b"X-Long: " + b" ".join(b"w%d" % i for i in range(rng.choice([500, 700]))))
        hl.append(b"X-Long2: " + b"y" * rng.choice([2040, 2047, 2048, 2049, 3000, 5000]))
        bl.append(b"z" * rng.choice([998, 999, 2047, 2048, 2049, 4100]))
    if kind == "bare_cr":
        hl.append(b"X-Cr: a\rb")
        bl.append(b"body\rcr")
    if kind == "nul":
        hl.append(b"X-Nul: a\x00b")
        bl.append(b"body\x00nul")
    if kind == "huge_header":
        hl[rng.randint(0, len(hl)):0] = header_lines([("X-Big", mgen.long_value())])
    if kind == "dropped_headers":
        hl[rng.randint(0, len(hl)):0] = [b"Content-Length: 123", b"Return-Path: <a@b.example>",
                                         b"Resent-Bcc: <c@d.example>"]
    if kind == "empty_lines_body":
        bl = [b"", b""] + bl + [b"", b""]
    if kind == "dot_lines":
        bl += [b".", b"..", b".x"]
    if kind == "mbox_from":
        hl.insert(0, b"From " + SENDER.encode() + b"  Mon Jan  1 00:00:00 2024")
    lines = []
    if kind in ("header_only", "header_only_no_final_newline"):
        lines = hl
    elif kind == "no_blank_line":
        lines = hl + [b"not a header line"] + bl
    elif kind == "no_body":
        lines = hl + [b""]
    else:
        lines = hl + [b""] + bl
    if kind == "mixed":
        data = b"".join(l + rng.choice([b"\n", b"\r\n"]) for l in lines)
    else:
        data = b"".join(l + eol for l in lines)
    if kind in ("no_final_newline", "header_only_no_final_newline") and data.endswith(b"\n"):
        data = data[:-1]
    return data


# ---------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------

class Oracle(harness.OwnedProcesses):
    def __init__(self, tmp, smtp_line_limit):
        super().__init__(tmp)
        self.rules_path = os.path.join(tmp, "header_checks")
        harness.write_file(self.rules_path, "/^X-Never-Seen:/ DUNNO\n")
        self.sink = self._start(harness.SmtpSink(self._dir("sink")))
        self.config_path = os.path.join(tmp, "relaykit.yaml")
        harness.write_file(self.config_path, milter_fixtures.config_text(
            "header_checks_file: regexp:%s\n" % self.rules_path, "inet:127.0.0.1:1"))
        params = {"local_header_rewrite_clients": "", "nested_header_checks": "",
                  "header_checks": "regexp:" + self.rules_path}
        if smtp_line_limit is not None:
            params["smtp_line_length_limit"] = str(smtp_line_limit)
        self.pf = self._start(harness.PostfixInstance(self._dir("postfix"),
                                                      relay_port=self.sink.port,
                                                      extra_main_cf=params))

    def load(self, text):
        with open(self.rules_path, "wb") as f:
            f.write(text.encode("utf-8", errors="surrogateescape"))
        check = subprocess.run([harness.binary_path("relaykit"), "check", "-c",
                                self.config_path], capture_output=True, timeout=60)
        if check.returncode != 0:
            return False, check.stdout.decode(errors="replace") + \
                check.stderr.decode(errors="replace")
        self.pf.reload()
        return True, ""

    def send_smtp(self, items):
        """items: [(rcpt, data)]."""
        for i in range(0, len(items), ehc.SEND_BATCH):
            with smtplib.SMTP("127.0.0.1", self.pf.port, timeout=60) as s:
                s.ehlo("client.test.invalid")
                for rcpt, data in items[i:i + ehc.SEND_BATCH]:
                    s.sendmail(SENDER, [rcpt], data)

    def delivered(self, count):
        """{recipient: delivered message text (LF)}."""
        got = {}
        for m in self.sink.messages(wait_for=count, timeout=120):
            for r in m.recipients:
                got[r] = split_delivered(m.text)
        return got


def wait_loaded(oracle, marker):
    """Probes until Postfix applies the new rule set (its marker rule rewrites the probe)."""
    for attempt in range(MAX_RELOAD_TRIES):
        rcpt = "probe-%s-%d@example.com" % (marker, attempt)
        data = ehc.encode_message([("X-Explorer-Ruleset", " " + marker)], "probe\n")
        oracle.send_smtp([(rcpt, data)])
        harness.wait_until(lambda: rcpt in oracle.delivered(0), 30, "probe")
        msg = oracle.delivered(0)[rcpt]
        oracle.sink.clear()
        if re.search(r"^X-Explorer-Ruleset: \S+ loaded$", msg, re.M):
            return
        time.sleep(0.25)
    raise RuntimeError("Postfix did not pick up rule set %s" % marker)


def known_reason(etc, rules_path, headers, has_mime):
    """Why a difference is a documented one, or None (offline sees every header whole, so the
    live milter's 60000-byte cut is no reason here)."""
    for n, v in headers:
        if n.strip().lower() in ehc.DROPPED_HEADERS and ehc.postmap_query(
                etc, rules_path, "%s:%s" % (n, v)):
            return "header_checks matched a header cleanup drops (message_drop_headers)"
    if has_mime:
        return "MIME part headers in the body (mime_header_checks = $header_checks)"
    return None


def compare(expected_text, got_text, path):
    """None when equal (after the known transformations), else a short description."""
    rh, rbody = parse_message(expected_text)
    ph, pbody = parse_message(got_text)
    ph = strip_added(ph, path)
    if rh == ph and rbody == pbody:
        return None
    a, b = ehc.diff_lists(ph, rh)
    out = ["  postfix:  " + ", ".join(ehc.show(h) for h in a),
           "  relaykit: " + ", ".join(ehc.show(h) for h in b)]
    if rbody != pbody:
        out.append("  bodies: postfix %r / relaykit %r (None: no empty line after the headers)"
                   % (pbody if pbody is None else pbody[:300],
                      rbody if rbody is None else rbody[:300]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--rulesets", type=int, default=10)
    ap.add_argument("--messages", type=int, default=20, help="SMTP messages per rule set")
    ap.add_argument("--files", type=int, default=len(VARIANTS),
                    help="sendmail file variants per rule set")
    ap.add_argument("--rules", type=int, default=12, help="rules per rule set")
    ap.add_argument("--smtp-line-length-limit", type=int, default=0,
                    help="the oracle's smtp_line_length_limit (default 0: lines are delivered "
                         "unbroken, so what is compared is cleanup's result; -1: Postfix's "
                         "default 998)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    rng, tmp = harness.explorer_start(args.seed, "relaykit-explore-offline-",
                                      "private Postfix instance")
    oracle = Oracle(tmp, None if args.smtp_line_length_limit < 0
                    else args.smtp_line_length_limit)
    files_dir = os.path.join(tmp, "messages")
    os.makedirs(files_dir)
    unexplained = []
    known = {}
    compared = {"smtp": 0, "sendmail": 0}
    refused = 0
    try:
        rgen, mgen = ehc.RuleGen(rng), ehc.MessageGen(rng)
        for rs in range(args.rulesets):
            marker = "%d-%d" % (args.seed, rs)
            for _ in range(ehc.MAX_REDRAWS):
                text = rgen.ruleset(args.rules, marker)
                harness.write_file(oracle.rules_path, text)
                if not ehc.postmap_query(oracle.pf.etc, oracle.rules_path, ehc.RECEIVED_PROBE):
                    break
            ok, why = oracle.load(text)
            if not ok:
                refused += 1
                continue
            if ehc.postmap_query(oracle.pf.etc, oracle.rules_path, ehc.RECEIVED_PROBE):
                continue
            wait_loaded(oracle, marker)
            cases = {}   # rcpt -> (path, input bytes, sent headers, has_mime)
            smtp_items = []
            for i in range(args.messages):
                ident = "%s-%d" % (marker, i)
                headers, body = mgen.message(ident, marker)
                rcpt = "m-%s@example.com" % ident
                data = ehc.encode_message(headers, body)
                cases[rcpt] = ("smtp", data, headers, "multipart" in "".join(
                    v for _, v in headers))
                smtp_items.append((rcpt, data))
            kinds = list(VARIANTS)
            rng.shuffle(kinds)
            for i, kind in enumerate(kinds[:args.files]):
                ident = "%s-f%d" % (marker, i)
                headers, body = mgen.message(ident, marker)
                data = make_variant(rng, mgen, kind, headers, body)
                rcpt = "f-%s-%s@example.com" % (ident, kind.replace("_", "-"))
                cases[rcpt] = ("sendmail", data, headers, "multipart" in "".join(
                    v for _, v in headers))
            oracle.send_smtp(smtp_items)
            expected_count = len(cases)
            for rcpt, (path, data, _, _) in cases.items():
                if path == "sendmail":
                    try:
                        oracle.pf.sendmail(data, SENDER, [rcpt])
                    except RuntimeError as e:
                        print("sendmail refused %s: %s" % (rcpt, e))
                        expected_count -= 1
            got = oracle.delivered(expected_count)
            for rcpt, (path, data, headers, has_mime) in sorted(cases.items()):
                fpath = os.path.join(files_dir, rcpt.split("@")[0])
                with open(fpath, "wb") as f:
                    f.write(data)
                rc, out, err = rewrite(oracle.config_path, fpath, rcpt)
                if rc != 0:
                    unexplained.append("%s (%s): relaykit rewrite exit %d: %s"
                                       % (rcpt, path, rc, err.strip()[:500]))
                    print(unexplained[-1])
                    continue
                if rcpt not in got:
                    if path == "sendmail":
                        continue
                    unexplained.append("%s: not delivered by Postfix" % rcpt)
                    print(unexplained[-1])
                    continue
                compared[path] += 1
                diff = compare(out.decode("utf-8", errors="surrogateescape"), got[rcpt], path)
                if diff is None:
                    continue
                flat = [(n, v.replace("\r\n", "\n")) for n, v in headers]
                why = known_reason(oracle.pf.etc, oracle.rules_path, flat, has_mime)
                if why:
                    known[why] = known.get(why, 0) + 1
                    continue
                report = "%s (%s): file %s\n%s\n  input: %r\n  rules:\n    %s" % (
                    rcpt, path, fpath, diff, data[:600], "\n    ".join(text.splitlines()))
                unexplained.append(report)
                if len(unexplained) <= MAX_PRINTED_DIFFS:
                    print(report)
            oracle.sink.clear()
            sys.stdout.flush()
    finally:
        oracle.close(keep=bool(args.keep or unexplained))
    print("seed %d: %d rule sets (%d refused by relaykit), %d messages compared (smtp %d, "
          "sendmail files %d), %d unexplained differences, known: %s"
          % (args.seed, args.rulesets, refused, sum(compared.values()), compared["smtp"],
             compared["sendmail"], len(unexplained), known or "none"))
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
