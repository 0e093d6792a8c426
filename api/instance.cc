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
  };
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
    if (s.bootstrap == BootstrapMethod::kSnapshot && s.snapshot_path.empty()) {
      r.Fail("snapshotPath", "is required when bootstrap is \"snapshot\"");
    }
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
  if (!r.causes().empty()) return InvalidWithCauses("invalid instance status", r.causes());
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
