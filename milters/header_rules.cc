// SPDX-License-Identifier: Apache-2.0
// header_rules.cc: action parsing, conditions and per-header rule decisions (see header_rules.h).
#include "milters/header_rules.h"

#include <re2/re2.h>

#include <cctype>
#include <cstring>

#include "common/address.h"
#include "milters/rfc2047.h"

namespace relaykit::milter {
namespace {

bool partial(const std::shared_ptr<const re2::RE2>& re, std::string_view text) {
  return re && re2::RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *re);
}

std::string trimLeft(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
    ++i;
  }
  return std::string(s.substr(i));
}

}  // namespace

size_t headerNameLength(std::string_view line) {
  // Postfix's is_header(3): printable ASCII up to the colon, then optionally blanks (the
  // obsolete "Name :" form, RFC 822 section 3.4.2).
  size_t i = 0;
  while (i < line.size() && line[i] != ':') {
    unsigned char c = static_cast<unsigned char>(line[i]);
    if (c <= 32 || c >= 127) {
      break;
    }
    ++i;
  }
  const size_t name = i;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
    ++i;
  }
  return name > 0 && i < line.size() && line[i] == ':' ? name : 0;
}

bool isHeaderLine(std::string_view line) {
  return headerNameLength(line) > 0;
}

const char* actionName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kIgnore:
      return "IGNORE";
    case ActionKind::kReplace:
      return "REPLACE";
    case ActionKind::kPrepend:
      return "PREPEND";
    case ActionKind::kWarn:
      return "WARN";
    case ActionKind::kInfo:
      return "INFO";
    case ActionKind::kDunno:
      return "DUNNO";
  }
  return "DUNNO";
}

StatusOr<Action> parseAction(std::string_view result) {
  size_t end = 0;
  while (end < result.size() && result[end] != ' ' && result[end] != '\t') {
    ++end;
  }
  std::string name = toLowerAscii(result.substr(0, end));
  std::string text = trimLeft(result.substr(end));
  Action action;
  action.text = text;
  if (name == "ignore") {
    action.kind = ActionKind::kIgnore;
  } else if (name == "replace" || name == "prepend") {
    action.kind = name == "replace" ? ActionKind::kReplace : ActionKind::kPrepend;
    if (!isHeaderLine(text)) {
      return Status::error(std::string(actionName(action.kind)) +
                           " needs a header line \"Name: value\", got \"" + text + "\"");
    }
  } else if (name == "warn") {
    action.kind = ActionKind::kWarn;
  } else if (name == "info") {
    action.kind = ActionKind::kInfo;
  } else if (name == "dunno" || name == "ok") {
    action.kind = ActionKind::kDunno;
  } else if (name == "reject" || name == "discard" || name == "hold" || name == "filter" ||
             name == "redirect" || name == "bcc" || name == "defer" || name == "strip" ||
             name == "pass" ||
             (name.size() == 3 && std::isdigit(static_cast<unsigned char>(name[0])))) {
    return Status::error("action \"" + std::string(result.substr(0, end)) +
                         "\" is not supported by relaykit-milter (supported: IGNORE, REPLACE, "
                         "PREPEND, WARN, INFO, DUNNO); keep it in Postfix's header_checks");
  } else {
    return Status::error("unknown header_checks action \"" + std::string(result.substr(0, end)) +
                         "\"");
  }
  return action;
}

bool Condition::empty() const {
  return sender.empty() && !recipientAny && !recipientAll && client.empty() && !authenticated &&
         !saslUser && !helo && !clientName && !negated;
}

bool Condition::usesRecipients() const {
  return recipientAny || recipientAll || (negated && negated->usesRecipients());
}

bool Condition::usesHelo() const {
  return helo || (negated && negated->usesHelo());
}

bool Condition::usesClient() const {
  return !client.empty() || clientName || (negated && negated->usesClient());
}

bool Condition::holds(const Envelope& env) const {
  if (!sender.empty()) {
    bool any = false;
    for (const auto& re : sender) {
      if (partial(re, env.sender)) {
        any = true;
        break;
      }
    }
    if (!any) {
      return false;
    }
  }
  if (recipientAny) {
    bool any = false;
    for (const std::string& rcpt : env.recipients) {
      if (partial(recipientAny, rcpt)) {
        any = true;
        break;
      }
    }
    if (!any) {
      return false;
    }
  }
  if (recipientAll) {
    if (env.recipients.empty()) {
      return false;
    }
    for (const std::string& rcpt : env.recipients) {
      if (!partial(recipientAll, rcpt)) {
        return false;
      }
    }
  }
  if (!client.empty()) {
    if (!env.clientAddress) {
      return false;
    }
    bool any = false;
    for (const IpNetwork& net : client) {
      if (net.contains(*env.clientAddress)) {
        any = true;
        break;
      }
    }
    if (!any) {
      return false;
    }
  }
  if (authenticated && *authenticated == env.saslUser.empty()) {
    return false;
  }
  if (saslUser && (env.saslUser.empty() || !partial(saslUser, env.saslUser))) {
    return false;
  }
  if (helo && !partial(helo, env.helo)) {
    return false;
  }
  if (clientName && !partial(clientName, env.clientName)) {
    return false;
  }
  if (negated && negated->holds(env)) {
    return false;
  }
  return true;
}

std::string unfold(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\r' && i + 2 < text.size() && text[i + 1] == '\n' &&
        (text[i + 2] == ' ' || text[i + 2] == '\t')) {
      ++i;
      continue;
    }
    if (text[i] == '\n' && i + 1 < text.size() && (text[i + 1] == ' ' || text[i + 1] == '\t')) {
      continue;
    }
    out.push_back(text[i]);
  }
  return out;
}

StatusOr<WithTemplate> WithTemplate::compile(std::string_view with, int groups) {
  WithTemplate t;
  auto literal = [&t](char c) {
    if (t.pieces_.empty() || t.pieces_.back().group >= 0) {
      t.pieces_.push_back(Piece{std::string(), -1});
    }
    t.pieces_.back().literal.push_back(c);
  };
  for (size_t i = 0; i < with.size(); ++i) {
    if (with[i] != '$' || i + 1 >= with.size()) {
      literal(with[i]);
      continue;
    }
    const char next = with[i + 1];
    if (next == '$') {
      literal('$');
      ++i;
      continue;
    }
    size_t start = i + 1;
    char close = '\0';
    if (next == '{' || next == '(') {
      close = next == '{' ? '}' : ')';
      ++start;
    }
    size_t j = start;
    while (j < with.size() && std::isdigit(static_cast<unsigned char>(with[j]))) {
      ++j;
    }
    if (j == start || (close != '\0' && (j >= with.size() || with[j] != close))) {
      literal('$');
      continue;
    }
    // The digits are bounded before they are read: no conversion can overflow.
    const std::string_view digits = with.substr(start, j - start);
    int n = 0;
    if (digits.size() <= kMaxGroupDigits) {
      for (char c : digits) {
        n = n * 10 + (c - '0');
      }
    }
    if (digits.size() > kMaxGroupDigits || n > groups) {
      return Status::error(std::string(with.substr(i, (close != '\0' ? j + 1 : j) - i)) +
                               " refers to group " + std::string(digits) + " but the pattern has " +
                               (groups == 0 ? std::string("no groups")
                                            : "only " + std::to_string(groups) + " group" +
                                                  (groups == 1 ? "" : "s")),
                           ErrorKind::kInvalid);
    }
    t.pieces_.push_back(Piece{std::string(), n});
    t.maxGroup_ = std::max(t.maxGroup_, n);
    i = close != '\0' ? j : j - 1;
  }
  return t;
}

bool WithTemplate::hasGroups() const {
  for (const Piece& p : pieces_) {
    if (p.group >= 0) {
      return true;
    }
  }
  return false;
}

std::string WithTemplate::expand(const re2::RE2& re, std::string_view text) const {
  if (!hasGroups()) {
    return pieces_.empty() ? std::string() : pieces_.front().literal;
  }
  const int groups = std::min(re.NumberOfCapturingGroups(), maxGroup_);
  std::vector<re2::StringPiece> sub(static_cast<size_t>(groups) + 1);
  const bool matched = re.Match(re2::StringPiece(text.data(), text.size()), 0, text.size(),
                                re2::RE2::UNANCHORED, sub.data(), groups + 1);
  std::string out;
  for (const Piece& p : pieces_) {
    if (p.group < 0) {
      out += p.literal;
    } else if (matched && p.group <= groups &&
               sub[static_cast<size_t>(p.group)].data() != nullptr) {
      out.append(sub[static_cast<size_t>(p.group)].data(),
                 sub[static_cast<size_t>(p.group)].size());
    }
  }
  return out;
}

std::string expandGroups(const re2::RE2& re, std::string_view text, std::string_view with) {
  if (with.find('$') == std::string_view::npos) {
    return std::string(with);
  }
  StatusOr<WithTemplate> t = WithTemplate::compile(with, re.NumberOfCapturingGroups());
  return t ? t->expand(re, text) : std::string(with);
}

HeaderRuleSet::HeaderRuleSet(std::shared_ptr<const RegexpTable> headerChecks,
                             std::vector<HeaderRule> rules)
    : headerChecks_(std::move(headerChecks)), rules_(std::move(rules)) {
  rulePrefix_.reserve(rules_.size());
  ruleSuffix_.reserve(rules_.size());
  for (const HeaderRule& rule : rules_) {
    LiteralPrefix prefix;
    LiteralSuffix suffix;
    if (rule.match) {
      // `^` is the start of the text unless the pattern turns on (?m) itself, which leaves it
      // without a leading `^` and so without a prefix; the same for `$` (anchoredLiteralSuffix
      // gives up on any `(?`).
      const re2::RE2::Options& o = rule.match->options();
      PatternCase c = PatternCase::kSensitive;
      if (!o.case_sensitive()) {
        c = o.encoding() == re2::RE2::Options::EncodingUTF8 ? PatternCase::kUnicodeFold
                                                            : PatternCase::kAsciiFold;
      }
      if (!o.literal() && (!o.posix_syntax() || o.one_line())) {
        prefix = anchoredLiteralPrefix(rule.match->pattern(), c);
        suffix = anchoredLiteralSuffix(rule.match->pattern(), c);
      }
    }
    rulePrefix_.push_back(std::move(prefix));
    ruleSuffix_.push_back(std::move(suffix));
  }
  // Text "Name:value" starts with "P:rest" (P without ':') only when the name is P: a header
  // name holds no ':'.
  nameGated_ = true;
  auto gate = [this](const LiteralPrefix& p) {
    const std::size_t colon = p.text.find(':');
    if (colon == std::string::npos) {
      nameGated_ = false;
      return;
    }
    gateNames_.push_back({p.text.substr(0, colon), p.foldCase});
  };
  if (headerChecks_) {
    if (std::optional<std::vector<LiteralPrefix>> prefixes = headerChecks_->answerPrefixes()) {
      for (const LiteralPrefix& p : *prefixes) {
        gate(p);
      }
    } else {
      nameGated_ = false;
    }
  }
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].decode) {
      nameGated_ = false;  // the decoded text is what the prefix is checked against
    }
    gate(rulePrefix_[i]);
  }
  if (!nameGated_) {
    gateNames_.clear();
  }
}

bool HeaderRuleSet::passesNameGate(std::string_view name) const {
  if (!nameGated_) {
    return true;
  }
  for (const GateName& g : gateNames_) {
    if (g.foldCase ? equalsIgnoreCase(g.name, name) : g.name == name) {
      return true;
    }
  }
  return false;
}

bool HeaderRuleSet::usesRecipients() const {
  for (const HeaderRule& r : rules_) {
    if (r.when.usesRecipients()) {
      return true;
    }
  }
  return false;
}

bool HeaderRuleSet::usesHelo() const {
  for (const HeaderRule& r : rules_) {
    if (r.when.usesHelo()) {
      return true;
    }
  }
  return false;
}

bool HeaderRuleSet::usesClient() const {
  for (const HeaderRule& r : rules_) {
    if (r.when.usesClient()) {
      return true;
    }
  }
  return false;
}

std::optional<RuleDecision> HeaderRuleSet::decide(const HeaderField& header,
                                                  const Envelope& envelope,
                                                  std::string* problem) const {
  // Postfix's header_checks see the header as stored: "Name:" + value, newlines kept; the rules
  // see it unfolded. Built once per header into a per-thread buffer, unfolded only when folded.
  if (!passesNameGate(header.name)) {
    return std::nullopt;  // no line or rule can apply to a header of this name
  }
  thread_local std::string folded;
  folded.clear();
  folded.append(header.name).push_back(':');
  folded.append(header.value);
  if (headerChecks_) {
    if (auto m = headerChecks_->match(folded)) {
      StatusOr<Action> action = parseAction(m->value);
      if (!action) {
        if (problem) {
          *problem = m->where.file + ":" + std::to_string(m->where.line) + ": " +
                     action.status().message();
        }
        return std::nullopt;
      }
      return RuleDecision{*action,
                          "header_checks " + m->where.file + ":" + std::to_string(m->where.line)};
    }
  }
  if (rules_.empty()) {
    return std::nullopt;
  }
  std::string unfolded;
  const bool isFolded = std::memchr(header.value.data(), '\n', header.value.size()) != nullptr ||
                        header.name.find('\n') != std::string::npos;
  if (isFolded) {
    unfolded = unfold(folded);
  }
  const std::string& logical = isFolded ? unfolded : folded;
  std::string decoded;
  bool haveDecoded = false;
  for (size_t i = 0; i < rules_.size(); ++i) {
    const HeaderRule& rule = rules_[i];
    const std::string* text = &logical;
    if (rule.decode) {
      if (!haveDecoded) {
        decoded = decodeEncodedWords(logical);
        haveDecoded = true;
      }
      text = &decoded;
    }
    if (!rulePrefix_[i].begins(*text) || !ruleSuffix_[i].ends(*text) ||
        !partial(rule.match, *text)) {
      continue;
    }
    if (!rule.when.holds(envelope)) {
      continue;
    }
    Action action;
    action.kind = rule.action;
    action.text = rule.withTemplate.expand(*rule.match, *text);
    if ((action.kind == ActionKind::kReplace || action.kind == ActionKind::kPrepend) &&
        !isHeaderLine(action.text)) {
      if (problem) {
        *problem = rule.where.file + ":" + std::to_string(rule.where.line) +
                   ": expanded text is not a header line: \"" + action.text + "\"";
      }
      return std::nullopt;
    }
    return RuleDecision{std::move(action),
                        "header_rules " + rule.where.file + ":" + std::to_string(rule.where.line)};
  }
  return std::nullopt;
}

}  // namespace relaykit::milter
