#include "reconcilers/volume_snapshot.h"

#include <cstdio>
#include <ctime>

#include "reconcilers/cluster_plan.h"

namespace petrel {

namespace {

const Json& At(const Json& j, std::initializer_list<const char*> path) {
  static const Json kNull;
  const Json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object()) return kNull;
    auto it = cur->find(key);
    if (it == cur->end()) return kNull;
    cur = &*it;
  }
  return *cur;
}

std::string StringOf(const Json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_number()) return j.dump();
  return "";
}

std::optional<SystemTime> TimeOf(const Json& j) {
  SystemTime t;
  if (j.is_string() && ParseRfc3339(j.get<std::string>(), &t)) return t;
  return std::nullopt;
}

}  // namespace

ObservedSnapshot ReadVolumeSnapshot(const Json& snapshot) {
  ObservedSnapshot s;
  s.name = meta::Name(snapshot);
  s.cluster = meta::Label(snapshot, kClusterLabel);
  s.cluster_uid = meta::Label(snapshot, kClusterUidLabel);
  s.instance = meta::Label(snapshot, kInstanceLabel);
  if (s.instance.empty()) {
    s.instance = StringOf(At(snapshot, {"spec", "source", "persistentVolumeClaimName"}));
  }
  s.ready = At(snapshot, {"status", "readyToUse"}) == Json(true);
  s.error = StringOf(At(snapshot, {"status", "error", "message"}));
  if (s.error.empty() && At(snapshot, {"status", "error"}).is_object()) {
    s.error = "the snapshot failed without a message";
  }
  s.restore_size = StringOf(At(snapshot, {"status", "restoreSize"}));
  s.time = TimeOf(At(snapshot, {"status", "creationTime"}));
  if (!s.time) s.time = TimeOf(At(snapshot, {"metadata", "creationTimestamp"}));
  s.slot = meta::Annotation(snapshot, kSnapshotSlotAnnotation);
  s.request = meta::Annotation(snapshot, kSnapshotRequestAnnotation);
  std::string major = meta::Annotation(snapshot, kPgMajorAnnotation);
  if (!major.empty() && major.size() <= 3 &&
      major.find_first_not_of("0123456789") == std::string::npos) {
    s.pg_major = std::stoi(major);
  }
  s.system_id = meta::Annotation(snapshot, kSystemIdAnnotation);
  s.being_deleted = meta::IsBeingDeleted(snapshot);
  return s;
}

std::string SnapshotName(const std::string& cluster, SystemTime t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  return cluster + "-" + buf;
}

}  // namespace petrel
