// SPDX-License-Identifier: Apache-2.0
// query_command.cc: `relaykit query -c FILE TABLE KEY...`: answers exactly as relaykit-socketmapd
// would (same Config, same Table::lookup, same reply rules), like `postmap -q`.
// One key: prints its value. Several keys, or `-` (keys from stdin, one per line): prints
// `key<TAB>value` for each hit. Errors (TEMP/PERM, unknown table, bad config) go to stderr.
// Exit 0 when every key was found, 1 when some were not, 2 on any error.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/config.h"
#include "common/socketmap_protocol.h"

namespace relaykit {

namespace {

// Exit codes of `relaykit query`.
constexpr int kQueryAllFound = 0;
constexpr int kQuerySomeNotFound = 1;
constexpr int kQueryError = 2;

struct QueryOptions {
  std::string configPath = kDefaultConfigPath;
  std::string table;
  std::vector<std::string> keys;
};

struct QueryState {
  bool notFound = false;
  bool error = false;
};

// One line of `in` into *line, at most kMaxLookupKeyBytes + 1 bytes kept (a longer line is
// skipped to its end and flagged in *tooLong). False at end of input.
bool readBoundedLine(std::istream& in, std::string* line, bool* tooLong) {
  line->clear();
  *tooLong = false;
  int c = 0;
  bool any = false;
  while ((c = in.get()) != std::char_traits<char>::eof()) {
    any = true;
    if (c == '\n') {
      return true;
    }
    if (line->size() <= kMaxLookupKeyBytes + 1) {
      line->push_back(static_cast<char>(c));
    } else {
      *tooLong = true;
    }
  }
  return any;
}

void queryOne(const Config& config, const std::string& table, const std::string& key, bool withKey,
              QueryState* state) {
  SocketmapAnswer answer = answerSocketmap(config, table, key);
  switch (answer.kind) {
    case LookupResult::Kind::kFound: {
      std::string value = answer.reply.substr(3);  // "OK "
      if (withKey) {
        std::printf("%s\t%s\n", key.c_str(), value.c_str());
      } else {
        std::printf("%s\n", value.c_str());
      }
      break;
    }
    case LookupResult::Kind::kNotFound:
      state->notFound = true;
      break;
    case LookupResult::Kind::kTempError:
    case LookupResult::Kind::kPermError:
      std::fprintf(stderr, "relaykit: query %s \"%s\": %s\n", table.c_str(), key.c_str(),
                   answer.reply.c_str());
      state->error = true;
      break;
  }
}

int runQuery(const QueryOptions& options) {
  Diagnostics diags;
  auto config = loadConfig(options.configPath, &diags);
  std::string text = diags.formatAll();
  std::fwrite(text.data(), 1, text.size(), stderr);
  if (config == nullptr) {
    return kQueryError;
  }
  if (config->findTable(options.table) == nullptr) {
    std::fprintf(stderr, "relaykit: unknown table \"%s\" (tables:", options.table.c_str());
    for (const auto& [name, table] : config->tables) {
      std::fprintf(stderr, " %s", name.c_str());
    }
    std::fprintf(stderr, ")\n");
    return kQueryError;
  }
  const bool withKey = options.keys.size() > 1 || options.keys[0] == "-";
  QueryState state;
  for (const auto& key : options.keys) {
    if (key != "-") {
      queryOne(*config, options.table, key, withKey, &state);
      continue;
    }
    std::string line;
    bool tooLong = false;
    while (readBoundedLine(std::cin, &line, &tooLong)) {
      if (tooLong) {
        std::fprintf(stderr, "relaykit: query %s: a key on stdin is longer than %zu bytes\n",
                     options.table.c_str(), kMaxLookupKeyBytes);
        state.error = true;
        continue;
      }
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      queryOne(*config, options.table, line, withKey, &state);
    }
  }
  std::fflush(stdout);
  if (state.error) {
    return kQueryError;
  }
  return state.notFound ? kQuerySomeNotFound : kQueryAllFound;
}

}  // namespace

void addQueryCommand(CLI::App& app, int* exitCode) {
  auto options = std::make_shared<QueryOptions>();
  CLI::App* sub = app.add_subcommand(
      "query", "look keys up in a table as relaykit-socketmapd would (like postmap -q)");
  sub->add_option("-c,--config", options->configPath, "configuration file")->capture_default_str();
  sub->add_option("table", options->table, "table name (as under tables:)")->required();
  sub->add_option("keys", options->keys, "keys to look up; - reads keys from stdin, one per line")
      ->required();
  sub->callback([options, exitCode] { *exitCode = runQuery(*options); });
}

}  // namespace relaykit
