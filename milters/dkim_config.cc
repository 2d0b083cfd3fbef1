// SPDX-License-Identifier: Apache-2.0
// dkim_config.cc: the `milter: dkim:` section and the signing decision (see dkim_config.h).
#include "milters/dkim_config.h"

#include <algorithm>

#include "milters/dkim_verify.h"

namespace relaykit::dkim {
namespace {

const char* const kDefaultNetworks[] = {"127.0.0.0/8",   "::1/128",        "10.0.0.0/8",
                                        "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"};

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// A DNS name as DKIM's d= and s= need it: labels of letters, digits, '-' and '_' (selectors),
// separated by dots, no empty label.
bool validDnsName(std::string_view name) {
  if (name.empty() || name.size() > 253) {
    return false;
  }
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) {
        return false;
      }
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok || ++label > 63) {
      return false;
    }
  }
  return label > 0;
}

bool validHeaderName(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return c > 32 && c < 127 && c != ':' && c != ';'; });
}

void parseSignPolicy(const YamlReader& r, const YAML::Node& node, DkimConfig* out) {
  std::optional<std::vector<std::string>> words = r.asStringList(node);
  if (!words) {
    return;
  }
  out->signAll = out->signAuthenticated = out->signNetworks = out->signNonSmtpd = false;
  for (const std::string& w : *words) {
    if (w == "all") {
      out->signAll = true;
    } else if (w == "authenticated") {
      out->signAuthenticated = true;
    } else if (w == "networks") {
      out->signNetworks = true;
    } else if (w == "non_smtpd") {
      out->signNonSmtpd = true;
    } else {
      r.error(node, "unknown sign: value \"" + w +
                        "\" (allowed: all, or any of authenticated, networks, non_smtpd)");
    }
  }
  if (out->signAll && words->size() > 1) {
    r.error(node, "sign: all already covers every message; list nothing else with it");
  }
  if (words->empty()) {
    r.error(node, "sign: needs a value (all, or a list of authenticated, networks, non_smtpd)");
  }
}

void parseKey(const YamlReader& r, const YAML::Node& node, DkimConfig* out) {
  if (!r.checkMap(node, "dkim key",
                  {"domain", "signing_domain", "selector", "key_file", "algorithm"}) &&
      !node.IsMap()) {
    return;
  }
  KeyEntry entry;
  entry.where = r.where(node);
  bool ok = true;
  for (const char* required : {"domain", "selector", "key_file"}) {
    if (!YamlReader::child(node, required)) {
      r.error(node, std::string("dkim key needs `") + required + ":`");
      ok = false;
    }
  }
  std::string domain;
  ok = r.getString(node, "domain", &domain) && ok;
  ok = r.getString(node, "selector", &entry.selector) && ok;
  ok = r.getString(node, "key_file", &entry.keyFile) && ok;
  std::string signingDomain;
  ok = r.getString(node, "signing_domain", &signingDomain) && ok;
  std::string algorithm;
  ok = r.getString(node, "algorithm", &algorithm) && ok;
  if (!ok) {
    return;
  }
  entry.pattern = lowerAscii(domain);
  if (entry.pattern != "*") {
    std::string_view bare = entry.pattern;
    if (!bare.empty() && bare.front() == '.') {
      bare.remove_prefix(1);
    }
    if (!validDnsName(bare)) {
      r.error(YamlReader::child(node, "domain"),
              "domain must be a domain name, \".domain\" (its subdomains) or \"*\", not \"" +
                  domain + "\"");
      ok = false;
    }
    entry.domain = std::string(bare);
  }
  if (!signingDomain.empty()) {
    if (!validDnsName(signingDomain)) {
      r.error(YamlReader::child(node, "signing_domain"),
              "signing_domain must be a domain name, not \"" + signingDomain + "\"");
      ok = false;
    }
    entry.domain = lowerAscii(signingDomain);
  } else if (entry.pattern == "*") {
    r.error(node, "domain \"*\" needs `signing_domain:` (the d= to sign with)");
    ok = false;
  }
  if (!validDnsName(entry.selector)) {
    r.error(YamlReader::child(node, "selector"),
            "selector must be a DNS label sequence, not \"" + entry.selector + "\"");
    ok = false;
  }
  std::optional<DkimAlgorithm> wanted;
  if (!algorithm.empty()) {
    StatusOr<DkimAlgorithm> a = parseAlgorithm(algorithm);
    if (!a) {
      r.error(YamlReader::child(node, "algorithm"), a.status().message());
      ok = false;
    } else {
      wanted = *a;
    }
  }
  StatusOr<std::shared_ptr<const DkimKey>> key = DkimKey::loadPrivateFile(entry.keyFile);
  if (!key) {
    r.error(YamlReader::child(node, "key_file"),
            "key_file " + entry.keyFile + ": " + key.status().message());
    return;
  }
  if (wanted && (*key)->algorithm() != *wanted) {
    r.error(YamlReader::child(node, "algorithm"), "key_file " + entry.keyFile + " holds an " +
                                                      keyTypeName((*key)->algorithm()) +
                                                      " key, not " + algorithmName(*wanted));
    ok = false;
  }
  entry.key = *key;
  if (ok) {
    out->keys.push_back(std::move(entry));
  }
}

}  // namespace

bool DkimConfig::selects(const SignContext& context) const {
  if (signAll) {
    return true;
  }
  if (signAuthenticated && context.authenticated) {
    return true;
  }
  if (signNonSmtpd && context.nonSmtpd) {
    return true;
  }
  if (signNetworks && context.client) {
    for (const IpNetwork& n : networks) {
      if (n.contains(*context.client)) {
        return true;
      }
    }
  }
  return false;
}

std::vector<const KeyEntry*> DkimConfig::keysFor(std::string_view domainIn) const {
  std::string domain = lowerAscii(domainIn);
  while (!domain.empty() && domain.back() == '.') {
    domain.pop_back();
  }
  auto collect = [this](std::string_view pattern) {
    std::vector<const KeyEntry*> out;
    for (const KeyEntry& k : keys) {
      if (k.pattern == pattern) {
        out.push_back(&k);
      }
    }
    return out;
  };
  std::vector<const KeyEntry*> found;
  if (!domain.empty()) {
    found = collect(domain);
    // Parents, closest first: "a.b.corp.com" tries ".b.corp.com", ".corp.com", ".com".
    size_t dot = domain.find('.');
    while (found.empty() && dot != std::string::npos) {
      found = collect(std::string_view(domain).substr(dot));
      dot = domain.find('.', dot + 1);
    }
  }
  if (found.empty()) {
    found = collect("*");
  }
  return found;
}

std::shared_ptr<const DkimConfig> parseDkimConfig(const YamlReader& r, const YAML::Node& node) {
  Diagnostics* diags = r.diags();
  size_t errorsBefore = 0;
  for (const Diagnostic& d : diags->all()) {
    errorsBefore += d.severity == Diagnostic::Severity::kError ? 1 : 0;
  }
  auto out = std::make_shared<DkimConfig>();
  for (const char* n : kDefaultNetworks) {
    out->networks.push_back(*IpNetwork::parse(n));
  }
  out->headers = defaultSignedHeaders();
  out->oversign = {"From"};
  if (!r.checkMap(node, "dkim",
                  {"sign", "networks", "match", "canonicalization", "headers", "oversign", "expire",
                   "existing", "keys"}) &&
      !node.IsMap()) {
    return nullptr;
  }
  if (YAML::Node sign = YamlReader::child(node, "sign")) {
    parseSignPolicy(r, sign, out.get());
  }
  if (YamlReader::child(node, "networks")) {
    out->networks.clear();
    r.getNetworks(node, "networks", &out->networks);
  }
  std::string match = "from";
  if (r.getString(node, "match", &match)) {
    if (match == "from") {
      out->matchBy = MatchBy::kFromHeader;
    } else if (match == "sender") {
      out->matchBy = MatchBy::kEnvelopeSender;
    } else {
      r.error(YamlReader::child(node, "match"),
              "match must be from (the From header) or sender (the envelope sender), not \"" +
                  match + "\"");
    }
  }
  std::string canon;
  if (r.getString(node, "canonicalization", &canon) && !canon.empty()) {
    StatusOr<Canonicalization> c = parseCanonicalization(canon);
    if (!c) {
      r.error(YamlReader::child(node, "canonicalization"), c.status().message());
    } else {
      out->canon = *c;
    }
  }
  for (const char* key : {"headers", "oversign"}) {
    std::vector<std::string>* list = std::string(key) == "headers" ? &out->headers : &out->oversign;
    if (!r.getStringList(node, key, list)) {
      continue;
    }
    for (const std::string& h : *list) {
      if (!validHeaderName(h)) {
        r.error(YamlReader::child(node, key), "bad header name \"" + h + "\"");
      } else if (lowerAscii(h) == "dkim-signature") {
        r.error(YamlReader::child(node, key), "DKIM-Signature cannot be signed by relaykit");
      }
    }
  }
  bool signsFrom = std::any_of(out->headers.begin(), out->headers.end(),
                               [](const std::string& h) { return lowerAscii(h) == "from"; });
  if (!signsFrom) {
    r.error(YamlReader::child(node, "headers"), "headers must include From (RFC 6376 5.4)");
  }
  if (YAML::Node e = YamlReader::child(node, "expire")) {
    if (std::optional<std::chrono::milliseconds> d = r.asDuration(e)) {
      out->expirySeconds = std::chrono::duration_cast<std::chrono::seconds>(*d).count();
      if (out->expirySeconds < 60) {
        r.error(e, "expire must be at least 1m (receivers may see the mail hours later)");
      }
    }
  }
  std::string existing = "keep";
  if (r.getString(node, "existing", &existing)) {
    if (existing == "keep") {
      out->existing = ExistingSignatures::kKeep;
    } else if (existing == "replace") {
      out->existing = ExistingSignatures::kReplace;
    } else {
      r.error(YamlReader::child(node, "existing"),
              "existing must be keep or replace, not \"" + existing + "\"");
    }
  }
  YAML::Node keys = YamlReader::child(node, "keys");
  if (!keys) {
    r.error(node, "dkim needs `keys:` (a list of {domain, selector, key_file})");
  } else if (!keys.IsSequence()) {
    r.error(keys, "keys must be a list, not " + YamlReader::describe(keys));
  } else {
    for (const auto& item : keys) {
      parseKey(r, item, out.get());
    }
  }
  size_t errorsAfter = 0;
  for (const Diagnostic& d : diags->all()) {
    errorsAfter += d.severity == Diagnostic::Severity::kError ? 1 : 0;
  }
  if (errorsAfter > errorsBefore) {
    return nullptr;
  }
  return out;
}

const char* planOutcomeName(PlanOutcome outcome) {
  switch (outcome) {
    case PlanOutcome::kSign:
      return "signed";
    case PlanOutcome::kNotSelected:
      return "not_selected";
    case PlanOutcome::kNoDomain:
      return "no_domain";
    case PlanOutcome::kNoKey:
      return "no_key";
  }
  return "unknown";
}

SignPlan planSignatures(const DkimConfig& config, const SignContext& context,
                        std::string_view domain, const std::vector<DkimHeader>& headers,
                        std::int64_t now) {
  SignPlan plan;
  plan.domain = lowerAscii(domain);
  if (!config.selects(context)) {
    plan.outcome = PlanOutcome::kNotSelected;
    return plan;
  }
  if (plan.domain.empty()) {
    plan.outcome = PlanOutcome::kNoDomain;
    return plan;
  }
  std::vector<const KeyEntry*> entries = config.keysFor(plan.domain);
  if (entries.empty()) {
    plan.outcome = PlanOutcome::kNoKey;
    return plan;
  }
  plan.outcome = PlanOutcome::kSign;
  for (const KeyEntry* e : entries) {
    SignatureSpec spec;
    spec.key = e->key;
    spec.domain = e->domain;
    spec.selector = e->selector;
    spec.canon = config.canon;
    spec.headers = config.headers;
    spec.oversign = config.oversign;
    spec.timestamp = now;
    spec.expirySeconds = config.expirySeconds;
    plan.specs.push_back(std::move(spec));
  }
  if (config.existing == ExistingSignatures::kReplace) {
    for (size_t i = 0; i < headers.size(); ++i) {
      if (lowerAscii(headers[i].name) != "dkim-signature") {
        continue;
      }
      StatusOr<ParsedSignature> sig = parseSignature(headers[i].value);
      if (!sig) {
        continue;  // not a signature we can read: not ours to judge
      }
      std::string d = lowerAscii(sig->domain);
      bool ours = std::any_of(plan.specs.begin(), plan.specs.end(),
                              [&](const SignatureSpec& s) { return s.domain == d; });
      if (ours) {
        plan.removeIndexes.push_back(i);
      }
    }
  }
  return plan;
}

}  // namespace relaykit::dkim
