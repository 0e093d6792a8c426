// Typed PostgresCluster (petrel.dev/v1alpha1): the spec a user writes, parsed and validated
// from the JSON object the API server stores, and the status the controller publishes.
//
// Parsing is pure (no I/O). The CRD schema (crds/postgrescluster.yaml) already rejects wrong
// types, enums and bounds at admission; ParseClusterSpec re-checks what the schema checks (a
// spec may come from `petrel local`, which has no schema) and adds the cross-field rules the
// 1.20 API server cannot express. Every problem is reported at once, each with its field path
// and a sentence saying what to do.
//
// Defaults are applied to the typed value only; they are never written back into the object's
// spec (GitOps tools would see drift). Computed values go to status.
//
// Thread-safety: plain values and pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/object.h"
#include "core/status.h"

namespace petrel {

// ---- Quantities (resource.Quantity) ----------------------------------------------------

// A byte count from a Kubernetes quantity: plain bytes ("1048576"), binary suffixes
// (Ki Mi Gi Ti Pi Ei), decimal suffixes (k M G T P E), decimal fractions ("1.5Gi", rounded up
// to a whole byte) and decimal exponents ("1e9"). Negative values, milli ("500m") and values
// beyond int64 are Invalid with a message naming the accepted forms.
Result<int64_t> ParseByteQuantity(const std::string& text);
// A CPU quantity in millicores: "2" -> 2000, "500m" -> 500, "0.25" -> 250.
Result<int64_t> ParseMilliQuantity(const std::string& text);
// The shortest exact binary form: 10737418240 -> "10Gi", 1500 -> "1500".
std::string FormatByteQuantity(int64_t bytes);

// The Postgres major version encoded in an image reference's tag: "…/postgres:15.4" -> 15,
// "postgres:16-bookworm" -> 16, "registry:5000/pg:15" -> 15. nullopt when the tag does not
// start with a version (e.g. "latest", or a digest-only reference).
std::optional<int> MajorVersionFromImage(const std::string& image);

// ---- Spec --------------------------------------------------------------------------------

enum class ReclaimPolicy { kRetain, kDelete };
enum class SyncMethod { kAny, kFirst };
enum class DataDurability { kRequired, kPreferred };
enum class PrimaryUpdateMethod { kSwitchover, kRestart };

inline constexpr int64_t kDefaultLeaseDurationMs = 1000;
inline constexpr int64_t kMinLeaseDurationMs = 500;
inline constexpr int64_t kMaxLeaseDurationMs = 60000;

const char* ReclaimPolicyName(ReclaimPolicy p);  // "Retain" | "Delete"

// corev1.ResourceRequirements, values kept in the user's spelling (they go into the Pod).
struct ResourceRequirements {
  std::map<std::string, std::string> requests;
  std::map<std::string, std::string> limits;
  // limits.memory, else requests.memory, in bytes; 0 when neither is set.
  int64_t memory_bytes = 0;

  Json ToJson() const;  // {"requests": {...}, "limits": {...}}, empty maps omitted
  bool operator==(const ResourceRequirements&) const = default;
};

struct StorageSpec {
  std::string size;  // as written, e.g. "10Gi"
  int64_t size_bytes = 0;
  std::string storage_class;  // "" = the cluster's default StorageClass
  ReclaimPolicy reclaim_policy = ReclaimPolicy::kRetain;
};

// spec.postgresql.synchronous; absent means asynchronous replication.
struct SynchronousSpec {
  SyncMethod method = SyncMethod::kAny;
  int number = 1;
  DataDurability data_durability = DataDurability::kRequired;
};

struct PostgresConfig {
  std::map<std::string, std::string> parameters;
  std::vector<std::string> pg_hba;
  std::optional<SynchronousSpec> synchronous;
};

// spec.attachments: which namespaces may attach apps to this cluster. The cluster's own
// namespace is always allowed.
struct AttachmentPolicy {
  std::vector<std::string> allowed_namespaces;      // "*" = any namespace
  std::optional<LabelSelector> namespace_selector;  // an empty selector admits no namespace

  // True when an attachment in `namespace_` (whose labels are `namespace_labels`) may use a
  // cluster that lives in `cluster_namespace`.
  bool Allows(const std::string& cluster_namespace, const std::string& namespace_,
              const std::map<std::string, std::string>& namespace_labels) const;
};

struct InitdbSpec {
  std::string database = "app";
  std::string owner;  // defaults to `database`
  bool data_checksums = true;
  std::string encoding = "UTF8";
  std::string locale = "C";
};

struct PostgresClusterSpec {
  int32_t replicas = 1;  // total instances, primary included
  std::string image;
  std::optional<int> postgres_version;  // spec.postgresVersion as written
  int postgres_major = 0;               // from postgresVersion, else from the image tag
  ResourceRequirements resources;
  StorageSpec storage;
  PostgresConfig postgresql;
  // High availability (see reconcilers/cluster_plan.h for how they are used).
  int64_t failover_delay_seconds = 0;    // a failing primary is replaced after this long
  int64_t switchover_delay_seconds = 60; // a switchover that has not finished by then is undone
  std::optional<int64_t> max_lag_on_failover_bytes;  // async: a replica further behind is skipped
  // How long a primary may stay writable without hearing from the controller (or from all of
  // its replicas): a replaced primary fences itself within this time, and a failover waits
  // for it. spec.leaseDurationMilliseconds; the default, 1000 ms, renews every 200 ms and
  // keeps the failover of a frozen primary under 2 s on a local cluster (the arithmetic is in
  // reconcilers/lease_keeper.h).
  int64_t lease_duration_ms = kDefaultLeaseDurationMs;
  PrimaryUpdateMethod primary_update_method = PrimaryUpdateMethod::kSwitchover;
  bool enable_pdb = true;
  AttachmentPolicy attachments;
  InitdbSpec initdb;
};

// Parses `spec` (the object's .spec). On failure returns Invalid whose causes hold one entry
// per problem (field "spec.storage.size", reason "FieldValueInvalid", message saying what to
// do) and whose message joins them.
Result<PostgresClusterSpec> ParseClusterSpec(const Json& spec);

// The replication slot a replica streams through: "db-2" -> "petrel_db_2" (slot names allow
// only lower-case letters, digits and underscores). Replicas connect with application_name =
// their instance name, which is how synchronous_standby_names refers to them.
std::string SlotName(const std::string& instance);

// ---- Status ------------------------------------------------------------------------------

// metav1.Condition.
struct Condition {
  std::string type;
  std::string status;  // "True" | "False" | "Unknown"
  std::string reason;  // UpperCamelCase
  std::string message;
  int64_t observed_generation = 0;
  std::string last_transition_time;  // RFC 3339

  Json ToJson() const;
  static Condition FromJson(const Json& j);
  bool operator==(const Condition&) const = default;
};

struct InstanceState {
  std::string name;
  std::string role;  // "primary" | "replica" | "" (unknown)
  bool ready = false;
  std::string phase;
  std::string lsn;
  int64_t lag_bytes = -1;
  int64_t timeline = 0;
  std::string message;
  // The InstanceSpec generation the controller assigned and a hash of its content: the
  // controller reuses the generation while the content is unchanged, so a restart of the
  // controller never invents a new generation for the same intent.
  int64_t spec_generation = 0;
  std::string spec_hash;

  Json ToJson() const;
  static InstanceState FromJson(const Json& j);
  bool operator==(const InstanceState&) const = default;
};

// A primary change in progress (status.primaryChange): recorded when it starts, so that a
// restarted controller resumes it from the published status.
enum class PrimaryChangeKind { kSwitchover, kFailover };
const char* PrimaryChangeKindName(PrimaryChangeKind k);  // "Switchover" | "Failover"

struct PrimaryChange {
  PrimaryChangeKind kind = PrimaryChangeKind::kSwitchover;
  std::string from;
  std::string to;
  std::string reason;      // why, in a sentence ("db-1 is unreachable: ...")
  std::string started_at;  // RFC 3339 with microseconds
  std::string lsn;         // failover: the old primary's last known WAL position

  Json ToJson() const;
  static PrimaryChange FromJson(const Json& j);
  bool operator==(const PrimaryChange&) const = default;
};

// status.lastFailover: the story of the most recent completed failover.
struct FailoverRecord {
  std::string from;
  std::string to;
  std::string lsn;     // the promoted instance's WAL position when it was chosen
  std::string time;    // RFC 3339, when the new primary was ready
  std::string reason;
  int64_t duration_ms = 0;  // from the start of the failover to the new primary being ready

  Json ToJson() const;
  static FailoverRecord FromJson(const Json& j);
  bool operator==(const FailoverRecord&) const = default;
};

struct PostgresClusterStatus {
  int64_t observed_generation = 0;
  std::string phase;
  std::string phase_reason;
  std::vector<Condition> conditions;
  int32_t replicas = 0;
  int32_t ready_replicas = 0;
  std::string selector;  // label selector string, for the scale subresource
  std::string current_primary;
  std::string target_primary;
  std::string image;
  int postgres_major_version = 0;
  std::string system_id;  // the primary's system identifier once initialised
  std::vector<InstanceState> instances;
  std::vector<std::string> instance_names;  // the members, in serial order
  // High availability.
  int64_t term = 0;  // the leadership term; bumps with every change of primary
  std::optional<PrimaryChange> primary_change;  // a switchover or failover in progress
  std::string primary_failing_since;  // RFC 3339; set while the primary is seen failing
  int64_t failovers = 0;              // completed failovers
  std::optional<FailoverRecord> last_failover;
  // The standbys named in the primary's synchronous_standby_names (synchronous mode only).
  std::vector<std::string> synchronous_standbys;

  Json ToJson() const;
  static PostgresClusterStatus FromJson(const Json& j);  // tolerant: missing fields = zero
  const Condition* FindCondition(const std::string& type) const;
  const InstanceState* FindInstance(const std::string& name) const;
  bool operator==(const PostgresClusterStatus&) const = default;
};

}  // namespace petrel
