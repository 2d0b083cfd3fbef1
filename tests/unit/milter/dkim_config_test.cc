// SPDX-License-Identifier: Apache-2.0
// dkim_config_test.cc: the `milter: dkim:` section (keys loaded and refused at FILE:LINE:COL:
// unreadable, world-readable, too short, wrong algorithm; policy words; canonicalization), the
// signing table (exact, parent, "*"), the sign: policy, existing signatures kept or replaced,
// and `relaykit rewrite`'s engine signing the rewritten message for the new From domain.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/config.h"
#include "milters/dkim_config.h"
#include "milters/dkim_message.h"
#include "milters/dkim_verify.h"
#include "milters/milter_config.h"
#include "milters/offline_rewrite.h"

namespace relaykit::milter {
namespace {

class DkimConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dkim_config_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    static std::shared_ptr<const dkim::DkimKey> rsaKey =
        *dkim::DkimKey::generate(dkim::DkimAlgorithm::kRsaSha256, 2048);
    rsa_ = writeKey("rsa.pem", rsaKey, 0600);
    ed_ =
        writeKey("ed.pem", *dkim::DkimKey::generate(dkim::DkimAlgorithm::kEd25519Sha256, 0), 0640);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  std::string writeKey(const std::string& name, const std::shared_ptr<const dkim::DkimKey>& key,
                       mode_t mode) {
    return writeFile(name, key->privateKeyPem(), mode);
  }
  std::string writeFile(const std::string& name, const std::string& text, mode_t mode) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }

  std::shared_ptr<const MilterConfig> load(const std::string& yaml, Diagnostics* diags) {
    auto config = loadConfigText(yaml, "test.yaml", diags);
    return config ? parseMilterConfig(config, diags) : nullptr;
  }

  std::string dir_;
  std::string rsa_;
  std::string ed_;
};

TEST_F(DkimConfigTest, ParsesKeysAndDefaults) {
  Diagnostics diags;
  auto mc = load(
      "milter:\n"
      "  dkim:\n"
      "    keys:\n"
      "      - {domain: corp.com, selector: rsa2026, key_file: " +
          rsa_ +
          "}\n"
          "      - {domain: corp.com, selector: ed2026, key_file: " +
          ed_ +
          ", algorithm: ed25519-sha256}\n"
          "      - {domain: .corp.com, selector: sub, key_file: " +
          ed_ +
          "}\n"
          "      - {domain: '*', signing_domain: relay.example, selector: any, key_file: " +
          ed_ + "}\n",
      &diags);
  ASSERT_TRUE(mc) << diags.formatAll();
  ASSERT_TRUE(mc->dkim);
  const dkim::DkimConfig& d = *mc->dkim;
  EXPECT_EQ(d.keys.size(), 4u);
  EXPECT_EQ(dkim::canonicalizationTag(d.canon), "relaxed/relaxed");
  EXPECT_EQ(d.oversign, (std::vector<std::string>{"From"}));
  EXPECT_EQ(d.headers, dkim::defaultSignedHeaders());
  ASSERT_EQ(d.keysFor("Corp.COM").size(), 2u);
  EXPECT_EQ(d.keysFor("corp.com")[0]->selector, "rsa2026");
  EXPECT_EQ(d.keysFor("corp.com")[1]->key->algorithm(), dkim::DkimAlgorithm::kEd25519Sha256);
  ASSERT_EQ(d.keysFor("a.b.corp.com").size(), 1u);
  EXPECT_EQ(d.keysFor("a.b.corp.com")[0]->domain, "corp.com");
  EXPECT_EQ(d.keysFor("a.b.corp.com")[0]->selector, "sub");
  ASSERT_EQ(d.keysFor("other.org").size(), 1u);
  EXPECT_EQ(d.keysFor("other.org")[0]->domain, "relay.example");
  EXPECT_EQ(d.keysFor("").size(), 1u);  // "*" even without a domain (planSignatures refuses it)
}

TEST_F(DkimConfigTest, SignPolicy) {
  Diagnostics diags;
  auto mc =
      load("milter:\n  dkim:\n    keys: [{domain: corp.com, selector: s, key_file: " + ed_ + "}]\n",
           &diags);
  ASSERT_TRUE(mc) << diags.formatAll();
  const dkim::DkimConfig& d = *mc->dkim;
  dkim::SignContext c;
  EXPECT_FALSE(d.selects(c));
  c.client = *IpAddress::parse("203.0.113.5");
  EXPECT_FALSE(d.selects(c));  // an outside client, unauthenticated: not signed by default
  c.authenticated = true;
  EXPECT_TRUE(d.selects(c));
  c.authenticated = false;
  c.client = *IpAddress::parse("10.1.2.3");
  EXPECT_TRUE(d.selects(c));
  c.client = *IpAddress::parse("::1");
  EXPECT_TRUE(d.selects(c));
  c.client.reset();
  c.nonSmtpd = true;
  EXPECT_TRUE(d.selects(c));

  auto all = load(
      "milter:\n  dkim:\n    sign: all\n    keys: [{domain: corp.com, selector: s, "
      "key_file: " +
          ed_ + "}]\n",
      &diags);
  ASSERT_TRUE(all) << diags.formatAll();
  EXPECT_TRUE(all->dkim->selects(dkim::SignContext{}));
  auto nets = load(
      "milter:\n  dkim:\n    sign: [networks]\n    networks: [192.0.2.0/24]\n"
      "    keys: [{domain: corp.com, selector: s, key_file: " +
          ed_ + "}]\n",
      &diags);
  ASSERT_TRUE(nets) << diags.formatAll();
  dkim::SignContext n;
  n.client = *IpAddress::parse("192.0.2.9");
  EXPECT_TRUE(nets->dkim->selects(n));
  n.client = *IpAddress::parse("127.0.0.1");
  n.authenticated = true;
  n.nonSmtpd = true;
  EXPECT_FALSE(nets->dkim->selects(n));
}

TEST_F(DkimConfigTest, RefusesBadKeysAtTheirLine) {
  std::string open =
      writeKey("open.pem", *dkim::DkimKey::generate(dkim::DkimAlgorithm::kEd25519Sha256, 0), 0644);
  EVP_PKEY* shortRsa = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024));
  ASSERT_NE(shortRsa, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PKCS8PrivateKey(bio, shortRsa, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string shortPath = writeFile("short.pem", std::string(data, len), 0600);
  BIO_free(bio);
  EVP_PKEY_free(shortRsa);
  std::string garbage = writeFile("garbage.pem", "hello\n", 0600);
  Diagnostics diags;
  auto mc = load(
      "milter:\n"
      "  dkim:\n"
      "    keys:\n"
      "      - domain: corp.com\n"
      "        selector: a\n"
      "        key_file: " +
          open +
          "\n"
          "      - {domain: corp.com, selector: b, key_file: " +
          shortPath +
          "}\n"
          "      - {domain: corp.com, selector: c, key_file: " +
          dir_ +
          "/missing.pem}\n"
          "      - {domain: corp.com, selector: d, key_file: " +
          garbage +
          "}\n"
          "      - {domain: corp.com, selector: e, key_file: " +
          rsa_ +
          ", algorithm: ed25519}\n"
          "      - {domain: 'bad domain', selector: f, key_file: " +
          rsa_ +
          "}\n"
          "      - {domain: '*', selector: g, key_file: " +
          rsa_ + "}\n",
      &diags);
  EXPECT_FALSE(mc);
  std::string all = diags.formatAll();
  EXPECT_NE(all.find("test.yaml:6:19: key_file " + open + ": mode 0644"), std::string::npos) << all;
  EXPECT_NE(all.find("test.yaml:7:"), std::string::npos) << all;
  EXPECT_NE(all.find("1024 bits is too short"), std::string::npos) << all;
  EXPECT_NE(all.find("missing.pem: cannot open: No such file"), std::string::npos) << all;
  EXPECT_NE(all.find("not an unencrypted PEM private key"), std::string::npos) << all;
  EXPECT_NE(all.find("holds an rsa key, not ed25519-sha256"), std::string::npos) << all;
  EXPECT_NE(all.find("domain must be a domain name"), std::string::npos) << all;
  EXPECT_NE(all.find("needs `signing_domain:`"), std::string::npos) << all;
  EXPECT_EQ(all.find("BEGIN"), std::string::npos);  // never key material
}

TEST_F(DkimConfigTest, RefusesBadSettings) {
  Diagnostics diags;
  auto mc = load(
      "milter:\n"
      "  dkim:\n"
      "    sign: [authenticated, everyone]\n"
      "    canonicalization: relaxed\n"
      "    headers: [Subject, 'Bad Name']\n"
      "    existing: drop\n"
      "    match: recipient\n"
      "    expire: 10s\n"
      "    colour: blue\n",
      &diags);
  EXPECT_FALSE(mc);
  std::string all = diags.formatAll();
  for (const char* want :
       {"test.yaml:3:11: unknown sign: value \"everyone\"", "test.yaml:4:23: canonicalization must",
        "bad header name \"Bad Name\"", "headers must include From",
        "existing must be keep or replace", "match must be from", "expire must be at least 1m",
        "unknown key \"colour\"", "dkim needs `keys:`"}) {
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  }
}

TEST_F(DkimConfigTest, PlanKeepsOrReplacesExistingSignatures) {
  Diagnostics diags;
  auto mc = load(
      "milter:\n  dkim:\n    existing: replace\n    keys: [{domain: corp.com, "
      "selector: s, key_file: " +
          ed_ + "}]\n",
      &diags);
  ASSERT_TRUE(mc) << diags.formatAll();
  std::vector<dkim::DkimHeader> headers = {
      {"DKIM-Signature", " v=1; a=rsa-sha256; d=other.org; s=x; h=from; bh=AAAA; b=AAAA"},
      {"DKIM-Signature", " v=1; a=rsa-sha256; d=Corp.com; s=x; h=from; bh=AAAA; b=AAAA"},
      {"From", " a@corp.com"}};
  dkim::SignContext c;
  c.nonSmtpd = true;
  dkim::SignPlan plan = dkim::planSignatures(*mc->dkim, c, "corp.com", headers, 1000);
  EXPECT_EQ(plan.outcome, dkim::PlanOutcome::kSign);
  EXPECT_EQ(plan.removeIndexes, (std::vector<size_t>{1}));
  EXPECT_EQ(plan.specs.size(), 1u);
  EXPECT_EQ(plan.specs[0].timestamp, 1000);
  EXPECT_EQ(dkim::planSignatures(*mc->dkim, c, "other.org", headers, 0).outcome,
            dkim::PlanOutcome::kNoKey);
  EXPECT_EQ(dkim::planSignatures(*mc->dkim, c, "", headers, 0).outcome,
            dkim::PlanOutcome::kNoDomain);
  EXPECT_EQ(dkim::planSignatures(*mc->dkim, dkim::SignContext{}, "corp.com", headers, 0).outcome,
            dkim::PlanOutcome::kNotSelected);
}

TEST_F(DkimConfigTest, LookupDomainFromTheSingleFrom) {
  Diagnostics diags;
  auto mc =
      load("milter:\n  dkim:\n    keys: [{domain: corp.com, selector: s, key_file: " + ed_ + "}]\n",
           &diags);
  ASSERT_TRUE(mc);
  const dkim::DkimConfig& d = *mc->dkim;
  EXPECT_EQ(dkimLookupDomain(d, {{"From", " \"A\" <a@Corp.COM>"}}, ""), "corp.com");
  EXPECT_EQ(dkimLookupDomain(d, {{"From", " a@corp.com, b@corp.com"}}, ""), "corp.com");
  EXPECT_EQ(dkimLookupDomain(d, {{"From", " a@corp.com, b@other.org"}}, ""), "");
  EXPECT_EQ(dkimLookupDomain(d, {{"From", " a@corp.com"}, {"From", " b@corp.com"}}, ""), "");
  EXPECT_EQ(dkimLookupDomain(d, {{"To", " a@corp.com"}}, "x@corp.com"), "");
  EXPECT_EQ(dkimLookupDomain(d, {{"From", " <a@corp.com"}}, ""), "");
}

// The seed relay's rewrite (root@relay.corp.local -> noreply@corp.com), then signatures for
// corp.com with RSA and Ed25519 that verify on the message `relaykit rewrite` prints.
TEST_F(DkimConfigTest, RewriteThenSignOffline) {
  Diagnostics diags;
  auto mc = load(
      "tables:\n"
      "  generic:\n"
      "    search: address\n"
      "    sources:\n"
      "      - entries: {root@relay.corp.local: noreply@corp.com}\n"
      "milter:\n"
      "  rewrite_from: {table: generic}\n"
      "  rewrite_sender: {table: generic}\n"
      "  dkim:\n"
      "    keys:\n"
      "      - {domain: corp.com, selector: rsa2026, key_file: " +
          rsa_ +
          "}\n"
          "      - {domain: corp.com, selector: ed2026, key_file: " +
          ed_ + "}\n",
      &diags);
  ASSERT_TRUE(mc) << diags.formatAll();
  Envelope env;
  env.sender = "root@relay.corp.local";
  env.recipients = {"r@example.com"};
  std::string message =
      "From: Root <root@relay.corp.local>\nTo: r@example.com\nSubject: disk\n\nfull\n";
  OfflineReport report = rewriteOffline(*mc, env, message, OfflineSigning{true, 1796608800});
  EXPECT_EQ(report.dkimNote, "dkim: signed for corp.com (2 signatures)");
  ASSERT_EQ(report.dkimSignatures.size(), 2u);
  EXPECT_NE(report.diff.find("+DKIM-Signature: v=1; a=rsa-sha256;"), std::string::npos)
      << report.diff;
  ParsedMessage out = splitMessage(report.message);
  EXPECT_EQ(out.headers[0].name, "DKIM-Signature");
  EXPECT_EQ(out.headers[2].value, " Root <noreply@corp.com>");
  auto lookup = [&](const std::string& domain, const std::string& selector,
                    dkim::DkimAlgorithm) -> StatusOr<std::shared_ptr<const dkim::DkimKey>> {
    EXPECT_EQ(domain, "corp.com");
    return dkim::DkimKey::loadPrivateFile(selector == "rsa2026" ? rsa_ : ed_);
  };
  auto results = dkim::verifyMessage(dkim::toDkimHeaders(out.headers), out.body, lookup);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].pass) << results[0].reason;
  EXPECT_TRUE(results[1].pass) << results[1].reason;
  // Not covered by sign: (an outside client, no SASL): unsigned, and said so.
  env.clientAddress = *IpAddress::parse("203.0.113.5");
  report = rewriteOffline(*mc, env, message, OfflineSigning{false, 1796608800});
  EXPECT_TRUE(report.dkimSignatures.empty());
  EXPECT_EQ(report.dkimNote, "dkim: not signed: not_selected (domain corp.com)");
}

}  // namespace
}  // namespace relaykit::milter
