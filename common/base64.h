// SPDX-License-Identifier: Apache-2.0
// base64.h: standard base64 (RFC 4648 section 4, with padding), the one codec for DKIM tags and
// keys and RFC 2047 "B" encoded-words. Pure functions, linear in their input.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace relaykit {

// Encodes `bytes` with padding and no line breaks.
std::string base64Encode(std::string_view bytes);

// Decodes strict base64: SP, HTAB, CR and LF are ignored anywhere (DKIM's b=, bh= and p= allow
// folding whitespace); any other character outside the alphabet, data after padding, more than
// two padding characters or a length that is not a multiple of four is an error.
StatusOr<std::string> base64Decode(std::string_view text);

// Decodes the text of an RFC 2047 "B" encoded-word as mail readers do: decoding stops at the
// first '=', missing padding is accepted; nullopt for a character outside the alphabet.
std::optional<std::string> base64DecodeLenient(std::string_view text);

}  // namespace relaykit
