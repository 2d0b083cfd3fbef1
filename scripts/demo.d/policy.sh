# SPDX-License-Identifier: Apache-2.0
# scripts/demo.d/policy.sh: relaykit-policyd's part of scripts/demo (sourced by it, after its
# helpers and before "main"). Adds the policy wiring to the demo relay's main.cf, starts
# relaykit-policyd with the demo config, sends one nagios@ alert over SMTP (rerouted by FILTER to
# the alerts sink) and a burst of 25 messages from one sender (the per-sender limit of
# conf/relaykit.yaml lets 20 per minute through; the rest get 450 and are not delivered), then
# shows the sender's counter with `relaykit limits show` (through policy.admin_socket).
# Uses from scripts/demo: BUILD_DIR, CONFIG, DEMO_DIR, DEMO_PIDS, DEMO_MAIN_CF, SMTPD_PORT,
# wait_port, relaykit_log, demo_swaks, demo_record.

POLICYD_PORT=10043
POLICYD_SERVICE="check_policy_service { inet:127.0.0.1:$POLICYD_PORT, timeout=10s, default_action=DUNNO }"
DEMO_MAIN_CF+=(
  "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination"
  "smtpd_recipient_restrictions = $POLICYD_SERVICE"
  "smtpd_end_of_data_restrictions = $POLICYD_SERVICE"
)
DEMO_BURST=25

demo_start_policyd() {
  "$BUILD_DIR/policyd/relaykit-policyd" -c "$CONFIG" -f >"$DEMO_DIR/policyd.log" 2>&1 &
  DEMO_PIDS+=($!)
  if ! wait_port "$POLICYD_PORT" relaykit-policyd "$!"; then
    cat "$DEMO_DIR/policyd.log" >&2
    exit 1
  fi
  relaykit_log "relaykit-policyd on inet:127.0.0.1:$POLICYD_PORT with $CONFIG"
}

demo_policy_mail() {
  demo_swaks nagios@relay.corp.local oncall@example.net "nagios@relay.corp.local" \
    "nagios alert over SMTP: policy FILTER to the alerts relay"
  local i out accepted=0 refused=0 reply=""
  for (( i = 1; i <= DEMO_BURST; i++ )); do
    if out=$(swaks --server "127.0.0.1:$SMTPD_PORT" --from batch@relay.corp.local \
        --to "customer$i@example.org" --header "Subject: burst $i" --body "burst" 2>&1); then
      demo_record smtp batch@relay.corp.local "customer$i@example.org" batch@relay.corp.local \
        "burst $i"
      accepted=$(( accepted + 1 ))
    else
      refused=$(( refused + 1 ))
      reply=$(grep -m1 -E '<\*\* +4[0-9][0-9]' <<<"$out" || true)
    fi
  done
  relaykit_log "burst of $DEMO_BURST from batch@relay.corp.local: $accepted accepted," \
    "$refused refused (not delivered): ${reply#*<\*\* }"
  relaykit_log "relaykit limits show sender=batch@relay.corp.local (memory store, admin socket):"
  "$BUILD_DIR/cli/relaykit" limits show -c "$CONFIG" sender=batch@relay.corp.local 2>&1 |
    sed 's/^/    /' || true
}
