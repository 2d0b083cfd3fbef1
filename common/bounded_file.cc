// SPDX-License-Identifier: Apache-2.0
// bounded_file.cc: whole-file reads of regular files under a size limit (see bounded_file.h).
#include "common/bounded_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace relaykit {

namespace {

constexpr std::size_t kReadChunkBytes = 64 * 1024;

const char* describeFileType(mode_t mode) {
  if (S_ISDIR(mode)) {
    return "a directory";
  }
  if (S_ISFIFO(mode)) {
    return "a FIFO";
  }
  if (S_ISCHR(mode)) {
    return "a character device";
  }
  if (S_ISBLK(mode)) {
    return "a block device";
  }
  if (S_ISSOCK(mode)) {
    return "a socket";
  }
  return "not a regular file";
}

Status fail(const std::string& name, const std::string& why, ErrorKind kind) {
  return Status::error("cannot read " + name + ": " + why, kind);
}

Status failErrno(const std::string& name, int err) {
  const ErrorKind kind = err == ENOENT || err == ENOTDIR ? ErrorKind::kNotFound
                         : err == EACCES || err == EPERM ? ErrorKind::kPermissionDenied
                                                         : ErrorKind::kIo;
  return fail(name, std::strerror(err), kind);
}

std::string tooLarge(std::size_t maxBytes) {
  return "larger than the limit of " + std::to_string(maxBytes) + " bytes";
}

}  // namespace

StatusOr<std::string> readBoundedFile(const std::string& path, std::size_t maxBytes,
                                      const std::string& label) {
  const std::string& name = label.empty() ? path : label;
  if (path.empty()) {
    return Status::error("cannot read an empty file name", ErrorKind::kNotFound);
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return failErrno(name, errno);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return failErrno(name, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(name, std::string(describeFileType(st.st_mode)) + ", not a regular file",
                ErrorKind::kNotRegularFile);
  }
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > maxBytes) {
    ::close(fd);
    return fail(name, std::to_string(st.st_size) + " bytes, " + tooLarge(maxBytes),
                ErrorKind::kTooLarge);
  }
  std::string content;
  content.reserve(static_cast<std::size_t>(st.st_size));
  char buf[kReadChunkBytes];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      const int err = errno;
      ::close(fd);
      return failErrno(name, err);
    }
    if (n == 0) {
      break;
    }
    if (content.size() + static_cast<std::size_t>(n) > maxBytes) {
      ::close(fd);
      return fail(name, tooLarge(maxBytes), ErrorKind::kTooLarge);
    }
    content.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return content;
}

}  // namespace relaykit
