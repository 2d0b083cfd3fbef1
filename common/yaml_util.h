// SPDX-License-Identifier: Apache-2.0
// yaml_util.h: strict, error-collecting YAML reading shared by every config section.
//
// A YamlReader is bound to one file name and a Diagnostics sink. Its getters never throw and never
// stop at the first problem: a value of the wrong type is reported as "FILE:LINE:COL: expected a
// string" (1-based, at the offending node) and the getter returns "no value", so the caller simply
// carries on and EVERY problem of a file is reported at once. Maps are checked against an allowed
// key set ("unknown key \"x\" in milter (allowed: a, b, c)") and for duplicate keys, which yaml-cpp
// would otherwise silently accept. yaml-cpp parse errors are caught in loadYamlFile/parseYamlText
// and reported the same way.
//
// Usage pattern in a section parser:
//   if (!r.checkMap(node, "milter", withCommonDaemonKeys({"on_error", "header_checks"}))) return;
//   r.getString(node, "on_error", &settings.onError);        // absent: keeps the default
//   if (auto v = r.asDuration(node["per"])) limit.per = *v;   // node form
//   Diagnostics embedded;                                      // embedded rule text:
//   auto t = parseRules(text, r.textLocation(n), &embedded);  //   origin = where the text starts
//   r.reportEmbedded(n, embedded);                             //   columns fixed for `|` blocks
// YAML::Node values are only read at load time, from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/bounded_file.h"
#include "common/diagnostics.h"
#include "common/ip_network.h"
#include "common/status.h"

namespace relaykit {

class YamlReader {
 public:
  // `text` is the file's content when known: it lets blockTextLocation() find where the text of a
  // block scalar starts. `diags` must outlive the reader.
  YamlReader(std::string file, Diagnostics* diags, std::string text = std::string());
  YamlReader(const YamlReader&) = delete;
  YamlReader& operator=(const YamlReader&) = delete;

  const std::string& file() const { return file_; }
  Diagnostics* diags() const { return diags_; }

  // Where `node` starts (1-based). A node that does not exist (absent key) yields line 0.
  SourceLocation where(const YAML::Node& node) const;
  SourceLocation where(const YAML::Mark& mark) const;
  // Where the TEXT of a scalar starts: for a block scalar (`|`, `>`) the first content line after
  // the indicator, at its indentation; for a quoted scalar just after the quote; else where().
  // Use it as the origin of embedded languages (regexp_table text) so their errors point at the
  // right FILE:LINE:COL.
  SourceLocation textLocation(const YAML::Node& node) const;
  // True when `node` is a block scalar (`|`, `>`): every line of its text sits indented by
  // textLocation(node).column - 1 columns in the file.
  bool isBlockScalar(const YAML::Node& node) const;
  // Copies into diags() what a parser of embedded text (regexp_table text parsed with
  // textLocation(node) as its origin) reported into `embedded`. Such parsers apply
  // origin.column to the text's first line only; for a block scalar this adds the indentation to
  // the columns of the later lines, so every problem points at the right FILE:LINE:COL.
  void reportEmbedded(const YAML::Node& node, const Diagnostics& embedded) const;

  void error(const YAML::Node& node, std::string message) const;
  void warning(const YAML::Node& node, std::string message) const;

  // True when `node` is a map whose keys are all scalars in `allowed`, each once. Otherwise reports
  // "expected a map for WHAT" / "unknown key \"k\" in WHAT (allowed: a, b)" / "duplicate key \"k\"
  // in WHAT" at the key, and returns false (unknown keys do not stop the caller from reading the
  // known ones: read them anyway when the node IsMap()).
  bool checkMap(const YAML::Node& node, std::string_view what,
                const std::vector<std::string>& allowed) const;
  // A map's keys must be unique scalars (any name). Reports like checkMap.
  bool checkMapAnyKeys(const YAML::Node& node, std::string_view what) const;

  // ---- Node getters: report "expected ..." at the node and return nullopt on a wrong value. ----
  // An absent node (node is not defined) is reported as "missing value".
  std::optional<std::string> asString(const YAML::Node& node) const;  // any scalar
  std::optional<bool> asBool(const YAML::Node& node) const;           // true/false/yes/no/on/off
  std::optional<std::int64_t> asInt(const YAML::Node& node, std::int64_t min = INT64_MIN,
                                    std::int64_t max = INT64_MAX) const;
  // "30s", "1m", "1h", "1d", "1w", "250ms"; a bare number is seconds. Must be > 0 unless allowZero.
  std::optional<std::chrono::milliseconds> asDuration(const YAML::Node& node,
                                                      bool allowZero = false) const;
  // "512", "10k", "10K", "10M", "1G" (binary multiples) in bytes.
  std::optional<std::uint64_t> asSize(const YAML::Node& node) const;
  // One string or a list of strings.
  std::optional<std::vector<std::string>> asStringList(const YAML::Node& node) const;
  // One CIDR network or a list ("10.0.0.0/8", "::1", "192.0.2.1"); each bad entry is reported.
  std::optional<std::vector<IpNetwork>> asNetworks(const YAML::Node& node) const;
  // A file mode written in octal: "0660" or 0660 (at most 07777).
  std::optional<std::uint32_t> asOctalMode(const YAML::Node& node) const;

  // ---- Field getters on a map: `key` absent (or the map not a map) leaves *out untouched and
  // returns true; a present but wrong value is reported and returns false. ----
  bool getString(const YAML::Node& map, const char* key, std::string* out) const;
  bool getBool(const YAML::Node& map, const char* key, bool* out) const;
  bool getInt(const YAML::Node& map, const char* key, std::int64_t* out,
              std::int64_t min = INT64_MIN, std::int64_t max = INT64_MAX) const;
  bool getInt(const YAML::Node& map, const char* key, int* out, int min = INT32_MIN,
              int max = INT32_MAX) const;
  bool getDuration(const YAML::Node& map, const char* key, std::chrono::milliseconds* out,
                   bool allowZero = false) const;
  bool getSize(const YAML::Node& map, const char* key, std::uint64_t* out) const;
  bool getStringList(const YAML::Node& map, const char* key, std::vector<std::string>* out) const;
  bool getNetworks(const YAML::Node& map, const char* key, std::vector<IpNetwork>* out) const;
  bool getOctalMode(const YAML::Node& map, const char* key, std::uint32_t* out) const;

  // `map[key]` without throwing: an undefined node when `map` is not a map or lacks `key`.
  static YAML::Node child(const YAML::Node& map, const char* key);
  // A node's kind in words for messages: "a map", "a list", "a string", "null".
  static std::string describe(const YAML::Node& node);

 private:
  std::string file_;
  Diagnostics* diags_;
  std::vector<std::string_view> lines_;  // views into text_
  std::string text_;
};

// Parses YAML text holding ONE document. On a syntax error reports "FILE:LINE:COL: message" and
// returns nullopt; so does text after the first document (a second document, or where yaml-cpp's
// parser stops advancing, e.g. a first line with a lone ','). Never calls YAML::LoadAll (which
// never returns on "!,"). An empty document yields a Null node.
std::optional<YAML::Node> parseYamlText(const std::string& text, const std::string& file,
                                        Diagnostics* diags);
// Reads (readBoundedFile, kMaxConfigFileBytes: regular files only) and parses a file; a missing,
// unreadable, non-regular or oversized file is reported as "FILE:0:0: cannot read FILE: REASON".
// `text` receives the content when not null.
std::optional<YAML::Node> loadYamlFile(const std::string& path, Diagnostics* diags,
                                       std::string* text = nullptr);

// ---- Pure value parsers (also usable outside YAML). ----
StatusOr<std::chrono::milliseconds> parseDuration(std::string_view text);
StatusOr<std::uint64_t> parseSize(std::string_view text);
StatusOr<std::uint32_t> parseOctalMode(std::string_view text);
// Strict decimal integer (optional leading '-'), no spaces, no overflow.
StatusOr<std::int64_t> parseInteger(std::string_view text);

}  // namespace relaykit
