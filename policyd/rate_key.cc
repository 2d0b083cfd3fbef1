// SPDX-License-Identifier: Apache-2.0
// rate_key.cc: principal extraction, store keys and client networks; see rate_key.h.
#include "policyd/rate_key.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cctype>

#include "common/address.h"
#include "common/ip_network.h"

#include "common/ascii.h"

namespace relaykit::policy {

namespace {

bool parsePrefix(std::string_view text, int max, int* out) {
  if (text.empty() || text.size() > 3) {
    return false;
  }
  int v = 0;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
    v = v * 10 + (c - '0');
  }
  if (v > max) {
    return false;
  }
  *out = v;
  return true;
}

}  // namespace

std::string toLower(std::string_view s) {
  return toLowerAscii(s);
}

std::string domainOf(std::string_view address) {
  const auto at = address.rfind('@');
  if (at == std::string_view::npos) {
    return {};
  }
  std::string domain = toLower(address.substr(at + 1));
  while (!domain.empty() && domain.back() == '.') {
    domain.pop_back();
  }
  return domain;
}

StatusOr<KeyPart> parseKeyPart(std::string_view text) {
  KeyPart part;
  part.text = std::string(text);
  if (text == "sender_domain") {
    part.kind = KeyPart::Kind::kSenderDomain;
    return part;
  }
  if (text == "recipient_domain") {
    part.kind = KeyPart::Kind::kRecipientDomain;
    return part;
  }
  if (text.rfind("client_address/", 0) == 0) {
    part.kind = KeyPart::Kind::kClientNetwork;
    std::string_view rest = text.substr(15);
    const auto slash = rest.find('/');
    const std::string_view v4 = rest.substr(0, slash);
    if (!parsePrefix(v4, 32, &part.v4Prefix)) {
      return Status::error("bad IPv4 prefix in '" + part.text +
                           "' (0-32; write client_address/24/64 for IPv4 /24 and IPv6 /64)");
    }
    if (slash != std::string_view::npos &&
        !parsePrefix(rest.substr(slash + 1), 128, &part.v6Prefix)) {
      return Status::error("bad IPv6 prefix in '" + part.text + "' (0-128)");
    }
    return part;
  }
  if (text.empty()) {
    return Status::error("empty key part");
  }
  for (char c : text) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return Status::error("'" + part.text +
                           "' is not a policy attribute name, sender_domain, recipient_domain or "
                           "client_address/N");
    }
  }
  part.attribute = part.text;
  return part;
}

std::string keyPartValue(const KeyPart& part, const PolicyRequest& request) {
  switch (part.kind) {
    case KeyPart::Kind::kSenderDomain:
      return domainOf(request.get("sender"));
    case KeyPart::Kind::kRecipientDomain:
      return domainOf(request.get("recipient"));
    case KeyPart::Kind::kClientNetwork:
      return maskAddress(request.get("client_address"), part.v4Prefix, part.v6Prefix);
    case KeyPart::Kind::kAttribute:
      break;
  }
  const std::string_view value = request.get(part.attribute);
  if (part.attribute == "client_address") {
    // The same text for every spelling of one address (::ffff:192.0.2.1 is 192.0.2.1).
    if (auto address = IpAddress::parse(value)) {
      return address->toString();
    }
  }
  if (!part.extensionDelimiters.empty() && isAddressAttribute(part.attribute)) {
    if (auto stripped = stripExtension(value, part.extensionDelimiters)) {
      return toLower(stripped->address);
    }
  }
  return toLower(value);
}

bool isAddressAttribute(std::string_view attribute) {
  return attribute == "sender" || attribute == "recipient" || attribute == "original_recipient";
}

static void appendPrincipalValue(std::string* principal, std::string_view value) {
  for (char c : value) {
    if (c == kPrincipalSeparator) {
      *principal += kPrincipalSeparator;  // doubled: a value's own separator bytes
    }
    *principal += c;
  }
}

std::optional<std::string> principalOf(const std::vector<KeyPart>& parts,
                                       const PolicyRequest& request) {
  std::string principal;
  for (const KeyPart& part : parts) {
    std::string value = keyPartValue(part, request);
    if (value.empty()) {
      return std::nullopt;
    }
    if (!principal.empty()) {
      principal += kPrincipalSeparator;
    }
    principal += part.text;
    principal += '=';
    appendPrincipalValue(&principal, value);
  }
  return principal;
}

namespace {

// SHA-256 of `data` into digest. OpenSSL 3's one-shot SHA256() looks the algorithm up in the
// provider registry on every call (EVP_MD_fetch: a fifth of a policy decision's instructions,
// callgrind); the algorithm is fetched once and each thread reuses one digest context.
void sha256(std::string_view data, unsigned char digest[SHA256_DIGEST_LENGTH]) {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct Ctx {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(ctx); }
  };
  thread_local Ctx local;
  unsigned int length = 0;
  if (md == nullptr || local.ctx == nullptr || EVP_DigestInit_ex2(local.ctx, md, nullptr) != 1 ||
      EVP_DigestUpdate(local.ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(local.ctx, digest, &length) != 1) {
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  }
}

}  // namespace

std::string storeKeyFor(const std::string& principal, const std::string& limitName) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  sha256(principal, digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key;
  key.reserve(4 + 32 + 2 + limitName.size());
  key += "rl:{";
  for (int i = 0; i < 16; ++i) {
    key += kHex[digest[i] >> 4];
    key += kHex[digest[i] & 15];
  }
  key += "}:";
  key += limitName;
  return key;
}

std::string maskAddress(std::string_view address, int v4Prefix, int v6Prefix) {
  StatusOr<IpAddress> parsed = IpAddress::parse(address);
  if (!parsed) {
    return {};
  }
  return IpNetwork::of(*parsed, parsed->v6 ? v6Prefix : v4Prefix).toString();
}

}  // namespace relaykit::policy
