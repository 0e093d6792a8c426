#include "instance/timeline.h"

#include <sstream>

#include "api/instance.h"

namespace petrel {

std::map<std::string, std::string> ParseControlData(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // Keys contain colons only as the separator before the padding ("...TimeLineID:   1").
    auto colon = line.find(":  ");
    if (colon == std::string::npos) colon = line.rfind(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    auto start = line.find_first_not_of(' ', colon + 1);
    out[key] = start == std::string::npos ? "" : line.substr(start);
  }
  return out;
}

std::optional<LocalWalPosition> PositionFromControlData(
    const std::map<std::string, std::string>& control) {
  auto tli = control.find("Latest checkpoint's TimeLineID");
  auto checkpoint = control.find("Latest checkpoint location");
  if (tli == control.end() || checkpoint == control.end()) return std::nullopt;
  LocalWalPosition p;
  try {
    p.timeline = std::stoll(tli->second);
  } catch (...) {
    return std::nullopt;
  }
  if (!ParseLsn(checkpoint->second, &p.lsn)) return std::nullopt;
  p.inclusive = true;
  auto min_recovery = control.find("Minimum recovery ending location");
  uint64_t m = 0;
  if (min_recovery != control.end() && ParseLsn(min_recovery->second, &m) && m > p.lsn) {
    p.lsn = m;
    p.inclusive = false;
    // The minimum recovery point is on a timeline of its own (later than the checkpoint's
    // when a standby followed a promotion since its last restartpoint).
    auto min_tli = control.find("Min recovery ending loc's timeline");
    int64_t t = 0;
    if (min_tli != control.end()) {
      try {
        t = std::stoll(min_tli->second);
      } catch (...) {
      }
    }
    if (t > p.timeline) p.timeline = t;
  }
  return p;
}

std::optional<uint64_t> SwitchPoint(const std::string& history, int64_t timeline) {
  std::istringstream lines(history);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    int64_t tli = 0;
    std::string lsn;
    if (!(fields >> tli >> lsn) || tli != timeline) continue;
    uint64_t at = 0;
    if (!ParseLsn(lsn, &at)) return std::nullopt;
    return at;
  }
  return std::nullopt;
}

bool HasDiverged(const LocalWalPosition& local, int64_t primary_timeline,
                 const std::string& history) {
  if (primary_timeline == local.timeline) return false;
  if (primary_timeline < local.timeline) return true;  // we are on a newer branch
  std::optional<uint64_t> at = SwitchPoint(history, local.timeline);
  if (!at) return true;  // our timeline is not an ancestor of the primary's
  return local.inclusive ? local.lsn >= *at : local.lsn > *at;
}

}  // namespace petrel
