// SPDX-License-Identifier: Apache-2.0
// socketmap_fuzz.cc: socketmap requests as relaykit-socketmapd reads them: netstrings, then
// "<name> <key>" (common/socketmap_protocol.h), answered from a small config of every search
// mode. Properties: every reply is one of OK/NOTFOUND/TEMP/PERM, never longer than Postfix
// accepts, never "OK " with an empty value.
#include <memory>
#include <string>

#include "common/config.h"
#include "common/netstring.h"
#include "common/socketmap_protocol.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

const char kConfig[] = R"(postfix:
  local_domains: [relay.corp.local, "[127.0.0.1]"]
  myorigin: relay.corp.local
  recipient_delimiter: "+-"
tables:
  generic:
    search: address
    propagate_unmatched_extensions: true
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          "@old.corp.local": "@corp.com"
          postmaster: pm@corp.com
      - regexp: |
          /^(.*)@srv[0-9]+\.corp\.local$/   ${1}@corp.com
          /^empty@/
  transport:
    search: transport
    sources:
      - entries: {"corp.local": "smtp:[a]:25", ".corp.local": "smtp:[b]:25", "*": "smtp:[c]"}
  sender_relay:
    search: sender
    sources:
      - regexp: /^nagios@/ [smtp-alerts.corp.local]:25
      - entries: {"<>": "[bounces]:25", "@corp.local": "[x]"}
  exact:
    sources: [{pcre: "/^(.{0,40})(.*)$/ ${1}${2}${1}"}]
)";

std::shared_ptr<const relaykit::Config> config() {
  static std::shared_ptr<const relaykit::Config> c = [] {
    relaykit::Diagnostics diags;
    auto loaded = relaykit::loadConfigText(kConfig, "socketmap_fuzz.yaml", &diags);
    FUZZ_CHECK(loaded != nullptr, diags.formatAll());
    return loaded;
  }();
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view stream(reinterpret_cast<const char*>(data), size);
  relaykit::NetstringDecoder decoder(relaykit::kMaxSocketmapRequestBytes);
  while (!stream.empty() && decoder.state() != relaykit::NetstringDecoder::State::kError) {
    stream.remove_prefix(decoder.feed(stream));
    if (decoder.state() != relaykit::NetstringDecoder::State::kMessage) {
      continue;
    }
    std::string payload = decoder.takeMessage();
    auto request = relaykit::parseSocketmapRequest(payload);
    if (!request) {
      continue;
    }
    relaykit::SocketmapAnswer answer =
        relaykit::answerSocketmap(*config(), request->name, request->key);
    const std::string& r = answer.reply;
    FUZZ_CHECK(r.size() <= relaykit::kMaxSocketmapReplyBytes, "reply too long");
    bool known = r.rfind("OK ", 0) == 0 || r == "NOTFOUND " || r.rfind("TEMP ", 0) == 0 ||
                 r.rfind("PERM ", 0) == 0;
    FUZZ_CHECK(known, "unknown reply " + relaykit::fuzz::printable(r));
    FUZZ_CHECK(r != "OK ", "OK with an empty value");
  }
  return 0;
}
