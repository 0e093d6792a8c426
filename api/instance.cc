#include "api/instance.h"

#include <cinttypes>
#include <cstdio>
#include <regex>

namespace petrel {
namespace {

// JSON field names follow Kubernetes conventions (lowerCamelCase), as the controller copies
// parts of InstanceStatus into the PostgresCluster status.

// Reads an optional field of the expected JSON type; a field of the wrong type is an error
// that names the field.
class FieldReader {
 public:
  explicit FieldReader(const Json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {}

  void String(const char* key, std::string* out) {
    const Json* v = Find(key);
    if (!v) return;
    if (!v->is_string()) return Fail(key, "must be a string");
    *out = v->get<std::string>();
  }
  void Int(const char* key, int64_t* out) {
    const Json* v = Find(key);
    if (!v) return;
    if (!v->is_number_integer()) return Fail(key, "must be an integer");
    *out = v->get<int64_t>();
  }
  void Bool(const char* key, bool* out) {
    const Json* v = Find(key);
    if (!v) return;
    if (!v->is_boolean()) return Fail(key, "must be true or false");
    *out = v->get<bool>();
  }
  void StringList(const char* key, std::vector<std::string>* out) {
    const Json* v = Find(key);
    if (!v) return;
    if (!v->is_array()) return Fail(key, "must be a list of strings");
    out->clear();
    for (const Json& e : *v) {
      if (!e.is_string()) return Fail(key, "must be a list of strings");
      out->push_back(e.get<std::string>());
    }
  }
  void StringMap(const char* key, std::map<std::string, std::string>* out) {
    const Json* v = Find(key);
    if (!v) return;
    if (!v->is_object()) return Fail(key, "must be an object of string values");
    out->clear();
    for (const auto& [k, e] : v->items()) {
      if (!e.is_string()) {
        return Fail(key, "value of \"" + k + "\" must be a string (quote numbers: \"100\")");
      }
      (*out)[k] = e.get<std::string>();
    }
  }
  const Json* Object(const char* key) {
    const Json* v = Find(key);
    if (!v) return nullptr;
    if (!v->is_object()) {
      Fail(key, "must be an object");
      return nullptr;
    }
    return v;
  }
  void Fail(const std::string& key, const std::string& message) {
    causes_.push_back({prefix_ + key, "FieldValueInvalid", message});
  }
  std::vector<StatusCause>& causes() { return causes_; }

 private:
  const Json* Find(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  const Json& j_;
  std::string prefix_;
  std::vector<StatusCause> causes_;
};

Status InvalidWithCauses(const std::string& what, std::vector<StatusCause> causes) {
  std::string msg = what;
  for (size_t i = 0; i < causes.size(); ++i) {
    msg += (i == 0 ? ": " : "; ") + causes[i].field + " " + causes[i].message;
  }
  return InvalidError(msg).WithCauses(std::move(causes));
}

// Postgres identifiers Petrel manages itself (slot names) are restricted to what
// pg_create_physical_replication_slot accepts: lower-case letters, digits and underscores.
bool ValidSlotName(const std::string& s) {
  static const std::regex re("[a-z0-9_]{1,63}");
  return std::regex_match(s, re);
}

bool ValidParameterName(const std::string& s) {
  static const std::regex re("[A-Za-z_][A-Za-z0-9_.]{0,62}");
  return std::regex_match(s, re);
}

bool HasLineBreak(const std::string& s) {
  return s.find_first_of("\r\n") != std::string::npos || s.find('\0') != std::string::npos;
}

// Parameters that Petrel itself must control for the instance to work: overriding them
// would break addressing, replication or the admin connection.
const std::vector<std::string>& ManagedParameters() {
  static const std::vector<std::string> kManaged = {"listen_addresses",
                                                    "port",
                                                    "unix_socket_directories",
                                                    "unix_socket_permissions",
                                                    "data_directory",
                                                    "hba_file",
                                                    "ident_file",
                                                    "config_file",
                                                    "primary_conninfo",
                                                    "primary_slot_name",
                                                    "hot_standby",
                                                    "wal_level",
                                                    "include",
                                                    "include_dir",
                                                    "include_if_exists",
                                                    "synchronous_standby_names",
                                                    "restore_command",
                                                    "recovery_target_timeline"};
  return kManaged;
}

Json StandbysToJson(const std::vector<StandbyInfo>& standbys) {
  Json out = Json::array();
  for (const auto& s : standbys) {
    out.push_back({{"name", s.name},
                   {"state", s.state},
                   {"syncState", s.sync_state},
                   {"sentLsn", s.sent_lsn},
                   {"flushLsn", s.flush_lsn},
                   {"replayLsn", s.replay_lsn},
                   {"replayLagMs", s.replay_lag_ms}});
  }
  return out;
}

Json ChecksToJson(const std::vector<HealthCheck>& checks) {
  Json out = Json::array();
  for (const auto& c : checks) {
    out.push_back({{"name", c.name}, {"status", CheckStateName(c.state)}, {"output", c.output}});
  }
  return out;
}

}  // namespace

const char* RoleName(InstanceRole role) {
  switch (role) {
    case InstanceRole::kPrimary:
      return "primary";
    case InstanceRole::kReplica:
      return "replica";
    case InstanceRole::kNone:
      break;
  }
  return "none";
}

InstanceRole ParseRole(const std::string& s) {
  if (s == "primary") return InstanceRole::kPrimary;
  if (s == "replica") return InstanceRole::kReplica;
  return InstanceRole::kNone;
}

const char* BootstrapName(BootstrapMethod m) {
  switch (m) {
    case BootstrapMethod::kInitdb:
      return "initdb";
    case BootstrapMethod::kClone:
      return "clone";
    case BootstrapMethod::kSnapshot:
      return "snapshot";
    case BootstrapMethod::kNone:
      break;
  }
  return "none";
}

BootstrapMethod ParseBootstrap(const std::string& s) {
  if (s == "initdb") return BootstrapMethod::kInitdb;
  if (s == "clone") return BootstrapMethod::kClone;
  if (s == "snapshot") return BootstrapMethod::kSnapshot;
  return BootstrapMethod::kNone;
}

Json InstanceSpec::ToJson() const {
  Json j = {
      {"generation", generation},
      {"role", RoleName(role)},
      {"bootstrap", BootstrapName(bootstrap)},
      {"slotName", slot_name},
      {"replicationSlots", replication_slots},
      {"fenced", fenced},
      {"parameters", parameters},
      {"memoryLimitBytes", memory_limit_bytes},
      {"pgHba", pg_hba},
      {"synchronousStandbyNames", synchronous_standby_names},
      {"snapshotPath", snapshot_path},
      {"clusterUid", cluster_uid},
      {"initdb",
       {{"database", initdb.database},
        {"owner", initdb.owner},
        {"encoding", initdb.encoding},
        {"locale", initdb.locale},
        {"dataChecksums", initdb.data_checksums}}},
      {"term", term},
      {"leaseDurationMs", lease_duration_ms},
  };
  Json peer_list = Json::array();
  for (const auto& p : peers) {
    peer_list.push_back({{"name", p.name}, {"host", p.host}, {"port", p.port}});
  }
  j["peers"] = std::move(peer_list);
  if (primary) j["primary"] = {{"host", primary->host}, {"port", primary->port}};
  return j;
}

Result<InstanceSpec> InstanceSpec::FromJson(const Json& j) {
  if (!j.is_object()) {
    return InvalidError("instance spec must be a JSON object, got " + std::string(j.type_name()));
  }
  InstanceSpec s;
  FieldReader r(j, "");
  r.Int("generation", &s.generation);
  std::string role = "none";
  r.String("role", &role);
  s.role = ParseRole(role);
  if (s.role == InstanceRole::kNone && role != "none") {
    r.Fail("role", "must be \"primary\", \"replica\" or \"none\", got \"" + role + "\"");
  }
  std::string bootstrap = "none";
  r.String("bootstrap", &bootstrap);
  s.bootstrap = ParseBootstrap(bootstrap);
  if (s.bootstrap == BootstrapMethod::kNone && bootstrap != "none") {
    r.Fail("bootstrap",
           "must be \"initdb\", \"clone\", \"snapshot\" or \"none\", got \"" + bootstrap + "\"");
  }
  if (const Json* p = r.Object("primary")) {
    Endpoint e;
    FieldReader pr(*p, "primary.");
    pr.String("host", &e.host);
    int64_t port = kPostgresPort;
    pr.Int("port", &port);
    if (e.host.empty()) pr.Fail("host", "is required");
    if (port < 1 || port > 65535) pr.Fail("port", "must be between 1 and 65535");
    e.port = static_cast<uint16_t>(port);
    for (auto& c : pr.causes()) r.causes().push_back(c);
    s.primary = e;
  }
  r.String("slotName", &s.slot_name);
  r.StringList("replicationSlots", &s.replication_slots);
  r.Bool("fenced", &s.fenced);
  r.StringMap("parameters", &s.parameters);
  r.Int("memoryLimitBytes", &s.memory_limit_bytes);
  r.StringList("pgHba", &s.pg_hba);
  r.String("synchronousStandbyNames", &s.synchronous_standby_names);
  r.String("snapshotPath", &s.snapshot_path);
  r.String("clusterUid", &s.cluster_uid);
  if (const Json* i = r.Object("initdb")) {
    FieldReader ir(*i, "initdb.");
    ir.String("database", &s.initdb.database);
    ir.String("owner", &s.initdb.owner);
    ir.String("encoding", &s.initdb.encoding);
    ir.String("locale", &s.initdb.locale);
    ir.Bool("dataChecksums", &s.initdb.data_checksums);
    for (auto& c : ir.causes()) r.causes().push_back(c);
  }
  r.Int("term", &s.term);
  r.Int("leaseDurationMs", &s.lease_duration_ms);
  if (auto it = j.find("peers"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) {
      r.Fail("peers", "must be a list of {name, host, port}");
    } else {
      for (const Json& e : *it) {
        if (!e.is_object()) {
          r.Fail("peers", "must be a list of {name, host, port}");
          break;
        }
        Peer p;
        FieldReader pr(e, "peers[].");
        pr.String("name", &p.name);
        pr.String("host", &p.host);
        int64_t port = kInstanceApiPort;
        pr.Int("port", &port);
        if (p.name.empty()) pr.Fail("name", "is required");
        if (p.host.empty()) pr.Fail("host", "is required");
        if (port < 1 || port > 65535) pr.Fail("port", "must be between 1 and 65535");
        p.port = static_cast<uint16_t>(port);
        for (auto& c : pr.causes()) r.causes().push_back(c);
        s.peers.push_back(std::move(p));
      }
    }
  }

  // Semantic checks, only once every field has the right type.
  if (r.causes().empty()) {
    if (s.generation < 0) r.Fail("generation", "must be >= 0");
    if (s.memory_limit_bytes < 0) r.Fail("memoryLimitBytes", "must be >= 0 (0 = unknown)");
    if (s.role == InstanceRole::kReplica && !s.primary) {
      r.Fail("primary", "is required when role is \"replica\" (the primary to stream from)");
    }
    if (s.bootstrap == BootstrapMethod::kClone && !s.primary) {
      r.Fail("primary", "is required when bootstrap is \"clone\" (the primary to copy)");
    }
    if (!s.snapshot_path.empty() && s.snapshot_path.front() != '/') {
      r.Fail("snapshotPath", "must be an absolute path");
    }
    if (s.term < 0) r.Fail("term", "must be >= 0");
    if (s.lease_duration_ms < 0) r.Fail("leaseDurationMs", "must be >= 0 (0 = no lease)");
    if (!s.slot_name.empty() && !ValidSlotName(s.slot_name)) {
      r.Fail("slotName",
             "\"" + s.slot_name + "\" is not a valid slot name (1-63 of a-z, 0-9 and _)");
    }
    for (const auto& slot : s.replication_slots) {
      if (!ValidSlotName(slot)) {
        r.Fail("replicationSlots",
               "\"" + slot + "\" is not a valid slot name (1-63 of a-z, 0-9 and _)");
      }
    }
    for (const auto& [name, value] : s.parameters) {
      if (!ValidParameterName(name)) {
        r.Fail("parameters", "\"" + name + "\" is not a valid parameter name");
        continue;
      }
      for (const auto& managed : ManagedParameters()) {
        if (name == managed) {
          r.Fail("parameters." + name,
                 "is managed by Petrel and cannot be set (remove it from the parameters)");
        }
      }
      if (HasLineBreak(value)) r.Fail("parameters." + name, "must be a single line");
    }
    for (const auto& line : s.pg_hba) {
      if (HasLineBreak(line)) r.Fail("pgHba", "each entry must be a single line");
    }
    if (HasLineBreak(s.synchronous_standby_names)) {
      r.Fail("synchronousStandbyNames", "must be a single line");
    }
  }
  if (!r.causes().empty()) return InvalidWithCauses("invalid instance spec", r.causes());
  return s;
}

Json InstanceStatus::ToJson() const {
  return Json{
      {"name", name},
      {"initialized", initialized},
      {"running", running},
      {"ready", ready},
      {"role", RoleName(role)},
      {"fenced", fenced},
      {"specGeneration", spec_generation},
      {"phase", phase},
      {"message", message},
      {"systemIdentifier", system_identifier},
      {"timeline", timeline},
      {"currentLsn", current_lsn},
      {"receivedLsn", received_lsn},
      {"replayLsn", replay_lsn},
      {"streaming", streaming},
      {"following", following},
      {"lagBytes", lag_bytes},
      {"pgVersion", pg_version},
      {"pendingRestart", pending_restart},
      {"clusterUid", cluster_uid},
      {"term", term},
      {"leaseRemainingMs", lease_remaining_ms},
      {"standbys", StandbysToJson(standbys)},
      {"checks", ChecksToJson(checks)},
  };
}

Result<InstanceStatus> InstanceStatus::FromJson(const Json& j) {
  if (!j.is_object()) {
    return InvalidError("instance status must be a JSON object, got " + std::string(j.type_name()));
  }
  InstanceStatus s;
  FieldReader r(j, "");
  r.String("name", &s.name);
  r.Bool("initialized", &s.initialized);
  r.Bool("running", &s.running);
  r.Bool("ready", &s.ready);
  std::string role = "none";
  r.String("role", &role);
  s.role = ParseRole(role);
  r.Bool("fenced", &s.fenced);
  r.Int("specGeneration", &s.spec_generation);
  r.String("phase", &s.phase);
  r.String("message", &s.message);
  r.String("systemIdentifier", &s.system_identifier);
  r.Int("timeline", &s.timeline);
  r.String("currentLsn", &s.current_lsn);
  r.String("receivedLsn", &s.received_lsn);
  r.String("replayLsn", &s.replay_lsn);
  r.Bool("streaming", &s.streaming);
  r.String("following", &s.following);
  r.Int("lagBytes", &s.lag_bytes);
  r.String("pgVersion", &s.pg_version);
  r.Bool("pendingRestart", &s.pending_restart);
  r.String("clusterUid", &s.cluster_uid);
  r.Int("term", &s.term);
  r.Int("leaseRemainingMs", &s.lease_remaining_ms);
  if (auto it = j.find("standbys"); it != j.end() && it->is_array()) {
    for (const Json& e : *it) {
      if (!e.is_object()) continue;
      StandbyInfo sb;
      FieldReader sr(e, "standbys[].");
      sr.String("name", &sb.name);
      sr.String("state", &sb.state);
      sr.String("syncState", &sb.sync_state);
      sr.String("sentLsn", &sb.sent_lsn);
      sr.String("flushLsn", &sb.flush_lsn);
      sr.String("replayLsn", &sb.replay_lsn);
      sr.Int("replayLagMs", &sb.replay_lag_ms);
      for (auto& c : sr.causes()) r.causes().push_back(c);
      s.standbys.push_back(std::move(sb));
    }
  }
  if (auto it = j.find("checks"); it != j.end() && it->is_array()) {
    for (const Json& e : *it) {
      if (!e.is_object()) continue;
      HealthCheck c;
      FieldReader cr(e, "checks[].");
      std::string state = "passing";
      cr.String("name", &c.name);
      cr.String("status", &state);
      cr.String("output", &c.output);
      c.state = ParseCheckState(state);
      for (auto& cause : cr.causes()) r.causes().push_back(cause);
      s.checks.push_back(std::move(c));
    }
  }
  if (!r.causes().empty()) return InvalidWithCauses("invalid instance status", r.causes());
  return s;
}

const char* CheckStateName(CheckState s) {
  switch (s) {
    case CheckState::kWarning:
      return "warning";
    case CheckState::kCritical:
      return "critical";
    case CheckState::kPassing:
      break;
  }
  return "passing";
}

CheckState ParseCheckState(const std::string& s) {
  if (s == "warning") return CheckState::kWarning;
  if (s == "critical") return CheckState::kCritical;
  return CheckState::kPassing;
}

Json LeaseGrant::ToJson() const { return {{"term", term}, {"durationMs", duration_ms}}; }

Result<LeaseGrant> LeaseGrant::FromJson(const Json& j) {
  if (!j.is_object()) return InvalidError("lease grant must be a JSON object");
  LeaseGrant g;
  FieldReader r(j, "");
  r.Int("term", &g.term);
  r.Int("durationMs", &g.duration_ms);
  if (r.causes().empty() && g.duration_ms <= 0) r.Fail("durationMs", "must be > 0");
  if (!r.causes().empty()) return InvalidWithCauses("invalid lease grant", r.causes());
  return g;
}

Json LeaseReply::ToJson() const { return {{"term", term}, {"remainingMs", remaining_ms}}; }

Result<LeaseReply> LeaseReply::FromJson(const Json& j) {
  if (!j.is_object()) return InvalidError("lease reply must be a JSON object");
  LeaseReply l;
  FieldReader r(j, "");
  r.Int("term", &l.term);
  r.Int("remainingMs", &l.remaining_ms);
  if (!r.causes().empty()) return InvalidWithCauses("invalid lease reply", r.causes());
  return l;
}

Json PeerConfirmRequest::ToJson() const { return {{"term", term}, {"primary", primary}}; }

Result<PeerConfirmRequest> PeerConfirmRequest::FromJson(const Json& j) {
  if (!j.is_object()) return InvalidError("confirm-leader request must be a JSON object");
  PeerConfirmRequest p;
  FieldReader r(j, "");
  r.Int("term", &p.term);
  r.String("primary", &p.primary);
  if (!r.causes().empty()) return InvalidWithCauses("invalid confirm-leader request", r.causes());
  return p;
}

Json PeerConfirmReply::ToJson() const { return {{"confirmed", confirmed}, {"reason", reason}}; }

Result<PeerConfirmReply> PeerConfirmReply::FromJson(const Json& j) {
  if (!j.is_object()) return InvalidError("confirm-leader reply must be a JSON object");
  PeerConfirmReply p;
  FieldReader r(j, "");
  r.Bool("confirmed", &p.confirmed);
  r.String("reason", &p.reason);
  if (!r.causes().empty()) return InvalidWithCauses("invalid confirm-leader reply", r.causes());
  return p;
}

Json SnapshotRequest::ToJson() const { return {{"dir", dir}}; }

Result<SnapshotRequest> SnapshotRequest::FromJson(const Json& j) {
  if (!j.is_object()) return InvalidError("snapshot request must be a JSON object");
  SnapshotRequest s;
  FieldReader r(j, "");
  r.String("dir", &s.dir);
  if (r.causes().empty() && (s.dir.empty() || s.dir.front() != '/')) {
    r.Fail("dir", "must be an absolute path");
  }
  if (!r.causes().empty()) return InvalidWithCauses("invalid snapshot request", r.causes());
  return s;
}

Json SnapshotInfo::ToJson() const {
  return {{"sizeBytes", size_bytes},   {"lsn", lsn},
          {"pgVersion", pg_version},   {"pgMajor", pg_major},
          {"systemIdentifier", system_identifier}, {"timeline", timeline}};
}

Result<SnapshotInfo> SnapshotInfo::FromJson(const Json& j) {
  if (!j.is_object()) return InvalidError("snapshot info must be a JSON object");
  SnapshotInfo s;
  FieldReader r(j, "");
  int64_t major = 0;
  r.Int("sizeBytes", &s.size_bytes);
  r.String("lsn", &s.lsn);
  r.String("pgVersion", &s.pg_version);
  r.Int("pgMajor", &major);
  r.String("systemIdentifier", &s.system_identifier);
  r.Int("timeline", &s.timeline);
  s.pg_major = static_cast<int>(major);
  if (!r.causes().empty()) return InvalidWithCauses("invalid snapshot info", r.causes());
  return s;
}

bool ParseLsn(const std::string& text, uint64_t* out) {
  // Two hex numbers of up to 8 digits each, "XXXXXXXX/XXXXXXXX", as pg_lsn prints them.
  static const std::regex re("([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})");
  std::smatch m;
  if (!std::regex_match(text, m, re)) return false;
  uint64_t hi = std::stoull(m[1].str(), nullptr, 16);
  uint64_t lo = std::stoull(m[2].str(), nullptr, 16);
  *out = (hi << 32) | lo;
  return true;
}

std::string FormatLsn(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%" PRIX64 "/%" PRIX64, lsn >> 32, lsn & 0xFFFFFFFFu);
  return buf;
}

}  // namespace petrel
