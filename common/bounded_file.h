// SPDX-License-Identifier: Apache-2.0
// bounded_file.h: the one reader for every file the configuration names (the config itself,
// table files, password files, key files).
//
// readBoundedFile() reads a whole REGULAR file of at most `maxBytes` bytes. It opens with
// O_NONBLOCK|O_CLOEXEC|O_NOCTTY and checks fstat() before reading, so a FIFO, a directory, a
// device (/dev/zero) or a socket is refused at once instead of hanging or reading forever; a file
// over the limit is refused before it is read (and a file that grows while read is cut off at the
// limit and refused). Every error message names the file: "cannot read PATH: REASON" (or
// "cannot read LABEL: REASON" when the caller's message already carries the path), and carries
// a kind (kNotFound, kPermissionDenied, kNotRegularFile, kTooLarge, kIo). Never throws.
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace relaykit {

// The configuration file (relaykit.yaml).
inline constexpr std::size_t kMaxConfigFileBytes = 64 * 1024 * 1024;
// A table file named by `file:` (hash:, texthash:, regexp:, pcre: source text).
inline constexpr std::size_t kMaxTableFileBytes = 256 * 1024 * 1024;
// A rule file (milter header_checks and the like).
inline constexpr std::size_t kMaxRuleFileBytes = 64 * 1024 * 1024;
// A secret: a password file, a private key.
inline constexpr std::size_t kMaxSecretFileBytes = 64 * 1024;

// The file's bytes, or an error naming `path` (see above).
StatusOr<std::string> readBoundedFile(const std::string& path, std::size_t maxBytes,
                                      const std::string& label = std::string());

}  // namespace relaykit
