// SPDX-License-Identifier: Apache-2.0
// alert_text_fuzz.cc: the text of rate-limit alerts (policyd/alert.h) built from hostile values.
// Input: a principal (raw bytes) NUL policy request bytes (name=value lines: sender, helo_name,
// client_address, sasl_username, queue_id come from it). Properties: sanitizeAlertValue() stays
// within its bound and printable for every bound; the syslog line is one printable line that
// starts with the tag and is bounded; the mail's header block holds exactly the fixed headers,
// every line printable and at most 998 bytes, so no value can add a header or a recipient.
#include <sstream>
#include <string>
#include <vector>

#include "policyd/alert.h"
#include "policyd/policy_codec.h"
#include "tests/fuzz/fuzz_support.h"

using namespace relaykit::policy;
using relaykit::fuzz::printable;

namespace {

bool printableAscii(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  relaykit::fuzz::FuzzInput in(data, size);
  const std::string principal(in.text());
  std::string requestBytes(in.rest());
  requestBytes += "\n\n";
  PolicyCodec codec;
  std::vector<PolicyRequest> requests;
  (void)codec.feed(requestBytes, &requests);
  PolicyRequest request = requests.empty() ? PolicyRequest() : requests.front();

  for (std::size_t max : {std::size_t{0}, std::size_t{2}, std::size_t{5}, kMaxAlertValueBytes}) {
    const std::string out = sanitizeAlertValue(principal, max);
    FUZZ_CHECK(out.size() <= max && printableAscii(out), printable(out));
  }
  const std::string shown = displayPrincipal(principal);
  FUZZ_CHECK(shown.size() <= kMaxAlertValueBytes && printableAscii(shown), printable(shown));

  AlertEvent e;
  e.limit = "per-sender";
  e.warnOnly = !principal.empty() && principal[0] == 'w';
  e.principal = principal;
  e.stage = "RCPT";
  e.countUnit = "messages";
  e.windows = {{10, 60000000}, {100, 3600000000}};
  e.intervalUs = alertIntervalUs(0, e.windows);
  e.retryAfterSeconds = 42;
  e.sender = request.get("sender");
  e.client = request.get("client_address");
  e.heloName = request.get("helo_name");
  e.saslUsername = request.get("sasl_username");
  e.queueId = request.get("queue_id");
  e.relay = "relay1.example";
  e.atUs = 1796620787000000;

  const std::string line = formatAlertLogLine(e);
  FUZZ_CHECK(line.rfind(kAlertTag, 0) == 0 && printableAscii(line) &&
                 line.size() <= 300 + 6 * kMaxAlertValueBytes,
             printable(line));

  AlertSettings settings;
  settings.mailTo = {"ops@corp.example", "postmaster"};
  settings.mailFrom = "relaykit@corp.example";
  const std::string mail = formatAlertMail(settings, e, 1);
  const std::size_t blank = mail.find("\n\n");
  FUZZ_CHECK(blank != std::string::npos, "no header/body separator");
  std::istringstream headers(mail.substr(0, blank));
  std::vector<std::string> names;
  for (std::string h; std::getline(headers, h);) {
    FUZZ_CHECK(!h.empty() && printableAscii(h) && h.size() <= 998, printable(h));
    if (h[0] != ' ') {
      names.push_back(h.substr(0, h.find(':')));
    }
  }
  const std::vector<std::string> expected = {"From",
                                             "To",
                                             "Subject",
                                             "Date",
                                             "Message-ID",
                                             "Auto-Submitted",
                                             "X-Relaykit-Alert",
                                             "MIME-Version",
                                             "Content-Type",
                                             "Content-Transfer-Encoding"};
  FUZZ_CHECK(names == expected, printable(mail.substr(0, blank)));
  std::istringstream body(mail.substr(blank + 2));
  for (std::string b; std::getline(body, b);) {
    FUZZ_CHECK(printableAscii(b) && b.size() <= 998, printable(b));
  }
  return 0;
}
