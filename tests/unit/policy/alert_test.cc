// SPDX-License-Identifier: Apache-2.0
// alert_test.cc: alerts when a limit trips: sanitising of hostile values in the syslog line and
// the mail, the per-relay alert windows (bounded), `policy: alerts:` parsing (errors at
// FILE:LINE:COL), the sendmail worker (real programs: exit status, timeout, full queue) and the
// notifier (once per principal, limit and window; Redis claims shared by two "relays").
#include <event2/event.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "common/server/metrics.h"
#include "policyd/alert.h"
#include "policyd/alert_mailer.h"
#include "policyd/alert_notifier.h"
#include "policyd/memory_store.h"
#include "policyd/policy_engine.h"
#include "redis_test_server.h"

namespace relaykit::policy {
namespace {

constexpr std::int64_t kSecond = 1000000;

std::shared_ptr<const PolicyConfig> parse(const std::string& yaml, Diagnostics* diags) {
  std::shared_ptr<const Config> config = loadConfigText(yaml, "test.yaml", diags);
  return config == nullptr ? nullptr : parsePolicyConfig(*config, diags);
}

std::shared_ptr<const PolicyConfig> parseOk(const std::string& yaml) {
  Diagnostics diags;
  auto config = parse(yaml, &diags);
  EXPECT_NE(config, nullptr) << diags.formatAll();
  return config;
}

std::string parseErrors(const std::string& yaml) {
  Diagnostics diags;
  auto config = parse(yaml, &diags);
  EXPECT_EQ(config, nullptr);
  return diags.formatAll();
}

bool printableAscii(const std::string& s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      return false;
    }
  }
  return true;
}

// ---- sanitising and formatting -------------------------------------------------------------

TEST(AlertText, SanitizeEscapesEveryNonPrintableByte) {
  EXPECT_EQ(sanitizeAlertValue("a@b.example"), "a@b.example");
  EXPECT_EQ(sanitizeAlertValue(std::string("x\r\nBcc: y\0z", 11)), "x\\x0d\\x0aBcc: y\\x00z");
  EXPECT_EQ(sanitizeAlertValue("caf\xc3\xa9\\"), "caf\\xc3\\xa9\\\\");
  EXPECT_EQ(sanitizeAlertValue("\x7f"), "\\x7f");
}

TEST(AlertText, SanitizeIsBoundedAtEveryLength) {
  for (std::size_t n = 0; n < 300; ++n) {
    for (const char fill : {'a', '\n'}) {
      const std::string value(n, fill);
      for (std::size_t max : {std::size_t{3}, std::size_t{10}, kMaxAlertValueBytes}) {
        const std::string out = sanitizeAlertValue(value, max);
        ASSERT_LE(out.size(), max) << n;
        ASSERT_TRUE(printableAscii(out));
        const std::size_t full = fill == 'a' ? n : 4 * n;
        if (full <= max) {
          ASSERT_EQ(out.size(), full);
        } else {
          ASSERT_EQ(out.substr(out.size() - std::min<std::size_t>(3, max)),
                    std::string("...").substr(0, std::min<std::size_t>(3, max)));
        }
      }
    }
  }
}

TEST(AlertText, PrincipalDurationsWindowsKeys) {
  EXPECT_EQ(displayPrincipal("sender=a@b"), "sender=a@b");
  EXPECT_EQ(displayPrincipal("sender=a@b\x1f"
                             "client_address=192.0.2.1"),
            "sender=a@b, client_address=192.0.2.1");
  EXPECT_EQ(displayPrincipal("helo_name=x\x1f\x1fy"), "helo_name=x\\x1fy");
  EXPECT_EQ(displayPrincipal(std::string(1000, 'a')).size(), kMaxAlertValueBytes);
  EXPECT_EQ(formatDurationUs(3600 * kSecond), "1h");
  EXPECT_EQ(formatDurationUs(90 * kSecond), "90s");
  EXPECT_EQ(formatDurationUs(1500000), "1500ms");
  EXPECT_EQ(formatDurationUs(2 * 86400 * kSecond), "2d");
  EXPECT_EQ(formatWindows({{10, 60 * kSecond}, {100, 3600 * kSecond}}), "10/1m, 100/1h");
  EXPECT_EQ(alertIntervalUs(0, {{100, 3600 * kSecond}, {10, 60 * kSecond}}), 60 * kSecond);
  EXPECT_EQ(alertIntervalUs(5 * kSecond, {{10, 60 * kSecond}}), 5 * kSecond);
  EXPECT_EQ(alertKeyFor("rl:{0123abcd}:per-sender"), "alert:{0123abcd}:per-sender");
}

TEST(AlertText, PlainAddresses) {
  for (const char* ok : {"postmaster", "ops@corp.example", "a.b+c@x-y.example", "o'neil@x"}) {
    EXPECT_TRUE(isPlainAddress(ok)) << ok;
  }
  for (const char* bad :
       {"", "a b@x", "a@b@c", "<a@b>", "a,b@c", "@x", "a@", "a\n@b", "\"q\"@x", "a;b@c"}) {
    EXPECT_FALSE(isPlainAddress(bad)) << bad;
  }
  EXPECT_FALSE(isPlainAddress(std::string(kMaxAlertAddressBytes + 1, 'a')));
}

AlertEvent hostileEvent() {
  AlertEvent e;
  e.limit = "per-sender";
  e.principal = "sender=x@y\r\nBcc: victim@example.net";
  e.stage = "RCPT";
  e.countUnit = "messages";
  e.windows = {{4, 3600 * kSecond}};
  e.intervalUs = 3600 * kSecond;
  e.retryAfterSeconds = 900;
  e.sender = "x@y\nSubject: spoof";
  e.client = "192.0.2.1";
  e.heloName = std::string(5000, 'h') + "\r\n";
  e.saslUsername = "u\0ser";
  e.queueId = "4XyZ1";
  e.relay = "relay1.example";
  e.atUs = 1796620787000000;
  return e;
}

TEST(AlertText, LogLineIsOneBoundedPrintableLineWithTheTag) {
  const std::string line = formatAlertLogLine(hostileEvent());
  EXPECT_EQ(line.rfind(std::string(kAlertTag) + " limit=per-sender mode=enforce principal=\"", 0),
            0u)
      << line;
  EXPECT_TRUE(printableAscii(line)) << line;
  EXPECT_NE(line.find("interval=1h relay=relay1.example stage=RCPT retry_after=900s"),
            std::string::npos);
  EXPECT_NE(line.find("sender=x@y\\x0d\\x0aBcc: victim@example.net"), std::string::npos);
  EXPECT_LT(line.size(), 1200u);
  AlertEvent warn = hostileEvent();
  warn.warnOnly = true;
  EXPECT_NE(formatAlertLogLine(warn).find(" mode=warn_only "), std::string::npos);
}

TEST(AlertText, MailHeadersCannotBeInjected) {
  AlertSettings settings;
  settings.mailTo = {"ops@corp.example", "postmaster"};
  settings.mailFrom = "relaykit@corp.example";
  const std::string mail = formatAlertMail(settings, hostileEvent(), 7);
  const std::size_t blank = mail.find("\n\n");
  ASSERT_NE(blank, std::string::npos);
  std::istringstream headers(mail.substr(0, blank));
  std::vector<std::string> names;
  for (std::string line; std::getline(headers, line);) {
    EXPECT_TRUE(printableAscii(line)) << line;
    EXPECT_LE(line.size(), 998u);
    if (line[0] != ' ') {
      names.push_back(line.substr(0, line.find(':')));
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"From", "To", "Subject", "Date", "Message-ID",
                                             "Auto-Submitted", "X-Relaykit-Alert", "MIME-Version",
                                             "Content-Type", "Content-Transfer-Encoding"}));
  EXPECT_NE(mail.find("To: ops@corp.example,\n postmaster\n"), std::string::npos);
  EXPECT_NE(mail.find("Subject: relaykit alert: limit per-sender exceeded by sender=x@y\\x0d\\x0a"
                      "Bcc: victim@example.net\n"),
            std::string::npos);
  EXPECT_NE(mail.find("Date: Mon, 07 Dec 2026 "), std::string::npos) << mail;
  EXPECT_NE(mail.find("Message-ID: <relaykit-alert.1796620787000000.7@relay1.example>"),
            std::string::npos);
  // The body: every line printable, the values bounded.
  std::istringstream body(mail.substr(blank + 2));
  for (std::string line; std::getline(body, line);) {
    EXPECT_TRUE(printableAscii(line)) << line;
    EXPECT_LE(line.size(), kMaxAlertValueBytes + 20);
  }
  EXPECT_NE(mail.find("allowance:     4/1h messages\n"), std::string::npos);
  EXPECT_EQ(sendmailArgv(settings), (std::vector<std::string>{kDefaultSendmail, "-t", "-i", "-f",
                                                              "relaykit@corp.example"}));
  settings.mailFrom.clear();
  EXPECT_EQ(formatAlertMail(settings, hostileEvent(), 1).rfind("To: ", 0), 0u);
  EXPECT_EQ(sendmailArgv(settings), (std::vector<std::string>{kDefaultSendmail, "-t", "-i"}));
}

// ---- the per-relay windows -------------------------------------------------------------------

TEST(AlertWindowsTest, OnePerKeyAndWindow) {
  AlertWindows w;
  EXPECT_TRUE(w.open("a", 0, 10));
  EXPECT_FALSE(w.open("a", 9, 10));
  EXPECT_TRUE(w.open("b", 9, 10));
  EXPECT_TRUE(w.open("a", 10, 10));  // the window passed: a new one
  EXPECT_FALSE(w.isOpen("c", 0));
  w.remember("c", 50, 20);
  EXPECT_TRUE(w.isOpen("c", 49));
  EXPECT_FALSE(w.open("c", 49, 10));
  EXPECT_TRUE(w.open("c", 50, 10));
}

TEST(AlertWindowsTest, BoundedOldestForgottenFirst) {
  AlertWindows w(3);
  for (const char* k : {"a", "b", "c", "d"}) {
    EXPECT_TRUE(w.open(k, 0, 100));
  }
  EXPECT_EQ(w.size(), 3u);
  EXPECT_EQ(w.evicted(), 1u);
  EXPECT_FALSE(w.isOpen("a", 1));  // forgotten: may alert again early
  EXPECT_TRUE(w.isOpen("d", 1));
  // Closed windows go before open ones (not counted as evicted).
  AlertWindows x(2);
  x.open("old", 0, 1);
  x.open("new", 0, 100);
  x.open("third", 5, 100);
  EXPECT_EQ(x.evicted(), 0u);
  EXPECT_EQ(x.size(), 2u);
  for (int i = 0; i < 1000; ++i) {
    x.open("k" + std::to_string(i), 10, 100);
  }
  EXPECT_EQ(x.size(), 2u);
}

// ---- config ------------------------------------------------------------------------------------

TEST(AlertConfig, ParsesTheSectionAndPerLimitSwitch) {
  Diagnostics diags;
  auto config = parse(R"(
policy:
  alerts:
    syslog: false
    mail_to: [ops@corp.example, postmaster]
    mail_from: relaykit@corp.example
    sendmail: [/usr/sbin/sendmail, -C, /etc/postfix-out]
    queue: 5
    timeout: 10s
    interval: 15m
    relay_name: relay1.corp.example
  limits:
    - {name: a, key: [sender], max: 1, per: 1h}
    - {name: b, key: [sender], max: 1, per: 1h, alert: false}
)",
                      &diags);
  ASSERT_NE(config, nullptr) << diags.formatAll();
  const AlertSettings& a = config->alerts;
  EXPECT_TRUE(a.enabled);
  EXPECT_FALSE(a.syslog);
  EXPECT_EQ(a.mailTo, (std::vector<std::string>{"ops@corp.example", "postmaster"}));
  EXPECT_EQ(a.mailFrom, "relaykit@corp.example");
  EXPECT_EQ(a.sendmail, (std::vector<std::string>{"/usr/sbin/sendmail", "-C", "/etc/postfix-out"}));
  EXPECT_EQ(a.queue, 5u);
  EXPECT_EQ(a.timeout, std::chrono::seconds(10));
  EXPECT_EQ(a.intervalUs, 900 * kSecond);
  EXPECT_EQ(a.relayName, "relay1.corp.example");
  EXPECT_TRUE(config->limits[0].alert);
  EXPECT_FALSE(config->limits[1].alert);

  auto none = parse("policy:\n  limits: []\n", &diags);
  ASSERT_NE(none, nullptr);
  EXPECT_FALSE(none->alerts.enabled);
  auto bare = parse("policy:\n  alerts:\n", &diags);
  ASSERT_NE(bare, nullptr);
  EXPECT_TRUE(bare->alerts.enabled);
  EXPECT_TRUE(bare->alerts.syslog);
  EXPECT_TRUE(bare->alerts.mailTo.empty());
  EXPECT_EQ(bare->alerts.sendmail, std::vector<std::string>{kDefaultSendmail});
}

TEST(AlertConfig, EveryProblemAtFileLineColumn) {
  const std::string errors = parseErrors(R"(policy:
  alerts:
    mail_to: ["ops@corp.example, evil@x", "a b"]
    mail_from: "<x@y>"
    sendmail: sendmail
    queue: 0
    timeout: 1h
    interval: 400d
    relay_name: "relay one"
    syslgo: true
  limits:
    - {name: a, key: [sender], max: 1, per: 1h, alert: maybe}
)");
  for (const char* expected :
       {"test.yaml:3:14: alerts: mail_to: \"ops@corp.example, evil@x\" is not a plain address",
        "test.yaml:3:14: alerts: mail_to: \"a b\" is not a plain address",
        "test.yaml:4:16: alerts: mail_from: expected a plain address",
        "test.yaml:5:15: alerts: sendmail: expected an absolute path",
        "test.yaml:6:12:", "test.yaml:7:14: alerts: timeout: at most 600s",
        "test.yaml:8:15: alerts: interval: at most 366d",
        "test.yaml:9:17: alerts: relay_name: expected a host name",
        "test.yaml:10:5: unknown key \"syslgo\" in policy alerts",
        "test.yaml:12:56: expected true or false"}) {
    EXPECT_NE(errors.find(expected), std::string::npos) << expected << "\n" << errors;
  }
  Diagnostics warned;
  ASSERT_NE(
      parse("policy:\n  alerts:\n    mail_to: ops\n    sendmail: /nonexistent/sendmail\n", &warned),
      nullptr);
  EXPECT_NE(
      warned.formatAll().find("test.yaml:4:15: warning: alerts: sendmail /nonexistent/sendmail is "
                              "not executable here"),
      std::string::npos)
      << warned.formatAll();
  EXPECT_NE(parseErrors("policy:\n  alerts: [x]\n").find("test.yaml:2:11: expected a map"),
            std::string::npos);
  std::string many = "policy:\n  alerts:\n    mail_to: [";
  for (std::size_t i = 0; i <= kMaxAlertRecipients; ++i) {
    many += (i ? ", a" : "a") + std::to_string(i) + "@x";
  }
  EXPECT_NE(parseErrors(many + "]\n").find("at most 20 addresses"), std::string::npos);
}

// ---- the sendmail worker -----------------------------------------------------------------------

class Scripts : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/relaykit-alert-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  // An executable shell script in the test's directory.
  std::string script(const std::string& name, const std::string& body) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body;
    chmod(path.c_str(), 0755);
    return path;
  }
  std::string read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string dir_;
};

TEST_F(Scripts, RunSendmailResults) {
  const std::string ok = script("ok",
                                "cat > \"$(dirname \"$0\")/mail\"; echo \"$@\" > "
                                "\"$(dirname \"$0\")/args\"\n");
  EXPECT_TRUE(runSendmail({ok, "-t", "-i"}, "Subject: x\n\nbody\n", std::chrono::seconds(5)));
  EXPECT_EQ(read("mail"), "Subject: x\n\nbody\n");
  EXPECT_EQ(read("args"), "-t -i\n");
  // A large message (more than a pipe buffer) arrives whole.
  const std::string big(1 << 20, 'x');
  EXPECT_TRUE(runSendmail({ok}, big, std::chrono::seconds(5)));
  EXPECT_EQ(read("mail").size(), big.size());

  const std::string fail = script("fail", "echo 'postdrop: fatal: no\rway' >&2; exit 75\n");
  Status s = runSendmail({fail}, "x\n", std::chrono::seconds(5));
  EXPECT_FALSE(s);
  EXPECT_EQ(s.message(), "exit 75: postdrop: fatal: no\\x0dway");
  // Exits without reading its input: still its exit status that counts.
  const std::string early = script("early", "exit 0\n");
  EXPECT_TRUE(runSendmail({early}, big, std::chrono::seconds(5)));

  const std::string hang = script("hang", "exec sleep 30\n");
  const auto t0 = std::chrono::steady_clock::now();
  s = runSendmail({hang}, "x\n", std::chrono::milliseconds(300));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("timed out after 300 ms"), std::string::npos) << s.message();
  EXPECT_FALSE(runSendmail({dir_ + "/missing"}, "x\n", std::chrono::seconds(1)));
}

TEST_F(Scripts, MailerQueueIsBoundedAndReportsEveryJob) {
  std::mutex mutex;
  std::vector<std::pair<std::string, bool>> reports;
  const std::string hang = script("hang", "exec sleep 30\n");
  const std::string ok = script("ok", "cat > /dev/null\n");
  {
    AlertMailer mailer([&](const AlertMailer::Job& job, const Status& result) {
      std::lock_guard<std::mutex> lock(mutex);
      reports.emplace_back(job.limit, result.isOk());
    });
    auto job = [](const std::string& limit, const std::string& program) {
      return AlertMailer::Job{limit, {program}, "x\n", std::chrono::milliseconds(1500)};
    };
    ASSERT_TRUE(mailer.submit(job("hung", hang), 1));
    // The worker takes it (and hangs in it): the queue is free again, for one job only.
    for (int i = 0; i < 500 && mailer.queued() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(mailer.submit(job("second", ok), 1));
    EXPECT_FALSE(mailer.submit(job("third", ok), 1));  // full: refused at once
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(100));
    for (int i = 0; i < 1000; ++i) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (reports.size() == 2) {
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  EXPECT_EQ(reports,
            (std::vector<std::pair<std::string, bool>>{{"hung", false}, {"second", true}}));
}

TEST_F(Scripts, StoppingKillsARunningSendmail) {
  const std::string hang = script("hang", "exec sleep 30\n");
  std::optional<Status> report;
  const auto t0 = std::chrono::steady_clock::now();
  {
    AlertMailer mailer([&](const AlertMailer::Job&, const Status& result) { report = result; });
    ASSERT_TRUE(mailer.submit(AlertMailer::Job{"l", {hang}, "x\n", std::chrono::seconds(30)}, 5));
    ASSERT_TRUE(mailer.submit(AlertMailer::Job{"l", {hang}, "x\n", std::chrono::seconds(30)}, 5));
    for (int i = 0; i < 500 && mailer.queued() > 1; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the first sendmail runs
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  ASSERT_TRUE(report.has_value());
  EXPECT_EQ(report->message(), "cancelled: relaykit-policyd is stopping (killed)");
}

// ---- the notifier ------------------------------------------------------------------------------

struct Relay {
  Relay(MetricsRegistry* metrics, RedisStore* redis, std::int64_t* now)
      : notifier(metrics, redis, [now] { return *now; }) {}
  AlertNotifier notifier;
};

PolicyRequest eom(const std::string& sender) {
  PolicyRequest r;
  r.add("request", "smtpd_access_policy");
  r.add("protocol_state", "END-OF-MESSAGE");
  r.add("sender", sender);
  r.add("client_address", "192.0.2.7");
  r.add("recipient_count", "1");
  return r;
}

std::uint64_t counter(MetricsRegistry& m, const char* name, const LabelValues& labels,
                      const std::vector<std::string>& names) {
  return m.counter(name, "", names).labels(labels).value();
}

const char* kNotifierConfig = R"(
policy:
  alerts:
    relay_name: relay1
  limits:
    - {name: one, key: [sender], max: 1, per: 1m}
    - {name: warn, key: [sender], max: 1, per: 1h, warn_only: true}
    - {name: quiet, key: [sender], max: 1, per: 1h, warn_only: true, alert: false}
)";

TEST(AlertNotifierTest, MemoryStoreOncePerPrincipalLimitAndWindow) {
  auto config = parseOk(kNotifierConfig);
  ASSERT_NE(config, nullptr);
  MetricsRegistry metrics;
  std::int64_t now = 1000 * kSecond;
  MemoryStore store([&now] { return now; });
  Relay relay(&metrics, nullptr, &now);
  ::testing::internal::CaptureStderr();
  auto trip = [&](const std::string& sender) {
    const PolicyRequest r = eom(sender);
    const Plan plan = planRequest(*config, r);
    StatusOr<StoreResult> result = store.evaluateNow(plan.store);
    const Verdict verdict = decide(*config, r, plan, *result);
    relay.notifier.onTrips(*config, r, plan, verdict);
    return verdict.hits.size();
  };
  EXPECT_EQ(trip("a@x"), 0u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(trip("a@x"), 3u);  // one, warn and quiet all exceeded
  }
  EXPECT_EQ(trip("b@x"), 0u);  // another principal
  EXPECT_EQ(trip("b@x"), 3u);
  now += 61 * kSecond;         // `one`'s window (1m) passed, warn's (1h) did not
  EXPECT_EQ(trip("a@x"), 2u);  // one passes again (1/1m): warn and quiet exceeded
  EXPECT_EQ(trip("a@x"), 3u);
  const std::string log = ::testing::internal::GetCapturedStderr();
  auto countOf = [&](const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t p = log.find(needle); p != std::string::npos; p = log.find(needle, p + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(countOf(kAlertTag), 5u) << log;
  EXPECT_EQ(countOf("relaykit-alert: limit=one mode=enforce principal=\"sender=a@x\" interval=1m "
                    "relay=relay1"),
            2u)
      << log;
  EXPECT_EQ(countOf("relaykit-alert: limit=one mode=enforce principal=\"sender=b@x\""), 1u);
  EXPECT_EQ(countOf("relaykit-alert: limit=warn mode=warn_only principal=\"sender=a@x\""), 1u);
  EXPECT_EQ(countOf("relaykit-alert: limit=warn mode=warn_only principal=\"sender=b@x\""), 1u);
  EXPECT_EQ(countOf("limit=quiet"), 0u);
  const std::vector<std::string> names = {"limit", "channel", "result"};
  EXPECT_EQ(counter(metrics, "relaykit_policy_alerts_total", {"one", "syslog", "sent"}, names), 3u);
  EXPECT_EQ(counter(metrics, "relaykit_policy_alerts_total", {"warn", "syslog", "sent"}, names),
            2u);
  // Trips: one 5+1+1 (3 alerted), warn 5+1+1+1 (2 alerted).
  EXPECT_EQ(counter(metrics, "relaykit_policy_alerts_suppressed_total", {"one"}, {"limit"}), 4u);
  EXPECT_EQ(counter(metrics, "relaykit_policy_alerts_suppressed_total", {"warn"}, {"limit"}), 6u);
}

TEST(AlertNotifierTest, NoSectionNoAlert) {
  auto config = parseOk("policy:\n  limits:\n    - {name: one, key: [sender], max: 1, per: 1m}\n");
  ASSERT_NE(config, nullptr);
  MetricsRegistry metrics;
  std::int64_t now = kSecond;
  MemoryStore store([&now] { return now; });
  Relay relay(&metrics, nullptr, &now);
  ::testing::internal::CaptureStderr();
  for (int i = 0; i < 3; ++i) {
    const PolicyRequest r = eom("a@x");
    const Plan plan = planRequest(*config, r);
    relay.notifier.onTrips(*config, r, plan,
                           decide(*config, r, plan, *store.evaluateNow(plan.store)));
  }
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find(kAlertTag), std::string::npos);
}

void loopUntil(event_base* base, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

TEST(AlertNotifierTest, RedisClaimOneAlertForTwoRelays) {
  if (!testing::redisAvailable()) {
    GTEST_SKIP() << "redis-server not installed";
  }
  testing::RedisTestServer server;
  ASSERT_TRUE(server.start());
  // The documented rights of the daemon, alerts included (policyd/README.md).
  ASSERT_EQ(server.command("ACL SETUSER relaykit on >s3cret-Pa55 resetkeys ~relaykit:* "
                           "resetchannels -@all +evalsha +eval +time +hmget +hset +pexpire "
                           "+set +pttl"),
            "OK");
  event_base* base = event_base_new();
  RedisStoreSettings settings;
  settings.port = server.port();
  settings.timeoutMs = 1000;
  settings.username = "relaykit";
  settings.password = "s3cret-Pa55";
  auto config = parseOk(kNotifierConfig);
  ASSERT_NE(config, nullptr);
  {
    RedisStore store1(base, settings);
    RedisStore store2(base, settings);
    store1.start();
    store2.start();
    loopUntil(base, [&] { return store1.stats().connected && store2.stats().connected; });
    ASSERT_TRUE(store1.stats().connected && store2.stats().connected);

    // claim() itself: the first owns the window, the second learns how long it has left.
    std::optional<StatusOr<std::int64_t>> a, b;
    store1.claim("alert:{t}:x", "relay1", 60000, [&](StatusOr<std::int64_t> r) { a = r; });
    store2.claim("alert:{t}:x", "relay2", 60000, [&](StatusOr<std::int64_t> r) { b = r; });
    loopUntil(base, [&] { return a && b; });
    ASSERT_TRUE(a && a->isOk() && b && b->isOk());
    EXPECT_EQ(**a, 0);
    EXPECT_GT(**b, 59000);
    EXPECT_LE(**b, 60000);
    EXPECT_EQ(server.command("GET relaykit:alert:{t}:x"), "relay1");

    MetricsRegistry m1, m2;
    std::int64_t now = 1000 * kSecond;
    MemoryStore counters([&now] { return now; });  // the decisions (the claims are Redis's)
    AlertNotifier n1(&m1, &store1, [&now] { return now; });
    AlertNotifier n2(&m2, &store2, [&now] { return now; });
    ::testing::internal::CaptureStderr();
    for (int i = 0; i < 6; ++i) {
      AlertNotifier& n = i % 2 == 0 ? n1 : n2;
      const PolicyRequest r = eom("a@x");
      const Plan plan = planRequest(*config, r);
      n.onTrips(*config, r, plan, decide(*config, r, plan, *counters.evaluateNow(plan.store)));
      loopUntil(base, [&] { return n.pendingClaims() == 0; });
    }
    const std::string log = ::testing::internal::GetCapturedStderr();
    std::size_t alerts = 0;
    for (std::size_t p = log.find("relaykit-alert: limit=one"); p != std::string::npos;
         p = log.find("relaykit-alert: limit=one", p + 1)) {
      ++alerts;
    }
    EXPECT_EQ(alerts, 1u) << log;
    const std::vector<std::string> names = {"limit", "channel", "result"};
    EXPECT_EQ(counter(m1, "relaykit_policy_alerts_total", {"one", "syslog", "sent"}, names) +
                  counter(m2, "relaykit_policy_alerts_total", {"one", "syslog", "sent"}, names),
              1u);
    EXPECT_EQ(counter(m1, "relaykit_policy_alerts_suppressed_total", {"one"}, {"limit"}) +
                  counter(m2, "relaykit_policy_alerts_suppressed_total", {"one"}, {"limit"}),
              4u);  // 5 trips (the first request passed), 1 alerted
    const std::string key = server.command("KEYS relaykit:alert:*:one");
    EXPECT_NE(key, "");
    const std::string owner = server.command("GET " + key);
    EXPECT_TRUE(owner == "relay1") << owner;  // relay_name of the config (both relays share it)
    const long ttl = std::stol(server.command("PTTL " + key));
    EXPECT_GT(ttl, 50000);
    EXPECT_LE(ttl, 60000);
    n1.detachStore();
    n2.detachStore();
  }
  event_base_free(base);
}

}  // namespace
}  // namespace relaykit::policy
