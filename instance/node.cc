#include "instance/node.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "core/log.h"
#include "instance/files.h"
#include "instance/timeline.h"
#include "pg/scram.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;

// A unix socket path must fit in sockaddr_un.sun_path (108 bytes with the NUL).
constexpr size_t kMaxSocketPath = 107;

// SQL: a primary's current timeline (the first 8 hex digits of its current WAL file name),
// 0 on a standby (where pg_walfile_name is not allowed).
constexpr const char* kPrimaryTimelineSql =
    "CASE WHEN pg_is_in_recovery() THEN 0 ELSE "
    "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END";

std::string Tail(const std::string& output, size_t max = 600) {
  std::string t = output.size() > max ? "..." + output.substr(output.size() - max) : output;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

std::string TimestampSuffix(SystemTime t) {
  std::string s = FormatRfc3339(t);  // 2026-11-23T22:52:59Z
  std::string out;
  for (char c : s) {
    if (c != '-' && c != ':') out += c;
  }
  return out;  // 20261123T225259Z
}

// pgpass fields escape ':' and '\'.
std::string PgpassEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

PostgresNode::PostgresNode(NodeOptions options, const std::atomic<bool>* cancel, Clock& clock)
    : o_(std::move(options)), cancel_(cancel), clock_(clock) {
  fs::path pgdata = fs::path(o_.pgdata).lexically_normal();
  if (!pgdata.has_filename()) pgdata = pgdata.parent_path();
  o_.pgdata = pgdata.string();
  volume_ = pgdata.parent_path().string();
  state_dir_ = volume_ + "/petrel";
  socket_dir_ = state_dir_ + "/socket";
  passfile_ = state_dir_ + "/pgpass";
  init_dir_ = volume_ + "/." + pgdata.filename().string() + ".init";
  clone_dir_ = volume_ + "/." + pgdata.filename().string() + ".clone";
}

PostgresNode::~PostgresNode() {
  if (postgres_.running()) (void)Stop();
}

Status PostgresNode::Prepare() {
  std::string socket_file = socket_dir_ + "/.s.PGSQL." + std::to_string(o_.port);
  if (socket_file.size() > kMaxSocketPath) {
    return InvalidError("the unix socket path " + socket_file + " is longer than " +
                        std::to_string(kMaxSocketPath) + " bytes; use a shorter --pgdata path");
  }
  PETREL_RETURN_IF_ERROR(EnsureDirectory(volume_, 0755, std::nullopt));
  PETREL_RETURN_IF_ERROR(EnsureDirectory(state_dir_, 0700, o_.run_as));
  PETREL_RETURN_IF_ERROR(EnsureDirectory(socket_dir_, 0700, o_.run_as));
  return WritePassfile();
}

bool PostgresNode::HasData() const { return PathExists(o_.pgdata + "/PG_VERSION"); }

ConfigInputs PostgresNode::Inputs() const {
  return ConfigInputs{o_.name, o_.listen_address, o_.port, socket_dir_, passfile_};
}

Command PostgresNode::PgCommand(const std::string& program, std::vector<std::string> args) const {
  Command c;
  c.argv.push_back(o_.bin_dir + "/" + program);
  for (auto& a : args) c.argv.push_back(std::move(a));
  c.env = {"PATH=" + o_.bin_dir + ":/usr/local/bin:/usr/bin:/bin",
           "LC_ALL=C",
           "LANG=C",
           "HOME=" + state_dir_,
           "PGPASSFILE=" + passfile_,
           "PGCONNECT_TIMEOUT=10",
           "PGAPPNAME=" + o_.name};
  c.run_as = o_.run_as;
  c.cwd = state_dir_;
  return c;
}

Status PostgresNode::RunPg(const std::string& what, const std::string& program,
                           std::vector<std::string> args) {
  Command c = PgCommand(program, std::move(args));
  spdlog::info("running {}", what);
  PETREL_ASSIGN_OR_RETURN(CommandResult r, RunCommand(c, o_.bootstrap_timeout, cancel_));
  if (!r.ok()) {
    std::string how = r.signal ? "killed by signal " + std::to_string(r.signal)
                               : "exit code " + std::to_string(r.exit_code);
    // Output of these tools never contains the passwords: they come from files.
    return UnavailableError(what + " failed (" + how + "): " + Redact(Tail(r.output)));
  }
  return Status::Ok();
}

Status PostgresNode::WritePassfile() {
  // Used by pg_basebackup, pg_rewind and primary_conninfo: the replication password stays
  // out of command lines, the environment of children and configuration files.
  std::string line =
      "*:*:*:" + std::string(kReplicationUser) + ":" + PgpassEscape(o_.replication_password) + "\n";
  return WriteFileAtomic(passfile_, line, 0600, o_.run_as);
}

Result<PgConn> ConnectLocalSuperuser(const std::string& socket_dir, uint16_t port,
                                     const PgConnectOptions& options) {
  return PgConn::Connect(ConnInfo({{"host", socket_dir},
                                   {"port", std::to_string(port)},
                                   {"user", kSuperuser},
                                   {"dbname", "postgres"}}),
                         "", options);
}

Result<PgConn> PostgresNode::AdminConnect(std::chrono::seconds timeout) {
  PgConnectOptions opts;
  opts.connect_timeout = timeout;
  opts.statement_timeout = std::chrono::milliseconds(10000);
  opts.application_name = "petrel-instance";
  return ConnectLocalSuperuser(socket_dir_, o_.port, opts);
}

PgConn* PostgresNode::Admin() {
  if (admin_ && admin_->ok()) return &*admin_;
  admin_.reset();
  auto c = AdminConnect();
  if (!c.ok()) return nullptr;
  admin_.emplace(std::move(c).value());
  return &*admin_;
}

Result<PgConn> PostgresNode::ConnectPrimary(const Endpoint& primary) {
  PgConnectOptions opts;
  opts.connect_timeout = std::chrono::seconds(5);
  opts.statement_timeout = std::chrono::milliseconds(10000);
  opts.application_name = o_.name;
  return PgConn::Connect(ConnInfo({{"host", primary.host},
                                   {"port", std::to_string(primary.port)},
                                   {"user", kReplicationUser},
                                   {"dbname", "postgres"}}),
                         o_.replication_password, opts);
}

Status PostgresNode::WaitAccepting(std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Status last = UnavailableError("not started");
  while (std::chrono::steady_clock::now() < deadline) {
    if (cancel_ && cancel_->load()) return CancelledError("shutting down");
    auto c = AdminConnect(std::chrono::seconds(2));
    if (c.ok()) return Status::Ok();
    last = c.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return TimeoutError("postgres did not accept connections within " +
                      std::to_string(timeout.count()) + "s: " + last.message());
}

Status PostgresNode::ClearIncomplete(const std::string& dir) {
  if (!PathExists(dir)) return Status::Ok();
  // Only ever our own half-finished initdb/clone output, never a live data directory.
  spdlog::warn("removing the incomplete bootstrap directory {} left by an interrupted attempt",
               dir);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return UnavailableError("removing " + dir + ": " + ec.message());
  return Status::Ok();
}

Status PostgresNode::CheckPgdataEmpty() const {
  if (!PathExists(o_.pgdata)) return Status::Ok();
  std::error_code ec;
  if (fs::is_directory(o_.pgdata, ec) && fs::is_empty(o_.pgdata, ec)) return Status::Ok();
  return TerminalError("PGDATA " + o_.pgdata +
                       " exists and is not empty but holds no Postgres data directory "
                       "(no PG_VERSION); move its content away, Petrel never deletes it");
}

Status PostgresNode::InstallDataDir(const std::string& from) {
  PETREL_RETURN_IF_ERROR(CheckPgdataEmpty());
  std::error_code ec;
  if (PathExists(o_.pgdata)) fs::remove(o_.pgdata, ec);  // an empty directory only
  if (o_.run_as) PETREL_RETURN_IF_ERROR(ChownTree(from, *o_.run_as));
  if (chmod(from.c_str(), 0700) != 0) return UnavailableError("chmod " + from);
  fs::rename(from, o_.pgdata, ec);
  if (ec) return UnavailableError("renaming " + from + " to " + o_.pgdata + ": " + ec.message());
  return Status::Ok();
}

Status PostgresNode::Initdb(const InstanceSpec& spec) {
  PETREL_RETURN_IF_ERROR(CheckPgdataEmpty());
  if (o_.superuser_password.empty()) {
    return TerminalError(
        "PETREL_SUPERUSER_PASSWORD is not set; initdb needs the superuser "
        "password");
  }
  PETREL_RETURN_IF_ERROR(ClearIncomplete(init_dir_));
  PETREL_RETURN_IF_ERROR(EnsureDirectory(init_dir_, 0700, o_.run_as));

  // The password reaches initdb through a private file, deleted right after.
  std::string pwfile = state_dir_ + "/.pwfile";
  PETREL_RETURN_IF_ERROR(WriteFileAtomic(pwfile, o_.superuser_password + "\n", 0600, o_.run_as));
  std::vector<std::string> args = {"-D", init_dir_, "--auth=scram-sha-256",
                                   "--username=" + std::string(kSuperuser), "--pwfile=" + pwfile};
  // Arguments, never a shell: the values reach initdb exactly as the controller validated them.
  if (!spec.initdb.encoding.empty()) args.push_back("--encoding=" + spec.initdb.encoding);
  if (!spec.initdb.locale.empty()) args.push_back("--locale=" + spec.initdb.locale);
  if (spec.initdb.data_checksums) args.push_back("--data-checksums");
  Status st = RunPg("initdb", "initdb", std::move(args));
  unlink(pwfile.c_str());
  PETREL_RETURN_IF_ERROR(st);

  // Configure, then start privately (socket only) to create the replication role before
  // the data directory is installed: a crash in between leaves only the .init directory.
  PETREL_RETURN_IF_ERROR(WriteConfigIn(init_dir_, spec));

  ChildProcess temp;
  PETREL_RETURN_IF_ERROR(
      temp.Start(PgCommand("postgres", {"-D", init_dir_, "-c", "listen_addresses=", "-c",
                                        "synchronous_standby_names="})));
  st = WaitAccepting(std::chrono::seconds(60));
  if (st.ok()) st = BootstrapRoles();
  if (st.ok()) st = CreateApplicationDatabase(spec.initdb);
  if (!temp.SignalAndWait(SIGINT, std::chrono::seconds(60))) {
    temp.SignalAndWait(SIGQUIT, std::chrono::seconds(10));
  }
  PETREL_RETURN_IF_ERROR(st.Annotate("bootstrapping roles"));
  return InstallDataDir(init_dir_);
}

Status PostgresNode::BootstrapRoles() {
  if (o_.replication_password.empty()) {
    return TerminalError("PETREL_REPLICATION_PASSWORD is not set; replicas could not connect");
  }
  PETREL_ASSIGN_OR_RETURN(PgConn conn, AdminConnect());
  PETREL_ASSIGN_OR_RETURN(std::string verifier,
                          ScramVerifier(o_.replication_password));
  PETREL_ASSIGN_OR_RETURN(std::string lit, conn.QuoteLiteral(verifier));
  PETREL_ASSIGN_OR_RETURN(std::string role, conn.QuoteIdent(kReplicationUser));
  // pg_rewind reads files of the source through these functions; granting them lets it use
  // the replication role instead of a superuser (as CloudNativePG does).
  return conn.ExecScript(
      "CREATE ROLE " + role + " WITH REPLICATION LOGIN PASSWORD " + lit + ";\n" +
      "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO " + role + ";\n" +
      "GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO " + role + ";\n" +
      "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO " + role + ";\n" +
      "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) "
      "TO " +
      role + ";\nCHECKPOINT;");
}

Status PostgresNode::CreateApplicationDatabase(const InitdbOptions& initdb) {
  if (initdb.database.empty()) return Status::Ok();
  const std::string& owner = initdb.owner.empty() ? initdb.database : initdb.owner;
  PETREL_ASSIGN_OR_RETURN(PgConn conn, AdminConnect());
  PETREL_ASSIGN_OR_RETURN(std::string owner_ident, conn.QuoteIdent(owner));
  PETREL_ASSIGN_OR_RETURN(std::string database_ident, conn.QuoteIdent(initdb.database));
  // Each step checks first, so a retry after a failure part-way converges. The owner cannot
  // log in: an attachment (or the user) gives the application its own login roles.
  PETREL_ASSIGN_OR_RETURN(PgRows role,
                          conn.Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {owner}));
  if (role.size() == 0) {
    spdlog::info("creating role {} (NOLOGIN) to own database {}", owner, initdb.database);
    PETREL_RETURN_IF_ERROR(conn.Exec("CREATE ROLE " + owner_ident + " NOLOGIN").status());
  }
  PETREL_ASSIGN_OR_RETURN(
      PgRows db, conn.Exec("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
                           {initdb.database}));
  if (db.size() == 0) {
    // template1 carries initdb's encoding and locale, which the new database inherits.
    spdlog::info("creating database {} owned by {}", initdb.database, owner);
    PETREL_RETURN_IF_ERROR(
        conn.Exec("CREATE DATABASE " + database_ident + " OWNER " + owner_ident).status());
  } else if (db.GetOr(0, 0) != owner) {
    PETREL_RETURN_IF_ERROR(
        conn.Exec("ALTER DATABASE " + database_ident + " OWNER TO " + owner_ident).status());
  }
  return Status::Ok();
}

Status PostgresNode::Clone(const InstanceSpec& spec) {
  PETREL_RETURN_IF_ERROR(CheckPgdataEmpty());
  if (!spec.primary) return InvalidError("clone needs spec.primary");
  PETREL_RETURN_IF_ERROR(WritePassfile());
  PETREL_RETURN_IF_ERROR(ClearIncomplete(clone_dir_));
  PETREL_RETURN_IF_ERROR(EnsureDirectory(clone_dir_, 0700, o_.run_as));

  std::vector<std::string> args = {"-D",     clone_dir_,
                                   "-h",     spec.primary->host,
                                   "-p",     std::to_string(spec.primary->port),
                                   "-U",     kReplicationUser,
                                   "-w",     "-X",
                                   "stream", "-c",
                                   "fast"};
  if (!spec.slot_name.empty()) {
    // Use the slot the primary keeps for us, or create it with the backup.
    PETREL_ASSIGN_OR_RETURN(PgConn primary, ConnectPrimary(*spec.primary));
    PETREL_ASSIGN_OR_RETURN(
        PgRows rows,
        primary.Exec("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", {spec.slot_name}));
    if (rows.size() == 0) args.push_back("-C");
    args.push_back("-S");
    args.push_back(spec.slot_name);
  }
  Status st =
      RunPg("pg_basebackup from " + spec.primary->host + ":" + std::to_string(spec.primary->port),
            "pg_basebackup", args);
  if (!st.ok()) {
    (void)ClearIncomplete(clone_dir_);
    return st;
  }
  PETREL_RETURN_IF_ERROR(WriteFileAtomic(clone_dir_ + "/standby.signal", "", 0600, o_.run_as));
  PETREL_RETURN_IF_ERROR(WriteConfigIn(clone_dir_, spec));
  rewind_failed_ = false;
  diverged_ = false;
  streamed_tli_ = 0;
  return InstallDataDir(clone_dir_);
}

Status PostgresNode::CheckSourceIsPrimary(const Endpoint& primary) {
  PETREL_ASSIGN_OR_RETURN(PgConn conn, ConnectPrimary(primary));
  PETREL_ASSIGN_OR_RETURN(
      PgRows r, conn.Exec(std::string("SELECT pg_is_in_recovery(), "
                                      "(SELECT timeline_id FROM pg_control_checkpoint()), ") +
                          kPrimaryTimelineSql));
  const std::string where = primary.host + ":" + std::to_string(primary.port);
  if (r.GetOr(0, 0) != "f") {
    // Rewinding onto a server that is not promoted yet would find "no rewind required" and
    // leave this data directory ahead of the timeline fork to come.
    return UnavailableError(where +
                            " is not a primary yet (still in recovery); waiting for its "
                            "promotion before rewinding");
  }
  // pg_rewind takes the source's timeline from its last checkpoint: right after a promotion
  // that is still the old timeline, and it would report "no rewind required".
  if (std::atoll(r.GetOr(0, 1, "0").c_str()) < std::atoll(r.GetOr(0, 2, "0").c_str())) {
    return UnavailableError(where +
                            " has not written a checkpoint since its promotion yet; waiting "
                            "for it before rewinding");
  }
  return Status::Ok();
}

Result<bool> PostgresNode::CheckDiverged(const InstanceSpec& spec, const LocalWalPosition& local) {
  PETREL_ASSIGN_OR_RETURN(PgConn conn, ConnectPrimary(*spec.primary));
  PETREL_ASSIGN_OR_RETURN(
      PgRows r, conn.Exec(std::string("SELECT pg_is_in_recovery(), ") + kPrimaryTimelineSql));
  if (r.GetOr(0, 0) != "f") return false;  // not a primary: nothing to compare with yet
  int64_t primary_tli = std::atoll(r.GetOr(0, 1, "0").c_str());
  std::string history;
  if (primary_tli > local.timeline) {
    // Readable by streaming_replica: the bootstrap grants pg_read_binary_file for pg_rewind.
    char name[32];
    std::snprintf(name, sizeof(name), "pg_wal/%08llX.history",
                  static_cast<unsigned long long>(primary_tli));
    PETREL_ASSIGN_OR_RETURN(
        PgRows h, conn.Exec("SELECT convert_from(pg_read_binary_file($1), 'UTF8')", {name}));
    history = h.GetOr(0, 0);
  }
  return HasDiverged(local, primary_tli, history);
}

void PostgresNode::UpdateDivergence(const InstanceSpec& spec, const ObservedInstance& o,
                                    const SqlFacts& facts) {
  const bool want_replica = spec.role == InstanceRole::kReplica && spec.primary;
  // Not a standby at all (a demotion rewinds anyway): nothing to watch.
  if (!want_replica || !o.standby_signal ||
      (o.accepting && facts.role != InstanceRole::kReplica)) {
    not_streaming_since_.reset();
    streaming_seen_ = 0;
    return;
  }
  // Healthy once streaming is seen on two observations in a row. A standby past its new
  // primary's fork point streams the old timeline up to the fork every
  // wal_retrieve_retry_interval and then waits again: one "streaming" sample must not
  // restart the wait below, or it is never found diverged.
  if (o.accepting && facts.streaming) {
    if (++streaming_seen_ >= 2) not_streaming_since_.reset();
    return;
  }
  streaming_seen_ = 0;
  // Give the WAL receiver time to connect and switch timelines by itself first; a standby
  // that cannot even start ("requested timeline is not a child of this server's history")
  // is checked from its control file.
  const auto now = clock_.Now();
  if (!not_streaming_since_) not_streaming_since_ = now;
  if (now - *not_streaming_since_ < std::chrono::seconds(5) || now < next_divergence_check_) {
    return;
  }
  std::optional<LocalWalPosition> local;
  if (o.accepting) {
    uint64_t replay = 0;
    if (facts.timeline > 0 && ParseLsn(facts.replay_lsn, &replay)) {
      local = LocalWalPosition{facts.timeline, replay, false};
    }
  } else if (!o.postgres_running && crashes_ > 0) {
    auto out = RunCommand(PgCommand("pg_controldata", {"-D", o_.pgdata}), std::chrono::seconds(30),
                          cancel_);
    if (out.ok() && out->ok()) local = PositionFromControlData(ParseControlData(out->output));
  }
  if (!local) return;
  next_divergence_check_ = now + std::chrono::seconds(5);
  auto d = CheckDiverged(spec, *local);
  if (!d.ok()) {
    spdlog::debug("divergence check: {}", d.status().ToString());
    return;
  }
  if (*d && !diverged_) {
    spdlog::warn(
        "this replica's WAL goes past the point where {}:{} forked its timeline; it "
        "must be rewound",
        spec.primary->host, spec.primary->port);
  }
  diverged_ = *d;
}

Status PostgresNode::Rewind(const InstanceSpec& spec) {
  if (!spec.primary) return InvalidError("rewind needs spec.primary");
  PETREL_RETURN_IF_ERROR(WritePassfile());
  PETREL_RETURN_IF_ERROR(CheckSourceIsPrimary(*spec.primary));
  std::string source = ConnInfo({{"host", spec.primary->host},
                                 {"port", std::to_string(spec.primary->port)},
                                 {"user", kReplicationUser},
                                 {"dbname", "postgres"},
                                 {"passfile", passfile_}});
  Status st =
      RunPg("pg_rewind from " + spec.primary->host + ":" + std::to_string(spec.primary->port),
            "pg_rewind", {"-D", o_.pgdata, "--source-server=" + source});
  if (!st.ok()) {
    // A source we could not reach is worth retrying; anything else means re-clone.
    if (st.message().find("could not connect") == std::string::npos) rewind_failed_ = true;
    return st;
  }
  // pg_rewind copied the source's configuration files; ours are rewritten next.
  PETREL_RETURN_IF_ERROR(WriteFileAtomic(o_.pgdata + "/standby.signal", "", 0600, o_.run_as));
  diverged_ = false;
  streamed_tli_ = 0;
  not_streaming_since_.reset();
  return WriteConfig(spec);
}

Status PostgresNode::Reclone(const InstanceSpec& spec, std::string* moved_to) {
  std::string aside = o_.pgdata + "." + TimestampSuffix(clock_.WallNow());
  std::error_code ec;
  fs::rename(o_.pgdata, aside, ec);
  if (ec) return UnavailableError("moving " + o_.pgdata + " aside: " + ec.message());
  *moved_to = aside;
  spdlog::warn("moved the old data directory to {} before cloning again", aside);
  return Clone(spec);
}

Status PostgresNode::WriteConfigIn(const std::string& dir, const InstanceSpec& spec) {
  ConfigInputs in = Inputs();
  PETREL_RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + kPetrelConfFile,
                                         RenderConf(DesiredParameters(spec, in)), 0600, o_.run_as));
  PETREL_RETURN_IF_ERROR(WriteFileAtomic(dir + "/pg_hba.conf", RenderHba(spec), 0600, o_.run_as));
  std::string conf_path = dir + "/postgresql.conf";
  PETREL_ASSIGN_OR_RETURN(auto conf, ReadFileIfExists(conf_path));
  std::string want = WithPetrelInclude(conf.value_or(""));
  if (!conf || *conf != want) {
    PETREL_RETURN_IF_ERROR(WriteFileAtomic(conf_path, want, 0600, o_.run_as));
  }
  return Status::Ok();
}

Status PostgresNode::WriteConfig(const InstanceSpec& spec) {
  PETREL_RETURN_IF_ERROR(WriteConfigIn(o_.pgdata, spec));
  if (postgres_.running()) {
    // SIGHUP = pg_reload_conf(); works even before postgres accepts connections.
    PETREL_RETURN_IF_ERROR(postgres_.Signal(SIGHUP));
  }
  return Status::Ok();
}

Status PostgresNode::Start() {
  PETREL_RETURN_IF_ERROR(EnsureDirectory(socket_dir_, 0700, o_.run_as));
  if (o_.run_as) PETREL_RETURN_IF_ERROR(ChownTree(o_.pgdata, *o_.run_as));
  if (chmod(o_.pgdata.c_str(), 0700) != 0) return UnavailableError("chmod 0700 " + o_.pgdata);
  stopping_ = false;
  PETREL_RETURN_IF_ERROR(postgres_.Start(PgCommand("postgres", {"-D", o_.pgdata})));
  {
    std::lock_guard<std::mutex> l(fence_mu_);
    fence_sent_ = false;
    auto handle = PidHandle::Open(postgres_.pid());
    if (!handle.ok()) spdlog::error("postgres cannot be fenced: {}", handle.status().message());
    postgres_handle_ = handle.ok() ? std::move(handle).value() : PidHandle();
  }
  started_at_ = clock_.Now();
  spdlog::info("started postgres (pid {})", postgres_.pid());
  return Status::Ok();
}

Status PostgresNode::Stop() {
  last_crash_.clear();
  restart_after_ = {};
  if (!postgres_.running()) return Status::Ok();
  stopping_ = true;
  admin_.reset();
  spdlog::info("stopping postgres (fast shutdown)");
  if (postgres_.SignalAndWait(SIGINT, o_.stop_timeout)) return Status::Ok();
  spdlog::warn("postgres did not stop within {}s; immediate shutdown", o_.stop_timeout.count());
  if (postgres_.SignalAndWait(SIGQUIT, std::chrono::seconds(10))) return Status::Ok();
  postgres_.SignalAndWait(SIGKILL, std::chrono::seconds(5));
  return Status::Ok();
}

Status PostgresNode::StopImmediately() {
  last_crash_.clear();
  restart_after_ = {};
  if (!postgres_.running()) return Status::Ok();
  stopping_ = true;
  admin_.reset();
  {
    std::lock_guard<std::mutex> l(fence_mu_);
    (void)postgres_handle_.KillChildrenAndSignal(SIGQUIT);
    fence_sent_ = true;
  }
  // The backends are gone; the postmaster got SIGQUIT and exits once it has reaped them.
  if (postgres_.SignalAndWait(SIGQUIT, std::chrono::seconds(10))) return Status::Ok();
  spdlog::warn("postgres did not exit within 10s of an immediate shutdown; killing it");
  {
    std::lock_guard<std::mutex> l(fence_mu_);
    (void)postgres_handle_.KillChildrenAndSignal(SIGKILL);
  }
  postgres_.SignalAndWait(SIGKILL, std::chrono::seconds(5));
  return Status::Ok();
}

bool PostgresNode::FenceImmediately() {
  std::lock_guard<std::mutex> l(fence_mu_);
  if (!postgres_handle_.valid() || fence_sent_) return false;
  // A standby cannot commit; it is only fenced if it gets promoted (the file goes first).
  if (PathExists(o_.pgdata + "/standby.signal")) return false;
  Status st = postgres_handle_.KillChildrenAndSignal(SIGQUIT);
  if (!st.ok()) return false;  // exited already
  fence_sent_ = true;
  return true;
}

namespace {

// The physical slots this instance should hold: the spec's list on a primary; none on a
// replica (a slot left from its time as primary would hold WAL on it forever).
std::set<std::string> WantedSlots(const InstanceSpec& spec) {
  if (spec.role != InstanceRole::kPrimary) return {};
  return std::set<std::string>(spec.replication_slots.begin(), spec.replication_slots.end());
}

// Makes the physical slots on `c` those WantedSlots(spec) names: creates the missing ones and,
// when `drop_unwanted`, drops inactive ones the spec does not name.
Status ReconcileSlots(PgConn& c, const InstanceSpec& spec, bool drop_unwanted, const char* when) {
  PETREL_ASSIGN_OR_RETURN(
      PgRows rows,
      c.Exec("SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'"));
  std::set<std::string> want = WantedSlots(spec);
  std::set<std::string> have;
  for (int i = 0; i < rows.size(); ++i) {
    std::string name = rows.GetOr(i, 0);
    have.insert(name);
    if (drop_unwanted && !want.count(name) && rows.GetOr(i, 1) == "f") {
      spdlog::info("dropping inactive replication slot {} (not in the spec)", name);
      PETREL_RETURN_IF_ERROR(c.Exec("SELECT pg_drop_replication_slot($1)", {name}).status());
    }
  }
  for (const auto& name : want) {
    if (have.count(name)) continue;
    spdlog::info("creating replication slot {}{}", name, when);
    PETREL_RETURN_IF_ERROR(
        c.Exec("SELECT pg_create_physical_replication_slot($1, true)", {name}).status());
  }
  return Status::Ok();
}

}  // namespace

Status PostgresNode::Promote(const InstanceSpec& spec) {
  PgConn* c = Admin();
  if (!c) return UnavailableError("promote: postgres is not accepting connections");
  // The other replicas reconnect with their slots as soon as they are told to follow this
  // instance, often before the promotion has finished. A slot that does not exist yet makes a
  // WAL receiver give up for wal_retrieve_retry_interval, and in synchronous mode no write
  // commits meanwhile: create the slots while still a standby (physical slots may be).
  PETREL_RETURN_IF_ERROR(ReconcileSlots(*c, spec, false, " before the promotion"));
  PETREL_ASSIGN_OR_RETURN(PgRows r, c->Exec("SELECT pg_promote(true, 60)"));
  if (r.GetOr(0, 0) != "t") return UnavailableError("pg_promote did not finish within 60s");
  return Status::Ok();
}

Status PostgresNode::Checkpoint() {
  PgConn* c = Admin();
  if (!c) return UnavailableError("checkpoint: postgres is not accepting connections");
  return c->ExecScript("CHECKPOINT");
}

Status PostgresNode::SyncSlots(const InstanceSpec& spec) {
  PgConn* c = Admin();
  if (!c) return UnavailableError("slots: postgres is not accepting connections");
  return ReconcileSlots(*c, spec, true, "");
}

SqlFacts PostgresNode::QuerySql(const InstanceSpec& spec) {
  SqlFacts f;
  PgConn* c = Admin();
  if (!c) return f;
  auto r = c->Exec(
      "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system()), "
      "CASE WHEN pg_is_in_recovery() THEN "
      "  GREATEST((SELECT timeline_id FROM pg_control_checkpoint()), "
      "           (SELECT min_recovery_end_timeline FROM pg_control_recovery())) "
      "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, "
      "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END, "
      "pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), "
      "current_setting('server_version'), "
      "(SELECT count(*) FROM pg_settings WHERE pending_restart), "
      "(SELECT status FROM pg_stat_wal_receiver), "
      "(SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver), "
      "(SELECT latest_end_lsn FROM pg_stat_wal_receiver), "
      "(SELECT received_tli FROM pg_stat_wal_receiver), "
      "(SELECT timeline_id FROM pg_control_checkpoint())");
  if (!r.ok()) {
    spdlog::debug("status query failed: {}", r.status().ToString());
    admin_.reset();
    return f;
  }
  const PgRows& row = *r;
  f.role = row.GetOr(0, 0) == "t" ? InstanceRole::kReplica : InstanceRole::kPrimary;
  f.system_identifier = row.GetOr(0, 1);
  f.timeline = std::atoll(row.GetOr(0, 2, "0").c_str());
  f.current_lsn = row.GetOr(0, 3);
  f.received_lsn = row.GetOr(0, 4);
  f.replay_lsn = row.GetOr(0, 5);
  f.pg_version = row.GetOr(0, 6);
  f.pending_restart = row.GetOr(0, 7, "0") != "0";
  f.streaming = row.GetOr(0, 8) == "streaming";
  f.checkpoint_timeline = std::atoll(row.GetOr(0, 12, "0").c_str());
  if (f.role == InstanceRole::kReplica) {
    // The control file's timelines trail what was streamed (a standby writes a restartpoint
    // only now and then), and once the WAL receiver is gone nothing else tells which timeline
    // the received WAL is on: remember the newest one streamed since the data was replaced.
    // Comparing an older timeline's fork point with our position would take a standby that
    // merely followed a promotion for a diverged one and rewind it for nothing.
    streamed_tli_ = std::max<int64_t>(streamed_tli_, std::atoll(row.GetOr(0, 11, "0").c_str()));
    f.timeline = std::max(f.timeline, streamed_tli_);
    f.following = row.GetOr(0, 9);
    uint64_t end = 0, replay = 0;
    if (ParseLsn(row.GetOr(0, 10), &end) && ParseLsn(f.replay_lsn, &replay)) {
      f.lag_bytes = end > replay ? static_cast<int64_t>(end - replay) : 0;
    }
  } else {
    f.lag_bytes = 0;
  }

  if (f.role == spec.role) {
    auto slots =
        c->Exec("SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'");
    if (slots.ok()) {
      std::set<std::string> want = WantedSlots(spec);
      std::set<std::string> have;
      for (int i = 0; i < slots->size(); ++i) {
        std::string name = slots->GetOr(i, 0);
        have.insert(name);
        if (!want.count(name) && slots->GetOr(i, 1) == "f") f.slots_current = false;
      }
      for (const auto& name : want) {
        if (!have.count(name)) f.slots_current = false;
      }
    }
  }
  return f;
}

ObservedInstance PostgresNode::Observe(const InstanceSpec& spec, bool has_spec, SqlFacts* facts) {
  ObservedInstance o;
  o.has_spec = has_spec;
  o.has_data = HasData();
  o.standby_signal = PathExists(o_.pgdata + "/standby.signal");
  o.rewind_failed = rewind_failed_;
  if (o.has_data) o.data_cluster_uid = DataClusterUid();

  if (auto status = postgres_.Poll()) {
    admin_.reset();
    bool fenced = false;
    {
      std::lock_guard<std::mutex> l(fence_mu_);
      fenced = fence_sent_;
    }
    if (stopping_ || fenced) {
      stopping_ = false;
    } else {
      // Back off 1, 2, 4 ... 30 s between restarts; a run of 60 s resets the count.
      if (clock_.Now() - started_at_ > std::chrono::seconds(60)) crashes_ = 0;
      ++crashes_;
      auto backoff = std::chrono::seconds(std::min(30, 1 << std::min(crashes_ - 1, 5)));
      restart_after_ = clock_.Now() + backoff;
      last_crash_ = "postgres exited unexpectedly (" + DescribeWaitStatus(*status) + "); restart " +
                    std::to_string(crashes_) + " in " + std::to_string(backoff.count()) + "s";
      spdlog::warn("{}", last_crash_);
    }
  }
  o.postgres_running = postgres_.running();
  o.in_restart_backoff = !o.postgres_running && clock_.Now() < restart_after_;

  if (o.has_data && has_spec) {
    ConfigInputs in = Inputs();
    auto conf = ReadFileIfExists(o_.pgdata + "/" + kPetrelConfFile);
    auto hba = ReadFileIfExists(o_.pgdata + "/pg_hba.conf");
    auto main_conf = ReadFileIfExists(o_.pgdata + "/postgresql.conf");
    o.config_current = conf.ok() && *conf && **conf == RenderConf(DesiredParameters(spec, in)) &&
                       hba.ok() && *hba && **hba == RenderHba(spec) && main_conf.ok() &&
                       *main_conf && WithPetrelInclude(**main_conf) == **main_conf;
  }

  if (o.postgres_running) {
    *facts = QuerySql(spec);
    o.accepting = !facts->pg_version.empty();
    o.sql_role = facts->role;
    o.slots_current = facts->slots_current;
    o.checkpoint_predates_timeline = facts->role == InstanceRole::kPrimary &&
                                     facts->checkpoint_timeline > 0 &&
                                     facts->checkpoint_timeline < facts->timeline;
    if (o.accepting) last_crash_.clear();
  }
  if (o.has_data && has_spec) UpdateDivergence(spec, o, *facts);
  o.diverged = diverged_;
  return o;
}

}  // namespace petrel
