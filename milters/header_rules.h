// SPDX-License-Identifier: Apache-2.0
// header_rules.h: header actions (header_checks(5) text and conditional header_rules) and the
// envelope facts their conditions test.
//
// Two rule sources share one action vocabulary: `header_checks` is Postfix's own text, compiled by
// common/regexp_table.h, whose result is the action ("IGNORE", "REPLACE text", ...); it matches
// the header as Postfix's header_checks do (the folded header "Name: value" with its newlines, `.`
// matching a newline). `header_rules` are YAML rules with an RE2 pattern, an action, optional
// `with` text ($1.. substitution) and `when` conditions on the envelope; they match the logical
// (unfolded) header, optionally after RFC 2047 decoding. For each header the first rule that
// matches wins: header_checks first, then header_rules. Everything here is immutable once built
// and safe to share between threads; evaluation cannot fail.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/diagnostics.h"
#include "common/ip_network.h"
#include "common/regexp_table.h"
#include "common/regexp_translate.h"
#include "common/status.h"

namespace re2 {
class RE2;
}  // namespace re2

namespace relaykit::milter {

// What the milter knows about a message's envelope when it applies rules.
struct Envelope {
  std::string sender;                      // MAIL FROM address without <>; "" is the null sender
  std::vector<std::string> senderArgs;     // ESMTP arguments of MAIL FROM ("RET=HDRS", ...)
  std::vector<std::string> recipients;     // RCPT TO addresses without <>
  std::optional<IpAddress> clientAddress;  // absent for unknown / non-IP clients
  std::string clientName;                  // verified client hostname, "unknown" if none
  std::string helo;
  std::string saslUser;  // {auth_authen}; empty: not authenticated
  std::string queueId;   // {i}

  // Back to the state of Envelope{}, keeping the strings' storage (one filter serves many
  // connections).
  void clear() {
    sender.clear();
    senderArgs.clear();
    recipients.clear();
    clientAddress.reset();
    clientName.clear();
    helo.clear();
    saslUser.clear();
    queueId.clear();
  }
};

enum class ActionKind { kIgnore, kReplace, kPrepend, kWarn, kInfo, kDunno };

// "IGNORE", "REPLACE", ... as Postfix writes them.
const char* actionName(ActionKind kind);

struct Action {
  ActionKind kind = ActionKind::kDunno;
  std::string text;  // REPLACE/PREPEND: a whole header line "Name: value"; WARN/INFO: a message
};

// Parses a header_checks result ("REPLACE X-Foo: bar", "warn text"). Action names are
// case-insensitive. Errors: unknown or unsupported action, REPLACE/PREPEND text that is not a
// header line ("Name: value").
StatusOr<Action> parseAction(std::string_view result);

// A `when:` block; every present condition must hold. Regexps are RE2, unanchored.
struct Condition {
  std::vector<std::shared_ptr<const re2::RE2>> sender;  // any of them matches the sender
  std::shared_ptr<const re2::RE2> recipientAny;         // at least one recipient matches
  std::shared_ptr<const re2::RE2> recipientAll;         // every recipient matches (and >= 1)
  std::vector<IpNetwork> client;                        // client address in any network
  std::optional<bool> authenticated;
  std::shared_ptr<const re2::RE2> saslUser;
  std::shared_ptr<const re2::RE2> helo;
  std::shared_ptr<const re2::RE2> clientName;
  std::shared_ptr<const Condition> negated;  // `not:` holds when this block does NOT hold

  bool holds(const Envelope& envelope) const;
  bool empty() const;
  // True when any condition (also under `not:`) needs a step: RCPT, HELO or CONNECT callbacks.
  bool usesRecipients() const;
  bool usesHelo() const;
  bool usesClient() const;  // client address or name
};

// Most groups a `with:` reference may name ($1..$99; RE2 patterns rarely have more).
inline constexpr size_t kMaxGroupDigits = 2;

// `with:` text compiled once at load time: literal pieces and $n references ($1, ${1}, $(1);
// $$ is a '$'; a '$' not followed by a reference stays as is). compile() refuses a reference to a
// group the pattern does not have (and more than kMaxGroupDigits digits) with a message for
// FILE:LINE:COL; expand() cannot fail (an unmatched group expands to nothing).
class WithTemplate {
 public:
  static StatusOr<WithTemplate> compile(std::string_view with, int groups);
  bool hasGroups() const;
  // The text with each $n replaced by group n of `re` matched against `text`.
  std::string expand(const re2::RE2& re, std::string_view text) const;

 private:
  struct Piece {
    std::string literal;
    int group = -1;  // >= 0: a group reference (0: the whole match)
  };
  std::vector<Piece> pieces_;
  int maxGroup_ = 0;  // the highest group referenced
};

struct HeaderRule {
  std::shared_ptr<const re2::RE2> match;  // against "Name: value", unfolded
  ActionKind action = ActionKind::kDunno;
  std::string with;           // REPLACE/PREPEND header line, WARN/INFO text; $1.. expanded
  WithTemplate withTemplate;  // `with` compiled against `match` (set by the config parser)
  bool decode = false;        // match against RFC 2047-decoded text
  Condition when;
  SourceLocation where;
  std::string label;  // for logs: the pattern
};

// A header as the milter received it. With SMFIP_HDR_LEADSPC the value keeps the space after the
// colon; folded values contain "\n" (or "\r\n") followed by whitespace.
struct HeaderField {
  std::string name;
  std::string value;
};

// The winning action for one header, with its text expanded.
struct RuleDecision {
  Action action;
  std::string source;  // "header_checks FILE:LINE" or "header_rules FILE:LINE" for logs
};

class HeaderRuleSet {
 public:
  HeaderRuleSet(std::shared_ptr<const RegexpTable> headerChecks, std::vector<HeaderRule> rules);

  // The decision for one header, or nullopt when no rule matches. header_checks results that do
  // not parse as actions were refused at load time (see validateHeaderChecks) except those that
  // use $n; such a result that is invalid after expansion is treated as DUNNO and reported in
  // *problem.
  std::optional<RuleDecision> decide(const HeaderField& header, const Envelope& envelope,
                                     std::string* problem) const;

  bool empty() const { return !headerChecks_ && rules_.empty(); }
  bool usesRecipients() const;
  bool usesHelo() const;
  bool usesClient() const;

 private:
  std::shared_ptr<const RegexpTable> headerChecks_;
  std::vector<HeaderRule> rules_;
  // rulePrefix_[i]: a literal every match of rules_[i] starts with (a header name in `^From:`
  // style rules); a header that does not start with it skips the rule's RE2 search.
  std::vector<LiteralPrefix> rulePrefix_;
  // ruleSuffix_[i]: a literal every match of rules_[i] ends with (`<.*@localhost>$`); a header
  // that does not end with it skips the rule's RE2 search too.
  std::vector<LiteralSuffix> ruleSuffix_;
  // The header names one of which a header must have for any header_checks line or rule to
  // apply, when every one is anchored on a literal that names the header (`^From:`,
  // `/^X-Originating-IP:/`) and none decodes encoded words: any other header is passed over
  // without building its text. nameGated_ false: every header is looked at.
  struct GateName {
    std::string name;
    bool foldCase = false;
  };
  std::vector<GateName> gateNames_;
  bool nameGated_ = false;
  bool passesNameGate(std::string_view name) const;
};

// "Name: value" unfolded: every CRLF/LF that precedes whitespace removed.
std::string unfold(std::string_view text);

// True for "Name: ..." with a non-empty field name of printable ASCII (RFC 5322 ftext) before the
// colon, optionally followed by blanks ("Name : ..."), as Postfix's is_header(3) decides: a header
// line, as opposed to a continuation or body line.
bool isHeaderLine(std::string_view line);
// The same test, returning the length of the field name ("Name" in "Name:" or "Name :"), 0 when
// the line is not a header line.
size_t headerNameLength(std::string_view line);

// Expands $1, ${1}, $(1) and $$ in `with` from the groups of `re` matched against `text` (a
// reference to a group `re` does not have leaves `with` unexpanded). Rules use WithTemplate.
std::string expandGroups(const re2::RE2& re, std::string_view text, std::string_view with);

}  // namespace relaykit::milter
