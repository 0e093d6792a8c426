#include "core/cron.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

SystemTime At(const std::string& rfc3339) {
  SystemTime t;
  EXPECT_TRUE(ParseRfc3339(rfc3339, &t)) << rfc3339;
  return t;
}

std::string NextAfter(const std::string& schedule, const std::string& after) {
  auto s = CronSchedule::Parse(schedule);
  EXPECT_TRUE(s.ok()) << schedule << ": " << s.status().ToString();
  if (!s.ok()) return "";
  auto next = s->Next(At(after));
  return next ? FormatRfc3339(*next) : "never";
}

std::string PreviousAt(const std::string& schedule, const std::string& at) {
  auto s = CronSchedule::Parse(schedule);
  EXPECT_TRUE(s.ok()) << schedule << ": " << s.status().ToString();
  if (!s.ok()) return "";
  auto prev = s->Previous(At(at));
  return prev ? FormatRfc3339(*prev) : "never";
}

struct NextCase {
  const char* schedule;
  const char* after;
  const char* next;
};

TEST(CronScheduleTest, NextFireTimes) {
  const NextCase kCases[] = {
      // Daily at midnight: strictly after, so midnight itself moves to the next day.
      {"0 0 * * *", "2026-11-24T02:15:00Z", "2026-11-25T00:00:00Z"},
      {"0 0 * * *", "2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"},
      {"0 0 * * *", "2026-11-23T23:59:59Z", "2026-11-24T00:00:00Z"},
      {"@daily", "2026-12-31T12:00:00Z", "2027-01-01T00:00:00Z"},
      {"* * * * *", "2026-11-24T02:15:30Z", "2026-11-24T02:16:00Z"},
      {"*/15 * * * *", "2026-11-24T02:15:00Z", "2026-11-24T02:30:00Z"},
      {"5/20 * * * *", "2026-11-24T02:46:00Z", "2026-11-24T03:05:00Z"},
      {"0 9-17/4 * * *", "2026-11-24T13:00:00Z", "2026-11-24T17:00:00Z"},
      {"30 2 * * mon-fri", "2026-11-27T03:00:00Z", "2026-11-30T02:30:00Z"},  // Fri -> Mon
      {"0 0 * * 7", "2026-11-24T00:00:00Z", "2026-11-29T00:00:00Z"},         // 7 = Sunday
      {"0 0 * * SUN", "2026-11-24T00:00:00Z", "2026-11-29T00:00:00Z"},
      {"0 0 1 jan,jul *", "2026-02-01T00:00:00Z", "2026-07-01T00:00:00Z"},
      {"@monthly", "2026-01-31T10:00:00Z", "2026-02-01T00:00:00Z"},
      {"@hourly", "2026-11-24T02:59:59Z", "2026-11-24T03:00:00Z"},
      {"@weekly", "2026-11-24T00:00:00Z", "2026-11-29T00:00:00Z"},
      // February 29th only exists in leap years.
      {"0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"},
      // Day-of-month and day-of-week both restricted: either matches (Vixie cron).
      {"0 0 13 * fri", "2026-11-01T00:00:00Z", "2026-11-06T00:00:00Z"},
      {"0 0 13 * fri", "2026-11-07T00:00:00Z", "2026-11-13T00:00:00Z"},
      // One restricted, the other a star: both must match.
      {"0 0 */2 * fri", "2026-11-01T00:00:00Z", "2026-11-13T00:00:00Z"},
      // Never: the 30th of February.
      {"0 0 30 2 *", "2026-01-01T00:00:00Z", "never"},
  };
  for (const auto& c : kCases) {
    EXPECT_EQ(NextAfter(c.schedule, c.after), c.next) << c.schedule << " after " << c.after;
  }
}

TEST(CronScheduleTest, PreviousFireTimes) {
  EXPECT_EQ(PreviousAt("0 0 * * *", "2026-11-24T02:15:00Z"), "2026-11-24T00:00:00Z");
  EXPECT_EQ(PreviousAt("0 0 * * *", "2026-11-24T00:00:00Z"), "2026-11-24T00:00:00Z");
  EXPECT_EQ(PreviousAt("0 0 * * *", "2026-11-23T23:59:59Z"), "2026-11-23T00:00:00Z");
  EXPECT_EQ(PreviousAt("*/15 * * * *", "2026-11-24T02:14:59Z"), "2026-11-24T02:00:00Z");
  EXPECT_EQ(PreviousAt("0 12 * * mon", "2026-11-24T02:00:00Z"), "2026-11-23T12:00:00Z");
  EXPECT_EQ(PreviousAt("0 0 1 1 *", "2026-11-24T02:00:00Z"), "2026-01-01T00:00:00Z");
  EXPECT_EQ(PreviousAt("0 0 29 2 *", "2026-11-24T02:00:00Z"), "2024-02-29T00:00:00Z");
  EXPECT_EQ(PreviousAt("0 0 30 2 *", "2026-11-24T02:00:00Z"), "never");
}

TEST(CronScheduleTest, NextAndPreviousAreConsistent) {
  auto s = CronSchedule::Parse("7 */3 * * 1-5");
  ASSERT_TRUE(s.ok());
  SystemTime t = At("2026-11-20T10:00:00Z");
  for (int i = 0; i < 50; ++i) {
    auto next = s->Next(t);
    ASSERT_TRUE(next);
    EXPECT_EQ(s->Previous(*next), next);
    EXPECT_EQ(s->Previous(*next - std::chrono::seconds(1)), s->Previous(t));
    t = *next;
  }
}

TEST(CronScheduleTest, RejectsMalformedSchedulesWithTheField) {
  struct Bad {
    const char* schedule;
    const char* mentions;
  };
  const Bad kCases[] = {
      {"", "has 0 fields"},
      {"0 0 * *", "has 4 fields"},
      {"0 0 0 * * *", "has 6 fields"},
      {"60 * * * *", "minute field \"60\": values must be between 0 and 59"},
      {"* 24 * * *", "hour field"},
      {"* * 0 * *", "day-of-month field"},
      {"* * * 13 *", "month field"},
      {"* * * * 8", "day-of-week field"},
      {"*/0 * * * *", "step after '/' must be a positive number"},
      {"5-1 * * * *", "range end is before its start"},
      {"1,,2 * * * *", "empty list element"},
      {"* * * foo *", "month name"},
      {"* * * * funday", "day name"},
      {"a * * * *", "is not a number"},
      {"@fortnightly", "unknown macro"},
  };
  for (const auto& c : kCases) {
    auto s = CronSchedule::Parse(c.schedule);
    ASSERT_FALSE(s.ok()) << c.schedule;
    EXPECT_EQ(s.status().code(), Code::kInvalid);
    EXPECT_NE(s.status().message().find(c.mentions), std::string::npos)
        << c.schedule << ": " << s.status().message();
  }
}

TEST(CronScheduleTest, KeepsTheTextAsWritten) {
  auto s = CronSchedule::Parse("  0 0 * * *  ");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->text(), "0 0 * * *");
}

}  // namespace
}  // namespace petrel
