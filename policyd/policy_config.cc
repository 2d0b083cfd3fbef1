// SPDX-License-Identifier: Apache-2.0
// policy_config.cc: `policy:` YAML -> PolicyConfig, every problem reported as FILE:LINE:COL.
#include "policyd/policy_config.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>

#include "common/address_search.h"
#include "common/bounded_file.h"
#include "common/casefold.h"
#include "common/yaml_util.h"
#include "policyd/alert_config.h"

namespace relaykit::policy {

namespace {

const std::vector<std::string> kLimitKeys = {"name",       "key",
                                             "count",      "max",
                                             "per",        "windows",
                                             "reply",      "warn_only",
                                             "exempt",     "recipient_delimiter",
                                             "allowances", "allowances_file",
                                             "alert"};
const std::vector<std::string> kAllowanceKeys = {"match", "max", "per", "windows"};
const std::vector<std::string> kRelayKeys = {"sender", "filter", "client", "sasl_user",
                                             "recipient_domain"};
const std::vector<std::string> kExemptKeys = {"clients", "senders", "sasl_users"};

std::vector<std::string> lowered(std::vector<std::string> v) {
  for (std::string& s : v) {
    s = toLower(s);
  }
  return v;
}

class Parser {
 public:
  Parser(const YamlReader& r, PolicyConfig* config) : r_(r), config_(config) {}

  // A sender address or @domain as written in the YAML, folded as senderSearchKeys() folds.
  std::string senderKey(const std::string& s) const {
    return foldTableKey(s, config_->postfix->smtputf8Enable).value_or(toLower(s));
  }

  Exemptions exemptions(const YAML::Node& node, const std::string& what) {
    Exemptions ex;
    if (!node.IsDefined() || node.IsNull()) {
      return ex;
    }
    r_.checkMap(node, what, kExemptKeys);
    r_.getNetworks(node, "clients", &ex.clients);
    r_.getStringList(node, "senders", &ex.senders);
    r_.getStringList(node, "sasl_users", &ex.saslUsers);
    for (std::string& s : ex.senders) {
      s = senderKey(s);
    }
    ex.saslUsers = lowered(ex.saslUsers);
    config_->matchesSenderKeys = config_->matchesSenderKeys || !ex.senders.empty();
    return ex;
  }

  void window(const YAML::Node& map, const std::string& what, std::vector<RateWindow>* out) {
    const YAML::Node maxNode = YamlReader::child(map, "max");
    const YAML::Node perNode = YamlReader::child(map, "per");
    if (!maxNode.IsDefined() || !perNode.IsDefined()) {
      r_.error(map, what + ": needs both max and per");
      return;
    }
    auto max = r_.asInt(maxNode, 1, kMaxWindowMax);
    auto per = r_.asDuration(perNode);
    if (!max || !per) {
      return;
    }
    if (per->count() > kMaxWindowPeriodMs) {
      r_.error(perNode, what + ": per: at most 366d");
      return;
    }
    RateWindow w{*max, static_cast<std::int64_t>(per->count()) * 1000};
    for (const RateWindow& other : *out) {
      if (other.periodUs == w.periodUs) {
        r_.error(perNode, what + ": two windows with the same period");
        return;
      }
    }
    out->push_back(w);
  }

  // One limit's windows (max and per, or windows), into `out`; false when none were given.
  bool windowsOf(const YAML::Node& node, const std::string& what, std::vector<RateWindow>* out) {
    const bool single =
        YamlReader::child(node, "max").IsDefined() || YamlReader::child(node, "per").IsDefined();
    if (single) {
      window(node, what, out);
    }
    const YAML::Node windows = YamlReader::child(node, "windows");
    if (windows.IsDefined()) {
      if (!windows.IsSequence() || windows.size() == 0) {
        r_.error(windows, what + ": windows: expected a list of {max, per}");
      } else {
        for (const YAML::Node& w : windows) {
          if (r_.checkMap(w, what + " window", {"max", "per"})) {
            window(w, what + " window", out);
          }
        }
      }
    }
    return single || windows.IsDefined();
  }

  // allowances: [{match: {<key part as written in key:>: value, ...}, max, per | windows}]: the
  // principal the match names gets these windows instead of the limit's (the default).
  void allowances(const YAML::Node& node, const std::string& what, const LimitRule& rule,
                  AllowanceTable* table) {
    if (!node.IsDefined()) {
      return;
    }
    if (!node.IsSequence()) {
      r_.error(node, what + ": allowances: expected a list of {match, max, per}");
      return;
    }
    if (node.size() > kMaxAllowances) {
      r_.error(node, what + ": allowances: at most " + std::to_string(kMaxAllowances) + " entries");
      return;
    }
    const std::uint32_t source = table->addSource(AllowanceTable::SourceKind::kYaml, r_.file());
    for (const YAML::Node& entry : node) {
      const std::string ewhat = what + " allowance";
      if (!r_.checkMap(entry, ewhat, kAllowanceKeys)) {
        continue;
      }
      const YAML::Node match = YamlReader::child(entry, "match");
      if (!match.IsDefined() || !match.IsMap()) {
        r_.error(entry, ewhat + ": needs match: {<key part>: value, ...}");
        continue;
      }
      std::vector<std::string> values(rule.key.size());
      bool ok = true;
      for (const auto& kv : match) {
        const std::string partText = kv.first.as<std::string>("");
        const auto part = std::find_if(rule.key.begin(), rule.key.end(),
                                       [&](const KeyPart& p) { return p.text == partText; });
        const std::optional<std::string> value = r_.asString(kv.second);
        if (part == rule.key.end()) {
          r_.error(kv.first, ewhat + ": match: \"" + partText + "\" is not a part of the key");
          ok = false;
          continue;
        }
        if (!value || value->empty()) {
          r_.error(kv.second, ewhat + ": match: " + partText + ": expected a value");
          ok = false;
          continue;
        }
        values[static_cast<std::size_t>(part - rule.key.begin())] = *value;
      }
      if (!ok) {
        continue;
      }
      const std::optional<std::string> principal = principalFromValues(
          rule.key, std::vector<std::string_view>(values.begin(), values.end()));
      if (!principal) {
        r_.error(match, ewhat + ": match must give a valid value for every key part");
        continue;
      }
      std::vector<RateWindow> windows;
      if (!windowsOf(entry, ewhat, &windows)) {
        r_.error(entry, ewhat + ": needs max and per, or windows");
        continue;
      }
      const SourceLocation at = r_.where(match);
      std::string problem;
      if (!table->add(*principal, std::string_view(), std::move(windows), source, at.line,
                      at.column, &problem)) {
        r_.error(match, ewhat + ": " + problem);
      }
    }
  }

  void limit(const YAML::Node& node) {
    if (!r_.checkMap(node, "a limit", kLimitKeys) && !node.IsMap()) {
      return;
    }
    LimitRule rule;
    const YAML::Node nameNode = YamlReader::child(node, "name");
    if (!nameNode.IsDefined()) {
      r_.error(node, "limit without a name");
      return;
    }
    rule.name = r_.asString(nameNode).value_or("");
    const std::string what = "limit \"" + rule.name + "\"";
    bool nameOk = !rule.name.empty();
    for (char c : rule.name) {
      nameOk = nameOk &&
               (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.');
    }
    if (!nameOk) {
      r_.error(nameNode, "limit names are made of letters, digits, '-', '_' and '.'");
    }
    for (const LimitRule& other : config_->limits) {
      if (other.name == rule.name) {
        r_.error(nameNode, "duplicate limit name \"" + rule.name + "\"");
      }
    }
    const YAML::Node keyNode = YamlReader::child(node, "key");
    if (!keyNode.IsDefined()) {
      r_.error(node, what + ": needs a key");
    } else if (auto parts = r_.asStringList(keyNode)) {
      for (const std::string& text : *parts) {
        StatusOr<KeyPart> part = parseKeyPart(text);
        if (part) {
          rule.key.push_back(*part);
        } else {
          r_.error(keyNode, what + ": key: " + part.status().message());
        }
      }
      if (parts->empty()) {
        r_.error(keyNode, what + ": empty key");
      }
    }
    if (const YAML::Node count = YamlReader::child(node, "count"); count.IsDefined()) {
      const std::string unit = r_.asString(count).value_or("");
      if (unit == "messages") {
        rule.count = CountUnit::kMessages;
      } else if (unit == "recipients") {
        rule.count = CountUnit::kRecipients;
      } else if (unit == "bytes") {
        rule.count = CountUnit::kBytes;
      } else {
        r_.error(count, what + ": count: expected messages, recipients or bytes");
      }
    }
    if (!windowsOf(node, what, &rule.windows)) {
      r_.error(node, what + ": needs max and per, or windows");
    }
    if (const YAML::Node reply = YamlReader::child(node, "reply"); reply.IsDefined()) {
      rule.reply = r_.asString(reply).value_or(rule.reply);
      const std::string& t = rule.reply;
      if (t.size() < 4 || (t[0] != '4' && t[0] != '5') ||
          !std::isdigit(static_cast<unsigned char>(t[1])) ||
          !std::isdigit(static_cast<unsigned char>(t[2])) || t[3] != ' ') {
        r_.error(reply, what + ": reply must start with a 4NN or 5NN code and a space");
      }
    }
    rule.recipientDelimiter = config_->postfix->recipientDelimiter.empty()
                                  ? std::string(kDefaultLimitDelimiter)
                                  : config_->postfix->recipientDelimiter;
    if (const YAML::Node d = YamlReader::child(node, "recipient_delimiter"); d.IsDefined()) {
      const std::optional<std::string> set = r_.asString(d);
      if (set && (set->size() > kMaxDelimiterSet ||
                  set->find_first_of(std::string("@\0", 2)) != std::string::npos)) {
        r_.error(d, what + ": recipient_delimiter: at most " + std::to_string(kMaxDelimiterSet) +
                        " characters, not '@'");
      } else if (set) {
        rule.recipientDelimiter = *set;
      }
    }
    for (KeyPart& part : rule.key) {
      if (part.kind == KeyPart::Kind::kAttribute && isAddressAttribute(part.attribute)) {
        part.extensionDelimiters = rule.recipientDelimiter;
      }
    }
    auto table = std::make_shared<AllowanceTable>();
    const YAML::Node inlineAllowances = YamlReader::child(node, "allowances");
    allowances(inlineAllowances, what, rule, table.get());
    if (const YAML::Node file = YamlReader::child(node, "allowances_file"); file.IsDefined()) {
      if (const std::optional<std::string> spec = r_.asString(file)) {
        loadAllowanceFile(*spec, r_.where(file), rule.key, what, table.get(), r_.diags());
      }
    }
    if (inlineAllowances.IsDefined() || !table->files().empty()) {
      rule.allowances = std::move(table);
    }
    r_.getBool(node, "warn_only", &rule.warnOnly);
    r_.getBool(node, "alert", &rule.alert);
    rule.exempt = exemptions(YamlReader::child(node, "exempt"), what + " exempt");
    config_->tracksRecipients = config_->tracksRecipients || rule.usesRecipient();
    config_->limits.push_back(std::move(rule));
  }

  void relay(const YAML::Node& node) {
    if (!r_.checkMap(node, "a relay rule", kRelayKeys) && !node.IsMap()) {
      return;
    }
    RelayRule rule;
    const YAML::Node senderNode = YamlReader::child(node, "sender");
    const std::string sender = senderNode.IsDefined() ? r_.asString(senderNode).value_or("") : "";
    if (sender.empty()) {
      r_.error(senderNode.IsDefined() ? senderNode : node,
               "relay rule needs a sender: an address, @domain or /regexp/");
      return;
    }
    if (sender.size() >= 2 && sender.front() == '/' && sender.back() == '/') {
      rule.senderKind = RelayRule::SenderKind::kRegexp;
      rule.sender = sender.substr(1, sender.size() - 2);
      RE2::Options options;
      options.set_case_sensitive(false);
      options.set_log_errors(false);
      auto re = std::make_shared<RE2>(rule.sender, options);
      if (!re->ok()) {
        r_.error(senderNode, "relay sender: bad regexp: " + re->error());
      }
      rule.regexp = re;
    } else {
      rule.sender = senderKey(sender);  // an address or @domain: one of the search keys
      config_->matchesSenderKeys = true;
    }
    const YAML::Node filter = YamlReader::child(node, "filter");
    rule.filter = filter.IsDefined() ? r_.asString(filter).value_or("") : "";
    const auto colon = rule.filter.find(':');
    if (colon == std::string::npos || colon == 0 ||
        rule.filter.find_first_of(" \t") != std::string::npos) {
      r_.error(filter.IsDefined() ? filter : node, "relay rule needs filter: transport:nexthop");
    }
    r_.getNetworks(node, "client", &rule.clients);
    r_.getStringList(node, "sasl_user", &rule.saslUsers);
    r_.getStringList(node, "recipient_domain", &rule.recipientDomains);
    rule.saslUsers = lowered(rule.saslUsers);
    rule.recipientDomains = lowered(rule.recipientDomains);
    config_->tracksRecipients = config_->tracksRecipients || !rule.recipientDomains.empty();
    config_->relay.push_back(std::move(rule));
  }

  void policy(const YAML::Node& node) {
    if (!node.IsDefined() || node.IsNull()) {
      return;
    }
    if (!r_.checkMap(node, "policy",
                     allowedKeysWithDaemonKeys({"store", "on_store_error", "exempt", "limits",
                                                "relay", "admin_socket", "alerts"})) &&
        !node.IsMap()) {
      return;
    }
    if (const YAML::Node store = YamlReader::child(node, "store"); store.IsDefined()) {
      const std::string s = r_.asString(store).value_or("");
      if (s == "redis") {
        config_->useRedis = true;
      } else if (s != "memory") {
        r_.error(store, "store: expected memory or redis");
      }
    }
    if (const YAML::Node mode = YamlReader::child(node, "on_store_error"); mode.IsDefined()) {
      const std::string s = r_.asString(mode).value_or("");
      if (s == "closed") {
        config_->failOpen = false;
      } else if (s != "open") {
        r_.error(mode, "on_store_error: expected open or closed");
      }
    }
    if (const YAML::Node admin = YamlReader::child(node, "admin_socket"); admin.IsDefined()) {
      const std::string path = r_.asString(admin).value_or("");
      if (path.empty() || path[0] != '/' || path.size() > kMaxAdminSocketPath) {
        r_.error(admin, "admin_socket: expected an absolute path of at most " +
                            std::to_string(kMaxAdminSocketPath) + " bytes (a unix socket)");
      } else {
        config_->adminSocket = path;
      }
    }
    config_->exempt = exemptions(YamlReader::child(node, "exempt"), "policy exempt");
    parseAlertSettings(r_, YamlReader::child(node, "alerts"), &config_->alerts);
    if (const YAML::Node limits = YamlReader::child(node, "limits"); limits.IsDefined()) {
      if (!limits.IsSequence()) {
        r_.error(limits, "limits: expected a list");
      } else {
        for (const YAML::Node& l : limits) {
          limit(l);
        }
      }
    }
    if (const YAML::Node relays = YamlReader::child(node, "relay"); relays.IsDefined()) {
      if (!relays.IsSequence()) {
        r_.error(relays, "relay: expected a list");
      } else {
        for (const YAML::Node& rule : relays) {
          relay(rule);
        }
      }
    }
  }

 private:
  const YamlReader& r_;
  PolicyConfig* config_;
};

}  // namespace

const AllowanceTable::Entry* LimitRule::allowanceFor(const std::string& principal) const {
  return allowances == nullptr || allowances->empty() ? nullptr
                                                      : allowances->search(key, principal);
}

const std::vector<RateWindow>& LimitRule::windowsFor(const std::string& principal) const {
  const AllowanceTable::Entry* own = allowanceFor(principal);
  return own == nullptr ? windows : allowances->windows(*own);
}

std::vector<std::string> senderSearchKeys(std::string_view sender, const PostfixSettings& postfix) {
  std::vector<std::string> keys;
  const SearchPlan plan = planSearch(SearchMode::kSender, sender.empty() ? "<>" : sender, postfix);
  for (const SearchKey& form : plan.keys) {
    std::optional<std::string> folded = foldTableKey(form.key, postfix.smtputf8Enable);
    if (folded && std::find(keys.begin(), keys.end(), *folded) == keys.end()) {
      keys.push_back(std::move(*folded));
    }
  }
  return keys;
}

bool Exemptions::matches(const PolicyRequest& request,
                         const std::vector<std::string>& senderKeys) const {
  if (!clients.empty()) {
    if (auto address = IpAddress::parse(request.get("client_address"))) {
      for (const IpNetwork& net : clients) {
        if (net.contains(*address)) {
          return true;
        }
      }
    }
  }
  for (const std::string& s : senders) {
    if (std::find(senderKeys.begin(), senderKeys.end(), s) != senderKeys.end()) {
      return true;
    }
  }
  if (!saslUsers.empty()) {
    const std::string sasl = toLower(request.get("sasl_username"));
    for (const std::string& u : saslUsers) {
      if (!sasl.empty() && u == sasl) {
        return true;
      }
    }
  }
  return false;
}

const char* countUnitName(CountUnit unit) {
  switch (unit) {
    case CountUnit::kMessages:
      return "messages";
    case CountUnit::kRecipients:
      return "recipients";
    case CountUnit::kBytes:
      return "bytes";
  }
  return "?";
}

bool LimitRule::usesRecipient() const {
  for (const KeyPart& part : key) {
    if (part.kind == KeyPart::Kind::kRecipientDomain ||
        (part.kind == KeyPart::Kind::kAttribute && part.attribute == "recipient")) {
      return true;
    }
  }
  return false;
}

std::shared_ptr<const PolicyConfig> parsePolicyConfig(const Config& config, Diagnostics* diags) {
  auto out = std::make_shared<PolicyConfig>();
  out->file = config.file;
  if (config.postfix) {
    out->postfix = config.postfix;
  }
  Diagnostics local;
  YamlReader r(config.file, &local, config.text);
  try {
    Parser(r, out.get()).policy(config.policyNode);
  } catch (const YAML::Exception& e) {  // defensive: YamlReader does not throw
    local.error(SourceLocation{config.file, e.mark.line + 1, e.mark.column + 1}, e.msg);
  }
  RedisStoreSettings& rs = out->redis;
  const Endpoint& address = config.redis.address;
  if (address.kind == Endpoint::Kind::kUnix) {
    rs.unixPath = address.path;
  } else {
    rs.host = address.host.empty() ? "127.0.0.1" : address.host;
    rs.port = address.port;
  }
  for (const Endpoint& sentinel : config.redis.sentinels) {
    rs.sentinels.emplace_back(sentinel.host, sentinel.port);
  }
  rs.masterName = config.redis.masterName;
  rs.sentinelUsername = config.redis.sentinelUsername;
  rs.database = config.redis.database;
  rs.username = config.redis.username;
  rs.timeoutMs = static_cast<int>(config.redis.timeout.count());
  rs.keyPrefix = config.redis.keyPrefix;
  if (out->useRedis && !config.redis.passwordFile.empty()) {
    StatusOr<std::string> secret =
        readBoundedFile(config.redis.passwordFile, kMaxSecretFileBytes, "redis password_file");
    if (!secret) {
      local.error(config.redis.passwordFileWhere,
                  secret.status().message() + " (" + config.redis.passwordFile + ")");
    } else if (secret->empty()) {
      local.error(config.redis.passwordFileWhere,
                  "redis password_file \"" + config.redis.passwordFile + "\" is empty");
    } else {
      rs.password = secret->substr(0, secret->find('\n'));
    }
    while (!rs.password.empty() && std::isspace(static_cast<unsigned char>(rs.password.back()))) {
      rs.password.pop_back();
    }
  }
  if (out->useRedis && !config.redis.sentinelPasswordFile.empty()) {
    std::ifstream in(config.redis.sentinelPasswordFile);
    if (!in || !std::getline(in, rs.sentinelPassword)) {
      local.error(config.redis.where, "redis sentinel_password_file \"" +
                                          config.redis.sentinelPasswordFile + "\" cannot be read");
    }
    while (!rs.sentinelPassword.empty() &&
           std::isspace(static_cast<unsigned char>(rs.sentinelPassword.back()))) {
      rs.sentinelPassword.pop_back();
    }
  }
  if (out->useRedis && !config.redis.sentinelUsername.empty() &&
      config.redis.sentinelPasswordFile.empty()) {
    local.error(config.redis.where, "redis sentinel_username needs sentinel_password_file");
  }
  if (out->useRedis && !config.redis.username.empty() && config.redis.passwordFile.empty()) {
    local.error(config.redis.where, "redis username \"" + config.redis.username +
                                        "\" needs password_file (AUTH username password)");
  }
  if (out->useRedis && !config.redis.present) {
    local.warning(SourceLocation{config.file, 0, 0},
                  "policy store is redis but there is no redis: section; using 127.0.0.1:6379");
  }
  diags->append(local);
  if (local.hasErrors()) {
    return nullptr;
  }
  return out;
}

std::shared_ptr<const PolicyConfig> loadPolicyConfigFile(const std::string& path,
                                                         Diagnostics* diags) {
  std::shared_ptr<const Config> config = loadConfig(path, diags);
  if (config == nullptr) {
    return nullptr;
  }
  return parsePolicyConfig(*config, diags);
}

}  // namespace relaykit::policy

namespace relaykit {
void validatePolicySection(const Config& config, Diagnostics* diags) {
  (void)policy::parsePolicyConfig(config, diags);
}
}  // namespace relaykit
