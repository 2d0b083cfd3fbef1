// SPDX-License-Identifier: Apache-2.0
// main.cc: relaykit-policyd, the policy delegation server. All the work is in the shared daemon
// skeleton (common/server/daemon.h) and PolicyService (policy_service.h).
#include "common/server/daemon.h"
#include "policyd/policy_service.h"

int main(int argc, char** argv) {
  relaykit::policy::PolicyService service;
  return relaykit::runDaemon(argc, argv, "relaykit-policyd", service);
}
