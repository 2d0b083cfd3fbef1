// SPDX-License-Identifier: Apache-2.0
// admin_protocol.cc: the `relaykit limits` <-> relaykit-policyd line protocol (see the header).
#include "policyd/admin_protocol.h"

#include "common/yaml_util.h"
#include "policyd/memory_store.h"

namespace relaykit::policy {
namespace {

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && line[pos] == ' ') {
      ++pos;
    }
    std::size_t end = line.find(' ', pos);
    if (end == std::string_view::npos) {
      end = line.size();
    }
    if (end > pos) {
      out.push_back(line.substr(pos, end - pos));
    }
    pos = end;
  }
  return out;
}

bool toInt(std::string_view text, std::int64_t* value) {
  StatusOr<std::int64_t> n = parseInteger(text);  // common/yaml_util.h: strict, no overflow
  if (!n.isOk()) {
    return false;
  }
  *value = *n;
  return true;
}

// "A/B/C..." into exactly `n` integers.
bool numbers(std::string_view text, std::size_t n, std::int64_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t slash = text.find('/');
    const std::string_view part = i + 1 < n ? text.substr(0, slash) : text;
    if ((i + 1 < n && slash == std::string_view::npos) || !toInt(part, &out[i])) {
      return false;
    }
    if (i + 1 < n) {
      text.remove_prefix(slash + 1);
    }
  }
  return true;
}

bool plainWord(std::string_view w) {
  for (char c : w) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return false;
    }
  }
  return !w.empty();
}

// The payload of an "ok ..." reply, or the error an "error ..." reply carries.
StatusOr<std::string_view> okPayload(std::string_view line) {
  if (line.rfind("ok", 0) == 0 && (line.size() == 2 || line[2] == ' ')) {
    return line.size() == 2 ? std::string_view() : line.substr(3);
  }
  if (line.rfind("error ", 0) == 0) {
    return Status::error(std::string(line.substr(6)));
  }
  return Status::error("unexpected reply from relaykit-policyd: \"" +
                       std::string(line.substr(0, 200)) + "\"");
}

}  // namespace

std::string formatAdminCommand(const AdminCommand& command) {
  std::string line;
  switch (command.kind) {
    case AdminCommand::Kind::kShow:
      line = "show " + command.key;
      for (const RateWindow& w : command.windows) {
        line += " " + std::to_string(w.max) + "/" + std::to_string(w.periodUs);
      }
      break;
    case AdminCommand::Kind::kReset:
      line = "reset " + command.key;
      break;
    case AdminCommand::Kind::kCount:
    case AdminCommand::Kind::kResetAll:
      line = command.kind == AdminCommand::Kind::kCount ? "count" : "resetall";
      if (!command.limit.empty()) {
        line += " " + command.limit;
      }
      break;
  }
  return line + "\n";
}

StatusOr<AdminCommand> parseAdminCommand(std::string_view line) {
  if (line.size() > kMaxAdminLine) {
    return Status::error("request longer than " + std::to_string(kMaxAdminLine) + " bytes");
  }
  const std::vector<std::string_view> w = words(line);
  if (w.empty()) {
    return Status::error("empty request");
  }
  AdminCommand c;
  if (w[0] == "show" || w[0] == "reset") {
    c.kind = w[0] == "show" ? AdminCommand::Kind::kShow : AdminCommand::Kind::kReset;
    if (w.size() < 2 || !plainWord(w[1]) ||
        (c.kind == AdminCommand::Kind::kReset && w.size() != 2)) {
      return Status::error(std::string(w[0]) + ": expected a key" +
                           (c.kind == AdminCommand::Kind::kShow ? " and windows" : ""));
    }
    c.key = std::string(w[1]);
    for (std::size_t i = 2; i < w.size(); ++i) {
      std::int64_t v[2];
      if (!numbers(w[i], 2, v) || v[0] <= 0 || v[1] <= 0) {
        return Status::error("show: bad window \"" + std::string(w[i]) + "\" (MAX/PERIOD_US)");
      }
      c.windows.push_back(RateWindow{v[0], v[1]});
    }
    if (c.kind == AdminCommand::Kind::kShow && c.windows.empty()) {
      return Status::error("show: expected at least one window");
    }
    return c;
  }
  if (w[0] == "count" || w[0] == "resetall") {
    c.kind = w[0] == "count" ? AdminCommand::Kind::kCount : AdminCommand::Kind::kResetAll;
    if (w.size() > 2) {
      return Status::error(std::string(w[0]) + ": expected at most one limit name");
    }
    if (w.size() == 2) {
      c.limit = std::string(w[1]);
    }
    return c;
  }
  return Status::error("unknown request \"" + std::string(w[0].substr(0, 40)) + "\"");
}

std::string executeAdminCommand(MemoryStore& store, const AdminCommand& command) {
  std::string out = "ok";
  switch (command.kind) {
    case AdminCommand::Kind::kShow:
      for (const WindowState& s : store.show(command.key, command.windows)) {
        out += " " + std::to_string(s.window.max) + "/" + std::to_string(s.window.periodUs) + "/" +
               std::to_string(s.tatUs) + "/" + std::to_string(s.remaining) + "/" +
               std::to_string(s.fullResetUs);
      }
      break;
    case AdminCommand::Kind::kReset:
      out += store.reset(command.key) ? " 1" : " 0";
      break;
    case AdminCommand::Kind::kCount:
      for (const auto& [limit, n] : store.countByLimit(command.limit)) {
        out += " " + limit + "=" + std::to_string(n);
      }
      break;
    case AdminCommand::Kind::kResetAll:
      out += " " + std::to_string(store.resetAll(command.limit));
      break;
  }
  return out + "\n";
}

StatusOr<std::vector<WindowState>> parseShowReply(std::string_view line) {
  StatusOr<std::string_view> payload = okPayload(line);
  if (!payload.isOk()) {
    return payload.status();
  }
  std::vector<WindowState> out;
  for (std::string_view w : words(*payload)) {
    std::int64_t v[5];
    if (!numbers(w, 5, v)) {
      return Status::error("bad window state in reply: \"" + std::string(w) + "\"");
    }
    WindowState s;
    s.window = RateWindow{v[0], v[1]};
    s.tatUs = v[2];
    s.remaining = v[3];
    s.fullResetUs = v[4];
    out.push_back(s);
  }
  return out;
}

StatusOr<std::int64_t> parseCountReply(std::string_view line) {
  StatusOr<std::string_view> payload = okPayload(line);
  if (!payload.isOk()) {
    return payload.status();
  }
  std::int64_t n = 0;
  if (!toInt(*payload, &n)) {
    return Status::error("bad count in reply: \"" + std::string(payload->substr(0, 40)) + "\"");
  }
  return n;
}

StatusOr<std::map<std::string, std::int64_t>> parseLimitCountsReply(std::string_view line) {
  StatusOr<std::string_view> payload = okPayload(line);
  if (!payload.isOk()) {
    return payload.status();
  }
  std::map<std::string, std::int64_t> out;
  for (std::string_view w : words(*payload)) {
    const std::size_t eq = w.find('=');
    std::int64_t n = 0;
    if (eq == std::string_view::npos || eq == 0 || !toInt(w.substr(eq + 1), &n)) {
      return Status::error("bad limit count in reply: \"" + std::string(w) + "\"");
    }
    out[std::string(w.substr(0, eq))] = n;
  }
  return out;
}

}  // namespace relaykit::policy
