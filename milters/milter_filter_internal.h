// SPDX-License-Identifier: Apache-2.0
// milter_filter_internal.h: what relaykit's filter (milter_callbacks.cc) and its DKIM hand-off
// (milter_filter_dkim.cc) share: the metric series, the on_error answer and the signing test
// hook. For those two files only.
#pragma once

#include "common/server/metrics.h"
#include "milters/milter_config.h"
#include "milters/milter_session.h"

namespace relaykit::milter::filter_internal {

// The series are looked up once (a label lookup takes the family's mutex).
struct Metrics {
  Counter* changed = nullptr;  // relaykit_milter_messages_total{result=...}
  Counter* unchanged = nullptr;
  Counter* error = nullptr;
  Counter* skipped = nullptr;
  Counter* changes = nullptr;  // relaykit_milter_changes_total{kind="all"}
  Histogram* eomSeconds = nullptr;
  // relaykit_milter_dkim_messages_total{result=...}
  Counter* dkimSigned = nullptr;
  Counter* dkimNoKey = nullptr;
  Counter* dkimNoDomain = nullptr;
  Counter* dkimNotSelected = nullptr;
  Counter* dkimError = nullptr;
  Counter* dkimSignatures = nullptr;  // relaykit_milter_dkim_signatures_total
};
extern Metrics gMetrics;  // set by initMilterMetrics()

// Counts one in `c` (a series not registered: nothing).
void increment(Counter* c);

// Test hook: RELAYKIT_MILTER_FAULT=sign makes every DKIM signature fail as an OpenSSL error
// would (after the job ran on the pool), so on_error for signing is testable end to end.
bool faultAtSign();

// The verdict and the name of the configured milter.on_error (tempfail without a configuration).
MilterResponse onErrorResult(const MilterConfig* config);
const char* onErrorName(const MilterConfig* config);

}  // namespace relaykit::milter::filter_internal
