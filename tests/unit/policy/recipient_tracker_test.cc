// SPDX-License-Identifier: Apache-2.0
// recipient_tracker_test.cc: per-message recipient lists bounded in count and bytes, per message
// and in total; the oldest open messages are forgotten first.
#include <gtest/gtest.h>

#include "policyd/recipient_tracker.h"

namespace relaykit::policy {
namespace {

using Result = RecipientTracker::Result;

TEST(RecipientTracker, RemembersAndTakes) {
  RecipientTracker t;
  EXPECT_EQ(t.remember("i1", "a@x"), Result::kRemembered);
  EXPECT_EQ(t.remember("i1", "b@y"), Result::kRemembered);
  EXPECT_EQ(t.remember("", "b@y"), Result::kIgnored);
  EXPECT_EQ(t.remember("i1", ""), Result::kIgnored);
  ASSERT_NE(t.find("i1"), nullptr);
  EXPECT_EQ(t.find("i1")->recipients.size(), 2u);
  TrackedRecipients out;
  ASSERT_TRUE(t.take("i1", &out));
  EXPECT_EQ(out.recipients, (std::vector<std::string>{"a@x", "b@y"}));
  EXPECT_FALSE(out.incomplete);
  EXPECT_EQ(t.instances(), 0u);
  EXPECT_EQ(t.bytes(), 0u);
  EXPECT_FALSE(t.take("i1", &out));
}

// The finding: 1000 recipients of ~4 KB each were 3.9 MB for one message.
TEST(RecipientTracker, LongRecipientsAreBoundedInBytesPerMessage) {
  RecipientTracker t;
  const std::string longAddress = std::string(4000, 'x') + "@example.com";
  std::size_t remembered = 0;
  int full = 0;
  for (int i = 0; i < 1000; ++i) {
    const Result r = t.remember("msg", longAddress);
    remembered += r == Result::kRemembered ? 1 : 0;
    full += r == Result::kMessageFull ? 1 : 0;
  }
  EXPECT_EQ(full, 1);  // reported once per message
  EXPECT_LE(t.bytes(), kMaxTrackedBytesPerMessage);
  EXPECT_GT(remembered, 0u);
  EXPECT_LT(remembered, 40u);
  EXPECT_TRUE(t.find("msg")->incomplete);
}

TEST(RecipientTracker, CountBoundPerMessage) {
  RecipientTracker t(10, 3, 1 << 20, 1 << 24);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(t.remember("m", "r" + std::to_string(i)), Result::kRemembered);
  }
  EXPECT_EQ(t.remember("m", "r4"), Result::kMessageFull);
  EXPECT_EQ(t.remember("m", "r5"), Result::kAlreadyFull);
  EXPECT_EQ(t.find("m")->recipients.size(), 3u);
}

TEST(RecipientTracker, TotalBoundsForgetTheOldestMessagesFirst) {
  // Instance bound.
  RecipientTracker byCount(3, 100, 1 << 20, 1 << 24);
  for (int i = 0; i < 5; ++i) {
    byCount.remember("m" + std::to_string(i), "r@x");
  }
  EXPECT_EQ(byCount.instances(), 3u);
  EXPECT_EQ(byCount.evicted(), 2u);
  EXPECT_EQ(byCount.find("m0"), nullptr);
  EXPECT_EQ(byCount.find("m1"), nullptr);
  EXPECT_NE(byCount.find("m4"), nullptr);
  // Byte bound: each message here costs (2 + 64) + (100 + 64) = 230 bytes.
  RecipientTracker byBytes(1000, 100, 1 << 20, 1000);
  const std::string r(100, 'r');
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(byBytes.remember("m" + std::to_string(i), r), Result::kRemembered);
    EXPECT_LE(byBytes.bytes(), 1000u);
  }
  EXPECT_EQ(byBytes.instances(), 4u);
  EXPECT_NE(byBytes.find("m9"), nullptr);
  EXPECT_EQ(byBytes.find("m5"), nullptr);
  // A growing message pushes out older ones, never itself.
  for (int i = 0; i < 20; ++i) {
    byBytes.remember("m9", r);
    EXPECT_LE(byBytes.bytes(), 1000u);
  }
  EXPECT_EQ(byBytes.instances(), 1u);
  EXPECT_TRUE(byBytes.find("m9")->incomplete);
  TrackedRecipients out;
  ASSERT_TRUE(byBytes.take("m9", &out));
  EXPECT_EQ(byBytes.bytes(), 0u);
}

// Worst case of the default bounds stays within kMaxTrackedBytes.
TEST(RecipientTracker, DefaultBoundsHoldUnderAFlood) {
  RecipientTracker t;
  const std::string r(4000, 'r');
  for (int m = 0; m < 2000; ++m) {
    for (int i = 0; i < 40; ++i) {
      t.remember("instance-" + std::to_string(m), r);
    }
  }
  EXPECT_LE(t.bytes(), kMaxTrackedBytes);
  EXPECT_GT(t.evicted(), 0u);
}

}  // namespace
}  // namespace relaykit::policy
