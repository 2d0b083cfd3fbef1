# SPDX-License-Identifier: Apache-2.0
# scripts/demo.d/milter.sh: relaykit-milter's part of scripts/demo (sourced by it). Wires the
# milter into the demo relay (smtpd_milters and non_smtpd_milters), starts it with the demo
# config, sends one message full of what the relay must clean up (X-Originating-IP, a Received
# line from localhost, a From at @localhost, a root@ envelope sender) and shows it before and
# after: as submitted, and as the smarthost received it, with the DKIM signatures relaykit-milter
# added (keys made at start with `relaykit dkim keygen` into the demo directory; the milter runs
# with a copy of the config that has a `dkim:` section for corp.com) and their verification by
# python3-dkim.
# Uses from scripts/demo: BUILD_DIR, CONFIG, DEMO_DIR, DEMO_PIDS, DEMO_MAIN_CF, wait_port,
# relaykit_log, demo_record.

MILTER_PORT=10042
DEMO_MAIN_CF+=(
  "smtpd_milters = inet:127.0.0.1:$MILTER_PORT"
  "non_smtpd_milters = inet:127.0.0.1:$MILTER_PORT"
  "milter_default_action = tempfail"
)
DEMO_MILTER_SUBJECT="milter: before and after"

# Keys for corp.com (RSA-2048 and Ed25519) and $DEMO_DIR/relaykit.yaml: $CONFIG plus
# milter: dkim: signing with them.
demo_milter_dkim_config() {
  local dir=$DEMO_DIR/dkim
  mkdir -p "$dir"
  "$BUILD_DIR/cli/relaykit" dkim keygen --domain corp.com --selector rsa2026 \
    --out "$dir/corp.com.rsa2026.pem" >"$dir/rsa2026.zone"
  "$BUILD_DIR/cli/relaykit" dkim keygen --domain corp.com --selector ed2026 --algorithm ed25519 \
    --out "$dir/corp.com.ed2026.pem" >"$dir/ed2026.zone"
  python3 - "$CONFIG" "$DEMO_DIR/relaykit.yaml" "$dir" <<'EOF'
import re, sys
config, out, keys = sys.argv[1:]
text = open(config).read()
dkim = ("  dkim:\n"
        "    keys:\n"
        "      - {domain: corp.com, selector: rsa2026, key_file: %s/corp.com.rsa2026.pem}\n"
        "      - {domain: corp.com, selector: ed2026, key_file: %s/corp.com.ed2026.pem}\n"
        % (keys, keys))
text, n = re.subn(r"^milter:[ \t]*\n", lambda m: m.group(0) + dkim, text, count=1, flags=re.M)
if n != 1 or re.search(r"^  dkim:", text.replace(dkim, ""), re.M):
    sys.exit("demo: cannot add a dkim section to the milter section of " + config)
open(out, "w").write(text)
EOF
  MILTER_CONFIG=$DEMO_DIR/relaykit.yaml
}

demo_start_milter() {
  demo_milter_dkim_config
  "$BUILD_DIR/milters/relaykit-milter" -c "$MILTER_CONFIG" -f >"$DEMO_DIR/milter.log" 2>&1 &
  DEMO_PIDS+=($!)
  if ! wait_port "$MILTER_PORT" relaykit-milter "$!"; then
    cat "$DEMO_DIR/milter.log" >&2
    exit 1
  fi
  relaykit_log "relaykit-milter on inet:127.0.0.1:$MILTER_PORT with $CONFIG + dkim (corp.com)"
}

demo_milter_mail() {
  cat >"$DEMO_DIR/milter-before.eml" <<MSG
Received: from localhost (localhost [127.0.0.1])
	by app01.corp.local (Postfix) with ESMTP id 4AbCdE
X-Originating-IP: 10.20.30.40
From: "Cron Daemon" <root@localhost>
To: ops@example.org
Subject: $DEMO_MILTER_SUBJECT
Date: $(date -R)
Message-ID: <demo-milter@app01.corp.local>

Nightly backup finished.
MSG
  sendmail -C "$DEMO_DIR/postfix/etc" -f root@relay.corp.local ops@example.org \
    <"$DEMO_DIR/milter-before.eml"
  demo_record sendmail root@relay.corp.local ops@example.org "root@localhost" \
    "$DEMO_MILTER_SUBJECT"
}

demo_milter_report() {
  local after
  after=$(grep -l -r "^Subject: $DEMO_MILTER_SUBJECT" "$DEMO_DIR/sinks" | head -n 1 || true)
  echo "relaykit-milter, one message before and after:"
  echo "--- as submitted (sendmail -f root@relay.corp.local)"
  sed -n '1,/^$/p' "$DEMO_DIR/milter-before.eml" | sed 's/^/    /'
  if [[ -z $after ]]; then
    echo "--- NOT DELIVERED"
    return 1
  fi
  echo "--- as the smarthost received it (envelope first)"
  sed -n '1,/^$/p' "$after" | grep -v '^X-Rcpt-Args\|^$' | sed 's/^X-Mail-Args: FROM:/MAIL FROM:/;s/^/    /'
  echo "--- DKIM, checked by python3-dkim with the keys' DNS records (no DNS asked)"
  python3 - "$after" "$DEMO_DIR/dkim" <<'EOF' | sed 's/^/    /'
import re, sys
try:
    import dkim
except ImportError:
    sys.path.append("/usr/lib/python3/dist-packages")
    import dkim
path, keys = sys.argv[1:]
records = {}
for sel in ("rsa2026", "ed2026"):
    records[sel] = "".join(re.findall(r'"([^"]*)"', open("%s/%s.zone" % (keys, sel)).read()))
raw = open(path, "rb").read().replace(b"\r\n", b"\n")
head = raw.split(b"\n\n", 1)[0].decode(errors="replace")
sigs = re.findall(r"^DKIM-Signature:.*(?:\n[ \t].*)*", head, re.M)
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return records.get(name.split("._domainkey.")[0], "").encode() or None
d = dkim.DKIM(raw.replace(b"\n", b"\r\n"))
for i, sig in enumerate(sigs):
    s = re.search(r"\bs=([\w.-]+)", sig).group(1)
    a = re.search(r"\ba=([\w-]+)", sig).group(1)
    print(sig.split("\n")[0] + (" ..." if "\n" in sig else ""))
    print("  -> %s (d=corp.com s=%s a=%s)" % ("pass" if d.verify(idx=i, dnsfunc=dnsfunc)
                                               else "FAIL", s, a))
if not sigs:
    print("no DKIM-Signature: NOT SIGNED")
    sys.exit(1)
EOF
  echo "--- the milter's log lines"
  local line qid
  line=$({ grep -h 'header X-Originating-IP removed' "$DEMO_DIR/milter.log" || true; } | tail -n 1)
  qid=$(sed -n 's/^.*\]: \([0-9A-F]\{6,\}\): .*$/\1/p' <<<"$line")
  { echo "$line"; if [[ -n $qid ]]; then grep -h " $qid: dkim:" "$DEMO_DIR/milter.log" || true; fi; } |
    sed 's/^<[0-7]>//' | sed 's/^/    /'
  echo "    (on the sendmail path cleanup applies sender_canonical_maps before non_smtpd_milters"
  echo "     see the sender, so here the envelope sender was already canonical; over SMTP the"
  echo "     milter's rewrite_sender does it, before the queue: see the cron@/app@ lines above)"
  echo
}
