// SPDX-License-Identifier: Apache-2.0
// policy_engine.cc: stage semantics, limit planning and reply text; see policy_engine.h.
#include "policyd/policy_engine.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <functional>
#include <map>
#include <memory>
#include <optional>

namespace relaykit::policy {

namespace {

// storeKeyFor() hashes the principal with SHA-256, a tenth of a decision's instructions, and the
// same sender, client or recipient comes back message after message: the keys of recent
// principals are remembered in a direct-mapped table of kStoreKeyCacheSlots slots per thread
// (a slot is overwritten by the next principal hashing to it), for principals up to
// kMaxCachedPrincipalBytes (so the table stays under ~150 KiB).
constexpr std::size_t kStoreKeyCacheSlots = 256;
constexpr std::size_t kMaxCachedPrincipalBytes = 256;

std::string cachedStoreKey(const std::string& principal, const std::string& limitName) {
  if (principal.size() > kMaxCachedPrincipalBytes) {
    return storeKeyFor(principal, limitName);
  }
  struct Slot {
    std::string principal;
    std::string limitName;
    std::string key;
  };
  thread_local std::array<Slot, kStoreKeyCacheSlots> slots;
  const std::size_t hash =
      std::hash<std::string>{}(principal)*31 + std::hash<std::string>{}(limitName);
  Slot& slot = slots[hash % kStoreKeyCacheSlots];
  if (slot.key.empty() || slot.principal != principal || slot.limitName != limitName) {
    slot.key = storeKeyFor(principal, limitName);
    slot.principal = principal;
    slot.limitName = limitName;
  }
  return slot.key;
}

// The sender's search keys (senderSearchKeys(): a tenth of a decision's instructions) for the
// last sender this thread planned for: a message's RCPT and END-OF-MESSAGE requests, and the next
// messages of a busy sender, share them. Keyed by the `postfix:` settings too (a reload may
// change them); the reference stays valid until the next call.
const std::vector<std::string>& cachedSenderKeys(
    std::string_view sender, const std::shared_ptr<const PostfixSettings>& postfix) {
  struct Last {
    std::shared_ptr<const PostfixSettings> postfix;
    std::string sender;
    std::vector<std::string> keys;
  };
  thread_local Last last;
  if (last.postfix == nullptr || last.postfix != postfix || last.sender != sender) {
    last.keys = senderSearchKeys(sender, *postfix);
    last.sender.assign(sender);
    last.postfix = postfix;
  }
  return last.keys;
}

struct NumericAttribute {
  const char* name;
  std::int64_t max;
};
constexpr NumericAttribute kNumericAttributes[] = {
    {"size", kMaxSizeAttribute}, {"recipient_count", kMaxRecipientCountAttribute}};

// The value of a numeric attribute: nullopt unless empty (0) or at most kMaxNumberDigits digits
// with a value <= max.
std::optional<std::int64_t> parseNumber(std::string_view text, std::int64_t max) {
  if (text.empty()) {
    return 0;
  }
  if (text.size() > kMaxNumberDigits) {
    return std::nullopt;
  }
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() ||
      n > static_cast<std::uint64_t>(max)) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(n);
}

// A numeric attribute for the engine: checked by checkRequest(); an unchecked request (tests,
// callers that skip the check) gets 0 for garbage and the bound for an oversize number, so a
// huge value can only make a limit stricter, never overflow.
std::int64_t attributeNumber(const PolicyRequest& request, std::string_view name,
                             std::int64_t max) {
  const std::string_view text = request.get(name);
  if (auto n = parseNumber(text, max)) {
    return *n;
  }
  const bool digits = !text.empty() && std::all_of(text.begin(), text.end(),
                                                   [](char c) { return c >= '0' && c <= '9'; });
  return digits ? max : 0;
}

bool relayMatches(const RelayRule& rule, const PolicyRequest& request,
                  const std::vector<std::string>& senderKeys,
                  const std::vector<std::string>* acceptedRecipients) {
  switch (rule.senderKind) {
    case RelayRule::SenderKind::kKey:
      if (std::find(senderKeys.begin(), senderKeys.end(), rule.sender) == senderKeys.end()) {
        return false;
      }
      break;
    case RelayRule::SenderKind::kRegexp:
      if (!RE2::PartialMatch(toLower(request.get("sender")), *rule.regexp)) {
        return false;
      }
      break;
  }
  if (!rule.clients.empty()) {
    auto address = IpAddress::parse(request.get("client_address"));
    bool any = false;
    for (const IpNetwork& net : rule.clients) {
      any = any || (address.isOk() && net.contains(*address));
    }
    if (!any) {
      return false;
    }
  }
  if (!rule.saslUsers.empty()) {
    const std::string user = toLower(request.get("sasl_username"));
    bool any = false;
    for (const std::string& u : rule.saslUsers) {
      any = any || (!user.empty() && u == user);
    }
    if (!any) {
      return false;
    }
  }
  if (!rule.recipientDomains.empty()) {
    std::vector<std::string> domains;
    if (!request.get("recipient").empty()) {
      domains.push_back(domainOf(request.get("recipient")));
    } else if (acceptedRecipients != nullptr) {
      for (const std::string& r : *acceptedRecipients) {
        domains.push_back(domainOf(r));
      }
    }
    bool any = false;
    for (const std::string& d : domains) {
      for (const std::string& want : rule.recipientDomains) {
        any = any || d == want;
      }
    }
    if (!any) {
      return false;
    }
  }
  return true;
}

std::int64_t costOf(const LimitRule& rule, Stage stage, const PolicyRequest& request,
                    std::int64_t recipients) {
  switch (rule.count) {
    case CountUnit::kMessages:
      return 1;
    case CountUnit::kRecipients:
      return stage == Stage::kRcpt ? 1 : std::max<std::int64_t>(recipients, 1);
    case CountUnit::kBytes:
      return attributeNumber(request, "size", kMaxSizeAttribute);
  }
  return 0;
}

}  // namespace

Status checkRequest(const PolicyRequest& request) {
  for (const NumericAttribute& a : kNumericAttributes) {
    const std::string_view text = request.get(a.name);
    if (!parseNumber(text, a.max)) {
      std::string shown;  // the start of the value, printable ASCII only (it goes to the log)
      for (char c : text.substr(0, 32)) {
        shown += (c >= 0x20 && c < 0x7f) ? c : '?';
      }
      return Status::error(std::string("bad ") + a.name + " attribute \"" + shown +
                           (text.size() > 32 ? "...\"" : "\"") + ": expected a number up to " +
                           std::to_string(a.max));
    }
  }
  return Status::ok();
}

Stage stageOf(const PolicyRequest& request) {
  const std::string_view state = request.get("protocol_state");
  if (state == "RCPT") {
    return Stage::kRcpt;
  }
  if (state == "DATA") {
    return Stage::kData;
  }
  if (state == "END-OF-MESSAGE") {
    return Stage::kEndOfMessage;
  }
  return Stage::kOther;
}

Plan planRequest(const PolicyConfig& config, const PolicyRequest& request,
                 const std::vector<std::string>* acceptedRecipients) {
  Plan plan;
  plan.stage = stageOf(request);
  if (plan.stage == Stage::kOther) {
    return plan;
  }
  // Only configs that match senders by address or @domain pay for the search keys.
  static const std::vector<std::string> kNoKeys;
  const std::vector<std::string>& senderKeys =
      config.matchesSenderKeys ? cachedSenderKeys(request.get("sender"), config.postfix) : kNoKeys;
  if (plan.stage == Stage::kRcpt || plan.stage == Stage::kEndOfMessage) {
    for (const RelayRule& rule : config.relay) {
      if (relayMatches(rule, request, senderKeys, acceptedRecipients)) {
        plan.filter = "FILTER " + rule.filter;
        break;
      }
    }
  }
  if (plan.stage == Stage::kOther) {
    return plan;
  }
  if (config.exempt.matches(request, senderKeys)) {
    plan.exempt = true;
    return plan;
  }
  plan.store.commit = plan.stage == Stage::kEndOfMessage;
  const std::int64_t recipientCount =
      attributeNumber(request, "recipient_count", kMaxRecipientCountAttribute);
  const bool expandRecipients = plan.stage != Stage::kRcpt && request.get("recipient").empty() &&
                                acceptedRecipients != nullptr && !acceptedRecipients->empty();
  for (const LimitRule& rule : config.limits) {
    if (rule.exempt.matches(request, senderKeys)) {
      continue;
    }
    auto charge = [&](std::string principal, std::int64_t recipients) {
      StoreCharge c;
      c.cost = costOf(rule, plan.stage, request, recipients);
      if (c.cost <= 0) {
        return;
      }
      c.key = cachedStoreKey(principal, rule.name);
      c.windows = rule.windowsFor(principal);
      c.enforce = !rule.warnOnly;
      plan.store.charges.push_back(std::move(c));
      plan.rules.push_back(&rule);
      plan.principals.push_back(std::move(principal));
    };
    if (rule.usesRecipient() && expandRecipients) {
      std::map<std::string, std::int64_t> principals;  // principal -> its recipients
      for (const std::string& rcpt : *acceptedRecipients) {
        PolicyRequest one = request;
        one.add("recipient", rcpt);
        if (auto p = principalOf(rule.key, one)) {
          principals[*p]++;
        }
      }
      for (auto& [principal, recipients] : principals) {
        charge(principal, recipients);
      }
    } else if (auto p = principalOf(rule.key, request)) {
      charge(std::move(*p), recipientCount);
    }
  }
  return plan;
}

std::string expandReply(const std::string& text, const PolicyRequest& request,
                        const std::string& limitName, std::int64_t retryAfterSeconds) {
  constexpr std::size_t kMaxExpansion = 100;
  std::string out;
  bool sawRetry = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || i + 1 >= text.size()) {
      out += text[i];
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    std::size_t start = i + 1;
    std::size_t end = start;
    const bool braced = text[start] == '{';
    if (braced) {
      end = text.find('}', start);
      if (end == std::string::npos) {
        out += text.substr(i);
        break;
      }
      ++start;
    } else {
      while (end < text.size() &&
             (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
        ++end;
      }
      if (end == start) {
        out += '$';
        continue;
      }
    }
    const std::string name = text.substr(start, end - start);
    std::string value;
    if (name == "limit") {
      value = limitName;
    } else if (name == "retry_after") {
      value = std::to_string(retryAfterSeconds);
      sawRetry = true;
    } else {
      value = std::string(request.get(name).substr(0, kMaxExpansion));
    }
    for (char c : value) {
      const auto u = static_cast<unsigned char>(c);
      out += (u < 0x20 || u == 0x7f) ? ' ' : c;
    }
    i = braced ? end : end - 1;
  }
  if (!sawRetry) {
    out += " (retry in " + std::to_string(retryAfterSeconds) + " s)";
  }
  return out;
}

Verdict decide(const PolicyConfig& config, const PolicyRequest& request, const Plan& plan,
               const StoreResult& result) {
  (void)config;
  Verdict verdict;
  const char* stage = plan.stage == Stage::kRcpt   ? "RCPT"
                      : plan.stage == Stage::kData ? "DATA"
                                                   : "END-OF-MESSAGE";
  for (std::size_t i = 0; i < plan.rules.size() && i < result.outcomes.size(); ++i) {
    const ChargeOutcome& o = result.outcomes[i];
    if (o.allowed) {
      continue;
    }
    const LimitRule& rule = *plan.rules[i];
    const std::int64_t retrySeconds = (o.retryAfterUs + 999999) / 1000000;
    std::string line = std::string(rule.warnOnly ? "warn_only: would refuse" : "refused") + " at " +
                       stage + ": limit=" + rule.name + " count=" + countUnitName(rule.count) +
                       " cost=" + std::to_string(plan.store.charges[i].cost) +
                       " retry_after=" + std::to_string(retrySeconds) + "s sender=<" +
                       std::string(request.get("sender")) +
                       "> client=" + std::string(request.get("client_address")) +
                       " sasl_username=" + std::string(request.get("sasl_username")) +
                       " queue_id=" + std::string(request.get("queue_id"));
    verdict.logs.push_back(std::move(line));
    verdict.hits.push_back(LimitHit{rule.name, rule.warnOnly, i, retrySeconds});
    if (!rule.warnOnly && !verdict.refused) {
      verdict.refused = true;
      verdict.action = expandReply(rule.reply, request, rule.name, retrySeconds);
    }
  }
  if (!verdict.refused) {
    verdict.action = plan.filter.empty() ? "DUNNO" : plan.filter;
  }
  return verdict;
}

Verdict decideOnStoreError(const PolicyConfig& config, const Plan& plan, const Status& error) {
  Verdict verdict;
  verdict.storeError = true;
  if (config.failOpen) {
    verdict.action = plan.filter.empty() ? "DUNNO" : plan.filter;
    verdict.logs.push_back("store error (on_store_error=open, allowing): " + error.message());
  } else {
    verdict.action = kStoreErrorReply;
    verdict.refused = true;
    verdict.logs.push_back("store error (on_store_error=closed, deferring): " + error.message());
  }
  return verdict;
}

}  // namespace relaykit::policy
