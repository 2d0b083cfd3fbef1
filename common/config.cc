// SPDX-License-Identifier: Apache-2.0
// config.cc: compiles the shared sections of relaykit.yaml into a Config snapshot.
// Every problem is reported (not just the first); any error refuses the whole file.
#include "common/config.h"

#include <pwd.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <utility>

#include "common/yaml_util.h"

namespace relaykit {

namespace {

// Upper bound of `redis.database` (Redis's default is 16 databases; clusters allow only 0).
constexpr int kMaxRedisDatabase = 65535;

const std::vector<std::string> kTopLevelKeys = {"postfix", "tables", "socketmap", "milter",
                                                "policy",  "redis",  "health"};
const std::vector<std::string> kPostfixKeys = {"myorigin", "local_domains", "recipient_delimiter",
                                               "parent_domain_matches_subdomains",
                                               "smtputf8_enable"};
const std::vector<std::string> kTableKeys = {"search", "propagate_unmatched_extensions", "sources"};
const std::vector<std::string> kSourceKinds = {"entries", "regexp", "pcre", "file"};
const std::vector<std::string> kRedisKeys = {
    "address",  "database",  "password_file", "timeout_ms",        "key_prefix",
    "username", "sentinels", "master_name",   "sentinel_username", "sentinel_password_file"};

std::string joinKeys(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) {
    out += out.empty() ? k : ", " + k;
  }
  return out;
}

void parsePostfix(const YamlReader& r, const YAML::Node& node, PostfixSettings* out) {
  if (!node.IsDefined() || node.IsNull()) {
    return;
  }
  if (!r.checkMap(node, "postfix", kPostfixKeys) && !node.IsMap()) {
    return;
  }
  r.getString(node, "myorigin", &out->myorigin);
  r.getStringList(node, "local_domains", &out->localDomains);
  r.getString(node, "recipient_delimiter", &out->recipientDelimiter);
  r.getBool(node, "parent_domain_matches_subdomains", &out->parentDomainMatchesSubdomains);
  r.getBool(node, "smtputf8_enable", &out->smtputf8Enable);
}

std::optional<SearchMode> parseSearchMode(const YamlReader& r, const YAML::Node& node) {
  auto text = r.asString(node);
  if (!text) {
    return std::nullopt;
  }
  if (*text == "exact") {
    return SearchMode::kExact;
  }
  if (*text == "address") {
    return SearchMode::kAddress;
  }
  if (*text == "transport") {
    return SearchMode::kTransport;
  }
  if (*text == "sender") {
    return SearchMode::kSender;
  }
  r.error(node, "unknown search \"" + *text + "\" (allowed: exact, address, transport, sender)");
  return std::nullopt;
}

// One item of `sources:`; returns nullptr after reporting on error.
std::unique_ptr<TableSource> parseSource(const YamlReader& r, const YAML::Node& item,
                                         bool allowSubstitution, bool smtputf8,
                                         std::vector<NamedFile>* files) {
  if (!item.IsDefined() || !item.IsMap() || item.size() == 0) {
    r.error(item, "expected a source: a map with one of entries, regexp, pcre, file; got " +
                      YamlReader::describe(item));
    return nullptr;
  }
  if (item.size() != 1) {
    r.error(item, "a source takes exactly one of entries, regexp, pcre, file (got " +
                      std::to_string(item.size()) + " keys): start each source with its own '-'");
    return nullptr;
  }
  if (!r.checkMap(item, "source", kSourceKinds)) {
    return nullptr;
  }
  auto kv = item.begin();
  const std::string kind = kv->first.Scalar();
  const YAML::Node value = kv->second;
  Diagnostics* diags = r.diags();
  if (kind == "entries") {
    if (!value.IsDefined() || !value.IsMap()) {
      r.error(value,
              "expected a map of key: value for entries, got " + YamlReader::describe(value));
      return nullptr;
    }
    // Exact duplicates are reported here (yaml-cpp would silently keep one); makeEntriesSource
    // reports the rest (case-insensitive duplicates, empty keys and values).
    std::vector<TableEntry> entries;
    std::set<std::string> seen;
    bool ok = true;
    for (auto it = value.begin(); it != value.end(); ++it) {
      if (!it->first.IsScalar()) {
        r.error(it->first, "expected a string as key in entries");
        ok = false;
        continue;
      }
      auto v = r.asString(it->second);
      if (!v) {
        ok = false;
        continue;
      }
      if (!seen.insert(it->first.Scalar()).second) {
        r.error(it->first, "duplicate key \"" + it->first.Scalar() + "\" in entries");
        ok = false;
        continue;
      }
      entries.push_back(TableEntry{it->first.Scalar(), *v, r.where(it->first)});
    }
    auto source = makeEntriesSource(entries, diags, smtputf8);
    return ok ? std::move(source) : nullptr;
  }
  if (kind == "regexp" || kind == "pcre") {
    auto text = r.asString(value);
    if (!text) {
      return nullptr;
    }
    Diagnostics embedded;
    auto source = makeRegexpSource(*text, r.textLocation(value),
                                   kind == "regexp" ? RegexpDialect::kPosix : RegexpDialect::kPcre,
                                   allowSubstitution, &embedded);
    r.reportEmbedded(value, embedded);
    return source;
  }
  // file
  auto spec = r.asString(value);
  if (!spec) {
    return nullptr;
  }
  if (const std::size_t colon = spec->find(':');
      files != nullptr && colon != std::string::npos && colon + 1 < spec->size()) {
    files->push_back(
        NamedFile{spec->substr(colon + 1), r.where(value), "table file", std::nullopt});
  }
  return loadTableFileSource(*spec, r.where(value), allowSubstitution, diags, smtputf8);
}

bool validTableName(const std::string& name) {
  if (name.empty()) {
    return false;
  }
  for (unsigned char c : name) {
    if (std::isspace(c) || c == ':' || c == ',' || std::iscntrl(c)) {
      return false;
    }
  }
  return true;
}

void parseTables(const YamlReader& r, const YAML::Node& node,
                 const std::shared_ptr<const PostfixSettings>& postfix, Config* config) {
  if (!node.IsDefined() || node.IsNull()) {
    return;
  }
  if (!r.checkMapAnyKeys(node, "tables") && !node.IsMap()) {
    return;
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar()) {
      continue;
    }
    const std::string name = it->first.Scalar();
    const YAML::Node body = it->second;
    if (!validTableName(name)) {
      r.error(it->first, "invalid table name \"" + name +
                             "\": a socketmap map name cannot contain spaces, ':' or ','");
      continue;
    }
    const std::string what = "table \"" + name + "\"";
    if (!r.checkMap(body, what, kTableKeys) && !body.IsMap()) {
      continue;
    }
    TableOptions options;
    bool ok = true;
    YAML::Node searchNode = YamlReader::child(body, "search");
    if (searchNode.IsDefined()) {
      auto mode = parseSearchMode(r, searchNode);
      if (mode) {
        options.search = *mode;
      } else {
        ok = false;
      }
    }
    YAML::Node propagate = YamlReader::child(body, "propagate_unmatched_extensions");
    if (propagate.IsDefined()) {
      ok = r.getBool(body, "propagate_unmatched_extensions",
                     &options.propagateUnmatchedExtensions) &&
           ok;
      if (options.search != SearchMode::kAddress) {
        r.warning(propagate, "propagate_unmatched_extensions applies only to search: address");
      }
    }
    // Postfix refuses $n substitution in transport and relayhost pattern tables for safety.
    const bool allowSubstitution =
        options.search != SearchMode::kTransport && options.search != SearchMode::kSender;
    YAML::Node sourcesNode = YamlReader::child(body, "sources");
    std::vector<std::unique_ptr<TableSource>> sources;
    if (!sourcesNode.IsDefined()) {
      r.error(it->first, what + " has no sources");
      ok = false;
    } else if (!sourcesNode.IsSequence() || sourcesNode.size() == 0) {
      r.error(sourcesNode, "expected a non-empty list of sources for " + what + ", got " +
                               YamlReader::describe(sourcesNode));
      ok = false;
    } else {
      for (const auto& item : sourcesNode) {
        auto source =
            parseSource(r, item, allowSubstitution, postfix->smtputf8Enable, &config->files);
        if (source == nullptr) {
          ok = false;
          continue;
        }
        sources.push_back(std::move(source));
      }
    }
    if (ok) {
      config->tables[name] =
          std::make_shared<const Table>(name, options, std::move(sources), postfix);
    }
  }
}

// A TCP endpoint without a host ("inet::PORT", ":PORT") would listen on every interface without
// saying so: refused. An explicit wildcard (0.0.0.0, [::]) is accepted with a warning. Returns
// false after reporting an error.
bool checkBindHost(const YamlReader& r, const YAML::Node& node, const char* key,
                   const Endpoint& ep) {
  if (ep.kind != Endpoint::Kind::kInet) {
    return true;
  }
  const std::string port = std::to_string(ep.port);
  if (ep.host.empty()) {
    r.error(node, std::string(key) + " \"" + node.Scalar() +
                      "\" has no host and would listen on every interface: write 127.0.0.1:" +
                      port + " (this host only), or 0.0.0.0:" + port + " / [::]:" + port +
                      " to listen on every interface on purpose");
    return false;
  }
  if (ep.host == "0.0.0.0" || ep.host == "::") {
    r.warning(node, std::string(key) + " \"" + node.Scalar() +
                        "\" listens on every interface: make sure a firewall keeps others out");
  }
  return true;
}

void parseEndpointList(const YamlReader& r, const YAML::Node& node, std::vector<Endpoint>* out) {
  auto items = r.asStringList(node);
  if (!items) {
    return;
  }
  if (items->empty()) {
    r.error(node, "expected at least one endpoint");
    return;
  }
  std::vector<Endpoint> parsed;
  bool ok = true;
  std::size_t index = 0;
  for (const auto& text : *items) {
    const YAML::Node item = node.IsSequence() ? node[index] : node;
    auto ep = Endpoint::parse(text);
    if (!ep) {
      r.error(item, ep.status().message());
      ok = false;
    } else if (!checkBindHost(r, item, "listen", *ep)) {
      ok = false;
    } else {
      parsed.push_back(*ep);
    }
    ++index;
  }
  if (ok) {
    *out = std::move(parsed);
  }
}

// Parses the common daemon keys of a section. When `strict`, other keys are errors (socketmap:);
// otherwise they are left to the component's parser.
void parseDaemon(const YamlReader& r, const YAML::Node& node, const char* section,
                 const char* defaultListen, bool strict, DaemonSettings* out) {
  out->listen = {*Endpoint::parse(defaultListen)};
  if (!node.IsDefined() || node.IsNull()) {
    return;
  }
  out->present = true;
  if (strict) {
    if (!r.checkMap(node, section, commonDaemonKeys()) && !node.IsMap()) {
      return;
    }
  } else if (!node.IsMap()) {
    r.error(node,
            std::string("expected a map for ") + section + ", got " + YamlReader::describe(node));
    return;
  }
  YAML::Node listen = YamlReader::child(node, "listen");
  if (listen.IsDefined()) {
    out->listenWhere = r.where(listen);
    parseEndpointList(r, listen, &out->listen);
  }
  std::uint32_t mode = 0;
  if (YamlReader::child(node, "socket_mode").IsDefined() &&
      r.getOctalMode(node, "socket_mode", &mode)) {
    out->socketMode = mode;
  }
  r.getString(node, "socket_owner", &out->socketOwner);
  r.getString(node, "user", &out->user);
  if (YAML::Node user = YamlReader::child(node, "user")) {
    out->userWhere = r.where(user);
  }
  YAML::Node allowed = YamlReader::child(node, "allowed_users");
  std::vector<std::string> allowedUsers;
  if (allowed.IsDefined() && r.getStringList(node, "allowed_users", &allowedUsers)) {
    bool ok = true;
    for (const auto& name : allowedUsers) {
      const passwd* pw = getpwnam(name.c_str());
      if (pw == nullptr) {
        r.error(allowed, "allowed_users: unknown user \"" + name + "\"");
        ok = false;
      } else {
        out->allowedUids.push_back(pw->pw_uid);
      }
    }
    if (ok) {
      out->allowedUsers = std::move(allowedUsers);
    }
  }
  YAML::Node metrics = YamlReader::child(node, "metrics_listen");
  if (metrics.IsDefined()) {
    auto text = r.asString(metrics);
    if (text) {
      auto ep = Endpoint::parse(*text, /*allowBareHostPort=*/true);
      if (!ep) {
        r.error(metrics, ep.status().message());
      } else if (checkBindHost(r, metrics, "metrics_listen", *ep)) {
        out->metricsListen = *ep;
      }
    }
  }
}

void parseRedis(const YamlReader& r, const YAML::Node& node, RedisSettings* out) {
  out->address = *Endpoint::parse(kDefaultRedisAddress, true);
  if (!node.IsDefined() || node.IsNull()) {
    return;
  }
  out->present = true;
  out->where = r.where(node);
  if (!r.checkMap(node, "redis", kRedisKeys) && !node.IsMap()) {
    return;
  }
  YAML::Node address = YamlReader::child(node, "address");
  if (address.IsDefined()) {
    auto text = r.asString(address);
    if (text) {
      auto ep = Endpoint::parse(*text, /*allowBareHostPort=*/true);
      if (!ep) {
        r.error(address, ep.status().message());
      } else {
        out->address = *ep;
      }
    }
  }
  r.getInt(node, "database", &out->database, 0, kMaxRedisDatabase);
  r.getString(node, "username", &out->username);
  r.getString(node, "password_file", &out->passwordFile);
  out->passwordFileWhere = r.where(YamlReader::child(node, "password_file"));
  int timeoutMs = kDefaultRedisTimeoutMs;
  if (r.getInt(node, "timeout_ms", &timeoutMs, 1, kMaxRedisTimeoutMs)) {
    out->timeout = std::chrono::milliseconds(timeoutMs);
  }
  r.getString(node, "key_prefix", &out->keyPrefix);
  std::vector<std::string> sentinels;
  if (r.getStringList(node, "sentinels", &sentinels)) {
    const YAML::Node where = YamlReader::child(node, "sentinels");
    for (const std::string& text : sentinels) {
      auto ep = Endpoint::parse(text, /*allowBareHostPort=*/true);
      if (!ep || ep->kind != Endpoint::Kind::kInet) {
        r.error(where, "sentinels: expected host:port, got \"" + text + "\"");
      } else {
        out->sentinels.push_back(*ep);
      }
    }
  }
  r.getString(node, "master_name", &out->masterName);
  r.getString(node, "sentinel_username", &out->sentinelUsername);
  r.getString(node, "sentinel_password_file", &out->sentinelPasswordFile);
  if (!out->sentinels.empty() && out->masterName.empty()) {
    r.error(node, "redis: sentinels needs master_name");
  } else if (out->sentinels.empty() && !out->masterName.empty()) {
    r.error(node, "redis: master_name needs sentinels");
  }
}

// An empty file, only comments, or a document yaml-cpp reads as null (a lone "~", or a first
// line it cannot read, like a lone ','): refused, never taken as "no tables". The error points at
// the first thing that is neither blank nor a comment (1:1 when there is none).
void reportNullDocument(const std::string& file, const std::string& text, Diagnostics* diags) {
  int line = 1;
  int column = 1;
  bool inComment = false;
  for (char c : text) {
    if (c == '\n') {
      ++line;
      column = 1;
      inComment = false;
      continue;
    }
    if (!inComment && c == '#') {
      inComment = true;
    }
    if (!inComment && c != ' ' && c != '\t' && c != '\r') {
      diags->error(SourceLocation{file, line, column},
                   "expected a map of sections (" + joinKeys(kTopLevelKeys) +
                       "), got null: YAML parsing stopped here and the rest of the file "
                       "would be ignored");
      return;
    }
    ++column;
  }
  diags->error(SourceLocation{file, 1, 1},
               "the configuration is empty (only blank lines or comments): expected a map of "
               "sections (" +
                   joinKeys(kTopLevelKeys) + ")");
}

// The files other sections name (table files are collected while parsing tables).
void collectNamedFiles(const YamlReader& r, Config* config) {
  if (config->redis.present && !config->redis.passwordFile.empty()) {
    config->files.push_back(NamedFile{config->redis.passwordFile, config->redis.passwordFileWhere,
                                      "redis password_file", DaemonSection::kPolicy});
  }
  if (YAML::Node hf = YamlReader::child(config->milterNode, "header_checks_file");
      hf.IsDefined() && hf.IsScalar()) {
    std::string path = hf.Scalar();
    for (const char* prefix : {"regexp:", "pcre:"}) {
      if (path.rfind(prefix, 0) == 0) {
        path = path.substr(std::string_view(prefix).size());
      }
    }
    config->files.push_back(
        NamedFile{path, r.where(hf), "header_checks_file", DaemonSection::kMilter});
  }
  // Allowances files (policy.limits[].allowances_file: texthash:PATH, or hash:PATH read as
  // PATH.db): relaykit-policyd reads them at every reload.
  YAML::Node limits = YamlReader::child(config->policyNode, "limits");
  if (limits.IsDefined() && limits.IsSequence()) {
    for (const auto& limit : limits) {
      YAML::Node af = YamlReader::child(limit, "allowances_file");
      if (!af.IsDefined() || !af.IsScalar()) {
        continue;
      }
      const std::string& spec = af.Scalar();
      if (spec.rfind("texthash:/", 0) == 0) {
        config->files.push_back(
            NamedFile{spec.substr(9), r.where(af), "allowances_file", DaemonSection::kPolicy});
      } else if (spec.rfind("hash:/", 0) == 0) {
        config->files.push_back(NamedFile{spec.substr(5) + ".db", r.where(af), "allowances_file",
                                          DaemonSection::kPolicy});
      }
    }
  }
  // DKIM private keys (milter.dkim.keys[].key_file): the milter must be able to read them.
  YAML::Node keys = YamlReader::child(YamlReader::child(config->milterNode, "dkim"), "keys");
  if (keys.IsDefined() && keys.IsSequence()) {
    for (const auto& entry : keys) {
      if (!entry.IsMap()) {
        continue;
      }
      if (YAML::Node kf = YamlReader::child(entry, "key_file"); kf.IsDefined() && kf.IsScalar()) {
        config->files.push_back(
            NamedFile{kf.Scalar(), r.where(kf), "dkim key_file", DaemonSection::kMilter});
      }
    }
  }
}

std::shared_ptr<const Config> compile(const YAML::Node& root, const std::string& file,
                                      const std::string& text, Diagnostics* diags,
                                      bool keepOnError = false) {
  YamlReader r(file, diags, text);
  auto config = std::make_shared<Config>();
  config->file = file;
  config->text = text;
  config->files.push_back(
      NamedFile{file, SourceLocation{file, 0, 0}, "configuration", std::nullopt});
  const YAML::Node top = root;
  if (!top.IsDefined() || top.IsNull()) {
    reportNullDocument(file, text, diags);
    return nullptr;
  }
  if (!r.checkMap(top, "the configuration", kTopLevelKeys) && !top.IsMap()) {
    return nullptr;
  }
  auto postfix = std::make_shared<PostfixSettings>();
  parsePostfix(r, YamlReader::child(top, "postfix"), postfix.get());
  config->postfix = postfix;
  parseTables(r, YamlReader::child(top, "tables"), config->postfix, config.get());
  parseDaemon(r, YamlReader::child(top, "socketmap"), "socketmap", kDefaultSocketmapListen,
              /*strict=*/true, &config->socketmap);
  config->milterNode = YamlReader::child(top, "milter");
  parseDaemon(r, config->milterNode, "milter", kDefaultMilterListen, /*strict=*/false,
              &config->milter);
  config->policyNode = YamlReader::child(top, "policy");
  parseDaemon(r, config->policyNode, "policy", kDefaultPolicyListen, /*strict=*/false,
              &config->policy);
  parseRedis(r, YamlReader::child(top, "redis"), &config->redis);
  collectNamedFiles(r, config.get());
  config->healthNode = YamlReader::child(top, "health");
  if (diags->hasErrors() && !keepOnError) {
    return nullptr;
  }
  return config;
}

}  // namespace

const char* daemonSectionName(DaemonSection section) {
  switch (section) {
    case DaemonSection::kSocketmap:
      return "socketmap";
    case DaemonSection::kMilter:
      return "milter";
    case DaemonSection::kPolicy:
      return "policy";
  }
  return "?";
}

const std::vector<std::string>& commonDaemonKeys() {
  static const std::vector<std::string> keys = {"listen", "socket_mode",    "socket_owner",
                                                "user",   "metrics_listen", "allowed_users"};
  return keys;
}

bool isCommonDaemonKey(std::string_view key) {
  const auto& keys = commonDaemonKeys();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::vector<std::string> allowedKeysWithDaemonKeys(std::vector<std::string> specific) {
  for (const auto& k : commonDaemonKeys()) {
    specific.push_back(k);
  }
  return specific;
}

const DaemonSettings& Config::daemon(DaemonSection section) const {
  switch (section) {
    case DaemonSection::kMilter:
      return milter;
    case DaemonSection::kPolicy:
      return policy;
    case DaemonSection::kSocketmap:
      break;
  }
  return socketmap;
}

const Table* Config::findTable(std::string_view name) const {
  auto it = tables.find(std::string(name));
  return it == tables.end() ? nullptr : it->second.get();
}

std::shared_ptr<const Table> Config::sharedTable(std::string_view name) const {
  auto it = tables.find(std::string(name));
  return it == tables.end() ? nullptr : it->second;
}

std::shared_ptr<const Config> loadConfigText(const std::string& text, const std::string& file,
                                             Diagnostics* diags) {
  auto root = parseYamlText(text, file, diags);
  if (!root) {
    return nullptr;
  }
  try {
    return compile(*root, file, text, diags);
  } catch (const YAML::Exception& e) {
    // Defensive: every access is guarded, but never let yaml-cpp escape the boundary.
    SourceLocation loc{file, e.mark.is_null() ? 0 : e.mark.line + 1,
                       e.mark.is_null() ? 0 : e.mark.column + 1};
    diags->error(loc, e.msg);
    return nullptr;
  }
}

std::shared_ptr<const Config> loadConfigForCheck(const std::string& path, Diagnostics* diags) {
  std::string text;
  auto root = loadYamlFile(path, diags, &text);
  if (!root) {
    return nullptr;
  }
  try {
    return compile(*root, path, text, diags, /*keepOnError=*/true);
  } catch (const YAML::Exception& e) {
    SourceLocation loc{path, e.mark.is_null() ? 0 : e.mark.line + 1,
                       e.mark.is_null() ? 0 : e.mark.column + 1};
    diags->error(loc, e.msg);
    return nullptr;
  }
}

std::shared_ptr<const Config> loadConfig(const std::string& path, Diagnostics* diags) {
  std::string text;
  auto root = loadYamlFile(path, diags, &text);
  if (!root) {
    return nullptr;
  }
  try {
    return compile(*root, path, text, diags);
  } catch (const YAML::Exception& e) {
    SourceLocation loc{path, e.mark.is_null() ? 0 : e.mark.line + 1,
                       e.mark.is_null() ? 0 : e.mark.column + 1};
    diags->error(loc, e.msg);
    return nullptr;
  }
}

}  // namespace relaykit
