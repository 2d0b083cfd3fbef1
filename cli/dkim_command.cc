// SPDX-License-Identifier: Apache-2.0
// dkim_command.cc: `relaykit dkim`: key generation, DNS records and signature checks (see
// dkim_command.h). Thin: options and I/O only; the work is in milters/dkim_*.h. Private keys are
// written with O_EXCL (no overwrite unless --force, then replaced through a temporary file) and
// never printed.
#include "cli/dkim_command.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "milters/dkim_key.h"
#include "milters/dkim_verify.h"
#include "milters/milter_config.h"
#include "milters/offline_rewrite.h"

namespace relaykit {
namespace {

constexpr int kDkimOk = 0;
constexpr int kDkimFailed = 1;
constexpr int kDkimUsage = 2;
// Largest message `verify` reads (Postfix's message_size_limit default is 10240000).
constexpr size_t kMaxVerifyMessageBytes = 64 * 1024 * 1024;

struct KeygenOptions {
  std::string domain;
  std::string selector;
  std::string out;
  std::string algorithm = "rsa";
  int bits = dkim::kDefaultRsaBits;
  std::string group;
  bool force = false;
};

struct DnsOptions {
  std::string key;
  std::string domain;
  std::string selector;
  std::string configPath;
};

struct VerifyOptions {
  std::string message;
  std::vector<std::string> keys;
  std::vector<std::string> txts;
};

void printRecord(const std::string& selector, const std::string& domain, const dkim::DkimKey& key) {
  std::printf("%s\n", dkim::formatTxtZoneEntry(selector, domain, key.dnsRecord()).c_str());
}

Status writeAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Status::error(std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

int runKeygen(const KeygenOptions& o) {
  StatusOr<dkim::DkimAlgorithm> algorithm = dkim::parseAlgorithm(o.algorithm);
  if (!algorithm) {
    std::fprintf(stderr, "relaykit: --algorithm: %s\n", algorithm.status().message().c_str());
    return kDkimUsage;
  }
  gid_t gid = static_cast<gid_t>(-1);
  if (!o.group.empty()) {
    struct group* g = ::getgrnam(o.group.c_str());
    if (g == nullptr) {
      std::fprintf(stderr, "relaykit: --group %s: no such group\n", o.group.c_str());
      return kDkimUsage;
    }
    gid = g->gr_gid;
  }
  StatusOr<std::shared_ptr<const dkim::DkimKey>> key = dkim::DkimKey::generate(*algorithm, o.bits);
  if (!key) {
    std::fprintf(stderr, "relaykit: %s\n", key.status().message().c_str());
    return kDkimFailed;
  }
  std::string pem = (*key)->privateKeyPem();
  mode_t mode = o.group.empty() ? 0600 : 0640;
  // With --force the key is written beside the target and renamed over it, so a reader never
  // sees a half-written key and the old file's mode does not carry over.
  std::string path = o.force ? o.out + ".tmp" + std::to_string(::getpid()) : o.out;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    std::fprintf(stderr, "relaykit: %s: %s%s\n", o.out.c_str(), std::strerror(errno),
                 errno == EEXIST ? " (use --force to replace it)" : "");
    return kDkimFailed;
  }
  Status st = writeAll(fd, pem);
  if (st && ::fchmod(fd, mode) != 0) {  // the umask may have taken bits off: set them exactly
    st = Status::error(std::strerror(errno));
  }
  if (st && gid != static_cast<gid_t>(-1) && ::fchown(fd, static_cast<uid_t>(-1), gid) != 0) {
    st = Status::error(std::string("chown to group ") + o.group + ": " + std::strerror(errno));
  }
  if (st && ::fsync(fd) != 0) {
    st = Status::error(std::strerror(errno));
  }
  ::close(fd);
  if (st && o.force && ::rename(path.c_str(), o.out.c_str()) != 0) {
    st = Status::error(std::strerror(errno));
  }
  if (!st) {
    ::unlink(path.c_str());
    std::fprintf(stderr, "relaykit: %s: %s\n", o.out.c_str(), st.message().c_str());
    return kDkimFailed;
  }
  std::string what = (*key)->algorithm() == dkim::DkimAlgorithm::kRsaSha256
                         ? std::to_string((*key)->bits()) + "-bit RSA"
                         : std::string("Ed25519");
  std::fprintf(stderr, "relaykit: wrote %s key %s (mode %04o)\n", what.c_str(), o.out.c_str(),
               static_cast<unsigned>(mode));
  printRecord(o.selector, o.domain, **key);
  return kDkimOk;
}

int runDns(const DnsOptions& o) {
  if (!o.key.empty()) {
    if (o.domain.empty() || o.selector.empty()) {
      std::fprintf(stderr, "relaykit: dns --key needs --domain and --selector\n");
      return kDkimUsage;
    }
    StatusOr<std::shared_ptr<const dkim::DkimKey>> key = dkim::DkimKey::loadPrivateFile(o.key);
    if (!key) {
      std::fprintf(stderr, "relaykit: %s: %s\n", o.key.c_str(), key.status().message().c_str());
      return kDkimFailed;
    }
    printRecord(o.selector, o.domain, **key);
    return kDkimOk;
  }
  Diagnostics diags;
  std::shared_ptr<const Config> config = loadConfig(o.configPath, &diags);
  std::shared_ptr<const milter::MilterConfig> mc =
      config ? milter::parseMilterConfig(config, &diags) : nullptr;
  std::string problems = diags.formatAll();
  std::fwrite(problems.data(), 1, problems.size(), stderr);
  if (!mc) {
    return kDkimFailed;
  }
  if (!mc->dkim || mc->dkim->keys.empty()) {
    std::fprintf(stderr, "relaykit: %s has no milter.dkim.keys\n", o.configPath.c_str());
    return kDkimFailed;
  }
  for (const dkim::KeyEntry& k : mc->dkim->keys) {
    std::printf("; %s (%s, for From domain %s)\n", k.keyFile.c_str(),
                dkim::algorithmName(k.key->algorithm()), k.pattern.c_str());
    printRecord(k.selector, k.domain, *k.key);
  }
  return kDkimOk;
}

// A TXT record as given on the command line: plain ("v=DKIM1; ...") or as zone-file strings
// ("\"v=DKIM1; k=rsa; \" \"p=...\""), whose quoted pieces are joined.
std::string joinTxt(const std::string& text) {
  if (text.find('"') == std::string::npos) {
    return text;
  }
  std::string out;
  bool inside = false;
  for (char c : text) {
    if (c == '"') {
      inside = !inside;
    } else if (inside) {
      out.push_back(c);
    }
  }
  return out;
}

std::string readFile(const std::string& path, std::string* text) {
  int fd = path == "-" ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return std::strerror(errno);
  }
  std::string problem;
  char buffer[64 * 1024];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      problem = std::strerror(errno);
      break;
    }
    if (n == 0) {
      break;
    }
    text->append(buffer, static_cast<size_t>(n));
    if (text->size() > kMaxVerifyMessageBytes) {
      problem = "larger than " + std::to_string(kMaxVerifyMessageBytes) + " bytes";
      break;
    }
  }
  if (fd != STDIN_FILENO) {
    ::close(fd);
  }
  return problem;
}

int runVerify(const VerifyOptions& o) {
  std::vector<std::shared_ptr<const dkim::DkimKey>> keys;
  for (const std::string& path : o.keys) {
    StatusOr<std::shared_ptr<const dkim::DkimKey>> key = dkim::DkimKey::loadPrivateFile(path);
    if (!key) {
      std::fprintf(stderr, "relaykit: %s: %s\n", path.c_str(), key.status().message().c_str());
      return kDkimUsage;
    }
    keys.push_back(*key);
  }
  for (const std::string& txt : o.txts) {
    StatusOr<std::shared_ptr<const dkim::DkimKey>> key = dkim::DkimKey::fromDnsRecord(joinTxt(txt));
    if (!key) {
      std::fprintf(stderr, "relaykit: --txt: %s\n", key.status().message().c_str());
      return kDkimUsage;
    }
    keys.push_back(*key);
  }
  if (keys.empty()) {
    std::fprintf(stderr, "relaykit: verify needs --key FILE or --txt RECORD\n");
    return kDkimUsage;
  }
  std::string text;
  std::string problem = readFile(o.message, &text);
  if (!problem.empty()) {
    std::fprintf(stderr, "relaykit: %s: %s\n", o.message.c_str(), problem.c_str());
    return kDkimUsage;
  }
  milter::ParsedMessage message = milter::splitMessage(text);
  std::vector<dkim::DkimHeader> headers = dkim::toDkimHeaders(message.headers);
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  // Each signature is checked with every given key of its algorithm (a TXT record names no
  // selector): it passes when one of them verifies it; otherwise the first key's reason stays.
  std::vector<dkim::VerifyResult> results;
  for (const auto& key : keys) {
    dkim::KeyLookup lookup =
        [&](const std::string&, const std::string&,
            dkim::DkimAlgorithm a) -> StatusOr<std::shared_ptr<const dkim::DkimKey>> {
      if (key->algorithm() == a) {
        return key;
      }
      return Status::error(std::string("no ") + dkim::keyTypeName(a) + " key given");
    };
    std::vector<dkim::VerifyResult> round = dkim::verifyMessage(headers, message.body, lookup, now);
    if (results.empty()) {
      results = round;
      continue;
    }
    for (size_t i = 0; i < round.size() && i < results.size(); ++i) {
      bool replace = round[i].pass || (results[i].reason.rfind("no ", 0) == 0 &&
                                       round[i].reason.rfind("no ", 0) != 0);
      if (!results[i].pass && replace) {
        results[i] = round[i];
      }
    }
  }
  if (results.empty()) {
    std::printf("none: the message has no DKIM-Signature\n");
    return kDkimFailed;
  }
  bool allPass = true;
  for (const dkim::VerifyResult& r : results) {
    std::printf("%s d=%s s=%s a=%s%s%s\n", r.pass ? "pass" : "fail", r.domain.c_str(),
                r.selector.c_str(), r.algorithm.c_str(), r.pass ? "" : ": ",
                r.pass ? "" : r.reason.c_str());
    allPass = allPass && r.pass;
  }
  return allPass ? kDkimOk : kDkimFailed;
}

}  // namespace

void addDkimCommand(CLI::App& app, int* exitCode) {
  CLI::App* dkimCmd = app.add_subcommand("dkim", "DKIM keys: generate, DNS records, verify");
  dkimCmd->require_subcommand(1);

  auto kg = std::make_shared<KeygenOptions>();
  CLI::App* keygen = dkimCmd->add_subcommand(
      "keygen", "write a new private key (0600, or 0640 with --group) and print its DNS record");
  keygen->add_option("--domain", kg->domain, "signing domain (d=)")->required();
  keygen->add_option("--selector", kg->selector, "selector (s=)")->required();
  keygen->add_option("--out", kg->out, "private key file to create")->required();
  keygen->add_option("--algorithm", kg->algorithm, "rsa or ed25519")->capture_default_str();
  keygen->add_option("--bits", kg->bits, "RSA key size")
      ->capture_default_str()
      ->check(CLI::Range(dkim::kMinRsaBits, dkim::kMaxRsaBits));
  keygen->add_option("--group", kg->group, "group allowed to read the key (mode 0640)");
  keygen->add_flag("--force", kg->force, "replace an existing file");
  keygen->callback([kg, exitCode] { *exitCode = runKeygen(*kg); });

  auto dn = std::make_shared<DnsOptions>();
  dn->configPath = kDefaultConfigPath;
  CLI::App* dns = dkimCmd->add_subcommand(
      "dns", "print the DNS TXT record of a key file, or of every key in the configuration");
  dns->add_option("--key", dn->key, "private key file");
  dns->add_option("--domain", dn->domain, "signing domain (d=), with --key");
  dns->add_option("--selector", dn->selector, "selector (s=), with --key");
  dns->add_option("-c,--config", dn->configPath, "configuration file (without --key)")
      ->capture_default_str();
  dns->callback([dn, exitCode] { *exitCode = runDns(*dn); });

  auto vo = std::make_shared<VerifyOptions>();
  CLI::App* verify = dkimCmd->add_subcommand(
      "verify", "check the DKIM signatures of a message file against keys given here (no DNS)");
  verify->add_option("message", vo->message, "message file (- for stdin)")->required();
  verify->add_option("--key", vo->keys, "private key file (repeatable)");
  verify->add_option("--txt", vo->txts, "DNS TXT record text, e.g. \"v=DKIM1; k=rsa; p=...\"");
  verify->callback([vo, exitCode] { *exitCode = runVerify(*vo); });
}

}  // namespace relaykit
