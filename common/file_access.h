// SPDX-License-Identifier: Apache-2.0
// file_access.h: can a daemon's `user:` read what the configuration names? (`relaykit check`
// and the daemons' --check.)
//
// A daemon reads its configuration, the table files and its own files (password_file, rule and
// key files) at start-up as root and AGAIN at every reload, after it dropped to `user:`; a file
// that user cannot read makes every reload fail. checkDaemonAccess() reports, as errors at the
// place the file is named: a `user:` that does not exist, and each named file the user cannot
// reach, from the mode, owner and group bits of the file and of every directory above it against
// the user's uid, primary group and supplementary groups (POSIX ACLs are not read; root reads
// everything). No shell-outs, no privilege changes. A file that does not exist is left to the
// loader's own message.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/config.h"
#include "common/diagnostics.h"
#include "common/status.h"

namespace relaykit {

struct UserIdentity {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, the primary group included
};

// The passwd entry and group list of `name`; kNotFound when there is no such user.
StatusOr<UserIdentity> lookupUser(const std::string& name);

// Ok when `user` can search every directory above `path` and read `path`; otherwise why not
// ("/etc/relaykit is root:root 0700" ...), kPermissionDenied. Other stat() failures: their errno
// text (kNotFound for a missing file).
Status checkReadable(const UserIdentity& user, const std::string& path);

// The checks above for the `user:` of `section` (nothing when it has none).
void checkDaemonAccess(const Config& config, DaemonSection section, Diagnostics* diags);

}  // namespace relaykit
