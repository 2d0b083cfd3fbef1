#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""explore_tables.py: seeded random differential explorer, relaykit-socketmapd vs Postfix.

Not a ctest test (no test_ prefix): a tool to hunt for differences on inputs nobody wrote down.
Each round draws random Postfix settings (myorigin, mydestination, recipient_delimiter with one
or several characters, parent_domain_matches_subdomains, propagate_unmatched_extensions) and
random tables (generic, canonical, transport, sender_relay, each 1-3 `entries`/`regexp` sources
in random order), loads the SAME rules into Postfix's own hash:/regexp: tables and into
relaykit-socketmapd, then compares:

  (a) lookups, thousands of keys: Postfix's search (mail_addr_map / mail_addr_find /
      transport_lookup, modelled from the Postfix 3.7 source, each single table lookup answered
      by the real `postmap -q -` on the native tables) against what Postfix makes of the
      socketmap's answers (`postmap -q -` on the socketmap, full key only, external form first);
  (b) real mail (--deliveries N per round): the same random senders and recipients through a
      native-table Postfix and a socketmap Postfix: RCPT/MAIL replies, which smtp-sink got each
      message, the delivered envelope sender and recipients, From: and To:.

Every difference is printed with the key, the table, both answers and the round's settings.
Exit 0 when nothing differed, 1 otherwise.

    RELAYKIT_BUILD_DIR=/work/main/build-tables python3 tests/e2e/explore_tables.py \
        --seed 1 --count 20 [--keys 400] [--deliveries 60] [--keep]
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SINKS = ("exchange", "partner", "smarthost", "alerts")
NOT_FOUND = None
ERROR = "<lookup error>"
MAX_ROUNDS = 1000
DELIVERY_TIMEOUT = 15

# ---------------------------------------------------------------------------------------------
# Postfix's address primitives (quote_822_local.c, split_addr.c, strip_addr.c, resolve_local.c)
# ---------------------------------------------------------------------------------------------

_SPECIALS = set('()<>@,;:\\"[]')


def _is_dot_string(local):
    if local == "" or local[0] == ".":
        return False
    for i, ch in enumerate(local):
        if ch == "." and i + 1 < len(local) and local[i + 1] == ".":
            return False
        o = ord(ch)
        if ch == " " or o < 0x20 or o == 0x7F or ch in _SPECIALS:
            return False
    return local[-1] != "."


def quote(addr, bare=False):
    start = 0
    if addr.startswith("@") and ":" in addr:
        start = addr.index(":") + 1
    end = len(addr)
    if not bare:
        at = addr.rfind("@", start)
        if at >= 0:
            end = at
    local = addr[start:end]
    if _is_dot_string(local):
        return addr
    q = "".join("\\" + c if c in '"\\\r' else c for c in local)
    return addr[:start] + '"' + q + '"' + addr[end:]


def unquote(addr):
    start = 0
    out = ""
    if addr.startswith("@") and ":" in addr:
        start = addr.index(":") + 1
        out = addr[:start]
    in_quote = False
    bare_at_out = -1
    bare_at_src = 0
    i = start
    while i < len(addr):
        c = addr[i]
        if c == '"':
            in_quote = not in_quote
            i += 1
            continue
        if c == "@":
            if not in_quote:
                bare_at_out = len(out)
                bare_at_src = i
        elif c == "\\":
            if i + 1 >= len(addr):
                i += 1
                continue
            i += 1
        out += addr[i]
        i += 1
    if bare_at_out >= 0:
        out = out[:bare_at_out] + addr[bare_at_src:]
    return out


def split_local(local, delims):
    """split_addr_internal: index of the delimiter, or None."""
    low = local.lower()
    if low in ("postmaster", "mailer-daemon", "double-bounce"):
        return None
    if "-" in delims:
        if low.startswith("owner-"):
            return None
        if len(local) - 8 > 0 and low.endswith("-request"):
            return None
    n = 0
    while n < len(local) and local[n] not in delims:
        n += 1
    if n == 0 or n == len(local):
        return None
    return n


def strip_addr(full, delims):
    """strip_addr_internal: (stripped, extension incl. delimiter) or (None, None)."""
    if not delims or not any(c in delims for c in full):
        return None, None
    at = full.rfind("@")
    local = full if at < 0 else full[:at]
    n = split_local(local, delims)
    if n is None:
        return None, None
    return local[:n] + ("" if at < 0 else full[at:]), local[n:]


class Settings:
    def __init__(self, myorigin, mydest, delims, pdms, prop_canonical, prop_generic):
        self.myorigin = myorigin
        self.mydest = mydest
        self.delims = delims
        self.pdms = pdms
        self.prop_canonical = prop_canonical
        self.prop_generic = prop_generic

    def is_local(self, domain):
        if domain.lower() == self.myorigin.lower():
            return True
        d = domain
        if d == "":
            return False
        if d.endswith("."):
            d = d[:-1]
        if d == "" or d.endswith("."):
            return False
        if any(d.lower() == m.lower() for m in self.mydest):
            return True
        return d == "[127.0.0.1]"

    def describe(self):
        return ("myorigin=%s mydestination=%s recipient_delimiter=%r pdms=%s propagate=%s"
                % (self.myorigin, ",".join(self.mydest), self.delims, self.pdms,
                   ",".join(x for x, on in (("canonical", self.prop_canonical),
                                            ("generic", self.prop_generic)) if on)))


# ---------------------------------------------------------------------------------------------
# Postfix's searches (mail_addr_find.c, mail_addr_map.c, transport.c, resolve.c), over a
# `lookup(key, full)` that asks the tables of one main.cf parameter as maps_find() does.
# ---------------------------------------------------------------------------------------------

def _find_addr(lookup, addr, full, with_domain, ext_first):
    ext = quote(addr, bare=not with_domain)
    r = lookup(ext, full)
    if r is not None or not ext_first or ext == addr:
        return r
    return lookup(addr, full)


def mail_addr_find(lookup, addr, st, ext_first, strategy, domain_pdms=None):
    """-> (result, extension that had to be stripped or None)."""
    bare, saved_ext = (strip_addr(addr, st.delims) if "noext" in strategy else (None, None))
    r = None
    ext = None
    if "full" in strategy:
        r = _find_addr(lookup, addr, True, True, ext_first)
    if r is None and bare is not None:
        r = _find_addr(lookup, bare, False, True, ext_first)
        if r is not None:
            ext = saved_ext
    at = addr.rfind("@")
    if r is None and at >= 0 and "local" in strategy and st.is_local(addr[at + 1:]):
        r = _find_addr(lookup, addr[:at], False, False, ext_first)
        if r is None and bare is not None:
            r = _find_addr(lookup, bare[:bare.rfind("@")], False, False, ext_first)
            if r is not None:
                ext = saved_ext
    if r is None and at >= 0 and "at_domain" in strategy:
        r = lookup(addr[at:], False)
    if r is None and at >= 0 and "domain" in strategy:
        name = addr[at + 1:]
        while name:
            r = lookup(name, False)
            if r is not None:
                break
            nxt = name.find(".", 1)
            if nxt < 0:
                break
            name = name[nxt + (1 if domain_pdms else 0):]
    return r, ext


DEFAULT = ("full", "noext", "local", "at_domain")


def native_answer(mode, lookup, addr, st, propagate):
    """What Postfix decides for the internal-form address over its native tables (the null
    sender is "<>", sender_dependent_relayhost_maps' null_sender key)."""
    if mode == "address":
        r, ext = mail_addr_find(lookup, addr, st, False, DEFAULT)
        if r is None or r == ERROR:
            return r
        if r.startswith("@"):
            at = addr.rfind("@")
            local = addr if at < 0 else addr[:at]
            if ext:
                local = local[:len(local) - len(ext)]
            r = quote(local + r)
        if propagate and ext:
            r = add_extension(r, ext)
        return r
    if mode == "transport":
        r, _ = mail_addr_find(lookup, addr, st, True, ("full", "noext", "domain"),
                              domain_pdms=st.pdms)
        if r is None:
            r = lookup("*", True)
        return r
    if mode == "sender":
        r, _ = mail_addr_find(lookup, addr, st, True, DEFAULT)
        return r
    raise ValueError(mode)


def socketmap_answer(mode, sm, addr):
    """What Postfix makes of the socketmap's answers for the same address: a socketmap is a
    pattern table, asked only with the full address, in external form (then internal form
    when it differs, for the legacy transport and sender searches)."""
    key = quote(addr)
    if mode == "address":
        r = sm(key)
        if r is None or r == ERROR:
            return r
        if r.startswith("@"):
            at = addr.rfind("@")
            r = quote((addr if at < 0 else addr[:at]) + r)
        return r
    r = sm(key)
    if r is None and key != addr:
        r = sm(addr)
    if r is None and mode == "transport":
        r = sm("*")
    return r


def add_extension(result, ext):
    """mail_addr_crunch's extension propagation, for simple comma-separated addresses."""
    out = []
    parts, cur, in_quote, i = [], "", False, 0
    while i < len(result):
        c = result[i]
        if c == "\\" and in_quote and i + 1 < len(result):
            cur += result[i:i + 2]
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        if c == "," and not in_quote:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    for one in parts:
        one = one.strip()
        if not one:
            continue
        internal = unquote(one)
        at = internal.rfind("@")
        internal = internal + ext if at < 0 else internal[:at] + ext + internal[at:]
        out.append(quote(internal))
    return ", ".join(out)


# ---------------------------------------------------------------------------------------------
# Random rules and keys
# ---------------------------------------------------------------------------------------------

DOMAINS = ["corp.local", "relay.corp.local", "sub.corp.local", "a.b.corp.local", "corp.com",
           "example.org", "partner.com", "eu.partner.com", "x.example.net", "localhost",
           "[127.0.0.1]", "[192.0.2.7]", "b\u00fccher.example", "local", "xcorp.local"]
LOCALS = ["root", "user", "a.b", "postmaster", "MAILER-DAEMON", "double-bounce", "owner-list",
          "list-request", "a b", "a@b", "x", "jos\u00e9", "nagios", "web", "cron", "u.s.e.r",
          'a"b', "a\\b", "a..b", ".a", "a.", "-lead", "bounce-12", "Admin", "a,b", "x(y)",
          "tab\tx", "a:b"]
EXTS = ["ext", "tag", "", "a+b", "x-y", "++", "=z", "Ext"]
RESULT_LOCALS = ["new", "noreply", "admin", "x.y", "a b", "Mixed.Case"]
RESULT_DOMAINS = ["corp.com", "new.example", "relay.corp.local", "[127.0.0.1]"]


def mutate_case(rng, s):
    r = rng.random()
    if r < 0.6:
        return s
    if r < 0.75:
        return s.upper()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in s)


class Generator:
    def __init__(self, rng, st):
        self.rng = rng
        self.st = st
        self.delim_chars = list(st.delims) or ["+"]

    def localpart(self, ext_prob=0.4):
        rng = self.rng
        local = rng.choice(LOCALS)
        if rng.random() < 0.05:
            local = "l" * rng.randint(60, 300)
        if rng.random() < ext_prob:
            d = rng.choice(self.delim_chars + ["+", "-"])
            ext = rng.choice(EXTS)
            if rng.random() < 0.15:
                local = d + local   # delimiter as first character
            else:
                local = local + d + ext
        return mutate_case(rng, local)

    def domain(self):
        rng = self.rng
        pool = DOMAINS + [self.st.myorigin] * 3 + self.st.mydest * 2
        d = mutate_case(rng, rng.choice(pool))
        if rng.random() < 0.08:
            d += "."
        return d

    def address(self):
        """An internal-form address."""
        rng = self.rng
        r = rng.random()
        if r < 0.06:
            return self.localpart()
        return self.localpart() + "@" + self.domain()

    def entry_key(self, mode):
        rng = self.rng
        r = rng.random()
        if mode == "transport":
            if r < 0.3:
                return quote(self.address_with_domain())
            if r < 0.55:
                return rng.choice(DOMAINS + [self.st.myorigin])
            if r < 0.85:
                return "." + rng.choice(DOMAINS)
            return "*"
        if mode == "sender" and r < 0.08:
            return "<>"
        if r < 0.45:
            return quote(self.address_with_domain())
        if r < 0.65:
            return "@" + rng.choice(DOMAINS + [self.st.myorigin] + self.st.mydest)
        return quote(self.localpart(), bare=True)

    def address_with_domain(self):
        return self.localpart() + "@" + self.domain()

    def value(self, mode, ports):
        rng = self.rng
        sink = rng.choice(SINKS)
        if mode == "transport":
            return rng.choice([
                "smtp:[127.0.0.1]:%d" % ports[sink], ":[127.0.0.1]:%d" % ports[sink],
                "relay:[127.0.0.1]:%d" % ports[sink], "error:5.7.1 blocked by table",
                "smtp:[127.0.0.1]:%d" % ports[sink], "error:", ":", "discard:",
                "smtp:", "local:", "error:4.3.2 try later"])
        if mode == "sender":
            return rng.choice(["[127.0.0.1]:%d" % ports[sink], "DUNNO",
                               "[127.0.0.1]:%d" % ports[sink]])
        r = rng.random()
        local = rng.choice(RESULT_LOCALS)
        dom = rng.choice(RESULT_DOMAINS)
        if r < 0.5:
            return quote(local + "@" + dom)
        if r < 0.7:
            return "@" + dom
        if r < 0.8:
            return quote(local, bare=True)
        if r < 0.9:
            return "%s, other@%s" % (quote(local + "@" + dom), dom)
        return quote(local + "+" + rng.choice(EXTS) + "@" + dom)

    def regexp(self, mode, ports):
        rng = self.rng
        allow_subst = mode == "address"
        lines = []
        depth = 0
        for _ in range(rng.randint(1, 6)):
            pat = self.pattern()
            flags = rng.choice(["", "", "i"])
            neg = rng.random() < 0.1
            if rng.random() < 0.12 and depth < 2:
                lines.append("if %s/%s/%s" % ("!" if neg else "", pat, flags))
                depth += 1
                continue
            if depth and rng.random() < 0.3:
                lines.append("endif")
                depth -= 1
            if allow_subst and not neg and rng.random() < 0.4:
                value = rng.choice(["$1@corp.com", "${1}.${2}@new.example", "x${2}y@corp.com",
                                    "$(1)@[127.0.0.1]", "pre-${1}@corp.com", "$$@corp.com",
                                    "${2}"])
                pat = rng.choice([r"^(.*)@(.*)$", r"^([^@+]*)[+-]?(.*)@", r"^(a|b)?(x)?@",
                                  r"^(.+)\+(.*)@(.*)$"])
            else:
                value = self.value(mode, ports)
            lines.append("%s/%s/%s %s" % ("!" if neg else "", pat, flags, value))
        lines.extend(["endif"] * depth)
        return "\n".join(lines) + "\n"

    def pattern(self):
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            key = quote(self.address_with_domain())
            return "^" + regex_escape(key) + "$"
        if r < 0.6:
            return "@" + regex_escape(rng.choice(DOMAINS)) + "$"
        if r < 0.75:
            return "^" + regex_escape(rng.choice(LOCALS)) + "[+-]"
        return rng.choice([".", "^$", r"\*", "^[^@]*$", "^<>$", "corp", r"\.local$", "^\"",
                           "[[:upper:]]", "^.{50,}$"])


def regex_escape(s):
    out = ""
    for c in s:
        if c in ".[]()*+?{}|^$\\/":
            out += "\\" + c
        else:
            out += c
    return out


def postmap_source_ok(key):
    """Keys a postmap source file can hold the same way as a YAML entries: key."""
    if key == "" or key.startswith("#"):
        return False
    in_quote = False
    i = 0
    while i < len(key):
        c = key[i]
        if in_quote and c == "\\":
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif not in_quote and c in " \t":
            return False
        i += 1
    return not in_quote


class Round:
    """One random configuration: settings and four tables."""

    TABLES = [("generic", "address", "smtp_generic_maps"),
              ("canonical", "address", "canonical_maps"),
              ("transport", "transport", "transport_maps"),
              ("sender_relay", "sender", "sender_dependent_relayhost_maps")]

    def __init__(self, rng, ports, serial):
        self.rng = rng
        self.serial = serial
        pool = ["corp.local", "relay.corp.local", "sub.corp.local", "localhost", "corp.com",
                "example.org"]
        myorigin = rng.choice(pool)
        mydest = rng.sample([d for d in pool if d != myorigin], rng.choice([0, 0, 1, 2]))
        delims = rng.choice(["", "+", "+", "+-", "-", "+=", ".", "-+"])
        self.st = Settings(myorigin, mydest, delims, rng.random() < 0.4,
                           rng.random() < 0.7, rng.random() < 0.4)
        self.gen = Generator(rng, self.st)
        self.tables = {}
        for name, mode, _ in self.TABLES:
            sources = []
            kinds = rng.choice([["entries"], ["regexp"], ["entries", "regexp"],
                                ["regexp", "entries"], ["entries", "regexp", "entries"],
                                ["regexp", "entries", "regexp"]])
            for kind in kinds:
                if kind == "entries":
                    entries = {}
                    for _ in range(rng.randint(2, 14)):
                        k = self.gen.entry_key(mode)
                        if postmap_source_ok(k) and k.lower() not in {x.lower() for x in entries}:
                            entries[k] = self.gen.value(mode, ports)
                    sources.append(("entries", entries))
                else:
                    sources.append(("regexp", self.gen.regexp(mode, ports)))
            self.tables[name] = (mode, sources)

    def propagate(self, name):
        return {"canonical": self.st.prop_canonical, "generic": self.st.prop_generic}.get(
            name, False)

    def yaml(self, port):
        st = self.st
        local = st.mydest + ["[127.0.0.1]"]
        out = ["postfix:", "  myorigin: %s" % json.dumps(st.myorigin),
               "  local_domains: [%s]" % ", ".join(json.dumps(d) for d in local),
               "  recipient_delimiter: %s" % json.dumps(st.delims),
               "  parent_domain_matches_subdomains: %s" % ("true" if st.pdms else "false"),
               "  smtputf8_enable: false",  # the instances' main.cf says no
               "tables:"]
        for name, (mode, sources) in self.tables.items():
            out += ["  %s:" % name, "    search: %s" % mode]
            if mode == "address":
                out.append("    propagate_unmatched_extensions: %s"
                           % ("true" if self.propagate(name) else "false"))
            out.append("    sources:")
            for kind, data in sources:
                if kind == "entries":
                    out.append("      - entries:")
                    if not data:
                        out[-1] += " {}"
                    out += ["          %s: %s" % (json.dumps(k), json.dumps(v))
                            for k, v in data.items()]
                else:
                    out.append("      - regexp: |")
                    out += ["          " + line for line in data.splitlines()]
        # A sentinel the driver polls to know the daemon serves this round's rules.
        out += ["  explorer_round:", "    sources:", "      - entries:",
                "          round: %s" % json.dumps(self.serial)]
        out += ["socketmap:", "  listen: inet:127.0.0.1:%d" % port]
        return "\n".join(out) + "\n"

    def main_cf(self):
        st = self.st
        pdms = ("debug_peer_list,fast_flush_domains,mynetworks,permit_mx_backup_networks,"
                "qmqpd_authorized_clients,relay_domains,smtpd_access_maps")
        prop = [x for x, on in (("canonical", st.prop_canonical), ("generic", st.prop_generic))
                if on]
        return {"myhostname": "mx.test.invalid", "myorigin": st.myorigin,
                "mydestination": ", ".join(st.mydest), "recipient_delimiter": st.delims,
                "parent_domain_matches_subdomains": pdms + (",transport_maps" if st.pdms else ""),
                "propagate_unmatched_extensions": ", ".join(prop),
                "local_transport": "error:5.1.1 local delivery disabled",
                "swap_bangpath": "no", "allow_percent_hack": "no",
                "smtpd_relay_restrictions": "permit_mynetworks, reject",
                "smtpd_recipient_restrictions": "",
                "strict_rfc821_envelopes": "no",
                "smtpd_reject_unlisted_sender": "no", "smtpd_reject_unlisted_recipient": "no",
                # One SMTP session carries every case of a round, refusals included.
                "smtpd_soft_error_limit": "1000", "smtpd_hard_error_limit": "1000",
                "smtpd_error_sleep_time": "0"}

    def write_native(self, etc, postmap):
        """Writes the native tables into etc; returns {param: "hash:..., regexp:..."} and the
        per-table source list [(spec, is_pattern)]."""
        params = {}
        specs = {}
        for (name, mode, param) in self.TABLES:
            _, sources = self.tables[name]
            parts = []
            for i, (kind, data) in enumerate(sources):
                path = os.path.join(etc, "%s.%d" % (name, i))
                if kind == "entries":
                    harness.write_file(path, "".join("%s\t%s\n" % kv for kv in data.items()))
                    postmap(path)
                    parts.append(("hash:" + path, False))
                else:
                    harness.write_file(path, data)
                    parts.append(("regexp:" + path, True))
            params[param] = ", ".join(p for p, _ in parts)
            specs[name] = parts
        return params, specs

    def describe(self):
        lines = [self.st.describe()]
        for name, (mode, sources) in self.tables.items():
            lines.append("  %s (%s):" % (name, mode))
            for kind, data in sources:
                if kind == "entries":
                    lines.append("    entries: %s" % json.dumps(data, ensure_ascii=False))
                else:
                    lines.append("    regexp:\n" + "".join("      %s\n" % ln
                                                           for ln in data.splitlines()))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Lookups through postmap -q - (batched)
# ---------------------------------------------------------------------------------------------

def postmap_batch(etc, table, keys):
    """{key: value} for the keys found (value "" kept); keys must not hold tab or newline."""
    keys = sorted({k for k in keys if k != ""})
    if not keys:
        return {}
    proc = subprocess.run([os.path.join(harness.POSTFIX_SBIN, "postmap"), "-c", etc, "-q", "-",
                           table], input="".join(k + "\n" for k in keys).encode(),
                          capture_output=True, timeout=120)
    if proc.returncode > 1:
        raise RuntimeError("postmap -q - %s: %s" % (table, proc.stderr.decode(errors="replace")))
    found = {}
    for line in proc.stdout.decode("utf-8", errors="surrogateescape").split("\n"):
        if not line:
            continue
        k, sep, v = line.partition("\t")
        found[k] = v
    return found


def socketmap_batch(port, name, keys):
    """{key: value, or ERROR for TEMP/PERM} for the keys found, asked over one connection
    exactly as Postfix's dict_sockmap asks (postmap -q - stops at the first error)."""
    found = {}
    with harness.SocketmapClient(port) as c:
        for k in sorted(keys):
            if k == "":
                continue
            status, data = c.query(name, k)
            if status == "OK":
                found[k] = data
            elif status != "NOTFOUND":
                found[k] = ERROR
    return found


def compare_lookups(rnd, etc, specs, sm_port, keys_per_table):
    """(a): returns [difference text], number of comparisons."""
    diffs = []
    compared = 0
    for name, mode, _ in Round.TABLES:
        keys = keys_per_table[name]
        sources = specs[name]
        propagate = rnd.propagate(name)
        # Pass 1: every key any source may be asked (everything not found walks all forms).
        wanted = [set() for _ in sources]

        def collect(key, full):
            for i, (_, pattern) in enumerate(sources):
                if pattern and not full:
                    continue
                wanted[i].add(key)
            return None
        sm_wanted = set()

        def sm_collect(key):
            sm_wanted.add(key)
            return None
        for k in keys:
            native_answer(mode, collect, k, rnd.st, propagate)
            socketmap_answer(mode, sm_collect, k)
        answers = [postmap_batch(etc, spec, [w for w in ws if "\t" not in w and "\n" not in w])
                   for (spec, _), ws in zip(sources, wanted)]
        sm_answers = socketmap_batch(sm_port, name, sm_wanted)

        def lookup(key, full):
            if key == "":
                return None   # maps_find(): empty keys are never looked up
            for i, (_, pattern) in enumerate(sources):
                if pattern and not full:
                    continue
                v = answers[i].get(key)
                if v is not None:
                    return ERROR if v == "" else v
            return None

        def sm(key):
            if key == "":
                return None
            return sm_answers.get(key)
        for k in keys:
            want = native_answer(mode, lookup, k, rnd.st, propagate)
            got = socketmap_answer(mode, sm, k)
            direct = sm(quote(k))
            compared += 1
            if want != got:
                diffs.append("%s %r (key %r): postfix %r, relaykit %r (socketmap answered %r)"
                             % (name, k, quote(k), want, got, direct))
    return diffs, compared


# ---------------------------------------------------------------------------------------------
# (b) real delivery
# ---------------------------------------------------------------------------------------------

class SmtpClient(harness.RawSmtpSession):
    """Sends addresses byte for byte (8-bit, quotes, spaces)."""

    def __init__(self, port):
        super().__init__(port, helo="explorer.test")

    def send(self, sender, rcpts, message):
        """-> {"mail": code, "rcpt": [codes]} (the message is sent if any RCPT passed)."""
        out = {"mail": None, "rcpt": []}
        code, _ = self.cmd("MAIL FROM:<%s>" % sender)
        out["mail"] = code
        if code >= 400:
            self.cmd("RSET")
            return out
        ok = False
        for r in rcpts:
            code, _ = self.cmd("RCPT TO:<%s>" % r)
            out["rcpt"].append(code)
            ok = ok or code < 400
        if not ok:
            self.cmd("RSET")
            return out
        code, _ = self.cmd("DATA")
        if code != 354:
            out["data"] = code
            self.cmd("RSET")
            return out
        data = message.replace("\n", "\r\n").replace("\r\n.", "\r\n..")
        self.sock.sendall(data.encode("utf-8", errors="surrogateescape") + b"\r\n.\r\n")
        out["data"] = self.reply()[0]
        return out


def header_addr(addr):
    return "<%s>" % addr if addr else "<>"


def deliver_cases(pf, cases, tag, sinks):
    client = SmtpClient(pf.port)
    smtp = {}
    try:
        for i, (sender, rcpts) in enumerate(cases):
            msg = ("From: %s\nTo: %s\nSubject: case %d\nX-Case: %s-%d\n\nbody\n"
                   % (header_addr(sender), ", ".join(header_addr(r) for r in rcpts), i, tag, i))
            smtp[i] = client.send(sender, rcpts, msg)
    finally:
        client.close()
    try:
        pf.wait_queue_empty(timeout=DELIVERY_TIMEOUT, flush=True)
        leftover = False
    except TimeoutError:
        leftover = True
    outcome = {i: {"smtp": smtp[i], "delivered": [], "log": []} for i in smtp}
    # cleanup logs "QID: info: header X-Case: TAG-N ..." (header_checks INFO); every delivery
    # attempt logs "QID: to=<..>, [orig_to=<..>,] relay=.., dsn=.., status=.. (reason)".
    qid_case = {}
    log = pf.maillog()
    for m in re.finditer(r" ([0-9A-F]{6,}): info: header X-Case: %s-(\d+) " % re.escape(tag),
                         log):
        qid_case[m.group(1)] = int(m.group(2))
    for m in re.finditer(r" ([0-9A-F]{6,}): (to=<.*?>, (?:orig_to=<.*?>, )?)relay=(\S+?), "
                         r".*?dsn=(\S+), status=(\S+) \((.*)\)$", log, re.M):
        i = qid_case.get(m.group(1))
        if i is None:
            continue
        reason = "" if m.group(5) == "sent" else re.sub(r"[0-9A-F]{6,}", "QID", m.group(6))
        dsn, status = m.group(4), m.group(5)
        unresolvable = re.match(r"unable to look up host (\S+?):", reason)
        if unresolvable:
            # The same unresolvable next hop: the resolver of this sandbox answers "temporary
            # failure" (4.4.4, deferred) or "not found" (5.4.4, bounced) from one try to the next,
            # and qmgr names the destination queue after whichever recipient came first (case).
            dsn, status, reason = "x.4.4", "unresolvable", unresolvable.group(0).lower()
        outcome[i]["log"].append((m.group(2), m.group(3), dsn, status, reason))
    for o in outcome.values():
        o["log"] = sorted(set(o["log"]))
    for name, sink in sinks.items():
        for m in sink.messages():
            case = m.header("X-Case") or ""
            if not case.startswith(tag + "-"):
                continue
            i = int(case[len(tag) + 1:])
            outcome[i]["delivered"].append(
                (name, m.sender, tuple(sorted(m.recipients)), m.header("From"), m.header("To")))
    for o in outcome.values():
        o["delivered"].sort()
    if leftover:
        # Deferred mail (its "status=deferred" lines are compared above): drop it.
        harness.run([os.path.join(harness.POSTFIX_SBIN, "postsuper"), "-c", pf.etc, "-d",
                     "ALL"], check=False)
    for sink in sinks.values():
        sink.clear()
    return outcome


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------

class Explorer(harness.OwnedProcesses):
    def __init__(self, args):
        super().__init__(harness.make_tmpdir("relaykit-explore-"))
        self.args = args
        self.sinks = {}
        for name in SINKS:
            self.sinks[name] = self._start(harness.SmtpSink(os.path.join(self.tmp,
                                                                         "sink-" + name)))
        self.ports = {n: s.port for n, s in self.sinks.items()}
        self.sm_port = harness.free_port()
        self.config = os.path.join(self.tmp, "relaykit.yaml")
        self.daemon = None
        self.native = None
        self.relay = None
        self.totals = {"rounds": 0, "tables": 0, "keys": 0, "deliveries": 0, "diffs": 0}

    def close(self):
        super().close(keep=bool(self.args.keep or self.totals["diffs"]))

    def instance(self, name, params):
        params = dict(params, header_checks="regexp:" + harness.write_file(
            os.path.join(self.tmp, "header_checks"), "/^X-Case:/ INFO\n"))
        pf = harness.PostfixInstance(os.path.join(self.tmp, name),
                                     relay_port=self.ports["smarthost"], extra_main_cf=params)
        return pf

    def run_round(self, n, rng):
        rnd = Round(rng, self.ports, "%d-%d" % (self.args.seed, n))
        harness.write_file(self.config, rnd.yaml(self.sm_port))
        if self.args.print_config:
            print(rnd.yaml(self.sm_port))
        if self.daemon is None:
            self.daemon = harness.RelaykitDaemon("relaykit-socketmapd", self.config,
                                                 port=self.sm_port, workdir=self.tmp)
            self.daemon.start()
            self.cleanups.append(self.daemon.stop)
        else:
            before = len(self.daemon.stderr())
            self.daemon.hup()

            def reloaded():
                if "refused" in self.daemon.stderr()[before:]:
                    raise RuntimeError("socketmapd refused round %d config:\n%s\n%s" % (
                        n, self.daemon.stderr()[before:], rnd.yaml(self.sm_port)))
                return harness.socketmap_query(self.sm_port, "explorer_round", "round") == (
                    "OK", rnd.serial)
            harness.wait_until(reloaded, 10, "socketmapd to serve round %d" % n)
        params = rnd.main_cf()
        native_dir = os.path.join(self.tmp, "native")
        if self.native is None:
            self.native = self.instance("native", params)
            self.native.write_config()
        else:
            self.native.params.update(params)
            self.native.write_config()
        native_params, specs = rnd.write_native(self.native.etc, self.native.postmap)
        self.native.params.update(native_params)
        self.native.write_config()
        diffs = []
        keys = {}
        g = rnd.gen
        for name, mode, _ in Round.TABLES:
            ks = set()
            # Keys drawn from the table's own entries and patterns' neighbourhood plus random.
            _, sources = rnd.tables[name]
            entry_keys = [k for kind, d in sources if kind == "entries" for k in d]
            for _ in range(self.args.keys):
                r = rng.random()
                if r < 0.25 and entry_keys:
                    base = unquote(rng.choice(entry_keys))
                    if base.startswith("@"):
                        base = g.localpart() + base
                    elif "@" not in base and mode == "transport":
                        base = g.localpart() + "@" + base.lstrip(".").replace("*", "x")
                    elif "@" not in base and rng.random() < 0.7:
                        base = base + "@" + g.domain()
                    if rng.random() < 0.4 and rnd.st.delims and "@" in base:
                        at = base.rfind("@")
                        base = base[:at] + rng.choice(rnd.st.delims) + rng.choice(EXTS) + \
                            base[at:]
                    addr = mutate_case(rng, base)
                else:
                    addr = g.address()
                if mode == "sender" and rng.random() < 0.03:
                    addr = ""
                if mode == "transport" and ("@" not in addr or addr.endswith("@")):
                    continue
                if mode == "address" and addr == "":
                    continue
                addr = addr or "<>"
                if "\n" in addr or "\t" in addr:
                    continue
                ks.add(addr)
            keys[name] = sorted(ks)
        d, compared = compare_lookups(rnd, self.native.etc, specs, self.sm_port, keys)
        diffs += d
        self.totals["keys"] += compared
        self.totals["tables"] += len(Round.TABLES)
        if self.args.deliveries:
            diffs += self.delivery_round(rnd, params, native_params, rng)
        self.totals["rounds"] += 1
        if diffs:
            self.totals["diffs"] += len(diffs)
            print("=== round %d: %d difference(s)\n%s" % (n, len(diffs), rnd.describe()))
            for x in diffs:
                print("  " + x)
            sys.stdout.flush()

    def delivery_round(self, rnd, params, native_params, rng):
        sm = "socketmap:inet:127.0.0.1:%d:" % self.sm_port
        relay_params = dict(params)
        for name, _, param in Round.TABLES:
            relay_params[param] = sm + name
        if self.relay is None:
            self.relay = self.instance("relaykit", relay_params)
            self.relay.start()
            self.cleanups.append(self.relay.stop)
            self.native.start()
            self.cleanups.append(self.native.stop)
        else:
            self.relay.set_params(relay_params)
            self.native.reload()
        time.sleep(0.5)
        g = rnd.gen
        cases = []
        for _ in range(self.args.deliveries):
            sender = g.address() if rng.random() < 0.9 else ""
            if "@" not in sender and sender:
                sender = sender + "@" + g.domain()
            rcpts = []
            for _ in range(rng.choice([1, 1, 1, 2])):
                r = g.address()
                if "@" not in r:
                    r = r + "@" + g.domain()
                rcpts.append(r)
            if any(c in s for s in [sender] + rcpts for c in "\t\r\n<>"):
                continue
            cases.append((quote(sender) if sender else "", [quote(r) for r in rcpts]))
        want = deliver_cases(self.native, cases, "n%s" % rnd.serial, self.sinks)
        got = deliver_cases(self.relay, cases, "r%s" % rnd.serial, self.sinks)
        self.totals["deliveries"] += len(cases)
        self.totals["delivered"] = self.totals.get("delivered", 0) + sum(
            len(o["delivered"]) for o in want.values())
        if self.args.verbose:
            for i, c in enumerate(cases):
                print("  case %s -> %s" % (c, want[i]))
        diffs = []
        for i, (sender, rcpts) in enumerate(cases):
            if want[i] != got[i]:
                diffs.append("delivery MAIL FROM:<%s> RCPT TO:%s\n      postfix  %s\n"
                             "      relaykit %s" % (sender, rcpts, want[i], got[i]))
        return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=10, help="rounds (random configurations)")
    ap.add_argument("--keys", type=int, default=300, help="keys per table per round")
    ap.add_argument("--deliveries", type=int, default=0, help="messages per round (0: none)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--no-8bit", action="store_true",
                    help="ASCII keys and rules only (skips the known regexp 8-bit differences)")
    ap.add_argument("--verbose", action="store_true", help="print every delivery outcome")
    ap.add_argument("--round", type=int, default=None, help="run only this round of the seed")
    ap.add_argument("--print-config", action="store_true",
                    help="print each round's relaykit YAML")
    args = ap.parse_args()
    if args.no_8bit:
        for pool in (DOMAINS, LOCALS):
            pool[:] = [x for x in pool if x.isascii()]
    ex = Explorer(args)
    try:
        rounds = [args.round] if args.round is not None else range(min(args.count, MAX_ROUNDS))
        for n in rounds:
            rng = random.Random("%d-%d" % (args.seed, n))
            ex.run_round(n, rng)
    finally:
        ex.close()
    print("compared: %(rounds)d rounds, %(tables)d tables, %(keys)d keys, "
          "%(deliveries)d deliveries (%(delivered)d messages delivered); %(diffs)d difference(s)"
          % dict(ex.totals, delivered=ex.totals.get("delivered", 0)))
    return 1 if ex.totals["diffs"] else 0


if __name__ == "__main__":
    sys.exit(main())
