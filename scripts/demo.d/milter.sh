# scripts/demo.d/milter.sh: relaykit-milter's part of scripts/demo (sourced by it). Wires the
# milter into the demo relay (smtpd_milters and non_smtpd_milters), starts it with the demo
# config, sends one message full of what the relay must clean up (X-Originating-IP, a Received
# line from localhost, a From at @localhost, a root@ envelope sender) and shows it before and
# after: as submitted, and as the smarthost received it.
# Uses from scripts/demo: BUILD_DIR, CONFIG, DEMO_DIR, DEMO_PIDS, DEMO_MAIN_CF, wait_port,
# relaykit_log, demo_record.

MILTER_PORT=10042
DEMO_MAIN_CF+=(
  "smtpd_milters = inet:127.0.0.1:$MILTER_PORT"
  "non_smtpd_milters = inet:127.0.0.1:$MILTER_PORT"
  "milter_default_action = tempfail"
)
DEMO_MILTER_SUBJECT="milter: before and after"

demo_start_milter() {
  "$BUILD_DIR/milters/relaykit-milter" -c "$CONFIG" -f >"$DEMO_DIR/milter.log" 2>&1 &
  DEMO_PIDS+=($!)
  if ! wait_port "$MILTER_PORT" relaykit-milter "$!"; then
    cat "$DEMO_DIR/milter.log" >&2
    exit 1
  fi
  relaykit_log "relaykit-milter on inet:127.0.0.1:$MILTER_PORT with $CONFIG"
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
  echo "--- the milter's log line"
  { grep -h 'header X-Originating-IP removed' "$DEMO_DIR/milter.log" || true; } | tail -n 1 | sed 's/^<[0-7]>//' |
    sed 's/^/    /'
  echo "    (on the sendmail path cleanup applies sender_canonical_maps before non_smtpd_milters"
  echo "     see the sender, so here the envelope sender was already canonical; over SMTP the"
  echo "     milter's rewrite_sender does it, before the queue: see the cron@/app@ lines above)"
  echo
}
