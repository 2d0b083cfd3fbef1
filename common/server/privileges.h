// SPDX-License-Identifier: Apache-2.0
// privileges.h: least privilege after binding (Postfix's order: open sockets and files, then drop
// privileges, then serve).
//
// dropPrivileges("relaykit") sets the supplementary groups (initgroups), gid and uid of that user
// and verifies root cannot be regained. An empty user keeps the identity the process started with
// and logs a warning when that is root. Fails (as a value) on an unknown user or a refused call;
// the daemon treats that as fatal at start-up.
#pragma once

#include <string>

#include "common/status.h"

namespace relaykit {

Status dropPrivileges(const std::string& user);

}  // namespace relaykit
