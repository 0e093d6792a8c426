#include "instance/config.h"

#include <algorithm>
#include <sstream>

#include "pg/conn.h"

namespace petrel {
namespace {

std::string Megabytes(int64_t mb) { return std::to_string(mb) + "MB"; }

std::string QuoteConfValue(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'') {
      out += "''";
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace

std::map<std::string, std::string> MemoryDefaults(int64_t memory_limit_bytes) {
  std::map<std::string, std::string> out;
  if (memory_limit_bytes <= 0) return out;
  const int64_t mb = memory_limit_bytes / (1024 * 1024);
  if (mb < 64) return out;  // too small to tune sensibly; keep Postgres' own defaults
  out["shared_buffers"] = Megabytes(mb / 4);
  out["effective_cache_size"] = Megabytes(3 * mb / 4);
  out["work_mem"] = Megabytes(std::max<int64_t>(4, mb / 64));
  out["maintenance_work_mem"] = Megabytes(std::max<int64_t>(64, mb / 20));
  return out;
}

std::string PrimaryConnInfo(const Endpoint& primary, const ConfigInputs& in) {
  return ConnInfo({{"host", primary.host},
                   {"port", std::to_string(primary.port)},
                   {"user", kReplicationUser},
                   {"passfile", in.passfile},
                   {"application_name", in.name},
                   {"connect_timeout", "5"},
                   {"sslmode", "prefer"}});
}

std::map<std::string, std::string> DesiredParameters(const InstanceSpec& spec,
                                                     const ConfigInputs& in) {
  // Static defaults that suit an SSD-backed pod (Fly's choices).
  std::map<std::string, std::string> p = {
      {"random_page_cost", "1.1"},
      {"effective_io_concurrency", "200"},
      {"wal_compression", "on"},
      {"max_wal_senders", "10"},
      {"max_replication_slots", "10"},
      // pg_rewind reads the old primary's WAL back to the last common checkpoint; keeping
      // some WAL makes a rewind after failover likely to work instead of needing a re-clone
      // (CloudNativePG's default too).
      {"wal_keep_size", "512MB"},
      // A standby whose WAL receiver failed (its primary just died, or the new primary is
      // still promoting) tries again after this long; PostgreSQL's 5 s default is most of a
      // failover's write pause in synchronous mode, where commits wait for that standby.
      {"wal_retrieve_retry_interval", "1s"},
      {"logging_collector", "off"},
  };
  for (const auto& [k, v] : MemoryDefaults(spec.memory_limit_bytes)) p[k] = v;
  for (const auto& [k, v] : spec.parameters) p[k] = v;

  p["listen_addresses"] = in.listen_address;
  p["port"] = std::to_string(in.port);
  p["unix_socket_directories"] = in.socket_dir;
  p["unix_socket_permissions"] = "0700";
  p["cluster_name"] = in.name;
  p["hot_standby"] = "on";
  p["wal_level"] = "replica";
  p["wal_log_hints"] = "on";  // pg_rewind needs it (checksums from initdb also suffice)
  p["synchronous_standby_names"] = spec.synchronous_standby_names;
  p["recovery_target_timeline"] = "latest";
  if (spec.role == InstanceRole::kReplica && spec.primary) {
    p["primary_conninfo"] = PrimaryConnInfo(*spec.primary, in);
    p["primary_slot_name"] = spec.slot_name;
  } else {
    p["primary_conninfo"] = "";
    p["primary_slot_name"] = "";
  }
  return p;
}

std::string RenderConf(const std::map<std::string, std::string>& parameters) {
  std::ostringstream out;
  out << "# Written by petrel instance; rewritten whenever the instance spec changes.\n"
         "# Change settings through the cluster's spec.postgresql.parameters instead.\n";
  for (const auto& [k, v] : parameters) out << k << " = " << QuoteConfValue(v) << "\n";
  return out.str();
}

std::string RenderHba(const InstanceSpec& spec) {
  std::ostringstream out;
  out << "# Written by petrel instance; rewritten whenever the instance spec changes.\n"
         "# Add rules through the cluster's spec.postgresql.pg_hba instead.\n";
  for (const auto& line : spec.pg_hba) out << line << "\n";
  // The unix socket directory is private to the postgres user (mode 0700): trust there is
  // the instance manager's own admin connection, nobody else can reach the socket.
  out << "local all " << kSuperuser << " trust\n";
  for (const char* net : {"0.0.0.0/0", "::/0"}) {
    out << "host replication " << kReplicationUser << " " << net << " scram-sha-256\n";
  }
  for (const char* net : {"0.0.0.0/0", "::/0"}) {
    out << "host all all " << net << " scram-sha-256\n";
  }
  return out.str();
}

std::string WithPetrelInclude(const std::string& postgresql_conf) {
  // Find the last non-blank, non-comment line; it must be the include.
  std::istringstream in(postgresql_conf);
  std::string line, last;
  while (std::getline(in, line)) {
    auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    last = line.substr(start);
  }
  while (!last.empty() && (last.back() == ' ' || last.back() == '\t' || last.back() == '\r')) {
    last.pop_back();
  }
  if (last == kIncludeLine) return postgresql_conf;
  std::string out = postgresql_conf;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += "# Petrel's settings (petrel.conf) override everything above.\n";
  out += std::string(kIncludeLine) + "\n";
  return out;
}

}  // namespace petrel
