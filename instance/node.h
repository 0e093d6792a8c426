// PostgresNode: every effect `petrel instance` has on the local Postgres — its files, its
// process and its SQL — as one-call-per-action methods the converge loop executes after the
// pure planner (instance/plan.h) chose them. Observe() gathers the facts the planner needs.
//
// Layout on the volume (the parent directory of PGDATA):
//   <pgdata>/                 the data directory (0700, owned by the postgres user)
//   <volume>/petrel/          Petrel's private state (0700): spec.json, pgpass, socket/
//   <volume>/.<pgdata>.init   initdb/clone in progress; renamed onto <pgdata> when complete,
//   <volume>/.<pgdata>.clone  so an interrupted bootstrap never looks like a data directory
//   <pgdata>.<timestamp>      a data directory moved aside before a re-clone (never deleted)
//
// Thread-safety: HasData(), spec_path() and FenceImmediately() are safe from any thread
// (paths never change after construction); everything else is owned by the converge loop's
// thread. The postgres child
// must be started and stopped by that same thread (its parent-death signal is per thread).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "api/instance.h"
#include "core/clock.h"
#include "instance/config.h"
#include "instance/plan.h"
#include "instance/process.h"
#include "instance/snapshot.h"
#include "instance/timeline.h"
#include "pg/conn.h"

namespace petrel {

struct NodeOptions {
  std::string name;
  std::string pgdata;
  std::string listen_address;
  uint16_t port = kPostgresPort;
  std::string bin_dir;
  std::optional<RunAs> run_as;  // nullopt: children run as this process's user
  std::string superuser_password;
  std::string replication_password;
  std::chrono::seconds stop_timeout{60};         // fast shutdown, then immediate
  std::chrono::seconds bootstrap_timeout{7200};  // initdb / pg_basebackup / pg_rewind
};

// SQL-level facts; only meaningful when `accepting`.
struct SqlFacts {
  InstanceRole role = InstanceRole::kNone;
  std::string system_identifier;
  int64_t timeline = 0;
  std::string current_lsn, received_lsn, replay_lsn;
  bool streaming = false;
  std::string following;
  int64_t lag_bytes = -1;
  std::string pg_version;
  bool pending_restart = false;
  bool slots_current = true;
  int64_t checkpoint_timeline = 0;  // pg_control_checkpoint()
};

// The superuser's connection to the local postgres over its private unix socket (trust).
Result<PgConn> ConnectLocalSuperuser(const std::string& socket_dir, uint16_t port,
                                     const PgConnectOptions& options);

class PostgresNode {
 public:
  PostgresNode(NodeOptions options, const std::atomic<bool>* cancel, Clock& clock);
  ~PostgresNode();

  // Creates Petrel's state directory and checks paths; call once before the loop.
  Status Prepare();

  std::string state_dir() const { return state_dir_; }
  std::string socket_dir() const { return socket_dir_; }
  std::string spec_path() const { return state_dir_ + "/spec.json"; }
  bool HasData() const;

  // Gathers facts for the planner (reaps a crashed postgres and arms the restart backoff).
  ObservedInstance Observe(const InstanceSpec& spec, bool has_spec, SqlFacts* facts);

  // initdb with spec.initdb's encoding, locale and checksums; then, on a private socket-only
  // start, the replication role and spec.initdb's database and owner, all before PGDATA is
  // installed (an interrupted attempt leaves only the .init directory, redone next time).
  Status Initdb(const InstanceSpec& spec);
  Status Clone(const InstanceSpec& spec);
  Status Rewind(const InstanceSpec& spec);
  // Moves PGDATA aside (renamed with a timestamp) and clones; `moved_to` gets the new name.
  Status Reclone(const InstanceSpec& spec, std::string* moved_to);
  Status WriteConfig(const InstanceSpec& spec);
  Status Start();
  Status Stop();
  // The lease fence: SIGKILL to every postgres child (backends die mid-statement, nothing
  // more is flushed) and SIGQUIT to the postmaster (immediate shutdown; the next start runs
  // crash recovery), then waits for the exit.
  Status StopImmediately();
  // The same signal from any thread (the lease watchdog), without waiting, and only when
  // postgres runs and may accept writes (no standby.signal). True when it sent the signal;
  // once per postgres process.
  bool FenceImmediately();
  Status Promote(const InstanceSpec& spec);
  Status SyncSlots(const InstanceSpec& spec);
  Status Checkpoint();

  // Snapshots and cluster identity (issue 7; implemented in instance/node_snapshot.cc).
  // The cluster uid recorded in PGDATA (instance/snapshot.h), "" when none or no data. Safe
  // from any thread.
  std::string DataClusterUid() const;
  // Records `uid` as the owner of the data in PGDATA.
  Status RecordClusterUid(const std::string& uid);
  // Copies spec.snapshot_path (a data directory) into the empty volume.
  Status RestoreSnapshot(const InstanceSpec& spec);
  // Makes data of another cluster this cluster's: drops standby signals, recovery settings
  // and replication slots, sets the system roles' passwords from this instance's environment
  // (SCRAM verifiers computed here), then records spec.cluster_uid — last, so an interrupted
  // re-key is simply done again. Postgres must be stopped.
  Status Rekey(const InstanceSpec& spec);
  // How POST /snapshot reaches this postgres. Safe from any thread.
  SnapshotSource SnapshotSourceInfo() const;

  // The last unexpected exit of postgres ("" if none), for status messages.
  const std::string& last_crash() const { return last_crash_; }

 private:
  ConfigInputs Inputs() const;
  Status WriteConfigIn(const std::string& dir, const InstanceSpec& spec);
  Command PgCommand(const std::string& program, std::vector<std::string> args) const;
  Status RunPg(const std::string& what, const std::string& program, std::vector<std::string> args);
  Result<PgConn> AdminConnect(std::chrono::seconds timeout = std::chrono::seconds(2));
  PgConn* Admin();
  Result<PgConn> ConnectPrimary(const Endpoint& primary);
  Status WritePassfile();
  Status ClearIncomplete(const std::string& dir);
  Status CheckPgdataEmpty() const;
  Status InstallDataDir(const std::string& from);
  Status WaitAccepting(std::chrono::seconds timeout);
  Status BootstrapRoles();
  // The application database of spec.initdb and its NOLOGIN owner role (idempotent).
  Status CreateApplicationDatabase(const InitdbOptions& initdb);
  SqlFacts QuerySql(const InstanceSpec& spec);
  Status CheckSourceIsPrimary(const Endpoint& primary);
  // Whether this replica's WAL went past the point where `spec.primary`'s timeline forked
  // from ours (so it can never stream from it without a rewind).
  Result<bool> CheckDiverged(const InstanceSpec& spec, const LocalWalPosition& local);
  void UpdateDivergence(const InstanceSpec& spec, const ObservedInstance& o, const SqlFacts& facts);
  Status RekeyRoles(PgConn& conn);  // node_snapshot.cc

  NodeOptions o_;
  const std::atomic<bool>* cancel_;
  Clock& clock_;
  std::string volume_, state_dir_, socket_dir_, passfile_, init_dir_, clone_dir_;
  ChildProcess postgres_;
  std::optional<PgConn> admin_;
  bool stopping_ = false;
  bool rewind_failed_ = false;
  bool diverged_ = false;  // sticky until a rewind or clone succeeds
  int64_t streamed_tli_ = 0;  // newest timeline streamed since the data was last replaced
  std::optional<SteadyTime> not_streaming_since_;
  int streaming_seen_ = 0;  // consecutive observations with the WAL receiver streaming
  SteadyTime next_divergence_check_{};
  int crashes_ = 0;
  SteadyTime started_at_{};
  SteadyTime restart_after_{};
  std::string last_crash_;
  // The running postgres, for FenceImmediately from other threads.
  std::mutex fence_mu_;
  PidHandle postgres_handle_;  // guarded by fence_mu_
  bool fence_sent_ = false;    // guarded by fence_mu_: its exit is expected
};

}  // namespace petrel
