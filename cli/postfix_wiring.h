// SPDX-License-Identifier: Apache-2.0
// postfix_wiring.h: what `relaykit postconf` knows about wiring relaykit into Postfix, as pure
// functions of the relaykit Config and of postconf(1)'s output (no process, no file access):
//  - wiringFor(): the main.cf settings for a config, as `name = value` lines for `postconf -e`;
//  - parsePostconf()/parseMasterServices(): `postconf -x` and `postconf -M` output;
//  - findTraps(): the known wiring traps in live settings, each with the fix.
// Unix-domain endpoints under Postfix's queue directory are written relative to it
// ("private/relaykit-policy"): Postfix daemons run with the queue directory as their working
// directory, chrooted or not, so the same text works in both cases.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/endpoint.h"

namespace relaykit {

// Debian's (and Postfix's default) queue directory, where a chrooted Postfix lives.
inline constexpr char kDefaultPostfixQueueDirectory[] = "/var/spool/postfix";

// What the generator needs beyond the Config (from the milter section, parsed by the caller).
struct WiringInputs {
  const Config* config = nullptr;
  std::string rewriteSenderTable;  // the milter's rewrite_sender table; empty when off
  std::string rewriteFromTable;    // the milter's rewrite_from table; empty when off
  // A limit or relay rule needs the recipients Postfix names only at RCPT (policy config's
  // tracksRecipients); unknown (policy section unreadable) counts as true.
  bool policyNeedsRcpt = true;
  std::string queueDirectory = kDefaultPostfixQueueDirectory;
};

// The main.cf text: `# comment` lines and `name = value` lines (one line each), then, only when
// master.cf entries are needed, a line `# master.cf` and those entries.
std::string wiringFor(const WiringInputs& in);

// How Postfix must write `endpoint` in main.cf: inet:HOST:PORT as is; a unix path under
// `queueDirectory` relative to it ("private/x"); any other unix path as is.
std::string postfixEndpointText(const Endpoint& endpoint, const std::string& queueDirectory);

// `name = value` lines (postconf -n / -x output) into a map. Continuation lines (leading white
// space) are joined to the previous value.
std::map<std::string, std::string> parsePostconf(std::string_view text);

// One master.cf service from `postconf -M`.
struct MasterService {
  std::string name;     // "smtp", "127.0.0.1:2525"
  std::string type;     // inet, unix, unix-dgram, fifo, pass
  std::string chroot;   // y, n or - (Postfix >= 3.0: - means n)
  std::string command;  // smtpd, cleanup, trivial-rewrite, ...
};
std::vector<MasterService> parseMasterServices(std::string_view text);

// A restriction or milter list split as Postfix splits it: on commas and white space, a
// `{ ... }` group kept as one element (braces included).
std::vector<std::string> splitPostfixList(std::string_view value);

struct Trap {
  std::string id;       // short stable name: "permit-mynetworks-before-policy", ...
  std::string problem;  // what is wrong, naming the parameter
  std::string fix;      // what to change (postconf -e ... where possible)
};

struct LiveSettings {
  std::map<std::string, std::string> params;  // postconf -x (every parameter, expanded)
  std::vector<MasterService> services;        // postconf -M
};

// The traps found in `live` for the relaykit configuration `in`.
std::vector<Trap> findTraps(const WiringInputs& in, const LiveSettings& live);

}  // namespace relaykit
