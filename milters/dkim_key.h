// SPDX-License-Identifier: Apache-2.0
// dkim_key.h: DKIM keys (RSA, Ed25519) on OpenSSL 3: loading, checks, DNS records, sign/verify.
//
// A DkimKey holds one OpenSSL key (private, or public only for verification) and is immutable
// once built: one instance may sign from many threads at once (each operation makes its own
// EVP_PKEY_CTX). Loading refuses, with a reason that never contains key material:
//   - a file that is not a regular file, cannot be read, is larger than kMaxKeyFileBytes, or is
//     readable or writable by "other" (mode & 0006: a signing key must not be world-readable);
//   - text that is not an unencrypted PEM private key (PKCS#8 "BEGIN PRIVATE KEY", which
//     `relaykit dkim keygen` writes; PKCS#1 "BEGIN RSA PRIVATE KEY" is accepted too);
//   - a key type other than RSA or Ed25519; an RSA key shorter than kMinRsaBits or longer than
//     kMaxRsaBits.
// The file is read with the size bound and no bounded reader from common/ (none exists yet);
// the read buffer is wiped after parsing.
// Signing follows RFC 6376 / RFC 8463: the input is the SHA-256 digest of the canonicalized
// header data; rsa-sha256 is RSASSA-PKCS1-v1_5 over it, ed25519-sha256 is PureEdDSA (Ed25519)
// over the 32 digest bytes.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/base64.h"
#include "common/status.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace relaykit::dkim {

inline constexpr int kMinRsaBits = 2048;
inline constexpr int kMaxRsaBits = 8192;
inline constexpr int kDefaultRsaBits = 2048;
inline constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
inline constexpr std::size_t kSha256Bytes = 32;
// A DNS TXT character-string holds at most 255 bytes.
inline constexpr std::size_t kTxtStringBytes = 255;

enum class DkimAlgorithm { kRsaSha256, kEd25519Sha256 };

// "rsa-sha256" / "ed25519-sha256" (the a= tag).
const char* algorithmName(DkimAlgorithm algorithm);
// "rsa" / "ed25519" (the k= tag of the DNS record).
const char* keyTypeName(DkimAlgorithm algorithm);
// Accepts "rsa", "rsa-sha256", "ed25519", "ed25519-sha256".
StatusOr<DkimAlgorithm> parseAlgorithm(std::string_view text);

class DkimKey {
 public:
  ~DkimKey();
  DkimKey(const DkimKey&) = delete;
  DkimKey& operator=(const DkimKey&) = delete;

  DkimAlgorithm algorithm() const { return algorithm_; }
  int bits() const { return bits_; }
  bool hasPrivate() const { return private_; }

  // The p= value: base64 of the SubjectPublicKeyInfo (RSA) or of the 32 raw bytes (Ed25519).
  std::string publicKeyBase64() const;
  // "v=DKIM1; k=rsa; p=..." (one string; split it with splitTxtStrings for DNS).
  std::string dnsRecord() const;
  // The private key as PKCS#8 PEM (for keygen). Empty for a public-only key.
  std::string privateKeyPem() const;

  // Signs a SHA-256 digest (kSha256Bytes). Returns the raw signature bytes.
  StatusOr<std::string> signDigest(std::string_view digest) const;
  // True when `signature` is valid for `digest` under this key.
  bool verifyDigest(std::string_view digest, std::string_view signature) const;

  // ---- Construction ----
  // A PEM private key (text); checks type and size (RSA at least `minRsaBits`; only tests of
  // the RFCs' 1024-bit example key lower it), not file permissions.
  static StatusOr<std::shared_ptr<const DkimKey>> fromPrivatePem(std::string_view pem,
                                                                 int minRsaBits = kMinRsaBits);
  // The file at `path`, with every check listed above.
  static StatusOr<std::shared_ptr<const DkimKey>> loadPrivateFile(const std::string& path);
  // An Ed25519 private key from its 32-byte seed (RFC 8032 "secret key", RFC 8463 A.1 form).
  static StatusOr<std::shared_ptr<const DkimKey>> fromEd25519Seed(std::string_view seed);
  // The public key of a DKIM TXT record ("v=DKIM1; k=ed25519; p=..."; the strings of a split
  // record joined first). RSA p= may be SubjectPublicKeyInfo or PKCS#1 RSAPublicKey DER.
  static StatusOr<std::shared_ptr<const DkimKey>> fromDnsRecord(std::string_view record);
  // A fresh key: RSA of `bits` (kMinRsaBits..kMaxRsaBits) or Ed25519 (bits ignored).
  static StatusOr<std::shared_ptr<const DkimKey>> generate(DkimAlgorithm algorithm, int bits);

 private:
  DkimKey(EVP_PKEY* key, DkimAlgorithm algorithm, int bits, bool hasPrivate);
  static StatusOr<std::shared_ptr<const DkimKey>> adopt(EVP_PKEY* key, bool hasPrivate,
                                                        int minRsaBits = kMinRsaBits);

  EVP_PKEY* key_;
  DkimAlgorithm algorithm_;
  int bits_;
  bool private_;
};

// base64Encode / base64Decode: common/base64.h (visible here as dkim::base64Encode, ...).
using relaykit::base64Decode;
using relaykit::base64Encode;

// `record` cut into DNS character-strings of at most kTxtStringBytes bytes.
std::vector<std::string> splitTxtStrings(std::string_view record);
// A zone-file line: `SELECTOR._domainkey.DOMAIN. IN TXT ( "..." "..." )`.
std::string formatTxtZoneEntry(std::string_view selector, std::string_view domain,
                               std::string_view record);

}  // namespace relaykit::dkim
