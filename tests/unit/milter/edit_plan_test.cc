// SPDX-License-Identifier: Apache-2.0
// edit_plan_test.cc: edit plans applied to a fake milter context that behaves as Postfix's
// cleanup does (its own Received: header on top, invisible to chgheader indexes but counted by
// insheader positions; deleted headers really removed; chgheader past the end appends).
#include "milters/edit_plan.h"

#include <gtest/gtest.h>

#include "common/address.h"

namespace relaykit::milter {
namespace {

class FakePostfix : public MilterActions {
 public:
  explicit FakePostfix(std::vector<HeaderField> seen) {
    headers_.push_back({"Received", " from client by relay (Postfix)"});
    for (auto& h : seen) {
      headers_.push_back(h);
    }
  }
  Status changeHeader(const std::string& name, int index, const std::string* value) override {
    log_.push_back("chg " + name + " " + std::to_string(index));
    int seen = 0;
    for (size_t i = 1; i < headers_.size(); ++i) {  // our own Received: is skipped
      if (equalsIgnoreCase(headers_[i].name, name) && ++seen == index) {
        if (value) {
          headers_[i].value = *value;
        } else {
          headers_.erase(headers_.begin() + static_cast<long>(i));
        }
        return Status::ok();
      }
    }
    if (value) {
      headers_.push_back({name, *value});
    }
    return Status::ok();
  }
  Status insertHeader(int index, const std::string& name, const std::string& value) override {
    size_t pos = std::min(static_cast<size_t>(std::max(index, 0)), headers_.size());
    headers_.insert(headers_.begin() + static_cast<long>(pos), {name, value});
    return Status::ok();
  }
  Status addHeader(const std::string& name, const std::string& value) override {
    headers_.push_back({name, value});
    return Status::ok();
  }
  Status changeFrom(const std::string& address, const std::string& args) override {
    from_ = address + "|" + args;
    return Status::ok();
  }
  // Headers after our own Received:.
  std::vector<HeaderField> visible() const {
    return std::vector<HeaderField>(headers_.begin() + 1, headers_.end());
  }
  const std::vector<HeaderField>& all() const { return headers_; }
  std::string from_;
  std::vector<std::string> log_;

 private:
  std::vector<HeaderField> headers_;
};

std::string render(const std::vector<HeaderField>& hs) {
  std::string out;
  for (const auto& h : hs) {
    out += h.name + ":" + h.value + "\n";
  }
  return out;
}

std::vector<HeaderField> sample() {
  return {{"Received", " from a"},         {"X-Originating-IP", " 1"}, {"From", " root@x"},
          {"Received", " from localhost"}, {"X-Originating-IP", " 2"}, {"Subject", " s"}};
}

TEST(EditPlanTest, DeletesInReverseSoIndexesStayValid) {
  auto headers = sample();
  std::vector<HeaderSlot> slots;
  for (auto& h : headers) {
    slots.push_back({h, h, {}});
  }
  slots[1].current.reset();
  slots[4].current.reset();
  slots[3].current.reset();
  EditPlan plan = buildEditPlan(slots, {});
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(describeOp(plan[0]), "delheader X-Originating-IP[2]");
  EXPECT_EQ(describeOp(plan[1]), "delheader Received[2]");
  EXPECT_EQ(describeOp(plan[2]), "delheader X-Originating-IP[1]");
  FakePostfix fake(headers);
  ASSERT_TRUE(applyPlan(plan, &fake).isOk());
  EXPECT_EQ(render(fake.visible()), "Received: from a\nFrom: root@x\nSubject: s\n");
}

TEST(EditPlanTest, ChangePrependAndRenameLandWhereTheMilterSawThem) {
  auto headers = sample();
  std::vector<HeaderSlot> slots;
  for (auto& h : headers) {
    slots.push_back({h, h, {}});
  }
  slots[0].before.push_back({"X-First", " 1"});   // before the first visible header
  slots[2].current->value = " noreply@corp.com";  // same name: chgheader
  slots[2].before.push_back({"X-Before-From", " yes"});
  slots[3].current = HeaderField{"X-Was-Received", " gone"};  // renamed: delete + insert
  slots[5].before.push_back({"Subject", " prepended"});       // same name as the one after it
  EditPlan plan = buildEditPlan(slots, {{"X-Added", " end"}});
  FakePostfix fake(headers);
  ASSERT_TRUE(applyPlan(plan, &fake).isOk());
  std::string expected =
      "X-First: 1\nReceived: from a\nX-Originating-IP: 1\nX-Before-From: yes\n"
      "From: noreply@corp.com\nX-Was-Received: gone\nX-Originating-IP: 2\n"
      "Subject: prepended\nSubject: s\nX-Added: end\n";
  EXPECT_EQ(render(fake.visible()), expected);
  EXPECT_EQ(fake.all()[0].value, " from client by relay (Postfix)");  // ours stays on top
  // The simulator used by `relaykit rewrite` agrees with the fake Postfix.
  EXPECT_EQ(render(applyEditPlan(headers, plan)), expected);
}

TEST(EditPlanTest, RenamedHeaderLandsBelowTheHeadersPrependedToIt) {
  // REPLACE with another name on a header a PREPEND rule also matched: the prepended headers
  // first, in their order, then the replacement, where the original was.
  auto headers = sample();
  std::vector<HeaderSlot> slots;
  for (auto& h : headers) {
    slots.push_back({h, h, {}});
  }
  slots[3].before.push_back({"X-One", " 1"});
  slots[3].before.push_back({"X-Two", " 2"});
  slots[3].current = HeaderField{"X-Was-Received", " gone"};
  slots[4].current.reset();
  slots[4].before.push_back({"X-Three", " 3"});
  EditPlan plan = buildEditPlan(slots, {});
  FakePostfix fake(headers);
  ASSERT_TRUE(applyPlan(plan, &fake).isOk());
  std::string expected =
      "Received: from a\nX-Originating-IP: 1\nFrom: root@x\nX-One: 1\nX-Two: 2\n"
      "X-Was-Received: gone\nX-Three: 3\nSubject: s\n";
  EXPECT_EQ(render(fake.visible()), expected);
  EXPECT_EQ(render(applyEditPlan(headers, plan)), expected);
}

TEST(EditPlanTest, HeadersKeptAsIsCountLikeCopiedOnes) {
  // Unchanged headers held once (keptAsIs, original left empty) give the plan that copies give:
  // they still count for the indexes of same-name headers and the insert positions.
  auto headers = sample();
  std::vector<HeaderSlot> copied;
  std::vector<HeaderSlot> kept;
  for (auto& h : headers) {
    copied.push_back({h, h, {}});
    HeaderSlot slot;
    slot.current = h;
    slot.keptAsIs = true;
    kept.push_back(slot);
  }
  for (std::vector<HeaderSlot>* slots : {&copied, &kept}) {
    HeaderSlot& second = (*slots)[4];  // the second X-Originating-IP: removed
    second = {headers[4], std::nullopt, {{"X-Note", " n"}}};
    (*slots)[5] = {headers[5], HeaderField{"Subject", " t"}, {}};
  }
  const EditPlan plan = buildEditPlan(kept, {});
  EXPECT_EQ(plan, buildEditPlan(copied, {}));
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(describeOp(plan[0]), "chgheader Subject[1] = t");
  EXPECT_EQ(describeOp(plan[1]), "delheader X-Originating-IP[2]");
  EXPECT_EQ(describeOp(plan[2]), "insheader @5 X-Note: n");
}

TEST(EditPlanTest, SlotsGivenUpGiveTheSamePlan) {
  // The overload that moves the new values out of the slots plans what the copying one plans:
  // renamed, changed (folded with CRLF and without), removed, prepended and kept headers alike.
  auto headers = sample();
  std::vector<HeaderSlot> slots;
  for (auto& h : headers) {
    slots.push_back({h, h, {}});
  }
  slots[0].current = HeaderField{"Received", " from a\r\n\tby relay.example.com"};
  slots[2].current = HeaderField{"From", " Root <root@corp.example.com>"};
  slots[3].current = HeaderField{"X-Was-Received", " gone"};
  slots[3].before.push_back({"X-One", " 1\r\n 2"});
  slots[4].current.reset();
  slots[5].keptAsIs = true;
  slots[5].original = {};
  const EditPlan copied = buildEditPlan(slots, {{"X-Added", " end"}});
  std::vector<HeaderSlot> given = slots;
  EXPECT_EQ(buildEditPlan(std::move(given), {{"X-Added", " end"}}), copied);
  EXPECT_EQ(copied.size(), 7u);
}

TEST(EditPlanTest, SeveralSameNameHeadersChangedIndependently) {
  std::vector<HeaderField> headers = {{"From", " a@x"}, {"To", " t@x"}, {"From", " b@x"}};
  std::vector<HeaderSlot> slots;
  for (auto& h : headers) {
    slots.push_back({h, h, {}});
  }
  slots[0].current->value = " A@corp";
  slots[2].current->value = " B@corp";
  FakePostfix fake(headers);
  ASSERT_TRUE(applyPlan(buildEditPlan(slots, {}), &fake).isOk());
  EXPECT_EQ(render(fake.visible()), "From: A@corp\nTo: t@x\nFrom: B@corp\n");
}

TEST(EditPlanTest, ThousandsOfSameNameHeadersCountedInLinearTime) {
  // Postfix has no header count limit; indexes are per name, case-insensitive.
  std::vector<HeaderField> headers;
  std::vector<HeaderSlot> slots;
  for (int i = 0; i < 20000; ++i) {
    headers.push_back({i % 2 ? "x-ip" : "X-IP", " " + std::to_string(i)});
    slots.push_back({headers.back(), headers.back(), {}});
    if (i % 3 == 0) {
      slots.back().current.reset();
    }
  }
  EditPlan plan = buildEditPlan(slots, {});
  ASSERT_EQ(plan.size(), 6667u);
  EXPECT_EQ(describeOp(plan.front()), "delheader X-IP[19999]");
  EXPECT_EQ(describeOp(plan.back()), "delheader X-IP[1]");
  EXPECT_EQ(applyEditPlan(headers, plan).size(), 20000u - 6667u);
}

TEST(EditPlanTest, ManyChangedNamesAmongUnchangedOnesKeepTheirIndexes) {
  // Changed headers of a few names are counted by scanning, of many names with a map: both give
  // the per-name indexes Postfix's cleanup counts, whatever lies between them.
  for (int names : {1, 3, 4, 5, 9}) {
    std::vector<HeaderField> headers;
    std::vector<HeaderSlot> slots;
    for (int i = 0; i < 60; ++i) {
      const std::string name = std::string(i % 2 ? "x-h" : "X-H") + std::to_string(i % 11);
      headers.push_back({name, " " + std::to_string(i)});
      slots.push_back({headers.back(), headers.back(), {}});
      if (i % 11 < names && i % 4 != 1) {
        if (i % 3 == 0) {
          slots.back().current.reset();
        } else {
          slots.back().current->value = " changed " + std::to_string(i);
        }
      }
    }
    std::vector<HeaderField> expected;
    for (const HeaderSlot& slot : slots) {
      if (slot.current) {
        expected.push_back(*slot.current);
      }
    }
    EditPlan plan = buildEditPlan(slots, {});
    FakePostfix fake(headers);
    ASSERT_TRUE(applyPlan(plan, &fake).isOk());
    EXPECT_EQ(render(fake.visible()), render(expected)) << names << " names changed";
    EXPECT_EQ(render(applyEditPlan(headers, plan)), render(expected)) << names << " names changed";
  }
}

TEST(EditPlanTest, FoldedValuesGoOutWithLfOnly) {
  std::vector<HeaderField> headers = {{"From", " a@x"}};
  std::vector<HeaderSlot> slots = {{headers[0], HeaderField{"From", " x\r\n\ty@z"}, {}}};
  EditPlan plan = buildEditPlan(slots, {});
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].value, " x\n\ty@z");
}

TEST(EditPlanTest, NothingChangedGivesEmptyPlan) {
  auto headers = sample();
  std::vector<HeaderSlot> slots;
  for (auto& h : headers) {
    slots.push_back({h, h, {}});
  }
  EXPECT_TRUE(buildEditPlan(slots, {}).empty());
}

class FailingActions : public FakePostfix {
 public:
  FailingActions() : FakePostfix({}) {}
  Status addHeader(const std::string&, const std::string&) override {
    return Status::error("refused");
  }
};

TEST(EditPlanTest, ApplyStopsAtFirstFailure) {
  FailingActions f;
  EditPlan plan = {{EditOp::Kind::kAddHeader, "X", 0, " 1", ""},
                   {EditOp::Kind::kChangeFrom, "", 0, "a@b", ""}};
  Status st = applyPlan(plan, &f);
  EXPECT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("addheader X"), std::string::npos);
  EXPECT_EQ(f.from_, "");
}

}  // namespace
}  // namespace relaykit::milter
