#include "cli/plugin/snapshot_views.h"

#include <algorithm>

#include "reconcilers/volume_snapshot.h"

namespace petrel::plugin {

std::string ShortAge(SystemTime now, SystemTime then) {
  auto s = std::chrono::duration_cast<std::chrono::seconds>(now - then).count();
  if (s < 0) s = 0;
  if (s < 120) return std::to_string(s) + "s";
  if (s < 2 * 3600) return std::to_string(s / 60) + "m";
  if (s < 2 * 86400) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

Json SnapshotSummaries(const std::vector<Json>& snapshots, SystemTime now) {
  std::vector<ObservedSnapshot> observed;
  for (const auto& s : snapshots) observed.push_back(ReadVolumeSnapshot(s));
  std::sort(observed.begin(), observed.end(), [](const auto& a, const auto& b) {
    SystemTime ta = a.time.value_or(SystemTime{});
    SystemTime tb = b.time.value_or(SystemTime{});
    return ta != tb ? ta > tb : a.name > b.name;
  });
  Json out = Json::array();
  for (const auto& s : observed) {
    std::string state = s.being_deleted    ? "Deleting"
                        : !s.error.empty() ? "Failed"
                        : s.ready          ? "Ready"
                                           : "InProgress";
    std::string trigger = !s.slot.empty()      ? "scheduled"
                          : !s.request.empty() ? "requested"
                                               : "other";
    Json j = {{"name", s.name},
              {"instance", s.instance},
              {"ready", s.ready},
              {"state", state},
              {"size", s.restore_size},
              {"trigger", trigger},
              {"created", s.time ? FormatRfc3339(*s.time) : ""},
              {"age", s.time ? ShortAge(now, *s.time) : ""}};
    if (!s.error.empty()) j["error"] = s.error;
    out.push_back(std::move(j));
  }
  return out;
}

Table SnapshotListTable(const Json& summaries) {
  Table t;
  t.headers = {"NAME", "INSTANCE", "STATE", "SIZE", "AGE", "TRIGGER"};
  for (const auto& s : summaries) {
    std::string size = s.value("size", "");
    t.rows.push_back({s.value("name", ""), s.value("instance", ""), s.value("state", ""),
                      size.empty() ? "-" : size, s.value("age", ""), s.value("trigger", "")});
  }
  return t;
}

Json SnapshotRequestPatch(const std::string& request) {
  return {{"metadata", {{"annotations", {{kSnapshotRequestAnnotation, request}}}}}};
}

}  // namespace petrel::plugin
