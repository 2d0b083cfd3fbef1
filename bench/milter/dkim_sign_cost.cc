// SPDX-License-Identifier: Apache-2.0
// dkim_sign_cost.cc: CPU cost of DKIM signing with relaykit's core (milters/dkim_signer.h):
// one signature (header hash + private-key operation) for RSA-2048, RSA-4096 and Ed25519, and
// the body hash per KiB (relaxed and simple canonicalization), measured as process CPU time
// (getrusage RUSAGE_SELF, user + system) over enough iterations to last about --seconds each.
// Single-threaded: the numbers are the CPU one signature takes from whichever thread runs it.
// Usage: dkim_sign_cost [--seconds S]   (default 1). Prints one line per scenario.
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "milters/dkim_key.h"
#include "milters/dkim_signer.h"

namespace {

using relaykit::dkim::Canon;
using relaykit::dkim::DkimAlgorithm;
using relaykit::dkim::DkimHeader;
using relaykit::dkim::DkimKey;

double cpuSeconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::vector<DkimHeader> headers() {
  return {{"From", " Cron Daemon <noreply@corp.com>"},
          {"To", " ops@example.net"},
          {"Subject", " Cron <root@srv12> /usr/local/bin/backup"},
          {"Date", " Mon, 7 Dec 2026 02:00:00 +0000"},
          {"Message-ID", " <20261207020000.1@relay.corp.local>"},
          {"MIME-Version", " 1.0"},
          {"Content-Type", " text/plain; charset=UTF-8"}};
}

// Runs `fn` until `budget` CPU seconds have passed (at least 3 times); returns CPU us per call.
template <typename Fn>
double perCall(double budget, Fn fn) {
  fn();  // warm up
  double start = cpuSeconds();
  long n = 0;
  double used = 0;
  do {
    fn();
    ++n;
    used = cpuSeconds() - start;
  } while (used < budget || n < 3);
  return used * 1e6 / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: dkim_sign_cost [--seconds S]\n");
      return 2;
    }
  }
  std::string body;
  for (int i = 0; i < 16; ++i) {
    body += "Backup of /srv finished: 1234 files, 56 MiB, 0 errors.       \r\n";
  }
  body.resize(1024);
  std::vector<DkimHeader> hs = headers();
  struct Scenario {
    const char* name;
    DkimAlgorithm algorithm;
    int bits;
  } scenarios[] = {{"rsa-2048", DkimAlgorithm::kRsaSha256, 2048},
                   {"rsa-4096", DkimAlgorithm::kRsaSha256, 4096},
                   {"ed25519", DkimAlgorithm::kEd25519Sha256, 0}};
  std::printf("%-34s %12s\n", "scenario", "CPU us/op");
  for (const Scenario& s : scenarios) {
    auto key = DkimKey::generate(s.algorithm, s.bits);
    if (!key) {
      std::fprintf(stderr, "%s: %s\n", s.name, key.status().message().c_str());
      return 1;
    }
    relaykit::dkim::SignatureSpec spec;
    spec.key = *key;
    spec.domain = "corp.com";
    spec.selector = "sel";
    spec.timestamp = 1796608800;
    std::string bodyDigest = relaykit::dkim::sha256("\r\n");
    double sign = perCall(seconds, [&] {
      auto v = relaykit::dkim::signHeaders(spec, hs, bodyDigest);
      if (!v) {
        std::abort();
      }
    });
    // The whole message: 1 KiB body streamed, headers, one signature.
    double message = perCall(seconds, [&] {
      relaykit::dkim::MessageSigner signer({Canon::kRelaxed});
      signer.feedBody(body);
      signer.finishBody();
      auto v = signer.sign({spec}, hs);
      if (!v) {
        std::abort();
      }
    });
    std::printf("%-34s %12.1f\n", (std::string("sign ") + s.name + " (headers + key op)").c_str(),
                sign);
    std::printf("%-34s %12.1f\n", (std::string("message 1 KiB ") + s.name).c_str(), message);
  }
  std::string mib;
  while (mib.size() < 1024 * 1024) {
    mib += "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  x\t \r\n";
  }
  for (Canon c : {Canon::kRelaxed, Canon::kSimple}) {
    double us = perCall(seconds, [&] {
      relaykit::dkim::BodyHasher h(c);
      h.feed(mib);
      h.finish();
    });
    std::printf("%-34s %12.1f\n",
                (std::string("body hash per KiB, ") + relaykit::dkim::canonName(c)).c_str(),
                us * 1024.0 / static_cast<double>(mib.size()));
  }
  return 0;
}
