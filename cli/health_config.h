// SPDX-License-Identifier: Apache-2.0
// health_config.h: the `health:` section of relaykit.yaml, read by `relaykit health` only (the
// daemons ignore it). Every threshold is "alert when the value is >= the threshold"; 0 turns a
// threshold off. Example (the defaults):
//   health:
//     timeout: 3s                 # each probe (HTTP /health, Redis, SMTP, postqueue)
//     queue:
//       check: true
//       size: {warning: 100, critical: 500}        # messages in the whole queue
//       deferred: {warning: 20, critical: 100}     # messages in the deferred queue
//       oldest: {warning: 1h, critical: 4h}        # age of the oldest message
//     smarthost:
//       check: true
//       address: "[smtp.office365.com]:587"        # default: main.cf's relayhost
//       starttls: auto            # required | auto (required when smtp_tls_security_level
//                                 # is encrypt, dane-only, fingerprint, verify or secure) | off
//       helo: relay.corp.local    # default: this host's name
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/config.h"
#include "common/diagnostics.h"

namespace relaykit {

inline constexpr std::chrono::milliseconds kDefaultHealthTimeout{3000};
inline constexpr std::chrono::milliseconds kMaxHealthTimeout{60000};

struct Thresholds {
  std::int64_t warning = 0;  // 0: off
  std::int64_t critical = 0;
};

struct HealthConfig {
  std::chrono::milliseconds timeout = kDefaultHealthTimeout;
  bool checkQueue = true;
  Thresholds queueSize{100, 500};
  Thresholds deferred{20, 100};
  Thresholds oldestSeconds{3600, 4 * 3600};
  bool checkSmarthost = true;
  std::string smarthost;  // relayhost syntax; empty: postconf -h relayhost
  enum class StartTls { kAuto, kRequired, kOff };
  StartTls startTls = StartTls::kAuto;
  std::string helo;  // empty: gethostname()
};

// Reads config.healthNode (absent: the defaults). nullopt after reporting errors into diags.
std::optional<HealthConfig> parseHealthConfig(const Config& config, Diagnostics* diags);
// The `relaykit check` hook (cli/section_validators.h).
void validateHealthSection(const Config& config, Diagnostics* diags);

}  // namespace relaykit
