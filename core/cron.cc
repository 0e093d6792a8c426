#include "core/cron.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <sstream>
#include <vector>

namespace petrel {

namespace {

using std::chrono::days;
using std::chrono::minutes;
using std::chrono::sys_days;

constexpr int kSearchDays = 5 * 366 + 1;
constexpr int kMinutesPerDay = 24 * 60;

struct FieldSpec {
  const char* name;
  int min;
  int max;
  const std::map<std::string, int>* names;  // nullptr when the field has none
};

const std::map<std::string, int>& MonthNames() {
  static const std::map<std::string, int> kNames = {
      {"jan", 1}, {"feb", 2}, {"mar", 3}, {"apr", 4},  {"may", 5},  {"jun", 6},
      {"jul", 7}, {"aug", 8}, {"sep", 9}, {"oct", 10}, {"nov", 11}, {"dec", 12}};
  return kNames;
}

const std::map<std::string, int>& WeekdayNames() {
  static const std::map<std::string, int> kNames = {{"sun", 0}, {"mon", 1}, {"tue", 2}, {"wed", 3},
                                                    {"thu", 4}, {"fri", 5}, {"sat", 6}};
  return kNames;
}

bool IsDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0;
  });
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

Status FieldError(const FieldSpec& f, const std::string& text, const std::string& why) {
  return InvalidError(std::string(f.name) + " field \"" + text + "\": " + why);
}

Result<int> ParseValue(const FieldSpec& f, const std::string& term, const std::string& text) {
  if (text.empty()) return FieldError(f, term, "a value is missing");
  if (IsDigits(text)) {
    if (text.size() > 3) return FieldError(f, term, "value " + text + " is out of range");
    int v = std::stoi(text);
    if (v < f.min || v > f.max) {
      return FieldError(
          f, term,
          "values must be between " + std::to_string(f.min) + " and " + std::to_string(f.max));
    }
    return v;
  }
  if (f.names) {
    std::string lower;
    for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto it = f.names->find(lower);
    if (it != f.names->end()) return it->second;
  }
  return FieldError(f, term,
                    "\"" + text + "\" is not a number" +
                        (f.names == &MonthNames()     ? " or a month name (JAN..DEC)"
                         : f.names == &WeekdayNames() ? " or a day name (SUN..SAT)"
                                                      : ""));
}

// Sets the bits of one field; `star` reports whether the field is unrestricted-looking (starts
// with '*', which matters for the day-of-month / day-of-week rule).
Status ParseField(const FieldSpec& f, const std::string& text, std::vector<bool>* bits,
                  bool* star) {
  bits->assign(static_cast<size_t>(f.max) + 1, false);
  *star = !text.empty() && text[0] == '*';
  for (const std::string& term : Split(text, ',')) {
    if (term.empty()) return FieldError(f, text, "empty list element");
    std::vector<std::string> step_parts = Split(term, '/');
    if (step_parts.size() > 2) return FieldError(f, term, "more than one '/'");
    int step = 1;
    if (step_parts.size() == 2) {
      const std::string& s = step_parts[1];
      if (!IsDigits(s) || s.size() > 3 || std::stoi(s) == 0) {
        return FieldError(f, term, "the step after '/' must be a positive number");
      }
      step = std::stoi(s);
    }
    const std::string& range = step_parts[0];
    int lo = f.min;
    int hi = f.max;
    if (range != "*") {
      std::vector<std::string> ends = Split(range, '-');
      if (ends.size() > 2) return FieldError(f, term, "more than one '-'");
      PETREL_ASSIGN_OR_RETURN(lo, ParseValue(f, term, ends[0]));
      if (ends.size() == 2) {
        PETREL_ASSIGN_OR_RETURN(hi, ParseValue(f, term, ends[1]));
        if (hi < lo) return FieldError(f, term, "range end is before its start");
      } else if (step_parts.size() == 1) {
        hi = lo;  // a single value; "a/n" means a..max every n
      }
    }
    for (int v = lo; v <= hi; v += step) (*bits)[static_cast<size_t>(v)] = true;
  }
  return Status::Ok();
}

template <size_t N>
void CopyBits(const std::vector<bool>& from, int offset, std::bitset<N>* to) {
  for (size_t i = 0; i < from.size(); ++i) {
    if (from[i]) to->set((i + static_cast<size_t>(offset)) % N);
  }
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

}  // namespace

Result<CronSchedule> CronSchedule::Parse(const std::string& raw) {
  std::string text = Trim(raw);
  static const std::map<std::string, std::string> kMacros = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  std::string expanded = text;
  if (!text.empty() && text[0] == '@') {
    auto it = kMacros.find(text);
    if (it == kMacros.end()) {
      return InvalidError("unknown macro \"" + text +
                          "\"; use @yearly, @monthly, @weekly, @daily or @hourly, or 5 fields");
    }
    expanded = it->second;
  }
  std::istringstream in(expanded);
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  if (fields.size() != 5) {
    return InvalidError("\"" + text + "\" has " + std::to_string(fields.size()) +
                        " fields; a schedule has 5: minute hour day-of-month month "
                        "day-of-week, e.g. \"0 0 * * *\" (daily at midnight UTC)");
  }
  static const FieldSpec kFields[5] = {{"minute", 0, 59, nullptr},
                                       {"hour", 0, 23, nullptr},
                                       {"day-of-month", 1, 31, nullptr},
                                       {"month", 1, 12, &MonthNames()},
                                       {"day-of-week", 0, 7, &WeekdayNames()}};
  CronSchedule s;
  s.text_ = text;
  std::vector<bool> bits;
  bool star = false;
  PETREL_RETURN_IF_ERROR(ParseField(kFields[0], fields[0], &bits, &star));
  CopyBits(bits, 0, &s.minutes_);
  PETREL_RETURN_IF_ERROR(ParseField(kFields[1], fields[1], &bits, &star));
  CopyBits(bits, 0, &s.hours_);
  PETREL_RETURN_IF_ERROR(ParseField(kFields[2], fields[2], &bits, &s.day_of_month_star_));
  CopyBits(bits, 0, &s.days_of_month_);
  PETREL_RETURN_IF_ERROR(ParseField(kFields[3], fields[3], &bits, &star));
  CopyBits(bits, 0, &s.months_);
  PETREL_RETURN_IF_ERROR(ParseField(kFields[4], fields[4], &bits, &s.day_of_week_star_));
  CopyBits(bits, 0, &s.days_of_week_);  // 7 wraps onto 0 (Sunday)
  return s;
}

bool CronSchedule::DayMatches(int day_of_month, int month, int weekday) const {
  if (!months_.test(static_cast<size_t>(month))) return false;
  bool dom = days_of_month_.test(static_cast<size_t>(day_of_month));
  bool dow = days_of_week_.test(static_cast<size_t>(weekday));
  if (!day_of_month_star_ && !day_of_week_star_) return dom || dow;
  return dom && dow;
}

namespace {

struct Day {
  int day_of_month;
  int month;
  int weekday;
};

Day DayOf(sys_days d) {
  std::chrono::year_month_day ymd{d};
  return {static_cast<int>(static_cast<unsigned>(ymd.day())),
          static_cast<int>(static_cast<unsigned>(ymd.month())),
          static_cast<int>(std::chrono::weekday{d}.c_encoding())};
}

}  // namespace

std::optional<SystemTime> CronSchedule::Next(SystemTime after) const {
  auto start = std::chrono::floor<minutes>(after) + minutes(1);
  sys_days day = std::chrono::floor<days>(start);
  int first_minute = static_cast<int>((start - day).count());
  for (int i = 0; i < kSearchDays; ++i, day += days(1), first_minute = 0) {
    Day d = DayOf(day);
    if (!DayMatches(d.day_of_month, d.month, d.weekday)) continue;
    for (int m = first_minute; m < kMinutesPerDay; ++m) {
      if (hours_.test(static_cast<size_t>(m / 60)) && minutes_.test(static_cast<size_t>(m % 60))) {
        return SystemTime(day) + minutes(m);
      }
    }
  }
  return std::nullopt;
}

std::optional<SystemTime> CronSchedule::Previous(SystemTime at) const {
  auto start = std::chrono::floor<minutes>(at);
  sys_days day = std::chrono::floor<days>(start);
  int last_minute = static_cast<int>((start - day).count());
  for (int i = 0; i < kSearchDays; ++i, day -= days(1), last_minute = kMinutesPerDay - 1) {
    Day d = DayOf(day);
    if (!DayMatches(d.day_of_month, d.month, d.weekday)) continue;
    for (int m = last_minute; m >= 0; --m) {
      if (hours_.test(static_cast<size_t>(m / 60)) && minutes_.test(static_cast<size_t>(m % 60))) {
        return SystemTime(day) + minutes(m);
      }
    }
  }
  return std::nullopt;
}

}  // namespace petrel
