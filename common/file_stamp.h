// SPDX-License-Identifier: Apache-2.0
// file_stamp.h: what a file was when it was read, to notice later that it changed.
//
// A FileStamp is the identity and version of a file by stat(2): device, inode, size, and the
// modification and status-change times in nanoseconds. Two stamps differ when the file was
// rewritten in place (size, mtime, ctime), replaced by rename (inode), or removed (exists).
// Take the stamp BEFORE reading the file: a change during the read then shows as a difference
// at the next comparison, never as a missed change. Never fails: a file that cannot be
// stat()ed has a stamp with exists == false.
#pragma once

#include <cstdint>
#include <string>

namespace relaykit {

struct FileStamp {
  bool exists = false;
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::int64_t size = 0;
  std::int64_t mtimeNs = 0;
  std::int64_t ctimeNs = 0;
  bool operator==(const FileStamp& o) const {
    return exists == o.exists && device == o.device && inode == o.inode && size == o.size &&
           mtimeNs == o.mtimeNs && ctimeNs == o.ctimeNs;
  }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};

// The stamp of `path` now (stat(2), following symlinks).
FileStamp stampFile(const std::string& path);

// A file a compiled configuration was read from, with its stamp at that time.
struct WatchedFile {
  std::string path;
  FileStamp stamp;
};

}  // namespace relaykit
