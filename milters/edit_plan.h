// SPDX-License-Identifier: Apache-2.0
// edit_plan.h: the milter modifications for one message, as an ordered list of operations.
//
// buildEditPlan() turns the final state of every received header (kept, changed, removed, with
// headers to insert before it) into smfi_* operations that are correct under Postfix's semantics
// when applied IN ORDER: headers are processed from the last to the first, so a deletion or an
// insertion never shifts the index of an operation still to come; chgheader indexes are 1-based
// per name (case-insensitive) relative to the headers the milter saw; insheader positions count
// Postfix's own Received: header (insertOffset = 1), which the milter never sees.
// Pure: no libmilter here. Cannot fail.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "milters/header_rules.h"

namespace relaykit::milter {

struct EditOp {
  enum class Kind {
    kChangeHeader,  // smfi_chgheader(name, index, value)
    kDeleteHeader,  // smfi_chgheader(name, index, NULL)
    kInsertHeader,  // smfi_insheader(index, name, value)
    kAddHeader,     // smfi_addheader(name, value)
    kChangeFrom,    // smfi_chgfrom(value, args)
  };
  Kind kind = Kind::kChangeHeader;
  std::string name;
  int index = 0;
  std::string value;  // header value with its leading space (SMFIP_HDR_LEADSPC); sender address
  std::string args;   // kChangeFrom: ESMTP arguments, space-separated; empty for none

  bool operator==(const EditOp& o) const {
    return kind == o.kind && name == o.name && index == o.index && value == o.value &&
           args == o.args;
  }
};

using EditPlan = std::vector<EditOp>;

// What became of one received header.
struct HeaderSlot {
  HeaderField original;
  std::optional<HeaderField> current;  // nullopt: removed
  std::vector<HeaderField> before;     // headers to insert before it, in order
  // True: the header is unchanged and held once, in `current` (`original` left empty; a rewrite
  // that keeps most headers saves copying them).
  bool keptAsIs = false;

  const HeaderField& originalHeader() const { return keptAsIs ? *current : original; }
  // Before `current` changes: a header held as it came moves to `original` (not copied), and
  // `current` keeps its name.
  void keepOriginal() {
    if (keptAsIs) {
      original = std::move(*current);
      current->name = original.name;
      keptAsIs = false;
    }
  }
};

// Postfix's own Received: header sits above every header the milter saw.
inline constexpr int kPostfixInsertOffset = 1;

// Operations (in application order) that turn `original` headers into the slots' final state,
// followed by `appended` headers (smfi_addheader).
EditPlan buildEditPlan(const std::vector<HeaderSlot>& slots,
                       const std::vector<HeaderField>& appended,
                       int insertOffset = kPostfixInsertOffset);
// The same plan from slots the caller gives up: the new header values move into it.
EditPlan buildEditPlan(std::vector<HeaderSlot>&& slots, const std::vector<HeaderField>& appended,
                       int insertOffset = kPostfixInsertOffset);
// The same plan (nothing appended) into `*plan`, cleared first and its storage reused; the new
// header values move out of `*slots`.
void buildEditPlan(std::vector<HeaderSlot>* slots, EditPlan* plan,
                   int insertOffset = kPostfixInsertOffset);

// Applies a plan to a header list exactly as Postfix would (for `relaykit rewrite` and tests):
// chgheader past the last instance appends, insheader counts a virtual Received: header at the
// top when insertOffset is 1.
std::vector<HeaderField> applyEditPlan(std::vector<HeaderField> headers, const EditPlan& plan,
                                       int insertOffset = kPostfixInsertOffset);

// The milter's modification primitives (smfi_chgheader, smfi_insheader, smfi_addheader,
// smfi_chgfrom), so plans can be applied to libmilter or to a fake in tests.
class MilterActions {
 public:
  virtual ~MilterActions() = default;
  // value == nullptr deletes the header.
  virtual Status changeHeader(const std::string& name, int index, const std::string* value) = 0;
  virtual Status insertHeader(int index, const std::string& name, const std::string& value) = 0;
  virtual Status addHeader(const std::string& name, const std::string& value) = 0;
  virtual Status changeFrom(const std::string& address, const std::string& args) = 0;
};

// Applies every operation in order; stops at and returns the first failure.
Status applyPlan(const EditPlan& plan, MilterActions* actions);

// "chgheader From[1] = ..." style description of one operation, for debugging and tests.
std::string describeOp(const EditOp& op);

}  // namespace relaykit::milter
