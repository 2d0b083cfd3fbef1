// SPDX-License-Identifier: Apache-2.0
// rate_key_fuzz.cc: rate-limit keys (policyd/rate_key.h) and the limits a request is charged
// for (policyd/policy_engine.h planRequest) over a fixed config of every key kind.
// Input: key spec NUL policy request bytes (name=value lines). Properties: a key part that parsed
// gives a value for any request; a principal is present only when every part has a value; store
// keys never contain the principal in clear and have the documented shape.
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "policyd/policy_codec.h"
#include "policyd/policy_config.h"
#include "policyd/policy_engine.h"
#include "policyd/rate_key.h"
#include "tests/fuzz/fuzz_support.h"

using namespace relaykit::policy;
using relaykit::fuzz::printable;

namespace {

const char kConfig[] = R"(policy:
  exempt:
    clients: [192.0.2.0/24]
    senders: ["@backup.corp.com"]
  limits:
    - {name: per-client, key: [client_address], count: messages, max: 100, per: 1m}
    - {name: per-net, key: [client_address/24/48], count: recipients, max: 10, per: 1h}
    - {name: per-sender, key: [sender], count: bytes, max: 1000, per: 1h, warn_only: true}
    - {name: composite, key: [sasl_username, sender_domain, recipient_domain], count: messages,
       max: 5, per: 1d}
  relay:
    - sender: "/^(zabbix|alertmanager)@/"
      filter: "relay:[alerts-gw.corp.local]:25"
)";

std::shared_ptr<const PolicyConfig> policyConfig() {
  static std::shared_ptr<const PolicyConfig> c = [] {
    relaykit::Diagnostics diags;
    auto base = relaykit::loadConfigText(kConfig, "rate_key_fuzz.yaml", &diags);
    FUZZ_CHECK(base != nullptr, diags.formatAll());
    auto policy = parsePolicyConfig(*base, &diags);
    FUZZ_CHECK(policy != nullptr, diags.formatAll());
    return policy;
  }();
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::string_view specs = in.text();
  std::string requestBytes(in.rest());
  requestBytes += "\n\n";
  PolicyCodec codec;
  std::vector<PolicyRequest> requests;
  (void)codec.feed(requestBytes, &requests);
  PolicyRequest empty;
  empty.add("request", "smtpd_access_policy");
  if (requests.empty()) {
    requests.push_back(empty);
  }

  std::vector<KeyPart> parts;
  size_t pos = 0;
  while (pos <= specs.size() && parts.size() < 8) {
    size_t comma = specs.find(',', pos);
    std::string_view one = specs.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    auto part = parseKeyPart(one);
    if (part) {
      parts.push_back(*part);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    pos = comma + 1;
  }
  Plan reused;
  for (const PolicyRequest& request : requests) {
    bool allPresent = !parts.empty();
    for (const KeyPart& part : parts) {
      allPresent = allPresent && !keyPartValue(part, request).empty();
    }
    auto principal = principalOf(parts, request);
    if (!parts.empty()) {
      FUZZ_CHECK(principal.has_value() == allPresent, "principal presence");
    }
    if (principal) {
      std::string key = storeKeyFor(*principal, "limit");
      FUZZ_CHECK(key.size() == 3 + 1 + 32 + 1 + 1 + 5 && key.compare(0, 4, "rl:{") == 0,
                 "store key " + printable(key));
    }
    (void)maskAddress(request.get("client_address"), 24, 48);
    (void)domainOf(request.get("sender"));
    std::vector<std::string> accepted = {"a@corp.com", std::string(request.get("recipient"))};
    Plan plan = planRequest(*policyConfig(), request, &accepted);
    FUZZ_CHECK(plan.rules.size() == plan.store.charges.size(), "plan sizes");
    // Planned into the Plan of the previous request (as the daemon does): the same charges.
    planRequest(*policyConfig(), request, &accepted, &reused);
    FUZZ_CHECK(reused.store.charges.size() == plan.store.charges.size(), "reused plan size");
    for (std::size_t i = 0; i < plan.store.charges.size(); ++i) {
      FUZZ_CHECK(reused.store.charges[i].key == plan.store.charges[i].key &&
                     reused.store.charges[i].cost == plan.store.charges[i].cost,
                 "reused plan charge");
    }
    (void)expandReply("$client_address ${sender} $limit $retry_after $$ $", request, "per-x", 30);
  }
  return 0;
}
