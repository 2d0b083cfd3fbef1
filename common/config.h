// SPDX-License-Identifier: Apache-2.0
// config.h: the relaykit YAML file compiled into one immutable snapshot.
//
// loadConfig() reads the whole file, reports EVERY problem into a Diagnostics sink as
// FILE:LINE:COL: message, and returns a snapshot only when there were no errors. It parses the
// sections every component shares: `postfix:`, `tables:` (compiled into Tables), `redis:`, and the
// common daemon keys of `socketmap:`, `milter:`, `policy:` (listen, socket_mode, socket_owner,
// user, metrics_listen). The component-specific keys of `milter:` and `policy:` are kept as raw
// YAML nodes for those components' own parsers (milters/milter_config.cc,
// policyd/policy_config.cc), which use YamlReader and allowedKeysWithDaemonKeys() so the common
// keys are not reported unknown. A Config is never modified after loadConfig returns; reload builds
// a new one and swaps pointers. Table `file:` sources are read while loading, so on a SIGHUP
// reload they must be readable by the `user` the daemon dropped to.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/diagnostics.h"
#include "common/endpoint.h"
#include "common/table.h"

namespace relaykit {

inline constexpr char kDefaultConfigPath[] = "/etc/relaykit/relaykit.yaml";
inline constexpr char kDefaultSocketmapListen[] = "inet:127.0.0.1:10041";
inline constexpr char kDefaultMilterListen[] = "inet:127.0.0.1:10042";
inline constexpr char kDefaultPolicyListen[] = "inet:127.0.0.1:10043";
// Redis defaults (section `redis:`).
inline constexpr char kDefaultRedisAddress[] = "127.0.0.1:6379";
inline constexpr int kDefaultRedisTimeoutMs = 50;
inline constexpr int kMaxRedisTimeoutMs = 60000;
inline constexpr char kDefaultRedisKeyPrefix[] = "relaykit:";

enum class DaemonSection { kSocketmap, kMilter, kPolicy };
// "socketmap", "milter", "policy"
const char* daemonSectionName(DaemonSection section);

// Keys every daemon section takes.
// A file the configuration names (read at start-up and at every reload), for `relaykit check`'s
// access checks (common/file_access.h).
struct NamedFile {
  std::string path;
  SourceLocation where;  // where the file is named (the config file itself: FILE:0:0)
  std::string what;      // "configuration", "table file", "redis password_file", ...
  // The daemon that reads it; absent: every daemon (the config, table files).
  std::optional<DaemonSection> onlyFor;
};

struct DaemonSettings {
  std::vector<Endpoint> listen;             // at least one (the section's default when absent)
  SourceLocation listenWhere;               // where `listen:` was written (line 0: default)
  std::optional<std::uint32_t> socketMode;  // unix: endpoints; absent: left to the umask
  std::string socketOwner;                // "user" or "user:group" for unix: endpoints; empty: keep
  std::string user;                       // drop to this user after binding; empty: keep identity
  SourceLocation userWhere;               // where `user:` was written (line 0: absent)
  std::optional<Endpoint> metricsListen;  // /metrics and /health; absent: off
  // allowed_users: only these local users (and root) may connect (docs/connection-limits.md);
  // resolved to uids at load. Absent: every peer is accepted.
  std::optional<std::vector<std::string>> allowedUsers;
  std::vector<std::uint32_t> allowedUids;
  bool present = false;  // the section was written in the file
};

// The common daemon keys, in the order they are documented.
const std::vector<std::string>& commonDaemonKeys();
bool isCommonDaemonKey(std::string_view key);
// `specific` followed by the common daemon keys: the allowed set for YamlReader::checkMap of a
// milter:/policy: section, so "unknown key" messages list every key the section takes.
std::vector<std::string> allowedKeysWithDaemonKeys(std::vector<std::string> specific);

struct RedisSettings {
  bool present = false;  // a `redis:` section was written
  SourceLocation where;  // the section, for messages
  Endpoint address;      // inet:HOST:PORT or unix:PATH
  int database = 0;
  std::string username;      // ACL user (AUTH username password); empty: the default user
  std::string passwordFile;  // empty: no AUTH
  SourceLocation passwordFileWhere;
  std::chrono::milliseconds timeout{kDefaultRedisTimeoutMs};
  std::string keyPrefix = kDefaultRedisKeyPrefix;
  // Sentinel: `sentinels: [host:port, ...]` and `master_name:`; address is then not used.
  std::vector<Endpoint> sentinels;
  std::string masterName;
  std::string sentinelUsername;      // AUTH to the sentinels (optional)
  std::string sentinelPasswordFile;  // empty: no AUTH to the sentinels
};

struct Config {
  std::string file;  // the path it was loaded from (for messages)
  std::shared_ptr<const PostfixSettings> postfix;
  // Tables by name (the socketmap map name). Shared so a component snapshot can keep a table
  // alive independently of the Config.
  std::map<std::string, std::shared_ptr<const Table>> tables;
  DaemonSettings socketmap;
  DaemonSettings milter;
  DaemonSettings policy;
  RedisSettings redis;
  // Raw `milter:` and `policy:` nodes (undefined when absent), parsed by their components at
  // load time only (YAML nodes are not safe for concurrent use). Build the component's reader as
  // YamlReader(config.file, diags, config.text) so block scalars can be located.
  YAML::Node milterNode;
  YAML::Node policyNode;
  // Raw `health:` node (thresholds of `relaykit health`, cli/health_config.h).
  YAML::Node healthNode;
  std::string text;  // the file's content
  // Every file the configuration names, the configuration itself first. Components that read
  // more files (key files) add theirs in config.cc's collectNamedFiles.
  std::vector<NamedFile> files;

  const DaemonSettings& daemon(DaemonSection section) const;
  // The named table, or nullptr.
  const Table* findTable(std::string_view name) const;
  std::shared_ptr<const Table> sharedTable(std::string_view name) const;
};

// Loads and compiles `path`. Returns nullptr when there is any error (all reported into diags);
// warnings are reported too and do not refuse the config.
std::shared_ptr<const Config> loadConfig(const std::string& path, Diagnostics* diags);
// For `relaykit check`: like loadConfig, but also returns the partly compiled Config when there
// were errors (so component validators can report their problems too). nullptr only when the
// file cannot be read or parsed as YAML.
std::shared_ptr<const Config> loadConfigForCheck(const std::string& path, Diagnostics* diags);
// The same from text (tests); `file` names it in messages.
std::shared_ptr<const Config> loadConfigText(const std::string& text, const std::string& file,
                                             Diagnostics* diags);

}  // namespace relaykit
