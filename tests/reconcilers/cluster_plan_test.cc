#include "reconcilers/cluster_plan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <set>

#include "reconcilers/cluster_reconciler.h"

namespace petrel {
namespace {

// A tiny in-memory world for the planner: the API objects one cluster owns, plus a model of
// each instance that converges to the last spec it was given. Applying a plan mutates the
// world as the executor and the instances would; tests then plan again from what is observed.
class World {
 public:
  explicit World(Json spec) {
    cluster_ = {
        {"apiVersion", "petrel.dev/v1alpha1"},
        {"kind", "PostgresCluster"},
        {"metadata", {{"name", "db"}, {"namespace", "ns"}, {"uid", "uid-db"}, {"generation", 1}}},
        {"spec", std::move(spec)}};
  }

  struct Instance {
    InstanceSpec spec;
    bool running = false;
    bool initialized = false;
    uint64_t lsn = 0x3000000;
    bool follows = true;            // streaming from the primary when a replica
    std::optional<bool> streaming;  // forces the reported WAL receiver state
    std::vector<HealthCheck> checks;  // reported as they are
  };

  void SetSpec(const std::string& path, Json value) {
    cluster_["spec"][Json::json_pointer(path)] = std::move(value);
    cluster_["metadata"]["generation"] = cluster_["metadata"]["generation"].get<int>() + 1;
  }

  ClusterObservation Observe() const {
    ClusterObservation o;
    o.cluster = cluster_;
    o.now = now_;
    o.old_lease_expires_in_ms = old_lease_expires_in_ms_;
    for (const auto& [name, pod] : pods_) o.pods.push_back(pod);
    for (const auto& [name, pvc] : pvcs_) o.pvcs.push_back(pvc);
    o.services = services_;
    o.secrets = secrets_;
    o.pdbs = pdbs_;
    for (const auto& [name, pod] : pods_) {
      if (!pod["status"].contains("podIP")) continue;  // not scheduled yet
      if (unreachable_.count(name)) {
        o.instances.emplace(name, UnavailableError("GET /status of " + name + ": timed out"));
        continue;
      }
      auto it = instances_.find(name);
      if (it == instances_.end()) {
        o.instances.emplace(name, InstanceStatus{name});
        continue;
      }
      o.instances.emplace(name, Report(name, it->second));
    }
    return o;
  }

  InstanceStatus Report(const std::string& name, const Instance& i) const {
    InstanceStatus s;
    s.name = name;
    if (bootstrapping_.count(name)) {  // initdb or pg_basebackup still running
      s.phase = i.spec.bootstrap == BootstrapMethod::kInitdb ? "initdb" : "cloning";
      s.message = "pg_basebackup in progress";
      s.spec_generation = i.spec.generation;
      return s;
    }
    s.initialized = i.initialized;
    s.running = i.running;
    s.fenced = i.spec.fenced;
    s.role = i.spec.role;
    s.ready = i.running && !i.spec.fenced;
    s.spec_generation = i.spec.generation;
    s.system_identifier = i.initialized ? "7300000000000000001" : "";
    s.phase = i.running ? "running" : "stopped";
    s.checks = i.checks;
    if (i.spec.role == InstanceRole::kPrimary) {
      s.current_lsn = FormatLsnForTest(i.lsn);
    } else {
      s.replay_lsn = FormatLsnForTest(i.lsn);
      s.received_lsn = s.replay_lsn;
      // A WAL receiver only streams while the primary it follows is up.
      bool primary_up = std::any_of(instances_.begin(), instances_.end(), [&](const auto& kv) {
        return kv.second.spec.role == InstanceRole::kPrimary && kv.second.running &&
               i.spec.primary && i.spec.primary->host == PodIp(kv.first);
      });
      s.streaming = i.streaming.value_or(i.follows && i.running && primary_up);
    }
    return s;
  }

  static std::string PodIp(const std::string& name) {
    return "10.1.0." + std::to_string(InstanceSerial("db", name));
  }

  static std::string FormatLsnForTest(uint64_t lsn) {
    char buf[32];
    snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
             static_cast<unsigned>(lsn & 0xffffffff));
    return buf;
  }

  // Applies a plan as the executor would, then lets the "kubelet" give new Pods an IP and the
  // instances converge to their specs.
  void Apply(const ClusterPlan& plan) {
    for (const auto& s : plan.secrets) secrets_[meta::Name(s.object)] = s.object;
    for (const auto& a : plan.actions) {
      auto& store = StoreFor(*a.type);
      switch (a.op) {
        case ObjectOp::kCreate: {
          Json obj = a.body;
          obj["metadata"]["uid"] = "uid-" + a.key.name;
          if (!obj.contains("status")) obj["status"] = Json::object();
          if (!store.count(a.key.name)) store[a.key.name] = obj;
          break;
        }
        case ObjectOp::kMergePatch:
          if (store.count(a.key.name)) store[a.key.name].merge_patch(a.body);
          break;
        case ObjectOp::kDelete:
          store.erase(a.key.name);
          if (a.type == &resources::kPod) {
            if (auto it = instances_.find(a.key.name); it != instances_.end()) {
              it->second.running = false;  // the process is gone; the volume stays
            }
          }
          break;
      }
    }
    if (plan.status) cluster_["status"] = plan.status->ToJson();
    for (const auto& put : plan.spec_puts) {
      Instance& i = instances_[put.pod];
      i.spec = put.spec;
      if (!i.initialized) {
        i.initialized = put.spec.bootstrap == BootstrapMethod::kInitdb ||
                        put.spec.bootstrap == BootstrapMethod::kClone;
      }
      i.running = i.initialized && !put.spec.fenced;
    }
    for (auto& [name, pod] : pods_) {
      if (!pod["status"].contains("podIP")) {
        pod["status"]["podIP"] = PodIp(name);
      }
      if (auto it = instances_.find(name);
          it != instances_.end() && it->second.initialized && !it->second.spec.fenced) {
        it->second.running = true;  // a recreated Pod starts from its volume
      }
    }
    events_.insert(events_.end(), plan.events.begin(), plan.events.end());
  }

  // Plans and applies until the plan is empty; returns the number of rounds (bounded).
  int Converge(int max_rounds = 30) {
    for (int round = 1; round <= max_rounds; ++round) {
      ClusterPlan plan = PlanCluster(Observe());
      if (plan.Empty()) return round;
      Apply(plan);
    }
    ADD_FAILURE() << "did not converge in " << max_rounds << " rounds";
    return max_rounds;
  }

  PostgresClusterStatus Status() const {
    return PostgresClusterStatus::FromJson(cluster_.value("status", Json::object()));
  }
  std::set<std::string> Names(const std::map<std::string, Json>& m) const {
    std::set<std::string> out;
    for (const auto& [k, v] : m) out.insert(k);
    return out;
  }

  std::map<std::string, Json>& StoreFor(const ResourceType& t) {
    if (&t == &resources::kPod) return pods_;
    if (&t == &resources::kPersistentVolumeClaim) return pvcs_;
    if (&t == &resources::kService) return services_;
    if (&t == &resources::kSecret) return secrets_;
    return pdbs_;
  }

  Json cluster_;
  std::string now_ = "2026-11-23T00:00:00Z";
  std::optional<int64_t> old_lease_expires_in_ms_;
  std::set<std::string> unreachable_;  // instances that do not answer
  std::map<std::string, Json> pods_, pvcs_, services_, secrets_, pdbs_;
  std::map<std::string, Instance> instances_;
  std::set<std::string> bootstrapping_;  // instances whose initdb/clone has not finished
  std::vector<PlannedEvent> events_;
};

Json Spec(int replicas) {
  return {{"replicas", replicas},
          {"image", "ghcr.io/petrel-dev/postgres:15.4"},
          {"storage", {{"size", "1Gi"}}}};
}

std::vector<std::string> Describe(const ClusterPlan& plan) {
  std::vector<std::string> out;
  for (const auto& a : plan.actions) out.push_back(a.description);
  return out;
}

bool HasAction(const ClusterPlan& plan, const std::string& description) {
  auto d = Describe(plan);
  return std::find(d.begin(), d.end(), description) != d.end();
}

bool HasEvent(const std::vector<PlannedEvent>& events, const std::string& reason) {
  return std::any_of(events.begin(), events.end(),
                     [&](const PlannedEvent& e) { return e.reason == reason; });
}

TEST(ClusterPlan, FreshClusterCreatesEverythingWithOwnerReferences) {
  World w(Spec(3));
  ClusterPlan plan = PlanCluster(w.Observe());
  EXPECT_EQ(plan.secrets.size(), 3u);
  for (const auto& s : plan.secrets) {
    EXPECT_EQ(s.object["type"], "kubernetes.io/basic-auth");
    EXPECT_FALSE(s.object["stringData"].contains("password"));  // the executor generates it
    EXPECT_EQ(meta::ControllerOf(s.object)->uid, "uid-db");
  }
  for (const char* want :
       {"create PVC db-1", "create PVC db-2", "create PVC db-3", "create Pod db-1",
        "create Pod db-2", "create Pod db-3", "create Service db-rw", "create Service db-ro",
        "create Service db-r", "create Service db-1", "create PodDisruptionBudget db-primary",
        "create PodDisruptionBudget db"}) {
    EXPECT_TRUE(HasAction(plan, want)) << want;
  }
  for (const auto& a : plan.actions) {
    if (a.type == &resources::kPersistentVolumeClaim) {
      EXPECT_FALSE(a.body["metadata"].contains("ownerReferences")) << "Retain keeps volumes";
      EXPECT_EQ(a.body["spec"]["resources"]["requests"]["storage"], "1Gi");
    } else {
      ASSERT_TRUE(meta::ControllerOf(a.body).has_value()) << a.description;
      EXPECT_EQ(meta::ControllerOf(a.body)->uid, "uid-db");
    }
    if (a.description == "create Pod db-1") {
      EXPECT_EQ(meta::Label(a.body, kRoleLabel), "primary");
      const Json& c = a.body["spec"]["containers"][0];
      EXPECT_EQ(c["command"], Json({"petrel", "instance"}));
      EXPECT_EQ(c["image"], "ghcr.io/petrel-dev/postgres:15.4");
      EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
      EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"], "/healthz");
      EXPECT_EQ(c["volumeMounts"][0]["mountPath"], "/var/lib/postgresql/data");
      EXPECT_EQ(a.body["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "db-1");
    }
    if (a.description == "create Pod db-2") {
      EXPECT_EQ(meta::Label(a.body, kRoleLabel), "replica");
    }
  }
  ASSERT_TRUE(plan.status.has_value());
  EXPECT_EQ(plan.status->current_primary, "db-1");
  EXPECT_EQ(plan.status->instance_names, (std::vector<std::string>{"db-1", "db-2", "db-3"}));
  EXPECT_EQ(plan.status->selector, "petrel.dev/cluster=db");
  EXPECT_EQ(plan.status->phase, "Provisioning");
  EXPECT_EQ(plan.status->FindCondition("Ready")->status, "False");
  EXPECT_TRUE(plan.spec_puts.empty()) << "no instance answers yet";
  EXPECT_EQ(plan.requeue_after, std::chrono::seconds(10));
}

TEST(ClusterPlan, InstanceSpecsBootstrapPrimaryThenClones) {
  World w(Spec(3));
  w.Apply(PlanCluster(w.Observe()));
  ClusterPlan plan = PlanCluster(w.Observe());
  std::map<std::string, InstanceSpec> specs;
  for (const auto& p : plan.spec_puts) specs[p.pod] = p.spec;
  ASSERT_EQ(specs.size(), 3u);
  EXPECT_EQ(specs["db-1"].role, InstanceRole::kPrimary);
  EXPECT_EQ(specs["db-1"].bootstrap, BootstrapMethod::kInitdb);
  EXPECT_EQ(specs["db-1"].replication_slots,
            (std::vector<std::string>{"petrel_db_2", "petrel_db_3"}));
  EXPECT_EQ(specs["db-2"].role, InstanceRole::kReplica);
  EXPECT_EQ(specs["db-2"].bootstrap, BootstrapMethod::kClone);
  ASSERT_TRUE(specs["db-2"].primary.has_value());
  EXPECT_EQ(specs["db-2"].primary->host, "10.1.0.1");
  EXPECT_EQ(specs["db-2"].primary->port, 5432);
  EXPECT_EQ(specs["db-2"].slot_name, "petrel_db_2");
  EXPECT_GT(specs["db-2"].generation, 0);
}

// spec.bootstrap.initdb reaches the primary's first spec only; replicas clone it.
TEST(ClusterPlan, InitdbOptionsGoToTheBootstrappingPrimaryOnly) {
  Json spec = Spec(2);
  spec["bootstrap"] = {{"initdb",
                        {{"database", "shop"},
                         {"owner", "shop_owner"},
                         {"encoding", "LATIN1"},
                         {"locale", "C"},
                         {"dataChecksums", false}}}};
  World w(spec);
  w.Apply(PlanCluster(w.Observe()));
  ClusterPlan plan = PlanCluster(w.Observe());
  std::map<std::string, InstanceSpec> specs;
  for (const auto& p : plan.spec_puts) specs[p.pod] = p.spec;
  ASSERT_EQ(specs.count("db-1"), 1u);
  EXPECT_EQ(specs["db-1"].initdb, (InitdbOptions{"shop", "shop_owner", "LATIN1", "C", false}));
  EXPECT_EQ(specs["db-2"].initdb, InitdbOptions{});
  w.Converge();
  EXPECT_EQ(w.instances_["db-1"].spec.bootstrap, BootstrapMethod::kNone);
  EXPECT_EQ(w.instances_["db-1"].spec.initdb, InitdbOptions{}) << "initdb options only at birth";

  // The owner defaults to the database's name.
  World defaults(Spec(1));
  defaults.Apply(PlanCluster(defaults.Observe()));
  ClusterPlan first = PlanCluster(defaults.Observe());
  ASSERT_EQ(first.spec_puts.size(), 1u);
  EXPECT_EQ(first.spec_puts[0].spec.initdb.database, "app");
  EXPECT_EQ(first.spec_puts[0].spec.initdb.owner, "app");
  EXPECT_TRUE(first.spec_puts[0].spec.initdb.data_checksums);
}

// Instances that have never been ready are being provisioned, not failing: the phase says
// Provisioning while a new cluster's replicas clone and Scaling while added ones do; only an
// instance that was ready before and is not now makes the cluster Degraded.
TEST(ClusterPlan, PhaseWhileNewInstancesAreStillBootstrapping) {
  struct Case {
    std::string name;
    int replicas;                   // the cluster, converged first unless `fresh`
    bool fresh;                     // a brand-new cluster: replicas clone after initdb
    int scale_to;                   // 0 = no scale change
    std::vector<std::string> slow;  // instances still in initdb/clone
    std::vector<std::string> down;  // instances that were ready and stopped
    std::string phase;
    std::string degraded;     // Degraded condition status
    std::string progressing;  // Progressing condition status
    std::string reason_has;
  };
  const std::vector<Case> cases = {
      {"fresh cluster, replicas cloning",
       3,
       true,
       0,
       {"db-2", "db-3"},
       {},
       "Provisioning",
       "False",
       "True",
       "db-2 (pg_basebackup in progress)"},
      {"fresh cluster, primary in initdb",
       3,
       true,
       0,
       {"db-1", "db-2", "db-3"},
       {},
       "Provisioning",
       "False",
       "True",
       "db-1"},
      {"fresh cluster, all ready", 3, true, 0, {}, {}, "Healthy", "False", "False", "healthy"},
      {"scale up, new instances cloning",
       2,
       false,
       4,
       {"db-3", "db-4"},
       {},
       "Scaling",
       "False",
       "True",
       "db-3"},
      {"replica that was ready stopped",
       3,
       false,
       0,
       {},
       {"db-3"},
       "Degraded",
       "True",
       "False",
       "db-3"},
      {"scale up while a ready replica stopped",
       2,
       false,
       3,
       {"db-3"},
       {"db-2"},
       "Degraded",
       "True",
       "False",
       "db-2"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    World w(Spec(c.replicas));
    if (c.fresh) w.bootstrapping_.insert(c.slow.begin(), c.slow.end());
    w.Converge();
    if (!c.fresh) {
      if (c.scale_to) w.SetSpec("/replicas", c.scale_to);
      w.bootstrapping_.insert(c.slow.begin(), c.slow.end());
      w.Converge();
    }
    // Stopped after the world settled (applying a plan restarts every initialised instance).
    for (const auto& name : c.down) w.instances_[name].running = false;
    ClusterPlan plan = PlanCluster(w.Observe());
    PostgresClusterStatus st = plan.status.value_or(w.Status());
    EXPECT_EQ(st.phase, c.phase) << st.phase_reason;
    EXPECT_NE(st.phase_reason.find(c.reason_has), std::string::npos) << st.phase_reason;
    EXPECT_EQ(st.FindCondition("Degraded")->status, c.degraded);
    EXPECT_EQ(st.FindCondition("Progressing")->status, c.progressing);
    EXPECT_EQ(st.FindCondition("Ready")->status,
              c.slow.empty() && c.down.empty() ? "True" : "False");
  }

  // Once a new instance has been ready, losing it is Degraded again.
  World w(Spec(2));
  w.bootstrapping_ = {"db-2"};
  w.Converge();
  EXPECT_EQ(w.Status().phase, "Provisioning");
  w.bootstrapping_.clear();
  w.Converge();
  EXPECT_EQ(w.Status().phase, "Healthy");
  ASSERT_NE(w.Status().FindInstance("db-2"), nullptr);
  EXPECT_TRUE(w.Status().FindInstance("db-2")->joined);
  w.instances_["db-2"].running = false;
  EXPECT_EQ(PlanCluster(w.Observe()).status.value_or(w.Status()).phase, "Degraded");
}

TEST(ClusterPlan, ConvergedClusterPlansNothing) {
  World w(Spec(3));
  w.Converge();
  auto status = w.Status();
  EXPECT_EQ(status.phase, "Healthy");
  EXPECT_EQ(status.ready_replicas, 3);
  EXPECT_EQ(status.replicas, 3);
  EXPECT_EQ(status.FindCondition("Ready")->status, "True");
  EXPECT_EQ(status.FindCondition("Progressing")->status, "False");
  EXPECT_EQ(status.FindCondition("Degraded")->status, "False");
  EXPECT_FALSE(status.system_id.empty());
  ClusterPlan plan = PlanCluster(w.Observe());
  EXPECT_TRUE(plan.Empty()) << ::testing::PrintToString(Describe(plan));
  EXPECT_TRUE(plan.events.empty());
  EXPECT_EQ(plan.requeue_after, std::chrono::seconds(60));
  // Once initialised, the primary's spec no longer asks for initdb: an empty volume under
  // an established cluster must never become a new, divergent cluster.
  EXPECT_EQ(w.instances_["db-1"].spec.bootstrap, BootstrapMethod::kNone);
}

TEST(ClusterPlan, ScaleUpThenDownNeverRemovesThePrimaryAndKeepsVolumes) {
  World w(Spec(3));
  w.Converge();
  w.SetSpec("/replicas", 5);
  ClusterPlan up = PlanCluster(w.Observe());
  EXPECT_TRUE(HasAction(up, "create Pod db-4"));
  EXPECT_TRUE(HasAction(up, "create Pod db-5"));
  EXPECT_TRUE(HasEvent(up.events, "ScalingUp"));
  w.Converge();
  EXPECT_EQ(w.Status().instance_names.size(), 5u);
  EXPECT_EQ(w.instances_["db-1"].spec.replication_slots.size(), 4u);

  w.SetSpec("/replicas", 2);
  ClusterPlan down = PlanCluster(w.Observe());
  EXPECT_TRUE(HasAction(down, "delete Pod db-5"));
  EXPECT_TRUE(HasAction(down, "delete Pod db-4"));
  EXPECT_TRUE(HasAction(down, "delete Pod db-3"));
  EXPECT_FALSE(HasAction(down, "delete Pod db-1"));
  EXPECT_FALSE(HasAction(down, "delete PVC db-5")) << "Retain keeps volumes";
  EXPECT_TRUE(HasAction(down, "delete Service db-5"));
  w.Converge();
  EXPECT_EQ(w.Status().instance_names, (std::vector<std::string>{"db-1", "db-2"}));
  EXPECT_EQ(w.pvcs_.size(), 5u);
  EXPECT_EQ(w.instances_["db-1"].spec.replication_slots, (std::vector<std::string>{"petrel_db_2"}));
  EXPECT_EQ(w.pdbs_.count("db"), 0u) << "two instances: no replica PDB";
  EXPECT_EQ(w.pdbs_.count("db-primary"), 1u);

  // Scaling up again never reuses a serial whose volume still exists.
  w.SetSpec("/replicas", 3);
  EXPECT_TRUE(HasAction(PlanCluster(w.Observe()), "create Pod db-6"));
}

TEST(ClusterPlan, ScaleDownKeepsAPrimaryWithTheHighestSerial) {
  World w(Spec(3));
  w.Converge();
  Json status = w.cluster_["status"];
  status["currentPrimary"] = "db-3";
  status["targetPrimary"] = "db-3";
  w.cluster_["status"] = status;
  w.Converge();
  w.SetSpec("/replicas", 1);
  ClusterPlan plan = PlanCluster(w.Observe());
  EXPECT_TRUE(HasAction(plan, "delete Pod db-2"));
  EXPECT_TRUE(HasAction(plan, "delete Pod db-1"));
  EXPECT_FALSE(HasAction(plan, "delete Pod db-3"));
}

TEST(ClusterPlan, ReclaimPolicyDeleteOwnsAndRemovesVolumes) {
  Json spec = Spec(2);
  spec["storage"]["reclaimPolicy"] = "Delete";
  World w(spec);
  ClusterPlan plan = PlanCluster(w.Observe());
  for (const auto& a : plan.actions) {
    if (a.type == &resources::kPersistentVolumeClaim) {
      EXPECT_EQ(meta::ControllerOf(a.body)->uid, "uid-db");
    }
  }
  w.Converge();
  w.SetSpec("/replicas", 1);
  EXPECT_TRUE(HasAction(PlanCluster(w.Observe()), "delete PVC db-2"));
}

TEST(ClusterPlan, VolumesGrowAndNeverShrink) {
  World w(Spec(2));
  w.Converge();
  w.SetSpec("/storage/size", "2Gi");
  ClusterPlan grow = PlanCluster(w.Observe());
  ASSERT_TRUE(HasAction(grow, "update PVC db-1"));
  for (const auto& a : grow.actions) {
    if (a.description == "update PVC db-1") {
      EXPECT_EQ(a.body["spec"]["resources"]["requests"]["storage"], "2Gi");
    }
  }
  w.Converge();

  w.SetSpec("/storage/size", "1Gi");
  ClusterPlan shrink = PlanCluster(w.Observe());
  EXPECT_TRUE(shrink.actions.empty());
  EXPECT_TRUE(shrink.spec_puts.empty());
  EXPECT_TRUE(shrink.secrets.empty());
  ASSERT_TRUE(shrink.status.has_value());
  const Condition* degraded = shrink.status->FindCondition("Degraded");
  ASSERT_NE(degraded, nullptr);
  EXPECT_EQ(degraded->status, "True");
  EXPECT_EQ(degraded->reason, "StorageShrinkRefused");
  EXPECT_NE(degraded->message.find("Set spec.storage.size to 2Gi or more"), std::string::npos);
  EXPECT_EQ(shrink.status->FindCondition("Ready")->status, "True") << "readiness is unchanged";
  ASSERT_EQ(shrink.events.size(), 1u);
  EXPECT_EQ(shrink.events[0].type, EventType::kWarning);
  w.Apply(shrink);
  // The refusal is reported once, not on every reconcile.
  ClusterPlan again = PlanCluster(w.Observe());
  EXPECT_TRUE(again.Empty());
  EXPECT_TRUE(again.events.empty());
}

TEST(ClusterPlan, RefusesWhatItCannotChangeSafely) {
  struct Case {
    std::string name;
    std::string path;
    Json value;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"major version", "/image", "ghcr.io/petrel-dev/postgres:16.1", "MajorVersionChangeRefused"},
      {"storage class", "/storage/storageClass", "fast", "StorageClassChangeRefused"},
      {"invalid spec", "/replicas", -2, "InvalidSpec"},
  };
  for (const auto& c : cases) {
    World w(Spec(2));
    w.Converge();
    for (auto& [name, pvc] : w.pvcs_) pvc["spec"]["storageClassName"] = "standard";
    w.SetSpec(c.path, c.value);
    ClusterPlan plan = PlanCluster(w.Observe());
    EXPECT_TRUE(plan.actions.empty()) << c.name;
    EXPECT_TRUE(plan.spec_puts.empty()) << c.name;
    ASSERT_TRUE(plan.status.has_value()) << c.name;
    EXPECT_EQ(plan.status->FindCondition("Degraded")->reason, c.reason) << c.name;
    EXPECT_EQ(plan.status->phase, "Degraded") << c.name;
    EXPECT_EQ(plan.status->observed_generation, 2) << c.name;
    EXPECT_TRUE(HasEvent(plan.events, c.reason)) << c.name;
  }
}

TEST(ClusterPlan, HandEditedServiceIsReverted) {
  World w(Spec(2));
  w.Converge();
  w.services_["db-rw"]["spec"]["selector"] = {{kClusterLabel, "db"}, {"app", "hijack"}};
  ClusterPlan plan = PlanCluster(w.Observe());
  ASSERT_TRUE(HasAction(plan, "revert Service db-rw"));
  for (const auto& a : plan.actions) {
    if (a.description != "revert Service db-rw") continue;
    EXPECT_TRUE(a.body["spec"]["selector"]["app"].is_null()) << "the extra key is removed";
    EXPECT_EQ(a.body["spec"]["selector"][kRoleLabel], "primary");
  }
  w.Apply(plan);
  EXPECT_EQ(w.services_["db-rw"]["spec"]["selector"],
            Json({{kClusterLabel, "db"}, {kRoleLabel, "primary"}}));
  EXPECT_TRUE(PlanCluster(w.Observe()).Empty());
}

// Follows an image update step by step and checks the order CloudNativePG uses: replicas one
// at a time from the highest serial, then a switchover, then the old primary.
TEST(ClusterPlan, RollingUpdateOrderReplicasThenSwitchoverThenOldPrimary) {
  World w(Spec(3));
  w.Converge();
  w.SetSpec("/image", "ghcr.io/petrel-dev/postgres:15.5");
  std::vector<std::string> steps;
  for (int round = 0; round < 40; ++round) {
    ClusterPlan plan = PlanCluster(w.Observe());
    if (plan.Empty()) break;
    // Events first: they say what the plan concluded from the observation it started with.
    for (const auto& e : plan.events) {
      if (e.reason.rfind("Switchover", 0) == 0) steps.push_back(e.reason);
    }
    for (const auto& a : plan.actions) {
      if (a.op == ObjectOp::kDelete || a.op == ObjectOp::kCreate) steps.push_back(a.description);
    }
    w.Apply(plan);
  }
  EXPECT_EQ(steps,
            (std::vector<std::string>{"delete Pod db-3 (rolling update)", "create Pod db-3",
                                      "delete Pod db-2 (rolling update)", "create Pod db-2",
                                      "SwitchoverStarted", "SwitchoverCompleted",
                                      "delete Pod db-1 (rolling update)", "create Pod db-1"}));
  auto status = w.Status();
  EXPECT_EQ(status.phase, "Healthy");
  EXPECT_NE(status.current_primary, "db-1");
  EXPECT_EQ(status.current_primary, status.target_primary);
  for (const auto& [name, pod] : w.pods_) {
    EXPECT_EQ(pod["spec"]["containers"][0]["image"], "ghcr.io/petrel-dev/postgres:15.5");
    EXPECT_EQ(meta::Label(pod, kRoleLabel), name == status.current_primary ? "primary" : "replica");
  }
  EXPECT_EQ(w.instances_["db-1"].spec.role, InstanceRole::kReplica);
  EXPECT_FALSE(w.instances_["db-1"].spec.fenced);
}

TEST(ClusterPlan, RollingUpdateWaitsForEveryInstanceToBeReady) {
  World w(Spec(3));
  w.Converge();
  w.SetSpec("/resources", {{"limits", {{"memory", "1Gi"}}}});
  w.instances_["db-2"].running = false;
  ClusterPlan plan = PlanCluster(w.Observe());
  for (const auto& a : plan.actions) EXPECT_NE(a.op, ObjectOp::kDelete) << a.description;
  EXPECT_EQ(plan.status->phase, "Upgrading");
}

TEST(ClusterPlan, PrimaryUpdateMethodRestartRecreatesThePrimaryInPlace) {
  Json spec = Spec(2);
  spec["primaryUpdateMethod"] = "restart";
  World w(spec);
  w.Converge();
  w.SetSpec("/image", "ghcr.io/petrel-dev/postgres:15.5");
  w.Apply(PlanCluster(w.Observe()));  // replica db-2 first
  w.Converge();
  EXPECT_EQ(w.Status().current_primary, "db-1");
  EXPECT_TRUE(HasEvent(w.events_, "RollingUpdate"));
  EXPECT_FALSE(HasEvent(w.events_, "SwitchoverStarted"));
}

// A switchover must be resumable from observed state at every step: each case below is a
// world frozen at one point, planned by a fresh planner as after a controller crash.
TEST(ClusterPlan, SwitchoverResumesFromObservedStateAtEveryStep) {
  auto frozen = [] {
    World w(Spec(3));
    w.Converge();
    w.cluster_["status"]["targetPrimary"] = "db-2";  // switchover decided and recorded
    return w;
  };

  {  // Step 1: decided, old primary not fenced yet -> fence it, promote nobody.
    World w = frozen();
    ClusterPlan plan = PlanCluster(w.Observe());
    ASSERT_EQ(plan.spec_puts.size(), 1u);
    EXPECT_EQ(plan.spec_puts[0].pod, "db-1");
    EXPECT_TRUE(plan.spec_puts[0].spec.fenced);
    EXPECT_EQ(plan.spec_puts[0].spec.role, InstanceRole::kPrimary);
    EXPECT_EQ(plan.status->current_primary, "db-1");
    EXPECT_EQ(plan.status->phase, "SwitchingOver");
  }
  {  // Step 2: fenced and stopped, but the target still streams -> wait.
    World w = frozen();
    w.Apply(PlanCluster(w.Observe()));
    w.instances_["db-2"].streaming = true;  // its WAL receiver has not noticed yet
    ClusterPlan plan = PlanCluster(w.Observe());
    EXPECT_EQ(plan.status ? plan.status->current_primary : w.Status().current_primary, "db-1");
    EXPECT_TRUE(plan.spec_puts.empty());
  }
  {  // Step 3: target behind the old primary's last LSN -> wait.
    World w = frozen();
    w.Apply(PlanCluster(w.Observe()));
    w.instances_["db-2"].follows = false;
    w.instances_["db-1"].lsn = 0x4000000;
    ClusterPlan plan = PlanCluster(w.Observe());
    EXPECT_EQ(plan.status ? plan.status->current_primary : w.Status().current_primary, "db-1");
    EXPECT_TRUE(plan.spec_puts.empty());
  }
  {  // Step 4: stopped and caught up -> move currentPrimary, promote db-2, db-1 follows it.
    World w = frozen();
    w.Apply(PlanCluster(w.Observe()));
    w.instances_["db-2"].follows = false;
    ClusterPlan plan = PlanCluster(w.Observe());
    ASSERT_TRUE(plan.status.has_value());
    EXPECT_EQ(plan.status->current_primary, "db-2");
    EXPECT_EQ(plan.status->target_primary, "db-2");
    std::map<std::string, InstanceSpec> specs;
    for (const auto& p : plan.spec_puts) specs[p.pod] = p.spec;
    EXPECT_EQ(specs["db-2"].role, InstanceRole::kPrimary);
    EXPECT_EQ(specs["db-2"].replication_slots,
              (std::vector<std::string>{"petrel_db_1", "petrel_db_3"}));
    EXPECT_EQ(specs["db-1"].role, InstanceRole::kReplica);
    EXPECT_FALSE(specs["db-1"].fenced);
    EXPECT_EQ(specs["db-1"].primary->host, "10.1.0.2");
    EXPECT_EQ(specs["db-3"].primary->host, "10.1.0.2");
    EXPECT_TRUE(HasAction(plan, "label Pod db-2 primary"));
    EXPECT_TRUE(HasAction(plan, "label Pod db-1 replica"));
  }
  {  // Step 5: crashed after the status write but before any PUT -> same specs again.
    World w = frozen();
    w.Apply(PlanCluster(w.Observe()));
    w.instances_["db-2"].follows = false;
    ClusterPlan moved = PlanCluster(w.Observe());
    w.cluster_["status"] = moved.status->ToJson();
    ClusterPlan resumed = PlanCluster(w.Observe());
    std::map<std::string, InstanceSpec> specs;
    for (const auto& p : resumed.spec_puts) specs[p.pod] = p.spec;
    for (const auto& p : moved.spec_puts) {
      EXPECT_EQ(specs[p.pod], p.spec) << p.pod << " gets the same spec and generation";
    }
    w.Apply(resumed);
    w.Converge();
    EXPECT_EQ(w.Status().current_primary, "db-2");
    EXPECT_EQ(w.Status().phase, "Healthy");
  }
  {  // The target disappeared after the switchover started -> abort, unfence the primary.
    World w = frozen();
    w.Apply(PlanCluster(w.Observe()));
    w.pods_.erase("db-2");
    w.cluster_["status"]["instanceNames"] = {"db-1", "db-3"};
    w.cluster_["spec"]["replicas"] = 2;
    ClusterPlan plan = PlanCluster(w.Observe());
    EXPECT_TRUE(HasEvent(plan.events, "SwitchoverAborted"));
    EXPECT_EQ(plan.status->target_primary, "db-1");
    EXPECT_FALSE(plan.status->primary_change.has_value());
    ASSERT_FALSE(plan.spec_puts.empty());
    EXPECT_EQ(plan.spec_puts[0].pod, "db-1");
    EXPECT_FALSE(plan.spec_puts[0].spec.fenced);
  }
}

// ---- High availability: failover, switchover requests, leadership fields ---------------

namespace {

std::map<std::string, InstanceSpec> PutsByPod(const ClusterPlan& plan) {
  std::map<std::string, InstanceSpec> out;
  for (const auto& p : plan.spec_puts) out[p.pod] = p.spec;
  return out;
}

// A converged 3-instance cluster whose primary db-1 has just stopped answering; db-3 received
// the most WAL.
World FailedPrimary(Json spec = Spec(3)) {
  World w(std::move(spec));
  w.Converge();
  w.instances_["db-1"].running = false;
  w.unreachable_.insert("db-1");
  w.instances_["db-2"].lsn = 0x3000100;
  w.instances_["db-3"].lsn = 0x3000200;
  return w;
}

}  // namespace

TEST(ClusterPlan, EverySpecCarriesTheTermAndThePrimaryItsLeaseAndPeers) {
  World w(Spec(3));
  w.Converge();
  EXPECT_EQ(w.Status().term, 1);
  auto primary = w.instances_["db-1"].spec;
  EXPECT_EQ(primary.term, 1);
  EXPECT_EQ(primary.lease_duration_ms, kDefaultLeaseDurationMs);
  EXPECT_EQ(primary.peers, (std::vector<Peer>{{"db-2", "10.1.0.2", kInstanceApiPort},
                                              {"db-3", "10.1.0.3", kInstanceApiPort}}));
  EXPECT_EQ(w.instances_["db-2"].spec.term, 1);
  EXPECT_EQ(w.instances_["db-2"].spec.lease_duration_ms, 0);
  ClusterPlan plan = PlanCluster(w.Observe());
  ASSERT_TRUE(plan.lease.has_value());
  EXPECT_EQ(*plan.lease, (LeaseTarget{"db-1", 1, kDefaultLeaseDurationMs}));

  w.SetSpec("/leaseDurationMilliseconds", 3000);
  w.Converge();
  EXPECT_EQ(w.instances_["db-1"].spec.lease_duration_ms, 3000);

  World single(Spec(1));
  single.Converge();
  EXPECT_EQ(single.instances_["db-1"].spec.lease_duration_ms, 0);
  EXPECT_TRUE(single.instances_["db-1"].spec.peers.empty());
  EXPECT_FALSE(PlanCluster(single.Observe()).lease.has_value());
}

// The whole failover, step by step, as the executor and the instances would see it.
TEST(ClusterPlan, FailoverRevokesWaitsForTheOldLeaseThenPromotesTheMostAdvancedReplica) {
  World w = FailedPrimary();

  // 1. Detection: the failover is recorded, every replica gets term 2 (revocation), nobody
  //    is promoted, and no lease is renewed any more.
  ClusterPlan start = PlanCluster(w.Observe());
  ASSERT_TRUE(start.status.has_value());
  ASSERT_TRUE(start.status->primary_change.has_value());
  EXPECT_EQ(start.status->primary_change->kind, PrimaryChangeKind::kFailover);
  EXPECT_EQ(start.status->primary_change->from, "db-1");
  EXPECT_EQ(start.status->primary_change->to, "db-3");
  EXPECT_EQ(start.status->primary_change->lsn, "0/3000200");
  EXPECT_EQ(start.status->current_primary, "db-1");
  EXPECT_EQ(start.status->target_primary, "db-3");
  EXPECT_EQ(start.status->term, 1);
  EXPECT_EQ(start.status->phase, "FailingOver");
  EXPECT_TRUE(HasEvent(start.events, "FailoverStarted"));
  EXPECT_FALSE(start.lease.has_value());
  EXPECT_LE(start.requeue_after, std::chrono::milliseconds(200));
  auto puts = PutsByPod(start);
  EXPECT_EQ(puts.count("db-1"), 0u) << "an unreachable instance is not sent anything";
  EXPECT_EQ(puts["db-2"].term, 2);
  EXPECT_EQ(puts["db-3"].term, 2);
  EXPECT_EQ(puts["db-3"].role, InstanceRole::kReplica);
  w.Apply(start);

  // 2. The old lease cannot be bounded yet, then has not expired yet: wait.
  for (std::optional<int64_t> left : {std::optional<int64_t>(), std::optional<int64_t>(700)}) {
    w.old_lease_expires_in_ms_ = left;
    ClusterPlan wait = PlanCluster(w.Observe());
    const auto& st = wait.status ? *wait.status : w.Status();
    EXPECT_EQ(st.current_primary, "db-1");
    EXPECT_TRUE(wait.spec_puts.empty());
    EXPECT_FALSE(wait.lease.has_value());
    EXPECT_LE(wait.requeue_after, std::chrono::milliseconds(left.value_or(200)));
    if (wait.status) w.cluster_["status"] = wait.status->ToJson();
  }

  // 3. Expired: term 2, currentPrimary and the role labels move, db-3 is promoted with a lease
  //    and the remaining replica follows it.
  w.old_lease_expires_in_ms_ = 0;
  ClusterPlan promote = PlanCluster(w.Observe());
  ASSERT_TRUE(promote.status.has_value());
  EXPECT_EQ(promote.status->current_primary, "db-3");
  EXPECT_EQ(promote.status->term, 2);
  puts = PutsByPod(promote);
  EXPECT_EQ(puts["db-3"].role, InstanceRole::kPrimary);
  EXPECT_EQ(puts["db-3"].term, 2);
  EXPECT_EQ(puts["db-3"].lease_duration_ms, kDefaultLeaseDurationMs);
  EXPECT_EQ(puts["db-2"].primary->host, "10.1.0.3");
  EXPECT_TRUE(HasAction(promote, "label Pod db-3 primary"));
  EXPECT_TRUE(HasAction(promote, "label Pod db-1 replica"));
  ASSERT_TRUE(promote.lease.has_value());
  EXPECT_EQ(*promote.lease, (LeaseTarget{"db-3", 2, kDefaultLeaseDurationMs}));
  w.Apply(promote);

  // 4. The new primary is ready: the story is published.
  w.now_ = "2026-11-23T00:00:02Z";
  ClusterPlan done = PlanCluster(w.Observe());
  ASSERT_TRUE(done.status.has_value());
  EXPECT_FALSE(done.status->primary_change.has_value());
  EXPECT_EQ(done.status->failovers, 1);
  ASSERT_TRUE(done.status->last_failover.has_value());
  EXPECT_EQ(done.status->last_failover->from, "db-1");
  EXPECT_EQ(done.status->last_failover->to, "db-3");
  EXPECT_EQ(done.status->last_failover->lsn, "0/3000200");
  EXPECT_EQ(done.status->last_failover->time, "2026-11-23T00:00:02Z");
  EXPECT_EQ(done.status->last_failover->duration_ms, 2000);
  EXPECT_NE(done.status->last_failover->reason.find("does not answer"), std::string::npos);
  EXPECT_TRUE(HasEvent(done.events, "FailoverCompleted"));
  w.Apply(done);

  EXPECT_LE(done.requeue_after, std::chrono::seconds(1)) << "db-1 is asked again soon";

  // 5. The old primary comes back and rejoins as a replica of db-3 in term 2.
  w.unreachable_.clear();
  w.Converge();
  EXPECT_EQ(w.instances_["db-1"].spec.role, InstanceRole::kReplica);
  EXPECT_EQ(w.instances_["db-1"].spec.term, 2);
  EXPECT_EQ(w.instances_["db-1"].spec.primary->host, "10.1.0.3");
  EXPECT_EQ(w.Status().phase, "Healthy");
  EXPECT_EQ(w.Status().failovers, 1);
}

TEST(ClusterPlan, FailoverTriggers) {
  struct Case {
    std::string name;
    std::function<void(World&)> fault;
    bool starts;
  };
  std::vector<Case> cases = {
      {"healthy", [](World&) {}, false},
      {"pod deleted", [](World& w) { w.pods_.erase("db-1"); }, true},
      {"pod terminating",
       [](World& w) { w.pods_["db-1"]["metadata"]["deletionTimestamp"] = "2026-11-23T00:00:00Z"; },
       true},
      {"unreachable", [](World& w) { w.unreachable_.insert("db-1"); }, true},
      {"postgres down, within the grace", [](World& w) { w.instances_["db-1"].running = false; },
       false},
      {"postgres down beyond the grace",
       [](World& w) {
         w.instances_["db-1"].running = false;
         w.cluster_["status"]["primaryFailingSince"] = "2026-11-22T23:59:00Z";
       },
       true},
  };
  for (const auto& c : cases) {
    World w(Spec(3));
    w.Converge();
    c.fault(w);
    ClusterPlan plan = PlanCluster(w.Observe());
    auto st = plan.status ? *plan.status : w.Status();
    EXPECT_EQ(st.primary_change.has_value(), c.starts) << c.name;
    EXPECT_EQ(HasEvent(plan.events, "FailoverStarted"), c.starts) << c.name;
  }
}

TEST(ClusterPlan, FailoverDelayWaitsBeforeStarting) {
  Json spec = Spec(3);
  spec["failoverDelay"] = 5;
  World w = FailedPrimary(spec);
  ClusterPlan first = PlanCluster(w.Observe());
  ASSERT_TRUE(first.status.has_value());
  EXPECT_FALSE(first.status->primary_change.has_value());
  EXPECT_FALSE(first.status->primary_failing_since.empty());
  EXPECT_LE(first.requeue_after, std::chrono::seconds(1));
  w.Apply(first);
  w.now_ = "2026-11-23T00:00:04Z";
  EXPECT_FALSE(HasEvent(PlanCluster(w.Observe()).events, "FailoverStarted"));
  w.now_ = "2026-11-23T00:00:05Z";
  EXPECT_TRUE(HasEvent(PlanCluster(w.Observe()).events, "FailoverStarted"));

  // The primary recovered within the delay: the record is cleared, nothing else happens.
  World r = FailedPrimary(spec);
  r.Apply(PlanCluster(r.Observe()));
  r.unreachable_.clear();
  r.instances_["db-1"].running = true;
  ClusterPlan healed = PlanCluster(r.Observe());
  auto st = healed.status ? *healed.status : r.Status();
  EXPECT_TRUE(st.primary_failing_since.empty());
  EXPECT_FALSE(st.primary_change.has_value());
}

TEST(ClusterPlan, FailoverLagGuardAndSynchronousRefusals) {
  {  // Async with maxLagOnFailover: every replica too far behind -> blocked, said clearly.
    Json spec = Spec(3);
    spec["maxLagOnFailover"] = "1Mi";
    World w(spec);
    w.Converge();
    w.instances_["db-1"].lsn = 0x9000000;
    w.Apply(PlanCluster(w.Observe()));  // publishes the primary's LSN
    w.instances_["db-1"].running = false;
    w.unreachable_.insert("db-1");
    ClusterPlan plan = PlanCluster(w.Observe());
    ASSERT_TRUE(plan.status.has_value());
    EXPECT_FALSE(plan.status->primary_change.has_value());
    EXPECT_TRUE(HasEvent(plan.events, "FailoverBlocked"));
    EXPECT_NE(plan.status->phase_reason.find("maxLagOnFailover"), std::string::npos);
    const Condition* degraded = plan.status->FindCondition("Degraded");
    ASSERT_NE(degraded, nullptr);
    EXPECT_EQ(degraded->reason, "FailoverBlocked");
    w.Apply(plan);
    EXPECT_FALSE(HasEvent(PlanCluster(w.Observe()).events, "FailoverBlocked"))
        << "the same refusal is not announced twice";
  }
  {  // Synchronous (ANY 1 of db-2, db-3): one standby out of reach may hold the last
     // acknowledged write -> nobody is promoted.
    Json spec = Spec(3);
    spec["postgresql"]["synchronous"] = {{"number", 1}};
    World w = FailedPrimary(spec);
    EXPECT_EQ(w.Status().synchronous_standbys, (std::vector<std::string>{"db-2", "db-3"}));
    w.unreachable_.insert("db-3");
    ClusterPlan plan = PlanCluster(w.Observe());
    ASSERT_TRUE(plan.status.has_value());
    EXPECT_FALSE(plan.status->primary_change.has_value());
    EXPECT_NE(plan.status->phase_reason.find("synchronous"), std::string::npos);
    // Both standbys reachable -> the most advanced one is promoted.
    w.unreachable_.erase("db-3");
    plan = PlanCluster(w.Observe());
    ASSERT_TRUE(plan.status->primary_change.has_value());
    EXPECT_EQ(plan.status->primary_change->to, "db-3");
  }
}

// The candidate is chosen when the failure is detected, on positions read then; the promotion
// waits for the old lease. Positions read once the old primary can no longer commit are final:
// a standby that turns out to be further ahead holds acknowledged writes the first choice
// lacks, and is promoted instead. The benchmark lost acknowledged writes in synchronous mode
// before this re-check.
TEST(ClusterPlan, PromotionGoesToTheReplicaFurthestAheadOnceTheOldLeaseHasExpired) {
  Json spec = Spec(3);
  spec["postgresql"]["synchronous"] = {{"number", 1}};
  World w = FailedPrimary(spec);
  w.old_lease_expires_in_ms_ = 400;
  ClusterPlan start = PlanCluster(w.Observe());
  ASSERT_TRUE(start.status && start.status->primary_change);
  EXPECT_EQ(start.status->primary_change->to, "db-3");
  w.Apply(start);

  // db-2 acknowledged the last commits: it is now ahead of db-3.
  w.instances_["db-2"].lsn = 0x3000300;
  w.old_lease_expires_in_ms_ = 0;
  ClusterPlan promote = PlanCluster(w.Observe());
  ASSERT_TRUE(promote.status.has_value());
  EXPECT_EQ(promote.status->current_primary, "db-2");
  EXPECT_EQ(promote.status->target_primary, "db-2");
  ASSERT_TRUE(promote.status->primary_change.has_value());
  EXPECT_EQ(promote.status->primary_change->to, "db-2");
  EXPECT_EQ(promote.status->primary_change->lsn, "0/3000300");
  EXPECT_TRUE(HasEvent(promote.events, "FailoverCandidateChanged"));
  auto puts = PutsByPod(promote);
  EXPECT_EQ(puts["db-2"].role, InstanceRole::kPrimary);
  EXPECT_EQ(puts["db-3"].role, InstanceRole::kReplica);
  EXPECT_EQ(puts["db-3"].primary->host, "10.1.0.2");

  {  // Equal positions: the first choice stands (no churn).
    World e = FailedPrimary(spec);
    e.old_lease_expires_in_ms_ = 400;
    e.Apply(PlanCluster(e.Observe()));
    e.instances_["db-2"].lsn = 0x3000200;
    e.old_lease_expires_in_ms_ = 0;
    ClusterPlan p = PlanCluster(e.Observe());
    ASSERT_TRUE(p.status.has_value());
    EXPECT_EQ(p.status->current_primary, "db-3");
    EXPECT_FALSE(HasEvent(p.events, "FailoverCandidateChanged"));
  }
  {  // Synchronous: a standby went out of reach while waiting -> nobody is promoted yet.
    World b = FailedPrimary(spec);
    b.old_lease_expires_in_ms_ = 400;
    b.Apply(PlanCluster(b.Observe()));
    b.unreachable_.insert("db-2");
    b.old_lease_expires_in_ms_ = 0;
    ClusterPlan p = PlanCluster(b.Observe());
    const auto& st = p.status ? *p.status : b.Status();
    EXPECT_EQ(st.current_primary, "db-1");
    EXPECT_NE(PutsByPod(p)["db-3"].role, InstanceRole::kPrimary);
    EXPECT_NE(st.phase_reason.find("synchronous"), std::string::npos) << st.phase_reason;
  }
}

TEST(ClusterPlan, SynchronousModeShowsWhatHappensWithoutStandbys) {
  for (std::string durability : {"required", "preferred"}) {
    Json spec = Spec(2);
    spec["postgresql"]["synchronous"] = {{"number", 1}, {"dataDurability", durability}};
    World w(spec);
    w.Converge();
    PostgresClusterStatus status = w.Status();  // FindCondition points into it
    const Condition* c = status.FindCondition("SynchronousReplication");
    ASSERT_NE(c, nullptr) << durability;
    EXPECT_EQ(c->status, "True");
    w.instances_["db-2"].streaming = false;
    w.Converge();
    status = w.Status();
    c = status.FindCondition("SynchronousReplication");
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->status, "False");
    if (durability == "required") {
      EXPECT_EQ(c->reason, "WritesBlocked");
      EXPECT_EQ(w.instances_["db-1"].spec.synchronous_standby_names, "ANY 1 (\"db-2\")");
    } else {
      EXPECT_EQ(c->reason, "DegradedToAsync");
      EXPECT_EQ(w.instances_["db-1"].spec.synchronous_standby_names, "");
    }
  }
}

// A controller may crash at any point of a failover; a fresh planner working from the
// published status must continue it, never restart or fork it.
TEST(ClusterPlan, FailoverResumesFromThePublishedStatusAtEveryStep) {
  {  // Crashed after publishing the start, before any PUT: the same revocation again.
    World w = FailedPrimary();
    ClusterPlan start = PlanCluster(w.Observe());
    w.cluster_["status"] = start.status->ToJson();
    ClusterPlan again = PlanCluster(w.Observe());
    EXPECT_FALSE(HasEvent(again.events, "FailoverStarted"));
    auto a = PutsByPod(start);
    auto b = PutsByPod(again);
    EXPECT_EQ(a, b);
  }
  {  // Crashed after publishing the promotion, before any PUT: the same promotion again, even
     // though this controller cannot bound the old lease (it was already certain).
    World w = FailedPrimary();
    w.Apply(PlanCluster(w.Observe()));
    w.old_lease_expires_in_ms_ = 0;
    ClusterPlan promote = PlanCluster(w.Observe());
    w.cluster_["status"] = promote.status->ToJson();
    w.old_lease_expires_in_ms_.reset();
    ClusterPlan again = PlanCluster(w.Observe());
    EXPECT_EQ(PutsByPod(again), PutsByPod(promote));
    w.Apply(again);
    w.Converge();
    EXPECT_EQ(w.Status().current_primary, "db-3");
    EXPECT_EQ(w.Status().failovers, 1);
  }
  {  // The candidate failed before its promotion: another replica is chosen.
    World w = FailedPrimary();
    w.Apply(PlanCluster(w.Observe()));
    w.unreachable_.insert("db-3");
    w.instances_["db-3"].running = false;
    ClusterPlan plan = PlanCluster(w.Observe());
    EXPECT_TRUE(HasEvent(plan.events, "FailoverCandidateChanged"));
    EXPECT_EQ(plan.status->primary_change->to, "db-2");
    EXPECT_EQ(plan.status->target_primary, "db-2");
  }
  {  // The old primary answers again before the promotion: it is fenced, the failover goes on.
    World w = FailedPrimary();
    w.Apply(PlanCluster(w.Observe()));
    w.unreachable_.clear();
    w.instances_["db-1"].running = true;
    ClusterPlan plan = PlanCluster(w.Observe());
    auto puts = PutsByPod(plan);
    ASSERT_EQ(puts.count("db-1"), 1u);
    EXPECT_TRUE(puts["db-1"].fenced);
    EXPECT_EQ(puts["db-1"].term, 1);
    EXPECT_EQ(plan.status->current_primary, "db-1");
    EXPECT_EQ(plan.status->primary_change->to, "db-3");
  }
}

// A primary that fenced itself when its lease expired continues in the next term: a stale
// grant of the expired term can then never revive it.
TEST(ClusterPlan, PrimaryFencedByAnExpiredLeaseContinuesInTheNextTerm) {
  World w(Spec(3));
  w.Converge();
  ClusterObservation o = w.Observe();
  InstanceStatus& p = o.instances.at("db-1").value();
  p.fenced = true;
  p.running = false;
  p.ready = false;
  p.lease_remaining_ms = 0;
  p.term = 1;
  ClusterPlan plan = PlanCluster(o);
  EXPECT_TRUE(HasEvent(plan.events, "LeaseRenewedInNewTerm"));
  EXPECT_FALSE(HasEvent(plan.events, "FailoverStarted"));
  ASSERT_TRUE(plan.status.has_value());
  EXPECT_EQ(plan.status->term, 2);
  EXPECT_EQ(plan.status->current_primary, "db-1");
  auto puts = PutsByPod(plan);
  EXPECT_EQ(puts["db-1"].term, 2);
  EXPECT_EQ(puts["db-1"].role, InstanceRole::kPrimary);
  EXPECT_EQ(puts["db-2"].term, 2);
  ASSERT_TRUE(plan.lease.has_value());
  EXPECT_EQ(plan.lease->term, 2);

  // Still holding a lease, or fenced by a switchover: nothing of the sort.
  p.lease_remaining_ms = 300;
  EXPECT_FALSE(HasEvent(PlanCluster(o).events, "LeaseRenewedInNewTerm"));
}

TEST(ClusterPlan, UserSwitchoverRequestsAreValidated) {
  struct Case {
    std::string target;
    std::function<void(World&)> setup;
    bool accepted;
  };
  std::vector<Case> cases = {
      {"db-2", [](World&) {}, true},
      {"db-7", [](World&) {}, false},
      {"db-2", [](World& w) { w.instances_["db-2"].running = false; }, false},
      {"db-2", [](World& w) { w.unreachable_.insert("db-2"); }, false},
      {"db-2", [](World& w) { w.instances_["db-1"].running = false; }, false},
  };
  for (const auto& c : cases) {
    World w(Spec(3));
    w.Converge();
    c.setup(w);
    w.cluster_["status"]["targetPrimary"] = c.target;
    ClusterPlan plan = PlanCluster(w.Observe());
    ASSERT_TRUE(plan.status.has_value());
    EXPECT_EQ(HasEvent(plan.events, "SwitchoverStarted"), c.accepted) << c.target;
    EXPECT_EQ(HasEvent(plan.events, "SwitchoverRefused"), !c.accepted) << c.target;
    EXPECT_EQ(plan.status->target_primary, c.accepted ? c.target : "db-1");
    EXPECT_EQ(plan.status->primary_change.has_value(), c.accepted);
  }
}

TEST(ClusterPlan, SwitchoverThatDoesNotFinishInTimeIsUndone) {
  World w(Spec(3));
  w.Converge();
  w.cluster_["status"]["targetPrimary"] = "db-2";
  w.Apply(PlanCluster(w.Observe()));  // accepted; db-1 fenced
  w.instances_["db-2"].streaming = true;  // never catches up
  w.now_ = "2026-11-23T00:00:59Z";
  ClusterPlan waiting = PlanCluster(w.Observe());
  EXPECT_FALSE(HasEvent(waiting.events, "SwitchoverTimedOut"));
  EXPECT_LE(waiting.requeue_after, std::chrono::milliseconds(200));
  w.now_ = "2026-11-23T00:01:01Z";
  ClusterPlan undone = PlanCluster(w.Observe());
  EXPECT_TRUE(HasEvent(undone.events, "SwitchoverTimedOut"));
  ASSERT_TRUE(undone.status.has_value());
  EXPECT_EQ(undone.status->current_primary, "db-1");
  EXPECT_EQ(undone.status->target_primary, "db-1");
  EXPECT_FALSE(undone.status->primary_change.has_value());
  auto puts = PutsByPod(undone);
  ASSERT_EQ(puts.count("db-1"), 1u);
  EXPECT_FALSE(puts["db-1"].fenced);
}

TEST(ClusterPlan, SwitchoverBumpsTheTermAndCompletesWhenTheTargetIsPrimary) {
  World w(Spec(3));
  w.Converge();
  w.cluster_["status"]["targetPrimary"] = "db-2";
  w.Apply(PlanCluster(w.Observe()));
  w.instances_["db-2"].follows = false;  // db-1 stopped; db-2 replayed everything
  ClusterPlan promote = PlanCluster(w.Observe());
  EXPECT_EQ(promote.status->current_primary, "db-2");
  EXPECT_EQ(promote.status->term, 2);
  EXPECT_TRUE(promote.status->primary_change.has_value()) << "until db-2 is ready";
  EXPECT_EQ(PutsByPod(promote)["db-1"].term, 2);
  w.Apply(promote);
  ClusterPlan done = PlanCluster(w.Observe());
  EXPECT_TRUE(HasEvent(done.events, "SwitchoverCompleted"));
  EXPECT_FALSE(done.status->primary_change.has_value());
  EXPECT_EQ(done.status->failovers, 0);
}

TEST(ClusterPlan, SynchronousStandbyNames) {
  SynchronousSpec any{SyncMethod::kAny, 1, DataDurability::kRequired};
  SynchronousSpec first{SyncMethod::kFirst, 3, DataDurability::kPreferred};
  EXPECT_EQ(SynchronousStandbyNames(std::nullopt, {"db_2"}), "");
  EXPECT_EQ(SynchronousStandbyNames(any, {"db-2", "db-3"}), "ANY 1 (\"db-2\", \"db-3\")");
  EXPECT_EQ(SynchronousStandbyNames(first, {"db-2"}), "FIRST 1 (\"db-2\")");
  EXPECT_EQ(SynchronousStandbyNames(first, {}), "");

  Json spec = Spec(3);
  spec["postgresql"] = {{"synchronous", {{"method", "any"}, {"number", 1}}}};
  World w(spec);
  w.Converge();
  EXPECT_EQ(w.instances_["db-1"].spec.synchronous_standby_names, "ANY 1 (\"db-2\", \"db-3\")");
  EXPECT_EQ(w.instances_["db-2"].spec.synchronous_standby_names, "");
}

TEST(ClusterPlan, ParametersAndMemoryReachEveryInstance) {
  Json spec = Spec(2);
  spec["postgresql"] = {{"parameters", {{"max_connections", "50"}}}};
  spec["resources"] = {{"limits", {{"memory", "512Mi"}}}};
  World w(spec);
  w.Converge();
  for (const auto& name : {"db-1", "db-2"}) {
    EXPECT_EQ(w.instances_[name].spec.parameters.at("max_connections"), "50");
    EXPECT_EQ(w.instances_[name].spec.memory_limit_bytes, 512 << 20);
  }
  // A parameter change is a new spec with a higher generation, PUT without recreating Pods.
  int64_t before = w.instances_["db-1"].spec.generation;
  w.SetSpec("/postgresql/parameters/max_connections", "60");
  ClusterPlan plan = PlanCluster(w.Observe());
  EXPECT_EQ(plan.spec_puts.size(), 2u);
  for (const auto& a : plan.actions) EXPECT_NE(a.op, ObjectOp::kDelete);
  w.Converge();
  EXPECT_GT(w.instances_["db-1"].spec.generation, before);
}

TEST(ClusterPlan, RelabelsItsPodsAndLeavesForeignPodsAlone) {
  World w(Spec(2));
  w.Converge();
  w.pods_["db-2"]["metadata"]["labels"].erase(kRoleLabel);
  EXPECT_TRUE(HasAction(PlanCluster(w.Observe()), "label Pod db-2 replica"));

  w.pods_["db-2"]["metadata"]["ownerReferences"][0]["uid"] = "someone-else";
  ClusterPlan plan = PlanCluster(w.Observe());
  for (const auto& a : plan.actions) {
    EXPECT_EQ(a.description.find("Pod db-2 replica"), std::string::npos) << a.description;
    EXPECT_NE(a.description, "delete Pod db-2");
  }
}

TEST(ClusterPlan, InstanceNames) {
  EXPECT_EQ(InstanceSerial("db", "db-12"), 12);
  EXPECT_EQ(InstanceSerial("db", "db-rw"), -1);
  EXPECT_EQ(InstanceSerial("db", "db-01"), -1);
  EXPECT_EQ(InstanceSerial("db", "dbx-1"), -1);
  EXPECT_EQ(InstanceSerial("my-db", "my-db-3"), 3);
}

}  // namespace
}  // namespace petrel

namespace petrel {
namespace {

TEST(ClusterPlan, ClusterBeingDeletedPlansNothing) {
  World w(Spec(2));
  w.Converge();
  w.cluster_["metadata"]["deletionTimestamp"] = "2026-11-23T00:00:00Z";
  ClusterPlan plan = PlanCluster(w.Observe());
  EXPECT_TRUE(plan.Empty());
  EXPECT_TRUE(plan.events.empty());
}

TEST(RandomToken, UrlSafeAndUnique) {
  auto a = RandomToken(32);
  auto b = RandomToken(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 43u);
  EXPECT_NE(*a, *b);
  for (char c : *a)
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
}

TEST(ClusterPlan, FailingChecksAreReportedButNeverFailOver) {
  World w(Spec(2));
  w.Converge();
  const std::string primary = w.Status().current_primary;
  std::vector<HealthCheck> failing = {
      {"vm", CheckState::kCritical, "disk 97% used (30 MiB free of 1 GiB)"},
      {"pg", CheckState::kCritical, "read-only"},
      {"role", CheckState::kCritical, "read-only (disk 97% full)"}};
  std::vector<HealthCheck> passing = {{"vm", CheckState::kPassing, "disk 10% used"},
                                      {"pg", CheckState::kPassing, "replication lag 0 B"},
                                      {"role", CheckState::kPassing, "replica"}};
  for (auto& [name, instance] : w.instances_) instance.checks = name == primary ? failing : passing;
  ClusterPlan plan = PlanCluster(w.Observe());
  EXPECT_TRUE(plan.actions.empty()) << ::testing::PrintToString(Describe(plan));
  EXPECT_TRUE(plan.spec_puts.empty());
  ASSERT_TRUE(plan.status.has_value());
  EXPECT_EQ(plan.status->current_primary, primary);
  EXPECT_EQ(plan.status->FindInstance(primary)->checks, failing);
  const Condition* checks = plan.status->FindCondition("ChecksPassing");
  ASSERT_NE(checks, nullptr);
  EXPECT_EQ(checks->status, "False");
  EXPECT_EQ(checks->reason, "CheckCritical");
  EXPECT_EQ(checks->message.rfind(primary + " vm critical: disk 97% used", 0), 0u)
      << checks->message;
  EXPECT_EQ(plan.status->FindCondition("Ready")->status, "True");
  w.Apply(plan);
  EXPECT_TRUE(PlanCluster(w.Observe()).Empty()) << "the recorded checks are stable";
}

}  // namespace
}  // namespace petrel
