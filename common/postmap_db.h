// SPDX-License-Identifier: Apache-2.0
// postmap_db.h: the entries of a Postfix `hash:` table, the Berkeley DB file `postmap hash:PATH`
// writes as PATH.db (Debian's Postfix uses Berkeley DB 5.3, read here with Debian's libdb).
//
// readPostmapDb() opens the .db read-only and walks it with a cursor, under a shared flock(2)
// on the file as Postfix's own readers take one (postmap truncates and rewrites an existing .db
// in place under an exclusive flock; a reader that did not wait would see it half written).
// postmap stores each key and value with a trailing NUL unless run with -N; Postfix's dict_db
// looks a key up with the NUL first and without it second. Here every entry loses its trailing
// NUL, and when a key is stored both ways the entry with the NUL wins, so each key reads as
// `postmap -q KEY hash:PATH` answers it. Keys are returned as stored (postmap lower-cases them
// unless run with -f).
// Bounds: the file at most `maxBytes` (checked before it is opened by libdb), at most
// `maxEntries` entries, keys and values at most kMaxPostmapDbItemBytes each; a writer holding
// its lock longer than kPostmapDbLockWait is an error. Errors name the file. Never throws;
// blocks (the lock, the reads): call it off any event loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"

namespace relaykit {

inline constexpr std::size_t kMaxPostmapDbItemBytes = 64 * 1024;
inline constexpr std::chrono::milliseconds kPostmapDbLockWait{10000};

struct PostmapDbEntry {
  std::string key;
  std::string value;
};

// Every entry of the hash database `dbPath` (the .db file itself), in the database's order.
StatusOr<std::vector<PostmapDbEntry>> readPostmapDb(const std::string& dbPath, std::size_t maxBytes,
                                                    std::size_t maxEntries);

}  // namespace relaykit
