// SPDX-License-Identifier: Apache-2.0
// milter_config.cc: parsing and validating the `milter:` section (see milter_config.h).
#include "milters/milter_config.h"

#include <re2/re2.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "common/address.h"
#include "common/bounded_file.h"
#include "common/regexp_table.h"
#include "common/yaml_util.h"

namespace relaykit::milter {
namespace {

std::shared_ptr<const re2::RE2> compileRegexp(const YamlReader& r, const YAML::Node& node,
                                              const std::string& what) {
  std::optional<std::string> text = r.asString(node);
  if (!text) {
    return nullptr;
  }
  re2::RE2::Options options;
  options.set_log_errors(false);
  options.set_case_sensitive(false);  // as Postfix's regexp tables: case-insensitive by default
  options.set_dot_nl(true);
  auto re = std::make_shared<re2::RE2>(*text, options);
  if (!re->ok()) {
    r.error(node, "invalid regular expression in " + what + ": " + re->error());
    return nullptr;
  }
  return re;
}

// Checks every header_checks result that can be checked before expansion (results with $n are
// checked after expansion, at run time), at the position of the result text.
void validateHeaderChecks(const RegexpTable* table, Diagnostics* diags) {
  if (table == nullptr) {
    return;  // the table itself was refused; its errors are reported
  }
  for (const RegexpTable::RuleInfo& rule : table->rules()) {
    if (rule.resultText.empty() || rule.resultText.find('$') != std::string::npos) {
      continue;
    }
    StatusOr<Action> action = parseAction(rule.resultText);
    if (!action) {
      diags->error(rule.resultWhere, "header_checks: " + action.status().message());
    }
  }
}

// header_checks_file: "regexp:/path", "pcre:/path" or a plain path (regexp).
std::shared_ptr<const RegexpTable> loadHeaderChecksFile(const YamlReader& r, const YAML::Node& node,
                                                        const std::string& spec,
                                                        Diagnostics* diags) {
  RegexpTable::Options options{RegexpDialect::kPosix, true};
  std::string path = spec;
  if (spec.rfind("pcre:", 0) == 0) {
    options.dialect = RegexpDialect::kPcre;
    path = spec.substr(5);
  } else if (spec.rfind("regexp:", 0) == 0) {
    path = spec.substr(7);
  }
  StatusOr<std::string> content =
      readBoundedFile(path, kMaxRuleFileBytes, "header_checks_file " + path);
  if (!content) {
    r.error(node, content.status().message());
    return nullptr;
  }
  const std::string& text = *content;
  SourceLocation origin{path, 1, 0};
  std::shared_ptr<const RegexpTable> table = RegexpTable::parse(text, origin, options, diags);
  validateHeaderChecks(table.get(), diags);
  return table;
}

bool parseCondition(const YamlReader& r, const YAML::Node& node, Condition* cond, int depth) {
  if (!r.checkMap(node, "when",
                  {"sender", "recipient", "client", "authenticated", "sasl_user", "helo",
                   "client_name", "not"})) {
    if (!node.IsMap()) {
      return false;
    }
  }
  bool ok = true;
  if (YAML::Node n = YamlReader::child(node, "sender")) {
    std::vector<YAML::Node> items;
    if (n.IsSequence()) {
      for (const auto& item : n) {
        items.push_back(item);
      }
    } else {
      items.push_back(n);
    }
    for (const YAML::Node& item : items) {
      auto re = compileRegexp(r, item, "when.sender");
      ok = ok && re;
      if (re) {
        cond->sender.push_back(re);
      }
    }
  }
  if (YAML::Node n = YamlReader::child(node, "recipient")) {
    if (n.IsMap()) {
      r.checkMap(n, "when.recipient", {"any", "all"});
      if (YAML::Node any = YamlReader::child(n, "any")) {
        cond->recipientAny = compileRegexp(r, any, "when.recipient.any");
        ok = ok && cond->recipientAny;
      }
      if (YAML::Node all = YamlReader::child(n, "all")) {
        cond->recipientAll = compileRegexp(r, all, "when.recipient.all");
        ok = ok && cond->recipientAll;
      }
    } else {
      cond->recipientAny = compileRegexp(r, n, "when.recipient");
      ok = ok && cond->recipientAny;
    }
  }
  ok = r.getNetworks(node, "client", &cond->client) && ok;
  bool authenticated = false;
  if (YamlReader::child(node, "authenticated")) {
    if (r.getBool(node, "authenticated", &authenticated)) {
      cond->authenticated = authenticated;
    } else {
      ok = false;
    }
  }
  const std::pair<const char*, std::shared_ptr<const re2::RE2>*> regexps[] = {
      {"sasl_user", &cond->saslUser}, {"helo", &cond->helo}, {"client_name", &cond->clientName}};
  for (const auto& [key, slot] : regexps) {
    if (YAML::Node n = YamlReader::child(node, key)) {
      *slot = compileRegexp(r, n, std::string("when.") + key);
      ok = ok && *slot;
    }
  }
  if (YAML::Node n = YamlReader::child(node, "not")) {
    if (depth > 4) {
      r.error(n, "`not:` nested too deeply");
      return false;
    }
    auto inner = std::make_shared<Condition>();
    ok = parseCondition(r, n, inner.get(), depth + 1) && ok;
    cond->negated = inner;
  }
  return ok;
}

bool parseActionName(const std::string& name, ActionKind* kind) {
  std::string n = toLowerAscii(name);
  if (n == "remove" || n == "ignore") {
    *kind = ActionKind::kIgnore;
  } else if (n == "replace") {
    *kind = ActionKind::kReplace;
  } else if (n == "prepend") {
    *kind = ActionKind::kPrepend;
  } else if (n == "warn") {
    *kind = ActionKind::kWarn;
  } else if (n == "info") {
    *kind = ActionKind::kInfo;
  } else if (n == "dunno" || n == "keep") {
    *kind = ActionKind::kDunno;
  } else {
    return false;
  }
  return true;
}

void parseRule(const YamlReader& r, const YAML::Node& node, std::vector<HeaderRule>* rules) {
  if (!r.checkMap(node, "header rule", {"match", "action", "with", "decode", "when"}) &&
      !node.IsMap()) {
    return;
  }
  HeaderRule rule;
  rule.where = r.where(node);
  bool ok = true;
  YAML::Node match = YamlReader::child(node, "match");
  if (!match) {
    r.error(node, "header rule needs `match:` (a regular expression on \"Name: value\")");
    ok = false;
  } else {
    rule.match = compileRegexp(r, match, "match");
    ok = ok && rule.match;
    if (rule.match) {
      rule.label = rule.match->pattern();
    }
  }
  std::string action;
  YAML::Node actionNode = YamlReader::child(node, "action");
  if (!actionNode) {
    r.error(node, "header rule needs `action:` (remove, replace, prepend, warn, info, dunno)");
    ok = false;
  } else if (r.getString(node, "action", &action) && !parseActionName(action, &rule.action)) {
    r.error(actionNode, "unknown action \"" + action +
                            "\" (allowed: remove, replace, prepend, warn, info, dunno)");
    ok = false;
  }
  ok = r.getString(node, "with", &rule.with) && ok;
  ok = r.getBool(node, "decode", &rule.decode) && ok;
  if ((rule.action == ActionKind::kReplace || rule.action == ActionKind::kPrepend) && ok) {
    YAML::Node with = YamlReader::child(node, "with");
    if (!with) {
      r.error(node, "action " + action + " needs `with:` (the header line \"Name: value\")");
      ok = false;
    } else if (rule.with.find('$') == std::string::npos) {
      StatusOr<Action> check = parseAction(std::string(actionName(rule.action)) + " " + rule.with);
      if (!check) {
        r.error(with, check.status().message());
        ok = false;
      }
    }
  }
  if (YAML::Node with = YamlReader::child(node, "with"); with && rule.match && ok) {
    StatusOr<WithTemplate> compiled =
        WithTemplate::compile(rule.with, rule.match->NumberOfCapturingGroups());
    if (!compiled) {
      r.error(with, compiled.status().message());
      ok = false;
    } else {
      rule.withTemplate = std::move(*compiled);
    }
  } else if (ok) {
    rule.withTemplate = *WithTemplate::compile(rule.with, 0);
  }
  if (YAML::Node when = YamlReader::child(node, "when")) {
    ok = parseCondition(r, when, &rule.when, 0) && ok;
  }
  if (ok) {
    rules->push_back(std::move(rule));
  }
}

std::shared_ptr<const Table> resolveTable(const YamlReader& r, const Config& config,
                                          const YAML::Node& section, const char* what) {
  if (!r.checkMap(section, what, {"table", "headers"}) && !section.IsMap()) {
    return nullptr;
  }
  YAML::Node tableNode = YamlReader::child(section, "table");
  std::string name;
  if (!tableNode) {
    r.error(section, std::string(what) + " needs `table:` (a table defined under tables:)");
    return nullptr;
  }
  if (!r.getString(section, "table", &name)) {
    return nullptr;
  }
  std::shared_ptr<const Table> table = config.sharedTable(name);
  if (!table) {
    std::string known;
    for (const auto& [n, t] : config.tables) {
      known += (known.empty() ? "" : ", ") + n;
    }
    r.error(tableNode,
            "unknown table \"" + name + "\" (defined: " + (known.empty() ? "none" : known) + ")");
    return nullptr;
  }
  if (table->options().search != SearchMode::kAddress) {
    r.warning(tableNode, "table \"" + name +
                             "\" does not use `search: address`; addresses will only match "
                             "whole keys");
  }
  return table;
}

}  // namespace

bool MilterConfig::needsRecipients() const {
  return rules && rules->usesRecipients();
}
bool MilterConfig::needsHelo() const {
  return rules && rules->usesHelo();
}
bool MilterConfig::needsConnect() const {
  return (rules && rules->usesClient()) || dkim != nullptr;
}
bool MilterConfig::needsHeaders() const {
  return (rules && !rules->empty()) || fromTable || dkim;
}
bool MilterConfig::needsBody() const {
  return dkim != nullptr;
}

std::shared_ptr<const MilterConfig> parseMilterConfig(std::shared_ptr<const Config> config,
                                                      Diagnostics* diags) {
  Diagnostics local;
  YamlReader r(config->file, &local, config->text);
  auto out = std::make_shared<MilterConfig>();
  out->base = config;
  out->fromMemo = std::make_shared<AddressMemo>();
  out->fromHeaderMemo = std::make_shared<HeaderRewriteMemo>();
  out->senderMemo = std::make_shared<AddressMemo>();
  out->daemon = config->milter;
  const YAML::Node& node = config->milterNode;
  std::shared_ptr<const RegexpTable> headerChecks;
  std::vector<HeaderRule> rules;
  if (node && !node.IsNull()) {
    r.checkMap(node, "milter",
               allowedKeysWithDaemonKeys({"on_error", "header_checks", "header_checks_file",
                                          "header_rules", "rewrite_from", "rewrite_sender",
                                          "max_sessions", "dkim"}));
    r.getInt(node, "max_sessions", &out->maxSessions, 1, kMaxMilterSessionsLimit);
    std::string onError = "tempfail";
    if (r.getString(node, "on_error", &onError)) {
      if (onError == "tempfail") {
        out->onError = OnError::kTempfail;
      } else if (onError == "accept") {
        out->onError = OnError::kAccept;
      } else {
        r.error(YamlReader::child(node, "on_error"),
                "on_error must be tempfail or accept, not \"" + onError + "\"");
      }
    }
    if (YAML::Node hc = YamlReader::child(node, "header_checks")) {
      if (std::optional<std::string> text = r.asString(hc)) {
        SourceLocation origin = r.textLocation(hc);
        RegexpTable::Options options{RegexpDialect::kPosix, true};
        headerChecks = RegexpTable::parse(*text, origin, options, &local);
        validateHeaderChecks(headerChecks.get(), &local);
      }
    }
    if (YAML::Node hf = YamlReader::child(node, "header_checks_file")) {
      std::string spec;
      if (headerChecks) {
        r.error(hf, "use either header_checks or header_checks_file, not both");
      } else if (r.getString(node, "header_checks_file", &spec)) {
        headerChecks = loadHeaderChecksFile(r, hf, spec, &local);
      }
    }
    if (YAML::Node hr = YamlReader::child(node, "header_rules")) {
      if (!hr.IsSequence()) {
        r.error(hr, "header_rules must be a list of rules, not " + YamlReader::describe(hr));
      } else {
        for (const auto& item : hr) {
          parseRule(r, item, &rules);
        }
      }
    }
    if (YAML::Node rf = YamlReader::child(node, "rewrite_from")) {
      out->fromTable = resolveTable(r, *config, rf, "rewrite_from");
      out->fromHeaders = {"From"};
      r.getStringList(rf, "headers", &out->fromHeaders);
      for (const std::string& h : out->fromHeaders) {
        if (h.empty() || h.find(':') != std::string::npos || h.find(' ') != std::string::npos) {
          r.error(YamlReader::child(rf, "headers"), "bad header name \"" + h + "\"");
        }
      }
    }
    if (YAML::Node rs = YamlReader::child(node, "rewrite_sender")) {
      if (YamlReader::child(rs, "headers")) {
        r.error(YamlReader::child(rs, "headers"), "rewrite_sender takes only `table:`");
      }
      out->senderTable = resolveTable(r, *config, rs, "rewrite_sender");
    }
    if (YAML::Node dk = YamlReader::child(node, "dkim")) {
      out->dkim = dkim::parseDkimConfig(r, dk);
    }
  }
  out->rules = std::make_shared<HeaderRuleSet>(headerChecks, std::move(rules));
  bool failed = local.hasErrors();
  if (diags) {
    diags->append(local);
  }
  if (failed) {
    return nullptr;
  }
  return out;
}

std::shared_ptr<const MilterConfig> parseMilterConfig(const Config& config, Diagnostics* diags) {
  return parseMilterConfig(std::make_shared<Config>(config), diags);
}

}  // namespace relaykit::milter

namespace relaykit {
void validateMilterSection(const Config& config, Diagnostics* diags) {
  (void)milter::parseMilterConfig(config, diags);
}
}  // namespace relaykit
