// SPDX-License-Identifier: Apache-2.0
// message_rewriter.cc: header rules + rewrite_from + rewrite_sender for one message.
#include "milters/message_rewriter.h"

#include <algorithm>
#include <array>
#include <iterator>
#include <map>
#include <string_view>
#include <unordered_map>

#include "common/address.h"
#include "common/concat.h"
#include "milters/address_list.h"

namespace relaykit::milter {
namespace {

// One lookup through a table with generic(5)/canonical(5) result handling, as Postfix's
// mail_addr_map() does it: an "@domain" result keeps the original localpart; then the result
// is an address list (mail_addr_crunch()): each address's addr-spec (display names, comments
// and routes dropped) rewritten in the local context (a bare localpart gets @myorigin, one
// trailing dot goes), of which cleanup(8) and smtp(8) use the first. A result that is exactly
// "<>" is the empty address (a null sender, `""` in a header); elsewhere "<>" is no address, as
// for Postfix's parser. A result holding no address is a temporary error, as for Postfix
// ("returns non-address result"). A result of several addresses adds a note to `notes`, as
// Postfix warns of a multi-valued entry.
LookupResult mapOnce(const Table& table, const std::string& address,
                     std::vector<std::string>* notes) {
  LookupResult r = table.lookup(address);
  if (!r.isFound()) {
    return r;
  }
  std::string value = r.value();
  if (!value.empty() && value[0] == '@') {
    size_t at = address.rfind('@');
    value.insert(0, at == std::string::npos ? address : address.substr(0, at));
  }
  if (value == "<>") {
    return LookupResult::found("\"\"");  // the empty address, in external form
  }
  StatusOr<std::vector<Mailbox>> boxes = parseAddressList(value);
  if (!boxes || boxes->empty()) {
    return LookupResult::tempError("table " + table.name() + " returns non-address result \"" +
                                   value + "\" for <" + address + ">");
  }
  std::string first = rewriteLocalContext(boxes->front().address(), table.origin());
  if (boxes->size() > 1) {
    notes->push_back("table " + table.name() + " returns " + std::to_string(boxes->size()) +
                     " addresses for <" + address + ">: the first, <" + first +
                     ">, is used, as Postfix does");
  }
  return LookupResult::found(std::move(first));
}

class AddressMapper {
 public:
  // `memo`: the snapshot's answers for this table and rounds (may be null: this mapper's own).
  AddressMapper(const Table& table, int rounds, AddressMemo* memo)
      : table_(table), rounds_(rounds), memo_(memo != nullptr ? memo : &own_) {}

  // Found(new address) when it changes, NotFound when it stays, or the table's error. Notes of
  // the lookups (a multi-valued result) go to `notes`, at the first mapping of an address only
  // when the memo remembers it.
  LookupResult map(const std::string& address, std::vector<std::string>* notes) {
    if (std::optional<LookupResult> known = memo_->find(address)) {
      return std::move(*known);
    }
    std::string current = address;
    bool changed = false;
    for (int round = 0; round < rounds_; ++round) {
      LookupResult r = mapOnce(table_, current, notes);
      if (r.isError()) {
        return r;
      }
      if (!r.isFound() || r.value() == current) {
        break;
      }
      current = r.value();
      changed = true;
    }
    LookupResult result = changed && current != address ? LookupResult::found(std::move(current))
                                                        : LookupResult::notFound();
    memo_->remember(address, result);
    return result;
  }

 private:
  const Table& table_;
  int rounds_;
  AddressMemo own_;
  AddressMemo* memo_;
};

// Postfix's message_drop_headers (default): cleanup(8) removes these primary headers, also one
// that a header_checks REPLACE produces.
constexpr std::string_view kDroppedHeaders[] = {"bcc", "content-length", "resent-bcc",
                                                "return-path"};
// MIME headers (header_opts.c HDR_OPT_MIME): cleanup copies these, and whatever REPLACE turns them
// into, without looking at the result's name.
constexpr std::string_view kMimeHeaders[] = {"content-description", "content-disposition",
                                             "content-id",          "content-transfer-encoding",
                                             "content-type",        "mime-version"};

// A header name as header_opts_find() looks it up: lower case, trailing blanks removed.
std::string headerKey(std::string_view name) {
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) {
    name.remove_suffix(1);
  }
  return toLowerAscii(name);
}

bool listedKey(const std::string_view* begin, const std::string_view* end, std::string_view name) {
  return std::find(begin, end, headerKey(name)) != end;
}

// True when cleanup(8) drops the result of REPLACE on header `original`: the result is a
// message_drop_headers header and the original is not a MIME header.
bool replacementDropped(const std::string& original, const std::string& replacement) {
  return listedKey(std::begin(kDroppedHeaders), std::end(kDroppedHeaders), replacement) &&
         !listedKey(std::begin(kMimeHeaders), std::end(kMimeHeaders), original);
}

}  // namespace

bool isDroppedHeader(std::string_view name) {
  return listedKey(std::begin(kDroppedHeaders), std::end(kDroppedHeaders), name);
}

namespace {

HeaderField splitHeaderLine(const std::string& line) {
  size_t colon = line.find(':');
  return HeaderField{line.substr(0, colon), line.substr(colon + 1)};
}

std::string oneLine(const std::string& s) {
  std::string out = unfold(s);
  for (char& c : out) {
    if (c == '\r' || c == '\n') {
      c = ' ';
    }
  }
  return out;
}

std::string envelopeSummary(const Envelope& env) {
  std::string out = "from=<" + env.sender + ">";
  if (!env.recipients.empty()) {
    out += " to=<" + env.recipients.front() + ">";
  }
  return out;
}

bool listed(const std::vector<std::string>& names, const std::string& name) {
  for (const std::string& n : names) {
    if (equalsIgnoreCase(n, name)) {
      return true;
    }
  }
  return false;
}

// Rewrites the addresses of one header in place. Returns false on a table error. `memo` (may be
// null) holds the rewrites of header values seen before. `owner` (may be null): the slot whose
// current header `header` is, told before a change (HeaderSlot::keepOriginal).
bool rewriteAddresses(AddressMapper* mapper, HeaderField* header, RewriteOutcome* out,
                      HeaderRewriteMemo* memo, HeaderSlot* owner = nullptr) {
  const auto keepOriginal = [owner] {
    if (owner != nullptr) {
      owner->keepOriginal();
    }
  };
  if (memo != nullptr && memo->visit(header->value, [&](const HeaderRewrite& known) {
        if (known.changed) {
          keepOriginal();  // the key was read: it may change now
          header->value.assign(known.value);
          out->changes.push_back(concat({"header ", header->name, " ", known.summary}));
        }
      })) {
    return true;
  }
  StatusOr<std::vector<Mailbox>> boxes = parseAddressList(header->value);
  if (!boxes) {
    out->notes.push_back("header " + header->name + " left unchanged: cannot parse \"" +
                         oneLine(header->value) + "\": " + boxes.status().message());
    return true;
  }
  std::vector<AddressReplacement> replacements;
  std::string summary;
  for (const Mailbox& box : *boxes) {
    std::string address = box.address();
    LookupResult r = mapper->map(address, &out->notes);
    if (r.isError()) {
      out->error = true;
      out->errorReason = "address lookup for <" + address + "> failed: " + r.reason();
      return false;
    }
    if (r.isFound()) {
      // From the source route on (Postfix drops it), keeping comments from inside the addr-spec.
      replacements.push_back({box.routeBegin, box.specEnd, replacementText(box, r.value())});
      if (!summary.empty()) {
        summary += ", ";
      }
      summary += "<" + address + "> -> <" + r.value() + ">";
    }
  }
  HeaderRewrite rewrite;
  if (!replacements.empty()) {
    rewrite.changed = true;
    rewrite.value = rewriteAddressList(header->value, *boxes, std::move(replacements));
    rewrite.summary = std::move(summary);
  }
  if (memo != nullptr) {
    memo->remember(header->value, rewrite);
  }
  if (rewrite.changed) {
    keepOriginal();
    header->value = std::move(rewrite.value);
    out->changes.push_back(concat({"header ", header->name, " ", rewrite.summary}));
  }
  return true;
}

}  // namespace

RewriteOutcome rewriteMessage(const MilterConfig& config, const Envelope& envelope,
                              std::vector<HeaderField> headers, bool wantHeaders) {
  RewriteOutcome out;
  RewriteScratch scratch;
  rewriteMessage(config, envelope, &headers, wantHeaders, &scratch, &out);
  return out;
}

void RewriteOutcome::clear() {
  plan.clear();
  changes.clear();
  notes.clear();
  headers.clear();
  error = false;
  errorReason.clear();
}

void rewriteMessage(const MilterConfig& config, const Envelope& envelope,
                    std::vector<HeaderField>* received, bool wantHeaders, RewriteScratch* scratch,
                    RewriteOutcome* outcome) {
  RewriteOutcome& out = *outcome;
  out.clear();
  if (config.senderTable && !envelope.sender.empty()) {
    out.changes.reserve(2);  // a From header and the sender, the sender's inserted in front
  }
  std::vector<HeaderSlot>& slots = scratch->slots;
  slots.clear();
  slots.reserve(received->size());
  const HeaderRuleSet* rules = config.rules.get();
  for (HeaderField& h : *received) {
    HeaderSlot& slot = slots.emplace_back();  // filled in place, not moved in (room reserved)
    std::string problem;
    std::optional<RuleDecision> decision =
        rules ? rules->decide(h, envelope, &problem) : std::nullopt;
    if (!problem.empty()) {
      out.notes.push_back("header " + h.name + ": " + problem);
    }
    // Held once, as it came, until something changes it: then the original moves aside.
    slot.current = std::move(h);
    slot.keptAsIs = true;
    if (!decision) {
      continue;
    }
    const Action& a = decision->action;
    const HeaderField& seen = *slot.current;
    switch (a.kind) {
      case ActionKind::kIgnore:
        out.changes.push_back("header " + seen.name + " removed");
        slot.keepOriginal();
        slot.current.reset();
        break;
      case ActionKind::kReplace:
        slot.keepOriginal();
        slot.current = splitHeaderLine(a.text);
        if (replacementDropped(slot.original.name, slot.current->name)) {
          slot.current.reset();  // as cleanup(8) does after a native REPLACE
          out.changes.push_back("header " + slot.original.name + " removed");
        } else {
          out.changes.push_back("header " + slot.original.name + " replaced");
        }
        break;
      case ActionKind::kPrepend: {
        HeaderField added = splitHeaderLine(a.text);
        out.changes.push_back("header " + added.name + " prepended");
        slot.before.push_back(std::move(added));
        break;
      }
      case ActionKind::kWarn:
      case ActionKind::kInfo:
        out.notes.push_back(std::string(a.kind == ActionKind::kWarn ? "warning" : "info") +
                            ": header " + oneLine(seen.name + ":" + seen.value) + "; " +
                            envelopeSummary(envelope) + ": " + a.text);
        break;
      case ActionKind::kDunno:
        break;
    }
  }

  if (config.fromTable) {
    AddressMapper mapper(*config.fromTable, 1, config.fromMemo.get());
    for (HeaderSlot& slot : slots) {
      for (HeaderField& b : slot.before) {
        if (listed(config.fromHeaders, b.name) &&
            !rewriteAddresses(&mapper, &b, &out, config.fromHeaderMemo.get())) {
          return;
        }
      }
      if (slot.current && listed(config.fromHeaders, slot.current->name) &&
          !rewriteAddresses(&mapper, &*slot.current, &out, config.fromHeaderMemo.get(), &slot)) {
        return;
      }
    }
  }

  if (wantHeaders) {
    for (const HeaderSlot& slot : slots) {
      for (const HeaderField& b : slot.before) {
        out.headers.push_back(b);
      }
      if (slot.current) {
        out.headers.push_back(*slot.current);
      }
    }
  }
  buildEditPlan(&slots, &out.plan);  // the slots are done with: values move

  if (config.senderTable && !envelope.sender.empty()) {
    // Looked up as canonical(5) sees it after cleanup's local-context rewrite; when nothing
    // matches, the sender is left to Postfix.
    // The whole mapping, local context included, depends on the sender alone: remembered by
    // the sender as it came (senderMemo), not by the rewritten form.
    auto apply = [&](const LookupResult& r) {
      if (r.isError()) {
        out.error = true;
        out.errorReason = "sender lookup for <" + envelope.sender + "> failed: " + r.reason();
        out.plan.clear();
        return;
      }
      if (!r.isFound()) {
        return;
      }
      std::string args;
      for (const std::string& a : envelope.senderArgs) {
        // Postfix keeps only RET and ENVID from SMFI_CHGFROM and warns about any other; the
        // rest (SIZE, BODY, SMTPUTF8) it keeps from the original MAIL FROM anyway.
        std::string key = toLowerAscii(a.substr(0, a.find('=')));
        if (key != "ret" && key != "envid") {
          continue;
        }
        if (!args.empty()) {
          args += ' ';
        }
        args += a;
      }
      // The empty address (a "<>" result) is the null sender, as cleanup makes it.
      const std::string& sender = r.value() == "\"\"" ? std::string() : r.value();
      out.plan.push_back({EditOp::Kind::kChangeFrom, "", 0, sender, std::move(args)});
      out.changes.insert(out.changes.begin(),
                         concat({"from=<", envelope.sender, "> -> <", sender, ">"}));
    };
    if (!config.senderMemo || !config.senderMemo->visit(envelope.sender, apply)) {
      const PostfixSettings* postfix = config.base ? config.base->postfix.get() : nullptr;
      AddressMapper mapper(*config.senderTable, kMaxCanonicalRounds, nullptr);
      const LookupResult r = mapper.map(
          rewriteLocalContext(envelope.sender, postfix ? postfix->origin() : std::string_view()),
          &out.notes);
      if (config.senderMemo) {
        config.senderMemo->remember(envelope.sender, r);
      }
      apply(r);
    }
  }
}

void formatRewriteLog(const std::string& queueId, const std::vector<std::string>& changes,
                      std::string* line) {
  line->clear();
  if (changes.empty()) {
    return;
  }
  // Identical changes (two X-Originating-IP headers removed) are written once with a count, at
  // the place of the first. times[i]: how often changes[i] occurs when it is the first of its
  // text, 0 for a repeat. A few changes are compared with each other; more are counted in a hash
  // map (linear in the changes either way).
  constexpr std::size_t kComparedChanges = 8;
  std::array<std::size_t, kComparedChanges> few;
  std::vector<std::size_t> many;
  std::size_t* times = few.data();
  if (changes.size() <= kComparedChanges) {
    std::fill_n(times, changes.size(), 1);
    for (std::size_t i = 1; i < changes.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (times[j] != 0 && changes[j] == changes[i]) {
          ++times[j];
          times[i] = 0;
          break;
        }
      }
    }
  } else {
    many.assign(changes.size(), 1);
    times = many.data();
    std::unordered_map<std::string_view, std::size_t> first;
    first.reserve(changes.size());
    for (std::size_t i = 0; i < changes.size(); ++i) {
      auto [it, added] = first.emplace(changes[i], i);
      if (!added) {
        ++times[it->second];
        times[i] = 0;
      }
    }
  }
  std::size_t length = queueId.size() + 8;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    length += times[i] != 0 ? changes[i].size() + 24 : 0;
  }
  line->reserve(length);
  *line += queueId.empty() ? std::string_view("NOQUEUE") : std::string_view(queueId);
  *line += ':';
  bool first = true;
  for (std::size_t i = 0; i < changes.size(); ++i) {
    if (times[i] == 0) {
      continue;
    }
    *line += first ? " " : ", ";
    first = false;
    *line += changes[i];
    if (times[i] > 1) {
      *line += " (x";
      *line += std::to_string(times[i]);
      *line += ')';
    }
  }
}

std::string formatRewriteLog(const std::string& queueId, const std::vector<std::string>& changes) {
  std::string line;
  formatRewriteLog(queueId, changes, &line);
  return line;
}

}  // namespace relaykit::milter
