#include "reconcilers/snapshot_plan.h"

#include <algorithm>

#include "core/cron.h"

namespace petrel {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr milliseconds kRequeueInProgress = seconds(10);
constexpr milliseconds kRequeueIdle = std::chrono::minutes(10);
constexpr milliseconds kRequeueApiMissing = std::chrono::minutes(5);

struct Source {
  std::string instance;
  std::string role;
};

bool HasLivePvc(const std::vector<Json>& pvcs, const std::string& name) {
  return std::any_of(pvcs.begin(), pvcs.end(), [&](const Json& p) {
    return meta::Name(p) == name && !meta::IsBeingDeleted(p);
  });
}

// The instance whose volume to snapshot; nullopt when none is ready.
std::optional<Source> ChooseSource(const std::string& cluster, const PostgresClusterStatus& status,
                                   SnapshotTarget target, const std::vector<Json>& pvcs) {
  bool switching =
      !status.target_primary.empty() && status.target_primary != status.current_primary;
  const InstanceState* best = nullptr;
  if (target == SnapshotTarget::kPreferStandby) {
    auto lag = [](const InstanceState* s) {
      return s->lag_bytes < 0 ? INT64_MAX : s->lag_bytes;  // unknown lag sorts last
    };
    for (const auto& s : status.instances) {
      if (s.role != "replica" || !s.ready || s.name == status.current_primary ||
          s.name == status.target_primary || !HasLivePvc(pvcs, s.name)) {
        continue;
      }
      if (!best || lag(&s) < lag(best) ||
          (lag(&s) == lag(best) &&
           InstanceSerial(cluster, s.name) < InstanceSerial(cluster, best->name))) {
        best = &s;
      }
    }
    if (best) return Source{best->name, "replica"};
  }
  if (switching) return std::nullopt;  // the primary is changing hands: wait
  const InstanceState* primary = status.FindInstance(status.current_primary);
  if (primary && primary->ready && HasLivePvc(pvcs, primary->name)) {
    return Source{primary->name, "primary"};
  }
  return std::nullopt;
}

Json DesiredSnapshot(const std::string& name, const std::string& ns, const Json& cluster,
                     const PostgresClusterStatus& status, int spec_major, const Source& source,
                     const std::optional<SnapshotSpec>& spec, const std::string& slot,
                     const std::string& request) {
  int major = status.postgres_major_version > 0 ? status.postgres_major_version : spec_major;
  Json annotations = {{kPgMajorAnnotation, std::to_string(major)},
                      {kSystemIdAnnotation, status.system_id}};
  if (!slot.empty()) annotations[kSnapshotSlotAnnotation] = slot;
  if (!request.empty()) annotations[kSnapshotRequestAnnotation] = request;
  Json snapshot_spec = {{"source", {{"persistentVolumeClaimName", source.instance}}}};
  if (spec && !spec->volume_snapshot_class_name.empty()) {
    snapshot_spec["volumeSnapshotClassName"] = spec->volume_snapshot_class_name;
  }
  // No ownerReference: snapshots outlive the cluster, so a deleted cluster can be restored.
  return {{"apiVersion", resources::kVolumeSnapshot.ApiVersion()},
          {"kind", resources::kVolumeSnapshot.kind},
          {"metadata",
           {{"name", name},
            {"namespace", ns},
            {"labels",
             {{kClusterLabel, meta::Name(cluster)},
              {kClusterUidLabel, meta::Uid(cluster)},
              {kInstanceLabel, source.instance},
              {kManagedByLabel, "petrel"}}},
            {"annotations", annotations}}},
          {"spec", snapshot_spec}};
}

bool NewerFirst(const ObservedSnapshot& a, const ObservedSnapshot& b) {
  SystemTime ta = a.time.value_or(SystemTime{});
  SystemTime tb = b.time.value_or(SystemTime{});
  if (ta != tb) return ta > tb;
  return a.name > b.name;
}

std::string Age(SystemTime now, SystemTime then) {
  auto s = duration_cast<seconds>(now - then).count();
  if (s < 120) return std::to_string(s) + "s";
  if (s < 2 * 3600) return std::to_string(s / 60) + "m";
  if (s < 2 * 86400) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

}  // namespace

SnapshotPlan PlanSnapshots(const SnapshotObservation& o) {
  SnapshotPlan plan;
  if (meta::IsBeingDeleted(o.cluster)) return plan;
  auto parsed = ParseClusterSpec(o.cluster.value("spec", Json::object()));
  if (!parsed.ok()) return plan;  // the cluster reconciler reports an invalid spec
  const std::optional<SnapshotSpec>& spec = parsed->snapshots;
  PostgresClusterStatus status = PostgresClusterStatus::FromJson(o.cluster.value("status", Json()));
  std::string request = meta::Annotation(o.cluster, kSnapshotRequestAnnotation);
  SnapshotsStatus old = status.snapshots.value_or(SnapshotsStatus{});
  bool request_pending = !request.empty() && request != old.last_request;
  if (!spec && !request_pending && !status.snapshots) return plan;  // snapshots not in use

  SnapshotsStatus next = old;
  auto publish = [&] {
    if (!status.snapshots || !(next == *status.snapshots)) plan.status = next;
  };
  auto transition_event = [&](EventType type, const std::string& reason) {
    if (old.reason != reason || old.healthy != next.healthy) {
      plan.events.push_back({type, reason, "Snapshot", next.message});
    }
  };

  std::optional<CronSchedule> cron;
  if (spec && !spec->suspend) {
    auto c = CronSchedule::Parse(spec->schedule);
    if (c.ok()) cron = *c;
  }
  std::optional<SystemTime> next_fire = cron ? cron->Next(o.now) : std::nullopt;
  next.next_schedule_time = next_fire ? FormatRfc3339(*next_fire) : "";

  if (!o.snapshots.ok()) {
    next.healthy = false;
    if (o.snapshots.status().code() == Code::kNotFound) {
      next.reason = "VolumeSnapshotApiMissing";
      next.message =
          "The snapshot.storage.k8s.io/v1 VolumeSnapshot API is not installed; install the CSI "
          "external-snapshotter CRDs and a snapshot-capable CSI driver, or remove "
          "spec.snapshots.";
    } else {
      next.reason = "SnapshotsUnreadable";
      next.message = "Cannot list VolumeSnapshots: " + o.snapshots.status().message();
    }
    transition_event(EventType::kWarning, next.reason);
    publish();
    plan.requeue_after = kRequeueApiMissing;
    return plan;
  }

  std::string uid = meta::Uid(o.cluster);
  std::vector<ObservedSnapshot> mine;
  for (const auto& j : *o.snapshots) {
    ObservedSnapshot s = ReadVolumeSnapshot(j);
    if (s.cluster_uid == uid) mine.push_back(std::move(s));
  }
  std::sort(mine.begin(), mine.end(), NewerFirst);

  // ---- What is due -------------------------------------------------------------------------
  std::string due_slot;
  if (cron) {
    SystemTime created;
    bool have_created = ParseRfc3339(
        o.cluster.value("metadata", Json::object()).value("creationTimestamp", ""), &created);
    std::optional<SystemTime> slot = cron->Previous(o.now);
    SystemTime last_handled{};
    SystemTime t;
    if (ParseRfc3339(old.last_schedule_time, &t)) last_handled = t;
    for (const auto& s : mine) {
      if (ParseRfc3339(s.slot, &t)) last_handled = std::max(last_handled, t);
    }
    if (slot && *slot > last_handled && (!have_created || *slot > created)) {
      due_slot = FormatRfc3339(*slot);
    }
  }
  if (request_pending) {
    bool answered = std::any_of(mine.begin(), mine.end(),
                                [&](const ObservedSnapshot& s) { return s.request == request; });
    if (answered) {
      next.last_request = request;
      request_pending = false;
    }
  }

  bool waiting_for_instance = false;
  if (!due_slot.empty() || request_pending) {
    std::optional<Source> source;
    if (!status.system_id.empty()) {
      source = ChooseSource(meta::Name(o.cluster), status,
                            spec ? spec->target : SnapshotTarget::kPreferStandby, o.pvcs);
    }
    if (source) {
      std::string name = SnapshotName(meta::Name(o.cluster), o.now);
      plan.create = DesiredSnapshot(name, meta::Namespace(o.cluster), o.cluster, status,
                                    parsed->postgres_major, *source, spec, due_slot,
                                    request_pending ? request : "");
      if (!due_slot.empty()) next.last_schedule_time = due_slot;
      if (request_pending) next.last_request = request;
      plan.events.push_back(
          {EventType::kNormal, "SnapshotStarted", "Snapshot",
           "Taking snapshot " + name + " of " + source->role + " " + source->instance + " (" +
               (due_slot.empty() ? "requested" : "scheduled for " + due_slot) + ")."});
    } else {
      waiting_for_instance = true;
    }
  }

  // ---- Retention ---------------------------------------------------------------------------
  std::vector<const ObservedSnapshot*> kept_ready;
  if (spec) {
    const SnapshotRetention& r = spec->retention;
    std::optional<SystemTime> newest_ready;
    std::vector<std::string> reasons;
    for (const auto& s : mine) {
      if (s.being_deleted) continue;
      bool too_old = r.max_age_seconds && s.time && o.now - *s.time > seconds(*r.max_age_seconds);
      if (s.ready) {
        if (!newest_ready) {
          newest_ready = s.time.value_or(SystemTime{});
          kept_ready.push_back(&s);  // the newest ready snapshot is always kept
          continue;
        }
        bool over_count = r.count && static_cast<int32_t>(kept_ready.size()) >= *r.count;
        if (over_count || too_old) {
          plan.deletes.push_back(s.name);
          reasons.push_back(s.name + (too_old
                                          ? " (older than " + r.max_age + ")"
                                          : " (more than " + std::to_string(*r.count) + " kept)"));
        } else {
          kept_ready.push_back(&s);
        }
      } else if (!s.error.empty()) {
        bool superseded = newest_ready && s.time && *newest_ready > *s.time;
        if (superseded || too_old) {
          plan.deletes.push_back(s.name);
          reasons.push_back(s.name + " (failed)");
        }
      }
    }
    if (!reasons.empty()) {
      std::string list;
      for (const auto& x : reasons) list += (list.empty() ? "" : ", ") + x;
      plan.events.push_back({EventType::kNormal, "SnapshotsPruned", "Snapshot",
                             "Deleted snapshot(s) by the retention: " + list + "."});
    }
  } else {
    for (const auto& s : mine) {
      if (s.ready && !s.being_deleted) kept_ready.push_back(&s);
    }
  }

  // ---- Status ------------------------------------------------------------------------------
  next.ready_count = static_cast<int32_t>(kept_ready.size());
  if (!kept_ready.empty()) {
    const ObservedSnapshot& last = *kept_ready.front();
    next.last_snapshot = last.name;
    next.last_snapshot_time = last.time ? FormatRfc3339(*last.time) : "";
    next.last_snapshot_instance = last.instance;
  } else {
    next.last_snapshot.clear();
    next.last_snapshot_time.clear();
    next.last_snapshot_instance.clear();
  }
  const ObservedSnapshot* newest = nullptr;
  for (const auto& s : mine) {
    if (!s.being_deleted) {
      newest = &s;
      break;
    }
  }
  bool in_progress = plan.create.has_value();
  for (const auto& s : mine) in_progress |= !s.ready && s.error.empty() && !s.being_deleted;

  SystemTime due_time;
  bool overdue = waiting_for_instance && !due_slot.empty() && ParseRfc3339(due_slot, &due_time) &&
                 o.now - due_time > kMissedSlotGrace;
  if (newest && !newest->error.empty() && !plan.create) {
    next.healthy = false;
    next.reason = "SnapshotFailed";
    next.message = "Snapshot " + newest->name + " of " + newest->instance +
                   " failed: " + newest->error +
                   ". Check the VolumeSnapshotClass and the CSI driver; the next slot tries again.";
    transition_event(EventType::kWarning, next.reason);
  } else if (newest && !newest->ready && newest->error.empty() && newest->time &&
             o.now - *newest->time > kSnapshotReadyTimeout && !plan.create) {
    next.healthy = false;
    next.reason = "SnapshotNotReady";
    next.message = "Snapshot " + newest->name + " of " + newest->instance + " is not ready after " +
                   Age(o.now, *newest->time) + "; check `kubectl describe volumesnapshot " +
                   newest->name + "`.";
    transition_event(EventType::kWarning, next.reason);
  } else if (overdue) {
    next.healthy = false;
    next.reason = "ScheduleMissed";
    next.message = "The snapshot due at " + due_slot +
                   " was not taken: no instance is ready. It is taken as soon as one is.";
    transition_event(EventType::kWarning, next.reason);
  } else if (!waiting_for_instance || next.healthy) {
    next.healthy = true;
    if (!spec) {
      next.reason = "OnDemandOnly";
      next.message = "No schedule (spec.snapshots is not set); snapshots are taken on request.";
    } else if (spec->suspend) {
      next.reason = "Suspended";
      next.message = "The schedule is suspended; snapshots are taken on request only.";
    } else {
      next.reason = "Scheduled";
      next.message = "Next snapshot at " + next.next_schedule_time + ".";
    }
  }
  publish();

  // ---- When to look again ------------------------------------------------------------------
  milliseconds requeue = kRequeueIdle;
  if (in_progress || waiting_for_instance || !plan.deletes.empty()) requeue = kRequeueInProgress;
  if (next_fire) {
    auto until = duration_cast<milliseconds>(*next_fire - o.now) + seconds(1);
    requeue = std::min(requeue, std::max<milliseconds>(until, seconds(1)));
  }
  plan.requeue_after = requeue;
  return plan;
}

}  // namespace petrel
