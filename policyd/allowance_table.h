// SPDX-License-Identifier: Apache-2.0
// allowance_table.h: the per-principal allowances of one limit, from its `allowances:` entries
// and its `allowances_file:` (a Postfix texthash: source or a postmap hash: .db), in one index.
//
// Each allowance is keyed by the principal its key text names, normalised exactly as a request's
// principal is (rate_key.h: case, address extensions, client networks), so an allowance applies
// to exactly the counter its principal's mail is charged to. A file key is the value of the key
// part for a one-part key (`monitor@corp.local`, `10.1.2.0` for client_address/24), and the
// values in the order of `key:` joined by ',' for a composite key (`bob,corp.local`). An address
// part (sender, recipient, original_recipient) may be written `@domain`: it then applies to every
// address of that domain that has no allowance of its own (search()). A file value is one window
// or several: `10000/1d` or `100/1m, 10000/1d` (max/duration, the duration as in `per:`).
//
// The index is one arena and two flat arrays (no allocation per entry; window sets are shared by
// the entries that list the same windows), so building, searching and freeing a
// 1,000,000-entry table takes a handful of allocations and frees (returning the pages of a
// 100,000-entry table still takes a few ms: relaykit-policyd frees replaced snapshots off its
// event loop). Not thread-safe while being built; read-only (any thread) once built.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/diagnostics.h"
#include "common/file_stamp.h"
#include "common/status.h"
#include "policyd/gcra.h"
#include "policyd/rate_key.h"

namespace relaykit::policy {

// Entries of one allowances_file (and of a limit's allowances in all).
inline constexpr std::size_t kMaxAllowanceFileEntries = 1000000;
// An allowance value: its length and how many windows it lists.
inline constexpr std::size_t kMaxAllowanceValueBytes = 1024;
inline constexpr std::size_t kMaxAllowanceWindows = 16;
// The address parts of a key whose @domain forms are searched (2^3 = 8 keys per decision).
inline constexpr std::size_t kMaxDomainSearchParts = 3;

// "N/DURATION[, N/DURATION]..." -> windows (1 <= N <= kMaxWindowMax, 0 < DURATION <= 366d, no two
// windows of one period, spaces around ',' allowed). Errors say what is wrong.
StatusOr<std::vector<RateWindow>> parseAllowanceValue(std::string_view text);

// The principal named by one value per part of `key` (as in a `match:` or a file key), or
// nullopt when a value normalises to nothing (rate_key.h principalOf).
std::optional<std::string> principalFromValues(const std::vector<KeyPart>& key,
                                               const std::vector<std::string_view>& values);

// Splits a file key into one value per part (',' between parts; a one-part key is not split).
// Errors: the wrong number of values, an empty value.
StatusOr<std::vector<std::string_view>> splitFileKey(std::string_view fileKey, std::size_t parts);

class AllowanceTable {
 public:
  // Where entries came from: `allowances:` in the YAML file, or a file.
  enum class SourceKind { kYaml, kTexthash, kHash };
  struct Entry {
    std::uint32_t principalOffset = 0;  // into the arena
    std::uint32_t principalLength = 0;
    std::uint32_t keyOffset = 0;  // the key as written (file entries), into the arena
    std::uint32_t keyLength = 0;
    std::uint32_t windowSet = 0;  // index into the window sets
    std::uint32_t source = 0;     // index into the sources
    std::uint32_t line = 0;       // 0: none (hash files)
    std::uint32_t column = 0;
    std::uint64_t hash = 0;
  };

  // Registers a source ("texthash:/etc/relaykit/allow", the YAML file's path); returns its index.
  std::uint32_t addSource(SourceKind kind, std::string name);
  // Adds one allowance. Returns false (nothing added) when `principal` already has one, or the
  // table holds kMaxAllowanceFileEntries; *problem then says why (naming the earlier entry).
  bool add(std::string_view principal, std::string_view key, std::vector<RateWindow> windows,
           std::uint32_t source, int line, int column, std::string* problem);
  // A file the table was read from, with its stamp taken before the read (for hot reload).
  void addWatchedFile(WatchedFile file) { files_.push_back(std::move(file)); }

  // The entry of exactly `principal`, or nullptr.
  const Entry* find(std::string_view principal) const;
  // The allowance that applies to a request's `principal` for a limit keyed by `key`: its own,
  // else (when some entry is written with @domain) the most specific @domain form: the key's
  // address parts replaced by their @domain, the first part the most significant (for
  // [sender, recipient]: exact, then sender exact with @recipient-domain, then @sender-domain
  // with the recipient exact, then both domains). nullptr when none applies.
  const Entry* search(const std::vector<KeyPart>& key, std::string_view principal) const;

  const std::vector<RateWindow>& windows(const Entry& e) const { return windowSets_[e.windowSet]; }
  // Where an entry was written: "FILE:LINE:COL" (YAML), "texthash:/path, line N: KEY",
  // "hash:/path: KEY".
  std::string origin(const Entry& e) const;
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const std::vector<WatchedFile>& files() const { return files_; }

 private:
  std::string_view principalOf(const Entry& e) const {
    return std::string_view(arena_).substr(e.principalOffset, e.principalLength);
  }
  void grow();

  struct Source {
    SourceKind kind;
    std::string name;
  };
  std::string arena_;
  std::vector<Entry> entries_;
  std::vector<std::uint32_t> slots_;  // open addressing, linear probing: entry index + 1, 0 empty
  std::vector<std::vector<RateWindow>> windowSets_;
  std::map<std::vector<std::int64_t>, std::uint32_t> windowSetIndex_;  // max, period, ... -> set
  std::vector<Source> sources_;
  std::vector<WatchedFile> files_;
  bool domainKeys_ = false;  // some principal has an @domain address part
};

// Reads `spec` ("texthash:/path" or "hash:/path", the latter read from /path.db) into `table`
// for a limit keyed by `key`. Every problem is an error: a line the postmap reader skips, a key
// that does not name a principal, a bad value, a principal given twice (also when given in
// `allowances:`), an unreadable or oversized file. Errors point at the file's line (texthash) or
// name the key (hash); `where` (the allowances_file key in the YAML) is used for the file as a
// whole; `what` names the limit. Blocks on file I/O (the reload worker, not the loop).
void loadAllowanceFile(std::string_view spec, const SourceLocation& where,
                       const std::vector<KeyPart>& key, const std::string& what,
                       AllowanceTable* table, Diagnostics* diags);

}  // namespace relaykit::policy
