// SPDX-License-Identifier: Apache-2.0
// policy_codec.cc: incremental parser and reply formatter for the policy delegation protocol.
#include "policyd/policy_codec.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace relaykit::policy {

namespace {
constexpr std::size_t kReservedAttributes = 48;  // Postfix 3.7 sends ~30 attributes,
constexpr std::size_t kReservedText = 1024;      // ~600 bytes
}  // namespace

Attribute attributeOf(std::string_view name) {
  // By length first: most names of a Postfix request are ruled out without comparing a byte.
  auto is = [&name](const char* want) { return std::memcmp(name.data(), want, name.size()) == 0; };
  switch (name.size()) {
    case 4:
      return is("size") ? Attribute::kSize : Attribute::kCount;
    case 6:
      return is("sender") ? Attribute::kSender : Attribute::kCount;
    case 8:
      return is("instance")   ? Attribute::kInstance
             : is("queue_id") ? Attribute::kQueueId
                              : Attribute::kCount;
    case 9:
      return is("recipient") ? Attribute::kRecipient : Attribute::kCount;
    case 13:
      return is("sasl_username") ? Attribute::kSaslUsername : Attribute::kCount;
    case 14:
      return is("protocol_state")   ? Attribute::kProtocolState
             : is("client_address") ? Attribute::kClientAddress
                                    : Attribute::kCount;
    case 15:
      return is("recipient_count") ? Attribute::kRecipientCount : Attribute::kCount;
    default:
      return Attribute::kCount;
  }
}

void PolicyRequest::reserveOnFirst() {
  if (spans_.capacity() == 0) {
    spans_.reserve(kReservedAttributes);
  }
  if (text_.capacity() < kReservedText) {
    text_.reserve(kReservedText);
  }
}

void PolicyRequest::add(std::string_view name, std::string_view value) {
  reserveOnFirst();
  const std::size_t at = text_.size();
  text_.append(name);
  text_ += '=';
  text_.append(value);
  spans_.push_back(Span{static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(name.size()),
                        static_cast<std::uint32_t>(at + name.size() + 1),
                        static_cast<std::uint32_t>(value.size())});
  const Attribute a = attributeOf(name);
  if (a != Attribute::kCount) {
    known_[static_cast<std::size_t>(a)] = static_cast<std::uint32_t>(spans_.size());
  }
}

std::string_view PolicyRequest::get(std::string_view wanted) const {
  const Attribute a = attributeOf(wanted);
  if (a != Attribute::kCount) {
    return get(a);
  }
  const char* text = text_.data();
  for (std::size_t i = spans_.size(); i-- > 0;) {
    const Span& s = spans_[i];
    if (s.nameLength == wanted.size() &&
        std::char_traits<char>::compare(text + s.name, wanted.data(), wanted.size()) == 0) {
      return std::string_view(text + s.value, s.valueLength);
    }
  }
  return {};
}

bool PolicyRequest::has(std::string_view wanted) const {
  const Attribute a = attributeOf(wanted);
  if (a != Attribute::kCount) {
    return known_[static_cast<std::size_t>(a)] != 0;
  }
  const char* text = text_.data();
  for (const Span& s : spans_) {
    if (s.nameLength == wanted.size() &&
        std::char_traits<char>::compare(text + s.name, wanted.data(), wanted.size()) == 0) {
      return true;
    }
  }
  return false;
}

void PolicyCodec::recycle(PolicyRequest&& done) {
  if (spare_.spans_.capacity() == 0 && done.spans_.capacity() != 0) {
    spare_ = std::move(done);
    spare_.clear();
  }
}

Status PolicyCodec::fail(std::string message) {
  error_ = Status::error(std::move(message));
  current_.clear();
  lineBytes_ = 0;
  return error_;
}

PolicyCodec::LineKind PolicyCodec::badLine(bool emptyRequest, std::size_t eq) {
  if (emptyRequest) {
    fail("empty policy request");
  } else if (eq == std::string_view::npos) {
    fail("malformed attribute line (no '=')");
  } else if (eq == 0) {
    fail("malformed attribute line (empty name)");
  } else {
    fail("too many attributes (limit " + std::to_string(kMaxAttributeCount) + ")");
  }
  return LineKind::kError;
}

// The names of the indexed attributes are 4, 6, 8, 9, 13, 14 or 15 bytes long: half the names of
// a Postfix request are not even looked at.
constexpr std::uint32_t kIndexedLengths =
    1u << 4 | 1u << 6 | 1u << 8 | 1u << 9 | 1u << 13 | 1u << 14 | 1u << 15;

inline PolicyCodec::LineKind PolicyCodec::takeLine(std::size_t at, std::string_view line,
                                                   std::size_t eq) {
  std::size_t length = line.size();
  if (length != 0 && line[length - 1] == '\r') {
    --length;
  }
  std::vector<PolicyRequest::Span>& spans = current_.spans_;
  if (length == 0) {
    return spans.empty() ? badLine(true, eq) : LineKind::kEnd;
  }
  if (eq == std::string_view::npos || eq == 0 || spans.size() >= kMaxAttributeCount) {
    return badLine(false, eq);
  }
  if (spans.capacity() == 0) {
    spans.reserve(kMaxAttributeCount);  // never again: a request has at most this many
  }
  spans.push_back(PolicyRequest::Span{
      static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(eq),
      static_cast<std::uint32_t>(at + eq + 1), static_cast<std::uint32_t>(length - eq - 1)});
  if (eq < 32 && ((kIndexedLengths >> eq) & 1) != 0) {
    const Attribute a = attributeOf(std::string_view(line.data(), eq));
    if (a != Attribute::kCount) {
      current_.known_[static_cast<std::size_t>(a)] = static_cast<std::uint32_t>(spans.size());
    }
  }
  return LineKind::kAttribute;
}

void PolicyCodec::complete(std::vector<PolicyRequest>* out) {
  out->push_back(std::move(current_));
  current_ = std::move(spare_);
  current_.clear();
  spare_.clear();
  requestBytes_ = 0;
}

namespace {

constexpr std::size_t kBlock = 64;

// Bit i of *newlines / *equals: p[i] is '\n' / '='; `n` (<= kBlock) bytes are read.
void scanBlock(const char* p, std::size_t n, std::uint64_t* newlines, std::uint64_t* equals) {
#if defined(__SSE2__)
  alignas(16) char padded[kBlock];
  if (n < kBlock) {
    std::memset(padded, 0, kBlock);
    std::memcpy(padded, p, n);
    p = padded;
  }
  const __m128i nl = _mm_set1_epi8('\n');
  const __m128i eq = _mm_set1_epi8('=');
  auto mask = [p](int i, __m128i c) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i));
    return static_cast<std::uint64_t>(
               static_cast<std::uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, c))))
           << (16 * i);
  };
  *newlines = mask(0, nl) | mask(1, nl) | mask(2, nl) | mask(3, nl);
  *equals = mask(0, eq) | mask(1, eq) | mask(2, eq) | mask(3, eq);
#else
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  for (std::size_t i = 0; i < n; ++i) {
    a |= static_cast<std::uint64_t>(p[i] == '\n') << i;
    b |= static_cast<std::uint64_t>(p[i] == '=') << i;
  }
  *newlines = a;
  *equals = b;
#endif
}

}  // namespace

// The first line of a chunk may complete one begun in an earlier chunk (kept in the request's
// text); it is finished on its own. The rest is scanned 64 bytes at a time for '\n' and '='
// (two bit masks), so a line costs a few instructions beyond its bytes. Whole lines are not
// copied one by one: a run of them (from runStart in `data`) is appended to the request's text
// in one go when the request ends or the chunk ends; a line's offset in the text is known
// before its bytes are copied (textAtRun + its distance from runStart).
Status PolicyCodec::feed(std::string_view data, std::vector<PolicyRequest>* out) {
  if (!error_.isOk()) {
    return error_;
  }
  const char* const bytes = data.data();
  const std::size_t size = data.size();
  std::size_t pos = 0;
  if (lineBytes_ > 0 && size > 0) {
    const void* found = std::memchr(bytes, '\n', size);
    const std::size_t end =
        found == nullptr ? size : static_cast<std::size_t>(static_cast<const char*>(found) - bytes);
    if (lineBytes_ + end > kMaxLineLength + 1) {  // +1: a '\r' before the '\n'
      return fail("attribute line longer than " + std::to_string(kMaxLineLength) + " bytes");
    }
    requestBytes_ += end + (found == nullptr ? 0 : 1);
    if (requestBytes_ > kMaxRequestBytes) {
      return fail("policy request larger than " + std::to_string(kMaxRequestBytes) + " bytes");
    }
    current_.text_.append(bytes, found == nullptr ? size : end + 1);
    if (found == nullptr) {
      lineBytes_ += end;
      return Status::ok();
    }
    const std::string_view line(current_.text_.data() + lineStart_, lineBytes_ + end);
    lineBytes_ = 0;
    pos = end + 1;
    const std::size_t eq = line.find('=');
    switch (takeLine(lineStart_, line, eq)) {
      case LineKind::kError:
        return error_;
      case LineKind::kEnd:
        complete(out);
        break;
      case LineKind::kAttribute:
        break;
    }
  }
  std::size_t runStart = pos;  // the bytes from here on are not in the request's text yet
  std::size_t textAtRun = current_.text_.size();
  std::size_t lineAt = pos;                   // where the current line begins in `data`
  std::size_t eqAt = std::string_view::npos;  // its first '=' in `data`
  for (std::size_t base = pos; base < size; base += kBlock) {
    std::uint64_t newlines = 0;
    std::uint64_t equals = 0;
    scanBlock(bytes + base, std::min(kBlock, size - base), &newlines, &equals);
    for (std::uint64_t events = newlines | equals; events != 0; events &= events - 1) {
      const int bit = __builtin_ctzll(events);
      const std::size_t at = base + static_cast<std::size_t>(bit);
      if (((newlines >> bit) & 1) == 0) {
        if (eqAt == std::string_view::npos) {
          eqAt = at;
        }
        continue;
      }
      const std::size_t length = at - lineAt;
      if (length > kMaxLineLength + 1) {
        return fail("attribute line longer than " + std::to_string(kMaxLineLength) + " bytes");
      }
      requestBytes_ += length + 1;
      if (requestBytes_ > kMaxRequestBytes) {
        return fail("policy request larger than " + std::to_string(kMaxRequestBytes) + " bytes");
      }
      const std::string_view line(bytes + lineAt, length);
      const std::size_t eq = eqAt == std::string_view::npos ? eqAt : eqAt - lineAt;
      const std::size_t textAt = textAtRun + (lineAt - runStart);
      lineAt = at + 1;
      eqAt = std::string_view::npos;
      switch (takeLine(textAt, line, eq)) {
        case LineKind::kError:
          return error_;
        case LineKind::kEnd:
          if (current_.text_.capacity() < kReservedText) {
            current_.text_.reserve(kReservedText);
          }
          current_.text_.append(bytes + runStart, lineAt - runStart);
          complete(out);
          runStart = lineAt;
          textAtRun = 0;
          break;
        case LineKind::kAttribute:
          break;
      }
    }
  }
  if (lineAt < size) {  // a line without its newline yet: the rest comes in a later chunk
    const std::size_t length = size - lineAt;
    if (length > kMaxLineLength + 1) {
      return fail("attribute line longer than " + std::to_string(kMaxLineLength) + " bytes");
    }
    requestBytes_ += length;
    if (requestBytes_ > kMaxRequestBytes) {
      return fail("policy request larger than " + std::to_string(kMaxRequestBytes) + " bytes");
    }
    lineStart_ = textAtRun + (lineAt - runStart);
    lineBytes_ = length;
  }
  if (size > runStart) {
    if (current_.text_.capacity() < kReservedText) {
      current_.text_.reserve(kReservedText);
    }
    current_.text_.append(bytes + runStart, size - runStart);
  }
  return Status::ok();
}

void formatPolicyReply(std::string_view action, std::string* out) {
  out->assign("action=", 7);
  const std::size_t at = out->size();
  out->append(action);
  for (std::size_t i = at; i < out->size(); ++i) {
    const auto u = static_cast<unsigned char>((*out)[i]);
    if (u < 0x20 || u == 0x7f) {
      (*out)[i] = ' ';
    }
  }
  out->append("\n\n", 2);
}

std::string formatPolicyReply(std::string_view action) {
  std::string reply;
  reply.reserve(action.size() + 9);
  formatPolicyReply(action, &reply);
  return reply;
}

}  // namespace relaykit::policy
