#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""docs_test.py: the monitoring files and the manual stay true to the code.

- docs/prometheus/relaykit-alerts.yml parses as YAML with the rule-file shape, and passes
  `promtool check rules` when promtool is installed (Debian: package prometheus);
- docs/grafana/relaykit.json is valid JSON with the dashboard shape;
- every metric the alerts and the dashboard use is one the daemons register (its name appears in
  the sources), and every metric the daemons register is on the dashboard;
- README.md and docs/*.md describe the product: no references outside the repository
  (../shared), no session diary, and every relative link of README.md names a file that exists.
Run by ctest as `docs.monitoring` (no root, no network).
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

import yaml

SRC = os.environ.get("RELAYKIT_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
ALERTS = os.path.join(SRC, "docs", "prometheus", "relaykit-alerts.yml")
DASHBOARD = os.path.join(SRC, "docs", "grafana", "relaykit.json")
# Documents other parts of the project add; README links them before they land.
PENDING_LINKS = set()
METRIC = re.compile(r"\b((?:relaykit|process)_[a-z_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def registered_metrics():
    """Metric names registered in the C++ sources ("relaykit_..."/"process_..." literals)."""
    names = set()
    for path in glob.glob(os.path.join(SRC, "**", "*.cc"), recursive=True):
        if "/build" in path[len(SRC):] or "/tests/" in path[len(SRC):] or "/bench/" in path[len(SRC):]:
            continue
        with open(path, errors="replace") as f:
            names.update(re.findall(r'"((?:relaykit|process)_[a-z_]+)"', f.read()))
    return names


def base_name(name):
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def exprs_of_dashboard(dash):
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append(target["expr"])
    return out


class MonitoringFilesTest(unittest.TestCase):

    def test_alert_rules(self):
        with open(ALERTS) as f:
            rules = yaml.safe_load(f)
        self.assertIsInstance(rules["groups"], list)
        known = registered_metrics()
        for group in rules["groups"]:
            for rule in group["rules"]:
                self.assertIn("alert", rule)
                self.assertIn(rule["labels"]["severity"], ("critical", "warning", "info"))
                for name in METRIC.findall(rule["expr"]):
                    self.assertIn(base_name(name), known, "%s: %s" % (rule["alert"], name))
        promtool = shutil.which("promtool")
        if promtool:
            out = subprocess.run([promtool, "check", "rules", ALERTS], capture_output=True,
                                 text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        else:
            sys.stderr.write("promtool not installed: alert rules only YAML-checked\n")

    def test_dashboard(self):
        with open(DASHBOARD) as f:
            dash = json.load(f)
        self.assertEqual(dash["uid"], "relaykit")
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        used = set()
        for expr in exprs_of_dashboard(dash):
            used.update(base_name(n) for n in METRIC.findall(expr))
        known = registered_metrics()
        self.assertFalse(used - known, "dashboard metrics nobody registers")
        self.assertFalse(known - used, "registered metrics missing from the dashboard")


class ManualTest(unittest.TestCase):

    def docs(self):
        return [os.path.join(SRC, "README.md")] + glob.glob(os.path.join(SRC, "docs", "*.md"))

    def test_no_outside_references_or_diary(self):
        for path in self.docs():
            with open(path) as f:
                text = f.read()
            rel = os.path.relpath(path, SRC)
            self.assertFalse("../shared" in text, "%s refers to ../shared" % rel)
            self.assertFalse("HANDOFF" in text, "%s refers to HANDOFF" % rel)
            if rel in ("README.md", "docs/operations.md"):
                self.assertIsNone(re.search(r"\b[Ss]ession \d", text), rel)

    def test_readme_links_exist(self):
        with open(os.path.join(SRC, "README.md")) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            if target in PENDING_LINKS:
                continue
            self.assertTrue(os.path.exists(os.path.join(SRC, target)), target)


if __name__ == "__main__":
    unittest.main(verbosity=2)
