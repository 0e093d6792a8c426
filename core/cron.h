// Cron schedules: the classic 5-field syntax (minute hour day-of-month month day-of-week) that
// crontab(5) and Kubernetes CronJobs accept, evaluated in UTC, and the fire times it implies.
// Snapshot schedules (spec.snapshots.schedule) use it.
//
// Accepted per field: `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from a to
// the field's maximum), and comma-separated lists of those. Months accept JAN..DEC and days
// of the week SUN..SAT (any case); day of week 7 is Sunday, like 0. Macros: @yearly
// (@annually), @monthly, @weekly, @daily (@midnight), @hourly. As in Vixie cron, when both
// day-of-month and day-of-week are restricted (neither starts with `*`), a day matches if
// EITHER matches; otherwise both must.
//
// Thread-safety: immutable values and pure functions; safe from any thread.
#pragma once

#include <bitset>
#include <optional>
#include <string>

#include "core/clock.h"
#include "core/status.h"

namespace petrel {

class CronSchedule {
 public:
  // Invalid with a message naming the field and what is accepted, e.g.
  // `minute field "61": values must be between 0 and 59`.
  static Result<CronSchedule> Parse(const std::string& text);

  // The first fire time strictly after `after` (fire times are whole minutes). nullopt when
  // the schedule never fires within the next 5 years (e.g. "0 0 30 2 *").
  std::optional<SystemTime> Next(SystemTime after) const;
  // The latest fire time at or before `at`; nullopt when none within the previous 5 years.
  std::optional<SystemTime> Previous(SystemTime at) const;

  const std::string& text() const { return text_; }

 private:
  CronSchedule() = default;
  bool DayMatches(int day_of_month, int month, int weekday) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // 1..31
  std::bitset<13> months_;         // 1..12
  std::bitset<7> days_of_week_;    // 0 = Sunday
  bool day_of_month_star_ = false;
  bool day_of_week_star_ = false;
};

}  // namespace petrel
