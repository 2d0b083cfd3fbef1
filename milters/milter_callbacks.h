// milter_callbacks.h: the libmilter glue of relaykit-milter.
//
// Owns the live configuration snapshot (swapped on reload; each connection pins the snapshot it
// negotiated with, each message the newest snapshot its negotiated steps can serve) and the
// smfiDesc callbacks. Per-connection context owns an optional per-message context, reset at MAIL
// FROM, abort and end of message. Callbacks never throw: any exception or table error becomes the
// configured on_error result at end of message. Everything else is in relaykit_milter_core.
#pragma once

#include <memory>

#include "common/server/metrics.h"
#include "milters/milter_config.h"

struct smfiDesc;

namespace relaykit::milter {

// Installs the first configuration (before smfi_main) and swaps later ones (reload).
void setActiveConfig(std::shared_ptr<const MilterConfig> config);
std::shared_ptr<const MilterConfig> activeConfig();

// Registers the metric families used by the callbacks. Call once before smfi_main.
void initMilterMetrics(MetricsRegistry* registry);

// The filter description to pass to smfi_register.
smfiDesc* milterDescription();

// Messages between MAIL FROM and their end (EOM, abort or connection close) right now.
int activeMessages();

}  // namespace relaykit::milter
