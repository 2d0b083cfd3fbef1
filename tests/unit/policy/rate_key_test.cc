// SPDX-License-Identifier: Apache-2.0
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

// Two different principals must never share a counter, whatever bytes their values hold: the
// separator between parts, '=' and the part names are all legal in attribute values.
TEST(RateKey, SeparatorInValuesCannotMergePrincipals) {
  const auto key = parts({"sender", "helo_name"});
  const PolicyRequest a = request({{"sender", "a\x1fhelo_name=b"}, {"helo_name", "c"}});
  const PolicyRequest b = request({{"sender", "a"}, {"helo_name", "b\x1fhelo_name=c"}});
  ASSERT_TRUE(principalOf(key, a).has_value());
  EXPECT_NE(*principalOf(key, a), *principalOf(key, b));
  // Values ending and starting with the separator, and doubled separators.
  const PolicyRequest c = request({{"sender", "x\x1f"}, {"helo_name", "y"}});
  const PolicyRequest d = request({{"sender", "x"}, {"helo_name", "\x1fy"}});
  const PolicyRequest e = request({{"sender", "x\x1f\x1f"}, {"helo_name", "y"}});
  EXPECT_NE(*principalOf(key, c), *principalOf(key, d));
  EXPECT_NE(*principalOf(key, c), *principalOf(key, e));
  EXPECT_NE(*principalOf(key, d), *principalOf(key, e));
  // Values without the separator encode as they always did (stored counters are still found).
  EXPECT_EQ(*principalOf(key, request({{"sender", "s@d"}, {"helo_name", "h"}})),
            "sender=s@d\x1fhelo_name=h");
}

TEST(RateKey, Ipv4MappedClientAddressIsTheIpv4Address) {
  const PolicyRequest mapped = request({{"client_address", "::ffff:192.0.2.77"}});
  const PolicyRequest plain = request({{"client_address", "192.0.2.77"}});
  EXPECT_EQ(keyPartValue(*parseKeyPart("client_address/24"), mapped), "192.0.2.0/24");
  EXPECT_EQ(keyPartValue(*parseKeyPart("client_address"), mapped), "192.0.2.77");
  EXPECT_EQ(*principalOf(parts({"client_address"}), mapped),
            *principalOf(parts({"client_address"}), plain));
  EXPECT_EQ(keyPartValue(*parseKeyPart("client_address"),
                         request({{"client_address", "2001:DB8:0:0::1"}})),
            "2001:db8::1");
  // Not an address: kept (lower-cased) for the plain attribute, no network.
  const PolicyRequest junk = request({{"client_address", std::string("192.0.2.1\0x", 11)}});
  EXPECT_EQ(keyPartValue(*parseKeyPart("client_address/24"), junk), "");
  EXPECT_NE(keyPartValue(*parseKeyPart("client_address"), junk), "192.0.2.1");
}

TEST(RateKey, AddressExtensionsFoldWithTheDelimiterSet) {
  auto key = parts({"sender"});
  key[0].extensionDelimiters = "+-";
  auto of = [&](const std::string& sender) {
    return *principalOf(key, request({{"sender", sender}}));
  };
  EXPECT_EQ(of("User+1@Example.com"), "sender=user@example.com");
  EXPECT_EQ(of("user+2@example.com"), of("user@example.com"));
  EXPECT_EQ(of("user-x@example.com"), of("user@example.com"));
  EXPECT_EQ(of("user+a-b@example.com"), of("user@example.com"));  // the first delimiter splits
  // strip_addr(3)'s exceptions: never split.
  EXPECT_EQ(of("MAILER-DAEMON@example.com"), "sender=mailer-daemon@example.com");
  EXPECT_EQ(of("postmaster+x@example.com"), "sender=postmaster@example.com");
  EXPECT_EQ(of("owner-list@example.com"), "sender=owner-list@example.com");
  EXPECT_EQ(of("list-request@example.com"), "sender=list-request@example.com");
  EXPECT_EQ(of("+x@example.com"), "sender=+x@example.com");  // an empty user
  // Not folded: other attributes, or an empty delimiter set.
  auto sasl = parts({"sasl_username"});
  sasl[0].extensionDelimiters = "+";
  EXPECT_EQ(*principalOf(sasl, request({{"sasl_username", "a+b"}})), "sasl_username=a+b");
  EXPECT_EQ(*principalOf(parts({"sender"}), request({{"sender", "u+1@d"}})), "sender=u+1@d");
}

}  // namespace
}  // namespace relaykit::policy
