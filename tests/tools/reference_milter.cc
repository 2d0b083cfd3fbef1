// SPDX-License-Identifier: Apache-2.0
// reference_milter.cc: a small milter on libmilter's public API (smfi_*), the reference side of
// tests/e2e/test_milter_reference.py. It makes, with libmilter's own engine, the edits that
// relaykit-milter makes with this configuration:
//   header_checks: /^X-Originating-IP:/ IGNORE  and  /^X-Tag:/ PREPEND X-Seen: yes
//   rewrite_from (From headers) and rewrite_sender through an exact address table:
//     root@relay.corp.local -> noreply@corp.com, cron@relay.corp.local -> cron@corp.com,
//     nagios@relay.corp.local -> alerts@corp.com
// Addresses are replaced as plain text ("<addr>" or the whole value), which equals relaykit's
// address-aware rewrite on the test corpus (simple mailboxes only). Edits are made from the last
// header to the first, so no index shifts; insheader positions count Postfix's own Received:.
//   reference_milter SOCKET      (libmilter syntax: unix:/path or inet:PORT@127.0.0.1)
// A test tool: the only program in the tree linked with libmilter.
#include <libmilter/mfapi.h>
#include <strings.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

const std::map<std::string, std::string> kTable = {
    {"root@relay.corp.local", "noreply@corp.com"},
    {"cron@relay.corp.local", "cron@corp.com"},
    {"nagios@relay.corp.local", "alerts@corp.com"},
};

struct Header {
  std::string name;
  std::string value;
};

struct Message {
  std::string sender;
  std::string args;  // ESMTP arguments of MAIL FROM, space-separated
  std::vector<Header> headers;
};

Message* message(SMFICTX* ctx) {
  return static_cast<Message*>(smfi_getpriv(ctx));
}

void reset(SMFICTX* ctx) {
  delete message(ctx);
  smfi_setpriv(ctx, nullptr);
}

std::string stripAngles(std::string s) {
  if (s.size() >= 2 && s.front() == '<' && s.back() == '>') {
    s = s.substr(1, s.size() - 2);
  }
  return s;
}

// The From value with its address replaced, or "" when the table has none for it.
std::string rewriteFrom(const std::string& value) {
  for (const auto& [from, to] : kTable) {
    std::string angled = "<" + from + ">";
    std::size_t at = value.find(angled);
    if (at != std::string::npos) {
      return value.substr(0, at) + "<" + to + ">" + value.substr(at + angled.size());
    }
    if (value == " " + from) {
      return " " + to;
    }
  }
  return "";
}

sfsistat onNegotiate(SMFICTX*, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                     unsigned long* pf0, unsigned long* pf1, unsigned long* pf2,
                     unsigned long* pf3) {
  *pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM);
  *pf1 = f1 & (SMFIP_HDR_LEADSPC | SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOCONNECT |
               SMFIP_NOHELO | SMFIP_NORCPT | SMFIP_NOEOH);
  *pf2 = 0;
  *pf3 = 0;
  return SMFIS_CONTINUE;
}

sfsistat onMail(SMFICTX* ctx, char** argv) {
  reset(ctx);
  auto* m = new Message();
  m->sender = stripAngles(argv[0] ? argv[0] : "");
  for (int i = 1; argv[i] != nullptr; ++i) {
    m->args += (m->args.empty() ? "" : " ") + std::string(argv[i]);
  }
  smfi_setpriv(ctx, m);
  return SMFIS_CONTINUE;
}

sfsistat onHeader(SMFICTX* ctx, char* name, char* value) {
  if (Message* m = message(ctx)) {
    m->headers.push_back({name, value});
  }
  return SMFIS_CONTINUE;
}

sfsistat onEom(SMFICTX* ctx) {
  Message* m = message(ctx);
  if (m == nullptr) {
    return SMFIS_CONTINUE;
  }
  const std::vector<Header>& hs = m->headers;
  for (std::size_t i = hs.size(); i-- > 0;) {
    int nth = 0;
    for (std::size_t j = 0; j <= i; ++j) {
      nth += strcasecmp(hs[j].name.c_str(), hs[i].name.c_str()) == 0 ? 1 : 0;
    }
    const char* name = hs[i].name.c_str();
    if (strcasecmp(name, "X-Originating-IP") == 0) {
      smfi_chgheader(ctx, const_cast<char*>(name), nth, nullptr);
    } else if (strcasecmp(name, "From") == 0) {
      std::string fresh = rewriteFrom(hs[i].value);
      if (!fresh.empty()) {
        smfi_chgheader(ctx, const_cast<char*>(name), nth, const_cast<char*>(fresh.c_str()));
      }
    } else if (strcasecmp(name, "X-Tag") == 0) {
      smfi_insheader(ctx, static_cast<int>(i) + 1, const_cast<char*>("X-Seen"),
                     const_cast<char*>(" yes"));
    }
  }
  auto it = kTable.find(m->sender);
  if (it != kTable.end()) {
    std::string sender = "<" + it->second + ">";
    smfi_chgfrom(ctx, const_cast<char*>(sender.c_str()),
                 m->args.empty() ? nullptr : const_cast<char*>(m->args.c_str()));
  }
  reset(ctx);
  return SMFIS_CONTINUE;
}

sfsistat onAbort(SMFICTX* ctx) {
  reset(ctx);
  return SMFIS_CONTINUE;
}

sfsistat onClose(SMFICTX* ctx) {
  reset(ctx);
  return SMFIS_CONTINUE;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: reference_milter SOCKET\n");
    return 2;
  }
  smfiDesc desc = {};
  desc.xxfi_name = const_cast<char*>("reference");
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM;
  desc.xxfi_envfrom = onMail;
  desc.xxfi_header = onHeader;
  desc.xxfi_eom = onEom;
  desc.xxfi_abort = onAbort;
  desc.xxfi_close = onClose;
  desc.xxfi_negotiate = onNegotiate;
  if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS ||
      smfi_opensocket(true) != MI_SUCCESS) {
    std::fprintf(stderr, "reference_milter: cannot listen on %s\n", argv[1]);
    return 1;
  }
  return smfi_main() == MI_SUCCESS ? 0 : 1;
}
