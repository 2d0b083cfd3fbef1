// SPDX-License-Identifier: Apache-2.0
// dkim_signer_test.cc: signatures byte for byte against the published examples (RFC 8463 A.3,
// both algorithms; a simple/simple RSA signature of the RFC 6376 message from dkimpy's test
// data), sign/verify round trips for RSA 2048/4096 and Ed25519 in both canonicalizations,
// tampering, h= selection and oversigning, duplicate From, folding, and streaming.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "milters/dkim_key.h"
#include "milters/dkim_signer.h"
#include "milters/dkim_verify.h"

namespace relaykit::dkim {
namespace {

// RFC 8463 A.1: the Ed25519 secret key, and the RSA key (also RFC 6376's football.example.com
// test key), with A.2's public key records.
const char kEdSeedB64[] = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const char kEdRecord[] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const char kRsaPem[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi\n"
    "Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM\n"
    "KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n"
    "AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm\n"
    "6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe\n"
    "zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy\n"
    "6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc\n"
    "uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy\n"
    "WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd\n"
    "WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a\n"
    "licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst\n"
    "o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe\n"
    "uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL\n"
    "-----END RSA PRIVATE KEY-----\n";
const char kRsaRecordP[] =
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/"
    "J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBf"
    "O2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

// RFC 8463 A.3: the signed message (milter form: values with their leading space, folding "\n").
const char kEdSig[] =
    " v=1; a=ed25519-sha256; c=relaxed/relaxed;\n"
    " d=football.example.com; i=@football.example.com;\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\n"
    " subject : date : message-id : from : subject : date;\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\n"
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\n"
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";
const char kRsaSig[] =
    " v=1; a=rsa-sha256; c=relaxed/relaxed;\n"
    " d=football.example.com; i=@football.example.com;\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\n"
    " date : message-id : from : subject : date;\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\n"
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\n"
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\n"
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=";
const char kBody[] = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";

std::vector<DkimHeader> exampleHeaders() {
  return {{"From", " Joe SixPack <joe@football.example.com>"},
          {"To", " Suzie Q <suzie@shopping.example.net>"},
          {"Subject", " Is dinner ready?"},
          {"Date", " Fri, 11 Jul 2003 21:00:37 -0700 (PDT)"},
          {"Message-ID", " <20030712040037.46341.5F8J@football.example.com>"}};
}

std::shared_ptr<const DkimKey> edKey() {
  auto seed = base64Decode(kEdSeedB64);
  auto key = DkimKey::fromEd25519Seed(*seed);
  EXPECT_TRUE(key) << key.status().message();
  return *key;
}

std::shared_ptr<const DkimKey> rfcRsaKey() {
  auto key = DkimKey::fromPrivatePem(kRsaPem, 1024);
  EXPECT_TRUE(key) << key.status().message();
  return *key;
}

// Re-signs the header data the published signature covers with the published private key:
// deterministic algorithms give the published b= back.
std::string resign(const DkimKey& key, const char* sigValue) {
  auto parsed = parseSignature(sigValue);
  EXPECT_TRUE(parsed) << parsed.status().message();
  std::string data = headerHashInput(exampleHeaders(), parsed->hList, parsed->canon.header,
                                     "DKIM-Signature", withEmptyB(sigValue));
  auto sig = key.signDigest(sha256(data));
  EXPECT_TRUE(sig);
  return base64Encode(*sig);
}

TEST(DkimSignerTest, Rfc8463KeysMatchTheirRecords) {
  EXPECT_EQ(edKey()->dnsRecord(), kEdRecord);
  EXPECT_EQ(rfcRsaKey()->publicKeyBase64(), kRsaRecordP);
}

TEST(DkimSignerTest, Rfc8463Ed25519SignatureReproduced) {
  auto parsed = parseSignature(kEdSig);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(resign(*edKey(), kEdSig), base64Encode(parsed->signature));
  EXPECT_EQ(
      base64Encode(parsed->signature),
      "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==");
}

TEST(DkimSignerTest, Rfc8463RsaSignatureReproduced) {
  auto parsed = parseSignature(kRsaSig);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(resign(*rfcRsaKey(), kRsaSig), base64Encode(parsed->signature));
}

KeyLookup rfcKeys() {
  return [](const std::string& d, const std::string& s,
            DkimAlgorithm) -> StatusOr<std::shared_ptr<const DkimKey>> {
    if (d != "football.example.com") {
      return Status::error("no key");
    }
    if (s == "brisbane") {
      return DkimKey::fromDnsRecord(kEdRecord);
    }
    return DkimKey::fromDnsRecord(std::string("v=DKIM1; k=rsa; p=") + kRsaRecordP);
  };
}

TEST(DkimSignerTest, Rfc8463MessageVerifies) {
  std::vector<DkimHeader> headers = exampleHeaders();
  headers.insert(headers.begin(), {{"DKIM-Signature", kEdSig}, {"DKIM-Signature", kRsaSig}});
  std::vector<VerifyResult> results = verifyMessage(headers, kBody, rfcKeys());
  ASSERT_EQ(results.size(), 2u);
  for (const VerifyResult& r : results) {
    EXPECT_TRUE(r.pass) << r.algorithm << ": " << r.reason;
  }
  // Tampered: one changed byte of the body, then of the Subject.
  results = verifyMessage(
      headers, "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe!\r\n", rfcKeys());
  for (const VerifyResult& r : results) {
    EXPECT_FALSE(r.pass);
    EXPECT_NE(r.reason.find("body hash"), std::string::npos);
  }
  headers[4].value = " Is dinner ready!";
  results = verifyMessage(headers, kBody, rfcKeys());
  for (const VerifyResult& r : results) {
    EXPECT_FALSE(r.pass);
    EXPECT_NE(r.reason.find("signature mismatch"), std::string::npos);
  }
}

// dkimpy's tests/data/rfc6376.signed.rsa.msg: the RFC 6376 message signed simple/simple with the
// same RSA key by an independent implementation; the signature header's exact bytes (trailing
// spaces before each fold included) are what simple canonicalization hashes.
TEST(DkimSignerTest, SimpleSimpleRsaSignatureReproduced) {
  const char sig[] =
      " v=1; a=rsa-sha256; c=simple/simple; \n"
      " d=football.example.com; i=@football.example.com; \n"
      " q=dns/txt; s=test; t=1527915362; h=from : to : subject : \n"
      " date : message-id : from : subject : date; \n"
      " bh=4bLNXImK9drULnmePzZNEBleUanJCX5PIsDIFoH4KTQ=; \n"
      " b=icKcLSEZYXJ95flvWE8FT6hl5iqd8MC/LEKYH0QjsqYy6MO/4pgVNCZH\n"
      " l/RAXAuADxE/40Fg7uTlxwwD1hjN2Ple6J//cJfslBdDOq6zTVbne1dqtl\n"
      " NOat7iamJ1AfRqyG+ja7a2AZsrpUuJ7VA6O+0zRYPqpwMEkEFIzI9i/Xk=";
  auto parsed = parseSignature(sig);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(resign(*rfcRsaKey(), sig), base64Encode(parsed->signature));
  std::vector<DkimHeader> headers = exampleHeaders();
  headers.insert(headers.begin(), {"DKIM-Signature", sig});
  auto results = verifyMessage(headers, std::string(kBody) + "\r\n", rfcKeys());
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].pass) << results[0].reason;
}

TEST(DkimSignerTest, ChooseSignedHeadersCountsAndOversigns) {
  std::vector<DkimHeader> h = {{"From", " a@x"}, {"To", " b@y"}, {"to", " c@y"}, {"Subject", " s"}};
  EXPECT_EQ(chooseSignedHeaders(h, {"From", "To", "Reply-To", "Subject", "FROM"}, {"From"}),
            (std::vector<std::string>{"From", "From", "To", "To", "Subject"}));
  EXPECT_EQ(chooseSignedHeaders(h, {"From", "Reply-To"}, {"From", "Reply-To"}),
            (std::vector<std::string>{"From", "From", "Reply-To"}));
}

TEST(DkimSignerTest, HeaderSelectionTakesInstancesFromTheBottom) {
  std::vector<DkimHeader> h = {{"X", " 1"}, {"Y", " y"}, {"x", " 2"}};
  EXPECT_EQ(headerHashInput(h, {"X", "X", "X"}, Canon::kRelaxed, "DKIM-Signature", " b="),
            "x:2\r\nx:1\r\ndkim-signature:b=");
}

struct RoundTrip {
  const char* name;
  DkimAlgorithm algorithm;
  int bits;
  Canonicalization canon;
};

class DkimRoundTripTest : public ::testing::TestWithParam<RoundTrip> {};

std::vector<DkimHeader> messageHeaders() {
  return {{"Received", " from x by y;\n\tMon, 7 Dec 2026 02:00:00 +0000"},
          {"From", " \"J\xc3\xb6rg\" <root@corp.com>"},
          {"To", " a@example.net,\n\tb@example.net"},
          {"Subject", " =?UTF-8?B?w6k=?= trailing   \t"},
          {"Date", " Mon, 7 Dec 2026 02:00:00 +0000"},
          {"Message-ID", " <1@corp.com>"},
          {"X-Long", " " + std::string(3000, 'z')}};
}

TEST_P(DkimRoundTripTest, SignsAndVerifies) {
  const RoundTrip& p = GetParam();
  static std::shared_ptr<const DkimKey> cache[3];
  int slot = p.algorithm == DkimAlgorithm::kEd25519Sha256 ? 0 : (p.bits == 2048 ? 1 : 2);
  if (!cache[slot]) {
    auto k = DkimKey::generate(p.algorithm, p.bits);
    ASSERT_TRUE(k) << k.status().message();
    cache[slot] = *k;
  }
  std::shared_ptr<const DkimKey> key = cache[slot];
  SignatureSpec spec;
  spec.key = key;
  spec.domain = "corp.com";
  spec.selector = "sel";
  spec.canon = p.canon;
  spec.headers.push_back("X-Long");
  spec.timestamp = 1796608800;
  spec.expirySeconds = 86400;
  std::string body = "line one  \r\n\r\n\ttabbed\r\n\xe2\x82\xac 8-bit\r\n\r\n\r\n";
  MessageSigner signer({p.canon.body});
  for (char c : body) {
    signer.feedBody(std::string_view(&c, 1));  // byte by byte
  }
  signer.finishBody();
  auto values = signer.sign({spec}, messageHeaders());
  ASSERT_TRUE(values) << values.status().message();
  const std::string& value = (*values)[0];
  // Folded: no line longer than 78 with the header name; leading space; no l=.
  size_t start = 0;
  std::string full = std::string("DKIM-Signature:") + value;
  while (start < full.size()) {
    size_t nl = full.find('\n', start);
    size_t end = nl == std::string::npos ? full.size() : nl;
    EXPECT_LE(end - start, kFoldColumn) << full;
    start = end + 1;
  }
  EXPECT_EQ(value[0], ' ');
  auto parsed = parseSignature(value);
  ASSERT_TRUE(parsed) << parsed.status().message();
  EXPECT_FALSE(parsed->hasLength);
  EXPECT_EQ(parsed->expiry, 1796608800 + 86400);
  EXPECT_EQ(parsed->hList, (std::vector<std::string>{"From", "From", "Subject", "Date", "To",
                                                     "Message-ID", "X-Long"}));
  std::vector<DkimHeader> delivered = messageHeaders();
  delivered.insert(delivered.begin(), {"DKIM-Signature", value});
  KeyLookup lookup = [&](const std::string&, const std::string&,
                         DkimAlgorithm) -> StatusOr<std::shared_ptr<const DkimKey>> {
    return DkimKey::fromDnsRecord(key->dnsRecord());
  };
  auto results = verifyMessage(delivered, body, lookup, 1796608801);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].pass) << results[0].reason;
  // LF line ends (a message file) verify the same.
  std::string lfBody;
  for (char c : body) {
    if (c != '\r') {
      lfBody.push_back(c);
    }
  }
  EXPECT_TRUE(verifyMessage(delivered, lfBody, lookup)[0].pass);
  // A second From added after signing breaks the oversigned signature.
  std::vector<DkimHeader> extraFrom = delivered;
  extraFrom.push_back({"From", " evil@attacker.example"});
  EXPECT_FALSE(verifyMessage(extraFrom, body, lookup)[0].pass);
  // A changed body fails.
  EXPECT_FALSE(verifyMessage(delivered, body + "more\r\n", lookup)[0].pass);
  // Expired.
  EXPECT_FALSE(verifyMessage(delivered, body, lookup, 1796608800 + 86401)[0].pass);
}

INSTANTIATE_TEST_SUITE_P(
    All, DkimRoundTripTest,
    ::testing::Values(
        RoundTrip{"rsa2048_relaxed", DkimAlgorithm::kRsaSha256, 2048, {}},
        RoundTrip{
            "rsa2048_simple", DkimAlgorithm::kRsaSha256, 2048, {Canon::kSimple, Canon::kSimple}},
        RoundTrip{"rsa4096_relaxed", DkimAlgorithm::kRsaSha256, 4096, {}},
        RoundTrip{"ed25519_relaxed", DkimAlgorithm::kEd25519Sha256, 0, {}},
        RoundTrip{
            "ed25519_simple", DkimAlgorithm::kEd25519Sha256, 0, {Canon::kSimple, Canon::kSimple}},
        RoundTrip{"ed25519_relaxed_simple",
                  DkimAlgorithm::kEd25519Sha256,
                  0,
                  {Canon::kRelaxed, Canon::kSimple}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DkimSignerTest, DuplicateFromIsSignedForEveryInstance) {
  auto key = edKey();
  SignatureSpec spec;
  spec.key = key;
  spec.domain = "corp.com";
  spec.selector = "s";
  std::vector<DkimHeader> h = {{"From", " a@corp.com"}, {"From", " b@corp.com"}};
  MessageSigner signer({Canon::kRelaxed});
  signer.finishBody();
  auto values = signer.sign({spec}, h);
  ASSERT_TRUE(values);
  auto parsed = parseSignature((*values)[0]);
  EXPECT_EQ(parsed->hList, (std::vector<std::string>{"From", "From", "From"}));
}

TEST(DkimSignerTest, SignBeforeFinishIsAnError) {
  MessageSigner signer({Canon::kRelaxed});
  SignatureSpec spec;
  spec.key = edKey();
  EXPECT_FALSE(signer.sign({spec}, {}));
}

TEST(DkimKeyTest, PemRoundTripAndChecks) {
  auto key = DkimKey::generate(DkimAlgorithm::kEd25519Sha256, 0);
  ASSERT_TRUE(key);
  std::string pem = (*key)->privateKeyPem();
  EXPECT_EQ(pem.rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  auto back = DkimKey::fromPrivatePem(pem);
  ASSERT_TRUE(back);
  EXPECT_EQ((*back)->dnsRecord(), (*key)->dnsRecord());
  EXPECT_FALSE(DkimKey::fromPrivatePem("not a key"));
  auto shortKey = DkimKey::fromPrivatePem(kRsaPem);  // 1024 bits
  ASSERT_FALSE(shortKey);
  EXPECT_NE(shortKey.status().message().find("too short"), std::string::npos);
  EXPECT_FALSE(DkimKey::generate(DkimAlgorithm::kRsaSha256, 1024));
}

TEST(DkimKeyTest, TxtStrings) {
  std::string record(600, 'a');
  auto parts = splitTxtStrings(record);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].size(), 255u);
  EXPECT_EQ(parts[2].size(), 90u);
  EXPECT_EQ(formatTxtZoneEntry("s", "corp.com", "v=DKIM1; p=x"),
            "s._domainkey.corp.com. IN TXT ( \"v=DKIM1; p=x\" )");
}

TEST(DkimKeyTest, DnsRecordParsing) {
  EXPECT_FALSE(DkimKey::fromDnsRecord("v=DKIM1; k=rsa; p="));  // revoked
  EXPECT_FALSE(DkimKey::fromDnsRecord("v=DKIM1; k=dsa; p=AAAA"));
  EXPECT_FALSE(DkimKey::fromDnsRecord("v=DKIM2; p=AAAA"));
  auto k =
      DkimKey::fromDnsRecord("k=ed25519;\r\n p=11qYAYKxCrfVS/7TyWQH\r\n Og7hcvPapiMlrwIaaPcHURo=");
  ASSERT_TRUE(k) << k.status().message();
  EXPECT_EQ((*k)->algorithm(), DkimAlgorithm::kEd25519Sha256);
}

TEST(DkimKeyTest, Base64) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(*base64Decode("Zm 9v\r\n Zg=="), "foof");
  EXPECT_FALSE(base64Decode("Zm9"));
  EXPECT_FALSE(base64Decode("Zm9v!"));
}

}  // namespace
}  // namespace relaykit::dkim

namespace relaykit::dkim {
namespace {

TEST(DkimSignerTest, ManyInstancesStayLinearAndBounded) {
  std::vector<DkimHeader> h;
  for (int i = 0; i < 100000; ++i) {
    h.push_back({"To", " a" + std::to_string(i) + "@example.net"});
  }
  h.push_back({"From", " x@corp.com"});
  std::vector<std::string> list = chooseSignedHeaders(h, {"From", "To"}, {"From", "To"});
  EXPECT_EQ(list.size(), 2 + kMaxSignedInstances);  // From x2, To capped, not oversigned
  // A verifier's h= may be long: 100000 entries over 100000 headers is one pass.
  std::vector<std::string> all(100000, "to");
  std::string data = headerHashInput(h, all, Canon::kRelaxed, "DKIM-Signature", " b=");
  EXPECT_EQ(data.rfind("to:a99999@example.net\r\nto:a99998@example.net\r\n", 0), 0u);
  EXPECT_NE(data.find("to:a0@example.net\r\ndkim-signature:b="), std::string::npos);
}

}  // namespace
}  // namespace relaykit::dkim
