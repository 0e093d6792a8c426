#include "api/attachment.h"

#include <algorithm>
#include <cctype>
#include <iterator>

namespace petrel {

namespace {

constexpr size_t kMaxIdentifierBytes = 63;  // NAMEDATALEN - 1

// Postgres' fully reserved key words (SQL Key Words appendix, "reserved" in the PostgreSQL
// column): legal only when quoted, so refused to keep names usable unquoted everywhere.
// clang-format off
constexpr std::string_view kReservedKeywords[] = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric",
    "authorization", "binary", "both", "case", "cast", "check", "collate", "collation",
    "column", "concurrently", "constraint", "create", "cross", "current_catalog",
    "current_date", "current_role", "current_schema", "current_time", "current_timestamp",
    "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except",
    "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant", "group", "having",
    "ilike", "in", "initially", "inner", "intersect", "into", "is", "isnull", "join",
    "lateral", "leading", "left", "like", "limit", "localtime", "localtimestamp", "natural",
    "not", "notnull", "null", "offset", "on", "only", "or", "order", "outer", "overlaps",
    "placing", "primary", "references", "returning", "right", "select", "session_user",
    "similar", "some", "symmetric", "system_user", "table", "tablesample", "then", "to", "trailing", "true", "union", "unique",
    "user", "using", "variadic", "verbose", "when", "where", "window", "with"};
// clang-format on

// Names Petrel or Postgres itself uses, or that role specifications treat specially.
constexpr std::string_view kReservedNames[] = {"postgres",          "template0", "template1",
                                               "streaming_replica", "public",    "none"};

bool IsKeyword(std::string_view s) {
  return std::find(std::begin(kReservedKeywords), std::end(kReservedKeywords), s) !=
         std::end(kReservedKeywords);
}

std::string SyntaxProblem(std::string_view ident) {
  if (ident.empty()) return "must not be empty";
  if (ident.size() > kMaxIdentifierBytes) {
    return "is " + std::to_string(ident.size()) + " bytes long; the limit is 63";
  }
  char first = ident.front();
  if (!((first >= 'a' && first <= 'z') || first == '_')) {
    return "must start with a lower-case letter or '_'";
  }
  for (char c : ident) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) {
      return "may contain only lower-case letters a-z, digits and '_' (no upper case, spaces, "
             "quotes, ';', '$', '-' or non-ASCII characters)";
    }
  }
  if (IsKeyword(ident)) {
    return "is an SQL reserved key word; choose another name";
  }
  return "";
}

// A value is shown in messages only when it is short and plain, so a hostile string never
// reaches a condition or an event verbatim.
std::string Shown(std::string_view v) {
  bool plain = v.size() <= 80 && std::all_of(v.begin(), v.end(), [](char c) {
                 return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
               });
  return plain ? " (got \"" + std::string(v) + "\")" : "";
}

struct Validator {
  std::vector<StatusCause> causes;
  void Add(const std::string& field, const std::string& message) {
    causes.push_back({field, "FieldValueInvalid", field + " " + message});
  }
};

const Json* Child(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// Reads an optional string field; records a cause when it has the wrong type.
std::string OptString(const Json& obj, const char* key, const std::string& path, Validator& v) {
  const Json* j = Child(obj, key);
  if (!j) return "";
  if (!j->is_string()) {
    v.Add(path, "must be a string");
    return "";
  }
  return j->get<std::string>();
}

}  // namespace

const char* PrivilegesName(AttachmentPrivileges p) {
  switch (p) {
    case AttachmentPrivileges::kOwner:
      return "owner";
    case AttachmentPrivileges::kReadWrite:
      return "readWrite";
    case AttachmentPrivileges::kReadOnly:
      return "readOnly";
  }
  return "owner";
}

const char* OwnedObjectsPolicyName(OwnedObjectsPolicy p) {
  return p == OwnedObjectsPolicy::kDrop ? "drop" : "reassign";
}

std::string DefaultIdentifierFor(const std::string& name) {
  std::string out = name;
  std::replace(out.begin(), out.end(), '-', '_');
  std::replace(out.begin(), out.end(), '.', '_');
  return out;
}

std::string IdentifierProblem(std::string_view ident) {
  std::string syntax = SyntaxProblem(ident);
  if (!syntax.empty()) return syntax;
  if (std::find(std::begin(kReservedNames), std::end(kReservedNames), ident) !=
      std::end(kReservedNames)) {
    return "is reserved for Postgres or Petrel itself; choose another name";
  }
  if (ident.rfind("pg_", 0) == 0) return "must not start with \"pg_\" (reserved by Postgres)";
  if (ident.rfind("petrel", 0) == 0) return "must not start with \"petrel\" (reserved by Petrel)";
  return "";
}

std::string ReassignTargetProblem(std::string_view ident) {
  if (ident == kPostgresSuperuser) return "";
  return IdentifierProblem(ident);
}

Result<AttachmentSpec> ParseAttachment(const Json& object) {
  Validator v;
  AttachmentSpec out;
  const std::string name = meta::Name(object);
  const std::string ns = meta::Namespace(object);
  if (name.empty()) v.Add("metadata.name", "must be set");

  const Json* spec = Child(object, "spec");
  static const Json kEmpty = Json::object();
  if (spec && !spec->is_object()) {
    v.Add("spec", "must be an object");
    spec = nullptr;
  }
  const Json& s = spec ? *spec : kEmpty;

  const Json* ref = Child(s, "clusterRef");
  if (!ref || !ref->is_object()) {
    v.Add("spec.clusterRef", "must name the PostgresCluster to attach to: {name: <cluster>}");
  } else {
    out.cluster.name = OptString(*ref, "name", "spec.clusterRef.name", v);
    out.cluster.namespace_ = OptString(*ref, "namespace", "spec.clusterRef.namespace", v);
    if (out.cluster.name.empty()) {
      v.Add("spec.clusterRef.name", "must name the PostgresCluster to attach to");
    }
    if (out.cluster.namespace_.empty()) out.cluster.namespace_ = ns;
  }

  std::string db = OptString(s, "databaseName", "spec.databaseName", v);
  std::string role = OptString(s, "roleName", "spec.roleName", v);
  const bool db_defaulted = db.empty();
  const bool role_defaulted = role.empty();
  if (db_defaulted) db = DefaultIdentifierFor(name);
  if (role_defaulted) role = DefaultIdentifierFor(name);
  // A defaulted name that breaks the rule points at metadata.name and says how to fix it.
  if (std::string p = IdentifierProblem(db); !p.empty()) {
    if (db_defaulted) {
      v.Add("spec.databaseName", "defaults to metadata.name with '-' replaced by '_', which " + p +
                                     Shown(db) + "; set spec.databaseName explicitly");
    } else {
      v.Add("spec.databaseName", p + Shown(db));
    }
  }
  if (std::string p = IdentifierProblem(role); !p.empty()) {
    if (role_defaulted) {
      v.Add("spec.roleName", "defaults to metadata.name with '-' replaced by '_', which " + p +
                                 Shown(role) + "; set spec.roleName explicitly");
    } else {
      v.Add("spec.roleName", p + Shown(role));
    }
  }
  out.database_name = db;
  out.role_name = role;

  std::string priv = OptString(s, "privileges", "spec.privileges", v);
  if (priv.empty() || priv == "owner") {
    out.privileges = AttachmentPrivileges::kOwner;
  } else if (priv == "readWrite") {
    out.privileges = AttachmentPrivileges::kReadWrite;
  } else if (priv == "readOnly") {
    out.privileges = AttachmentPrivileges::kReadOnly;
  } else {
    v.Add("spec.privileges", "must be one of owner, readWrite, readOnly" + Shown(priv));
  }

  if (const Json* lim = Child(s, "connectionLimit")) {
    if (!lim->is_number_integer() || lim->get<int64_t>() < -1 || lim->get<int64_t>() > 100000) {
      v.Add("spec.connectionLimit", "must be an integer from -1 (no limit) to 100000");
    } else {
      out.connection_limit = lim->get<int>();
    }
  }

  out.secret_name = OptString(s, "secretName", "spec.secretName", v);
  if (out.secret_name.empty()) out.secret_name = name + "-database";
  {
    const std::string& sn = out.secret_name;
    bool ok = !sn.empty() && sn.size() <= 253 &&
              std::all_of(sn.begin(), sn.end(),
                          [](char c) {
                            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                                   c == '.';
                          }) &&
              std::isalnum(static_cast<unsigned char>(sn.front())) &&
              std::isalnum(static_cast<unsigned char>(sn.back()));
    if (!ok) {
      v.Add("spec.secretName",
            "must be a DNS subdomain name: lower-case letters, digits, '-' and '.', starting and "
            "ending with a letter or digit, at most 253 characters" +
                Shown(sn));
    }
  }

  if (const Json* dp = Child(s, "detachPolicy")) {
    if (!dp->is_object()) {
      v.Add("spec.detachPolicy", "must be an object");
    } else {
      std::string owned = OptString(*dp, "ownedObjects", "spec.detachPolicy.ownedObjects", v);
      if (owned.empty() || owned == "reassign") {
        out.owned_objects = OwnedObjectsPolicy::kReassign;
      } else if (owned == "drop") {
        out.owned_objects = OwnedObjectsPolicy::kDrop;
      } else {
        v.Add("spec.detachPolicy.ownedObjects", "must be reassign or drop" + Shown(owned));
      }
      out.reassign_owned_to =
          OptString(*dp, "reassignOwnedTo", "spec.detachPolicy.reassignOwnedTo", v);
      if (!out.reassign_owned_to.empty()) {
        if (std::string p = ReassignTargetProblem(out.reassign_owned_to); !p.empty()) {
          v.Add("spec.detachPolicy.reassignOwnedTo", p + Shown(out.reassign_owned_to));
        } else if (out.reassign_owned_to == out.role_name) {
          v.Add("spec.detachPolicy.reassignOwnedTo",
                "must name a role other than the attachment's own role");
        }
      }
    }
  }

  out.rotate_password_request = meta::Annotation(object, kRotatePasswordAnnotation);

  if (!v.causes.empty()) {
    std::string msg = "PostgresAttachment " + ObjectKey{ns, name}.ToString() + " is invalid: ";
    for (size_t i = 0; i < v.causes.size(); ++i) {
      if (i) msg += "; ";
      msg += v.causes[i].message;
    }
    return InvalidError(msg).WithCauses(v.causes);
  }
  return out;
}

namespace {
constexpr std::string_view kMarkerPrefix = "Managed by Petrel for PostgresAttachment ";
}  // namespace

std::string RoleMarker(const ObjectKey& attachment) {
  return std::string(kMarkerPrefix) + attachment.namespace_ + "/" + attachment.name;
}

std::optional<ObjectKey> ParseRoleMarker(std::string_view comment) {
  if (comment.substr(0, kMarkerPrefix.size()) != kMarkerPrefix) return std::nullopt;
  std::string rest(comment.substr(kMarkerPrefix.size()));
  auto slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size()) return std::nullopt;
  if (rest.find('/', slash + 1) != std::string::npos) return std::nullopt;
  return ObjectKey{rest.substr(0, slash), rest.substr(slash + 1)};
}

}  // namespace petrel
