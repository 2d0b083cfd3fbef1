// SPDX-License-Identifier: Apache-2.0
// milter_filter_dkim.cc: RelaykitFilter's DKIM hand-off: at end of message, what to sign and
// which replaced signatures to remove (a job for the signing pool); when the pool has signed,
// the DKIM-Signature headers and the verdict.
#include "milters/milter_callbacks.h"  // RelaykitFilter

#include <cstdint>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/server/logging.h"
#include "milters/dkim_message.h"
#include "milters/milter_filter_internal.h"

namespace relaykit::milter {

using filter_internal::faultAtSign;
using filter_internal::gMetrics;
using filter_internal::increment;
using filter_internal::onErrorName;
using filter_internal::onErrorResult;

namespace {

// The 1-based position of headers[index] among the headers of its name (smfi_chgheader's index).
int sameNameIndex(const std::vector<dkim::DkimHeader>& headers, std::size_t index) {
  int n = 0;
  const std::string name = toLowerAscii(headers[index].name);
  for (std::size_t i = 0; i <= index; ++i) {
    if (toLowerAscii(headers[i].name) == name) {
      ++n;
    }
  }
  return n;
}

}  // namespace

// Decides whether and how the message is signed; with signatures to make, removes the replaced
// ones and leaves the job in m.job. An error: the configured on_error applies.
Status RelaykitFilter::startSigning(Message& m, const RewriteOutcome& out,
                                    MilterModifications* mods) {
  const dkim::DkimConfig& config = *m.config->dkim;
  std::string sender = m.envelope.sender;
  for (const EditOp& op : out.plan) {
    if (op.kind == EditOp::Kind::kChangeFrom) {
      sender = op.value;
    }
  }
  std::vector<dkim::DkimHeader> all = dkim::toDkimHeaders(out.headers);
  const std::string domain = dkimLookupDomain(config, out.headers, sender);
  dkim::SignPlan plan = dkim::planSignatures(config, dkimContext(m.envelope, m.nonSmtpd), domain,
                                             all, static_cast<std::int64_t>(std::time(nullptr)));
  switch (plan.outcome) {
    case dkim::PlanOutcome::kNotSelected:
      increment(gMetrics.dkimNotSelected);
      return Status::ok();
    case dkim::PlanOutcome::kNoDomain:
      increment(gMetrics.dkimNoDomain);
      return Status::ok();
    case dkim::PlanOutcome::kNoKey:
      logInfo(m.prefix + "dkim: no key for " + (domain.empty() ? "\"\"" : domain) +
              ": passed unsigned");
      increment(gMetrics.dkimNoKey);
      return Status::ok();
    case dkim::PlanOutcome::kSign:
      break;
  }
  // existing: replace: delete bottom-up (Postfix renumbers the later ones).
  std::vector<bool> removed(all.size(), false);
  for (std::size_t i : plan.removeIndexes) {
    if (i < all.size()) {
      removed[i] = true;
    }
  }
  for (std::size_t i = all.size(); i-- > 0;) {
    if (removed[i]) {
      Status st = mods->changeHeader(all[i].name, sameNameIndex(all, i), nullptr);
      if (!st) {
        return Status::error("cannot remove a replaced signature: " + st.message());
      }
    }
  }
  std::vector<dkim::DkimHeader> kept;
  kept.reserve(all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!removed[i]) {
      kept.push_back(std::move(all[i]));
    }
  }
  m.signer->finishBody();
  dkim::SignJob job;
  job.signer = std::move(m.signer);
  job.specs = std::move(plan.specs);
  job.headers = std::move(kept);
  job.pin = m.config;
  m.job = std::move(job);
  m.domain = plan.domain;
  return Status::ok();
}

std::optional<dkim::SignJob> RelaykitFilter::takeSignJob() {
  if (!message_.active || !message_.job) {
    return std::nullopt;
  }
  std::optional<dkim::SignJob> job = std::move(message_.job);
  message_.job.reset();
  return job;
}

void RelaykitFilter::setSignResult(StatusOr<std::vector<std::string>> result) {
  if (message_.active) {
    message_.signed_.emplace(std::move(result));
  }
}

MilterResponse RelaykitFilter::resumeEndOfMessage(const MilterSession& s,
                                                  MilterModifications* mods) {
  if (!message_.active) {
    return MilterResponse::of(MilterResponse::Verdict::kTempfail);
  }
  Message& m = message_;
  const MilterConfig* cfg = m.config.get();
  MilterResponse result = MilterResponse::proceed();
  Counter* counted = m.changed ? gMetrics.changed : gMetrics.unchanged;
  try {
    if (!m.signed_) {
      throw std::runtime_error("no signing result");
    }
    const StatusOr<std::vector<std::string>>& values = *m.signed_;
    Status st = values ? Status::ok() : values.status();
    if (st && faultAtSign()) {
      st = Status::error("injected by RELAYKIT_MILTER_FAULT=sign");
    }
    if (st) {
      // Each inserted at the top: the last first, so they end up in key order.
      for (std::size_t i = values->size(); i-- > 0 && st;) {
        const std::string& v = (*values)[i];
        st = mods->insertHeader(0, dkim::kSignatureHeaderName,
                                s.leadingSpace() || v.empty() ? v : v.substr(1));
      }
    }
    if (!st) {
      mods->clear();
      logError(m.prefix + "dkim: signing for " + m.domain + " failed: " + st.message() +
               "; on_error=" + onErrorName(cfg));
      increment(gMetrics.dkimError);
      counted = gMetrics.error;
      result = onErrorResult(cfg);
    } else {
      logInfo(m.prefix + "dkim: signed for " + m.domain + " (" + std::to_string(values->size()) +
              (values->size() == 1 ? " signature)" : " signatures)"));
      increment(gMetrics.dkimSigned);
      if (gMetrics.dkimSignatures) {
        gMetrics.dkimSignatures->inc(values->size());
      }
      counted = gMetrics.changed;
    }
  } catch (...) {
    return finishAfterInternalError(cfg, mods);
  }
  return finishMessage(counted, result);
}

}  // namespace relaykit::milter
