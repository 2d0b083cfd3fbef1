// SPDX-License-Identifier: Apache-2.0
// health_probes.cc: bounded probes of `relaykit health`; see health_probes.h.
#include "cli/health_probes.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <vector>

namespace relaykit {

namespace {

constexpr std::size_t kReadChunk = 4096;
constexpr std::uint16_t kSmtpPort = 25;

int millisLeft(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Non-blocking connect of `fd` to `addr`, finished within the deadline.
Status connectFd(int fd, const sockaddr* addr, socklen_t len, Deadline deadline) {
  if (::connect(fd, addr, len) == 0) {
    return Status::ok();
  }
  if (errno != EINPROGRESS) {
    return Status::error(std::strerror(errno));
  }
  pollfd p{fd, POLLOUT, 0};
  int ready;
  do {
    ready = poll(&p, 1, millisLeft(deadline));
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) {
    return Status::error("connect timed out");
  }
  int err = 0;
  socklen_t errLen = sizeof err;
  if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errLen) != 0) {
    return Status::error(std::strerror(errno));
  }
  if (err != 0) {
    return Status::error(std::strerror(err));
  }
  return Status::ok();
}

// The RESP encoding of one command.
std::string respCommand(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

// One SMTP reply (all its lines); the code of the last line.
struct SmtpReply {
  int code = 0;
  std::vector<std::string> lines;
};

StatusOr<SmtpReply> readSmtpReply(ProbeSocket& s) {
  SmtpReply reply;
  for (int i = 0; i < kMaxSmtpReplyLines; ++i) {
    auto line = s.readLine();
    if (!line) {
      return line.status();
    }
    if (line->size() < 3 || !std::isdigit(static_cast<unsigned char>((*line)[0]))) {
      return Status::error("not an SMTP reply: \"" + line->substr(0, 80) + "\"");
    }
    reply.code = std::atoi(line->substr(0, 3).c_str());
    reply.lines.push_back(*line);
    if (line->size() == 3 || (*line)[3] != '-') {
      return reply;
    }
  }
  return Status::error("SMTP reply longer than " + std::to_string(kMaxSmtpReplyLines) + " lines");
}

}  // namespace

StatusOr<ProbeSocket> ProbeSocket::connect(const Endpoint& endpoint, Deadline deadline) {
  if (endpoint.kind == Endpoint::Kind::kUnix) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (endpoint.path.size() >= sizeof addr.sun_path) {
      return Status::error(endpoint.path + ": path too long");
    }
    std::memcpy(addr.sun_path, endpoint.path.c_str(), endpoint.path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      return Status::error(std::strerror(errno));
    }
    Status s = connectFd(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr, deadline);
    if (!s) {
      close(fd);
      return Status::error(endpoint.toString() + ": " + s.message());
    }
    return ProbeSocket(fd, deadline);
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string host = endpoint.host.empty() ? "127.0.0.1" : endpoint.host;
  const std::string port = std::to_string(endpoint.port);
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return Status::error(host + ": " + gai_strerror(rc));
  }
  std::string last = "no address";
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    Status s = connectFd(fd, ai->ai_addr, ai->ai_addrlen, deadline);
    if (s) {
      freeaddrinfo(found);
      return ProbeSocket(fd, deadline);
    }
    last = s.message();
    close(fd);
  }
  freeaddrinfo(found);
  return Status::error(endpoint.toString() + ": " + last);
}

ProbeSocket::ProbeSocket(ProbeSocket&& other) noexcept
    : fd_(other.fd_), deadline_(other.deadline_), buffered_(std::move(other.buffered_)) {
  other.fd_ = -1;
}

ProbeSocket::~ProbeSocket() {
  if (fd_ >= 0) {
    close(fd_);
  }
}

Status ProbeSocket::waitFor(short events) {
  pollfd p{fd_, events, 0};
  int ready;
  do {
    ready = poll(&p, 1, millisLeft(deadline_));
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) {
    return Status::error("timed out");
  }
  if (ready < 0) {
    return Status::error(std::strerror(errno));
  }
  return Status::ok();
}

Status ProbeSocket::sendAll(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      Status s = waitFor(POLLOUT);
      if (!s) {
        return s;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    return Status::error(std::string("send: ") + std::strerror(errno));
  }
  return Status::ok();
}

StatusOr<std::string> ProbeSocket::readLine() {
  char chunk[kReadChunk];
  while (true) {
    auto nl = buffered_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      return line;
    }
    if (buffered_.size() > kMaxProbeLineBytes) {
      return Status::error("line longer than " + std::to_string(kMaxProbeLineBytes) + " bytes");
    }
    Status s = waitFor(POLLIN);
    if (!s) {
      return s;
    }
    ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n == 0) {
      return Status::error("connection closed by the server");
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        continue;
      }
      return Status::error(std::string("recv: ") + std::strerror(errno));
    }
    buffered_.append(chunk, static_cast<std::size_t>(n));
  }
}

StatusOr<std::string> ProbeSocket::readAll(std::size_t max) {
  std::string out = std::move(buffered_);
  buffered_.clear();
  char chunk[kReadChunk];
  while (out.size() < max) {
    Status s = waitFor(POLLIN);
    if (!s) {
      return s;
    }
    ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n == 0) {
      break;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        continue;
      }
      return Status::error(std::string("recv: ") + std::strerror(errno));
    }
    out.append(chunk, static_cast<std::size_t>(n));
  }
  if (out.size() > max) {
    out.resize(max);
  }
  return out;
}

StatusOr<HttpHealth> fetchHealth(const Endpoint& endpoint, Deadline deadline) {
  auto s = ProbeSocket::connect(endpoint, deadline);
  if (!s) {
    return s.status();
  }
  const std::string host = endpoint.kind == Endpoint::Kind::kUnix ? "localhost" : endpoint.host;
  Status sent = s->sendAll("GET /health HTTP/1.0\r\nHost: " + host + "\r\n\r\n");
  if (!sent) {
    return sent;
  }
  auto text = s->readAll(kMaxProbeHttpBytes);
  if (!text) {
    return text.status();
  }
  HttpHealth out;
  if (text->rfind("HTTP/1.", 0) != 0 || text->size() < 12) {
    return Status::error("not an HTTP answer");
  }
  out.status = std::atoi(text->substr(9, 3).c_str());
  auto body = text->find("\r\n\r\n");
  if (body != std::string::npos) {
    std::string rest = text->substr(body + 4);
    out.body = rest.substr(0, rest.find('\n'));
  }
  return out;
}

Status pingRedis(const RedisTarget& target, Deadline deadline) {
  auto s = ProbeSocket::connect(target.endpoint, deadline);
  if (!s) {
    return s.status();
  }
  auto ask = [&](const std::string& command, const char* what) -> Status {
    Status sent = s->sendAll(command);
    if (!sent) {
      return sent;
    }
    auto line = s->readLine();
    if (!line) {
      return Status::error(std::string(what) + ": " + line.status().message());
    }
    if (line->empty() || (*line)[0] != '+') {
      // Redis error lines ("-WRONGPASS ...", "-NOAUTH ...") never echo the password.
      return Status::error(std::string(what) + ": " + line->substr(0, 200));
    }
    return Status::ok();
  };
  if (!target.password.empty()) {
    Status st = ask(respCommand({"AUTH", target.password}), "AUTH");
    if (!st) {
      return st;
    }
  }
  if (target.database != 0) {
    Status st = ask(respCommand({"SELECT", std::to_string(target.database)}), "SELECT");
    if (!st) {
      return st;
    }
  }
  return ask(respCommand({"PING"}), "PING");
}

StatusOr<SmtpProbe> probeSmtp(const Endpoint& endpoint, const std::string& helo,
                              Deadline deadline) {
  auto s = ProbeSocket::connect(endpoint, deadline);
  if (!s) {
    return s.status();
  }
  SmtpProbe probe;
  auto greeting = readSmtpReply(*s);
  if (!greeting) {
    return Status::error("greeting: " + greeting.status().message());
  }
  probe.greeting = greeting->lines.front();
  if (greeting->code != 220) {
    return Status::error("greeting: " + probe.greeting);
  }
  Status sent = s->sendAll("EHLO " + helo + "\r\n");
  if (!sent) {
    return sent;
  }
  auto ehlo = readSmtpReply(*s);
  if (!ehlo) {
    return Status::error("EHLO: " + ehlo.status().message());
  }
  if (ehlo->code != 250) {
    return Status::error("EHLO: " + ehlo->lines.front());
  }
  for (std::size_t i = 1; i < ehlo->lines.size(); ++i) {
    std::string keyword = ehlo->lines[i].substr(4);
    for (auto& c : keyword) {
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    if (keyword == "STARTTLS" || keyword.rfind("STARTTLS ", 0) == 0) {
      probe.startTls = true;
    }
  }
  (void)s->sendAll("QUIT\r\n");  // best effort: the answer is not needed
  return probe;
}

std::optional<Endpoint> parseRelayhost(std::string_view value) {
  // The first element of a list.
  std::size_t b = 0;
  while (b < value.size() && (value[b] == ' ' || value[b] == '\t' || value[b] == ',')) {
    ++b;
  }
  std::size_t e = b;
  while (e < value.size() && value[e] != ' ' && value[e] != '\t' && value[e] != ',') {
    ++e;
  }
  std::string_view item = value.substr(b, e - b);
  if (item.empty()) {
    return std::nullopt;
  }
  Endpoint ep;
  ep.kind = Endpoint::Kind::kInet;
  ep.port = kSmtpPort;
  std::string_view rest;
  if (item.front() == '[') {
    auto close = item.find(']');
    if (close == std::string_view::npos || close == 1) {
      return std::nullopt;
    }
    ep.host = std::string(item.substr(1, close - 1));
    rest = item.substr(close + 1);
  } else {
    auto colon = item.find(':');
    ep.host = std::string(item.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : item.substr(colon);
  }
  if (ep.host.rfind("ipv6:", 0) == 0 || ep.host.rfind("IPv6:", 0) == 0) {
    ep.host = ep.host.substr(5);
  }
  if (!rest.empty()) {
    if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6) {
      return std::nullopt;
    }
    int port = 0;
    for (char c : rest.substr(1)) {
      if (c < '0' || c > '9') {
        return std::nullopt;  // service names (smtp, submission) are not resolved here
      }
      port = port * 10 + (c - '0');
    }
    if (port <= 0 || port > 65535) {
      return std::nullopt;
    }
    ep.port = static_cast<std::uint16_t>(port);
  }
  return ep;
}

std::optional<QueueStats> parsePostqueueJson(std::string_view text) {
  QueueStats stats;
  std::set<std::string> seen;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    if (line.empty()) {
      continue;
    }
    // queue_name and arrival_time come before the sender and recipients in every record, so
    // their first occurrences are the record's own fields.
    constexpr std::string_view kQueue = "\"queue_name\": \"";
    constexpr std::string_view kArrival = "\"arrival_time\": ";
    auto q = line.find(kQueue);
    auto a = line.find(kArrival);
    if (line.front() != '{' || q == std::string_view::npos || a == std::string_view::npos) {
      return std::nullopt;
    }
    // postqueue may list a file twice while the queue manager moves it: count ids once.
    constexpr std::string_view kId = "\"queue_id\": \"";
    auto id = line.find(kId);
    if (id != std::string_view::npos) {
      std::string_view rest = line.substr(id + kId.size());
      if (!seen.insert(std::string(rest.substr(0, rest.find('"')))).second) {
        continue;
      }
    }
    ++stats.size;
    std::string_view queue = line.substr(q + kQueue.size());
    if (queue.substr(0, 9) == "deferred\"") {
      ++stats.deferred;
    }
    std::int64_t arrival = 0;
    bool digits = false;
    for (std::size_t i = a + kArrival.size();
         i < line.size() && std::isdigit(static_cast<unsigned char>(line[i])); ++i) {
      arrival = arrival * 10 + (line[i] - '0');
      digits = true;
    }
    if (!digits) {
      return std::nullopt;
    }
    if (!stats.oldestArrival || arrival < *stats.oldestArrival) {
      stats.oldestArrival = arrival;
    }
  }
  return stats;
}

}  // namespace relaykit
