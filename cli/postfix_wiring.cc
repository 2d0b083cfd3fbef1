// SPDX-License-Identifier: Apache-2.0
// postfix_wiring.cc: main.cf wiring for a relaykit config, and the wiring traps; see
// postfix_wiring.h. Every trap's reason is in README.md "Wiring Postfix".
#include "cli/postfix_wiring.h"

#include <algorithm>
#include <set>

namespace relaykit {

namespace {

// The policy service's client settings in the generated wiring: Postfix's own default timeout
// is 100 s; a relay should not hold a session that long. DUNNO: mail flows (unlimited) while
// relaykit-policyd is down, as its on_store_error: open does for Redis.
constexpr char kPolicyClientOptions[] = "timeout=10s, default_action=DUNNO";
// An address no table should route: a transport table answering it has a catch-all ("*").
constexpr char kTransportProbeAddress[] = "relaykit-probe@nowhere.invalid";
// main.cf parameters that only copy other parameters' values (proxymap's allow lists).
constexpr std::string_view kProxyListPrefix = "proxy_";

bool contains(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

std::string trim(std::string_view text) {
  std::size_t b = 0;
  std::size_t e = text.size();
  while (b < e && (text[b] == ' ' || text[b] == '\t' || text[b] == '\r')) {
    ++b;
  }
  while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r')) {
    --e;
  }
  return std::string(text.substr(b, e - b));
}

// A listen endpoint as a Postfix client reaches it: "all addresses" becomes the loopback one.
Endpoint reachable(Endpoint ep) {
  if (ep.kind == Endpoint::Kind::kInet && (ep.host.empty() || ep.host == "0.0.0.0")) {
    ep.host = "127.0.0.1";
  } else if (ep.kind == Endpoint::Kind::kInet && ep.host == "::") {
    ep.host = "::1";
  }
  return ep;
}

bool isLoopbackOrAny(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "localhost" ||
         host == "::1" || host.rfind("127.", 0) == 0;
}

// Whether a main.cf reference `ref` (unix paths made absolute) reaches the listener `listen`.
bool reaches(const Endpoint& ref, const Endpoint& listen) {
  if (ref.kind != listen.kind) {
    return false;
  }
  if (ref.kind == Endpoint::Kind::kUnix) {
    return ref.path == listen.path;
  }
  if (ref.port != listen.port) {
    return false;
  }
  return ref.host == listen.host || listen.host.empty() || listen.host == "0.0.0.0" ||
         listen.host == "::" || (isLoopbackOrAny(ref.host) && isLoopbackOrAny(listen.host));
}

bool reachesAny(const Endpoint& ref, const DaemonSettings& daemon) {
  return std::any_of(daemon.listen.begin(), daemon.listen.end(),
                     [&](const Endpoint& l) { return reaches(ref, l); });
}

// "inet:h:p" / "unix:path" as written in main.cf, a relative unix path made absolute under the
// queue directory (where Postfix daemons run).
std::optional<Endpoint> parseReference(std::string_view text, const std::string& queueDirectory) {
  std::string t = trim(text);
  if (t.rfind("unix:", 0) == 0 && t.size() > 5 && t[5] != '/') {
    Endpoint ep;
    ep.kind = Endpoint::Kind::kUnix;
    ep.path = queueDirectory + "/" + t.substr(5);
    return ep;
  }
  auto parsed = Endpoint::parse(t);
  if (!parsed) {
    return std::nullopt;
  }
  return *parsed;
}

// One `socketmap:ENDPOINT:NAME` reference found in a main.cf value.
struct SocketmapRef {
  std::string endpointText;  // as written
  std::string name;
};

std::vector<SocketmapRef> socketmapRefs(std::string_view value) {
  std::vector<SocketmapRef> refs;
  std::size_t pos = 0;
  while ((pos = value.find("socketmap:", pos)) != std::string_view::npos) {
    std::size_t start = pos + 10;
    std::size_t end = start;
    while (end < value.size() && value[end] != ',' && value[end] != ' ' && value[end] != '\t' &&
           value[end] != '}' && value[end] != '\n') {
      ++end;
    }
    std::string_view token = value.substr(start, end - start);
    auto colon = token.rfind(':');
    if (colon != std::string_view::npos && colon > 0) {
      refs.push_back({std::string(token.substr(0, colon)), std::string(token.substr(colon + 1))});
    }
    pos = end;
  }
  return refs;
}

// The endpoint text of one milter list element: "inet:h:p" or "{ inet:h:p, name=value ... }".
struct MilterRef {
  std::string endpointText;
  std::string defaultAction;  // a per-milter default_action=, empty when absent
};

std::optional<MilterRef> milterRef(const std::string& element) {
  MilterRef ref;
  if (element.empty()) {
    return std::nullopt;
  }
  if (element.front() != '{') {
    ref.endpointText = element;
    return ref;
  }
  std::string inner = element.substr(1, element.size() >= 2 ? element.size() - 2 : 0);
  auto parts = splitPostfixList(inner);
  if (parts.empty()) {
    return std::nullopt;
  }
  ref.endpointText = parts.front();
  for (std::size_t i = 1; i < parts.size(); ++i) {
    if (parts[i].rfind("default_action=", 0) == 0) {
      ref.defaultAction = parts[i].substr(15);
    }
  }
  return ref;
}

// The endpoint text of a check_policy_service argument ("inet:h:p" or "{ inet:h:p, ... }").
std::string policyEndpointText(const std::string& argument) {
  if (!argument.empty() && argument.front() == '{') {
    auto ref = milterRef(argument);  // same { endpoint, name=value } shape
    return ref ? ref->endpointText : std::string();
  }
  return argument;
}

// The Postfix program that reads each parameter relaykit is wired into.
std::string programOf(const std::string& param) {
  if (param == "smtpd_milters" || param.rfind("smtpd_", 0) == 0) {
    return "smtpd";
  }
  if (param == "non_smtpd_milters" || contains(param, "canonical_maps")) {
    return "cleanup";
  }
  if (param == "transport_maps" || param == "sender_dependent_relayhost_maps") {
    return "trivial-rewrite";
  }
  if (param == "smtp_generic_maps") {
    return "smtp";
  }
  return std::string();
}

bool chrooted(const std::vector<MasterService>& services, const std::string& program) {
  return std::any_of(services.begin(), services.end(), [&](const MasterService& s) {
    return s.command == program && s.chroot == "y";
  });
}

std::string get(const std::map<std::string, std::string>& params, const std::string& name) {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

}  // namespace

std::string postfixEndpointText(const Endpoint& endpoint, const std::string& queueDirectory) {
  Endpoint ep = reachable(endpoint);
  if (ep.kind == Endpoint::Kind::kUnix) {
    const std::string prefix = queueDirectory + "/";
    if (ep.path.rfind(prefix, 0) == 0 && ep.path.size() > prefix.size()) {
      return "unix:" + ep.path.substr(prefix.size());
    }
  }
  return ep.toString();
}

std::vector<std::string> splitPostfixList(std::string_view value) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < value.size()) {
    char c = value[i];
    if (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      ++i;
      continue;
    }
    std::size_t start = i;
    if (c == '{') {
      int depth = 0;
      for (; i < value.size(); ++i) {
        if (value[i] == '{') {
          ++depth;
        } else if (value[i] == '}' && --depth == 0) {
          ++i;
          break;
        }
      }
    } else {
      while (i < value.size() && value[i] != ',' && value[i] != ' ' && value[i] != '\t' &&
             value[i] != '\n' && value[i] != '\r') {
        ++i;
      }
    }
    out.emplace_back(value.substr(start, i - start));
  }
  return out;
}

std::map<std::string, std::string> parsePostconf(std::string_view text) {
  std::map<std::string, std::string> out;
  std::string last;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    if (line.empty() || line.front() == '#') {
      continue;
    }
    if ((line.front() == ' ' || line.front() == '\t') && !last.empty()) {
      out[last] += " " + trim(line);
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    last = trim(line.substr(0, eq));
    out[last] = trim(line.substr(eq + 1));
  }
  return out;
}

std::vector<MasterService> parseMasterServices(std::string_view text) {
  std::vector<MasterService> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto eol = text.find('\n', pos);
    std::string_view line =
        text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    if (line.empty() || line.front() == '#' || line.front() == ' ' || line.front() == '\t') {
      continue;  // comments and -o continuation lines
    }
    auto fields = splitPostfixList(line);
    // service type private unpriv chroot wakeup maxproc command [args]
    if (fields.size() < 8) {
      continue;
    }
    out.push_back({fields[0], fields[1], fields[4], fields[7]});
  }
  return out;
}

std::string wiringFor(const WiringInputs& in) {
  const Config& config = *in.config;
  std::string out =
      "# main.cf settings for relaykit (" + config.file + "); apply each line with postconf -e\n";
  if (!config.tables.empty()) {
    const std::string sm =
        "socketmap:" + postfixEndpointText(config.socketmap.listen.front(), in.queueDirectory) +
        ":";
    std::map<std::string, std::vector<std::string>> params;
    std::vector<std::string> notes;
    for (const auto& [name, table] : config.tables) {
      const std::string ref = sm + name;
      switch (table->options().search) {
        case SearchMode::kTransport:
          params["transport_maps"].push_back(ref);
          break;
        case SearchMode::kSender:
          params["sender_dependent_relayhost_maps"].push_back(ref);
          break;
        case SearchMode::kAddress:
          if (name == in.rewriteSenderTable) {
            notes.push_back("# table " + name +
                            ": applied by relaykit-milter's rewrite_sender before the queue "
                            "(not also sender_canonical_maps: the same work twice)");
          } else if (name == in.rewriteFromTable && !in.rewriteSenderTable.empty()) {
            // The milter already rewrote the envelope sender and the From header(s): Postfix's
            // smtp(8) would look the rewritten addresses up again on every delivery (four
            // lookups per message with one recipient).
            notes.push_back("# table " + name +
                            ": applied by relaykit-milter's rewrite_from before the queue; add "
                            "smtp_generic_maps = " +
                            ref + " only to rewrite other headers (To, Cc) and recipients too");
          } else if (contains(name, "canonical") && contains(name, "recipient")) {
            params["recipient_canonical_maps"].push_back(ref);
          } else if (contains(name, "canonical")) {
            params["sender_canonical_maps"].push_back(ref);
          } else {
            params["smtp_generic_maps"].push_back(ref);
          }
          break;
        case SearchMode::kExact:
          notes.push_back("# table " + name + " (search: exact): " + ref +
                          " wherever a lookup table is wanted");
          break;
      }
    }
    out += "# relaykit-socketmapd: tables\n";
    for (const char* param : {"transport_maps", "smtp_generic_maps", "sender_canonical_maps",
                              "recipient_canonical_maps", "sender_dependent_relayhost_maps"}) {
      auto it = params.find(param);
      if (it == params.end()) {
        continue;
      }
      std::string value;
      for (const auto& ref : it->second) {
        value += (value.empty() ? "" : ", ") + ref;
      }
      out += std::string(param) + " = " + value + "\n";
    }
    for (const auto& note : notes) {
      out += note + "\n";
    }
  }
  if (config.milter.present) {
    out += "# relaykit-milter: header rules, From and envelope sender rewriting before the queue\n";
    out +=
        "smtpd_milters = " + postfixEndpointText(config.milter.listen.front(), in.queueDirectory) +
        "\n";
    out += "non_smtpd_milters = $smtpd_milters\n";
    out += "# mail waits (4xx, or queued) rather than pass unfiltered while the milter is down\n";
    out += "milter_default_action = tempfail\n";
  }
  if (config.policy.present) {
    const std::string service =
        "check_policy_service { " +
        postfixEndpointText(config.policy.listen.front(), in.queueDirectory) + ", " +
        kPolicyClientOptions + " }";
    out += "# relaykit-policyd: relay authorisation first, then the policy service alone\n";
    out += "# (permit_mynetworks before it would end the list unasked)\n";
    out +=
        "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
        "reject_unauth_destination\n";
    if (in.policyNeedsRcpt) {
      out += "# at RCPT: a limit or relay rule needs the recipients, which Postfix names there\n";
      out += "smtpd_recipient_restrictions = " + service + "\n";
    } else {
      out +=
          "# not at RCPT: no limit or relay rule needs the recipients; END-OF-DATA counts and\n"
          "# answers FILTER (add it to smtpd_recipient_restrictions for refusals before DATA, one\n"
          "# more request per recipient)\n";
    }
    out += "smtpd_end_of_data_restrictions = " + service + "\n";
  }
  return out;
}

std::vector<Trap> findTraps(const WiringInputs& in, const LiveSettings& live) {
  const Config& config = *in.config;
  const auto& params = live.params;
  std::vector<Trap> traps;
  std::string queueDirectory = get(params, "queue_directory");
  if (queueDirectory.empty()) {
    queueDirectory = in.queueDirectory;
  }

  // 1. permit_mynetworks (or permit) ends a list before the policy service is asked.
  for (const char* param : {"smtpd_recipient_restrictions", "smtpd_end_of_data_restrictions"}) {
    auto items = splitPostfixList(get(params, param));
    std::string permit;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (items[i] == "permit_mynetworks" || items[i] == "permit") {
        permit = permit.empty() ? items[i] : permit;
        continue;
      }
      if (items[i] != "check_policy_service" || i + 1 >= items.size()) {
        continue;
      }
      auto ref = parseReference(policyEndpointText(items[i + 1]), queueDirectory);
      if (!permit.empty() && ref && config.policy.present && reachesAny(*ref, config.policy)) {
        traps.push_back(
            {"permit-before-policy",
             std::string(param) + ": " + permit +
                 " comes before check_policy_service for relaykit-policyd; on a relay every "
                 "client is in mynetworks, so the list ends there and the policy service is "
                 "never asked (no limits, no FILTER)",
             "move relay authorisation to smtpd_relay_restrictions and leave the policy service "
             "alone in " +
                 std::string(param) + " (see `relaykit postconf`)"});
        break;
      }
    }
  }

  // 2. A transport catch-all beats sender_dependent_relayhost_maps.
  if (!get(params, "sender_dependent_relayhost_maps").empty()) {
    for (const auto& ref : socketmapRefs(get(params, "transport_maps"))) {
      auto ep = parseReference(ref.endpointText, queueDirectory);
      const Table* table = config.findTable(ref.name);
      if (!ep || !reachesAny(*ep, config.socketmap) || table == nullptr) {
        continue;
      }
      const LookupResult r = table->lookup(kTransportProbeAddress);
      const auto colon = r.value().find(':');
      if (r.isFound() && colon != std::string::npos && colon + 1 < r.value().size()) {
        traps.push_back(
            {"transport-catchall",
             "transport_maps: relaykit table " + ref.name + " routes every address (\"" +
                 r.value() + "\" for " + kTransportProbeAddress +
                 "); a transport nexthop beats sender_dependent_relayhost_maps, so senders "
                 "can never choose their relay",
             "remove the \"*\" (catch-all) entry from table " + ref.name +
                 " and send everything else through main.cf's relayhost"});
      }
    }
  }

  // 3. Milters whose failure lets mail through unfiltered.
  const bool milterPresent = config.milter.present;
  bool milterWired = false;
  bool reportedAccept = false;
  for (const char* param : {"smtpd_milters", "non_smtpd_milters"}) {
    for (const auto& element : splitPostfixList(get(params, param))) {
      auto ref = milterRef(element);
      auto ep = ref ? parseReference(ref->endpointText, queueDirectory) : std::nullopt;
      if (!ep || !milterPresent || !reachesAny(*ep, config.milter)) {
        continue;
      }
      milterWired = true;
      std::string action =
          ref->defaultAction.empty() ? get(params, "milter_default_action") : ref->defaultAction;
      if (action == "accept" && !reportedAccept) {
        reportedAccept = true;
        traps.push_back(
            {"milter-default-accept",
             std::string(param) + ": relaykit-milter with default_action accept: while it is "
                                  "down or slow, mail passes without its rewriting (header "
                                  "rules, From and sender rewriting)",
             "postconf -e 'milter_default_action = tempfail' (and no default_action=accept in "
             "the milter's { } settings)"});
      }
    }
  }

  // 4. Unix sockets a chrooted Postfix program cannot reach, and 5. tables not served.
  std::set<std::string> reportedTables;
  std::set<std::string> reportedChroot;
  for (const auto& [param, value] : params) {
    if (param.rfind(kProxyListPrefix, 0) == 0) {
      continue;
    }
    std::vector<std::pair<std::string, const DaemonSettings*>> refs;
    for (const auto& ref : socketmapRefs(value)) {
      auto ep = parseReference(ref.endpointText, queueDirectory);
      if (!ep || !reachesAny(*ep, config.socketmap)) {
        continue;
      }
      refs.emplace_back(ref.endpointText, &config.socketmap);
      if (config.tables.count(ref.name) == 0 && reportedTables.insert(ref.name).second) {
        traps.push_back(
            {"table-not-served",
             param + ": socketmap table \"" + ref.name +
                 "\" is not served by relaykit-socketmapd (no such table under "
                 "tables: in " +
                 config.file + "); every lookup fails and mail is deferred",
             "add table " + ref.name + " to " + config.file + " or remove it from " + param});
      }
    }
    if (param == "smtpd_milters" || param == "non_smtpd_milters") {
      for (const auto& element : splitPostfixList(value)) {
        if (auto ref = milterRef(element)) {
          refs.emplace_back(ref->endpointText, &config.milter);
        }
      }
    }
    if (param.rfind("smtpd_", 0) == 0 && contains(param, "restrictions")) {
      auto items = splitPostfixList(value);
      for (std::size_t i = 0; i + 1 < items.size(); ++i) {
        if (items[i] == "check_policy_service") {
          refs.emplace_back(policyEndpointText(items[i + 1]), &config.policy);
        }
      }
    }
    const std::string program = programOf(param);
    if (program.empty() || !chrooted(live.services, program)) {
      continue;
    }
    for (const auto& [text, daemon] : refs) {
      const std::string t = trim(text);
      if (t.rfind("unix:/", 0) != 0 || !daemon->present) {
        continue;
      }
      auto ep = parseReference(t, queueDirectory);
      if (!ep || !reachesAny(*ep, *daemon) || !reportedChroot.insert(param + t).second) {
        continue;
      }
      const std::string base = t.substr(t.rfind('/') + 1);
      traps.push_back({"unix-socket-outside-chroot",
                       param + ": " + t + " is an absolute path, but " + program +
                           " runs chrooted in " + queueDirectory + " (master.cf) and looks for " +
                           queueDirectory + t.substr(5),
                       "listen on unix:" + queueDirectory + "/private/" + base + " in " +
                           config.file + " and write unix:private/" + base + " in " + param +
                           " (relative to the queue directory)"});
    }
  }

  // 6. anvil limits that exempt mynetworks (every client of an outbound relay).
  const std::string exceptions = get(params, "smtpd_client_event_limit_exceptions");
  if (!exceptions.empty()) {
    for (const char* limit :
         {"smtpd_client_connection_rate_limit", "smtpd_client_message_rate_limit",
          "smtpd_client_recipient_rate_limit", "smtpd_client_new_tls_session_rate_limit",
          "smtpd_client_auth_rate_limit"}) {
      const std::string v = get(params, limit);
      if (!v.empty() && v != "0") {
        traps.push_back({"anvil-exempts-mynetworks",
                         std::string(limit) + " = " + v +
                             " never applies to the clients listed in "
                             "smtpd_client_event_limit_exceptions (" +
                             exceptions +
                             "), which by default is $mynetworks: every client of "
                             "an outbound relay",
                         "postconf -e 'smtpd_client_event_limit_exceptions =' or limit with "
                         "relaykit-policyd (limits: in " +
                             config.file + ")"});
        break;
      }
    }
  }

  // 7. sender_canonical_maps and the milter's rewrite_sender doing the same work.
  if (milterWired && !in.rewriteSenderTable.empty()) {
    for (const char* param : {"sender_canonical_maps", "canonical_maps"}) {
      if (!get(params, param).empty()) {
        traps.push_back({"sender-rewritten-twice",
                         std::string(param) + " and relaykit-milter's rewrite_sender (table " +
                             in.rewriteSenderTable +
                             ") both rewrite the envelope sender; on the sendmail path cleanup "
                             "applies " +
                             param + " first, so the milter sees an already rewritten sender",
                         "keep one: postconf -e '" + std::string(param) +
                             " =' (the milter rewrites before the queue on both paths), or "
                             "remove rewrite_sender from " +
                             config.file});
      }
    }
  }
  return traps;
}

}  // namespace relaykit
