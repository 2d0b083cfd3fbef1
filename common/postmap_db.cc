// SPDX-License-Identifier: Apache-2.0
// postmap_db.cc: reading postmap's Berkeley DB hash files; see postmap_db.h.
#include "common/postmap_db.h"

#include <db.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <unordered_map>

namespace relaykit {

namespace {

constexpr std::chrono::milliseconds kLockRetry{10};
// A .db replaced by rename between open(2) and libdb's own open is opened again, this often.
constexpr int kMaxReopen = 3;

// libdb reports details through a callback; the last message completes the error text.
thread_local std::string lastDbMessage;

void collectDbMessage(const DB_ENV*, const char*, const char* message) {
  lastDbMessage = message != nullptr ? message : "";
}

Status dbError(const std::string& path, const char* what, int rc) {
  std::string text = "cannot read " + path + ": " + what + ": " + db_strerror(rc);
  if (!lastDbMessage.empty()) {
    text += " (" + lastDbMessage + ")";
  }
  return Status::error(text, ErrorKind::kIo);
}

// The file descriptor holds the shared lock; closing it releases the lock.
class LockedFile {
 public:
  ~LockedFile() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  // Opens `path` (a regular file of at most maxBytes) and takes the shared lock, waiting at most
  // kPostmapDbLockWait for a writer.
  Status open(const std::string& path, std::size_t maxBytes) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd_ < 0) {
      const int err = errno;
      return Status::error("cannot read " + path + ": " + std::strerror(err),
                           err == ENOENT   ? ErrorKind::kNotFound
                           : err == EACCES ? ErrorKind::kPermissionDenied
                                           : ErrorKind::kIo);
    }
    const auto deadline = std::chrono::steady_clock::now() + kPostmapDbLockWait;
    while (::flock(fd_, LOCK_SH | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        return Status::error("cannot lock " + path + ": " + std::strerror(errno), ErrorKind::kIo);
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status::error("cannot read " + path + ": locked by a writer for more than " +
                                 std::to_string(kPostmapDbLockWait.count()) + " ms",
                             ErrorKind::kIo);
      }
      std::this_thread::sleep_for(kLockRetry);
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      return Status::error("cannot read " + path + ": " + std::strerror(errno), ErrorKind::kIo);
    }
    if (!S_ISREG(st.st_mode)) {
      return Status::error("cannot read " + path + ": not a regular file",
                           ErrorKind::kNotRegularFile);
    }
    if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > maxBytes) {
      return Status::error("cannot read " + path + ": " + std::to_string(st.st_size) +
                               " bytes, larger than the limit of " + std::to_string(maxBytes) +
                               " bytes",
                           ErrorKind::kTooLarge);
    }
    inode_ = st.st_ino;
    device_ = st.st_dev;
    return Status::ok();
  }
  // True when `path` still names the locked file (not replaced by rename since).
  bool stillNamedBy(const std::string& path) const {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && st.st_ino == inode_ && st.st_dev == device_;
  }

 private:
  int fd_ = -1;
  ino_t inode_ = 0;
  dev_t device_ = 0;
};

struct DbCloser {
  void operator()(DB* db) const { db->close(db, 0); }
};
struct CursorCloser {
  void operator()(DBC* c) const { c->close(c); }
};

std::string_view withoutNul(const DBT& item, bool* hadNul) {
  std::string_view s(static_cast<const char*>(item.data), item.size);
  *hadNul = !s.empty() && s.back() == '\0';
  if (*hadNul) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

StatusOr<std::vector<PostmapDbEntry>> readPostmapDb(const std::string& dbPath, std::size_t maxBytes,
                                                    std::size_t maxEntries) {
  lastDbMessage.clear();
  for (int attempt = 0;; ++attempt) {
    LockedFile lock;
    if (Status s = lock.open(dbPath, maxBytes); !s.isOk()) {
      return s;
    }
    DB* raw = nullptr;
    if (int rc = db_create(&raw, nullptr, 0); rc != 0) {
      return dbError(dbPath, "db_create", rc);
    }
    std::unique_ptr<DB, DbCloser> db(raw);
    db->set_errcall(db.get(), collectDbMessage);
    if (int rc = db->open(db.get(), nullptr, dbPath.c_str(), nullptr, DB_HASH, DB_RDONLY, 0);
        rc != 0) {
      return dbError(dbPath, "not a Berkeley DB hash file (postmap hash:)", rc);
    }
    if (!lock.stillNamedBy(dbPath)) {
      if (attempt + 1 < kMaxReopen) {
        continue;  // replaced while we opened it: libdb may have opened the new, unlocked file
      }
      return Status::error("cannot read " + dbPath + ": replaced while being opened",
                           ErrorKind::kIo);
    }
    DBC* rawCursor = nullptr;
    if (int rc = db->cursor(db.get(), nullptr, &rawCursor, 0); rc != 0) {
      return dbError(dbPath, "cursor", rc);
    }
    std::unique_ptr<DBC, CursorCloser> cursor(rawCursor);
    std::vector<PostmapDbEntry> out;
    std::unordered_map<std::string, std::pair<std::size_t, bool>> seen;  // key -> (index, NUL)
    for (;;) {
      DBT key{};
      DBT value{};
      const int rc = cursor->get(cursor.get(), &key, &value, DB_NEXT);
      if (rc == DB_NOTFOUND) {
        break;
      }
      if (rc != 0) {
        return dbError(dbPath, "reading", rc);
      }
      if (key.size > kMaxPostmapDbItemBytes || value.size > kMaxPostmapDbItemBytes) {
        return Status::error("cannot read " + dbPath + ": an entry longer than " +
                                 std::to_string(kMaxPostmapDbItemBytes) + " bytes",
                             ErrorKind::kTooLarge);
      }
      bool keyNul = false;
      bool valueNul = false;
      const std::string_view k = withoutNul(key, &keyNul);
      const std::string_view v = withoutNul(value, &valueNul);
      auto [it, fresh] = seen.try_emplace(std::string(k), out.size(), keyNul);
      if (!fresh) {
        if (keyNul && !it->second.second) {  // the NUL form is the one dict_db finds first
          out[it->second.first].value = std::string(v);
          it->second.second = true;
        }
        continue;
      }
      if (out.size() >= maxEntries) {
        return Status::error(
            "cannot read " + dbPath + ": more than " + std::to_string(maxEntries) + " entries",
            ErrorKind::kTooLarge);
      }
      out.push_back(PostmapDbEntry{std::string(k), std::string(v)});
    }
    return out;
  }
}

}  // namespace relaykit
