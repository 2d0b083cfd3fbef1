// SPDX-License-Identifier: Apache-2.0
// edit_plan.cc: header slots to ordered milter operations, and a Postfix-faithful simulator.
#include "milters/edit_plan.h"

#include <algorithm>
#include <array>
#include <unordered_map>
#include <utility>

#include "common/address.h"

namespace relaykit::milter {
namespace {

std::string normalizeNewlines(const std::string& value) {
  if (value.find('\r') == std::string::npos) {
    return value;
  }
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
      continue;  // folded values use LF + whitespace towards the MTA
    }
    out.push_back(value[i]);
  }
  return out;
}

// The same for a value the caller gives up: moved, not copied, when it has no CR.
std::string normalizeNewlines(std::string&& value) {
  if (value.find('\r') == std::string::npos) {
    return std::move(value);
  }
  return normalizeNewlines(static_cast<const std::string&>(value));
}

// Names of changed headers above which the occurrences are counted with a hash map.
constexpr std::size_t kMaxScannedNames = 4;

bool slotChanged(const HeaderSlot& slot) {
  return !slot.keptAsIs && (!slot.current || slot.current->name != slot.original.name ||
                            slot.current->value != slot.original.value);
}

// The 1-based index of each slot among the headers of its name (case-insensitive), for the
// operations that refer to a slot by it, asked from the last slot to the first. A message
// changes few names (From, a removed Received): the headers of those are counted in place and
// counted down as the slots are asked for (no storage per slot); more names, and every slot's
// index is counted in a hash map. Linear in the headers either way.
class SameNameIndex {
 public:
  explicit SameNameIndex(const std::vector<HeaderSlot>& slots) : slots_(slots) {
    for (const HeaderSlot& slot : slots) {
      if (!slotChanged(slot)) {
        continue;
      }
      const std::string_view name = slot.originalHeader().name;
      if (std::none_of(names_.begin(), names_.begin() + static_cast<std::ptrdiff_t>(nameCount_),
                       [&](std::string_view n) { return equalsIgnoreCase(n, name); })) {
        if (nameCount_ == kMaxScannedNames) {
          countAll();
          return;
        }
        names_[nameCount_++] = name;
      }
    }
    for (const HeaderSlot& slot : slots) {
      const int k = nameOf(slot);
      if (k >= 0) {
        ++remaining_[static_cast<std::size_t>(k)];
      }
    }
  }

  // Slot n's index (0 for a slot whose name no operation uses); n from the last slot down, each
  // once.
  int next(std::size_t n) {
    if (!all_.empty()) {
      return all_[n];
    }
    const int k = nameOf(slots_[n]);
    return k < 0 ? 0 : remaining_[static_cast<std::size_t>(k)]--;
  }

 private:
  int nameOf(const HeaderSlot& slot) const {
    for (std::size_t k = 0; k < nameCount_; ++k) {
      if (equalsIgnoreCase(names_[k], slot.originalHeader().name)) {
        return static_cast<int>(k);
      }
    }
    return -1;
  }
  void countAll() {
    nameCount_ = 0;
    all_.resize(slots_.size());
    std::unordered_map<std::string, int> seen;
    for (std::size_t n = 0; n < slots_.size(); ++n) {
      all_[n] = ++seen[toLowerAscii(slots_[n].originalHeader().name)];
    }
  }

  const std::vector<HeaderSlot>& slots_;
  std::array<std::string_view, kMaxScannedNames> names_;
  std::array<int, kMaxScannedNames> remaining_{};
  std::size_t nameCount_ = 0;
  std::vector<int> all_;  // every slot's index, when more names than kMaxScannedNames change
};

// The plan for `slots`; with kTakeValues the slots' new values move into the plan (each is used
// once, after every comparison that reads it).
template <bool kTakeValues, typename Slots>
void planFor(Slots& slots, const std::vector<HeaderField>& appended, int insertOffset,
             EditPlan& plan) {
  const auto value = [](auto& v) {
    if constexpr (kTakeValues) {
      return normalizeNewlines(std::move(v));
    } else {
      return normalizeNewlines(v);
    }
  };
  plan.clear();
  std::size_t operations = appended.size() + 1;  // + 1: the caller's chgfrom, if any
  for (const HeaderSlot& slot : slots) {
    operations += slot.before.size() + (slotChanged(slot) ? 2 : 0);
  }
  plan.reserve(operations);
  SameNameIndex occurrences(slots);
  for (size_t n = slots.size(); n-- > 0;) {
    auto& slot = slots[n];
    const int occurrence = occurrences.next(n);
    const int position = static_cast<int>(n) + insertOffset;
    const HeaderField& original = slot.originalHeader();  // *current when kept as is
    if (slot.keptAsIs) {
      // Unchanged, held once: nothing to compare it with.
    } else if (!slot.current) {
      plan.push_back({EditOp::Kind::kDeleteHeader, original.name, occurrence, "", ""});
    } else if (slot.current->name != original.name) {
      // Deleted, and the new one inserted in its place, below the headers inserted before it.
      plan.push_back({EditOp::Kind::kDeleteHeader, original.name, occurrence, "", ""});
      plan.push_back({EditOp::Kind::kInsertHeader, slot.current->name, position,
                      value(slot.current->value), ""});
    } else if (slot.current->value != original.value) {
      plan.push_back(
          {EditOp::Kind::kChangeHeader, original.name, occurrence, value(slot.current->value), ""});
    }
    for (size_t k = slot.before.size(); k-- > 0;) {
      plan.push_back({EditOp::Kind::kInsertHeader, slot.before[k].name, position,
                      value(slot.before[k].value), ""});
    }
  }
  for (const HeaderField& h : appended) {
    plan.push_back({EditOp::Kind::kAddHeader, h.name, 0, normalizeNewlines(h.value), ""});
  }
}

}  // namespace

EditPlan buildEditPlan(const std::vector<HeaderSlot>& slots,
                       const std::vector<HeaderField>& appended, int insertOffset) {
  EditPlan plan;
  planFor<false>(slots, appended, insertOffset, plan);
  return plan;
}

EditPlan buildEditPlan(std::vector<HeaderSlot>&& slots, const std::vector<HeaderField>& appended,
                       int insertOffset) {
  EditPlan plan;
  planFor<true>(slots, appended, insertOffset, plan);
  return plan;
}

void buildEditPlan(std::vector<HeaderSlot>* slots, EditPlan* plan, int insertOffset) {
  static const std::vector<HeaderField> kNothingAppended;
  planFor<true>(*slots, kNothingAppended, insertOffset, *plan);
}

std::vector<HeaderField> applyEditPlan(std::vector<HeaderField> headers, const EditPlan& plan,
                                       int insertOffset) {
  for (const EditOp& op : plan) {
    switch (op.kind) {
      case EditOp::Kind::kChangeHeader:
      case EditOp::Kind::kDeleteHeader: {
        int seen = 0;
        auto it = headers.begin();
        for (; it != headers.end(); ++it) {
          if (equalsIgnoreCase(it->name, op.name) && ++seen == op.index) {
            break;
          }
        }
        if (it == headers.end()) {
          if (op.kind == EditOp::Kind::kChangeHeader) {
            headers.push_back({op.name, op.value});  // past the last one: Postfix appends
          }
        } else if (op.kind == EditOp::Kind::kDeleteHeader) {
          headers.erase(it);
        } else {
          it->value = op.value;
        }
        break;
      }
      case EditOp::Kind::kInsertHeader: {
        int pos = std::max(0, op.index - insertOffset);
        pos = std::min(pos, static_cast<int>(headers.size()));
        headers.insert(headers.begin() + pos, {op.name, op.value});
        break;
      }
      case EditOp::Kind::kAddHeader:
        headers.push_back({op.name, op.value});
        break;
      case EditOp::Kind::kChangeFrom:
        break;
    }
  }
  return headers;
}

Status applyPlan(const EditPlan& plan, MilterActions* actions) {
  for (const EditOp& op : plan) {
    Status st;
    switch (op.kind) {
      case EditOp::Kind::kChangeHeader:
        st = actions->changeHeader(op.name, op.index, &op.value);
        break;
      case EditOp::Kind::kDeleteHeader:
        st = actions->changeHeader(op.name, op.index, nullptr);
        break;
      case EditOp::Kind::kInsertHeader:
        st = actions->insertHeader(op.index, op.name, op.value);
        break;
      case EditOp::Kind::kAddHeader:
        st = actions->addHeader(op.name, op.value);
        break;
      case EditOp::Kind::kChangeFrom:
        st = actions->changeFrom(op.value, op.args);
        break;
    }
    if (!st) {
      return Status::error(describeOp(op) + ": " + st.message());
    }
  }
  return Status::ok();
}

std::string describeOp(const EditOp& op) {
  switch (op.kind) {
    case EditOp::Kind::kChangeHeader:
      return "chgheader " + op.name + "[" + std::to_string(op.index) + "] =" + op.value;
    case EditOp::Kind::kDeleteHeader:
      return "delheader " + op.name + "[" + std::to_string(op.index) + "]";
    case EditOp::Kind::kInsertHeader:
      return "insheader @" + std::to_string(op.index) + " " + op.name + ":" + op.value;
    case EditOp::Kind::kAddHeader:
      return "addheader " + op.name + ":" + op.value;
    case EditOp::Kind::kChangeFrom:
      return "chgfrom <" + op.value + ">" + (op.args.empty() ? "" : " " + op.args);
  }
  return "";
}

}  // namespace relaykit::milter
