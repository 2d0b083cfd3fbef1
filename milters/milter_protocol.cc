// SPDX-License-Identifier: Apache-2.0
// milter_protocol.cc: the milter packet decoder, command parsers and reply encoders; see
// milter_protocol.h for the contract.
#include "milters/milter_protocol.h"

#include <cstdio>
#include <cstring>

namespace relaykit::milter {
namespace {

// A decoder keeps the buffer of a packet that arrived in pieces for the next one, up to this.
constexpr std::size_t kKeptBufferBytes = 16 * 1024;

std::uint32_t readU32(std::string_view data, std::size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data() + at);
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

// Writes `v` big-endian at `p` (four bytes).
void writeU32(char* p, std::uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

// One packet written in place: the header (length covering the command byte and `dataLength`
// bytes) and command after a single resize, then its fields; the caller writes exactly
// `dataLength` bytes (a reply of a few fields costs one size check, not one per field).
class PacketWriter {
 public:
  PacketWriter(std::string* out, char command, std::size_t dataLength) {
    const std::size_t start = out->size();
    out->resize(start + kMilterLengthBytes + 1 + dataLength);
    p_ = out->data() + start;
    u32(static_cast<std::uint32_t>(dataLength + 1));
    *p_++ = command;
  }
  void u32(std::uint32_t v) {
    writeU32(p_, v);
    p_ += 4;
  }
  void bytes(std::string_view s) {
    if (!s.empty()) {
      std::memcpy(p_, s.data(), s.size());
      p_ += s.size();
    }
  }
  void byte(char c) { *p_++ = c; }
  // `s` and its terminating NUL.
  void string(std::string_view s) {
    bytes(s);
    *p_++ = '\0';
  }

 private:
  char* p_;
};

// The NUL-terminated string starting at `*pos`; advances past its NUL. False when none is left.
// Inlined: a header packet has two, a macro packet two per macro.
[[gnu::always_inline]] inline bool takeString(std::string_view data, std::size_t* pos,
                                              std::string_view* out) {
  if (*pos >= data.size()) {
    return false;
  }
  const char* begin = data.data() + *pos;
  const auto* end = static_cast<const char*>(std::memchr(begin, '\0', data.size() - *pos));
  if (end == nullptr) {
    return false;
  }
  *out = std::string_view(begin, static_cast<std::size_t>(end - begin));
  *pos += out->size() + 1;
  return true;
}

}  // namespace

MilterPacketDecoder::MilterPacketDecoder(std::size_t maxPacket) : maxPacket_(maxPacket) {}

void MilterPacketDecoder::reset() {
  state_ = State::kNeedMore;
  lengthBytes_ = {};
  have_ = 0;
  length_ = 0;
  command_ = 0;
  if (buffer_.capacity() > kKeptBufferBytes) {
    std::string().swap(buffer_);
  } else {
    buffer_.clear();
  }
  view_ = std::string_view();
  error_.clear();
}

void MilterPacketDecoder::fail(std::string why) {
  state_ = State::kError;
  error_ = std::move(why);
  view_ = {};
}

std::size_t MilterPacketDecoder::feed(std::string_view data) {
  if (state_ == State::kError) {
    return 0;
  }
  if (state_ == State::kPacket) {
    state_ = State::kNeedMore;
    view_ = {};
    if (!buffer_.empty()) {  // the last packet came in pieces
      buffer_.clear();
      if (buffer_.capacity() > kKeptBufferBytes) {
        std::string().swap(buffer_);
      }
    }
  }
  if (have_ == 0 && data.size() > kMilterLengthBytes) {
    // The usual case: a whole packet at the front of `data`, handed out as a view.
    const std::uint32_t length = readU32(data, 0);
    if (length != 0 && length <= maxPacket_ && data.size() - kMilterLengthBytes >= length) {
      command_ = data[kMilterLengthBytes];
      view_ = data.substr(kMilterLengthBytes + 1, length - 1);
      state_ = State::kPacket;
      return kMilterLengthBytes + length;
    }
  }
  std::size_t pos = 0;
  if (have_ == 0 && data.size() >= kMilterLengthBytes) {
    std::memcpy(lengthBytes_.data(), data.data(), kMilterLengthBytes);  // the usual case
    have_ = pos = kMilterLengthBytes;
  }
  while (have_ < kMilterLengthBytes && pos < data.size()) {
    lengthBytes_[have_++] = static_cast<unsigned char>(data[pos++]);
  }
  if (have_ < kMilterLengthBytes) {
    return pos;
  }
  if (have_ == kMilterLengthBytes && length_ == 0) {
    const std::uint32_t length = (std::uint32_t{lengthBytes_[0]} << 24) |
                                 (std::uint32_t{lengthBytes_[1]} << 16) |
                                 (std::uint32_t{lengthBytes_[2]} << 8) | lengthBytes_[3];
    if (length == 0) {
      fail("packet length 0");
      return pos;
    }
    if (length > maxPacket_) {
      fail("packet length " + std::to_string(length) + " over the limit of " +
           std::to_string(maxPacket_));
      return pos;
    }
    length_ = length;
    if (data.size() - pos >= length_) {
      // The whole packet is here: hand out a view of it, no copy.
      command_ = data[pos];
      view_ = data.substr(pos + 1, length_ - 1);
      pos += length_;
      have_ = 0;
      length_ = 0;
      state_ = State::kPacket;
      return pos;
    }
    buffer_.reserve(length_);
  }
  const std::size_t missing = length_ - (have_ - kMilterLengthBytes);
  const std::size_t take = std::min(missing, data.size() - pos);
  buffer_.append(data.data() + pos, take);
  pos += take;
  have_ += take;
  if (take == missing) {
    command_ = buffer_[0];
    view_ = std::string_view(buffer_).substr(1);
    have_ = 0;
    length_ = 0;
    state_ = State::kPacket;
  }
  return pos;
}

StatusOr<OptionNegotiation> parseOptionNegotiation(std::string_view data) {
  OptionNegotiation out;
  if (data.size() < kMilterLengthBytes) {
    return Status::error("option negotiation of " + std::to_string(data.size()) + " bytes");
  }
  out.version = readU32(data, 0);
  if (data.size() >= 2 * kMilterLengthBytes) {
    const std::uint32_t actions = readU32(data, 4);
    out.actions = actions == 0 ? kV1Actions : actions;
  }
  if (data.size() >= 3 * kMilterLengthBytes) {
    const std::uint32_t protocol = readU32(data, 8);
    out.protocol = protocol == 0 ? kV1Protocol : protocol;
  }
  return out;
}

Status parseMacrosInto(std::string_view data, MacroDefinitions* out) {
  out->values.clear();
  if (data.empty()) {
    return Status::error("macro packet without a command");
  }
  out->stage = data[0];
  std::size_t pos = 1;
  while (pos < data.size()) {
    std::string_view name;
    std::string_view value;
    if (!takeString(data, &pos, &name) || !takeString(data, &pos, &value)) {
      return Status::error("macro packet: a name without a NUL-terminated value");
    }
    out->values.emplace_back(name, value);
  }
  return Status::ok();
}

StatusOr<MacroDefinitions> parseMacros(std::string_view data) {
  MacroDefinitions out;
  Status st = parseMacrosInto(data, &out);
  if (!st) {
    return st;
  }
  return out;
}

StatusOr<ConnectInfo> parseConnect(std::string_view data) {
  ConnectInfo out;
  std::size_t pos = 0;
  if (!takeString(data, &pos, &out.hostname) || pos >= data.size()) {
    return Status::error("connect packet without hostname and family");
  }
  out.family = data[pos++];
  if (out.family == SMFIA_UNKNOWN) {
    return out;
  }
  if (data.size() - pos < 2) {
    return Status::error("connect packet without a port");
  }
  out.port = static_cast<std::uint16_t>((static_cast<unsigned char>(data[pos]) << 8) |
                                        static_cast<unsigned char>(data[pos + 1]));
  pos += 2;
  if (!takeString(data, &pos, &out.address)) {
    return Status::error("connect packet without a NUL-terminated address");
  }
  if (out.family == SMFIA_INET6 && out.address.size() > 5 &&
      (out.address.substr(0, 5) == "IPv6:" || out.address.substr(0, 5) == "ipv6:")) {
    out.address.remove_prefix(5);
  }
  return out;
}

StatusOr<HeaderInfo> parseHeader(std::string_view data) {
  HeaderInfo out;
  std::size_t pos = 0;
  if (!takeString(data, &pos, &out.name) || !takeString(data, &pos, &out.value)) {
    return Status::error("header packet without NUL-terminated name and value");
  }
  return out;
}

Status splitStrings(std::string_view data, std::vector<std::string_view>* out) {
  out->clear();
  if (!data.empty() && data.back() != '\0') {
    return Status::error("strings not NUL-terminated");
  }
  std::size_t pos = 0;
  std::string_view s;
  while (takeString(data, &pos, &s)) {
    out->push_back(s);
  }
  return Status::ok();
}

std::string commandName(char command) {
  switch (command) {
    case SMFIC_ABORT:
      return "SMFIC_ABORT";
    case SMFIC_BODY:
      return "SMFIC_BODY";
    case SMFIC_CONNECT:
      return "SMFIC_CONNECT";
    case SMFIC_MACRO:
      return "SMFIC_MACRO";
    case SMFIC_BODYEOB:
      return "SMFIC_BODYEOB";
    case SMFIC_HELO:
      return "SMFIC_HELO";
    case SMFIC_QUIT_NC:
      return "SMFIC_QUIT_NC";
    case SMFIC_HEADER:
      return "SMFIC_HEADER";
    case SMFIC_MAIL:
      return "SMFIC_MAIL";
    case SMFIC_EOH:
      return "SMFIC_EOH";
    case SMFIC_OPTNEG:
      return "SMFIC_OPTNEG";
    case SMFIC_QUIT:
      return "SMFIC_QUIT";
    case SMFIC_RCPT:
      return "SMFIC_RCPT";
    case SMFIC_DATA:
      return "SMFIC_DATA";
    case SMFIC_UNKNOWN:
      return "SMFIC_UNKNOWN";
    default: {
      char buf[24];
      std::snprintf(buf, sizeof buf, "command 0x%02x", static_cast<unsigned char>(command));
      return buf;
    }
  }
}

void appendPacket(std::string* out, char command, std::string_view data) {
  PacketWriter(out, command, data.size()).bytes(data);
}

void appendSimpleReply(std::string* out, char reply) {
  PacketWriter(out, reply, 0);
}

void appendOptionNegotiationReply(std::string* out, std::uint32_t version, std::uint32_t actions,
                                  std::uint32_t protocol,
                                  const std::array<std::string, kMacroStages>& macroLists) {
  std::size_t length = 3 * kMilterLengthBytes;
  const bool lists = (actions & SMFIF_SETSYMLIST) != 0;
  if (lists) {
    for (const std::string& names : macroLists) {
      if (!names.empty()) {
        length += kMilterLengthBytes + std::min(names.size(), kMaxMacroListBytes) + 1;
      }
    }
  }
  PacketWriter w(out, SMFIC_OPTNEG, length);
  w.u32(version);
  w.u32(actions);
  w.u32(protocol);
  if (lists) {
    for (std::size_t stage = 0; stage < kMacroStages; ++stage) {
      const std::string& names = macroLists[stage];
      if (!names.empty()) {
        w.u32(static_cast<std::uint32_t>(stage));
        w.string(std::string_view(names).substr(0, kMaxMacroListBytes));
      }
    }
  }
}

void appendReplyCode(std::string* out, std::string_view smtpReply) {
  PacketWriter(out, SMFIR_REPLYCODE, smtpReply.size() + 1).string(smtpReply);
}

void appendAddHeader(std::string* out, std::string_view name, std::string_view value) {
  PacketWriter w(out, SMFIR_ADDHEADER, name.size() + value.size() + 2);
  w.string(name);
  w.string(value);
}

void appendInsertHeader(std::string* out, std::uint32_t index, std::string_view name,
                        std::string_view value) {
  PacketWriter w(out, SMFIR_INSHEADER, kMilterLengthBytes + name.size() + value.size() + 2);
  w.u32(index);
  w.string(name);
  w.string(value);
}

void appendChangeHeader(std::string* out, std::uint32_t index, std::string_view name,
                        std::string_view value) {
  PacketWriter w(out, SMFIR_CHGHEADER, kMilterLengthBytes + name.size() + value.size() + 2);
  w.u32(index);
  w.string(name);
  w.string(value);
}

void appendChangeFrom(std::string* out, std::string_view address, std::string_view args) {
  PacketWriter w(out, SMFIR_CHGFROM, address.size() + 3 + (args.empty() ? 0 : args.size() + 1));
  w.byte('<');
  w.bytes(address);
  w.byte('>');
  w.byte('\0');
  if (!args.empty()) {
    w.string(args);
  }
}

void appendAddRecipient(std::string* out, std::string_view address, std::string_view args) {
  if (args.empty()) {
    PacketWriter(out, SMFIR_ADDRCPT, address.size() + 1).string(address);
    return;
  }
  PacketWriter w(out, SMFIR_ADDRCPT_PAR, address.size() + args.size() + 2);
  w.string(address);
  w.string(args);
}

void appendDeleteRecipient(std::string* out, std::string_view address) {
  PacketWriter(out, SMFIR_DELRCPT, address.size() + 1).string(address);
}

void appendQuarantine(std::string* out, std::string_view reason) {
  PacketWriter(out, SMFIR_QUARANTINE, reason.size() + 1).string(reason);
}

}  // namespace relaykit::milter
