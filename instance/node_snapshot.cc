// PostgresNode's snapshot and cluster-identity effects (issue 7), kept apart from node.cc.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "core/log.h"
#include "instance/files.h"
#include "instance/node.h"
#include "pg/scram.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;

std::string FirstLine(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

}  // namespace

std::string PostgresNode::DataClusterUid() const {
  auto content = ReadFileIfExists(o_.pgdata + "/" + kClusterUidFile);
  if (!content.ok() || !*content) return "";
  return FirstLine(**content);
}

Status PostgresNode::RecordClusterUid(const std::string& uid) {
  if (uid.empty()) return InvalidError("no cluster uid to record");
  return WriteFileAtomic(o_.pgdata + "/" + kClusterUidFile, uid + "\n", 0600, o_.run_as)
      .Annotate("recording the cluster uid");
}

SnapshotSource PostgresNode::SnapshotSourceInfo() const {
  SnapshotSource s;
  s.name = o_.name;
  s.bin_dir = o_.bin_dir;
  s.run_as = o_.run_as;
  s.host = o_.listen_address;
  s.port = o_.port;
  s.socket_dir = socket_dir_;
  s.passfile = passfile_;
  s.home = state_dir_;
  s.timeout = o_.bootstrap_timeout;
  return s;
}

Status PostgresNode::RestoreSnapshot(const InstanceSpec& spec) {
  PETREL_RETURN_IF_ERROR(CheckPgdataEmpty());
  const std::string& from = spec.snapshot_path;
  if (!PathExists(from + "/PG_VERSION")) {
    return UnavailableError("snapshot_path " + from +
                            " holds no Postgres data directory (no PG_VERSION); check that the "
                            "snapshot exists and is complete");
  }
  const std::string restore_dir =
      volume_ + "/." + fs::path(o_.pgdata).filename().string() + ".restore";
  PETREL_RETURN_IF_ERROR(ClearIncomplete(restore_dir));
  spdlog::info("restoring the snapshot in {}", from);
  Status st = CopyTree(from, restore_dir, cancel_);
  if (!st.ok()) {
    (void)ClearIncomplete(restore_dir);
    return st.Annotate("restoring the snapshot");
  }
  // A copy of a stopped or crashed server may carry its lock file; it is never ours.
  std::error_code ec;
  fs::remove(restore_dir + "/postmaster.pid", ec);
  return InstallDataDir(restore_dir);
}

Status PostgresNode::Rekey(const InstanceSpec& spec) {
  if (postgres_.running()) return UnavailableError("re-key needs postgres stopped");
  if (o_.superuser_password.empty() || o_.replication_password.empty()) {
    return TerminalError(
        "PETREL_SUPERUSER_PASSWORD and PETREL_REPLICATION_PASSWORD must be set to re-key "
        "restored data");
  }
  // The source's standby and recovery settings: a restored copy follows nobody.
  for (const char* signal_file : {"standby.signal", "recovery.signal"}) {
    std::error_code ec;
    fs::remove(o_.pgdata + "/" + signal_file, ec);
    if (ec) return UnavailableError("removing " + std::string(signal_file) + ": " + ec.message());
  }
  const std::string auto_conf = o_.pgdata + "/postgresql.auto.conf";
  PETREL_ASSIGN_OR_RETURN(auto current, ReadFileIfExists(auto_conf));
  if (current) {
    std::string stripped = StripRecoverySettings(*current);
    if (stripped != *current) {
      PETREL_RETURN_IF_ERROR(WriteFileAtomic(auto_conf, stripped, 0600, o_.run_as));
    }
  }
  // Our own configuration first: the source's petrel.conf names its socket directory.
  PETREL_RETURN_IF_ERROR(WriteConfigIn(o_.pgdata, spec));
  PETREL_RETURN_IF_ERROR(EnsureDirectory(socket_dir_, 0700, o_.run_as));
  if (o_.run_as) PETREL_RETURN_IF_ERROR(ChownTree(o_.pgdata, *o_.run_as));
  if (chmod(o_.pgdata.c_str(), 0700) != 0) return UnavailableError("chmod 0700 " + o_.pgdata);

  // A private start (socket only, no synchronous standbys to wait for) to change the roles.
  ChildProcess temp;
  PETREL_RETURN_IF_ERROR(temp.Start(PgCommand(
      "postgres", {"-D", o_.pgdata, "-c", "listen_addresses=", "-c", "synchronous_standby_names=",
                   "-c", "primary_conninfo=", "-c", "primary_slot_name="})));
  Status st = UnavailableError("postgres did not start");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cancel_ && cancel_->load()) {
      st = CancelledError("shutting down");
      break;
    }
    if (auto exited = temp.Poll()) {
      st = UnavailableError("postgres exited while starting to re-key (" +
                            DescribeWaitStatus(*exited) + "); see the instance log");
      break;
    }
    auto conn = AdminConnect(std::chrono::seconds(2));
    if (conn.ok()) {
      st = RekeyRoles(*conn);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (temp.running() && !temp.SignalAndWait(SIGINT, std::chrono::seconds(60))) {
    temp.SignalAndWait(SIGQUIT, std::chrono::seconds(10));
  }
  PETREL_RETURN_IF_ERROR(st.Annotate("re-keying"));
  PETREL_RETURN_IF_ERROR(RecordClusterUid(spec.cluster_uid));
  spdlog::info("re-keyed the restored data for cluster {}", spec.cluster_uid);
  return Status::Ok();
}

Status PostgresNode::RekeyRoles(PgConn& conn) {
  PETREL_ASSIGN_OR_RETURN(std::string su_verifier, ScramVerifier(o_.superuser_password));
  PETREL_ASSIGN_OR_RETURN(std::string repl_verifier, ScramVerifier(o_.replication_password));
  PETREL_ASSIGN_OR_RETURN(std::string su_lit, conn.QuoteLiteral(su_verifier));
  PETREL_ASSIGN_OR_RETURN(std::string repl_lit, conn.QuoteLiteral(repl_verifier));
  PETREL_ASSIGN_OR_RETURN(std::string su, conn.QuoteIdent(kSuperuser));
  PETREL_ASSIGN_OR_RETURN(std::string repl, conn.QuoteIdent(kReplicationUser));
  PETREL_ASSIGN_OR_RETURN(PgRows exists,
                          conn.Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {kReplicationUser}));
  std::string script = "ALTER ROLE " + su + " WITH SUPERUSER LOGIN PASSWORD " + su_lit + ";\n";
  if (exists.size() == 0) script += "CREATE ROLE " + repl + ";\n";
  script +=
      "ALTER ROLE " + repl + " WITH NOSUPERUSER REPLICATION LOGIN PASSWORD " + repl_lit + ";\n" +
      "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO " + repl + ";\n" +
      "GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO " + repl + ";\n" +
      "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO " + repl + ";\n" +
      "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) "
      "TO " + repl + ";\n";
  PETREL_RETURN_IF_ERROR(conn.ExecScript(script).Annotate("setting the system role passwords"));
  // The source's slots would hold WAL here forever (a volume snapshot keeps pg_replslot).
  PETREL_RETURN_IF_ERROR(
      conn.Exec("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
          .status()
          .Annotate("dropping the source's replication slots"));
  return conn.ExecScript("CHECKPOINT").Annotate("checkpoint after re-keying");
}

}  // namespace petrel
