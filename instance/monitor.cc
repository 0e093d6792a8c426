#include "instance/monitor.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "core/log.h"
#include "instance/metrics.h"
#include "instance/node.h"

namespace petrel {
namespace {

std::optional<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

int64_t ToInt(const std::string& s, int64_t fallback = 0) {
  if (s.empty()) return fallback;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  return end == s.c_str() ? fallback : v;
}

double ToDouble(const std::optional<std::string>& s, double fallback) {
  if (!s || s->empty()) return fallback;
  char* end = nullptr;
  double v = std::strtod(s->c_str(), &end);
  return end == s->c_str() ? fallback : v;
}

constexpr const char* kOverviewSql =
    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'), "
    "current_setting('default_transaction_read_only'), current_setting('max_connections'), "
    "current_setting('superuser_reserved_connections'), "
    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
    "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END, "
    "pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), "
    // A replica's delay: 0 while it has replayed all it received (an idle primary must not
    // look like lag), else the age of the last replayed transaction (postgres_exporter's rule).
    "CASE WHEN NOT pg_is_in_recovery() THEN NULL "
    "     WHEN pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0 "
    "     ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END, "
    "(SELECT status FROM pg_stat_wal_receiver), "
    "(SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver), "
    "(SELECT latest_end_lsn FROM pg_stat_wal_receiver), "
    "current_setting('server_version')";

constexpr const char* kDatabasesSql =
    "SELECT d.datname, pg_database_size(d.oid), s.xact_commit, s.xact_rollback, s.numbackends "
    "FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid "
    "WHERE d.datallowconn AND NOT d.datistemplate ORDER BY d.datname";

constexpr const char* kActivitySql =
    "SELECT datname, state, count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND datname IS NOT NULL AND state IS NOT NULL "
    "GROUP BY 1, 2 ORDER BY 1, 2";

// replay_lag goes NULL a while after a standby caught up with an idle primary: that is 0.
constexpr const char* kStandbysSql =
    "SELECT application_name, state, sync_state, sent_lsn, flush_lsn, replay_lsn, "
    "CASE WHEN replay_lag IS NOT NULL THEN (extract(epoch FROM replay_lag) * 1000)::bigint "
    "     WHEN replay_lsn >= pg_current_wal_lsn() THEN 0 END, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
    "FROM pg_stat_replication ORDER BY application_name";

constexpr const char* kSlotsSql =
    "SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical' "
    "ORDER BY slot_name";

}  // namespace

VmFacts GatherVmFacts(const std::string& volume_path, const std::string& proc_root) {
  VmFacts vm;
  struct statvfs st {};
  if (::statvfs(volume_path.c_str(), &st) == 0 && st.f_blocks > 0) {
    VolumeFacts v;
    uint64_t unit = st.f_frsize ? st.f_frsize : st.f_bsize;
    v.size_bytes = static_cast<uint64_t>(st.f_blocks) * unit;
    v.used_bytes = static_cast<uint64_t>(st.f_blocks - st.f_bfree) * unit;
    v.free_bytes = static_cast<uint64_t>(st.f_bavail) * unit;
    vm.volume = v;
  }
  if (auto text = ReadSmallFile(proc_root + "/loadavg")) vm.load = ParseLoadavg(*text);
  auto pressure = [&](const char* what) -> std::optional<double> {
    auto text = ReadSmallFile(proc_root + "/pressure/" + what);
    return text ? ParsePressureAvg60(*text) : std::nullopt;
  };
  vm.pressure.cpu = pressure("cpu");
  vm.pressure.memory = pressure("memory");
  vm.pressure.io = pressure("io");
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  vm.cpus = cpus > 0 ? static_cast<int>(cpus) : 1;
  return vm;
}

Result<PgFacts> GatherPgFacts(PgConn& conn) {
  PgFacts pg;
  PETREL_ASSIGN_OR_RETURN(PgRows o, conn.Exec(kOverviewSql));
  pg.accepting = true;
  pg.role = o.GetOr(0, 0) == "t" ? InstanceRole::kReplica : InstanceRole::kPrimary;
  pg.writable = o.GetOr(0, 1) == "off";
  pg.default_read_only = o.GetOr(0, 2) == "on";
  pg.max_connections = ToInt(o.GetOr(0, 3));
  pg.reserved_connections = ToInt(o.GetOr(0, 4));
  pg.connections_used = ToInt(o.GetOr(0, 5));
  pg.current_lsn = o.GetOr(0, 6);
  pg.received_lsn = o.GetOr(0, 7);
  pg.replay_lsn = o.GetOr(0, 8);
  pg.lag_seconds = ToDouble(o.Get(0, 9), -1);
  pg.receiver_status = o.GetOr(0, 10);
  pg.streaming = pg.receiver_status == "streaming";
  pg.following = o.GetOr(0, 11);
  pg.version = o.GetOr(0, 13);
  if (pg.role == InstanceRole::kReplica) {
    // How far replay is behind the newest WAL position known here: what the primary last
    // reported to the receiver, or what was received.
    uint64_t end = 0, received = 0, replay = 0;
    bool have_end = ParseLsn(o.GetOr(0, 12), &end);
    if (ParseLsn(pg.received_lsn, &received) && (!have_end || received > end)) {
      end = received;
      have_end = true;
    }
    if (have_end && ParseLsn(pg.replay_lsn, &replay)) {
      pg.lag_bytes = end > replay ? static_cast<int64_t>(end - replay) : 0;
    }
  }

  PETREL_ASSIGN_OR_RETURN(PgRows dbs, conn.Exec(kDatabasesSql));
  for (int i = 0; i < dbs.size(); ++i) {
    pg.databases.push_back({dbs.GetOr(i, 0), ToInt(dbs.GetOr(i, 1)), ToInt(dbs.GetOr(i, 2)),
                            ToInt(dbs.GetOr(i, 3)), ToInt(dbs.GetOr(i, 4))});
  }
  PETREL_ASSIGN_OR_RETURN(PgRows act, conn.Exec(kActivitySql));
  for (int i = 0; i < act.size(); ++i) {
    pg.activity.push_back({act.GetOr(i, 0), act.GetOr(i, 1), ToInt(act.GetOr(i, 2))});
  }
  if (pg.role == InstanceRole::kPrimary) {
    PETREL_ASSIGN_OR_RETURN(PgRows sbs, conn.Exec(kStandbysSql));
    for (int i = 0; i < sbs.size(); ++i) {
      StandbyFacts sb;
      sb.info.name = sbs.GetOr(i, 0);
      sb.info.state = sbs.GetOr(i, 1);
      sb.info.sync_state = sbs.GetOr(i, 2);
      sb.info.sent_lsn = sbs.GetOr(i, 3);
      sb.info.flush_lsn = sbs.GetOr(i, 4);
      sb.info.replay_lsn = sbs.GetOr(i, 5);
      sb.info.replay_lag_ms = ToInt(sbs.GetOr(i, 6), -1);
      sb.lag_bytes = ToInt(sbs.GetOr(i, 7), -1);
      pg.standbys.push_back(std::move(sb));
    }
    PETREL_ASSIGN_OR_RETURN(PgRows slots, conn.Exec(kSlotsSql));
    for (int i = 0; i < slots.size(); ++i) {
      pg.slots.push_back({slots.GetOr(i, 0), slots.GetOr(i, 1) == "t"});
    }
  }
  return pg;
}

InstanceMonitor::InstanceMonitor(MonitorOptions options, ManagerView manager, Clock& clock)
    : options_(std::move(options)), manager_(std::move(manager)), clock_(clock) {
  facts_.name = options_.name;
  facts_.cluster = options_.cluster;
}

InstanceMonitor::~InstanceMonitor() { Stop(); }

void InstanceMonitor::Start() {
  GatherOnce();
  thread_ = std::thread([this] { Loop(); });
}

void InstanceMonitor::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void InstanceMonitor::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!wake_.wait_for(l, options_.interval, [this] { return stop_; })) {
    l.unlock();
    GatherOnce();
    l.lock();
  }
}

std::optional<PgConn>& InstanceMonitor::Connection() {
  if (conn_ && conn_->ok()) return conn_;
  conn_.reset();
  PgConnectOptions opts;
  opts.connect_timeout = std::chrono::seconds(2);
  opts.statement_timeout = std::chrono::milliseconds(5000);
  opts.application_name = "petrel-monitor";
  auto c = ConnectLocalSuperuser(options_.socket_dir, options_.port, opts);
  if (c.ok()) conn_.emplace(std::move(c).value());
  return conn_;
}

void InstanceMonitor::GatherOnce() {
  std::lock_guard<std::mutex> one_round(gather_mu_);
  InstanceFacts f;
  f.name = options_.name;
  f.cluster = options_.cluster;
  f.vm = GatherVmFacts(options_.volume_path, options_.proc_root);
  std::optional<InstanceSpec> spec = manager_.spec ? manager_.spec() : std::nullopt;
  if (spec) {
    f.manager.has_spec = true;
    f.manager.desired_role = spec->role;
    f.manager.desired_primary = spec->primary;
    f.manager.fenced = spec->fenced;
  }
  if (manager_.status) f.manager.phase = manager_.status().phase;

  // A kept connection may have died with a restarted postgres: one fresh try before
  // concluding that postgres does not answer.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::optional<PgConn>& conn = Connection();
    if (!conn) break;
    auto pg = GatherPgFacts(*conn);
    if (pg.ok()) {
      f.pg = std::move(pg).value();
      break;
    }
    spdlog::debug("monitor: gathering SQL facts failed: {}", pg.status().ToString());
    conn_.reset();
  }

  std::vector<HealthCheck> checks = EvaluateChecks(f, options_.thresholds);
  std::lock_guard<std::mutex> l(mu_);
  for (const HealthCheck& c : checks) {
    const HealthCheck* before = nullptr;
    for (const HealthCheck& old : checks_) {
      if (old.name == c.name) before = &old;
    }
    if (before ? before->state != c.state : c.state != CheckState::kPassing) {
      spdlog::info("check {}: {}{}: {}", c.name,
                   before ? std::string(CheckStateName(before->state)) + " -> " : "",
                   CheckStateName(c.state), c.output);
    }
  }
  facts_ = std::move(f);
  checks_ = std::move(checks);
  gathered_ = true;
  gathered_at_ = clock_.Now();
}

void InstanceMonitor::Annotate(InstanceStatus* status) const {
  std::lock_guard<std::mutex> l(mu_);
  if (!gathered_) return;
  status->checks = checks_;
  status->standbys.clear();
  for (const StandbyFacts& sb : facts_.pg.standbys) status->standbys.push_back(sb.info);
}

std::vector<HealthCheck> InstanceMonitor::Checks() const {
  std::lock_guard<std::mutex> l(mu_);
  return checks_;
}

std::string InstanceMonitor::MetricsText() const {
  std::lock_guard<std::mutex> l(mu_);
  double age = gathered_ ? std::chrono::duration<double>(clock_.Now() - gathered_at_).count() : 0;
  return RenderInstanceMetrics(facts_, checks_, age);
}

}  // namespace petrel
