// rate_key_test.cc: principals (attributes, domains, client networks), store keys, networks.
#include <gtest/gtest.h>

#include "policyd/rate_key.h"

namespace relaykit::policy {
namespace {

PolicyRequest request(std::vector<std::pair<std::string, std::string>> attrs) {
  PolicyRequest r;
  for (auto& [k, v] : attrs) {
    r.add(k, v);
  }
  return r;
}

std::vector<KeyPart> parts(std::vector<std::string> texts) {
  std::vector<KeyPart> out;
  for (const auto& t : texts) {
    StatusOr<KeyPart> p = parseKeyPart(t);
    EXPECT_TRUE(p.isOk()) << t;
    out.push_back(*p);
  }
  return out;
}

TEST(RateKey, PartsAndValues) {
  const PolicyRequest r = request({{"sender", "Alice@Example.COM."},
                                   {"recipient", "bob@Partner.com"},
                                   {"client_address", "192.0.2.77"},
                                   {"sasl_username", "Alice"}});
  EXPECT_EQ(keyPartValue(*parseKeyPart("sender_domain"), r), "example.com");
  EXPECT_EQ(keyPartValue(*parseKeyPart("recipient_domain"), r), "partner.com");
  EXPECT_EQ(keyPartValue(*parseKeyPart("client_address/24"), r), "192.0.2.0/24");
  EXPECT_EQ(keyPartValue(*parseKeyPart("sender"), r), "alice@example.com.");
  EXPECT_EQ(keyPartValue(*parseKeyPart("sasl_username"), r), "alice");
  EXPECT_EQ(*principalOf(parts({"sasl_username", "client_address/16"}), r),
            "sasl_username=alice\x1f"
            "client_address/16=192.0.0.0/16");
}

TEST(RateKey, Ipv6UsesSlash64ByDefault) {
  const PolicyRequest r = request({{"client_address", "2001:db8:1:2:3:4:5:6"}});
  EXPECT_EQ(keyPartValue(*parseKeyPart("client_address/24"), r), "2001:db8:1:2::/64");
  EXPECT_EQ(keyPartValue(*parseKeyPart("client_address/24/48"), r), "2001:db8:1::/48");
}

TEST(RateKey, MissingPartMeansLimitDoesNotApply) {
  const PolicyRequest r = request({{"sender", "a@b.c"}, {"sasl_username", ""}});
  EXPECT_FALSE(principalOf(parts({"sasl_username"}), r).has_value());
  EXPECT_FALSE(principalOf(parts({"client_address/24"}), r).has_value());
  EXPECT_TRUE(principalOf(parts({"sender"}), r).has_value());
}

TEST(RateKey, BadParts) {
  EXPECT_FALSE(parseKeyPart("client_address/64").isOk());  // IPv4 prefix > 32
  EXPECT_FALSE(parseKeyPart("client_address/24/129").isOk());
  EXPECT_FALSE(parseKeyPart("Sender").isOk());
  EXPECT_FALSE(parseKeyPart("").isOk());
}

TEST(RateKey, StoreKeyHasDigestInOneHashTagAndNoAddress) {
  const std::string k = storeKeyFor("sender=alice@example.com", "per-sender");
  EXPECT_EQ(k.rfind("rl:{", 0), 0u);
  EXPECT_EQ(k.size(), 4 + 32 + 2 + std::string("per-sender").size());
  EXPECT_EQ(k.find("alice"), std::string::npos);
  EXPECT_EQ(std::count(k.begin(), k.end(), '{'), 1);
  EXPECT_EQ(k.substr(k.find('}')), "}:per-sender");
  // Same principal, other limit: same hash tag (same Redis Cluster slot).
  const std::string k2 = storeKeyFor("sender=alice@example.com", "other");
  EXPECT_EQ(k.substr(0, 38), k2.substr(0, 38));
  EXPECT_NE(storeKeyFor("sender=bob@example.com", "per-sender"), k);
  // The digest is SHA-256 (first 128 bits): printf 'sender=alice@example.com' | sha256sum.
  // Keys written by one relaykit version must be found by the next one.
  EXPECT_EQ(k, "rl:{7d92307847a5329c9b350a50ef16ae3a}:per-sender");
}

}  // namespace
}  // namespace relaykit::policy
