// SPDX-License-Identifier: Apache-2.0
// health_config.cc: parses the `health:` section; see health_config.h.
#include "cli/health_config.h"

#include "common/yaml_util.h"

namespace relaykit {

namespace {

void readCount(const YamlReader& r, const YAML::Node& node, const char* what, Thresholds* out) {
  if (!node.IsDefined()) {
    return;
  }
  if (!r.checkMap(node, what, {"warning", "critical"}) && !node.IsMap()) {
    return;
  }
  r.getInt(node, "warning", &out->warning, 0);
  r.getInt(node, "critical", &out->critical, 0);
}

void readAge(const YamlReader& r, const YAML::Node& node, const char* what, Thresholds* out) {
  if (!node.IsDefined()) {
    return;
  }
  if (!r.checkMap(node, what, {"warning", "critical"}) && !node.IsMap()) {
    return;
  }
  for (auto [key, target] : {std::pair<const char*, std::int64_t*>{"warning", &out->warning},
                             std::pair<const char*, std::int64_t*>{"critical", &out->critical}}) {
    std::chrono::milliseconds v{0};
    if (r.getDuration(node, key, &v, /*allowZero=*/true) &&
        YamlReader::child(node, key).IsDefined()) {
      *target = std::chrono::duration_cast<std::chrono::seconds>(v).count();
    }
  }
}

}  // namespace

std::optional<HealthConfig> parseHealthConfig(const Config& config, Diagnostics* diags) {
  HealthConfig out;
  const YAML::Node& node = config.healthNode;
  if (!node.IsDefined() || node.IsNull()) {
    return out;
  }
  Diagnostics local;
  YamlReader r(config.file, &local, config.text);
  if (r.checkMap(node, "health", {"timeout", "queue", "smarthost"}) || node.IsMap()) {
    if (r.getDuration(node, "timeout", &out.timeout) && out.timeout > kMaxHealthTimeout) {
      r.error(YamlReader::child(node, "timeout"), "health timeout is at most 60s");
    }
    YAML::Node queue = YamlReader::child(node, "queue");
    if (queue.IsDefined() &&
        (r.checkMap(queue, "health.queue", {"check", "size", "deferred", "oldest"}) ||
         queue.IsMap())) {
      r.getBool(queue, "check", &out.checkQueue);
      readCount(r, YamlReader::child(queue, "size"), "health.queue.size", &out.queueSize);
      readCount(r, YamlReader::child(queue, "deferred"), "health.queue.deferred", &out.deferred);
      readAge(r, YamlReader::child(queue, "oldest"), "health.queue.oldest", &out.oldestSeconds);
    }
    YAML::Node smarthost = YamlReader::child(node, "smarthost");
    if (smarthost.IsDefined() &&
        (r.checkMap(smarthost, "health.smarthost", {"check", "address", "starttls", "helo"}) ||
         smarthost.IsMap())) {
      r.getBool(smarthost, "check", &out.checkSmarthost);
      r.getString(smarthost, "address", &out.smarthost);
      r.getString(smarthost, "helo", &out.helo);
      std::string mode;
      if (r.getString(smarthost, "starttls", &mode) && !mode.empty()) {
        if (mode == "auto") {
          out.startTls = HealthConfig::StartTls::kAuto;
        } else if (mode == "required") {
          out.startTls = HealthConfig::StartTls::kRequired;
        } else if (mode == "off") {
          out.startTls = HealthConfig::StartTls::kOff;
        } else {
          r.error(YamlReader::child(smarthost, "starttls"),
                  "starttls must be auto, required or off");
        }
      }
    }
  }
  diags->append(local);
  if (local.hasErrors()) {
    return std::nullopt;
  }
  return out;
}

void validateHealthSection(const Config& config, Diagnostics* diags) {
  (void)parseHealthConfig(config, diags);
}

}  // namespace relaykit
