# SPDX-License-Identifier: Apache-2.0
"""milter_fixtures.py: shared set-up for the relaykit-milter end-to-end tests.

A MilterTestCase starts an smtp-sink, relaykit-milter with a YAML config built from a `milter:`
section text, and a private Postfix whose smtpd_milters and non_smtpd_milters point at it. Tables
`generic` (address search, From rewriting) and `canonical` (sender rewriting) are the seeds' tables.
"""

import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TABLES = """\
postfix:
  local_domains: [relay.corp.local, localhost]
  recipient_delimiter: "+"
  smtputf8_enable: false   # as the harness's main.cf

tables:
  generic:
    search: address
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          cron@relay.corp.local: cron@corp.com
          nagios@relay.corp.local: alerts@corp.com
          "@localhost": noreply@corp.com
      - regexp: |
          /^(.*)@srv[0-9]+\\.corp\\.local$/   ${1}@corp.com
  canonical:
    search: address
    propagate_unmatched_extensions: true
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          cron@relay.corp.local: cron@corp.com
          nagios@relay.corp.local: alerts@corp.com
      - regexp: |
          /^(.*)@srv[0-9]+\\.corp\\.local$/   ${1}@corp.com
"""

SEED_MILTER = """\
on_error: tempfail
header_checks: |
  /^X-Originating-IP:/      IGNORE
header_rules:
  - match: '^Received:.*\\blocalhost\\b'
    action: remove
  - match: '^From:.*<.*@localhost>$'
    action: replace
    with: 'From: "Server Notifications" <noreply@corp.com>'
rewrite_from:
  table: generic
  headers: [From]
rewrite_sender:
  table: canonical
"""


def config_text(milter_body, listen):
    """The whole YAML file: the tables above plus `milter:` with listen and milter_body."""
    body = textwrap.indent(milter_body, "  ")
    return TABLES + "\nmilter:\n  listen: %s\n  socket_mode: \"0666\"\n%s" % (listen, body)


class MilterTestCase(harness.E2ETestCase):
    """Helpers: start_milter_stack(milter_body, unix=False) -> (sink, milter, postfix)."""

    def write_config(self, milter_body, listen, name="relaykit.yaml"):
        path = os.path.join(self.tmp, name)
        harness.write_file(path, config_text(milter_body, listen))
        return path

    def start_milter_stack(self, milter_body=SEED_MILTER, unix=False, extra_main_cf=None):
        sink = self.start_sink("sink")
        if unix:
            sock = os.path.join(self.subdir("milter"), "milter.sock")
            listen = "unix:" + sock
            postfix_spec = "unix:" + sock
            port = None
        else:
            port = harness.free_port()
            listen = "inet:127.0.0.1:%d" % port
            postfix_spec = listen
        self.config_path = self.write_config(milter_body, listen)
        milter = self.start_daemon("relaykit-milter", self.config_path, port=port)
        if unix:
            harness.wait_until(lambda: os.path.exists(sock), 10, "milter socket")
        params = {
            "smtpd_milters": postfix_spec,
            "non_smtpd_milters": postfix_spec,
            "milter_default_action": "tempfail",
            "milter_protocol": "6",
        }
        if extra_main_cf:
            params.update(extra_main_cf)
        pf = self.start_postfix(relay_port=sink.port, extra_main_cf=params)
        self.milter = milter
        return sink, milter, pf

    def send(self, pf, sender, rcpts, msg, **kw):
        refused = harness.send_smtp(pf.port, sender, rcpts, msg, **kw)
        self.assertEqual(refused, {})

    def one_message(self, sink, count=1):
        msgs = sink.messages(wait_for=count)
        self.assertEqual(len(msgs), count, msgs)
        return msgs[-1]
