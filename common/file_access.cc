// SPDX-License-Identifier: Apache-2.0
// file_access.cc: permission checks of named files against a daemon's user (file_access.h).
#include "common/file_access.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace relaykit {

namespace {

// Buffer sizes for getpwnam_r/getgrgid_r, and the most groups read for one user.
constexpr std::size_t kPasswdBufferBytes = 16 * 1024;
constexpr int kMaxUserGroups = 4096;

constexpr int kRead = 4;
constexpr int kSearch = 1;

bool inGroups(const UserIdentity& user, gid_t gid) {
  return std::find(user.groups.begin(), user.groups.end(), gid) != user.groups.end();
}

bool allowed(const UserIdentity& user, const struct stat& st, int bit) {
  if (user.uid == 0) {
    return true;
  }
  if (st.st_uid == user.uid) {
    return (st.st_mode & (static_cast<mode_t>(bit) << 6)) != 0;
  }
  if (inGroups(user, st.st_gid)) {
    return (st.st_mode & (static_cast<mode_t>(bit) << 3)) != 0;
  }
  return (st.st_mode & static_cast<mode_t>(bit)) != 0;
}

std::string ownerName(uid_t uid) {
  char buf[kPasswdBufferBytes];
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return std::to_string(uid);
}

std::string groupName(gid_t gid) {
  char buf[kPasswdBufferBytes];
  group gr{};
  group* found = nullptr;
  if (getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found != nullptr) {
    return found->gr_name;
  }
  return std::to_string(gid);
}

std::string describeMode(const struct stat& st) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return ownerName(st.st_uid) + ":" + groupName(st.st_gid) + " " + mode;
}

Status denied(const UserIdentity& user, const std::string& what, const std::string& path,
              const struct stat& st) {
  return Status::error(
      "user \"" + user.name + "\" cannot " + what + " " + path + " (" + describeMode(st) + ")",
      ErrorKind::kPermissionDenied);
}

}  // namespace

StatusOr<UserIdentity> lookupUser(const std::string& name) {
  char buf[kPasswdBufferBytes];
  passwd pw{};
  passwd* found = nullptr;
  const int rc = getpwnam_r(name.c_str(), &pw, buf, sizeof buf, &found);
  if (rc != 0 || found == nullptr) {
    return Status::error("user \"" + name + "\" does not exist" +
                             (rc != 0 ? std::string(" (") + std::strerror(rc) + ")" : ""),
                         ErrorKind::kNotFound);
  }
  UserIdentity user;
  user.name = name;
  user.uid = found->pw_uid;
  user.gid = found->pw_gid;
  int count = kMaxUserGroups;
  std::vector<gid_t> groups(static_cast<std::size_t>(count));
  if (getgrouplist(name.c_str(), found->pw_gid, groups.data(), &count) < 0) {
    count = kMaxUserGroups;
  }
  groups.resize(static_cast<std::size_t>(std::max(count, 0)));
  if (!inGroups(UserIdentity{name, 0, 0, groups}, found->pw_gid)) {
    groups.push_back(found->pw_gid);
  }
  user.groups = std::move(groups);
  return user;
}

Status checkReadable(const UserIdentity& user, const std::string& path) {
  // Every directory above the file must be searchable (x), then the file readable (r).
  if (path.empty()) {
    return Status::error("cannot check an empty file name", ErrorKind::kNotFound);
  }
  std::string dir = path.front() == '/' ? "/" : ".";
  std::size_t pos = path.front() == '/' ? 1 : 0;
  for (;;) {
    const std::size_t slash = path.find('/', pos);
    if (slash == std::string::npos) {
      break;
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
      const int err = errno;
      return Status::error("cannot check " + dir + ": " + std::strerror(err),
                           err == ENOENT ? ErrorKind::kNotFound : ErrorKind::kIo);
    }
    if (!allowed(user, st, kSearch)) {
      return denied(user, "enter the directory", dir, st);
    }
    const std::string part = path.substr(pos, slash - pos);
    if (!part.empty()) {
      dir = dir == "/" ? "/" + part : dir + "/" + part;
    }
    pos = slash + 1;
  }
  // `dir` is now the directory that holds the file.
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    const int err = errno;
    return Status::error("cannot check " + dir + ": " + std::strerror(err),
                         err == ENOENT ? ErrorKind::kNotFound : ErrorKind::kIo);
  }
  if (!allowed(user, st, kSearch)) {
    return denied(user, "enter the directory", dir, st);
  }
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    return Status::error("cannot check " + path + ": " + std::strerror(err),
                         err == ENOENT ? ErrorKind::kNotFound : ErrorKind::kIo);
  }
  if (!allowed(user, st, kRead)) {
    return denied(user, "read", path, st);
  }
  return Status::ok();
}

void checkDaemonAccess(const Config& config, DaemonSection section, Diagnostics* diags) {
  const DaemonSettings& settings = config.daemon(section);
  if (settings.user.empty()) {
    return;
  }
  const std::string name = daemonSectionName(section);
  StatusOr<UserIdentity> user = lookupUser(settings.user);
  if (!user) {
    diags->error(settings.userWhere,
                 name + ": " + user.status().message() + ": the daemon would not start");
    return;
  }
  for (const NamedFile& file : config.files) {
    if (file.onlyFor && *file.onlyFor != section) {
      continue;
    }
    Status readable = checkReadable(*user, file.path);
    if (readable.kind() == ErrorKind::kPermissionDenied) {
      SourceLocation where = file.where.line > 0 ? file.where : settings.userWhere;
      diags->error(where, name + ": " + readable.message() + ": the " + file.what +
                              " is read again at every reload, after the daemon switched to "
                              "that user");
    }
  }
}

}  // namespace relaykit
