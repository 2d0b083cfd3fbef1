// SPDX-License-Identifier: Apache-2.0
// yaml_util.cc: strict YAML getters that report every problem as FILE:LINE:COL and go on.
// yaml-cpp throws on a few accesses (Mark() of an absent node, operator[] on a scalar): every
// access here is guarded so nothing escapes; parse exceptions are caught in parseYamlText.
#include "common/yaml_util.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>

#include <yaml-cpp/eventhandler.h>

namespace relaykit {

namespace {

std::string joinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) {
      out += ", ";
    }
    out += n;
  }
  return out;
}

bool isScalar(const YAML::Node& node) {
  return node.IsDefined() && node.IsScalar();
}

}  // namespace

YamlReader::YamlReader(std::string file, Diagnostics* diags, std::string text)
    : file_(std::move(file)), diags_(diags), text_(std::move(text)) {
  std::string_view all(text_);
  std::size_t start = 0;
  while (start <= all.size()) {
    std::size_t nl = all.find('\n', start);
    if (nl == std::string_view::npos) {
      lines_.push_back(all.substr(start));
      break;
    }
    lines_.push_back(all.substr(start, nl - start));
    start = nl + 1;
  }
}

SourceLocation YamlReader::where(const YAML::Mark& mark) const {
  SourceLocation loc;
  loc.file = file_;
  if (!mark.is_null()) {
    loc.line = mark.line + 1;
    loc.column = mark.column + 1;
  }
  return loc;
}

SourceLocation YamlReader::where(const YAML::Node& node) const {
  if (!node.IsDefined()) {
    SourceLocation loc;
    loc.file = file_;
    return loc;
  }
  return where(node.Mark());
}

SourceLocation YamlReader::textLocation(const YAML::Node& node) const {
  SourceLocation loc = where(node);
  if (loc.line <= 0 || static_cast<std::size_t>(loc.line) > lines_.size()) {
    return loc;
  }
  std::string_view line = lines_[loc.line - 1];
  std::size_t col = static_cast<std::size_t>(loc.column - 1);
  if (col >= line.size()) {
    return loc;
  }
  char indicator = line[col];
  if (indicator == '"' || indicator == '\'') {
    loc.column += 1;
    return loc;
  }
  if (indicator != '|' && indicator != '>') {
    return loc;
  }
  // Block scalar: its text starts on the next line; leading empty lines are part of the text,
  // the column is the indentation of the first non-empty line.
  loc.line += 1;
  loc.column = 1;
  for (std::size_t i = static_cast<std::size_t>(loc.line - 1); i < lines_.size(); ++i) {
    std::string_view l = lines_[i];
    std::size_t indent = l.find_first_not_of(' ');
    if (indent != std::string_view::npos && l[indent] != '\r') {
      loc.column = static_cast<int>(indent) + 1;
      break;
    }
  }
  return loc;
}

bool YamlReader::isBlockScalar(const YAML::Node& node) const {
  SourceLocation loc = where(node);
  if (!node.IsDefined() || !node.IsScalar() || loc.line <= 0 ||
      static_cast<std::size_t>(loc.line) > lines_.size()) {
    return false;
  }
  std::string_view line = lines_[loc.line - 1];
  std::size_t col = static_cast<std::size_t>(loc.column - 1);
  return col < line.size() && (line[col] == '|' || line[col] == '>');
}

void YamlReader::reportEmbedded(const YAML::Node& node, const Diagnostics& embedded) const {
  const bool block = isBlockScalar(node);
  const SourceLocation origin = textLocation(node);
  for (const Diagnostic& d : embedded.all()) {
    SourceLocation where = d.where;
    if (block && where.file == origin.file && where.line > origin.line && where.column > 0) {
      where.column += origin.column - 1;
    }
    if (d.severity == Diagnostic::Severity::kWarning) {
      diags_->warning(where, d.message);
    } else {
      diags_->error(where, d.message);
    }
  }
}

void YamlReader::error(const YAML::Node& node, std::string message) const {
  diags_->error(where(node), std::move(message));
}

void YamlReader::warning(const YAML::Node& node, std::string message) const {
  diags_->warning(where(node), std::move(message));
}

std::string YamlReader::describe(const YAML::Node& node) {
  if (!node.IsDefined()) {
    return "nothing";
  }
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a string";
    case YAML::NodeType::Null:
      return "null";
    default:
      return "nothing";
  }
}

YAML::Node YamlReader::child(const YAML::Node& map, const char* key) {
  if (!map.IsDefined() || !map.IsMap()) {
    return YAML::Node(YAML::NodeType::Undefined);
  }
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (isScalar(it->first) && it->first.Scalar() == key) {
      return it->second;
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

bool YamlReader::checkMapAnyKeys(const YAML::Node& node, std::string_view what) const {
  if (!node.IsDefined() || !node.IsMap()) {
    error(node, "expected a map for " + std::string(what) + ", got " + describe(node));
    return false;
  }
  bool ok = true;
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!isScalar(it->first)) {
      error(it->first, "expected a string as key in " + std::string(what));
      ok = false;
      continue;
    }
    if (!seen.insert(it->first.Scalar()).second) {
      error(it->first, "duplicate key \"" + it->first.Scalar() + "\" in " + std::string(what));
      ok = false;
    }
  }
  return ok;
}

bool YamlReader::checkMap(const YAML::Node& node, std::string_view what,
                          const std::vector<std::string>& allowed) const {
  bool ok = checkMapAnyKeys(node, what);
  if (!node.IsDefined() || !node.IsMap()) {
    return false;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!isScalar(it->first)) {
      continue;  // reported by checkMapAnyKeys
    }
    const std::string& key = it->first.Scalar();
    bool known = false;
    for (const auto& a : allowed) {
      if (a == key) {
        known = true;
        break;
      }
    }
    if (!known) {
      error(it->first, "unknown key \"" + key + "\" in " + std::string(what) +
                           " (allowed: " + joinNames(allowed) + ")");
      ok = false;
    }
  }
  return ok;
}

std::optional<std::string> YamlReader::asString(const YAML::Node& node) const {
  if (!node.IsDefined()) {
    error(node, "missing value");
    return std::nullopt;
  }
  if (!node.IsScalar()) {
    error(node, "expected a string, got " + describe(node));
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<bool> YamlReader::asBool(const YAML::Node& node) const {
  if (!isScalar(node)) {
    error(node, "expected true or false, got " + describe(node));
    return std::nullopt;
  }
  bool value = false;
  if (!YAML::convert<bool>::decode(node, value)) {
    error(node, "expected true or false, got \"" + node.Scalar() + "\"");
    return std::nullopt;
  }
  return value;
}

std::optional<std::int64_t> YamlReader::asInt(const YAML::Node& node, std::int64_t min,
                                              std::int64_t max) const {
  if (!isScalar(node)) {
    error(node, "expected an integer, got " + describe(node));
    return std::nullopt;
  }
  auto value = parseInteger(node.Scalar());
  if (!value) {
    error(node, "expected an integer, got \"" + node.Scalar() + "\"");
    return std::nullopt;
  }
  if (*value < min || *value > max) {
    error(node, "value " + node.Scalar() + " out of range (" + std::to_string(min) + ".." +
                    std::to_string(max) + ")");
    return std::nullopt;
  }
  return *value;
}

std::optional<std::chrono::milliseconds> YamlReader::asDuration(const YAML::Node& node,
                                                                bool allowZero) const {
  if (!isScalar(node)) {
    error(node, "expected a duration (like 30s, 1m, 1h, 1d), got " + describe(node));
    return std::nullopt;
  }
  auto value = parseDuration(node.Scalar());
  if (!value) {
    error(node, value.status().message());
    return std::nullopt;
  }
  if (!allowZero && value->count() == 0) {
    error(node, "duration must be greater than zero");
    return std::nullopt;
  }
  return *value;
}

std::optional<std::uint64_t> YamlReader::asSize(const YAML::Node& node) const {
  if (!isScalar(node)) {
    error(node, "expected a size (like 512, 10k, 10M), got " + describe(node));
    return std::nullopt;
  }
  auto value = parseSize(node.Scalar());
  if (!value) {
    error(node, value.status().message());
    return std::nullopt;
  }
  return *value;
}

std::optional<std::vector<std::string>> YamlReader::asStringList(const YAML::Node& node) const {
  if (isScalar(node)) {
    return std::vector<std::string>{node.Scalar()};
  }
  if (!node.IsDefined() || !node.IsSequence()) {
    error(node, "expected a string or a list of strings, got " + describe(node));
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const auto& item : node) {
    if (!isScalar(item)) {
      error(item, "expected a string, got " + describe(item));
      ok = false;
      continue;
    }
    out.push_back(item.Scalar());
  }
  if (!ok) {
    return std::nullopt;
  }
  return out;
}

std::optional<std::vector<IpNetwork>> YamlReader::asNetworks(const YAML::Node& node) const {
  std::vector<YAML::Node> items;
  if (isScalar(node)) {
    items.push_back(node);
  } else if (node.IsDefined() && node.IsSequence()) {
    for (const auto& item : node) {
      items.push_back(item);
    }
  } else {
    error(node, "expected a network or a list of networks, got " + describe(node));
    return std::nullopt;
  }
  std::vector<IpNetwork> out;
  bool ok = true;
  for (const auto& item : items) {
    if (!isScalar(item)) {
      error(item, "expected a network (like 10.0.0.0/8), got " + describe(item));
      ok = false;
      continue;
    }
    auto net = IpNetwork::parse(item.Scalar());
    if (!net) {
      error(item, net.status().message());
      ok = false;
      continue;
    }
    out.push_back(*net);
  }
  if (!ok) {
    return std::nullopt;
  }
  return out;
}

std::optional<std::uint32_t> YamlReader::asOctalMode(const YAML::Node& node) const {
  if (!isScalar(node)) {
    error(node, "expected an octal file mode (like \"0660\"), got " + describe(node));
    return std::nullopt;
  }
  auto value = parseOctalMode(node.Scalar());
  if (!value) {
    error(node, value.status().message());
    return std::nullopt;
  }
  return *value;
}

// ---- field getters ----

#define RELAYKIT_FIELD_GETTER(NAME, AS, TYPE, ...)                                 \
  bool YamlReader::NAME(const YAML::Node& map, const char* key, TYPE* out) const { \
    YAML::Node node = child(map, key);                                             \
    if (!node.IsDefined()) {                                                       \
      return true;                                                                 \
    }                                                                              \
    auto value = AS(node __VA_ARGS__);                                             \
    if (!value) {                                                                  \
      return false;                                                                \
    }                                                                              \
    *out = *value;                                                                 \
    return true;                                                                   \
  }

RELAYKIT_FIELD_GETTER(getString, asString, std::string)
RELAYKIT_FIELD_GETTER(getBool, asBool, bool)
RELAYKIT_FIELD_GETTER(getSize, asSize, std::uint64_t)
RELAYKIT_FIELD_GETTER(getStringList, asStringList, std::vector<std::string>)
RELAYKIT_FIELD_GETTER(getNetworks, asNetworks, std::vector<IpNetwork>)
RELAYKIT_FIELD_GETTER(getOctalMode, asOctalMode, std::uint32_t)
#undef RELAYKIT_FIELD_GETTER

bool YamlReader::getInt(const YAML::Node& map, const char* key, std::int64_t* out, std::int64_t min,
                        std::int64_t max) const {
  YAML::Node node = child(map, key);
  if (!node.IsDefined()) {
    return true;
  }
  auto value = asInt(node, min, max);
  if (!value) {
    return false;
  }
  *out = *value;
  return true;
}

bool YamlReader::getInt(const YAML::Node& map, const char* key, int* out, int min, int max) const {
  std::int64_t value = *out;
  if (!getInt(map, key, &value, static_cast<std::int64_t>(min), static_cast<std::int64_t>(max))) {
    return false;
  }
  *out = static_cast<int>(value);
  return true;
}

bool YamlReader::getDuration(const YAML::Node& map, const char* key, std::chrono::milliseconds* out,
                             bool allowZero) const {
  YAML::Node node = child(map, key);
  if (!node.IsDefined()) {
    return true;
  }
  auto value = asDuration(node, allowZero);
  if (!value) {
    return false;
  }
  *out = *value;
  return true;
}

// ---- parsing ----

namespace {

// Records where the next document starts; ignores everything else (a parse pass that builds
// nothing).
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { start_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
  const YAML::Mark& start() const { return start_; }

 private:
  YAML::Mark start_ = YAML::Mark::null_mark();
};

SourceLocation markLocation(const std::string& file, const YAML::Mark& mark) {
  SourceLocation loc;
  loc.file = file;
  if (!mark.is_null()) {
    loc.line = mark.line + 1;
    loc.column = mark.column + 1;
  }
  return loc;
}

}  // namespace

std::optional<YAML::Node> parseYamlText(const std::string& text, const std::string& file,
                                        Diagnostics* diags) {
  // YAML is text: yaml-cpp would take a NUL inside a quoted key as a character, elsewhere as an
  // odd escape error. Refused where it is, before parsing.
  if (const std::size_t nul = text.find('\0'); nul != std::string::npos) {
    const std::size_t lineStart = text.rfind('\n', nul);
    SourceLocation loc;
    loc.file = file;
    loc.line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + nul, '\n'));
    loc.column = static_cast<int>(nul - (lineStart == std::string::npos ? 0 : lineStart + 1)) + 1;
    diags->error(loc, "NUL byte: a configuration file is text");
    return std::nullopt;
  }
  try {
    YAML::Node root = YAML::Load(text);
    // YAML::Load reads the first document and silently ignores the rest of the text: a second
    // document, or everything after a spot where yaml-cpp's parser stops advancing (a first
    // line with a lone ',' or "!,": then every further HandleNextDocument() answers "one more
    // document" forever, which is why YAML::LoadAll never returns on such text). One more
    // document step (never a loop) tells both apart from a file that was read to its end.
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentStarts starts;
    if (parser.HandleNextDocument(starts) && parser.HandleNextDocument(starts)) {
      diags->error(markLocation(file, starts.start()),
                   "YAML parsing stopped here: the text from here on would be ignored (a "
                   "second document, or a line yaml-cpp cannot read; one document expected)");
      return std::nullopt;
    }
    return root;
  } catch (const YAML::Exception& e) {
    diags->error(markLocation(file, e.mark), e.msg.empty() ? std::string("invalid YAML") : e.msg);
    return std::nullopt;
  }
}

std::optional<YAML::Node> loadYamlFile(const std::string& path, Diagnostics* diags,
                                       std::string* text) {
  StatusOr<std::string> content = readBoundedFile(path, kMaxConfigFileBytes, "configuration");
  if (!content) {
    diags->error(SourceLocation{path, 0, 0}, content.status().message());
    return std::nullopt;
  }
  auto node = parseYamlText(*content, path, diags);
  if (text != nullptr) {
    *text = std::move(*content);
  }
  return node;
}

StatusOr<std::int64_t> parseInteger(std::string_view text) {
  std::size_t i = 0;
  bool negative = false;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    negative = text[0] == '-';
    i = 1;
  }
  if (i >= text.size()) {
    return Status::error("invalid integer \"" + std::string(text) + "\"");
  }
  std::uint64_t value = 0;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c < '0' || c > '9') {
      return Status::error("invalid integer \"" + std::string(text) + "\"");
    }
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
    if (value > static_cast<std::uint64_t>(INT64_MAX)) {
      return Status::error("integer \"" + std::string(text) + "\" is too large");
    }
  }
  return negative ? -static_cast<std::int64_t>(value) : static_cast<std::int64_t>(value);
}

StatusOr<std::chrono::milliseconds> parseDuration(std::string_view text) {
  auto bad = [&]() {
    return Status::error("invalid duration \"" + std::string(text) +
                         "\" (expected a number with unit ms, s, m, h, d or w, like 30s)");
  };
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  if (digits == 0 || digits > 12) {
    return bad();
  }
  auto number = parseInteger(text.substr(0, digits));
  if (!number) {
    return bad();
  }
  std::string_view unit = text.substr(digits);
  std::int64_t factor = 0;
  if (unit == "ms") {
    factor = 1;
  } else if (unit.empty() || unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60 * 1000;
  } else if (unit == "h") {
    factor = 3600 * 1000;
  } else if (unit == "d") {
    factor = 86400 * 1000;
  } else if (unit == "w") {
    factor = 7 * 86400 * 1000;
  } else {
    return bad();
  }
  if (*number > std::numeric_limits<std::int64_t>::max() / factor) {
    return Status::error("duration \"" + std::string(text) + "\" is too large");
  }
  return std::chrono::milliseconds(*number * factor);
}

StatusOr<std::uint64_t> parseSize(std::string_view text) {
  auto bad = [&]() {
    return Status::error("invalid size \"" + std::string(text) +
                         "\" (expected a number of bytes with optional unit k, M or G, like 10M)");
  };
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  if (digits == 0 || digits > 15) {
    return bad();
  }
  auto number = parseInteger(text.substr(0, digits));
  if (!number) {
    return bad();
  }
  std::string_view unit = text.substr(digits);
  std::uint64_t factor = 0;
  if (unit.empty() || unit == "B" || unit == "b") {
    factor = 1;
  } else if (unit == "k" || unit == "K" || unit == "KB" || unit == "kB" || unit == "KiB") {
    factor = 1024;
  } else if (unit == "M" || unit == "MB" || unit == "MiB") {
    factor = 1024 * 1024;
  } else if (unit == "G" || unit == "GB" || unit == "GiB") {
    factor = 1024ULL * 1024 * 1024;
  } else {
    return bad();
  }
  if (static_cast<std::uint64_t>(*number) > std::numeric_limits<std::uint64_t>::max() / factor) {
    return Status::error("size \"" + std::string(text) + "\" is too large");
  }
  return static_cast<std::uint64_t>(*number) * factor;
}

StatusOr<std::uint32_t> parseOctalMode(std::string_view text) {
  auto bad = [&]() {
    return Status::error("invalid file mode \"" + std::string(text) +
                         "\" (expected octal digits like \"0660\")");
  };
  if (text.empty() || text.size() > 5) {
    return bad();
  }
  std::uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '7') {
      return bad();
    }
    value = value * 8 + static_cast<std::uint32_t>(c - '0');
  }
  if (value > 07777) {
    return bad();
  }
  return value;
}

}  // namespace relaykit
