// SPDX-License-Identifier: Apache-2.0
// allowance_table.cc: allowance values, file keys, the allowance index and allowances_file
// loading; see allowance_table.h.
#include "policyd/allowance_table.h"

#include <algorithm>
#include <functional>

#include "common/ascii.h"
#include "common/bounded_file.h"
#include "common/postmap_db.h"
#include "common/table_file.h"
#include "common/yaml_util.h"
#include "policyd/policy_config.h"

namespace relaykit::policy {

namespace {

// Problems of one file reported one by one; the rest are counted in one more line.
constexpr std::size_t kMaxReportedFileErrors = 100;

// Bytes shown of a value in a message.
constexpr std::size_t kShownBytes = 60;

std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, kShownBytes)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return s.size() > kShownBytes ? out + "..." : out;
}

bool isAddressPart(const KeyPart& part) {
  return part.kind == KeyPart::Kind::kAttribute && isAddressAttribute(part.attribute);
}

// A principal's "part=value" segments (rate_key.h: parts joined by one separator byte, separator
// bytes inside values doubled, so a separator followed by another one is part of a value).
std::vector<std::string_view> principalSegments(std::string_view principal) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i < principal.size(); ++i) {
    if (principal[i] != kPrincipalSeparator) {
      continue;
    }
    if (i + 1 < principal.size() && principal[i + 1] == kPrincipalSeparator) {
      ++i;  // a doubled separator inside a value
      continue;
    }
    out.push_back(principal.substr(start, i - start));
    start = i + 1;
  }
  out.push_back(principal.substr(start));
  return out;
}

}  // namespace

StatusOr<std::vector<RateWindow>> parseAllowanceValue(std::string_view text) {
  if (text.size() > kMaxAllowanceValueBytes) {
    return Status::error("allowance longer than " + std::to_string(kMaxAllowanceValueBytes) +
                         " bytes");
  }
  std::vector<RateWindow> out;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t comma = text.find(',', pos);
    const std::string_view item =
        trimBlanks(text.substr(pos, comma == std::string_view::npos ? comma : comma - pos));
    const std::size_t slash = item.find('/');
    if (item.empty() || slash == std::string_view::npos) {
      return Status::error("bad allowance \"" + shown(text) +
                           "\" (expected MAX/DURATION, or several joined by ',', like "
                           "100/1m, 10000/1d)");
    }
    StatusOr<std::int64_t> max = parseInteger(item.substr(0, slash));
    if (!max.isOk() || *max < 1 || *max > kMaxWindowMax) {
      return Status::error("bad allowance \"" + shown(item) + "\": the maximum must be 1 to " +
                           std::to_string(kMaxWindowMax));
    }
    StatusOr<std::chrono::milliseconds> per = parseDuration(item.substr(slash + 1));
    if (!per.isOk()) {
      return Status::error("bad allowance \"" + shown(item) + "\": " + per.status().message());
    }
    if (per->count() <= 0 || per->count() > kMaxWindowPeriodMs) {
      return Status::error("bad allowance \"" + shown(item) +
                           "\": the duration must be more than 0 and at most 366d");
    }
    const RateWindow w{*max, static_cast<std::int64_t>(per->count()) * 1000};
    for (const RateWindow& other : out) {
      if (other.periodUs == w.periodUs) {
        return Status::error("bad allowance \"" + shown(text) + "\": two windows of one period");
      }
    }
    if (out.size() >= kMaxAllowanceWindows) {
      return Status::error("bad allowance \"" + shown(text) + "\": more than " +
                           std::to_string(kMaxAllowanceWindows) + " windows");
    }
    out.push_back(w);
    if (comma == std::string_view::npos) {
      return out;
    }
    pos = comma + 1;
  }
}

std::optional<std::string> principalFromValues(const std::vector<KeyPart>& key,
                                               const std::vector<std::string_view>& values) {
  if (values.size() != key.size()) {
    return std::nullopt;
  }
  PolicyRequest request;
  for (std::size_t i = 0; i < key.size(); ++i) {
    const KeyPart& part = key[i];
    switch (part.kind) {
      case KeyPart::Kind::kAttribute:
        request.add(part.attribute, values[i]);
        break;
      case KeyPart::Kind::kSenderDomain:
        request.add("sender", "@" + std::string(values[i]));
        break;
      case KeyPart::Kind::kRecipientDomain:
        request.add("recipient", "@" + std::string(values[i]));
        break;
      case KeyPart::Kind::kClientNetwork:
        request.add("client_address", values[i]);
        break;
    }
  }
  return principalOf(key, request);
}

StatusOr<std::vector<std::string_view>> splitFileKey(std::string_view fileKey, std::size_t parts) {
  std::vector<std::string_view> values;
  if (parts <= 1) {
    values.push_back(fileKey);
  } else {
    std::size_t pos = 0;
    for (;;) {
      const std::size_t comma = fileKey.find(',', pos);
      values.push_back(fileKey.substr(pos, comma == std::string_view::npos ? comma : comma - pos));
      if (comma == std::string_view::npos || values.size() > parts) {
        break;
      }
      pos = comma + 1;
    }
  }
  if (values.size() != parts) {
    return Status::error("key \"" + shown(fileKey) + "\" needs " + std::to_string(parts) +
                         " values joined by ',' (one per part of the limit's key)");
  }
  for (std::string_view v : values) {
    if (v.empty()) {
      return Status::error("key \"" + shown(fileKey) + "\" has an empty value");
    }
  }
  return values;
}

std::uint32_t AllowanceTable::addSource(SourceKind kind, std::string name) {
  sources_.push_back(Source{kind, std::move(name)});
  return static_cast<std::uint32_t>(sources_.size() - 1);
}

void AllowanceTable::grow() {
  std::size_t capacity = std::max<std::size_t>(16, slots_.size() * 2);
  while (capacity < entries_.size() * 2 + 2) {
    capacity *= 2;
  }
  slots_.assign(capacity, 0);
  const std::size_t mask = capacity - 1;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    std::size_t slot = entries_[i].hash & mask;
    while (slots_[slot] != 0) {
      slot = (slot + 1) & mask;
    }
    slots_[slot] = static_cast<std::uint32_t>(i + 1);
  }
}

const AllowanceTable::Entry* AllowanceTable::find(std::string_view principal) const {
  if (slots_.empty()) {
    return nullptr;
  }
  const std::uint64_t hash = std::hash<std::string_view>()(principal);
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t slot = hash & mask; slots_[slot] != 0; slot = (slot + 1) & mask) {
    const Entry& e = entries_[slots_[slot] - 1];
    if (e.hash == hash && principalOf(e) == principal) {
      return &e;
    }
  }
  return nullptr;
}

bool AllowanceTable::add(std::string_view principal, std::string_view key,
                         std::vector<RateWindow> windows, std::uint32_t source, int line,
                         int column, std::string* problem) {
  if (const Entry* earlier = find(principal)) {
    *problem = "a second allowance for the same principal (the first: " + origin(*earlier) + ")";
    return false;
  }
  if (entries_.size() >= kMaxAllowanceFileEntries) {
    *problem = "more than " + std::to_string(kMaxAllowanceFileEntries) + " allowances";
    return false;
  }
  std::vector<std::int64_t> signature;
  for (const RateWindow& w : windows) {
    signature.push_back(w.max);
    signature.push_back(w.periodUs);
  }
  auto [set, fresh] = windowSetIndex_.try_emplace(std::move(signature),
                                                  static_cast<std::uint32_t>(windowSets_.size()));
  if (fresh) {
    windowSets_.push_back(std::move(windows));
  }
  Entry e;
  e.principalOffset = static_cast<std::uint32_t>(arena_.size());
  e.principalLength = static_cast<std::uint32_t>(principal.size());
  arena_.append(principal);
  e.keyOffset = static_cast<std::uint32_t>(arena_.size());
  e.keyLength = static_cast<std::uint32_t>(key.size());
  arena_.append(key);
  e.windowSet = set->second;
  e.source = source;
  e.line = static_cast<std::uint32_t>(std::max(line, 0));
  e.column = static_cast<std::uint32_t>(std::max(column, 0));
  e.hash = std::hash<std::string_view>()(principal);
  entries_.push_back(e);
  if (entries_.size() * 2 + 2 > slots_.size()) {
    grow();
  } else {
    const std::size_t mask = slots_.size() - 1;
    std::size_t slot = e.hash & mask;
    while (slots_[slot] != 0) {
      slot = (slot + 1) & mask;
    }
    slots_[slot] = static_cast<std::uint32_t>(entries_.size());
  }
  // An address part written @domain ("sender=@corp.local").
  for (std::string_view segment : principalSegments(principal)) {
    const std::size_t eq = segment.find('=');
    if (eq != std::string_view::npos && eq + 1 < segment.size() && segment[eq + 1] == '@') {
      const std::string_view name = segment.substr(0, eq);
      domainKeys_ = domainKeys_ || isAddressAttribute(name);
    }
  }
  return true;
}

const AllowanceTable::Entry* AllowanceTable::search(const std::vector<KeyPart>& key,
                                                    std::string_view principal) const {
  if (const Entry* exact = find(principal)) {
    return exact;
  }
  if (!domainKeys_) {
    return nullptr;
  }
  std::vector<std::string_view> segments = principalSegments(principal);
  if (segments.size() != key.size()) {
    return nullptr;
  }
  // The address parts with a domain: where their value's domain starts.
  std::vector<std::pair<std::size_t, std::size_t>> domains;  // segment, offset of '@'
  for (std::size_t i = 0; i < key.size() && domains.size() < kMaxDomainSearchParts; ++i) {
    if (!isAddressPart(key[i])) {
      continue;
    }
    const std::size_t valueStart = key[i].text.size() + 1;
    const std::size_t at = segments[i].rfind('@');
    if (at != std::string_view::npos && at > valueStart) {  // "part=user@domain"
      domains.emplace_back(i, at);
    }
  }
  const std::size_t n = domains.size();
  std::string candidate;
  for (std::size_t mask = 1; mask < (std::size_t{1} << n); ++mask) {
    candidate.clear();
    std::size_t d = 0;
    for (std::size_t i = 0; i < segments.size(); ++i) {
      if (i > 0) {
        candidate += kPrincipalSeparator;
      }
      if (d < n && domains[d].first == i) {
        // Bit n-1-d: the first address part is the most significant.
        if ((mask >> (n - 1 - d)) & 1) {
          candidate.append(segments[i].substr(0, key[i].text.size() + 1));
          candidate.append(segments[i].substr(domains[d].second));
        } else {
          candidate.append(segments[i]);
        }
        ++d;
      } else {
        candidate.append(segments[i]);
      }
    }
    if (const Entry* e = find(candidate)) {
      return e;
    }
  }
  return nullptr;
}

std::string AllowanceTable::origin(const Entry& e) const {
  const Source& source = sources_[e.source];
  const std::string key(std::string_view(arena_).substr(e.keyOffset, e.keyLength));
  switch (source.kind) {
    case SourceKind::kYaml:
      return source.name + ":" + std::to_string(e.line) + ":" + std::to_string(e.column);
    case SourceKind::kTexthash:
      return source.name + ", line " + std::to_string(e.line) + ": " + key;
    case SourceKind::kHash:
      return source.name + ": " + key;
  }
  return source.name;
}

namespace {

// One file entry (key, value as the file gives them) into the table; problems reported at
// `at`.
void addFileEntry(std::string_view fileKey, std::string_view value, const SourceLocation& at,
                  const std::vector<KeyPart>& key, const std::string& what, std::uint32_t source,
                  AllowanceTable* table, Diagnostics* diags) {
  const std::string prefix = what + " allowances_file: ";
  StatusOr<std::vector<std::string_view>> values = splitFileKey(fileKey, key.size());
  if (!values.isOk()) {
    diags->error(at, prefix + values.status().message());
    return;
  }
  const std::optional<std::string> principal = principalFromValues(key, *values);
  if (!principal) {
    diags->error(at, prefix + "key \"" + shown(fileKey) +
                         "\" is not a valid value for every part of the key");
    return;
  }
  StatusOr<std::vector<RateWindow>> windows = parseAllowanceValue(value);
  if (!windows.isOk()) {
    diags->error(at, prefix + "key \"" + shown(fileKey) + "\": " + windows.status().message());
    return;
  }
  std::string problem;
  if (!table->add(*principal, fileKey, std::move(*windows), source, at.line, at.column, &problem)) {
    diags->error(at, prefix + "key \"" + shown(fileKey) + "\": " + problem);
  }
}

}  // namespace

void loadAllowanceFile(std::string_view spec, const SourceLocation& where,
                       const std::vector<KeyPart>& key, const std::string& what,
                       AllowanceTable* table, Diagnostics* diags) {
  const std::size_t colon = spec.find(':');
  const std::string type(spec.substr(0, colon == std::string_view::npos ? 0 : colon));
  const std::string path(colon == std::string_view::npos ? "" : spec.substr(colon + 1));
  if ((type != "texthash" && type != "hash") || path.empty() || path[0] != '/') {
    diags->error(where, what + ": allowances_file: expected texthash:/path or hash:/path, got \"" +
                            shown(spec) + "\"");
    return;
  }
  Diagnostics fileDiags;  // reported below, at most kMaxReportedFileErrors of them
  if (type == "texthash") {
    const FileStamp stamp = stampFile(path);  // before the read: a later change is noticed
    StatusOr<std::string> text = readBoundedFile(path, kMaxTableFileBytes);
    if (!text.isOk()) {
      diags->error(where, what + ": allowances_file: " + text.status().message());
      return;
    }
    table->addWatchedFile(WatchedFile{path, stamp});
    const std::uint32_t source =
        table->addSource(AllowanceTable::SourceKind::kTexthash, std::string(spec));
    // smtputf8 off: keys fold to ASCII lower case, as principals do; every line postmap would
    // skip with a warning is an error here.
    Diagnostics reader;
    std::size_t entries = 0;
    forEachPostmapEntry(*text, SourceLocation{path, 1, 0}, &reader, /*smtputf8=*/false,
                        [&](PostmapSourceEntry&& entry) {
                          if (++entries > kMaxAllowanceFileEntries) {
                            return;  // table->add() refuses them: reported once below
                          }
                          addFileEntry(entry.key, entry.value,
                                       SourceLocation{path, entry.line, entry.column}, key, what,
                                       source, table, &fileDiags);
                        });
    for (const Diagnostic& d : reader.all()) {
      fileDiags.error(d.where, what + " allowances_file: " + d.message);
    }
    if (entries > kMaxAllowanceFileEntries) {
      diags->error(where, what + ": allowances_file: " + path + ": more than " +
                              std::to_string(kMaxAllowanceFileEntries) + " entries");
    }
  } else {
    const std::string dbPath = path + ".db";
    const FileStamp stamp = stampFile(dbPath);
    StatusOr<std::vector<PostmapDbEntry>> entries =
        readPostmapDb(dbPath, kMaxTableFileBytes, kMaxAllowanceFileEntries);
    if (!entries.isOk()) {
      diags->error(where, what + ": allowances_file: " + entries.status().message());
      return;
    }
    table->addWatchedFile(WatchedFile{dbPath, stamp});
    const std::uint32_t source =
        table->addSource(AllowanceTable::SourceKind::kHash, std::string(spec));
    for (const PostmapDbEntry& entry : *entries) {
      addFileEntry(entry.key, entry.value, SourceLocation{dbPath, 0, 0}, key, what, source, table,
                   &fileDiags);
    }
  }
  // A file with thousands of bad lines: the first ones say enough.
  const std::vector<Diagnostic>& found = fileDiags.all();
  for (std::size_t i = 0; i < found.size() && i < kMaxReportedFileErrors; ++i) {
    diags->error(found[i].where, found[i].message);
  }
  if (found.size() > kMaxReportedFileErrors) {
    diags->error(where, what + ": allowances_file: " +
                            std::to_string(found.size() - kMaxReportedFileErrors) +
                            " more problems in " + std::string(spec));
  }
}

}  // namespace relaykit::policy
