// SPDX-License-Identifier: Apache-2.0
// privileges.cc: initgroups/setgid/setuid; see privileges.h.
#include "common/server/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/server/logging.h"

namespace relaykit {

Status dropPrivileges(const std::string& user) {
  if (user.empty()) {
    if (geteuid() == 0) {
      logWarning("running as root: set `user:` in the daemon's section to drop privileges");
    }
    return Status::ok();
  }
  passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) {
    return Status::error("unknown user \"" + user + "\"");
  }
  if (geteuid() != 0) {
    if (geteuid() == pw->pw_uid) {
      return Status::ok();  // already that user
    }
    return Status::error("cannot switch to user \"" + user + "\": not started as root");
  }
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  if (initgroups(user.c_str(), gid) != 0) {
    return Status::error("initgroups(" + user + "): " + std::strerror(errno));
  }
  if (setgid(gid) != 0) {
    return Status::error("setgid(" + std::to_string(gid) + "): " + std::strerror(errno));
  }
  if (setuid(uid) != 0) {
    return Status::error("setuid(" + std::to_string(uid) + "): " + std::strerror(errno));
  }
  if (uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
    return Status::error("privileges were not dropped: setuid(0) still succeeds");
  }
  logInfo("running as user " + user);
  return Status::ok();
}

}  // namespace relaykit
