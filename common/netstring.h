// SPDX-License-Identifier: Apache-2.0
// netstring.h: incremental netstring codec ("<len>:<data>,"), as socketmap tables speak it.
//
// NetstringDecoder is a state machine fed arbitrary chunks (one byte at a time works): it never
// buffers more than its length limit plus the length prefix, and it refuses, as soon as the bytes
// show it, a length with a non-digit, a leading zero ("01:"), more digits than the limit needs,
// a length above the limit, and a missing ',' terminator. After an error the decoder stays failed
// (the connection must be closed: the stream cannot be resynchronised).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace relaykit {

// Largest netstring payload accepted by default: Postfix sends queries up to 10000 bytes and
// accepts replies up to 100000 bytes (socketmap_max_reply_size); we accept up to the same.
inline constexpr std::size_t kMaxNetstringBytes = 100000;

class NetstringDecoder {
 public:
  enum class State { kNeedMore, kMessage, kError };
  // Why decoding failed, for callers that act on it (metrics labels); error() is for people.
  enum class Error { kNone, kBadLength, kTooLong, kMissingComma };

  explicit NetstringDecoder(std::size_t maxLength = kMaxNetstringBytes);

  // Consumes bytes from `data` up to and including the end of the first complete netstring (or up
  // to the first bad byte). Returns the number of bytes consumed. After it, state() is kMessage
  // (take it with takeMessage(), then feed the rest), kNeedMore (all of `data` was consumed) or
  // kError (see error()).
  std::size_t feed(std::string_view data);

  State state() const { return state_; }
  // The decoded payload; resets the decoder for the next netstring. Only valid in kMessage.
  std::string takeMessage();
  // Why decoding failed ("bad length", "missing ','", "netstring too long: N > MAX", ...).
  const std::string& error() const { return error_; }
  Error errorKind() const { return errorKind_; }
  // True while part of a netstring has been received (so EOF now would truncate it).
  bool inProgress() const { return phase_ != Phase::kLengthStart; }

 private:
  enum class Phase { kLengthStart, kLength, kData, kComma };
  void fail(Error kind, std::string why);

  std::size_t maxLength_;
  std::size_t maxDigits_;
  State state_ = State::kNeedMore;
  Phase phase_ = Phase::kLengthStart;
  std::size_t length_ = 0;
  std::size_t digits_ = 0;
  std::string data_;
  std::string error_;
  Error errorKind_ = Error::kNone;
};

// "<len>:<data>,"
std::string encodeNetstring(std::string_view data);
// Appends the encoding of `data` to `out` (one contiguous buffer, for a single write).
void appendNetstring(std::string_view data, std::string* out);

}  // namespace relaykit
