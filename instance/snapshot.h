// Snapshots of a running instance and the pure helpers around restoring one (issue 7).
//
// SnapshotTaker serves POST /snapshot: a consistent copy of the running postgres (primary or
// replica) made by pg_basebackup of itself — fast checkpoint, WAL streamed alongside so the
// copy starts on its own — into an empty directory, as the postgres user, over the instance's
// own address with the replication credentials it already has (its pgpass file). The copy is
// an ordinary data directory: restoring it is copying it into an empty volume, after which
// bootstrap `snapshot` re-keys it (instance/node.h: Rekey).
//
// The cluster identity travels with the data: `<pgdata>/petrel_cluster_uid` holds the uid of
// the cluster the data belongs to, so a snapshot (pg_basebackup or a volume snapshot) carries
// its source's uid and a restore can tell that it must be re-keyed.
//
// Thread-safety: SnapshotTaker::Take is safe from any thread and takes one snapshot at a time
// (a concurrent call gets Conflict). The free functions are pure.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>

#include "api/instance.h"
#include "core/status.h"
#include "instance/process.h"

namespace petrel {

// The file in PGDATA that records which cluster the data belongs to.
inline constexpr const char* kClusterUidFile = "petrel_cluster_uid";

// What SnapshotTaker needs to reach its own postgres; fixed for the instance's lifetime.
struct SnapshotSource {
  std::string name;            // application_name
  std::string bin_dir;         // pg_basebackup
  std::optional<RunAs> run_as;
  std::string host;            // the instance's own address (replication is allowed there)
  uint16_t port = kPostgresPort;
  std::string socket_dir;      // for the superuser's SQL (version, system identifier)
  std::string passfile;        // holds the streaming_replica password
  std::string home;            // HOME and working directory of pg_basebackup
  std::chrono::seconds timeout{7200};
};

class SnapshotTaker {
 public:
  explicit SnapshotTaker(SnapshotSource source) : source_(std::move(source)) {}

  // Copies the running postgres into request.dir (created when missing). Invalid when dir is
  // not absolute; Conflict when dir is not empty or another snapshot is being taken;
  // Unavailable when postgres cannot be reached or pg_basebackup fails (dir is then emptied
  // again). `cancel` aborts a running copy (Cancelled).
  Result<SnapshotInfo> Take(const SnapshotRequest& request, const std::atomic<bool>* cancel);

 private:
  SnapshotSource source_;
  std::mutex busy_;
};

// Checks a POST /snapshot directory without touching it: Invalid when not absolute (or with
// ".." components), Conflict when it exists and is not an empty directory.
Status CheckSnapshotDir(const std::string& dir);

// The end of the WAL range a backup needs, from its backup_manifest (the last WAL-Ranges
// entry's End-LSN and Timeline). Invalid when the manifest is not what pg_basebackup writes.
struct ManifestWalEnd {
  std::string lsn;
  int64_t timeline = 0;
};
Result<ManifestWalEnd> ParseBackupManifestWalEnd(const std::string& manifest);

// postgresql.auto.conf without the settings that would make a restored copy follow, or
// recover from, its source (primary_conninfo, primary_slot_name, restore_command and the
// recovery_target* family): ALTER SYSTEM settings win over petrel.conf, so they must go.
// Every other line is kept as it is.
std::string StripRecoverySettings(const std::string& auto_conf);

// The total size in bytes of the regular files under `dir` (symlinks not followed).
Result<int64_t> TreeSize(const std::string& dir);

// Copies the directory tree `from` into `to` (which must not exist), keeping symlinks as
// symlinks and file modes; `cancel` aborts between files.
Status CopyTree(const std::string& from, const std::string& to, const std::atomic<bool>* cancel);

}  // namespace petrel
