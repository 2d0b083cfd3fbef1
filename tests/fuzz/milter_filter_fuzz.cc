// SPDX-License-Identifier: Apache-2.0
// milter_filter_fuzz.cc: relaykit's own filter (RelaykitFilter, milters/milter_callbacks.h) behind
// the milter session, as relaykit-milter runs it, on whatever packets a client sends.
// Input: [flags] then a milter packet stream (4-byte length, command, data), decoded with
// relaykit-milter's packet bound. flags bit 0: the configuration also signs with DKIM (Ed25519);
// bits 1-4: the stream is fed in pieces of 1 + (flags >> 1) % 16 bytes.
// The configuration has every kind of edit: header_checks IGNORE / REPLACE / PREPEND, header_rules
// with conditions, rewrite_from on two headers, rewrite_sender, and table results that are not
// one bare address (a display name, a list, a bare localpart, "<>", no address). A signing job is
// signed at once, as the signing pool would, and the session resumed. Properties: every reply is a
// well-formed packet; no message stays counted as active after the connection ends; and a filter
// and session reused for a second connection (reset as relaykit-milter resets its spare parts)
// answer the same stream with the same bytes as new ones (DKIM-Signature values left out of the
// comparison: they carry the signing time).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/server/logging.h"
#include "milters/dkim_key.h"
#include "milters/milter_callbacks.h"
#include "milters/milter_config.h"
#include "milters/milter_protocol.h"
#include "milters/milter_session.h"
#include "tests/fuzz/fuzz_support.h"

using namespace relaykit::milter;

namespace {

const char kRules[] = R"yaml(
postfix:
  local_domains: [relay.corp.local, localhost]
tables:
  generic:
    search: address
    sources:
      - entries:
          root@relay.corp.local: noreply@corp.com
          cron@relay.corp.local: cron@corp.com
          display@relay.corp.local: "Display Name <shown@corp.com>"
          multi@relay.corp.local: "first@corp.com, second@corp.com"
          bare@relay.corp.local: justlocal
          empty@relay.corp.local: "<>"
          nonaddr@relay.corp.local: "(no address)"
milter:
  header_checks: |
    /^X-Originating-IP:/ IGNORE
    /^Subject: (.*)secret(.*)$/ REPLACE Subject: ${1}[redacted]${2}
    /^X-Mailer:/ PREPEND X-Relayed-By: relaykit
  header_rules:
    - match: '^Received:.*\blocalhost\b'
      action: remove
    - match: '^From:.*<.*@localhost>$'
      action: replace
      with: 'From: "Server Notifications" <noreply@corp.com>'
      when:
        authenticated: false
    - match: '^X-Env:'
      action: remove
      when:
        sender: '@relay\.corp\.local$'
        client: [127.0.0.0/8, "::1/128"]
  rewrite_from:
    table: generic
    headers: [From, Reply-To]
  rewrite_sender:
    table: generic
)yaml";

struct Configs {
  std::shared_ptr<const MilterConfig> plain;
  std::shared_ptr<const MilterConfig> signing;
};

std::shared_ptr<const MilterConfig> compile(const std::string& yaml) {
  relaykit::Diagnostics diags;
  auto config = relaykit::loadConfigText(yaml, "fuzz.yaml", &diags);
  auto mc = config ? parseMilterConfig(config, &diags) : nullptr;
  if (!mc) {
    std::fprintf(stderr, "milter_filter_fuzz: the configuration does not load:\n%s\n",
                 diags.formatAll().c_str());
    std::abort();
  }
  return mc;
}

const Configs& configs() {
  static const Configs c = [] {
    relaykit::setLogLevel(relaykit::LogLevel::kFatal);  // a line per message would drown the run
    Configs out;
    out.plain = compile(kRules);
    char dir[] = "/tmp/milter_filter_fuzz.XXXXXX";
    if (::mkdtemp(dir) == nullptr) {
      std::abort();
    }
    auto key = relaykit::dkim::DkimKey::generate(relaykit::dkim::DkimAlgorithm::kEd25519Sha256, 0);
    if (!key) {
      std::abort();
    }
    const std::string keyFile = std::string(dir) + "/ed.pem";
    if (FILE* f = std::fopen(keyFile.c_str(), "w")) {
      const std::string pem = (*key)->privateKeyPem();
      std::fwrite(pem.data(), 1, pem.size(), f);
      std::fclose(f);
    }
    ::chmod(keyFile.c_str(), 0600);
    out.signing = compile(std::string(kRules) +
                          "  dkim:\n    sign: all\n    keys:\n"
                          "      - {domain: corp.com, selector: ed, key_file: " +
                          keyFile + "}\n");
    ::unlink(keyFile.c_str());
    ::rmdir(dir);
    return out;
  }();
  return c;
}

// The replies of one connection as packets, each "command:data", DKIM-Signature values blanked.
std::vector<std::string> packets(const std::string& out) {
  std::vector<std::string> result;
  MilterPacketDecoder d(1 << 20);
  std::string_view rest = out;
  while (!rest.empty()) {
    const std::size_t used = d.feed(rest);
    FUZZ_CHECK(d.state() == MilterPacketDecoder::State::kPacket, "a reply is a whole packet");
    rest.remove_prefix(used);
    std::string data(d.data());
    const char command = d.command();
    if (command == SMFIR_INSHEADER || command == SMFIR_ADDHEADER) {
      static const std::string_view kName("DKIM-Signature\0", 15);  // the name and its NUL
      const std::size_t nameAt = command == SMFIR_INSHEADER ? 4 : 0;
      if (data.size() >= nameAt && data.compare(nameAt, kName.size(), kName) == 0) {
        data.resize(nameAt + kName.size());
      }
    }
    result.push_back(std::string(1, command) + ":" + data);
  }
  return result;
}

// One connection: `stream` fed in pieces of `chunk` bytes through the packet decoder to `session`,
// a signing job signed at once. Returns the replies, in order.
std::string connection(MilterSession& session, RelaykitFilter& filter, std::string_view stream,
                       std::size_t chunk) {
  MilterPacketDecoder decoder(kMaxMilterPacketBytes);
  std::string all;
  std::string out;
  bool closed = false;
  for (std::size_t at = 0; at < stream.size() && !closed; at += chunk) {
    std::string_view piece = stream.substr(at, chunk);
    while (!piece.empty() && !closed) {
      const std::size_t used = decoder.feed(piece);
      piece.remove_prefix(used);
      if (decoder.state() == MilterPacketDecoder::State::kError) {
        closed = true;
        break;
      }
      if (decoder.state() == MilterPacketDecoder::State::kNeedMore) {
        break;
      }
      out.clear();
      closed =
          session.handle(decoder.command(), decoder.data(), &out) == MilterSession::Next::kClose;
      if (!closed && session.awaitingEndOfMessage()) {
        std::optional<relaykit::dkim::SignJob> job = filter.takeSignJob();
        FUZZ_CHECK(job.has_value(), "a pending end of message left a signing job");
        filter.setSignResult(job->signer ? job->signer->sign(job->specs, job->headers)
                                         : relaykit::Status::error("no signer"));
        session.resumeEndOfMessage(&out);
        FUZZ_CHECK(!session.awaitingEndOfMessage(), "the session resumed");
      }
      all += out;
    }
  }
  session.disconnected();
  FUZZ_CHECK(activeMessages() == 0, "no message counted as active after the connection");
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  const std::uint8_t flags = in.byte();
  const std::string_view stream = in.rest();
  const std::size_t chunk = 1 + (flags >> 1) % 16;
  setActiveConfig((flags & 1) ? configs().signing : configs().plain);

  RelaykitFilter reused;
  MilterSession reusedSession(&reused);
  packets(connection(reusedSession, reused, stream, chunk));
  reusedSession.reset();  // as relaykit-milter recycles a connection's parts, then takes them again
  reused.reset(nullptr);
  reused.reset(activeConfig());
  const std::vector<std::string> again = packets(connection(reusedSession, reused, stream, chunk));

  RelaykitFilter fresh;
  MilterSession freshSession(&fresh);
  const std::vector<std::string> first = packets(connection(freshSession, fresh, stream, 1 << 20));
  if (again != first) {
    std::size_t i = 0;
    while (i < again.size() && i < first.size() && again[i] == first[i]) {
      ++i;
    }
    std::fprintf(stderr, "reply %zu differs:\n  reused, in pieces: %s\n  new, whole:        %s\n",
                 i, i < again.size() ? relaykit::fuzz::printable(again[i]).c_str() : "(none)",
                 i < first.size() ? relaykit::fuzz::printable(first[i]).c_str() : "(none)");
  }
  FUZZ_CHECK(again == first, "a reused filter and session answer as new ones, in any pieces");
  setActiveConfig(nullptr);
  return 0;
}
