// SPDX-License-Identifier: Apache-2.0
// ip_network_test.cc: the one IP-address parser (common/ip_network.h): forms, IPv4-mapped IPv6,
// hostile text (NUL bytes, oversize), networks and masking.
#include <gtest/gtest.h>

#include "common/ip_network.h"

namespace relaykit {
namespace {

TEST(IpAddress, FormsAndMappedIpv4) {
  EXPECT_EQ(IpAddress::parse("192.0.2.1")->toString(), "192.0.2.1");
  EXPECT_EQ(IpAddress::parse("2001:DB8::1")->toString(), "2001:db8::1");
  EXPECT_EQ(IpAddress::parse("[2001:db8::1]")->toString(), "2001:db8::1");
  StatusOr<IpAddress> mapped = IpAddress::parse("::ffff:192.0.2.1");
  ASSERT_TRUE(mapped.isOk());
  EXPECT_FALSE(mapped->v6);
  EXPECT_EQ(*mapped, *IpAddress::parse("192.0.2.1"));
  EXPECT_EQ(IpAddress::parse("::FFFF:c000:0201")->toString(), "192.0.2.1");
  EXPECT_TRUE(IpAddress::parse("::1")->v6);
}

TEST(IpAddress, HostileTextIsRejectedNotTruncated) {
  for (const std::string& bad :
       {std::string("192.0.2.1\0junk", 14), std::string("192.0.2.1\0", 10), std::string(""),
        std::string(48, '1'), std::string("192.0.2.1 "), std::string("192.0.2.256"),
        std::string("1.2.3"), std::string("::ffff:1.2.3.4.5"), std::string("[::1"),
        std::string("fe80::1%eth0"), std::string(1000, ':')}) {
    EXPECT_FALSE(IpAddress::parse(bad).isOk()) << bad;
  }
  // The longest valid form is accepted.
  EXPECT_TRUE(IpAddress::parse("[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]").isOk());
}

TEST(IpNetwork, OfMasksAndClamps) {
  const IpAddress v4 = *IpAddress::parse("192.0.2.77");
  EXPECT_EQ(IpNetwork::of(v4, 24).toString(), "192.0.2.0/24");
  EXPECT_EQ(IpNetwork::of(v4, 99).toString(), "192.0.2.77/32");
  EXPECT_EQ(IpNetwork::of(v4, -1).toString(), "0.0.0.0/0");
  EXPECT_EQ(IpNetwork::of(*IpAddress::parse("2001:db8:1:2:3::9"), 48).toString(),
            "2001:db8:1::/48");
  EXPECT_TRUE(IpNetwork::parse("192.0.2.0/24")->contains(*IpAddress::parse("::ffff:192.0.2.9")));
  EXPECT_TRUE(IpNetwork::parse("::ffff:192.0.2.0/120")->contains(v4));
  EXPECT_FALSE(IpNetwork::parse("::/0")->contains(v4));  // v4 never matches a v6 network
}

}  // namespace
}  // namespace relaykit
