#include "api/cluster.h"

#include <algorithm>
#include <cctype>
#include <limits>

namespace petrel {

// ---- Quantities --------------------------------------------------------------------------

namespace {

using u128 = unsigned __int128;

constexpr const char* kQuantityForms =
    "use a non-negative number with an optional suffix: Ki, Mi, Gi, Ti, Pi, Ei (powers of "
    "1024), k, M, G, T, P, E (powers of 1000), e.g. \"10Gi\" or \"500M\"";

// A decimal number split into digits: value = mantissa / 10^scale * multiplier.
struct ParsedQuantity {
  u128 mantissa = 0;
  int scale = 0;  // digits after the decimal point
  u128 multiplier = 1;
  int exponent = 0;  // decimal exponent (from "e9" or suffix k/M/G...)
  bool milli = false;
};

u128 Pow(u128 base, int n) {
  u128 r = 1;
  for (int i = 0; i < n; ++i) r *= base;
  return r;
}

bool ParseQuantityText(const std::string& text, ParsedQuantity* out) {
  size_t i = 0;
  if (i < text.size() && text[i] == '+') ++i;
  bool digits = false;
  ParsedQuantity q;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    if (q.mantissa > static_cast<u128>(std::numeric_limits<int64_t>::max()) * 1000) return false;
    q.mantissa = q.mantissa * 10 + static_cast<u128>(text[i] - '0');
    digits = true;
  }
  if (i < text.size() && text[i] == '.') {
    ++i;
    for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
      if (q.scale >= 18) return false;  // more precision than any byte count needs
      q.mantissa = q.mantissa * 10 + static_cast<u128>(text[i] - '0');
      ++q.scale;
      digits = true;
    }
  }
  if (!digits) return false;
  std::string suffix = text.substr(i);
  static const std::map<std::string, int> kBinary = {{"Ki", 1}, {"Mi", 2}, {"Gi", 3},
                                                     {"Ti", 4}, {"Pi", 5}, {"Ei", 6}};
  static const std::map<std::string, int> kDecimal = {{"k", 3},  {"M", 6},  {"G", 9},
                                                      {"T", 12}, {"P", 15}, {"E", 18}};
  if (suffix.empty()) {
  } else if (auto b = kBinary.find(suffix); b != kBinary.end()) {
    q.multiplier = Pow(1024, b->second);
  } else if (auto d = kDecimal.find(suffix); d != kDecimal.end()) {
    q.exponent = d->second;
  } else if (suffix == "m") {
    q.milli = true;
  } else if ((suffix[0] == 'e' || suffix[0] == 'E') && suffix.size() > 1) {
    size_t j = 1;
    if (suffix[j] == '+') ++j;
    if (j >= suffix.size() || suffix.size() - j > 2) return false;
    for (size_t k = j; k < suffix.size(); ++k) {
      if (!std::isdigit(static_cast<unsigned char>(suffix[k]))) return false;
    }
    q.exponent = std::stoi(suffix.substr(j));
  } else {
    return false;
  }
  *out = q;
  return true;
}

// mantissa * multiplier * 10^exponent / 10^scale / (milli ? 1000 : 1) * unit, rounded up.
Result<int64_t> Evaluate(const ParsedQuantity& q, int unit_exponent, const std::string& text,
                         const char* forms) {
  int net = q.exponent + unit_exponent - q.scale - (q.milli ? 3 : 0);
  u128 value = q.mantissa * q.multiplier;
  constexpr u128 kMax = static_cast<u128>(std::numeric_limits<int64_t>::max());
  if (net >= 0) {
    for (int i = 0; i < net; ++i) {
      value *= 10;
      if (value > kMax) break;
    }
  } else {
    u128 divisor = Pow(10, -net);
    value = (value + divisor - 1) / divisor;
  }
  if (value > kMax) {
    return InvalidError("quantity \"" + text + "\" is too large; " + forms);
  }
  return static_cast<int64_t>(value);
}

}  // namespace

Result<int64_t> ParseByteQuantity(const std::string& text) {
  ParsedQuantity q;
  if (text.empty() || !ParseQuantityText(text, &q)) {
    return InvalidError("\"" + text + "\" is not a valid quantity; " + kQuantityForms);
  }
  if (q.milli) {
    return InvalidError("\"" + text + "\" is in thousandths (m), which is not a byte count; " +
                        kQuantityForms);
  }
  return Evaluate(q, 0, text, kQuantityForms);
}

Result<int64_t> ParseMilliQuantity(const std::string& text) {
  static const char* kCpuForms = "use cores (\"2\", \"0.5\") or millicores (\"500m\")";
  ParsedQuantity q;
  if (text.empty() || !ParseQuantityText(text, &q)) {
    return InvalidError("\"" + text + "\" is not a valid quantity; " + kCpuForms);
  }
  return Evaluate(q, 3, text, kCpuForms);
}

std::string FormatByteQuantity(int64_t bytes) {
  static const char* kSuffixes[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  int i = 0;
  while (bytes != 0 && bytes % 1024 == 0 && i < 6) {
    bytes /= 1024;
    ++i;
  }
  return std::to_string(bytes) + kSuffixes[i];
}

std::optional<int> MajorVersionFromImage(const std::string& image) {
  std::string ref = image.substr(0, image.find('@'));
  size_t slash = ref.rfind('/');
  size_t colon = ref.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) {
    return std::nullopt;
  }
  std::string tag = ref.substr(colon + 1);
  size_t n = 0;
  while (n < tag.size() && std::isdigit(static_cast<unsigned char>(tag[n]))) ++n;
  if (n == 0 || n > 3) return std::nullopt;
  if (n < tag.size() && tag[n] != '.' && tag[n] != '-' && tag[n] != '_') return std::nullopt;
  int major = std::stoi(tag.substr(0, n));
  if (major < 10) return std::nullopt;  // 9.x numbering (and "1-bookworm") is not a major
  return major;
}

const char* ReclaimPolicyName(ReclaimPolicy p) {
  return p == ReclaimPolicy::kDelete ? "Delete" : "Retain";
}

std::string SlotName(const std::string& instance) {
  std::string out = "petrel_" + instance;
  for (char& c : out) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)))) {
      c = '_';
    }
  }
  return out;
}

Json ResourceRequirements::ToJson() const {
  Json j = Json::object();
  if (!requests.empty()) j["requests"] = requests;
  if (!limits.empty()) j["limits"] = limits;
  return j;
}

bool AttachmentPolicy::Allows(const std::string& cluster_namespace, const std::string& namespace_,
                              const std::map<std::string, std::string>& namespace_labels) const {
  if (namespace_ == cluster_namespace) return true;
  for (const auto& allowed : allowed_namespaces) {
    if (allowed == "*" || allowed == namespace_) return true;
  }
  // An empty selector admits nobody: cross-namespace access is opt-in, never implicit.
  return namespace_selector.has_value() && !namespace_selector->Empty() &&
         namespace_selector->Matches(namespace_labels);
}

// ---- Spec parsing ------------------------------------------------------------------------

namespace {

// Collects every problem with its field path; each accessor returns a usable value (the
// default) even after recording a problem, so parsing always runs to the end.
class SpecReader {
 public:
  void Problem(const std::string& field, const std::string& message,
               const std::string& reason = "FieldValueInvalid") {
    causes_.push_back({field, reason, message});
  }
  const std::vector<StatusCause>& causes() const { return causes_; }

  const Json* Child(const Json& parent, const std::string& key, const std::string& path,
                    Json::value_t type) {
    if (!parent.is_object()) return nullptr;
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return nullptr;
    if (it->type() != type &&
        !(type == Json::value_t::number_integer && it->is_number_unsigned())) {
      Problem(path, "must be " + TypeName(type) + ", not " + std::string(it->type_name()),
              "FieldValueTypeInvalid");
      return nullptr;
    }
    return &*it;
  }

  std::string String(const Json& parent, const std::string& key, const std::string& path,
                     std::string fallback = "") {
    const Json* v = Child(parent, key, path, Json::value_t::string);
    return v ? v->get<std::string>() : fallback;
  }

  std::optional<int64_t> Integer(const Json& parent, const std::string& key,
                                 const std::string& path) {
    if (!parent.is_object()) return std::nullopt;
    auto it = parent.find(key);
    if (it == parent.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer()) {
      Problem(path, "must be a whole number", "FieldValueTypeInvalid");
      return std::nullopt;
    }
    return it->get<int64_t>();
  }

  bool Bool(const Json& parent, const std::string& key, const std::string& path, bool fallback) {
    const Json* v = Child(parent, key, path, Json::value_t::boolean);
    return v ? v->get<bool>() : fallback;
  }

  std::map<std::string, std::string> StringMap(const Json& parent, const std::string& key,
                                               const std::string& path) {
    std::map<std::string, std::string> out;
    const Json* v = Child(parent, key, path, Json::value_t::object);
    if (!v) return out;
    for (auto it = v->begin(); it != v->end(); ++it) {
      if (it->is_string()) {
        out[it.key()] = it->get<std::string>();
      } else if (it->is_number() || it->is_boolean()) {
        out[it.key()] = it->dump();  // quantities may be written as plain numbers
      } else {
        Problem(path + "." + it.key(), "must be a string", "FieldValueTypeInvalid");
      }
    }
    return out;
  }

  std::vector<std::string> StringList(const Json& parent, const std::string& key,
                                      const std::string& path) {
    std::vector<std::string> out;
    const Json* v = Child(parent, key, path, Json::value_t::array);
    if (!v) return out;
    for (size_t i = 0; i < v->size(); ++i) {
      if ((*v)[i].is_string()) {
        out.push_back((*v)[i].get<std::string>());
      } else {
        Problem(path + "[" + std::to_string(i) + "]", "must be a string", "FieldValueTypeInvalid");
      }
    }
    return out;
  }

  // An enum value from `allowed` (first = default when absent).
  std::string Enum(const Json& parent, const std::string& key, const std::string& path,
                   const std::vector<std::string>& allowed) {
    std::string v = String(parent, key, path, allowed.front());
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + ("\"" + a + "\"");
      Problem(path, "unsupported value \"" + v + "\"; use one of " + list,
              "FieldValueNotSupported");
      return allowed.front();
    }
    return v;
  }

  void UnknownFields(const Json& object, const std::string& path,
                     const std::vector<std::string>& known) {
    if (!object.is_object()) return;
    for (auto it = object.begin(); it != object.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
        Problem(path + "." + it.key(),
                "unknown field; remove it (see `kubectl explain " + ExplainPath(path) + "`)",
                "FieldValueNotSupported");
      }
    }
  }

 private:
  static std::string TypeName(Json::value_t t) {
    switch (t) {
      case Json::value_t::string:
        return "a string";
      case Json::value_t::object:
        return "an object";
      case Json::value_t::array:
        return "a list";
      case Json::value_t::boolean:
        return "true or false";
      case Json::value_t::number_integer:
        return "a whole number";
      default:
        return "a value";
    }
  }
  static std::string ExplainPath(const std::string& path) { return "pgc." + path; }

  std::vector<StatusCause> causes_;
};

bool IsValidQuantityKey(const std::string& key) {
  return key == "cpu" || key == "memory" || key.rfind("hugepages-", 0) == 0 ||
         key == "ephemeral-storage";
}

void ParseResources(SpecReader& r, const Json& spec, ResourceRequirements* out) {
  const Json* res = r.Child(spec, "resources", "spec.resources", Json::value_t::object);
  if (!res) return;
  r.UnknownFields(*res, "spec.resources", {"requests", "limits"});
  out->requests = r.StringMap(*res, "requests", "spec.resources.requests");
  out->limits = r.StringMap(*res, "limits", "spec.resources.limits");
  std::map<std::string, int64_t> request_values, limit_values;
  auto check = [&](const std::map<std::string, std::string>& m, const std::string& path,
                   std::map<std::string, int64_t>* values) {
    for (const auto& [k, v] : m) {
      std::string field = path + "." + k;
      if (!IsValidQuantityKey(k)) {
        r.Problem(field, "unknown resource; use cpu, memory, ephemeral-storage or hugepages-*",
                  "FieldValueNotSupported");
        continue;
      }
      Result<int64_t> q = k == "cpu" ? ParseMilliQuantity(v) : ParseByteQuantity(v);
      if (!q.ok()) {
        r.Problem(field, q.status().message());
      } else {
        (*values)[k] = *q;
      }
    }
  };
  check(out->requests, "spec.resources.requests", &request_values);
  check(out->limits, "spec.resources.limits", &limit_values);
  for (const auto& [k, limit] : limit_values) {
    auto req = request_values.find(k);
    if (req != request_values.end() && req->second > limit) {
      r.Problem("spec.resources.requests." + k, "request " + out->requests[k] +
                                                    " is above the limit " + out->limits[k] +
                                                    "; lower the request or raise the limit");
    }
  }
  if (auto m = limit_values.find("memory"); m != limit_values.end()) {
    out->memory_bytes = m->second;
  } else if (auto q = request_values.find("memory"); q != request_values.end()) {
    out->memory_bytes = q->second;
  }
}

void ParseStorage(SpecReader& r, const Json& spec, StorageSpec* out) {
  const Json* storage = r.Child(spec, "storage", "spec.storage", Json::value_t::object);
  if (!storage) {
    if (!spec.is_object() || !spec.contains("storage") || spec["storage"].is_null()) {
      r.Problem("spec.storage", "is required; set spec.storage.size, e.g. \"10Gi\"",
                "FieldValueRequired");
    }
    return;
  }
  r.UnknownFields(*storage, "spec.storage", {"size", "storageClass", "reclaimPolicy"});
  out->size = r.String(*storage, "size", "spec.storage.size");
  if (out->size.empty()) {
    if (!storage->contains("size")) {
      r.Problem("spec.storage.size", "is required; set the volume size, e.g. \"10Gi\"",
                "FieldValueRequired");
    }
  } else if (auto bytes = ParseByteQuantity(out->size); !bytes.ok()) {
    r.Problem("spec.storage.size", bytes.status().message());
  } else if (*bytes < 64 * 1024 * 1024) {
    r.Problem("spec.storage.size",
              "\"" + out->size +
                  "\" is too small for a Postgres data directory; use at least "
                  "\"64Mi\" (\"1Gi\" or more in production)");
  } else {
    out->size_bytes = *bytes;
  }
  out->storage_class = r.String(*storage, "storageClass", "spec.storage.storageClass");
  out->reclaim_policy = r.Enum(*storage, "reclaimPolicy", "spec.storage.reclaimPolicy",
                               {"Retain", "Delete"}) == "Delete"
                            ? ReclaimPolicy::kDelete
                            : ReclaimPolicy::kRetain;
}

bool IsValidParameterName(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

// Parameters the controller and the instance own; letting users set them would break
// replication, the instance API or the data directory layout.
const std::vector<std::string>& ManagedParameters() {
  static const std::vector<std::string> kManaged = {"data_directory",
                                                    "hba_file",
                                                    "ident_file",
                                                    "config_file",
                                                    "listen_addresses",
                                                    "port",
                                                    "primary_conninfo",
                                                    "primary_slot_name",
                                                    "synchronous_standby_names",
                                                    "restore_command",
                                                    "recovery_target_timeline",
                                                    "unix_socket_directories",
                                                    "cluster_name"};
  return kManaged;
}

void ParsePostgresql(SpecReader& r, const Json& spec, int32_t replicas, PostgresConfig* out) {
  const Json* pg = r.Child(spec, "postgresql", "spec.postgresql", Json::value_t::object);
  if (!pg) return;
  r.UnknownFields(*pg, "spec.postgresql", {"parameters", "pg_hba", "synchronous"});
  out->parameters = r.StringMap(*pg, "parameters", "spec.postgresql.parameters");
  for (const auto& [name, value] : out->parameters) {
    std::string field = "spec.postgresql.parameters." + name;
    if (!IsValidParameterName(name)) {
      r.Problem(field,
                "is not a Postgres parameter name; use lower-case names such as "
                "\"max_connections\"");
    } else if (std::find(ManagedParameters().begin(), ManagedParameters().end(), name) !=
               ManagedParameters().end()) {
      r.Problem(field, "is managed by Petrel and cannot be set; remove it", "FieldValueForbidden");
    }
    if (value.find('\n') != std::string::npos || value.find('\0') != std::string::npos) {
      r.Problem(field, "must be a single line");
    }
  }
  out->pg_hba = r.StringList(*pg, "pg_hba", "spec.postgresql.pg_hba");
  for (size_t i = 0; i < out->pg_hba.size(); ++i) {
    if (out->pg_hba[i].find('\n') != std::string::npos) {
      r.Problem("spec.postgresql.pg_hba[" + std::to_string(i) + "]",
                "must be a single pg_hba.conf line; put each rule in its own list entry");
    }
  }
  const Json* sync =
      r.Child(*pg, "synchronous", "spec.postgresql.synchronous", Json::value_t::object);
  if (!sync) return;
  r.UnknownFields(*sync, "spec.postgresql.synchronous", {"method", "number", "dataDurability"});
  SynchronousSpec s;
  s.method =
      r.Enum(*sync, "method", "spec.postgresql.synchronous.method", {"any", "first"}) == "first"
          ? SyncMethod::kFirst
          : SyncMethod::kAny;
  s.data_durability = r.Enum(*sync, "dataDurability", "spec.postgresql.synchronous.dataDurability",
                             {"required", "preferred"}) == "preferred"
                          ? DataDurability::kPreferred
                          : DataDurability::kRequired;
  if (auto n = r.Integer(*sync, "number", "spec.postgresql.synchronous.number")) {
    if (*n < 1) {
      r.Problem("spec.postgresql.synchronous.number",
                "must be at least 1; remove spec.postgresql.synchronous for asynchronous "
                "replication");
    } else {
      s.number = static_cast<int>(std::min<int64_t>(*n, 1000));
    }
  }
  if (s.data_durability == DataDurability::kRequired && s.number > replicas - 1) {
    r.Problem("spec.postgresql.synchronous.number",
              "asks for " + std::to_string(s.number) +
                  " synchronous standbys but the cluster has " +
                  std::to_string(std::max(replicas - 1, 0)) +
                  " replicas, so every write would wait forever; raise spec.replicas, lower "
                  "the number, or set dataDurability: preferred");
  }
  out->synchronous = s;
}

void ParseAttachments(SpecReader& r, const Json& spec, AttachmentPolicy* out) {
  const Json* a = r.Child(spec, "attachments", "spec.attachments", Json::value_t::object);
  if (!a) return;
  r.UnknownFields(*a, "spec.attachments", {"allowedNamespaces", "namespaceSelector"});
  out->allowed_namespaces =
      r.StringList(*a, "allowedNamespaces", "spec.attachments.allowedNamespaces");
  if (const Json* sel = r.Child(*a, "namespaceSelector", "spec.attachments.namespaceSelector",
                                Json::value_t::object)) {
    r.UnknownFields(*sel, "spec.attachments.namespaceSelector",
                    {"matchLabels", "matchExpressions"});
    out->namespace_selector = LabelSelector::FromJson(*sel);
  }
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  if (!(std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '_';
  });
}

void ParseBootstrap(SpecReader& r, const Json& spec, InitdbSpec* out) {
  const Json* b = r.Child(spec, "bootstrap", "spec.bootstrap", Json::value_t::object);
  if (!b) return;
  r.UnknownFields(*b, "spec.bootstrap", {"initdb"});
  const Json* init = r.Child(*b, "initdb", "spec.bootstrap.initdb", Json::value_t::object);
  if (!init) return;
  const std::string p = "spec.bootstrap.initdb";
  r.UnknownFields(*init, p, {"database", "owner", "dataChecksums", "encoding", "locale"});
  out->database = r.String(*init, "database", p + ".database", out->database);
  out->owner = r.String(*init, "owner", p + ".owner");
  out->data_checksums = r.Bool(*init, "dataChecksums", p + ".dataChecksums", true);
  out->encoding = r.String(*init, "encoding", p + ".encoding", out->encoding);
  out->locale = r.String(*init, "locale", p + ".locale", out->locale);
  const char* ident_hint =
      "; use lower-case letters, digits and underscores, starting with a letter (at most 63)";
  if (!IsIdentifier(out->database))
    r.Problem(p + ".database", "is not a valid name" + std::string(ident_hint));
  if (!out->owner.empty() && !IsIdentifier(out->owner)) {
    r.Problem(p + ".owner", "is not a valid role name" + std::string(ident_hint));
  }
  if (out->owner == "postgres" || out->owner == "streaming_replica" ||
      out->owner.rfind("pg_", 0) == 0) {
    r.Problem(p + ".owner", "\"" + out->owner + "\" is reserved; choose an application role name",
              "FieldValueForbidden");
  }
  auto simple = [](const std::string& s) {
    return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
             c == '@';
    });
  };
  if (!simple(out->encoding)) r.Problem(p + ".encoding", "is not an encoding name; use e.g. UTF8");
  if (!simple(out->locale))
    r.Problem(p + ".locale", "is not a locale name; use e.g. C or en_US.UTF-8");
}

}  // namespace

Result<PostgresClusterSpec> ParseClusterSpec(const Json& spec) {
  SpecReader r;
  PostgresClusterSpec out;
  if (!spec.is_object()) {
    return InvalidError("spec: must be an object with at least image and storage.size");
  }
  r.UnknownFields(spec, "spec",
                  {"replicas", "image", "postgresVersion", "resources", "storage", "postgresql",
                   "failoverDelay", "switchoverDelay", "maxLagOnFailover", "primaryUpdateMethod",
                   "enablePDB", "attachments", "bootstrap", "leaseDurationMilliseconds"});

  if (auto n = r.Integer(spec, "replicas", "spec.replicas")) {
    if (*n < 1 || *n > 64) {
      r.Problem("spec.replicas",
                "must be between 1 and 64 (the total number of instances, "
                "primary included); got " +
                    std::to_string(*n));
    } else {
      out.replicas = static_cast<int32_t>(*n);
    }
  }

  out.image = r.String(spec, "image", "spec.image");
  if (out.image.empty()) {
    r.Problem("spec.image",
              "is required; set the instance image, e.g. ghcr.io/petrel-dev/postgres:15.4",
              "FieldValueRequired");
  } else if (out.image.find_first_of(" \t\n") != std::string::npos) {
    r.Problem("spec.image", "must be an image reference without spaces");
  }
  if (auto v = r.Integer(spec, "postgresVersion", "spec.postgresVersion")) {
    if (*v < 13 || *v > 30) {
      r.Problem("spec.postgresVersion", "must be a supported major version (13 or later)");
    } else {
      out.postgres_version = static_cast<int>(*v);
    }
  }
  std::optional<int> from_tag = MajorVersionFromImage(out.image);
  if (out.postgres_version && from_tag && *out.postgres_version != *from_tag) {
    r.Problem("spec.postgresVersion", "is " + std::to_string(*out.postgres_version) +
                                          " but the image tag says " + std::to_string(*from_tag) +
                                          "; make them agree or remove spec.postgresVersion");
  }
  if (out.postgres_version) {
    out.postgres_major = *out.postgres_version;
  } else if (from_tag) {
    out.postgres_major = *from_tag;
  } else if (!out.image.empty()) {
    r.Problem("spec.postgresVersion",
              "cannot tell the Postgres major version from image \"" + out.image +
                  "\"; set spec.postgresVersion (e.g. 15) or use a tag like :15.4",
              "FieldValueRequired");
  }

  ParseResources(r, spec, &out.resources);
  ParseStorage(r, spec, &out.storage);
  ParsePostgresql(r, spec, out.replicas, &out.postgresql);

  auto seconds = [&](const char* key, int64_t fallback) {
    std::string path = std::string("spec.") + key;
    auto v = r.Integer(spec, key, path);
    if (!v) return fallback;
    if (*v < 0 || *v > 86400) {
      r.Problem(path, "must be between 0 and 86400 seconds");
      return fallback;
    }
    return *v;
  };
  out.failover_delay_seconds = seconds("failoverDelay", 0);
  out.switchover_delay_seconds = seconds("switchoverDelay", 60);

  if (spec.contains("maxLagOnFailover") && !spec["maxLagOnFailover"].is_null()) {
    const Json& v = spec["maxLagOnFailover"];
    std::string text = v.is_string() ? v.get<std::string>() : v.is_number_integer() ? v.dump() : "";
    auto bytes = ParseByteQuantity(text);
    if (!bytes.ok()) {
      r.Problem("spec.maxLagOnFailover", bytes.status().message());
    } else {
      out.max_lag_on_failover_bytes = *bytes;
    }
  }
  if (auto v = r.Integer(spec, "leaseDurationMilliseconds", "spec.leaseDurationMilliseconds")) {
    if (*v < kMinLeaseDurationMs || *v > kMaxLeaseDurationMs) {
      r.Problem("spec.leaseDurationMilliseconds",
                "must be between " + std::to_string(kMinLeaseDurationMs) + " and " +
                    std::to_string(kMaxLeaseDurationMs) + " milliseconds; remove it for the "
                    "default of " + std::to_string(kDefaultLeaseDurationMs));
    } else {
      out.lease_duration_ms = *v;
    }
  }
  out.primary_update_method = r.Enum(spec, "primaryUpdateMethod", "spec.primaryUpdateMethod",
                                     {"switchover", "restart"}) == "restart"
                                  ? PrimaryUpdateMethod::kRestart
                                  : PrimaryUpdateMethod::kSwitchover;
  out.enable_pdb = r.Bool(spec, "enablePDB", "spec.enablePDB", true);
  ParseAttachments(r, spec, &out.attachments);
  ParseBootstrap(r, spec, &out.initdb);
  if (out.initdb.owner.empty()) out.initdb.owner = out.initdb.database;

  if (!r.causes().empty()) {
    std::string message;
    for (const auto& c : r.causes()) {
      message += (message.empty() ? "" : "; ") + c.field + ": " + c.message;
    }
    Status s = InvalidError(message);
    s.WithCauses(r.causes());
    return s;
  }
  return out;
}

// ---- Status ------------------------------------------------------------------------------

namespace {
template <typename T>
T Get(const Json& j, const char* key, T fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const Json::exception&) {
    return fallback;
  }
}
}  // namespace

Json Condition::ToJson() const {
  return {{"type", type},
          {"status", status},
          {"reason", reason},
          {"message", message},
          {"observedGeneration", observed_generation},
          {"lastTransitionTime", last_transition_time}};
}

Condition Condition::FromJson(const Json& j) {
  Condition c;
  c.type = Get<std::string>(j, "type", "");
  c.status = Get<std::string>(j, "status", "");
  c.reason = Get<std::string>(j, "reason", "");
  c.message = Get<std::string>(j, "message", "");
  c.observed_generation = Get<int64_t>(j, "observedGeneration", 0);
  c.last_transition_time = Get<std::string>(j, "lastTransitionTime", "");
  return c;
}

const char* PrimaryChangeKindName(PrimaryChangeKind k) {
  return k == PrimaryChangeKind::kFailover ? "Failover" : "Switchover";
}

Json PrimaryChange::ToJson() const {
  Json j = {{"type", PrimaryChangeKindName(kind)}, {"from", from}, {"to", to}};
  if (!reason.empty()) j["reason"] = reason;
  if (!started_at.empty()) j["startedAt"] = started_at;
  if (!lsn.empty()) j["lsn"] = lsn;
  return j;
}

PrimaryChange PrimaryChange::FromJson(const Json& j) {
  PrimaryChange c;
  c.kind = Get<std::string>(j, "type", "") == "Failover" ? PrimaryChangeKind::kFailover
                                                         : PrimaryChangeKind::kSwitchover;
  c.from = Get<std::string>(j, "from", "");
  c.to = Get<std::string>(j, "to", "");
  c.reason = Get<std::string>(j, "reason", "");
  c.started_at = Get<std::string>(j, "startedAt", "");
  c.lsn = Get<std::string>(j, "lsn", "");
  return c;
}

Json FailoverRecord::ToJson() const {
  Json j = {{"from", from}, {"to", to}, {"time", time}, {"durationMilliseconds", duration_ms}};
  if (!lsn.empty()) j["lsn"] = lsn;
  if (!reason.empty()) j["reason"] = reason;
  return j;
}

FailoverRecord FailoverRecord::FromJson(const Json& j) {
  FailoverRecord r;
  r.from = Get<std::string>(j, "from", "");
  r.to = Get<std::string>(j, "to", "");
  r.lsn = Get<std::string>(j, "lsn", "");
  r.time = Get<std::string>(j, "time", "");
  r.reason = Get<std::string>(j, "reason", "");
  r.duration_ms = Get<int64_t>(j, "durationMilliseconds", 0);
  return r;
}

Json InstanceState::ToJson() const {
  Json j = {{"name", name}, {"ready", ready}};
  if (!role.empty()) j["role"] = role;
  if (!phase.empty()) j["phase"] = phase;
  if (!lsn.empty()) j["lsn"] = lsn;
  if (lag_bytes >= 0) j["lagBytes"] = lag_bytes;
  if (timeline > 0) j["timeline"] = timeline;
  if (!message.empty()) j["message"] = message;
  if (spec_generation > 0) j["specGeneration"] = spec_generation;
  if (!spec_hash.empty()) j["specHash"] = spec_hash;
  return j;
}

InstanceState InstanceState::FromJson(const Json& j) {
  InstanceState s;
  s.name = Get<std::string>(j, "name", "");
  s.role = Get<std::string>(j, "role", "");
  s.ready = Get<bool>(j, "ready", false);
  s.phase = Get<std::string>(j, "phase", "");
  s.lsn = Get<std::string>(j, "lsn", "");
  s.lag_bytes = Get<int64_t>(j, "lagBytes", -1);
  s.timeline = Get<int64_t>(j, "timeline", 0);
  s.message = Get<std::string>(j, "message", "");
  s.spec_generation = Get<int64_t>(j, "specGeneration", 0);
  s.spec_hash = Get<std::string>(j, "specHash", "");
  return s;
}

Json PostgresClusterStatus::ToJson() const {
  Json j = Json::object();
  j["observedGeneration"] = observed_generation;
  if (!phase.empty()) j["phase"] = phase;
  if (!phase_reason.empty()) j["phaseReason"] = phase_reason;
  j["conditions"] = Json::array();
  for (const auto& c : conditions) j["conditions"].push_back(c.ToJson());
  j["replicas"] = replicas;
  j["readyReplicas"] = ready_replicas;
  if (!selector.empty()) j["selector"] = selector;
  if (!current_primary.empty()) j["currentPrimary"] = current_primary;
  if (!target_primary.empty()) j["targetPrimary"] = target_primary;
  if (!image.empty()) j["image"] = image;
  if (postgres_major_version > 0) j["postgresMajorVersion"] = postgres_major_version;
  if (!system_id.empty()) j["systemID"] = system_id;
  j["instances"] = Json::array();
  for (const auto& i : instances) j["instances"].push_back(i.ToJson());
  j["instanceNames"] = instance_names;
  if (term > 0) j["term"] = term;
  if (primary_change) j["primaryChange"] = primary_change->ToJson();
  if (!primary_failing_since.empty()) j["primaryFailingSince"] = primary_failing_since;
  if (failovers > 0) j["failovers"] = failovers;
  if (last_failover) j["lastFailover"] = last_failover->ToJson();
  if (!synchronous_standbys.empty()) j["synchronousStandbys"] = synchronous_standbys;
  return j;
}

PostgresClusterStatus PostgresClusterStatus::FromJson(const Json& j) {
  PostgresClusterStatus s;
  s.observed_generation = Get<int64_t>(j, "observedGeneration", 0);
  s.phase = Get<std::string>(j, "phase", "");
  s.phase_reason = Get<std::string>(j, "phaseReason", "");
  if (j.is_object() && j.contains("conditions") && j["conditions"].is_array()) {
    for (const auto& c : j["conditions"]) s.conditions.push_back(Condition::FromJson(c));
  }
  s.replicas = Get<int32_t>(j, "replicas", 0);
  s.ready_replicas = Get<int32_t>(j, "readyReplicas", 0);
  s.selector = Get<std::string>(j, "selector", "");
  s.current_primary = Get<std::string>(j, "currentPrimary", "");
  s.target_primary = Get<std::string>(j, "targetPrimary", "");
  s.image = Get<std::string>(j, "image", "");
  s.postgres_major_version = Get<int>(j, "postgresMajorVersion", 0);
  s.system_id = Get<std::string>(j, "systemID", "");
  if (j.is_object() && j.contains("instances") && j["instances"].is_array()) {
    for (const auto& i : j["instances"]) s.instances.push_back(InstanceState::FromJson(i));
  }
  s.instance_names = Get<std::vector<std::string>>(j, "instanceNames", {});
  s.term = Get<int64_t>(j, "term", 0);
  if (j.is_object() && j.contains("primaryChange") && j["primaryChange"].is_object()) {
    s.primary_change = PrimaryChange::FromJson(j["primaryChange"]);
  }
  s.primary_failing_since = Get<std::string>(j, "primaryFailingSince", "");
  s.failovers = Get<int64_t>(j, "failovers", 0);
  if (j.is_object() && j.contains("lastFailover") && j["lastFailover"].is_object()) {
    s.last_failover = FailoverRecord::FromJson(j["lastFailover"]);
  }
  s.synchronous_standbys = Get<std::vector<std::string>>(j, "synchronousStandbys", {});
  return s;
}

const Condition* PostgresClusterStatus::FindCondition(const std::string& type) const {
  for (const auto& c : conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

const InstanceState* PostgresClusterStatus::FindInstance(const std::string& name) const {
  for (const auto& i : instances) {
    if (i.name == name) return &i;
  }
  return nullptr;
}

}  // namespace petrel
