#include "reconcilers/cluster_plan.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "core/clock.h"
#include "reconcilers/cluster_checks.h"
#include "reconcilers/cluster_ha.h"
#include "reconcilers/volume_snapshot.h"

namespace petrel {

using std::chrono::seconds;

namespace {

constexpr const char* kPgDataMount = "/var/lib/postgresql/data";
constexpr const char* kPgData = "/var/lib/postgresql/data/pgdata";
constexpr auto kRequeueBusy = seconds(10);
constexpr auto kRequeueHealthy = seconds(60);
// How often to look again while a switchover or failover is in progress: each step waits for
// an instance (stopping, replaying, promoting), and every poll costs one GET /status each.
constexpr auto kRequeueChanging = std::chrono::milliseconds(150);
constexpr auto kRequeueBlocked = seconds(1);

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string Hex(uint64_t v) {
  static const char* kDigits = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[i] = kDigits[v & 0xF];
    v >>= 4;
  }
  return out;
}

const Json& Field(const Json& j, const char* key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string StringAt(const Json& j, std::initializer_list<const char*> path) {
  const Json* cur = &j;
  for (const char* key : path) cur = &Field(*cur, key);
  return cur->is_string() ? cur->get<std::string>() : "";
}

// RoleName, but empty for kNone: status and labels leave an unknown role out.
const char* RoleText(InstanceRole role) {
  return role == InstanceRole::kNone ? "" : RoleName(role);
}

// "16/B374D848" -> byte position (the format of pg_lsn); false when malformed.
bool LsnValue(const std::string& text, uint64_t* out) {
  size_t slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= text.size() || slash > 8 ||
      text.size() - slash - 1 > 8) {
    return false;
  }
  uint64_t hi = 0;
  uint64_t lo = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == slash) continue;
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
    int digit = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                                                            : -1;
    if (digit < 0) return false;
    uint64_t& part = i < slash ? hi : lo;
    part = part * 16 + static_cast<uint64_t>(digit);
  }
  *out = (hi << 32) | lo;
  return true;
}

}  // namespace

std::string InstanceName(const std::string& cluster, int serial) {
  return cluster + "-" + std::to_string(serial);
}

int InstanceSerial(const std::string& cluster, const std::string& name) {
  if (name.size() <= cluster.size() + 1 || name.compare(0, cluster.size(), cluster) != 0 ||
      name[cluster.size()] != '-') {
    return -1;
  }
  std::string digits = name.substr(cluster.size() + 1);
  if (digits.size() > 6 || digits[0] == '0') return -1;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
  }
  return std::stoi(digits);
}

std::string SecretName(const std::string& cluster, const std::string& purpose) {
  return cluster + "-" + purpose;
}

std::string SynchronousStandbyNames(const std::optional<SynchronousSpec>& sync,
                                    const std::vector<std::string>& standbys) {
  if (!sync || standbys.empty()) return "";
  int number = sync->number;
  if (sync->data_durability == DataDurability::kPreferred) {
    number = std::min<int>(number, static_cast<int>(standbys.size()));
  }
  std::string list;
  for (const auto& s : standbys) {
    std::string quoted = "\"";
    for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    list += (list.empty() ? "" : ", ") + quoted + "\"";
  }
  return std::string(sync->method == SyncMethod::kFirst ? "FIRST " : "ANY ") +
         std::to_string(number) + " (" + list + ")";
}

std::string InstanceSpecHash(const InstanceSpec& spec) {
  Json j = {{"role", RoleText(spec.role)},
            {"bootstrap", static_cast<int>(spec.bootstrap)},
            {"slot", spec.slot_name},
            {"slots", spec.replication_slots},
            {"fenced", spec.fenced},
            {"parameters", spec.parameters},
            {"memory", spec.memory_limit_bytes},
            {"pg_hba", spec.pg_hba},
            {"sync", spec.synchronous_standby_names},
            {"snapshot", spec.snapshot_path},
            {"cluster_uid", spec.cluster_uid},
            {"term", spec.term},
            {"lease", spec.lease_duration_ms}};
  for (const auto& p : spec.peers) {
    j["peers"].push_back(p.name + "@" + p.host + ":" + std::to_string(p.port));
  }
  if (spec.primary) j["primary"] = spec.primary->host + ":" + std::to_string(spec.primary->port);
  if (spec.bootstrap == BootstrapMethod::kInitdb) j["initdb"] = spec.ToJson()["initdb"];
  return Hex(Fnv1a(j.dump()));
}

namespace {

// ---- Desired objects ---------------------------------------------------------------------

struct Names {
  std::string cluster;
  std::string ns;
};

Json BaseLabels(const std::string& cluster) {
  return {{kClusterLabel, cluster}, {kManagedByLabel, "petrel"}};
}

Json ObjectMeta(const Names& n, const std::string& name, const Json& owner_ref, Json labels) {
  Json meta = {{"name", name}, {"namespace", n.ns}, {"labels", std::move(labels)}};
  if (!owner_ref.is_null()) meta["ownerReferences"] = Json::array({owner_ref});
  return meta;
}

Json PodTemplateInputs(const PostgresClusterSpec& spec) {
  return {{"image", spec.image}, {"resources", spec.resources.ToJson()}};
}

std::string PodSpecHash(const PostgresClusterSpec& spec) {
  return Hex(Fnv1a(PodTemplateInputs(spec).dump()));
}

Json SecretEnv(const std::string& env, const std::string& secret) {
  return {{"name", env},
          {"valueFrom", {{"secretKeyRef", {{"name", secret}, {"key", "password"}}}}}};
}

Json HttpProbe(const std::string& path, int period, int failures) {
  return {{"httpGet", {{"path", path}, {"port", kInstanceApiPort}, {"scheme", "HTTP"}}},
          {"periodSeconds", period},
          {"timeoutSeconds", 5},
          {"failureThreshold", failures}};
}

Json DesiredPod(const Names& n, const PostgresClusterSpec& spec, const std::string& instance,
                const std::string& role, const Json& owner_ref) {
  Json labels = BaseLabels(n.cluster);
  labels[kInstanceLabel] = instance;
  labels[kRoleLabel] = role;
  Json meta = ObjectMeta(n, instance, owner_ref, labels);
  meta["annotations"] = {{kPodSpecHashAnnotation, PodSpecHash(spec)},
                         // Discovered by a Prometheus that scrapes annotated Pods.
                         {"prometheus.io/scrape", "true"},
                         {"prometheus.io/port", std::to_string(kMetricsPort)},
                         {"prometheus.io/path", "/metrics"}};
  Json container = {
      {"name", "postgres"},
      {"image", spec.image},
      {"command", {"petrel", "instance"}},
      {"args",
       {"--name=" + instance, "--cluster=" + n.cluster, std::string("--pgdata=") + kPgData,
        "--listen-address=$(POD_IP)", "--api-port=" + std::to_string(kInstanceApiPort),
        "--pg-major=" + std::to_string(spec.postgres_major)}},
      {"env",
       {{{"name", "POD_IP"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "status.podIP"}}}}}},
        {{"name", "POD_NAMESPACE"},
         {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.namespace"}}}}}},
        {{"name", "PGDATA"}, {"value", kPgData}},
        SecretEnv("PETREL_SUPERUSER_PASSWORD", SecretName(n.cluster, "superuser")),
        SecretEnv("PETREL_REPLICATION_PASSWORD", SecretName(n.cluster, "replication")),
        SecretEnv("PETREL_API_TOKEN", SecretName(n.cluster, "petrel"))}},
      {"ports",
       {{{"name", "postgres"}, {"containerPort", kPostgresPort}, {"protocol", "TCP"}},
        {{"name", "api"}, {"containerPort", kInstanceApiPort}, {"protocol", "TCP"}},
        {{"name", "metrics"}, {"containerPort", kMetricsPort}, {"protocol", "TCP"}}}},
      {"readinessProbe", HttpProbe("/readyz", 5, 3)},
      {"livenessProbe", HttpProbe("/healthz", 10, 6)},
      {"volumeMounts", {{{"name", "pgdata"}, {"mountPath", kPgDataMount}}}},
  };
  Json resources = spec.resources.ToJson();
  if (!resources.empty()) container["resources"] = resources;
  return {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", meta},
      {"spec",
       {{"hostname", instance},
        {"containers", {container}},
        {"volumes", {{{"name", "pgdata"}, {"persistentVolumeClaim", {{"claimName", instance}}}}}},
        {"terminationGracePeriodSeconds", std::max<int64_t>(30, spec.switchover_delay_seconds)},
        {"securityContext", {{"fsGroup", 999}}}}}};
}

Json DesiredPvc(const Names& n, const PostgresClusterSpec& spec, const std::string& instance,
                const Json& owner_ref) {
  Json labels = BaseLabels(n.cluster);
  labels[kInstanceLabel] = instance;
  Json pvc_spec = {{"accessModes", {"ReadWriteOnce"}},
                   {"resources", {{"requests", {{"storage", spec.storage.size}}}}}};
  if (!spec.storage.storage_class.empty())
    pvc_spec["storageClassName"] = spec.storage.storage_class;
  bool owned = spec.storage.reclaim_policy == ReclaimPolicy::kDelete;
  return {{"apiVersion", "v1"},
          {"kind", "PersistentVolumeClaim"},
          {"metadata", ObjectMeta(n, instance, owned ? owner_ref : Json(), labels)},
          {"spec", pvc_spec}};
}

Json DesiredService(const Names& n, const std::string& name, Json selector, const Json& owner_ref) {
  Json labels = BaseLabels(n.cluster);
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", ObjectMeta(n, name, owner_ref, labels)},
          {"spec",
           {{"type", "ClusterIP"},
            {"selector", std::move(selector)},
            {"ports",
             {{{"name", "postgres"},
               {"port", kPostgresPort},
               {"targetPort", kPostgresPort},
               {"protocol", "TCP"}}}}}}};
}

Json DesiredPdb(const Names& n, const ResourceType& type, const std::string& name,
                const std::string& role, int min_available, const Json& owner_ref) {
  Json selector = BaseLabels(n.cluster);
  selector.erase(kManagedByLabel);
  selector[kRoleLabel] = role;
  return {{"apiVersion", type.ApiVersion()},
          {"kind", type.kind},
          {"metadata", ObjectMeta(n, name, owner_ref, BaseLabels(n.cluster))},
          {"spec", {{"minAvailable", min_available}, {"selector", {{"matchLabels", selector}}}}}};
}

Json DesiredSecret(const Names& n, const std::string& purpose, const std::string& username,
                   const Json& owner_ref) {
  return {
      {"apiVersion", "v1"},
      {"kind", "Secret"},
      {"type", "kubernetes.io/basic-auth"},
      {"metadata", ObjectMeta(n, SecretName(n.cluster, purpose), owner_ref, BaseLabels(n.cluster))},
      {"stringData", {{"username", username}}}};
}

// ---- Comparisons: only the fields Petrel sets --------------------------------------------

bool LabelsContain(const Json& observed, const Json& desired_labels) {
  const Json& labels = Field(Field(observed, "metadata"), "labels");
  for (auto it = desired_labels.begin(); it != desired_labels.end(); ++it) {
    if (!labels.is_object() || !labels.contains(it.key()) || labels[it.key()] != *it) return false;
  }
  return true;
}

bool HasControllerRef(const Json& observed, const std::string& uid) {
  auto ref = meta::ControllerOf(observed);
  return ref && ref->uid == uid;
}

Json NormalizedPorts(const Json& ports) {
  Json out = Json::array();
  if (!ports.is_array()) return out;
  for (const auto& p : ports) {
    out.push_back({{"name", p.value("name", "")},
                   {"port", p.value("port", 0)},
                   {"targetPort", p.contains("targetPort") ? p["targetPort"] : p["port"]},
                   {"protocol", p.value("protocol", "TCP")}});
  }
  return out;
}

// A merge patch that makes `observed` Service match `desired` in the fields Petrel owns; null
// when it already does.
Json ServicePatch(const Json& observed, const Json& desired, const std::string& uid) {
  Json patch = Json::object();
  const Json& want_selector = desired["spec"]["selector"];
  const Json& have_selector = Field(Field(observed, "spec"), "selector");
  if (have_selector != want_selector) {
    Json sel = want_selector;
    if (have_selector.is_object()) {
      for (auto it = have_selector.begin(); it != have_selector.end(); ++it) {
        if (!want_selector.contains(it.key())) sel[it.key()] = nullptr;
      }
    }
    patch["spec"]["selector"] = sel;
  }
  if (NormalizedPorts(Field(Field(observed, "spec"), "ports")) !=
      NormalizedPorts(desired["spec"]["ports"])) {
    patch["spec"]["ports"] = desired["spec"]["ports"];
  }
  if (!LabelsContain(observed, desired["metadata"]["labels"])) {
    patch["metadata"]["labels"] = desired["metadata"]["labels"];
  }
  if (!HasControllerRef(observed, uid)) {
    patch["metadata"]["ownerReferences"] = desired["metadata"]["ownerReferences"];
  }
  return patch.empty() ? Json() : patch;
}

// ---- The planner -------------------------------------------------------------------------

Condition MakeCondition(const PostgresClusterStatus& old, const std::string& type, bool value,
                        const std::string& reason, const std::string& message, int64_t generation,
                        const std::string& now);

struct Member {
  std::string name;
  int serial = 0;
  const Json* pod = nullptr;  // nullptr when absent
  const Json* pvc = nullptr;
  const InstanceStatus* status = nullptr;  // nullptr when not reachable
  std::string status_error;
  bool ready = false;
  bool up_to_date = false;
};

class Planner {
 public:
  explicit Planner(const ClusterObservation& o) : o_(o) {}

  ClusterPlan Run();

 private:
  void Refuse(const std::string& reason, const std::string& message);
  void IndexObserved();
  bool CheckImmutable(const PostgresClusterSpec& spec);
  bool CheckRestore(const PostgresClusterSpec& spec);
  void DecideMembers(const PostgresClusterSpec& spec);
  void ConvergeVolumesAndPods(const PostgresClusterSpec& spec);
  void ConvergeServices(const PostgresClusterSpec& spec);
  void ConvergeSecrets();
  void ConvergePdbs(const PostgresClusterSpec& spec);
  // High availability: switchover and failover, each recorded in status.primaryChange.
  void AdvancePrimaryChange(const PostgresClusterSpec& spec);
  bool AcceptSwitchoverRequest();
  void AdvanceSwitchover(const PostgresClusterSpec& spec);
  void FinishSwitchover(const PostgresClusterSpec& spec);
  void DetectFailure(const PostgresClusterSpec& spec);
  void StartFailover(const PostgresClusterSpec& spec, const std::string& reason);
  void AdvanceFailover(const PostgresClusterSpec& spec);
  FailoverCandidate CandidateOf(const Member& m) const;
  FailoverChoice ChooseCandidate(const PostgresClusterSpec& spec) const;
  bool ConfirmCandidate(const PostgresClusterSpec& spec);
  PrimaryObservation ObservePrimary(const Member* p) const;
  std::optional<uint64_t> LastKnownLsn(const std::string& name) const;
  bool AwaitingOldLease() const {
    return change_ && change_->kind == PrimaryChangeKind::kFailover && primary_ == change_->from;
  }
  std::string NowText() const {
    return FormatRfc3339Micro(SystemTime(std::chrono::milliseconds(now_ms_)));
  }
  int64_t ElapsedMs(const std::string& since) const;
  void RequeueWithin(std::chrono::milliseconds d) {
    requeue_hint_ = requeue_hint_ ? std::min(*requeue_hint_, d) : d;
  }
  std::optional<Condition> SynchronousCondition(const PostgresClusterSpec& spec) const;

  void RollingUpdate(const PostgresClusterSpec& spec);
  void InstanceSpecs(const PostgresClusterSpec& spec);
  void Finish(const PostgresClusterSpec* spec);

  Member* FindMember(const std::string& name) {
    for (auto& m : members_) {
      if (m.name == name) return &m;
    }
    return nullptr;
  }
  const Json* PodOf(const std::string& name) const {
    auto it = pods_.find(name);
    return it == pods_.end() ? nullptr : it->second;
  }
  void Event(EventType type, std::string reason, std::string action, std::string note) {
    plan_.events.push_back({type, std::move(reason), std::move(action), std::move(note)});
  }
  void Action(ObjectOp op, const ResourceType& type, const std::string& name, Json body,
              std::string description) {
    plan_.actions.push_back(
        {op, &type, ObjectKey{n_.ns, name}, std::move(body), std::move(description)});
  }

  const ClusterObservation& o_;
  ClusterPlan plan_;
  Names n_;
  std::string uid_;
  int64_t generation_ = 0;
  Json owner_ref_;
  PostgresClusterStatus old_;
  PostgresClusterStatus new_;
  std::map<std::string, const Json*> pods_;
  std::map<std::string, const Json*> pvcs_;
  std::vector<Member> members_;
  std::vector<std::string> removed_;
  std::string primary_;
  std::string target_;
  std::optional<std::pair<std::string, std::string>> refusal_;  // reason, message
  std::string phase_;
  std::string phase_reason_;
  bool member_changes_ = false;  // pods created or deleted in this plan
  // A validated restore: the first instance's PVC is created from this VolumeSnapshot.
  std::string restore_snapshot_;
  // High availability.
  int64_t now_ms_ = 0;
  int64_t term_ = 1;
  std::optional<PrimaryChange> change_;
  std::optional<std::string> failover_blocked_;  // why the failing primary cannot be replaced
  std::optional<std::chrono::milliseconds> requeue_hint_;
};

ClusterPlan Planner::Run() {
  n_.cluster = meta::Name(o_.cluster);
  n_.ns = meta::Namespace(o_.cluster);
  uid_ = meta::Uid(o_.cluster);
  generation_ = meta::Generation(o_.cluster);
  owner_ref_ = meta::ControllerRefTo(o_.cluster);
  old_ = PostgresClusterStatus::FromJson(Field(o_.cluster, "status"));
  new_ = old_;
  now_ms_ = o_.now_unix_ms;
  if (SystemTime t; now_ms_ == 0 && ParseRfc3339(o_.now, &t)) {
    now_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  }
  term_ = std::max<int64_t>(old_.term, 1);
  change_ = old_.primary_change;
  if (meta::IsBeingDeleted(o_.cluster)) return plan_;  // owned objects go with it (GC)

  IndexObserved();
  auto parsed = ParseClusterSpec(Field(o_.cluster, "spec"));
  if (!parsed.ok()) {
    Refuse("InvalidSpec",
           "The spec is invalid and nothing was changed: " + parsed.status().message());
    Finish(nullptr);
    return plan_;
  }
  const PostgresClusterSpec& spec = *parsed;
  if (!CheckImmutable(spec) || !CheckRestore(spec)) {
    Finish(nullptr);
    return plan_;
  }
  DecideMembers(spec);
  AdvancePrimaryChange(spec);  // may move the primary, which the labels below follow
  // An instance is ready for the cluster only in the role the plan gives it (its own `ready`
  // is relative to the spec it last accepted, which may be an older one).
  for (auto& m : members_) {
    InstanceRole want = m.name == primary_ ? InstanceRole::kPrimary : InstanceRole::kReplica;
    if (m.ready && m.status->role != want) m.ready = false;
  }
  ConvergeSecrets();
  ConvergeVolumesAndPods(spec);
  ConvergeServices(spec);
  ConvergePdbs(spec);
  RollingUpdate(spec);
  InstanceSpecs(spec);
  Finish(&spec);
  return plan_;
}

void Planner::Refuse(const std::string& reason, const std::string& message) {
  refusal_ = {reason, message};
  const Condition* old = old_.FindCondition("Degraded");
  if (!old || old->status != "True" || old->reason != reason || old->message != message ||
      old->observed_generation != generation_) {
    Event(EventType::kWarning, reason, "Reconcile", message);
  }
}

void Planner::IndexObserved() {
  for (const auto& p : o_.pods) {
    auto owner = meta::ControllerOf(p);
    if (owner && owner->uid != uid_) continue;  // not ours, whatever its name or labels
    if (InstanceSerial(n_.cluster, meta::Name(p)) > 0) pods_[meta::Name(p)] = &p;
  }
  for (const auto& p : o_.pvcs) {
    if (InstanceSerial(n_.cluster, meta::Name(p)) > 0) pvcs_[meta::Name(p)] = &p;
  }
}

bool Planner::CheckImmutable(const PostgresClusterSpec& spec) {
  if (old_.postgres_major_version != 0 && spec.postgres_major != old_.postgres_major_version) {
    Refuse("MajorVersionChangeRefused",
           "spec.image asks for Postgres " + std::to_string(spec.postgres_major) +
               " but the cluster's data is Postgres " +
               std::to_string(old_.postgres_major_version) +
               "; a major version cannot change in place. Set spec.image back to a " +
               std::to_string(old_.postgres_major_version) +
               ".x image, or create a new cluster with the new version and move the data.");
    return false;
  }
  for (const auto& [name, pvc] : pvcs_) {
    std::string have_class = StringAt(*pvc, {"spec", "storageClassName"});
    if (!spec.storage.storage_class.empty() && !have_class.empty() &&
        have_class != spec.storage.storage_class) {
      Refuse("StorageClassChangeRefused",
             "spec.storage.storageClass is \"" + spec.storage.storage_class + "\" but volume " +
                 name + " uses \"" + have_class +
                 "\"; the storage class of existing volumes cannot change. Set it back to \"" +
                 have_class + "\".");
      return false;
    }
    std::string have = StringAt(*pvc, {"spec", "resources", "requests", "storage"});
    auto have_bytes = ParseByteQuantity(have);
    if (have_bytes.ok() && *have_bytes > spec.storage.size_bytes) {
      Refuse("StorageShrinkRefused",
             "spec.storage.size " + spec.storage.size + " is smaller than volume " + name + " (" +
                 have + "); volumes can grow but never shrink. Set spec.storage.size to " + have +
                 " or more.");
      return false;
    }
  }
  return true;
}

bool Planner::CheckRestore(const PostgresClusterSpec& spec) {
  const std::string& name = spec.bootstrap_snapshot;
  // Validated once, before anything exists: a restore that created the first PVC (its
  // dataSource names the snapshot) or published a primary is past this point for good.
  if (name.empty() || !old_.current_primary.empty() || !old_.system_id.empty()) return true;
  for (const auto& [pvc_name, pvc] : pvcs_) {
    if (StringAt(*pvc, {"spec", "dataSource", "name"}) == name) return true;
  }
  std::string what = "spec.bootstrap.snapshot names VolumeSnapshot " + name;
  if (!o_.restore_snapshot || !o_.restore_snapshot->ok()) {
    bool missing = o_.restore_snapshot && o_.restore_snapshot->status().code() == Code::kNotFound;
    Refuse(missing ? "SnapshotNotFound" : "SnapshotUnreadable",
           missing
               ? what + ", which does not exist in namespace " + n_.ns +
                     " (or the snapshot.storage.k8s.io API is not installed); nothing was "
                     "created. List snapshots with `kubectl petrel snapshots list "
                     "CLUSTER` and name one of them."
               : what + ", which cannot be read" +
                     (o_.restore_snapshot ? ": " + o_.restore_snapshot->status().message() : "") +
                     "; nothing was created yet.");
    return false;
  }
  ObservedSnapshot snap = ReadVolumeSnapshot(o_.restore_snapshot->value());
  if (!snap.error.empty()) {
    Refuse("SnapshotFailed", what + ", which failed (" + snap.error +
                                 "); nothing was created. Name another snapshot.");
    return false;
  }
  if (!snap.ready || snap.being_deleted) {
    Refuse("SnapshotNotReady",
           what + ", which is " + (snap.being_deleted ? "being deleted" : "not ready to use yet") +
               "; nothing was created. The cluster is created once the snapshot is ready, or "
               "name another snapshot.");
    return false;
  }
  if (snap.pg_major == 0) {
    Refuse("SnapshotNotFromPetrel",
           what + ", which does not say which Postgres major version its data is (annotation " +
               kPgMajorAnnotation +
               "); nothing was created. Restore from a snapshot Petrel took, or annotate this "
               "one with its major version.");
    return false;
  }
  if (snap.pg_major != spec.postgres_major) {
    Refuse("SnapshotMajorVersionMismatch",
           what + ", which holds Postgres " + std::to_string(snap.pg_major) +
               " data, but the cluster asks for Postgres " + std::to_string(spec.postgres_major) +
               "; nothing was created. Use a " + std::to_string(snap.pg_major) +
               ".x image to restore, then upgrade.");
    return false;
  }
  auto restore_bytes = ParseByteQuantity(snap.restore_size);
  if (restore_bytes.ok() && *restore_bytes > spec.storage.size_bytes) {
    Refuse("SnapshotLargerThanStorage",
           what + ", whose volume is " + snap.restore_size + ", larger than spec.storage.size " +
               spec.storage.size + "; nothing was created. Set spec.storage.size to at least " +
               snap.restore_size + ".");
    return false;
  }
  restore_snapshot_ = name;
  new_.restored_from = RestoreStatus{name, snap.cluster, snap.instance};
  return true;
}

void Planner::DecideMembers(const PostgresClusterSpec& spec) {
  std::set<std::string> names(old_.instance_names.begin(), old_.instance_names.end());
  for (const auto& [name, pod] : pods_) names.insert(name);
  primary_ = old_.current_primary;
  target_ = old_.target_primary.empty() ? primary_ : old_.target_primary;
  if (!primary_.empty()) names.insert(primary_);

  int max_serial = 0;
  auto track = [&](const std::string& name) {
    max_serial = std::max(max_serial, InstanceSerial(n_.cluster, name));
  };
  for (const auto& name : names) track(name);
  for (const auto& [name, pvc] : pvcs_) track(name);
  for (const auto& [name, pod] : pods_) track(name);

  for (const auto& name : names) {
    int serial = InstanceSerial(n_.cluster, name);
    if (serial > 0) members_.push_back(Member{name, serial});
  }
  int added = 0;
  while (static_cast<int>(members_.size()) < spec.replicas) {
    ++max_serial;
    members_.push_back(Member{InstanceName(n_.cluster, max_serial), max_serial});
    ++added;
  }
  std::sort(members_.begin(), members_.end(),
            [](const Member& a, const Member& b) { return a.serial < b.serial; });
  if (primary_.empty()) {
    primary_ = members_.front().name;  // a brand-new cluster: the first instance runs initdb
    target_ = primary_;
  }
  // Scale down: highest serials first, never the primary or a switchover target.
  for (int i = static_cast<int>(members_.size()) - 1;
       i >= 0 && static_cast<int>(members_.size()) > spec.replicas; --i) {
    if (members_[i].name == primary_ || members_[i].name == target_) continue;
    removed_.push_back(members_[i].name);
    members_.erase(members_.begin() + i);
  }
  if (added > 0) {
    Event(EventType::kNormal, "ScalingUp", "Scale",
          "Adding " + std::to_string(added) + " instance(s) to reach " +
              std::to_string(spec.replicas) + " replicas.");
  }
  if (!removed_.empty()) {
    std::string list;
    for (const auto& r : removed_) list += (list.empty() ? "" : ", ") + r;
    Event(EventType::kNormal, "ScalingDown", "Scale",
          "Removing instance(s) " + list + " to reach " + std::to_string(spec.replicas) +
              " replicas" +
              (spec.storage.reclaim_policy == ReclaimPolicy::kRetain
                   ? "; their volumes are kept (storage.reclaimPolicy: Retain)."
                   : " and their volumes (storage.reclaimPolicy: Delete)."));
  }

  std::string want_hash = PodSpecHash(spec);
  for (auto& m : members_) {
    m.pod = PodOf(m.name);
    auto pvc = pvcs_.find(m.name);
    m.pvc = pvc == pvcs_.end() ? nullptr : pvc->second;
    auto st = o_.instances.find(m.name);
    if (st != o_.instances.end()) {
      if (st->second.ok()) {
        m.status = &st->second.value();
      } else {
        m.status_error = st->second.status().message();
      }
    }
    m.ready = m.pod && !meta::IsBeingDeleted(*m.pod) && m.status && m.status->ready;
    m.up_to_date = m.pod && meta::Annotation(*m.pod, kPodSpecHashAnnotation) == want_hash;
  }
}

void Planner::ConvergeSecrets() {
  struct Wanted {
    const char* purpose;
    const char* username;
  };
  for (const Wanted& w : {Wanted{"superuser", kSuperuser}, Wanted{"replication", kReplicationUser},
                          Wanted{"petrel", "petrel"}}) {
    std::string name = SecretName(n_.cluster, w.purpose);
    if (o_.secrets.count(name)) continue;  // created once, never rotated implicitly
    plan_.secrets.push_back({DesiredSecret(n_, w.purpose, w.username, owner_ref_)});
  }
}

void Planner::ConvergeVolumesAndPods(const PostgresClusterSpec& spec) {
  bool delete_volumes = spec.storage.reclaim_policy == ReclaimPolicy::kDelete;
  for (auto& m : members_) {
    if (!m.pvc) {
      Json pvc = DesiredPvc(n_, spec, m.name, owner_ref_);
      std::string description = "create PVC " + m.name;
      if (!restore_snapshot_.empty() && m.name == primary_) {
        pvc["spec"]["dataSource"] = {{"apiGroup", resources::kVolumeSnapshot.group},
                                     {"kind", resources::kVolumeSnapshot.kind},
                                     {"name", restore_snapshot_}};
        description += " from VolumeSnapshot " + restore_snapshot_;
        Event(EventType::kNormal, "RestoringFromSnapshot", "Restore",
              "Creating volume " + m.name + " from VolumeSnapshot " + restore_snapshot_ +
                  "; replicas are cloned from it once it runs.");
      }
      Action(ObjectOp::kCreate, resources::kPersistentVolumeClaim, m.name, pvc, description);
    } else {
      Json patch = Json::object();
      std::string have = StringAt(*m.pvc, {"spec", "resources", "requests", "storage"});
      auto have_bytes = ParseByteQuantity(have);
      if (!have_bytes.ok() || *have_bytes < spec.storage.size_bytes) {
        patch["spec"]["resources"]["requests"]["storage"] = spec.storage.size;
        Event(EventType::kNormal, "VolumeResizing", "Resize",
              "Growing volume " + m.name + " from " + have + " to " + spec.storage.size + ".");
      }
      bool owned = HasControllerRef(*m.pvc, uid_);
      if (delete_volumes != owned) {
        Json refs = Json::array();
        for (const auto& r : Field(Field(*m.pvc, "metadata"), "ownerReferences")) {
          if (r.value("uid", "") != uid_) refs.push_back(r);
        }
        if (delete_volumes) refs.push_back(owner_ref_);
        patch["metadata"]["ownerReferences"] = refs;
      }
      if (!patch.empty()) {
        Action(ObjectOp::kMergePatch, resources::kPersistentVolumeClaim, m.name, patch,
               "update PVC " + m.name);
      }
    }
    std::string role = m.name == primary_ ? "primary" : "replica";
    if (!m.pod) {
      Action(ObjectOp::kCreate, resources::kPod, m.name,
             DesiredPod(n_, spec, m.name, role, owner_ref_), "create Pod " + m.name);
      member_changes_ = true;
    } else if (meta::Label(*m.pod, kRoleLabel) != role ||
               meta::Label(*m.pod, kClusterLabel) != n_.cluster ||
               meta::Label(*m.pod, kInstanceLabel) != m.name) {
      Json labels = BaseLabels(n_.cluster);
      labels[kInstanceLabel] = m.name;
      labels[kRoleLabel] = role;
      Action(ObjectOp::kMergePatch, resources::kPod, m.name, {{"metadata", {{"labels", labels}}}},
             "label Pod " + m.name + " " + role);
    }
  }
  for (const auto& name : removed_) {
    if (const Json* pod = PodOf(name); pod && !meta::IsBeingDeleted(*pod)) {
      Action(ObjectOp::kDelete, resources::kPod, name, Json(), "delete Pod " + name);
      member_changes_ = true;
    }
    if (delete_volumes && pvcs_.count(name)) {
      Action(ObjectOp::kDelete, resources::kPersistentVolumeClaim, name, Json(),
             "delete PVC " + name);
    }
  }
  // Labelled Pods that are not members (e.g. left over by an interrupted scale-down).
  for (const auto& [name, pod] : pods_) {
    if (!FindMember(name) && std::find(removed_.begin(), removed_.end(), name) == removed_.end() &&
        !meta::IsBeingDeleted(*pod) && HasControllerRef(*pod, uid_)) {
      Action(ObjectOp::kDelete, resources::kPod, name, Json(), "delete Pod " + name);
    }
  }
}

void Planner::ConvergeServices(const PostgresClusterSpec& spec) {
  (void)spec;
  auto selector = [&](const char* role) {
    Json s = {{kClusterLabel, n_.cluster}};
    if (role) s[kRoleLabel] = role;
    return s;
  };
  std::vector<Json> wanted = {
      DesiredService(n_, n_.cluster + "-rw", selector("primary"), owner_ref_),
      DesiredService(n_, n_.cluster + "-ro", selector("replica"), owner_ref_),
      DesiredService(n_, n_.cluster + "-r", selector(nullptr), owner_ref_)};
  for (const auto& m : members_) {
    Json s = selector(nullptr);
    s[kInstanceLabel] = m.name;
    wanted.push_back(DesiredService(n_, m.name, s, owner_ref_));
  }
  for (const auto& desired : wanted) {
    std::string name = desired["metadata"]["name"];
    auto it = o_.services.find(name);
    if (it == o_.services.end()) {
      Action(ObjectOp::kCreate, resources::kService, name, desired, "create Service " + name);
      continue;
    }
    if (auto ref = meta::ControllerOf(it->second); ref && ref->uid != uid_) {
      continue;  // someone else's Service with our name: leave it alone
    }
    Json patch = ServicePatch(it->second, desired, uid_);
    if (!patch.is_null()) {
      Action(ObjectOp::kMergePatch, resources::kService, name, patch, "revert Service " + name);
      Event(EventType::kNormal, "ServiceReverted", "Reconcile",
            "Service " + name + " differed from what the cluster needs and was restored.");
    }
  }
  for (const auto& name : removed_) {
    auto it = o_.services.find(name);
    if (it != o_.services.end() && HasControllerRef(it->second, uid_)) {
      Action(ObjectOp::kDelete, resources::kService, name, Json(), "delete Service " + name);
    }
  }
}

void Planner::ConvergePdbs(const PostgresClusterSpec& spec) {
  int n = static_cast<int>(members_.size());
  struct Wanted {
    std::string name;
    std::string role;
    int min_available;
    bool wanted;
  };
  // CloudNativePG's approach: the primary may not be evicted while replicas exist (a drain
  // waits for a switchover), and at most one replica is disrupted at a time. A single-instance
  // cluster gets no PDB so that node drains are never blocked forever.
  std::vector<Wanted> pdbs = {
      {n_.cluster + "-primary", "primary", 1, spec.enable_pdb && n > 1},
      {n_.cluster, "replica", n - 2, spec.enable_pdb && n > 2},
  };
  const ResourceType& pdb_type = *o_.pdb_type;
  for (const auto& w : pdbs) {
    auto it = o_.pdbs.find(w.name);
    bool exists = it != o_.pdbs.end();
    if (exists && !HasControllerRef(it->second, uid_)) continue;
    if (!w.wanted) {
      if (exists) {
        Action(ObjectOp::kDelete, pdb_type, w.name, Json(), "delete PodDisruptionBudget " + w.name);
      }
      continue;
    }
    Json desired = DesiredPdb(n_, pdb_type, w.name, w.role, w.min_available, owner_ref_);
    if (!exists) {
      Action(ObjectOp::kCreate, pdb_type, w.name, desired, "create PodDisruptionBudget " + w.name);
    } else if (Field(Field(it->second, "spec"), "minAvailable") !=
                   desired["spec"]["minAvailable"] ||
               Field(Field(it->second, "spec"), "selector") != desired["spec"]["selector"]) {
      Action(ObjectOp::kMergePatch, pdb_type, w.name, {{"spec", desired["spec"]}},
             "update PodDisruptionBudget " + w.name);
    }
  }
}

// ---- High availability ---------------------------------------------------------------

int64_t Planner::ElapsedMs(const std::string& since) const {
  SystemTime t;
  if (!ParseRfc3339(since, &t)) return 0;  // unreadable: as if it had just started
  return now_ms_ -
         std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::optional<uint64_t> Planner::LastKnownLsn(const std::string& name) const {
  std::optional<uint64_t> best;
  auto consider = [&](const std::string& text) {
    uint64_t v = 0;
    if (LsnValue(text, &v) && (!best || v > *best)) best = v;
  };
  if (const InstanceState* s = old_.FindInstance(name)) consider(s->lsn);
  if (auto it = o_.instances.find(name); it != o_.instances.end() && it->second.ok()) {
    consider(it->second->current_lsn);
  }
  return best;
}

PrimaryObservation Planner::ObservePrimary(const Member* p) const {
  PrimaryObservation po;
  po.name = primary_;
  if (!p) return po;
  po.pod_exists = p->pod != nullptr;
  po.pod_terminating = p->pod && meta::IsBeingDeleted(*p->pod);
  po.reachable = p->status != nullptr;
  po.unreachable_error = p->status_error;
  if (p->status) {
    po.running = p->status->running;
    po.fenced = p->status->fenced;
    po.initialized = p->status->initialized;
  }
  return po;
}

void Planner::AdvancePrimaryChange(const PostgresClusterSpec& spec) {
  if (change_ && change_->kind == PrimaryChangeKind::kFailover) {
    AdvanceFailover(spec);
    return;
  }
  if (change_ && primary_ == change_->to) {
    FinishSwitchover(spec);
    return;
  }
  if (change_ && target_ != change_->to) {
    // Someone rewrote status.targetPrimary during the switchover: back to the primary cancels
    // it (the old primary is unfenced), another instance starts a new request.
    Event(EventType::kNormal, "SwitchoverCancelled", "Switchover",
          "Switchover to " + change_->to + " cancelled (status.targetPrimary changed to " +
              target_ + ").");
    change_.reset();
  }
  if (!change_ && target_ != primary_ && !AcceptSwitchoverRequest()) return;
  if (change_) {
    AdvanceSwitchover(spec);
    return;
  }
  DetectFailure(spec);
}

bool Planner::AcceptSwitchoverRequest() {
  const Member* t = FindMember(target_);
  const Member* p = FindMember(primary_);
  std::string why;
  if (!t) {
    std::string list;
    for (const auto& m : members_) list += (list.empty() ? "" : ", ") + m.name;
    why = target_ + " is not a member of the cluster (members: " + list + ")";
  } else if (!t->pod || meta::IsBeingDeleted(*t->pod)) {
    why = target_ + " has no running Pod";
  } else if (!t->ready || !t->status || t->status->role != InstanceRole::kReplica) {
    why = target_ + " is not a ready replica";
  } else if (!p || !p->ready) {
    why = "primary " + primary_ + " is not ready (a failing primary is replaced by a failover)";
  }
  if (!why.empty()) {
    Event(EventType::kWarning, "SwitchoverRefused", "Switchover",
          "Switchover to " + target_ + " refused: " + why + ". status.targetPrimary was reset to " +
              primary_ + "; set it to a ready replica to try again.");
    target_ = primary_;
    return false;
  }
  change_ = PrimaryChange{PrimaryChangeKind::kSwitchover, primary_, target_,
                          "requested through status.targetPrimary", NowText(), ""};
  Event(EventType::kNormal, "SwitchoverStarted", "Switchover",
        "Switching over from " + primary_ + " to " + target_ + ": " + primary_ +
            " stops, then " + target_ + " is promoted once it has replayed all of its WAL.");
  return true;
}

void Planner::AdvanceSwitchover(const PostgresClusterSpec& spec) {
  Member* target = FindMember(target_);
  Member* old = FindMember(primary_);
  phase_ = "SwitchingOver";
  RequeueWithin(kRequeueChanging);
  if (!target || !target->pod || !old) {
    Event(EventType::kWarning, "SwitchoverAborted", "Switchover",
          "Switchover to " + target_ + " aborted: the instance no longer exists; " + primary_ +
              " stays primary.");
    target_ = primary_;
    change_.reset();
    phase_.clear();
    return;
  }
  // Stage 1 (the fence) is expressed by the old primary's spec (see InstanceSpecs). Stage 2:
  // once the old primary has stopped and the target has replayed everything it wrote, move
  // currentPrimary under a new term; the promotion and the old primary's rejoin follow from
  // the new specs.
  bool old_stopped = old->status && old->status->fenced && !old->status->running;
  if (!old->pod) old_stopped = true;  // its pod is gone: nothing can write any more
  std::optional<uint64_t> old_lsn = LastKnownLsn(primary_);
  bool caught_up = false;
  if (target->status && target->status->running && !target->status->streaming) {
    uint64_t replay = 0;
    uint64_t received = 0;
    bool have_replay = LsnValue(target->status->replay_lsn, &replay);
    bool have_received = LsnValue(target->status->received_lsn, &received);
    caught_up = have_replay && (!have_received || replay >= received) &&
                (!old_lsn || replay >= *old_lsn);
  }
  std::string waiting = !old_stopped
                            ? "Waiting for " + primary_ + " to stop (fenced)"
                            : "Waiting for " + target_ + " to replay the last WAL of " + primary_;
  if (old_stopped && caught_up) {
    primary_ = target_;
    ++term_;
    phase_reason_ = "Promoting " + target_;
    return;
  }
  if (ElapsedMs(change_->started_at) > spec.switchover_delay_seconds * 1000) {
    Event(EventType::kWarning, "SwitchoverTimedOut", "Switchover",
          "Switchover to " + target_ + " did not finish within switchoverDelay (" +
              std::to_string(spec.switchover_delay_seconds) + " s; " + waiting + "); " +
              primary_ + " is unfenced and stays primary.");
    target_ = primary_;
    change_.reset();
    phase_.clear();
    return;
  }
  phase_reason_ = waiting;
}

void Planner::FinishSwitchover(const PostgresClusterSpec& spec) {
  const Member* p = FindMember(primary_);
  int64_t took = ElapsedMs(change_->started_at);
  if (p && p->ready && p->status && p->status->role == InstanceRole::kPrimary) {
    Event(EventType::kNormal, "SwitchoverCompleted", "Switchover",
          primary_ + " is the primary (switchover from " + change_->from + " took " +
              std::to_string(took) + " ms); " + change_->from + " rejoins as a replica.");
    change_.reset();
    return;
  }
  if (took > spec.switchover_delay_seconds * 1000) {
    // Promotion cannot be undone; hand over to failure detection, which replaces a primary
    // that does not come up.
    Event(EventType::kWarning, "SwitchoverStalled", "Switchover",
          primary_ + " was chosen as primary " + std::to_string(took) +
              " ms ago but is not ready yet; it is now watched like any primary.");
    change_.reset();
    return;
  }
  phase_ = "SwitchingOver";
  phase_reason_ = "Waiting for " + primary_ + " to be promoted";
  RequeueWithin(kRequeueChanging);
}

void Planner::DetectFailure(const PostgresClusterSpec& spec) {
  const Member* p = FindMember(primary_);
  bool initialised = !old_.system_id.empty();
  if (members_.size() < 2 || !initialised) {
    new_.primary_failing_since.clear();
    return;
  }
  if (p && p->status && p->status->role == InstanceRole::kPrimary && p->status->fenced &&
      !p->status->running && p->status->lease_remaining_ms == 0 && p->status->term == term_) {
    // The primary fenced itself when its lease ran out (e.g. while this controller was away)
    // and is back in reach: continue in the next term, so that no grant of the expired term
    // (one that sat unread in its socket while it was frozen) can ever revive it.
    ++term_;
    Event(EventType::kNormal, "LeaseRenewedInNewTerm", "Lease",
          "Primary " + primary_ + " fenced itself when its lease for term " +
              std::to_string(term_ - 1) + " expired; it continues in term " +
              std::to_string(term_) + ".");
    return;
  }
  PrimaryHealth health = AssessPrimary(ObservePrimary(p), spec.failover_delay_seconds);
  if (!health.failing) {
    new_.primary_failing_since.clear();
    return;
  }
  if (new_.primary_failing_since.empty()) new_.primary_failing_since = NowText();
  int64_t left = health.delay_seconds * 1000 - ElapsedMs(new_.primary_failing_since);
  if (left > 0) {
    RequeueWithin(std::min<std::chrono::milliseconds>(std::chrono::milliseconds(left),
                                                      kRequeueBlocked));
    return;
  }
  StartFailover(spec, health.reason);
}

FailoverCandidate Planner::CandidateOf(const Member& m) const {
  FailoverCandidate c;
  c.name = m.name;
  c.serial = m.serial;
  c.reachable = m.pod && !meta::IsBeingDeleted(*m.pod) && m.status;
  if (m.status) {
    c.running = m.status->running;
    c.is_replica = m.status->role == InstanceRole::kReplica;
    c.same_system = new_.system_id.empty() || m.status->system_identifier.empty() ||
                    m.status->system_identifier == new_.system_id;
    uint64_t v = 0;
    if (LsnValue(m.status->received_lsn, &v)) c.received_lsn = v;
    if (LsnValue(m.status->replay_lsn, &v)) c.replay_lsn = v;
  }
  return c;
}

FailoverChoice Planner::ChooseCandidate(const PostgresClusterSpec& spec) const {
  std::vector<FailoverCandidate> candidates;
  for (const auto& m : members_) candidates.push_back(CandidateOf(m));
  FailoverRules rules;
  rules.max_lag_bytes = spec.max_lag_on_failover_bytes;
  rules.primary_lsn = LastKnownLsn(primary_);
  if (const auto& sync = spec.postgresql.synchronous) {
    rules.synchronous_number = sync->number;
    rules.synchronous_standbys = old_.synchronous_standbys;
    if (rules.synchronous_standbys.empty() && sync->data_durability == DataDurability::kRequired) {
      // Not recorded yet (a cluster from before status.synchronousStandbys): with required
      // durability the primary waited for every replica.
      for (const auto& m : members_) {
        if (m.name != primary_) rules.synchronous_standbys.push_back(m.name);
      }
    }
  }
  return ChooseFailoverCandidate(primary_, candidates, rules);
}

// Right before the promotion the old primary can no longer commit, so the positions the
// replicas report now are final. The candidate was chosen on positions read earlier: a replica
// that is now further ahead holds writes the candidate may lack (in synchronous mode, writes
// acknowledged to clients) and is promoted instead. False while nobody may be promoted.
bool Planner::ConfirmCandidate(const PostgresClusterSpec& spec) {
  FailoverChoice best = ChooseCandidate(spec);
  if (best.name.empty()) {
    // Asynchronous rules only ever refuse for lag, which the earlier choice already accepted.
    if (!spec.postgresql.synchronous) return true;
    failover_blocked_ = "Failover from " + change_->from + " to " + change_->to +
                        " waits before the promotion: " + best.refusal + ".";
    if (old_.phase_reason != *failover_blocked_) {
      Event(EventType::kWarning, "FailoverBlocked", "Failover", *failover_blocked_);
    }
    return false;
  }
  const Member* current = FindMember(change_->to);
  std::optional<uint64_t> chosen =
      current ? CandidatePosition(CandidateOf(*current)) : std::nullopt;
  if (best.name != change_->to && best.lsn && (!chosen || *best.lsn > *chosen)) {
    Event(EventType::kWarning, "FailoverCandidateChanged", "Failover",
          best.name + " has received WAL up to " + FormatLsn(*best.lsn) + ", further than " +
              change_->to + " (" + (chosen ? FormatLsn(*chosen) : std::string("unknown")) +
              "); promoting " + best.name + " instead.");
    change_->to = best.name;
    chosen = best.lsn;
  }
  if (chosen) change_->lsn = FormatLsn(*chosen);
  return true;
}

void Planner::StartFailover(const PostgresClusterSpec& spec, const std::string& reason) {
  FailoverChoice choice = ChooseCandidate(spec);
  if (choice.name.empty()) {
    failover_blocked_ = "Primary " + primary_ + " is failing (" + reason +
                        ") and cannot be replaced: " + choice.refusal + ".";
    if (old_.phase_reason != *failover_blocked_) {
      Event(EventType::kWarning, "FailoverBlocked", "Failover", *failover_blocked_);
    }
    RequeueWithin(kRequeueBlocked);
    return;
  }
  change_ = PrimaryChange{PrimaryChangeKind::kFailover, primary_, choice.name, reason, NowText(),
                          choice.lsn ? FormatLsn(*choice.lsn) : ""};
  Event(EventType::kWarning, "FailoverStarted", "Failover",
        "Failing over from " + primary_ + " to " + choice.name + " (WAL received up to " +
            (choice.lsn ? FormatLsn(*choice.lsn) : "unknown") + "): " + reason + ". " +
            choice.name + " is promoted once the lease of " + primary_ +
            " has certainly expired.");
  AdvanceFailover(spec);
}

void Planner::AdvanceFailover(const PostgresClusterSpec& spec) {
  phase_ = "FailingOver";
  RequeueWithin(kRequeueChanging);
  if (primary_ == change_->from) {
    // Not promoted yet: the candidate must still be usable; if not, choose again.
    const Member* c = FindMember(change_->to);
    bool usable = c && c->pod && !meta::IsBeingDeleted(*c->pod) && c->status &&
                  c->status->running && c->status->role == InstanceRole::kReplica;
    if (!usable) {
      FailoverChoice again = ChooseCandidate(spec);
      if (again.name.empty()) {
        target_ = change_->to;
        failover_blocked_ = "Failover from " + change_->from + " to " + change_->to +
                            " is stuck: " + change_->to + " can no longer be promoted and " +
                            again.refusal + ".";
        if (old_.phase_reason != *failover_blocked_) {
          Event(EventType::kWarning, "FailoverBlocked", "Failover", *failover_blocked_);
        }
        return;
      }
      Event(EventType::kWarning, "FailoverCandidateChanged", "Failover",
            change_->to + " can no longer be promoted; promoting " + again.name + " instead.");
      change_->to = again.name;
      change_->lsn = again.lsn ? FormatLsn(*again.lsn) : "";
    }
    target_ = change_->to;
    if (!o_.old_lease_expires_in_ms) {
      phase_reason_ = "Waiting for the replicas to accept term " + std::to_string(term_ + 1) +
                      " (then " + change_->from + " can no longer renew its lease)";
      return;
    }
    if (*o_.old_lease_expires_in_ms > 0) {
      // No countdown in the text: a status write per poll would only slow the failover.
      phase_reason_ = "Waiting until the lease of " + change_->from + " has certainly expired";
      RequeueWithin(std::chrono::milliseconds(*o_.old_lease_expires_in_ms));
      return;
    }
    if (!ConfirmCandidate(spec)) return;
    target_ = primary_ = change_->to;
    ++term_;
    phase_reason_ = "Promoting " + primary_;
    return;
  }
  // Promoted: done once the new primary is ready.
  const Member* p = FindMember(primary_);
  if (p && p->ready && p->status && p->status->role == InstanceRole::kPrimary) {
    int64_t took = ElapsedMs(change_->started_at);
    new_.failovers = old_.failovers + 1;
    new_.last_failover =
        FailoverRecord{change_->from, change_->to, change_->lsn, o_.now, change_->reason, took};
    Event(EventType::kNormal, "FailoverCompleted", "Failover",
          primary_ + " is the primary after a failover from " + change_->from + " that took " +
              std::to_string(took) + " ms (promoted at LSN " +
              (change_->lsn.empty() ? "unknown" : change_->lsn) + ", term " +
              std::to_string(term_) + "); " + change_->from +
              " rejoins as a replica when it returns.");
    change_.reset();
    new_.primary_failing_since.clear();
    phase_.clear();
    return;
  }
  PrimaryHealth health = AssessPrimary(ObservePrimary(p), 0);
  if (health.failing && (!p || !p->pod || !p->status)) {
    // The promoted instance failed as well: end this failover; the next pass detects the
    // failing primary and starts another one (with the next term).
    Event(EventType::kWarning, "FailoverInterrupted", "Failover",
          "Failover from " + change_->from + " to " + primary_ + " interrupted: " +
              health.reason + ".");
    change_.reset();
    return;
  }
  phase_reason_ = "Waiting for " + primary_ + " to finish its promotion";
}

std::optional<Condition> Planner::SynchronousCondition(const PostgresClusterSpec& spec) const {
  const auto& sync = spec.postgresql.synchronous;
  if (!sync || members_.size() < 2) return std::nullopt;
  int streaming = 0;
  for (const auto& m : members_) {
    if (m.name != primary_ && m.status && m.status->streaming) ++streaming;
  }
  bool required = sync->data_durability == DataDurability::kRequired;
  std::string counts = std::to_string(streaming) + " of " + std::to_string(sync->number) +
                       " synchronous standby(s) streaming";
  if (streaming >= sync->number) {
    return MakeCondition(old_, "SynchronousReplication", true, "StandbysStreaming",
                         "Commits wait for " + std::to_string(sync->number) +
                             " standby(s); " + counts + ".",
                         generation_, o_.now);
  }
  if (required) {
    return MakeCondition(old_, "SynchronousReplication", false, "WritesBlocked",
                         "Only " + counts +
                             "; commits wait until enough standbys reconnect "
                             "(dataDurability: required).",
                         generation_, o_.now);
  }
  return MakeCondition(old_, "SynchronousReplication", false,
                       streaming == 0 ? "DegradedToAsync" : "FewerStandbys",
                       "Only " + counts + "; commits " +
                           (streaming == 0 ? "are acknowledged without any standby"
                                           : "wait for the connected standbys only") +
                           " (dataDurability: preferred).",
                       generation_, o_.now);
}

void Planner::RollingUpdate(const PostgresClusterSpec& spec) {
  if (target_ != primary_ || change_ || failover_blocked_ || !new_.primary_failing_since.empty() ||
      member_changes_ || !removed_.empty()) {
    return;
  }
  std::vector<Member*> outdated_replicas;
  Member* primary = FindMember(primary_);
  bool all_ready = true;
  for (auto& m : members_) {
    if (!m.pod || !m.ready) all_ready = false;
    if (m.pod && !m.up_to_date && m.name != primary_) outdated_replicas.push_back(&m);
  }
  bool primary_outdated = primary && primary->pod && !primary->up_to_date;
  if (outdated_replicas.empty() && !primary_outdated) return;
  phase_ = "Upgrading";
  if (!all_ready) {
    phase_reason_ = "Rolling update waits until every instance is ready";
    return;
  }
  if (!outdated_replicas.empty()) {
    Member* next = *std::max_element(outdated_replicas.begin(), outdated_replicas.end(),
                                     [](Member* a, Member* b) { return a->serial < b->serial; });
    Action(ObjectOp::kDelete, resources::kPod, next->name, Json(),
           "delete Pod " + next->name + " (rolling update)");
    Event(EventType::kNormal, "RollingUpdate", "Update",
          "Recreating replica " + next->name + " with image " + spec.image + ".");
    phase_reason_ = "Recreating replica " + next->name;
    return;
  }
  bool restart =
      spec.primary_update_method == PrimaryUpdateMethod::kRestart || members_.size() == 1;
  if (restart) {
    Action(ObjectOp::kDelete, resources::kPod, primary_, Json(),
           "delete Pod " + primary_ + " (rolling update, restart)");
    Event(EventType::kNormal, "RollingUpdate", "Update",
          "Restarting primary " + primary_ + " with image " + spec.image +
              (members_.size() == 1 ? " (single instance: writes pause until it is back)."
                                    : " (primaryUpdateMethod: restart)."));
    phase_reason_ = "Restarting primary " + primary_;
    return;
  }
  // Switchover to the most advanced up-to-date replica (ties: lowest serial).
  Member* best = nullptr;
  uint64_t best_lsn = 0;
  for (auto& m : members_) {
    if (m.name == primary_ || !m.ready || !m.up_to_date || !m.status) continue;
    uint64_t lsn = 0;
    LsnValue(m.status->replay_lsn, &lsn);
    if (!best || lsn > best_lsn) {
      best = &m;
      best_lsn = lsn;
    }
  }
  if (!best) return;
  target_ = best->name;
  change_ = PrimaryChange{PrimaryChangeKind::kSwitchover, primary_, target_,
                          "rolling update of the primary", NowText(), ""};
  RequeueWithin(kRequeueChanging);
  Event(EventType::kNormal, "SwitchoverStarted", "Switchover",
        "Switching over from " + primary_ + " to " + target_ +
            " to update the primary; writes pause until " + target_ + " is promoted.");
  phase_ = "SwitchingOver";
  phase_reason_ = "Fencing " + primary_;
}

void Planner::InstanceSpecs(const PostgresClusterSpec& spec) {
  const Member* primary = FindMember(primary_);
  std::string primary_ip =
      primary && primary->pod ? StringAt(*primary->pod, {"status", "podIP"}) : "";
  bool switching = target_ != primary_;
  // During a failover that has not promoted yet every replica is already in the next term, so
  // that none of them confirms the old primary's leadership any more.
  int64_t replica_term = AwaitingOldLease() ? term_ + 1 : term_;
  std::vector<Peer> peers;
  std::vector<std::string> slots;
  std::vector<std::string> standbys;
  for (const auto& m : members_) {
    if (m.name == primary_) continue;
    slots.push_back(SlotName(m.name));
    std::string ip = m.pod ? StringAt(*m.pod, {"status", "podIP"}) : "";
    if (!ip.empty()) peers.push_back(Peer{m.name, ip, kInstanceApiPort});
    bool connected = m.status && m.status->streaming;
    if (spec.postgresql.synchronous &&
        (spec.postgresql.synchronous->data_durability == DataDurability::kRequired || connected)) {
      standbys.push_back(m.name);
    }
  }
  std::string system_id = old_.system_id;
  if (primary && primary->status && !primary->status->system_identifier.empty() &&
      primary->status->initialized) {
    system_id = primary->status->system_identifier;
  }
  new_.system_id = system_id;
  // The standbys the primary waits for, as a failover must know them: recorded only while the
  // primary is healthy and no change is in progress (a dying primary's list says nothing).
  if (!spec.postgresql.synchronous) {
    new_.synchronous_standbys.clear();
  } else if (!change_ && new_.primary_failing_since.empty() && primary && primary->ready) {
    new_.synchronous_standbys = standbys;
  }
  bool leased = members_.size() > 1;

  std::vector<InstanceState> states;
  for (const auto& m : members_) {
    InstanceSpec want;
    want.parameters = spec.postgresql.parameters;
    want.memory_limit_bytes = spec.resources.memory_bytes;
    want.pg_hba = spec.postgresql.pg_hba;
    want.cluster_uid = uid_;
    bool can_put = m.pod && !meta::IsBeingDeleted(*m.pod) && m.status;
    if (m.name == primary_) {
      want.role = InstanceRole::kPrimary;
      want.bootstrap = !system_id.empty()                 ? BootstrapMethod::kNone
                       : !spec.bootstrap_snapshot.empty() ? BootstrapMethod::kSnapshot
                                                          : BootstrapMethod::kInitdb;
      if (want.bootstrap == BootstrapMethod::kInitdb) {
        want.initdb = InitdbOptions{spec.initdb.database, spec.initdb.owner, spec.initdb.encoding,
                                    spec.initdb.locale, spec.initdb.data_checksums};
      }
      want.replication_slots = slots;
      want.synchronous_standby_names =
          SynchronousStandbyNames(spec.postgresql.synchronous, standbys);
      want.fenced = switching;
      want.term = term_;
      if (leased) {
        want.lease_duration_ms = spec.lease_duration_ms;
        want.peers = peers;
      }
    } else {
      want.term = replica_term;
      want.role = InstanceRole::kReplica;
      want.bootstrap = BootstrapMethod::kClone;
      want.slot_name = SlotName(m.name);
      if (!primary_ip.empty()) {
        want.primary = Endpoint{primary_ip, kPostgresPort};
      } else {
        can_put = false;  // a replica cannot be told whom to follow yet
      }
    }
    InstanceState state;
    state.name = m.name;
    if (const InstanceState* prev = old_.FindInstance(m.name)) state = *prev;
    state.name = m.name;
    std::string hash = InstanceSpecHash(want);
    if (can_put && state.spec_hash != hash) {
      state.spec_generation =
          std::max(state.spec_generation, m.status ? m.status->spec_generation : 0) + 1;
      state.spec_hash = hash;
    }
    want.generation = state.spec_generation;
    if (can_put && m.status->spec_generation != state.spec_generation) {
      plan_.spec_puts.push_back({m.name, want});
    }
    // Observed state.
    state.ready = m.ready;
    state.joined = state.joined || m.ready;
    if (m.status) {
      state.role = RoleText(m.status->role);
      state.phase = m.status->phase;
      state.lsn =
          m.status->role == InstanceRole::kPrimary ? m.status->current_lsn : m.status->replay_lsn;
      state.lag_bytes = m.status->lag_bytes;
      state.timeline = m.status->timeline;
      state.message = m.status->message;
      state.checks = RecordedChecks(state.checks, m.status->checks);
    } else {
      state.role = "";
      state.phase = !m.pod ? "Creating" : meta::IsBeingDeleted(*m.pod) ? "Terminating" : "Pending";
      state.message = m.status_error;
      state.lag_bytes = -1;
      state.checks.clear();
    }
    states.push_back(std::move(state));
  }
  new_.instances = std::move(states);
  if (leased && primary && primary->pod && !AwaitingOldLease()) {
    plan_.lease = LeaseTarget{primary_, term_, spec.lease_duration_ms};
  }
}

Condition MakeCondition(const PostgresClusterStatus& old, const std::string& type, bool value,
                        const std::string& reason, const std::string& message, int64_t generation,
                        const std::string& now) {
  Condition c{type, value ? "True" : "False", reason, message, generation, now};
  if (const Condition* prev = old.FindCondition(type); prev && prev->status == c.status) {
    c.last_transition_time = prev->last_transition_time;
  }
  return c;
}

void Planner::Finish(const PostgresClusterSpec* spec) {
  new_.observed_generation = generation_;
  new_.selector = std::string(kClusterLabel) + "=" + n_.cluster;
  int ready = 0;
  int existing = 0;
  std::string not_ready;
  std::string joining;  // a not ready member that has never been ready (being provisioned)
  std::string failing;  // a not ready member that has been ready before
  for (const auto& m : members_) {
    if (m.pod && !meta::IsBeingDeleted(*m.pod)) ++existing;
    if (m.ready) {
      ++ready;
      continue;
    }
    std::string described =
        m.name + (m.status_error.empty() && m.status && !m.status->message.empty()
                      ? " (" + m.status->message + ")"
                      : "");
    if (not_ready.empty()) not_ready = described;
    const InstanceState* state = new_.FindInstance(m.name);
    if (state && state->joined) {
      if (failing.empty()) failing = described;
    } else if (joining.empty()) {
      joining = described;
    }
  }
  if (spec) {
    new_.replicas = existing;
    new_.ready_replicas = ready;
    new_.current_primary = primary_;
    new_.target_primary = target_;
    new_.term = term_;
    new_.primary_change = change_;
    // The image every member runs: it changes once the last outdated Pod was recreated.
    bool all_updated = std::all_of(members_.begin(), members_.end(),
                                   [](const Member& m) { return !m.pod || m.up_to_date; });
    if (all_updated || new_.image.empty()) new_.image = spec->image;
    new_.postgres_major_version = spec->postgres_major;
    new_.instance_names.clear();
    for (const auto& m : members_) new_.instance_names.push_back(m.name);
  }
  bool primary_ready = false;
  if (const Member* p = FindMember(primary_)) primary_ready = p->ready;
  bool all_ready = spec && ready == spec->replicas && primary_ready && target_ == primary_;

  std::string phase = phase_;
  std::string reason = phase_reason_;
  if (refusal_) {
    phase = "Degraded";
    reason = refusal_->second;
  } else if (failover_blocked_) {
    phase = phase.empty() ? "Degraded" : phase;
    reason = *failover_blocked_;
  } else if (phase.empty()) {
    if (new_.system_id.empty() && !primary_ready) {
      phase = "Provisioning";
      reason = "Setting up primary " + primary_;
    } else if (std::any_of(members_.begin(), members_.end(),
                           [](const Member& m) { return m.pod && !m.up_to_date; })) {
      phase = "Upgrading";
      reason = "Recreating instances with the new image or resources";
    } else if (member_changes_ || !removed_.empty() || (spec && existing != spec->replicas)) {
      phase = "Scaling";
      reason = "Scaling to " + std::to_string(spec ? spec->replicas : 0) + " instances";
    } else if (all_ready) {
      phase = "Healthy";
      reason = "Cluster is healthy";
    } else if (!joining.empty() && failing.empty()) {
      // New instances (initdb, clone) are not a problem until they have been ready once. A
      // cluster still coming up stays Provisioning; one that was up is Scaling.
      bool provisioning = old_.phase.empty() || old_.phase == "Provisioning";
      phase = provisioning ? "Provisioning" : "Scaling";
      reason = "Waiting for new instance " + joining + " to become ready";
    } else {
      phase = "Degraded";
      reason = "Instance " + (failing.empty() ? not_ready : failing) + " is not ready";
    }
  }
  new_.phase = phase;
  new_.phase_reason = reason;
  const std::string& culprit = failing.empty() ? not_ready : failing;
  bool progressing = !refusal_ && phase != "Healthy" && phase != "Degraded";
  std::vector<Condition> conditions;
  std::string ready_message =
      all_ready ? "All " + std::to_string(ready) + " instances are ready."
                : std::to_string(ready) + " of " + std::to_string(spec ? spec->replicas : 0) +
                      " instances are ready" +
                      (not_ready.empty() ? "." : "; waiting for " + not_ready + ".");
  if (refusal_) {
    // A refused change says nothing new about readiness: keep what was last observed.
    const Condition* prev = old_.FindCondition("Ready");
    conditions.push_back(prev ? *prev
                              : Condition{"Ready", "Unknown", "ChangeRefused",
                                          "The spec was refused; see the Degraded condition.",
                                          generation_, o_.now});
  } else {
    conditions.push_back(MakeCondition(old_, "Ready", all_ready,
                                       all_ready ? "ClusterIsReady" : "ClusterIsNotReady",
                                       ready_message, generation_, o_.now));
  }
  conditions.push_back(MakeCondition(old_, "Progressing", progressing,
                                     progressing ? phase : "Converged",
                                     progressing ? reason : "Nothing to do.", generation_, o_.now));
  if (refusal_) {
    conditions.push_back(MakeCondition(old_, "Degraded", true, refusal_->first, refusal_->second,
                                       generation_, o_.now));
  } else if (failover_blocked_) {
    conditions.push_back(MakeCondition(old_, "Degraded", true, "FailoverBlocked",
                                       *failover_blocked_, generation_, o_.now));
  } else if (phase == "Degraded") {
    conditions.push_back(MakeCondition(old_, "Degraded", true, "InstanceNotReady",
                                       reason + "; check `kubectl describe pod " +
                                           culprit.substr(0, culprit.find(' ')) + "` and its logs.",
                                       generation_, o_.now));
  } else {
    conditions.push_back(MakeCondition(old_, "Degraded", false, "AsExpected", "No problems found.",
                                       generation_, o_.now));
  }
  conditions.push_back(ChecksCondition(old_, new_.instances, generation_, o_.now));
  if (spec) {
    if (auto sync = SynchronousCondition(*spec)) conditions.push_back(std::move(*sync));
  }
  new_.conditions = std::move(conditions);
  if (!(new_ == old_)) plan_.status = new_;

  if (refusal_) {
    // A restore waiting for its snapshot to become ready looks again soon; other refusals
    // need the user.
    plan_.requeue_after = refusal_->first == "SnapshotNotReady" ? kRequeueBusy : kRequeueHealthy;
  } else if (all_ready && phase == "Healthy" && plan_.actions.empty() && plan_.spec_puts.empty()) {
    plan_.requeue_after = kRequeueHealthy;
  } else {
    plan_.requeue_after = kRequeueBusy;
  }
  // A member that has an address but does not answer (e.g. a replaced primary that is frozen)
  // is asked again every second, so that it is told its new role soon after it is back.
  for (const auto& m : members_) {
    if (m.pod && !m.status && !StringAt(*m.pod, {"status", "podIP"}).empty()) {
      RequeueWithin(kRequeueBlocked);
    }
  }
  if (requeue_hint_ && !refusal_) {
    plan_.requeue_after = std::clamp(*requeue_hint_, std::chrono::milliseconds(50),
                                     std::chrono::milliseconds(plan_.requeue_after));
  }
}

}  // namespace

ClusterPlan PlanCluster(const ClusterObservation& observed) { return Planner(observed).Run(); }

}  // namespace petrel
