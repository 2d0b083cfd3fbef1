// SPDX-License-Identifier: Apache-2.0
// header_rules_fuzz.cc: header rule evaluation (milters/header_rules.h) as the milter runs it.
// Input: [flags] header_checks text NUL header_rules pattern NUL `with` text NUL header line.
// The rules are compiled the way the daemon compiles them, from a `milter:` section (each text a
// YAML double-quoted scalar), so the target follows the config format rather than the engine's
// internal structs. Properties: a config that is refused reports an error; decide() never fails
// or throws; a header_checks REPLACE/PREPEND decision's text is a header line.
#include <memory>
#include <string>

#include "common/config.h"
#include "milters/header_rules.h"
#include "milters/milter_config.h"
#include "tests/fuzz/fuzz_support.h"

using relaykit::fuzz::printable;
using namespace relaykit::milter;

namespace {

// `text` as a YAML double-quoted scalar: printable ASCII as is, every other byte as \xNN.
std::string yamlQuoted(std::string_view text) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  out.push_back('"');
  return out;
}

const char* const kActions[] = {"remove", "replace", "prepend", "warn", "info", "dunno"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  std::uint8_t flags = in.byte();
  std::string_view checks = in.text();
  std::string_view pattern = in.text();
  std::string_view with = in.text();
  std::string_view line = in.rest();

  std::string yaml = "milter:\n";
  if (!checks.empty()) {
    yaml += "  header_checks: " + yamlQuoted(checks) + "\n";
  }
  if (!pattern.empty()) {
    yaml += "  header_rules:\n    - match: " + yamlQuoted(pattern) + "\n";
    yaml += std::string("      action: ") + kActions[(flags >> 1) % 6] + "\n";
    if (!with.empty()) {
      yaml += "      with: " + yamlQuoted(with) + "\n";
    }
    if (flags & 0x10) {
      yaml += "      decode: true\n";
    }
  }
  relaykit::Diagnostics diags;
  auto config = relaykit::loadConfigText(yaml, "header_rules_fuzz.yaml", &diags);
  FUZZ_CHECK(config != nullptr, "the generated YAML does not load: " + diags.formatAll());
  auto milter = parseMilterConfig(config, &diags);
  if (!milter) {
    FUZZ_CHECK(diags.hasErrors(), "milter section refused without an error");
    return 0;
  }

  HeaderField header;
  size_t nameLength = headerNameLength(line);
  if (nameLength > 0) {
    size_t colon = line.find(':', nameLength);
    header.name = std::string(line.substr(0, nameLength));
    header.value = std::string(line.substr(colon + 1));
  } else {
    header.name = "X-Fuzz";
    header.value = std::string(line);
  }
  Envelope envelope;
  envelope.sender = "root@relay.corp.local";
  envelope.recipients = {"ops@example.com"};
  std::string problem;
  auto decision = milter->rules->decide(header, envelope, &problem);
  // header_checks results were checked at load time; one that is no action after $n expansion
  // is DUNNO, so a REPLACE/PREPEND from header_checks always carries a header line.
  if (decision && decision->source.rfind("header_checks", 0) == 0 &&
      (decision->action.kind == ActionKind::kReplace ||
       decision->action.kind == ActionKind::kPrepend)) {
    FUZZ_CHECK(isHeaderLine(decision->action.text),
               "REPLACE/PREPEND text " + printable(decision->action.text));
  }
  (void)unfold(line);
  (void)parseAction(line);
  return 0;
}
