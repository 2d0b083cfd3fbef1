// SPDX-License-Identifier: Apache-2.0
// rewrite_fixture.h: what the rewrite and milter-configuration tests share: tables (generic,
// canonical) under a `milter:` section of the test's own, a default envelope, headers as text.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "milters/message_rewriter.h"
#include "milters/milter_config.h"

namespace relaykit::milter {

// Tables first: the YAML line numbers tests expect in diagnostics (test.yaml:27:15) count them.
inline constexpr char kTables[] = R"(
postfix:
  local_domains: [relay.corp.local, localhost]
  recipient_delimiter: "+"
tables:
  generic:
    search: address
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          "@localhost": noreply@corp.com
          "@olddomain.example": "@newdomain.example"
      - regexp: |
          /^(.*)@srv[0-9]+\.corp\.local$/   ${1}@corp.com
  canonical:
    search: address
    propagate_unmatched_extensions: true
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          a@x.example: b@x.example
          b@x.example: c@x.example
)";

inline std::shared_ptr<const MilterConfig> load(const std::string& milter,
                                                std::string* errors = nullptr) {
  Diagnostics diags;
  std::string text = std::string(kTables) + "milter:\n" + milter;
  auto config = loadConfigText(text, "test.yaml", &diags);
  std::shared_ptr<const MilterConfig> mc = config ? parseMilterConfig(config, &diags) : nullptr;
  if (errors) {
    *errors = diags.formatAll();
  } else {
    EXPECT_TRUE(mc) << diags.formatAll();
  }
  return mc;
}

inline std::string render(const std::vector<HeaderField>& hs) {
  std::string out;
  for (const auto& h : hs) {
    out += h.name + ":" + h.value + "\n";
  }
  return out;
}

inline Envelope env(std::string sender = "user@corp.com") {
  Envelope e;
  e.sender = std::move(sender);
  e.recipients = {"a@partner.com"};
  e.clientAddress = *IpAddress::parse("10.1.2.3");
  e.queueId = "4Bx2Yz";
  return e;
}

}  // namespace relaykit::milter
