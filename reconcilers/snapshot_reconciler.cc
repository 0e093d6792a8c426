#include "reconcilers/snapshot_reconciler.h"

#include <spdlog/spdlog.h>

namespace petrel {

bool UsesSnapshots(const Json& cluster) {
  const Json& spec = cluster.contains("spec") ? cluster["spec"] : Json();
  const Json& status = cluster.contains("status") ? cluster["status"] : Json();
  return (spec.is_object() && spec.contains("snapshots") && !spec["snapshots"].is_null()) ||
         (status.is_object() && status.contains("snapshots")) ||
         !meta::Annotation(cluster, kSnapshotRequestAnnotation).empty();
}

SnapshotObservation SnapshotReconciler::Observe(const Json& cluster) {
  SnapshotObservation o;
  o.cluster = cluster;
  o.now = deps_.clock.WallNow();
  std::string ns = meta::Namespace(cluster);
  LabelSelector selector = LabelSelector::FromMap({{kClusterLabel, meta::Name(cluster)}});
  ListOptions options;
  options.label_selector = selector.ToString();
  auto listed = deps_.client.ListAll(resources::kVolumeSnapshot, ns, options);
  if (listed.ok()) {
    o.snapshots = std::move(listed->items);
  } else {
    o.snapshots = listed.status();
  }
  for (const auto& p : deps_.reader.List(resources::kPersistentVolumeClaim, ns, selector)) {
    o.pvcs.push_back(*p);
  }
  return o;
}

Result<ReconcileResult> SnapshotReconciler::Reconcile(const ObjectKey& key) {
  ObjectPtr cluster = deps_.reader.Get(resources::kPostgresCluster, key);
  if (!cluster || !UsesSnapshots(*cluster)) return ReconcileResult::Done();
  SnapshotPlan plan = PlanSnapshots(Observe(*cluster));
  PETREL_RETURN_IF_ERROR(Execute(*cluster, plan));
  if (plan.requeue_after.count() == 0) return ReconcileResult::Done();
  return ReconcileResult::RequeueAfter(plan.requeue_after);
}

Status SnapshotReconciler::Execute(const Json& cluster, const SnapshotPlan& plan) {
  std::string where = meta::Key(cluster).ToString();
  if (plan.create) {
    auto created = deps_.client.Create(resources::kVolumeSnapshot, *plan.create);
    if (!created.ok()) {
      // AlreadyExists too: the name is per second, the next attempt gets a new one.
      return created.status().Annotate(where + ": creating VolumeSnapshot " +
                                       meta::Name(*plan.create));
    }
    spdlog::info("{}: created VolumeSnapshot {}", where, meta::Name(*plan.create));
  }
  for (const auto& name : plan.deletes) {
    Status st = deps_.client.Delete(resources::kVolumeSnapshot, {meta::Namespace(cluster), name});
    if (!st.ok() && st.code() != Code::kNotFound) {
      return st.Annotate(where + ": deleting VolumeSnapshot " + name);
    }
    spdlog::info("{}: deleted VolumeSnapshot {} (retention)", where, name);
  }
  if (plan.status) {
    // A merge patch of status.snapshots alone; keys that disappeared are nulled explicitly.
    Json want = plan.status->ToJson();
    Json patch = want;
    const Json& status = cluster.contains("status") ? cluster["status"] : Json();
    if (status.is_object() && status.contains("snapshots") && status["snapshots"].is_object()) {
      for (const auto& [k, v] : status["snapshots"].items()) {
        if (!want.contains(k)) patch[k] = nullptr;
      }
    }
    PatchOptions options;
    options.subresource = "status";
    auto r = deps_.client.Patch(resources::kPostgresCluster, meta::Key(cluster), PatchType::kMerge,
                                {{"status", {{"snapshots", patch}}}}, options);
    if (!r.ok()) return r.status().Annotate(where + ": writing status.snapshots");
  }
  for (const auto& e : plan.events) {
    deps_.events.Record(cluster, e.type, e.reason, e.action, e.note);
  }
  return Status::Ok();
}

}  // namespace petrel
