// SPDX-License-Identifier: Apache-2.0
// main.cc: relaykit-socketmapd, the socketmap table server. All the work is in the shared daemon
// skeleton (common/server/daemon.h) and SocketmapService (socketmap_service.h).
#include "common/server/daemon.h"
#include "socketmapd/socketmap_service.h"

int main(int argc, char** argv) {
  relaykit::SocketmapService service;
  return relaykit::runDaemon(argc, argv, "relaykit-socketmapd", service);
}
