// SPDX-License-Identifier: Apache-2.0
// dkim_message.cc: DKIM signing on the milter's types (see dkim_message.h).
#include "milters/dkim_message.h"

#include "common/address.h"
#include "milters/address_list.h"

namespace relaykit::milter {

std::string dkimLookupDomain(const dkim::DkimConfig& config,
                             const std::vector<HeaderField>& headers,
                             const std::string& envelopeSender) {
  if (config.matchBy == dkim::MatchBy::kEnvelopeSender) {
    size_t at = envelopeSender.rfind('@');
    return at == std::string::npos ? std::string() : toLowerAscii(envelopeSender.substr(at + 1));
  }
  const HeaderField* from = nullptr;
  for (const HeaderField& h : headers) {
    if (toLowerAscii(h.name) == "from") {
      if (from != nullptr) {
        return std::string();  // several From headers: DMARC receivers refuse such mail
      }
      from = &h;
    }
  }
  if (from == nullptr) {
    return std::string();
  }
  StatusOr<std::vector<Mailbox>> boxes = parseAddressList(from->value);
  if (!boxes || boxes->empty()) {
    return std::string();
  }
  std::string domain = toLowerAscii((*boxes)[0].domain);
  for (const Mailbox& box : *boxes) {
    if (toLowerAscii(box.domain) != domain) {
      return std::string();
    }
  }
  return domain;
}

dkim::SignContext dkimContext(const Envelope& envelope, bool nonSmtpd) {
  dkim::SignContext context;
  context.client = envelope.clientAddress;
  context.authenticated = !envelope.saslUser.empty();
  context.nonSmtpd = nonSmtpd;
  return context;
}

DkimResult signWholeMessage(const dkim::DkimConfig& config, const dkim::SignContext& context,
                            const std::string& envelopeSender,
                            const std::vector<HeaderField>& headers, const std::string& body,
                            std::int64_t now) {
  DkimResult result;
  std::vector<dkim::DkimHeader> all = dkim::toDkimHeaders(headers);
  std::string domain = dkimLookupDomain(config, headers, envelopeSender);
  dkim::SignPlan plan = dkim::planSignatures(config, context, domain, all, now);
  result.outcome = plan.outcome;
  result.domain = plan.domain;
  if (plan.outcome != dkim::PlanOutcome::kSign) {
    return result;
  }
  std::vector<dkim::DkimHeader> kept;
  for (size_t i = 0; i < all.size(); ++i) {
    bool removed = false;
    for (size_t r : plan.removeIndexes) {
      removed = removed || r == i;
    }
    if (!removed) {
      kept.push_back(all[i]);
    }
  }
  dkim::MessageSigner signer(config.bodyCanons());
  signer.feedBody(body);
  signer.finishBody();
  StatusOr<std::vector<std::string>> values = signer.sign(plan.specs, kept);
  if (!values) {
    result.error = values.status().message();
    return result;
  }
  result.signatures = std::move(*values);
  result.removed = plan.removeIndexes;
  return result;
}

}  // namespace relaykit::milter
