// SPDX-License-Identifier: Apache-2.0
// milter_packet_fuzz.cc: libFuzzer target for the milter packet decoder and the session state
// machine behind it (milters/milter_protocol.h, milters/milter_session.h).
//
// The input is split at a seed-chosen chunk size and fed to MilterPacketDecoder (with a small
// packet bound, so that the limit is reached too); every decoded packet goes to a MilterSession
// with a filter that makes end-of-message modifications. Properties checked: feed() never
// consumes more than it was given and always progresses unless failed; a decoded packet is never
// over the bound; a failed decoder consumes nothing more; every reply the session appends is
// itself a well-formed packet stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "milters/milter_protocol.h"
#include "milters/milter_session.h"

namespace {

using relaykit::milter::ConnectInfo;
using relaykit::milter::MilterFilter;
using relaykit::milter::MilterModifications;
using relaykit::milter::MilterPacketDecoder;
using relaykit::milter::MilterResponse;
using relaykit::milter::MilterSession;
using relaykit::milter::MilterWants;
using relaykit::milter::OptionNegotiation;

constexpr std::size_t kFuzzPacketBound = 4096;

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

class EditingFilter : public MilterFilter {
 public:
  const MilterWants& negotiate(const OptionNegotiation& offer) override {
    wants_.actions = offer.actions;
    wants_.protocol = offer.protocol;
    wants_.macros[SMFIM_EOM] = "i";
    return wants_;
  }
  MilterResponse header(const MilterSession& s, std::string_view name,
                        std::string_view value) override {
    (void)s;
    last_.assign(name);
    last_.append(value);
    return MilterResponse::proceed();
  }
  MilterResponse endOfMessage(const MilterSession& s, MilterModifications* mods) override {
    const std::string* qid = s.macro("i");
    (void)mods->changeFrom(qid ? *qid : "x@y", "RET=HDRS");
    (void)mods->changeHeader("From", 1, &last_);
    (void)mods->insertHeader(1, "X-A", last_);
    (void)mods->addHeader("X-B", " b");
    return MilterResponse::of(last_.size() % 2 ? MilterResponse::Verdict::kTempfail
                                               : MilterResponse::Verdict::kContinue);
  }

 private:
  MilterWants wants_;
  std::string last_;
};

// Every byte of `out` must decode as whole packets.
void checkReplies(const std::string& out) {
  MilterPacketDecoder d(1 << 20);
  std::string_view rest = out;
  while (!rest.empty()) {
    std::size_t used = d.feed(rest);
    check(d.state() == MilterPacketDecoder::State::kPacket);
    rest.remove_prefix(used);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::size_t chunk = 1 + data[0] % 17;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  MilterPacketDecoder decoder(kFuzzPacketBound);
  EditingFilter filter;
  MilterSession session(&filter);
  std::string out;
  bool closed = false;
  for (std::size_t at = 0; at < input.size() && !closed; at += chunk) {
    std::string_view piece = input.substr(at, chunk);
    while (!piece.empty()) {
      const std::size_t used = decoder.feed(piece);
      check(used <= piece.size());
      piece.remove_prefix(used);
      if (decoder.state() == MilterPacketDecoder::State::kError) {
        check(decoder.feed(piece) == 0);
        closed = true;
        break;
      }
      if (decoder.state() == MilterPacketDecoder::State::kNeedMore) {
        check(piece.empty());
        break;
      }
      check(used > 0);
      check(decoder.data().size() + 1 <= kFuzzPacketBound);
      out.clear();
      if (session.handle(decoder.command(), decoder.data(), &out) == MilterSession::Next::kClose) {
        closed = true;
      }
      checkReplies(out);
      if (closed) {
        break;
      }
    }
  }
  session.disconnected();
  return 0;
}
