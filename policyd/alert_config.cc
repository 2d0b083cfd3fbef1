// SPDX-License-Identifier: Apache-2.0
// alert_config.cc: the `policy: alerts:` section; see alert_config.h.
#include "policyd/alert_config.h"

#include <unistd.h>

#include <cctype>

#include "policyd/policy_config.h"

namespace relaykit::policy {

namespace {
const std::vector<std::string> kAlertKeys = {"syslog", "mail_to", "mail_from", "sendmail",
                                             "queue",  "timeout", "interval",  "relay_name"};
}  // namespace

void parseAlertSettings(const YamlReader& r, const YAML::Node& node, AlertSettings* out) {
  if (!node.IsDefined()) {
    return;
  }
  AlertSettings& a = *out;
  a.enabled = true;
  if (node.IsNull()) {
    return;  // `alerts:` alone: the syslog line only
  }
  if (!r.checkMap(node, "policy alerts", kAlertKeys) && !node.IsMap()) {
    return;
  }
  r.getBool(node, "syslog", &a.syslog);
  if (const YAML::Node to = YamlReader::child(node, "mail_to"); to.IsDefined()) {
    if (auto list = r.asStringList(to)) {
      if (list->size() > kMaxAlertRecipients) {
        r.error(to,
                "alerts: mail_to: at most " + std::to_string(kMaxAlertRecipients) + " addresses");
      }
      for (const std::string& address : *list) {
        if (!isPlainAddress(address)) {
          r.error(to, "alerts: mail_to: \"" + sanitizeAlertValue(address) +
                          "\" is not a plain address (local@domain or local, at most " +
                          std::to_string(kMaxAlertAddressBytes) +
                          " bytes, no spaces, quotes, "
                          "angle brackets or commas)");
        }
      }
      a.mailTo = *list;
    }
  }
  if (const YAML::Node from = YamlReader::child(node, "mail_from"); from.IsDefined()) {
    const std::string address = r.asString(from).value_or("");
    if (!isPlainAddress(address)) {
      r.error(from, "alerts: mail_from: expected a plain address (local@domain)");
    } else {
      a.mailFrom = address;
    }
  }
  if (const YAML::Node sendmail = YamlReader::child(node, "sendmail"); sendmail.IsDefined()) {
    if (auto argv = r.asStringList(sendmail)) {
      bool ok = !argv->empty() && argv->size() <= kMaxSendmailArgs && !argv->front().empty() &&
                argv->front()[0] == '/';
      for (const std::string& arg : *argv) {
        ok = ok && arg.find('\0') == std::string::npos;
      }
      if (!ok) {
        r.error(sendmail,
                "alerts: sendmail: expected an absolute path, or a list of an "
                "absolute path and at most " +
                    std::to_string(kMaxSendmailArgs - 1) + " arguments");
      } else {
        a.sendmail = *argv;
      }
    }
  }
  if (!a.mailTo.empty() && access(a.sendmail.front().c_str(), X_OK) != 0) {
    const YAML::Node where = YamlReader::child(node, "sendmail");
    r.warning(where.IsDefined() ? where : YamlReader::child(node, "mail_to"),
              "alerts: sendmail " + a.sendmail.front() +
                  " is not executable here: alert mails will fail (counted, logged)");
  }
  std::int64_t queue = static_cast<std::int64_t>(a.queue);
  if (r.getInt(node, "queue", &queue, 1, static_cast<std::int64_t>(kMaxAlertQueue))) {
    a.queue = static_cast<std::size_t>(queue);
  }
  if (r.getDuration(node, "timeout", &a.timeout) && a.timeout > kMaxSendmailTimeout) {
    r.error(YamlReader::child(node, "timeout"),
            "alerts: timeout: at most " + std::to_string(kMaxSendmailTimeout.count() / 1000) + "s");
  }
  if (const YAML::Node interval = YamlReader::child(node, "interval"); interval.IsDefined()) {
    if (auto d = r.asDuration(interval)) {
      if (d->count() > kMaxWindowPeriodMs) {
        r.error(interval, "alerts: interval: at most 366d");
      } else {
        a.intervalUs = static_cast<std::int64_t>(d->count()) * 1000;
      }
    }
  }
  if (const YAML::Node name = YamlReader::child(node, "relay_name"); name.IsDefined()) {
    const std::string relay = r.asString(name).value_or("");
    bool ok = !relay.empty() && relay.size() <= kMaxAlertAddressBytes;
    for (char c : relay) {
      ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_');
    }
    if (!ok) {
      r.error(name,
              "alerts: relay_name: expected a host name (letters, digits, '.', '-', "
              "'_', at most " +
                  std::to_string(kMaxAlertAddressBytes) + " bytes)");
    } else {
      a.relayName = relay;
    }
  }
}

}  // namespace relaykit::policy
