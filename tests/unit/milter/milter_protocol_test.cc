// SPDX-License-Identifier: Apache-2.0
// milter_protocol_test.cc: the milter packet decoder fed whole, byte by byte and with garbage;
// command parsers on malformed data; reply encodings byte for byte (as libmilter writes them).
#include "milters/milter_protocol.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/unit/milter/milter_wire.h"

namespace relaykit::milter {
namespace {

std::string packet(char command, std::string_view data) {
  std::string out;
  appendPacket(&out, command, data);
  return out;
}

struct Decoded {
  char command;
  std::string data;
};

// Feeds `stream` in chunks of `chunk` bytes; collects packets until the end or an error.
std::vector<Decoded> decodeAll(std::string_view stream, std::size_t chunk, std::string* error,
                               std::size_t maxPacket = kMaxMilterPacketBytes) {
  MilterPacketDecoder d(maxPacket);
  std::vector<Decoded> out;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    std::string_view piece = stream.substr(at, chunk);
    while (!piece.empty()) {
      std::size_t used = d.feed(piece);
      piece.remove_prefix(used);
      if (d.state() == MilterPacketDecoder::State::kError) {
        *error = d.error();
        return out;
      }
      if (d.state() == MilterPacketDecoder::State::kPacket) {
        out.push_back({d.command(), std::string(d.data())});
      }
    }
  }
  return out;
}

TEST(MilterPacketDecoder, WholeAndByteByByte) {
  std::string stream = packet(SMFIC_OPTNEG, u32(6) + u32(0x1ff) + u32(0x1fffff)) +
                       packet(SMFIC_MACRO, std::string("M{auth_authen}\0alice\0", 21)) +
                       packet(SMFIC_MAIL, std::string("<a@b>\0SIZE=10\0", 14)) +
                       packet(SMFIC_QUIT, "");
  for (std::size_t chunk :
       {stream.size(), std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{7}}) {
    std::string error;
    std::vector<Decoded> got = decodeAll(stream, chunk, &error);
    ASSERT_EQ(error, "") << chunk;
    ASSERT_EQ(got.size(), 4u) << chunk;
    EXPECT_EQ(got[0].command, SMFIC_OPTNEG);
    EXPECT_EQ(got[0].data.size(), 12u);
    EXPECT_EQ(got[1].command, SMFIC_MACRO);
    EXPECT_EQ(got[2].data, std::string("<a@b>\0SIZE=10\0", 14));
    EXPECT_EQ(got[3].command, SMFIC_QUIT);
    EXPECT_EQ(got[3].data, "");
  }
}

TEST(MilterPacketDecoder, ZeroCopyWhenWholePacketInChunk) {
  std::string stream = packet(SMFIC_HEADER, std::string("Subject\0 hi\0", 12));
  MilterPacketDecoder d;
  EXPECT_EQ(d.feed(stream), stream.size());
  ASSERT_EQ(d.state(), MilterPacketDecoder::State::kPacket);
  EXPECT_EQ(d.data().data(), stream.data() + 5);
  EXPECT_FALSE(d.inProgress());
}

TEST(MilterPacketDecoder, InProgressOnlyMidPacket) {
  MilterPacketDecoder d;
  EXPECT_FALSE(d.inProgress());
  d.feed(std::string("\0\0", 2));
  EXPECT_TRUE(d.inProgress());
  d.feed(std::string("\0\x01", 2));
  EXPECT_TRUE(d.inProgress());
  d.feed("Q");
  EXPECT_EQ(d.state(), MilterPacketDecoder::State::kPacket);
  EXPECT_FALSE(d.inProgress());
}

TEST(MilterPacketDecoder, RefusesZeroAndOversizeLengthsAtOnce) {
  std::string error;
  decodeAll(std::string("\0\0\0\0", 4), 1, &error);
  EXPECT_EQ(error, "packet length 0");
  // A header announcing 4 GiB: refused after its 4 length bytes, nothing buffered.
  MilterPacketDecoder d;
  EXPECT_EQ(d.feed("\xff\xff\xff\xffL"), 4u);
  EXPECT_EQ(d.state(), MilterPacketDecoder::State::kError);
  EXPECT_EQ(d.error(), "packet length 4294967295 over the limit of 131070");
  EXPECT_EQ(d.feed(packet(SMFIC_QUIT, "")), 0u);  // stays failed
  EXPECT_EQ(d.state(), MilterPacketDecoder::State::kError);
}

TEST(MilterPacketDecoder, AcceptsPostfixBoundAndNoMore) {
  // Postfix sends a header up to header_size_limit (102400) in one packet; its own bound is twice
  // its 65,535-byte chunk (the command byte included).
  std::string big(102400, 'x');
  std::string header = packet(SMFIC_HEADER, std::string("X-Big\0", 6) + big + std::string(1, '\0'));
  std::string error;
  std::vector<Decoded> got = decodeAll(header, 16384, &error);
  ASSERT_EQ(error, "");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data.size(), 6 + big.size() + 1);

  std::string atLimit = packet(SMFIC_BODY, std::string(kMaxMilterPacketBytes - 1, 'b'));
  EXPECT_EQ(decodeAll(atLimit, 4096, &error).size(), 1u);
  EXPECT_EQ(error, "");
  std::string over = packet(SMFIC_BODY, std::string(kMaxMilterPacketBytes, 'b'));
  EXPECT_EQ(decodeAll(over, 4096, &error).size(), 0u);
  EXPECT_EQ(error, "packet length 131071 over the limit of 131070");
}

TEST(MilterPacketDecoder, GarbageNeverCrashesAndNeverExceedsBound) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 2000; ++round) {
    std::string junk(static_cast<std::size_t>(rng() % 64), '\0');
    for (char& c : junk) {
      c = static_cast<char>(rng());
    }
    // Small lengths now and then, so that packets do complete.
    if (junk.size() >= 4 && (rng() % 2) == 0) {
      junk[0] = junk[1] = junk[2] = 0;
      junk[3] = static_cast<char>(rng() % 16);
    }
    std::string error;
    std::vector<Decoded> got = decodeAll(junk, 1 + rng() % 5, &error, 64);
    for (const Decoded& p : got) {
      EXPECT_LT(p.data.size(), 64u);
    }
  }
}

TEST(MilterCommands, OptionNegotiationDefaultsForShortPackets) {
  auto full = parseOptionNegotiation(u32(6) + u32(0x1ff) + u32(0x1fffff));
  ASSERT_TRUE(full);
  EXPECT_EQ(full->version, 6u);
  EXPECT_EQ(full->actions, 0x1ffu);
  EXPECT_EQ(full->protocol, 0x1fffffu);
  auto v2 = parseOptionNegotiation(u32(2));
  ASSERT_TRUE(v2);
  EXPECT_EQ(v2->actions, kV1Actions);
  EXPECT_EQ(v2->protocol, kV1Protocol);
  auto zeros = parseOptionNegotiation(u32(2) + u32(0) + u32(0));
  ASSERT_TRUE(zeros);
  EXPECT_EQ(zeros->actions, kV1Actions);
  EXPECT_EQ(zeros->protocol, kV1Protocol);
  EXPECT_FALSE(parseOptionNegotiation("abc"));
}

TEST(MilterCommands, Macros) {
  const std::string wire("Ei\0QID1\0{auth_authen}\0bob\0", 26);
  auto m = parseMacros(wire);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->stage, 'E');
  ASSERT_EQ(m->values.size(), 2u);
  EXPECT_EQ(m->values[0].first, "i");
  EXPECT_EQ(m->values[0].second, "QID1");
  EXPECT_EQ(m->values[1].second, "bob");
  auto none = parseMacros("C");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->values.empty());
  EXPECT_FALSE(parseMacros(""));
  EXPECT_FALSE(parseMacros(std::string("Ei\0QID", 6)));  // value not terminated
  EXPECT_FALSE(parseMacros(std::string("Ei\0", 3)));     // no value
}

TEST(MilterCommands, Connect) {
  std::string v4 = std::string(
                       "mail.example\0"
                       "4",
                       14) +
                   std::string("\x01\xbb", 2) + std::string("192.0.2.1\0", 10);
  auto c = parseConnect(v4);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->hostname, "mail.example");
  EXPECT_EQ(c->family, SMFIA_INET);
  EXPECT_EQ(c->port, 443);
  EXPECT_EQ(c->address, "192.0.2.1");
  const std::string wire6(
      "h\0"
      "6\0\x19IPv6:2001:db8::1\0",
      22);
  auto v6 = parseConnect(wire6);
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->address, "2001:db8::1");
  auto unknown = parseConnect(std::string("localhost\0U", 11));
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->family, SMFIA_UNKNOWN);
  EXPECT_FALSE(parseConnect(std::string("h\0", 2)));
  EXPECT_FALSE(
      parseConnect(std::string("h\0"
                               "4\x01",
                               4)));
  EXPECT_FALSE(
      parseConnect(std::string("h\0"
                               "4\x01\x02"
                               "1.2.3.4",
                               12)));
}

TEST(MilterCommands, HeaderAndStrings) {
  const std::string header("From\0 a@b\0", 10);  // the results are views into it
  auto h = parseHeader(header);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->name, "From");
  EXPECT_EQ(h->value, " a@b");
  EXPECT_FALSE(parseHeader(std::string("From\0 a@b", 9)));
  EXPECT_FALSE(parseHeader("From"));
  std::vector<std::string_view> args;
  const std::string argv("<a@b>\0RET=HDRS\0", 15);
  ASSERT_TRUE(splitStrings(argv, &args));
  ASSERT_EQ(args.size(), 2u);
  EXPECT_EQ(args[1], "RET=HDRS");
  EXPECT_FALSE(splitStrings("<a@b>", &args));
  ASSERT_TRUE(splitStrings("", &args));
  EXPECT_TRUE(args.empty());
}

TEST(MilterCommands, Names) {
  EXPECT_EQ(commandName(SMFIC_QUIT_NC), "SMFIC_QUIT_NC");
  EXPECT_EQ(commandName('z'), "command 0x7a");
}

TEST(MilterReplies, EncodedAsLibmilterWritesThem) {
  std::string out;
  appendSimpleReply(&out, SMFIR_CONTINUE);
  EXPECT_EQ(out, std::string("\0\0\0\x01"
                             "c",
                             5));
  out.clear();
  appendChangeFrom(&out, "n@c", "RET=HDRS");
  EXPECT_EQ(out, std::string("\0\0\0\x10"
                             "e<n@c>\0RET=HDRS\0",
                             20));
  out.clear();
  appendChangeFrom(&out, "", "");
  EXPECT_EQ(out, std::string("\0\0\0\x04"
                             "e<>\0",
                             8));
  out.clear();
  appendChangeHeader(&out, 2, "From", "");
  EXPECT_EQ(out, std::string("\0\0\0\x0b"
                             "m\0\0\0\x02"
                             "From\0\0",
                             15));
  out.clear();
  appendInsertHeader(&out, 1, "X", " y");
  EXPECT_EQ(out, std::string("\0\0\0\x0a"
                             "i\0\0\0\x01"
                             "X\0 y\0",
                             14));
  out.clear();
  appendAddHeader(&out, "X", " y");
  EXPECT_EQ(out, std::string("\0\0\0\x06"
                             "hX\0 y\0",
                             10));
  out.clear();
  appendReplyCode(&out, "550 5.7.1 no");
  EXPECT_EQ(out, std::string("\0\0\0\x0e"
                             "y550 5.7.1 no\0",
                             18));
  out.clear();
  appendAddRecipient(&out, "<r@x>", "");
  appendAddRecipient(&out, "<r@x>", "NOTIFY=NEVER");
  appendDeleteRecipient(&out, "<r@x>");
  appendQuarantine(&out, "why");
  std::string error;
  std::vector<Decoded> got = decodeAll(out, out.size(), &error);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].command, SMFIR_ADDRCPT);
  EXPECT_EQ(got[1].command, SMFIR_ADDRCPT_PAR);
  EXPECT_EQ(got[1].data, std::string("<r@x>\0NOTIFY=NEVER\0", 19));
  EXPECT_EQ(got[2].command, SMFIR_DELRCPT);
  EXPECT_EQ(got[3].command, SMFIR_QUARANTINE);
}

TEST(MilterReplies, OptionNegotiationWithMacroLists) {
  std::array<std::string, kMacroStages> lists;
  lists[SMFIM_ENVFROM] = "{auth_authen}";
  lists[SMFIM_EOM] = "i";
  std::string out;
  appendOptionNegotiationReply(&out, 6, SMFIF_CHGFROM | SMFIF_SETSYMLIST, SMFIP_NR_HDR, lists);
  std::string expected = u32(6) + u32(SMFIF_CHGFROM | SMFIF_SETSYMLIST) + u32(SMFIP_NR_HDR) +
                         u32(SMFIM_ENVFROM) + std::string("{auth_authen}\0", 14) + u32(SMFIM_EOM) +
                         std::string("i\0", 2);
  EXPECT_EQ(out, packet(SMFIC_OPTNEG, expected));
  out.clear();
  appendOptionNegotiationReply(&out, 2, SMFIF_CHGFROM, 0, lists);  // no SETSYMLIST: no lists
  EXPECT_EQ(out, packet(SMFIC_OPTNEG, u32(2) + u32(SMFIF_CHGFROM) + u32(0)));
}

}  // namespace
}  // namespace relaykit::milter
