// SPDX-License-Identifier: Apache-2.0
// dkim_key.cc: DKIM keys on OpenSSL 3 (see dkim_key.h).
#include "milters/dkim_key.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace relaykit::dkim {
namespace {

// Never prompt for a pass phrase: an encrypted key is refused.
int noPassphrase(char*, int, int, void*) {
  return -1;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct CtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using CtxPtr = std::unique_ptr<EVP_PKEY_CTX, CtxFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string_view trimWsp(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

const char* algorithmName(DkimAlgorithm algorithm) {
  return algorithm == DkimAlgorithm::kRsaSha256 ? "rsa-sha256" : "ed25519-sha256";
}

const char* keyTypeName(DkimAlgorithm algorithm) {
  return algorithm == DkimAlgorithm::kRsaSha256 ? "rsa" : "ed25519";
}

StatusOr<DkimAlgorithm> parseAlgorithm(std::string_view text) {
  if (text == "rsa" || text == "rsa-sha256") {
    return DkimAlgorithm::kRsaSha256;
  }
  if (text == "ed25519" || text == "ed25519-sha256") {
    return DkimAlgorithm::kEd25519Sha256;
  }
  return Status::error("unknown algorithm \"" + std::string(text) +
                       "\" (allowed: rsa-sha256, ed25519-sha256)");
}

DkimKey::DkimKey(EVP_PKEY* key, DkimAlgorithm algorithm, int bits, bool hasPrivate)
    : key_(key), algorithm_(algorithm), bits_(bits), private_(hasPrivate) {}

DkimKey::~DkimKey() {
  EVP_PKEY_free(key_);
}

StatusOr<std::shared_ptr<const DkimKey>> DkimKey::adopt(EVP_PKEY* key, bool hasPrivate,
                                                        int minRsaBits) {
  int id = EVP_PKEY_get_base_id(key);
  int bits = EVP_PKEY_get_bits(key);
  if (id == EVP_PKEY_RSA) {
    if (bits < minRsaBits) {
      EVP_PKEY_free(key);
      return Status::error("RSA key of " + std::to_string(bits) + " bits is too short (at least " +
                           std::to_string(minRsaBits) + ", RFC 8301)");
    }
    if (bits > kMaxRsaBits) {
      EVP_PKEY_free(key);
      return Status::error("RSA key of " + std::to_string(bits) + " bits is too long (at most " +
                           std::to_string(kMaxRsaBits) + ")");
    }
    return std::shared_ptr<const DkimKey>(
        new DkimKey(key, DkimAlgorithm::kRsaSha256, bits, hasPrivate));
  }
  if (id == EVP_PKEY_ED25519) {
    return std::shared_ptr<const DkimKey>(
        new DkimKey(key, DkimAlgorithm::kEd25519Sha256, bits, hasPrivate));
  }
  EVP_PKEY_free(key);
  return Status::error("unsupported key type (DKIM keys are RSA or Ed25519)");
}

StatusOr<std::shared_ptr<const DkimKey>> DkimKey::fromPrivatePem(std::string_view pem,
                                                                 int minRsaBits) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) {
    return Status::error("out of memory");
  }
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr);
  ERR_clear_error();
  if (key == nullptr) {
    return Status::error("not an unencrypted PEM private key (PKCS#8)");
  }
  return adopt(key, true, minRsaBits);
}

StatusOr<std::shared_ptr<const DkimKey>> DkimKey::loadPrivateFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return Status::error(std::string("cannot open: ") + std::strerror(errno));
  }
  struct stat st {};
  std::string problem;
  if (::fstat(fd, &st) != 0) {
    problem = std::string("cannot stat: ") + std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    problem = "not a regular file";
  } else if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    problem = std::string("mode ") + mode +
              " lets every user read or change the private key (chmod 0640 or 0600)";
  } else if (static_cast<unsigned long long>(st.st_size) > kMaxKeyFileBytes) {
    problem = "larger than " + std::to_string(kMaxKeyFileBytes) + " bytes: not a key file";
  }
  std::string text;
  while (problem.empty()) {
    char buffer[4096];
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      problem = std::string("cannot read: ") + std::strerror(errno);
      break;
    }
    if (n == 0) {
      break;
    }
    text.append(buffer, static_cast<size_t>(n));
    OPENSSL_cleanse(buffer, sizeof buffer);
    if (text.size() > kMaxKeyFileBytes) {
      problem = "larger than " + std::to_string(kMaxKeyFileBytes) + " bytes: not a key file";
    }
  }
  ::close(fd);
  if (!problem.empty()) {
    OPENSSL_cleanse(text.data(), text.size());
    return Status::error(problem);
  }
  StatusOr<std::shared_ptr<const DkimKey>> key = fromPrivatePem(text);
  OPENSSL_cleanse(text.data(), text.size());
  return key;
}

StatusOr<std::shared_ptr<const DkimKey>> DkimKey::fromEd25519Seed(std::string_view seed) {
  if (seed.size() != 32) {
    return Status::error("an Ed25519 seed has 32 bytes");
  }
  EVP_PKEY* key = EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed.data()), seed.size());
  ERR_clear_error();
  if (key == nullptr) {
    return Status::error("invalid Ed25519 seed");
  }
  return adopt(key, true);
}

StatusOr<std::shared_ptr<const DkimKey>> DkimKey::fromDnsRecord(std::string_view record) {
  std::string keyType = "rsa";
  std::string p;
  bool haveP = false;
  size_t pos = 0;
  while (pos <= record.size()) {
    size_t semi = record.find(';', pos);
    size_t end = semi == std::string_view::npos ? record.size() : semi;
    std::string_view spec = trimWsp(record.substr(pos, end - pos));
    pos = end + 1;
    if (spec.empty()) {
      continue;
    }
    size_t eq = spec.find('=');
    if (eq == std::string_view::npos) {
      return Status::error("malformed tag \"" + std::string(spec) + "\" in the key record");
    }
    std::string_view tag = trimWsp(spec.substr(0, eq));
    std::string_view value = trimWsp(spec.substr(eq + 1));
    if (tag == "v" && value != "DKIM1") {
      return Status::error("key record v= is not DKIM1");
    }
    if (tag == "k") {
      keyType = std::string(value);
    } else if (tag == "p") {
      p = std::string(value);
      haveP = true;
    }
  }
  if (!haveP) {
    return Status::error("key record has no p= tag");
  }
  if (trimWsp(p).empty()) {
    return Status::error("key record p= is empty: the key is revoked");
  }
  StatusOr<std::string> der = base64Decode(p);
  if (!der) {
    return Status::error("key record p=: " + der.status().message());
  }
  EVP_PKEY* key = nullptr;
  if (keyType == "rsa") {
    const unsigned char* in = reinterpret_cast<const unsigned char*>(der->data());
    key = d2i_PUBKEY(nullptr, &in, static_cast<long>(der->size()));
    if (key == nullptr) {
      in = reinterpret_cast<const unsigned char*>(der->data());
      key = d2i_PublicKey(EVP_PKEY_RSA, nullptr, &in, static_cast<long>(der->size()));
    }
    if (key != nullptr && EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
      EVP_PKEY_free(key);
      key = nullptr;
    }
  } else if (keyType == "ed25519") {
    key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                      reinterpret_cast<const unsigned char*>(der->data()),
                                      der->size());
  } else {
    return Status::error("key record k=" + keyType + " is not supported (rsa, ed25519)");
  }
  ERR_clear_error();
  if (key == nullptr) {
    return Status::error("key record p= is not a valid " + keyType + " public key");
  }
  if (keyType == "rsa" && EVP_PKEY_get_bits(key) < 1024) {
    EVP_PKEY_free(key);
    return Status::error("key record holds an RSA key shorter than 1024 bits (RFC 8301)");
  }
  // Verification accepts the 1024-bit keys RFC 8301 still allows verifiers to use.
  int id = EVP_PKEY_get_base_id(key);
  return std::shared_ptr<const DkimKey>(new DkimKey(
      key, id == EVP_PKEY_RSA ? DkimAlgorithm::kRsaSha256 : DkimAlgorithm::kEd25519Sha256,
      EVP_PKEY_get_bits(key), false));
}

StatusOr<std::shared_ptr<const DkimKey>> DkimKey::generate(DkimAlgorithm algorithm, int bits) {
  EVP_PKEY* key = nullptr;
  if (algorithm == DkimAlgorithm::kRsaSha256) {
    if (bits < kMinRsaBits || bits > kMaxRsaBits) {
      return Status::error("RSA keys have " + std::to_string(kMinRsaBits) + " to " +
                           std::to_string(kMaxRsaBits) + " bits");
    }
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits));
  } else {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  }
  ERR_clear_error();
  if (key == nullptr) {
    return Status::error("key generation failed");
  }
  return adopt(key, true);
}

std::string DkimKey::publicKeyBase64() const {
  if (algorithm_ == DkimAlgorithm::kEd25519Sha256) {
    unsigned char raw[32];
    size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key_, raw, &len) != 1) {
      ERR_clear_error();
      return std::string();
    }
    return base64Encode(std::string_view(reinterpret_cast<const char*>(raw), len));
  }
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key_, &der);
  if (len <= 0) {
    ERR_clear_error();
    return std::string();
  }
  std::string out = base64Encode(std::string_view(reinterpret_cast<const char*>(der), len));
  OPENSSL_free(der);
  return out;
}

std::string DkimKey::dnsRecord() const {
  return std::string("v=DKIM1; k=") + keyTypeName(algorithm_) + "; p=" + publicKeyBase64();
}

std::string DkimKey::privateKeyPem() const {
  if (!private_) {
    return std::string();
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PKCS8PrivateKey(bio.get(), key_, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    ERR_clear_error();
    return std::string();
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

StatusOr<std::string> DkimKey::signDigest(std::string_view digest) const {
  if (!private_) {
    return Status::error("a public key cannot sign");
  }
  const auto* in = reinterpret_cast<const unsigned char*>(digest.data());
  std::string sig;
  size_t len = 0;
  bool ok = false;
  if (algorithm_ == DkimAlgorithm::kRsaSha256) {
    CtxPtr ctx(EVP_PKEY_CTX_new(key_, nullptr));
    ok = ctx && EVP_PKEY_sign_init(ctx.get()) == 1 &&
         EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1 &&
         EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
         EVP_PKEY_sign(ctx.get(), nullptr, &len, in, digest.size()) == 1;
    if (ok) {
      sig.resize(len);
      ok = EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                         digest.size()) == 1;
    }
  } else {
    MdCtxPtr ctx(EVP_MD_CTX_new());
    ok = ctx && EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_) == 1 &&
         EVP_DigestSign(ctx.get(), nullptr, &len, in, digest.size()) == 1;
    if (ok) {
      sig.resize(len);
      ok = EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                          digest.size()) == 1;
    }
  }
  ERR_clear_error();
  if (!ok) {
    return Status::error(std::string(algorithmName(algorithm_)) + " signing failed");
  }
  sig.resize(len);
  return sig;
}

bool DkimKey::verifyDigest(std::string_view digest, std::string_view signature) const {
  const auto* in = reinterpret_cast<const unsigned char*>(digest.data());
  const auto* sig = reinterpret_cast<const unsigned char*>(signature.data());
  bool ok = false;
  if (algorithm_ == DkimAlgorithm::kRsaSha256) {
    CtxPtr ctx(EVP_PKEY_CTX_new(key_, nullptr));
    ok = ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
         EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1 &&
         EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
         EVP_PKEY_verify(ctx.get(), sig, signature.size(), in, digest.size()) == 1;
  } else {
    MdCtxPtr ctx(EVP_MD_CTX_new());
    ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_) == 1 &&
         EVP_DigestVerify(ctx.get(), sig, signature.size(), in, digest.size()) == 1;
  }
  ERR_clear_error();
  return ok;
}

std::vector<std::string> splitTxtStrings(std::string_view record) {
  std::vector<std::string> out;
  for (size_t pos = 0; pos < record.size(); pos += kTxtStringBytes) {
    out.emplace_back(record.substr(pos, kTxtStringBytes));
  }
  if (out.empty()) {
    out.emplace_back();
  }
  return out;
}

std::string formatTxtZoneEntry(std::string_view selector, std::string_view domain,
                               std::string_view record) {
  std::string out = std::string(selector) + "._domainkey." + std::string(domain) + ". IN TXT (";
  for (const std::string& piece : splitTxtStrings(record)) {
    out += " \"" + piece + "\"";
  }
  out += " )";
  return out;
}

}  // namespace relaykit::dkim
