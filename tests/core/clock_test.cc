#include "core/clock.h"

#include <gtest/gtest.h>

namespace petrel {
namespace {

TEST(ClockTest, Rfc3339RoundTrip) {
  SystemTime t;
  ASSERT_TRUE(ParseRfc3339("2026-11-23T22:52:59.123456Z", &t));
  EXPECT_EQ(FormatRfc3339Micro(t), "2026-11-23T22:52:59.123456Z");
  EXPECT_EQ(FormatRfc3339(t), "2026-11-23T22:52:59Z");
  SystemTime u;
  ASSERT_TRUE(ParseRfc3339("2026-11-23T23:52:59+01:00", &u));
  EXPECT_EQ(FormatRfc3339(u), "2026-11-23T22:52:59Z");
  EXPECT_FALSE(ParseRfc3339("yesterday", &u));
}

TEST(ClockTest, FakeClockMovesOnlyWhenAdvanced) {
  FakeClock c;
  auto t0 = c.Now();
  EXPECT_EQ(c.Now(), t0);
  c.Advance(std::chrono::seconds(5));
  EXPECT_EQ(c.Now() - t0, std::chrono::seconds(5));
}

}  // namespace
}  // namespace petrel
