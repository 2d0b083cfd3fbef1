// SPDX-License-Identifier: Apache-2.0
// listener.cc: socket(2)/bind(2)/listen(2) for endpoints; see listener.h.
#include "common/server/listener.h"

#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace relaykit {

Status setSocketOwner(const std::string& path, const std::string& owner);

namespace {

std::string sysError(const Endpoint& ep, const char* what) {
  return "cannot " + std::string(what) + " " + ep.toString() + ": " + std::strerror(errno);
}

bool fillUnixAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path) {
    return false;
  }
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

// Removes `path` when it is a socket nobody accepts on. Returns false when someone does.
bool removeStaleSocket(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return true;  // absent (or not a socket: bind will fail with a clear error)
  }
  sockaddr_un addr{};
  if (!fillUnixAddress(path, &addr)) {
    return true;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return true;
  }
  bool live = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  if (live) {
    return false;
  }
  unlink(path.c_str());
  return true;
}

Status applyOwner(const Endpoint& ep, const std::string& owner) {
  return setSocketOwner(ep.path, owner);
}

StatusOr<int> openUnix(const Endpoint& ep, const ListenOptions& options) {
  sockaddr_un addr{};
  if (!fillUnixAddress(ep.path, &addr)) {
    return Status::error("socket path too long: " + ep.path);
  }
  if (!removeStaleSocket(ep.path)) {
    return Status::error("cannot listen on " + ep.toString() + ": already in use");
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Status::error(sysError(ep, "create socket for"));
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Status s = Status::error(sysError(ep, "bind"));
    close(fd);
    return s;
  }
  if (options.socketMode && chmod(ep.path.c_str(), static_cast<mode_t>(*options.socketMode)) != 0) {
    Status s = Status::error(sysError(ep, "chmod"));
    close(fd);
    return s;
  }
  if (!options.socketOwner.empty()) {
    Status s = applyOwner(ep, options.socketOwner);
    if (!s) {
      close(fd);
      return s;
    }
  }
  if (listen(fd, kListenBacklog) != 0) {
    Status s = Status::error(sysError(ep, "listen on"));
    close(fd);
    return s;
  }
  return fd;
}

StatusOr<int> openInet(const Endpoint& ep) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(ep.port);
  int rc = getaddrinfo(ep.host.empty() ? nullptr : ep.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return Status::error("cannot resolve " + ep.toString() + ": " + gai_strerror(rc));
  }
  Status last = Status::error("cannot listen on " + ep.toString() + ": no address");
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last = Status::error(sysError(ep, "create socket for"));
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) {
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last = Status::error(sysError(ep, "bind"));
      close(fd);
      continue;
    }
    if (listen(fd, kListenBacklog) != 0) {
      last = Status::error(sysError(ep, "listen on"));
      close(fd);
      continue;
    }
    freeaddrinfo(res);
    return fd;
  }
  freeaddrinfo(res);
  return last;
}

}  // namespace

Status setSocketOwner(const std::string& path, const std::string& owner) {
  std::string user = owner;
  std::string group;
  auto colon = owner.find(':');
  if (colon != std::string::npos) {
    user = owner.substr(0, colon);
    group = owner.substr(colon + 1);
  }
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  if (!user.empty()) {
    passwd* pw = getpwnam(user.c_str());
    if (pw == nullptr) {
      return Status::error("socket_owner: unknown user \"" + user + "\"");
    }
    uid = pw->pw_uid;
    if (group.empty()) {
      gid = pw->pw_gid;
    }
  }
  if (!group.empty()) {
    struct group* gr = getgrnam(group.c_str());
    if (gr == nullptr) {
      return Status::error("socket_owner: unknown group \"" + group + "\"");
    }
    gid = gr->gr_gid;
  }
  if (chown(path.c_str(), uid, gid) != 0) {
    return Status::error("chown " + path + ": " + std::strerror(errno));
  }
  return Status::ok();
}

StatusOr<int> openListener(const Endpoint& endpoint, const ListenOptions& options) {
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    return openUnix(endpoint, options);
  }
  return openInet(endpoint);
}

std::uint16_t localPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return 0;
  }
  if (ss.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  if (ss.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  return 0;
}

void setTcpNoDelay(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return;
  }
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    setTcpNoDelayOnTcp(fd);
  }
}

void setTcpNoDelayOnTcp(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

StatusOr<int> connectTo(const Endpoint& ep) {
  if (ep.kind == Endpoint::Kind::kUnix) {
    sockaddr_un addr{};
    if (!fillUnixAddress(ep.path, &addr)) {
      return Status::error("socket path too long: " + ep.path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      Status s = Status::error(sysError(ep, "connect to"));
      if (fd >= 0) {
        close(fd);
      }
      return s;
    }
    return fd;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(ep.port);
  int rc = getaddrinfo(ep.host.empty() ? "127.0.0.1" : ep.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return Status::error("cannot resolve " + ep.toString() + ": " + gai_strerror(rc));
  }
  Status last = Status::error("cannot connect to " + ep.toString());
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      freeaddrinfo(res);
      setTcpNoDelay(fd);
      return fd;
    }
    last = Status::error(sysError(ep, "connect to"));
    close(fd);
  }
  freeaddrinfo(res);
  return last;
}

}  // namespace relaykit
