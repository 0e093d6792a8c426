#include "reconcilers/cluster_reconciler.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <future>
#include <set>
#include <vector>

namespace petrel {

Result<std::string> RandomToken(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    return InternalError("OpenSSL's random generator failed; cannot create a secret");
  }
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : raw) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      out += kAlphabet[(acc >> (bits - 6)) & 0x3F];
      bits -= 6;
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 0x3F];
  return out;
}

const std::vector<const ResourceType*>& ClusterReconcilerWatchedTypes() {
  static const std::vector<const ResourceType*> kTypes = {
      &resources::kPostgresCluster, &resources::kPod,    &resources::kPersistentVolumeClaim,
      &resources::kService,         &resources::kSecret, &resources::kPodDisruptionBudget};
  return kTypes;
}

ClusterObservation ClusterReconciler::Observe(const Json& cluster) {
  ClusterObservation o;
  o.cluster = cluster;
  SystemTime wall = deps_.clock.WallNow();
  o.now = FormatRfc3339(wall);
  o.now_unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()).count();
  o.pdb_type = deps_.pdb_type;
  std::string name = meta::Name(cluster);
  std::string ns = meta::Namespace(cluster);
  LabelSelector selector = LabelSelector::FromMap({{kClusterLabel, name}});

  for (const auto& p : deps_.reader.List(resources::kPod, ns, selector)) o.pods.push_back(*p);
  // Members whose Pod lost its labels are still found by name (and relabelled), not
  // re-created over an existing Pod.
  const Json& recorded = cluster.contains("status") ? cluster["status"] : Json();
  if (recorded.is_object() && recorded.contains("instanceNames") &&
      recorded["instanceNames"].is_array()) {
    for (const auto& n : recorded["instanceNames"]) {
      if (!n.is_string()) continue;
      bool seen = std::any_of(o.pods.begin(), o.pods.end(),
                              [&](const Json& p) { return meta::Name(p) == n; });
      if (seen) continue;
      if (auto pod = deps_.reader.Get(resources::kPod, {ns, n.get<std::string>()})) {
        o.pods.push_back(*pod);
      }
    }
  }
  for (const auto& p : deps_.reader.List(resources::kPersistentVolumeClaim, ns, selector)) {
    o.pvcs.push_back(*p);
  }
  // Services by name as well as by label: a managed Service whose labels were edited away
  // must still be found (and repaired), not re-created.
  std::set<std::string> service_names = {name + "-rw", name + "-ro", name + "-r"};
  for (const auto& p : o.pods) service_names.insert(meta::Name(p));
  for (const auto& p : o.pvcs) service_names.insert(meta::Name(p));
  const Json& status = cluster.contains("status") ? cluster["status"] : Json();
  if (status.is_object() && status.contains("instanceNames") &&
      status["instanceNames"].is_array()) {
    for (const auto& n : status["instanceNames"]) {
      if (n.is_string()) service_names.insert(n.get<std::string>());
    }
  }
  for (const auto& s : deps_.reader.List(resources::kService, ns, selector)) {
    o.services[meta::Name(*s)] = *s;
  }
  for (const auto& n : service_names) {
    if (o.services.count(n)) continue;
    if (auto s = deps_.reader.Get(resources::kService, {ns, n})) o.services[n] = *s;
  }
  for (const char* purpose : {"superuser", "replication", "petrel"}) {
    std::string n = SecretName(name, purpose);
    if (auto s = deps_.reader.Get(resources::kSecret, {ns, n})) o.secrets[n] = *s;
  }
  for (const std::string& n : {name, name + "-primary"}) {
    if (auto s = deps_.reader.Get(*deps_.pdb_type, {ns, n})) o.pdbs[n] = *s;
  }
  // The snapshot a new cluster restores from, until the restore has started. Read directly,
  // not from a cache: the VolumeSnapshot API is an add-on that may not be installed.
  static const Json::json_pointer kSnapshotName("/spec/bootstrap/snapshot/name");
  static const Json::json_pointer kCurrentPrimary("/status/currentPrimary");
  auto text = [&](const Json::json_pointer& p) {
    return cluster.contains(p) && cluster[p].is_string() ? cluster[p].get<std::string>() : "";
  };
  std::string snapshot = text(kSnapshotName);
  if (!snapshot.empty() && text(kCurrentPrimary).empty()) {
    o.restore_snapshot = deps_.client.Get(resources::kVolumeSnapshot, {ns, snapshot});
  }
  ObserveInstances(o);
  return o;
}

Millis SuspectTimeout(int64_t lease_duration_ms) {
  // A quarter of the lease: a freshly promoted primary on a loaded node can take more than
  // 100 ms to answer, and treating that as a failure replaced a healthy primary in the
  // failover bench. The lease bound, not this read, decides when a promotion is safe.
  return Millis(std::max<int64_t>(250, lease_duration_ms / 4));
}

namespace {

// spec.leaseDurationMilliseconds as written, else the default (the planner validates it).
int64_t LeaseDurationOf(const Json& cluster) {
  const Json& spec = cluster.value("spec", Json::object());
  if (spec.contains("leaseDurationMilliseconds") &&
      spec["leaseDurationMilliseconds"].is_number_integer()) {
    return spec["leaseDurationMilliseconds"].get<int64_t>();
  }
  return kDefaultLeaseDurationMs;
}

}  // namespace

void ClusterReconciler::ObserveInstances(ClusterObservation& o) {
  ObjectKey key = meta::Key(o.cluster);
  int64_t lease_duration = LeaseDurationOf(o.cluster);
  PostgresClusterStatus status =
      PostgresClusterStatus::FromJson(o.cluster.value("status", Json::object()));
  const auto& change = status.primary_change;
  bool failing_over = change && change->kind == PrimaryChangeKind::kFailover &&
                      status.current_primary == change->from;
  Millis suspect_timeout = SuspectTimeout(lease_duration);
  // Bounded before the reads: once the old lease has expired, the positions read next are
  // final (a replaced primary cut off from this controller but not from its standbys can
  // commit until then), and the promotion chooses on them.
  if (failing_over && deps_.leases) {
    o.old_lease_expires_in_ms = deps_.leases->OldLeaseExpiresInMs(
        key, change->from, std::max<int64_t>(status.term, 1), lease_duration);
  }
  {
    std::lock_guard<std::mutex> l(abandoned_mu_);
    std::erase_if(abandoned_, [](const auto& f) {
      return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    });
  }
  // In parallel: one instance that does not answer must not delay seeing the others. One
  // whose lease renewal just went unanswered gets a short timeout (fast failure detection).
  std::vector<std::pair<std::string, std::future<Result<InstanceStatus>>>> asked;
  for (const auto& pod : o.pods) {
    if (meta::IsBeingDeleted(pod)) continue;
    std::string name = meta::Name(pod);
    bool suspect = deps_.leases && deps_.leases->Unanswered(key, name);
    // The primary being replaced is only asked so that it can be fenced if it is back: every
    // poll of the failover waits for it, so it gets the shortest bound.
    Millis timeout =
        failing_over && name == change->from ? kReplacedPrimaryTimeout : suspect_timeout;
    // The pod is copied: a read given up on below outlives this observation.
    asked.emplace_back(name, std::async(std::launch::async, [this, pod, suspect, timeout] {
                         return suspect ? deps_.instances.GetStatusWithin(pod, timeout)
                                        : deps_.instances.GetStatus(pod);
                       }));
  }
  // An instance frozen just before this observation began was asked with the ordinary
  // timeout (seconds). Once its lease renewal fails as well it gets no longer than a suspect
  // would: waiting on would hold up the failover by the rest of that timeout.
  const auto asked_at = std::chrono::steady_clock::now();
  for (auto& [name, answer] : asked) {
    while (answer.wait_for(Millis(10)) != std::future_status::ready) {
      if (deps_.leases && deps_.leases->Unanswered(key, name) &&
          std::chrono::steady_clock::now() - asked_at >= suspect_timeout) {
        break;
      }
    }
    if (answer.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      o.instances.emplace(name, answer.get());
      continue;
    }
    o.instances.emplace(name, TimeoutError("GET /status of " + name + ": no answer within " +
                                           std::to_string(suspect_timeout.count()) +
                                           " ms, and its lease renewal failed"));
    std::lock_guard<std::mutex> l(abandoned_mu_);
    abandoned_.push_back(std::move(answer));
  }

  if (!deps_.leases) return;
  for (const auto& [name, answer] : o.instances) {
    if (answer.ok() && answer->term > 0) deps_.leases->NoteTermAccepted(key, name, answer->term);
  }
}

ClusterReconciler::~ClusterReconciler() {
  std::lock_guard<std::mutex> l(abandoned_mu_);
  for (auto& f : abandoned_) f.wait();
}

ObjectPtr ClusterReconciler::Freshest(const ObjectKey& key, ObjectPtr cached) {
  std::lock_guard<std::mutex> l(written_mu_);
  auto it = written_.find(key);
  if (it == written_.end()) return cached;
  const Json& mine = it->second;
  // resourceVersions are opaque to clients in general, but both kube-apiserver (etcd
  // revisions) and petrel local issue increasing integers; anything else: trust the cache.
  auto number = [](const std::string& rv) -> std::optional<uint64_t> {
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(rv.data(), rv.data() + rv.size(), v);
    if (ec != std::errc() || end != rv.data() + rv.size() || rv.empty()) return std::nullopt;
    return v;
  };
  std::optional<uint64_t> cached_rv = cached ? number(meta::ResourceVersion(*cached)) : std::nullopt;
  std::optional<uint64_t> mine_rv = number(meta::ResourceVersion(mine));
  if (cached && cached_rv && mine_rv && *cached_rv < *mine_rv) {
    return std::make_shared<const Json>(mine);  // the cache has not seen our write yet
  }
  written_.erase(it);
  return cached;
}

void ClusterReconciler::RememberWritten(const ObjectKey& key, std::optional<Json> written) {
  std::lock_guard<std::mutex> l(written_mu_);
  if (written) {
    written_[key] = std::move(*written);
  } else {
    written_.erase(key);
  }
}

Result<ReconcileResult> ClusterReconciler::Reconcile(const ObjectKey& key) {
  ObjectPtr cluster = Freshest(key, deps_.reader.Get(resources::kPostgresCluster, key));
  if (!cluster) {
    if (deps_.leases) deps_.leases->Forget(key);
    return ReconcileResult::Done();  // deleted: owner references clean up
  }
  ClusterObservation observed = Observe(*cluster);
  ClusterPlan plan = PlanCluster(observed);
  Status executed = Execute(*cluster, plan);
  PublishMetrics(*cluster, plan);
  PETREL_RETURN_IF_ERROR(executed);
  if (plan.requeue_after.count() == 0) return ReconcileResult::Done();
  return ReconcileResult::RequeueAfter(plan.requeue_after);
}

Status ClusterReconciler::Execute(const Json& cluster, const ClusterPlan& plan) {
  std::string where = meta::Key(cluster).ToString();
  for (const auto& s : plan.secrets) {
    PETREL_ASSIGN_OR_RETURN(std::string password, deps_.generate_password());
    Json secret = s.object;
    secret["stringData"]["password"] = password;
    auto created = deps_.client.Create(resources::kSecret, secret);
    if (!created.ok() && created.status().code() != Code::kAlreadyExists) {
      return created.status().Annotate("creating Secret " + meta::Name(s.object));
    }
    spdlog::info("{}: created Secret {}", where, meta::Name(s.object));
  }
  for (const auto& a : plan.actions) {
    Status st;
    switch (a.op) {
      case ObjectOp::kCreate: {
        auto r = deps_.client.Create(*a.type, a.body);
        st = r.ok() || r.status().code() == Code::kAlreadyExists ? Status::Ok() : r.status();
        break;
      }
      case ObjectOp::kMergePatch: {
        auto r = deps_.client.Patch(*a.type, a.key, PatchType::kMerge, a.body);
        st = r.ok() || r.status().code() == Code::kNotFound ? Status::Ok() : r.status();
        break;
      }
      case ObjectOp::kDelete: {
        Status d = deps_.client.Delete(*a.type, a.key);
        st = d.ok() || d.code() == Code::kNotFound ? Status::Ok() : d;
        break;
      }
    }
    if (!st.ok()) return st.Annotate(where + ": " + a.description);
    spdlog::info("{}: {}", where, a.description);
  }
  if (plan.status) {
    Json updated = cluster;
    updated["status"] = plan.status->ToJson();
    auto r = deps_.client.UpdateStatus(resources::kPostgresCluster, updated);
    // Someone else wrote in between (a switchover request, a spec edit): plan from the cache.
    RememberWritten(meta::Key(cluster), r.ok() ? std::optional<Json>(*r) : std::nullopt);
    if (!r.ok()) return r.status().Annotate(where + ": writing status");
  }
  ObjectKey key = meta::Key(cluster);
  // No renewal may start after a replica has been told the next term: stop first.
  if (deps_.leases && !plan.lease) deps_.leases->SetTarget(key, std::nullopt, Json());
  bool put_failed = false;
  for (const auto& put : plan.spec_puts) {
    ObjectPtr pod = deps_.reader.Get(resources::kPod, {meta::Namespace(cluster), put.pod});
    if (!pod) continue;
    Status st = deps_.instances.PutSpec(*pod, put.spec);
    if (st.ok() && deps_.leases) deps_.leases->NoteTermAccepted(key, put.pod, put.spec.term);
    if (!st.ok()) {
      // The instance may still be starting; the next reconcile (soon: the plan requeues while
      // instances are not ready) tries again.
      spdlog::warn("{}: instance {} did not accept its spec: {}", where, put.pod, st.ToString());
      put_failed = true;
    }
  }
  // After the PUTs: a just-promoted primary accepts a lease only once it has its new spec.
  if (deps_.leases && plan.lease) {
    if (ObjectPtr pod = deps_.reader.Get(resources::kPod, {meta::Namespace(cluster), plan.lease->pod})) {
      deps_.leases->SetTarget(key, plan.lease, *pod);
    }
  }
  for (const auto& e : plan.events)
    deps_.events.Record(cluster, e.type, e.reason, e.action, e.note);
  if (put_failed && plan.requeue_after.count() == 0) {
    return UnavailableError("an instance did not accept its spec");
  }
  return Status::Ok();
}

void ClusterReconciler::PublishMetrics(const Json& cluster, const ClusterPlan& plan) {
  if (!deps_.metrics) return;
  MetricsRegistry& m = *deps_.metrics;
  std::vector<std::string> labels = {meta::Namespace(cluster), meta::Name(cluster)};
  PostgresClusterStatus status =
      plan.status ? *plan.status
                  : PostgresClusterStatus::FromJson(cluster.value("status", Json::object()));
  const Json& spec = cluster.value("spec", Json::object());
  int64_t desired = spec.contains("replicas") && spec["replicas"].is_number_integer()
                        ? spec["replicas"].get<int64_t>()
                        : 1;
  m.Gauge("petrel_cluster_instances_desired",
          "Instances a PostgresCluster asks for (spec.replicas), primary included.",
          {"namespace", "cluster"})
      .WithLabels(labels)
      .Set(static_cast<double>(desired));
  m.Gauge("petrel_cluster_instances_ready", "Instances of a PostgresCluster that are ready.",
          {"namespace", "cluster"})
      .WithLabels(labels)
      .Set(status.ready_replicas);
  Counter& failovers = m.Counter("petrel_cluster_failovers_total",
                                 "Completed failovers of a PostgresCluster (status.failovers).",
                                 {"namespace", "cluster"})
                           .WithLabels(labels);
  double missing = static_cast<double>(status.failovers) - failovers.Value();
  if (missing > 0) failovers.Inc(missing);
}

std::unique_ptr<Reconciler> NewClusterReconciler(ClusterReconcilerDeps deps) {
  return std::make_unique<ClusterReconciler>(std::move(deps));
}

}  // namespace petrel
