// SPDX-License-Identifier: Apache-2.0
// limits_command.cc: `relaykit limits show|reset` glue over policyd/limits_admin.h.
#include "cli/limits_command.h"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "policyd/limits_admin.h"

namespace relaykit {

namespace {

constexpr int kLimitsOk = 0;
constexpr int kLimitsNoneApplies = 1;
constexpr int kLimitsError = 2;

struct LimitsOptions {
  std::string configPath = kDefaultConfigPath;
  std::string limit;
  std::vector<std::string> attributes;
  bool all = false;
};

std::string duration(std::int64_t us) {
  char buf[64];
  if (us >= 3600LL * 1000000) {
    std::snprintf(buf, sizeof(buf), "%.1fh", static_cast<double>(us) / 3.6e9);
  } else if (us >= 60LL * 1000000) {
    std::snprintf(buf, sizeof(buf), "%.1fm", static_cast<double>(us) / 6e7);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(us) / 1e6);
  }
  return buf;
}

std::string printablePrincipal(std::string p) {
  for (char& c : p) {
    c = c == '\x1f' ? ' ' : c;
  }
  return p;
}

int run(const LimitsOptions& opt, bool reset) {
  Diagnostics diags;
  auto config = policy::loadPolicyConfigFile(opt.configPath, &diags);
  for (const Diagnostic& d : diags.all()) {
    std::fprintf(stderr, "%s\n", d.format().c_str());
  }
  if (config == nullptr) {
    return kLimitsError;
  }
  if (!opt.limit.empty()) {
    bool known = false;
    for (const policy::LimitRule& rule : config->limits) {
      known = known || rule.name == opt.limit;
    }
    if (!known) {
      std::fprintf(stderr, "relaykit: limits: no limit named \"%s\"\n", opt.limit.c_str());
      return kLimitsError;
    }
  }
  if (!config->useRedis && config->adminSocket.empty()) {
    std::fprintf(stderr,
                 "relaykit: limits: the memory store lives inside relaykit-policyd; set "
                 "policy: admin_socket: PATH so this command can reach it (or use store: redis)\n");
    return kLimitsError;
  }
  if (reset && opt.attributes.empty() && !opt.all) {
    std::fprintf(stderr, "relaykit: limits reset: give ATTR=VALUE... or --all\n");
    return kLimitsError;
  }
  std::unique_ptr<policy::LimitsAdmin> admin;
  if (config->useRedis) {
    auto redis = policy::RedisAdmin::connect(config->redis);
    if (!redis.isOk()) {
      std::fprintf(stderr, "relaykit: limits: %s\n", redis.status().message().c_str());
      return kLimitsError;
    }
    admin = std::make_unique<policy::RedisAdmin>(std::move(*redis));
  } else {
    auto socket = policy::SocketAdmin::connect(config->adminSocket);
    if (!socket.isOk()) {
      std::fprintf(stderr, "relaykit: limits: %s\n", socket.status().message().c_str());
      return kLimitsError;
    }
    admin = std::move(*socket);
  }
  if (opt.attributes.empty()) {
    if (reset) {
      auto n = admin->resetAll(opt.limit);
      if (!n.isOk()) {
        std::fprintf(stderr, "relaykit: limits: %s\n", n.status().message().c_str());
        return kLimitsError;
      }
      std::printf("deleted %lld counter(s)\n", static_cast<long long>(*n));
      return kLimitsOk;
    }
    auto counts = admin->count(opt.limit);
    if (!counts.isOk()) {
      std::fprintf(stderr, "relaykit: limits: %s\n", counts.status().message().c_str());
      return kLimitsError;
    }
    for (const policy::LimitRule& rule : config->limits) {
      if (opt.limit.empty() || rule.name == opt.limit) {
        auto it = counts->find(rule.name);
        std::printf("%s\t%lld active counter(s)\n", rule.name.c_str(),
                    static_cast<long long>(it == counts->end() ? 0 : it->second));
      }
    }
    return kLimitsOk;
  }
  auto request = policy::requestFromWords(opt.attributes);
  if (!request.isOk()) {
    std::fprintf(stderr, "relaykit: limits: %s\n", request.status().message().c_str());
    return kLimitsError;
  }
  const auto targets = policy::limitTargets(*config, *request, opt.limit);
  if (targets.empty()) {
    std::fprintf(stderr, "relaykit: limits: no limit applies to these attributes\n");
    return kLimitsNoneApplies;
  }
  for (const policy::LimitTarget& t : targets) {
    if (reset) {
      auto n = admin->reset(t);
      if (!n.isOk()) {
        std::fprintf(stderr, "relaykit: limits: %s\n", n.status().message().c_str());
        return kLimitsError;
      }
      std::printf("%s\t%s\t%s\n", t.rule->name.c_str(), printablePrincipal(t.principal).c_str(),
                  *n > 0 ? "reset" : "no counter");
      continue;
    }
    auto windows = admin->show(t);
    if (!windows.isOk()) {
      std::fprintf(stderr, "relaykit: limits: %s\n", windows.status().message().c_str());
      return kLimitsError;
    }
    // A limit with allowances says which one applies (the window lines show its figures) and,
    // for an own allowance, where it is written.
    const policy::AllowanceTable::Entry* own = t.rule->allowanceFor(t.principal);
    const bool hasAllowances =
        t.rule->allowances != nullptr &&
        (!t.rule->allowances->empty() || !t.rule->allowances->files().empty());
    const char* allowance = !hasAllowances   ? ""
                            : own != nullptr ? ", own allowance"
                                             : ", default allowance";
    const std::string origin = own != nullptr ? "\tfrom " + t.rule->allowances->origin(*own) : "";
    std::printf("%s\t%s\t(%s%s)%s\n", t.rule->name.c_str(), printablePrincipal(t.principal).c_str(),
                policy::countUnitName(t.rule->count), allowance, origin.c_str());
    for (const policy::WindowState& w : *windows) {
      std::printf("  %lld per %s: %lld left, full again in %s\n",
                  static_cast<long long>(w.window.max), duration(w.window.periodUs).c_str(),
                  static_cast<long long>(w.remaining), duration(w.fullResetUs).c_str());
    }
  }
  return kLimitsOk;
}

}  // namespace

void addLimitsCommand(CLI::App& app, int* exitCode) {
  auto opt = std::make_shared<LimitsOptions>();
  CLI::App* limits = app.add_subcommand("limits",
                                        "inspect or reset rate-limit counters (Redis store, or the "
                                        "memory store through policy.admin_socket)");
  limits->add_option("-c,--config", opt->configPath, "Configuration file");
  limits->require_subcommand(1);
  auto addCommon = [opt](CLI::App* sub) {
    sub->fallthrough();
    sub->add_option("--limit", opt->limit, "Only this limit");
    sub->add_option("attributes", opt->attributes,
                    "Policy attributes making up the key, e.g. client_address=10.1.2.3 "
                    "sender=app@corp.com sasl_username=bob");
  };
  CLI::App* show =
      limits->add_subcommand("show", "Show counters (per limit, or for given attributes)");
  addCommon(show);
  CLI::App* reset =
      limits->add_subcommand("reset", "Delete counters (for given attributes, or --all)");
  addCommon(reset);
  reset->add_flag("--all", opt->all, "Every counter (of --limit, or of every limit)");
  show->callback([opt, exitCode] { *exitCode = run(*opt, false); });
  reset->callback([opt, exitCode] { *exitCode = run(*opt, true); });
}

}  // namespace relaykit
