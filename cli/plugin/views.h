// The pure heart of `kubectl petrel`: turns API objects (PostgresCluster, PostgresAttachment,
// Services, Endpoints) and, when available, a live catalog read over SQL into the documents
// and tables the commands print, and builds the objects `attach` and `create` send. No I/O:
// commands in cli/plugin_command.cc fetch, these functions decide. The PostgresCluster is read
// as JSON (the fields of crds/postgrescluster.yaml), tolerant of a missing status.
//
// Thread-safety: pure functions over values; safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/plugin/output.h"
#include "core/object.h"
#include "core/status.h"
#include "core/types.h"

namespace petrel::plugin {

// The line every "cluster not found" error ends with; `cli` is how the user runs the plugin.
std::string ClusterNotFoundMessage(const std::string& name, const std::string& namespace_,
                                   const std::string& cli = "kubectl petrel");

// ---- list ----------------------------------------------------------------------------------

// {namespace, name, replicas, ready, primary, version, phase, image} of one cluster.
Json ClusterSummary(const Json& cluster);
// NAMESPACE (when `with_namespace`) NAME REPLICAS READY PRIMARY VERSION PHASE.
Table ClusterListTable(const Json& summaries, bool with_namespace);

// ---- status --------------------------------------------------------------------------------

// True when `attachment`'s spec.clusterRef names `cluster` (clusterRef.namespace defaults to
// the attachment's own namespace).
bool AttachmentReferences(const Json& attachment, const ObjectKey& cluster);
// {namespace, name, database, role, privileges, phase, secret}: values resolved by
// api/attachment.h (defaults included), status.phase or "Pending" when not yet reconciled.
Json AttachmentSummary(const Json& attachment);

struct ClusterObjects {
  Json cluster;
  std::vector<Json> services;     // the cluster's Services that exist (<c>-rw, <c>-ro, <c>-r)
  std::vector<Json> endpoints;    // the Endpoints objects of those Services
  std::vector<Json> attachments;  // PostgresAttachments that reference the cluster
  // Set when attachments could only be listed in some namespaces (e.g. no cluster-wide list
  // permission): says where they were looked for.
  std::string attachments_scope_note;
};

// The `status` document: cluster summary, conditions, instances, services, attachments.
Json StatusReport(const ClusterObjects& objects);
// The human form of StatusReport: a header block and one table per section.
std::string RenderStatusText(const Json& report);

// ---- checks list ------------------------------------------------------------------------------

// Fly's three health checks per instance (status.instances[].checks, each {name, status
// passing|warning|critical, output}), read tolerantly: an instance that reports no checks
// yet has a row with "-" everywhere. {cluster, checks: [{instance, role, name, status,
// output}]}.
Json ChecksReport(const Json& cluster);
// INSTANCE ROLE NAME STATUS OUTPUT.
std::string RenderChecksText(const Json& report);
// Fly's status column: "3 total, 2 passing, 1 critical"; "-" when the instance has no checks.
std::string ChecksSummary(const Json& checks);

// ---- switchover ---------------------------------------------------------------------------------

// Which instance to make the primary. With `requested` empty: the ready replica with the
// highest LSN (ties: smaller lag, then lower name). Errors say what is wrong and what to do:
// NotFound (no such instance, listing the members), Unavailable (no primary yet, the target
// is not ready, no ready replica, a switchover already under way), Invalid (already the
// primary).
Result<std::string> ChooseSwitchoverTarget(const Json& cluster, const std::string& requested);

enum class SwitchoverState { kInProgress, kDone, kAborted };
struct SwitchoverProgress {
  SwitchoverState state = SwitchoverState::kInProgress;
  std::string message;  // one line: where it stands, from the cluster's status
};
// How a switchover to `target` stands, from the cluster as last read: done once
// status.currentPrimary is `target` and the instance reports ready; aborted when the
// controller reset status.targetPrimary to something else (it refused or gave up).
SwitchoverProgress EvaluateSwitchover(const Json& cluster, const std::string& target);

// ---- logs ---------------------------------------------------------------------------------------

struct LogSource {
  std::string pod;
  std::string container;  // "postgres" when the Pod has it, else its first container
  std::string node;       // spec.nodeName: "" while no node runs the Pod (no log to read)
};
// The Pods to read logs from: the one named `instance`, or every Pod of the cluster (by name).
// NotFound lists the cluster's instances when `instance` is not one of them, or says the
// cluster has no Pods yet.
Result<std::vector<LogSource>> LogSources(const std::string& cluster,
                                          const std::vector<Json>& pods,
                                          const std::string& instance);
// The pods/log path with its query: container, tailLines (when >= 0), follow.
enum class LogFollow { kNo, kYes };
std::string PodLogPath(const std::string& namespace_, const LogSource& source, int64_t tail_lines,
                       LogFollow follow);

// ---- users list / db list --------------------------------------------------------------------

// What Postgres itself says, read over SQL as the superuser (pg/attach_sql.h listings).
struct LiveDatabase {
  std::string name;
  std::string owner;
  int64_t size_bytes = 0;
};
struct LiveRole {
  std::string name;
  bool superuser = false;
  int connection_limit = -1;
  std::optional<ObjectKey> attachment;  // from Petrel's COMMENT ON ROLE marker
};
struct LiveCatalog {
  std::vector<LiveDatabase> databases;
  std::vector<LiveRole> roles;
};

// Where the answer came from. `live` is set when the SQL listing succeeded; `note` says why it
// was not used otherwise (e.g. "cannot read Secret db-superuser: forbidden").
struct CatalogSources {
  std::optional<LiveCatalog> live;
  std::string live_address;  // host:port the catalog was read from
  std::string note;
};

// Login roles: the attachments' roles, the bootstrap owner from the cluster spec, Petrel's own
// roles; with a live catalog, exactly the roles Postgres has, each with its owner.
Json UsersReport(const Json& cluster, const std::vector<Json>& attachments,
                 const CatalogSources& sources);
Json DatabasesReport(const Json& cluster, const std::vector<Json>& attachments,
                     const CatalogSources& sources);
// Table plus the "source:" line.
std::string RenderUsersText(const Json& report);
std::string RenderDatabasesText(const Json& report);

// "host" or "host:port" from a Service: annotation petrel.dev/local-address, else
// spec.clusterIP with the first port. NotFound when neither is set.
Result<std::pair<std::string, int>> ServiceAddress(const Json& service);
// 127.0.0.0/8, ::1, "localhost".
bool IsLoopbackHost(const std::string& host);

// ---- attach / detach -------------------------------------------------------------------------

enum class AttachPrivileges { kOwner, kReadWrite, kReadOnly };
Result<AttachPrivileges> ParseAttachPrivileges(const std::string& text);

struct AttachRequest {
  ObjectKey cluster;     // namespace: the cluster's
  ObjectKey app;         // the attachment: name = the app, namespace = the app's
  std::string database;  // "" = the default (the app name with '-' -> '_')
  std::string role;      // "" = the default (same as the database)
  AttachPrivileges privileges = AttachPrivileges::kOwner;
};

// The PostgresAttachment object, validated exactly as the controller validates it
// (api/attachment.h): Invalid with every problem listed when the request is bad.
Result<Json> BuildAttachment(const AttachRequest& request);

// ---- create ----------------------------------------------------------------------------------

enum class Preset { kDevelopment, kProduction };
Result<Preset> ParsePreset(const std::string& text);

inline constexpr const char* kDefaultImage = "ghcr.io/petrel-dev/postgres:15.4";

struct CreateRequest {
  ObjectKey cluster;
  Preset preset = Preset::kDevelopment;
  std::optional<int> replicas;  // preset default when absent
  std::optional<std::string> storage;
  std::optional<std::string> image;
  std::optional<int> postgres_version;  // needed when the image tag does not start with it
};

// A PostgresCluster manifest from a Fly-style preset:
//  development: 1 instance, 1Gi, 250m CPU / 256Mi, volumes deleted with the cluster, no PDB.
//  production: 3 instances, 10Gi, 1 CPU / 2Gi, synchronous replication (ANY 1, required),
//              volumes retained, PodDisruptionBudgets.
// Invalid (every problem listed) for a bad name, replica count, storage size or image; the
// result is then checked by api/cluster.h's ParseClusterSpec, as the controller will check it.
Result<Json> BuildClusterFromPreset(const CreateRequest& request);

// ---- connect ---------------------------------------------------------------------------------

enum class ConnectTarget { kPrimary, kReplica };

struct PsqlInvocation {
  std::vector<std::string> argv;           // argv[0] = "psql"; never holds a password
  std::map<std::string, std::string> env;  // added to the environment (PGPASSWORD, ...)
};

// psql to host:port as `user` on `database` with the password in PGPASSWORD.
PsqlInvocation BuildPsqlInvocation(const std::string& host, int port, const std::string& user,
                                   const std::string& database, const std::string& password);

// psql with an attachment's DATABASE_URL: the URL is split so the password goes to PGPASSWORD
// and the rest (without the password) to argv. Invalid when the URL is not postgres://.
Result<PsqlInvocation> PsqlFromDatabaseUrl(const std::string& url);

}  // namespace petrel::plugin
