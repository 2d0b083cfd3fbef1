// SPDX-License-Identifier: Apache-2.0
// main.cc: relaykit-milter, the header and sender rewriting milter. All the work is in the shared
// daemon skeleton (common/server/daemon.h) and MilterService (milter_service.h).
#include "common/server/daemon.h"
#include "milters/milter_service.h"

int main(int argc, char** argv) {
  relaykit::milter::MilterService service;
  return relaykit::runDaemon(argc, argv, "relaykit-milter", service);
}
