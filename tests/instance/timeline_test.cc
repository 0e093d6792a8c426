#include "instance/timeline.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

constexpr const char* kControlData =
    "pg_control version number:            1300\n"
    "Database system identifier:           7711511785503203142\n"
    "Database cluster state:               shut down in recovery\n"
    "Latest checkpoint location:           0/3009588\n"
    "Latest checkpoint's REDO location:    0/3009588\n"
    "Latest checkpoint's TimeLineID:       1\n"
    "Minimum recovery ending location:     0/3009600\n";

TEST(ControlDataTest, ParsesKeysWithColonsAndSpaces) {
  auto m = ParseControlData(kControlData);
  EXPECT_EQ(m["Database cluster state"], "shut down in recovery");
  EXPECT_EQ(m["Latest checkpoint's TimeLineID"], "1");
  auto p = PositionFromControlData(m);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->timeline, 1);
  EXPECT_EQ(p->lsn, 0x3009600u);  // the minimum recovery point is later than the checkpoint
  EXPECT_FALSE(p->inclusive);
  EXPECT_FALSE(PositionFromControlData(ParseControlData("garbage\n")).has_value());
}

// A standby that followed a promotion (timeline 1 -> 2) after its last restartpoint: its
// checkpoint is still on timeline 1, its received WAL is on timeline 2. Judged on timeline 1
// it would look diverged from a primary that forked timeline 3 off timeline 2 (seen in the
// failover benchmark: a needless rewind that left the standby unable to start).
TEST(ControlDataTest, TheMinimumRecoveryPointCarriesItsOwnTimeline) {
  std::string text = std::string(kControlData) + "Min recovery ending loc's timeline:   2\n";
  auto p = PositionFromControlData(ParseControlData(text));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->timeline, 2);
  EXPECT_EQ(p->lsn, 0x3009600u);
  const std::string history =
      "1\t0/3000000\tno recovery target specified\n"
      "2\t0/3009600\tno recovery target specified\n";
  EXPECT_FALSE(HasDiverged(*p, 3, history));
  EXPECT_TRUE(HasDiverged(LocalWalPosition{1, 0x3009600, false}, 3, history))
      << "the checkpoint's timeline alone says diverged";
}

TEST(SwitchPointTest, FindsTheAncestorTimeline) {
  std::string history =
      "1\t0/3009588\tno recovery target specified\n"
      "2\t0/5000060\tno recovery target specified\n";
  EXPECT_EQ(SwitchPoint(history, 1), 0x3009588u);
  EXPECT_EQ(SwitchPoint(history, 2), 0x5000060u);
  EXPECT_FALSE(SwitchPoint(history, 3).has_value());
}

struct DivergeCase {
  const char* name;
  LocalWalPosition local;
  int64_t primary_timeline;
  bool want;
};

class DivergeTest : public testing::TestWithParam<DivergeCase> {};

TEST_P(DivergeTest, ComparesWithTheSwitchPoint) {
  const std::string history = "1\t0/3009588\tno recovery target specified\n";
  EXPECT_EQ(HasDiverged(GetParam().local, GetParam().primary_timeline, history), GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(
    Table, DivergeTest,
    testing::Values(DivergeCase{"SameTimeline", {2, 0x9000000, false}, 2, false},
                    DivergeCase{"BehindSwitchPoint", {1, 0x3000000, false}, 2, false},
                    DivergeCase{"ExactlyAtSwitchPoint", {1, 0x3009588, false}, 2, false},
                    DivergeCase{"PastSwitchPoint", {1, 0x3009600, false}, 2, true},
                    DivergeCase{"CheckpointStartsAtSwitchPoint", {1, 0x3009588, true}, 2, true},
                    DivergeCase{"NewerThanPrimary", {3, 0x1000000, false}, 2, true},
                    DivergeCase{"NotAnAncestor", {5, 0x1000000, false}, 7, true}),
    [](const testing::TestParamInfo<DivergeCase>& info) { return info.param.name; });

}  // namespace
}  // namespace petrel
