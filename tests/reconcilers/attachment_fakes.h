// In-memory twins of the reconciler's Kubernetes interfaces and PgAdmin for the attachment
// reconciler's tests: a KubeClient that stores objects (with resourceVersion checks), an
// ObjectReader over the same store, an EventRecorder that keeps events, and a PgAdmin that
// models roles and databases. Single-threaded test use only.
#pragma once

#include <map>
#include <set>

#include "controller/event_recorder.h"
#include "controller/kube_client.h"
#include "controller/object_reader.h"
#include "reconcilers/pg_admin.h"

namespace petrel::testing_attach {

class FakeKube : public KubeClient, public ObjectReader {
 public:
  using Key = std::pair<std::string, ObjectKey>;  // resource, key
  std::map<Key, Json> objects;
  int writes = 0;
  int64_t next_rv = 1;

  void Put(const ResourceType& t, Json obj) {
    if (!obj["metadata"].contains("uid")) obj["metadata"]["uid"] = "uid-" + meta::Name(obj);
    if (!obj["metadata"].contains("creationTimestamp")) {
      obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z";
    }
    obj["metadata"]["resourceVersion"] = std::to_string(next_rv++);
    objects[{t.resource, meta::Key(obj)}] = obj;
  }
  const Json* Find(const ResourceType& t, const ObjectKey& k) const {
    auto it = objects.find({t.resource, k});
    return it == objects.end() ? nullptr : &it->second;
  }

  // ObjectReader
  ObjectPtr Get(const ResourceType& t, const ObjectKey& k) const override {
    const Json* j = Find(t, k);
    return j ? std::make_shared<const Json>(*j) : nullptr;
  }
  std::vector<ObjectPtr> List(const ResourceType& t, const std::string& ns,
                              const LabelSelector&) const override {
    std::vector<ObjectPtr> out;
    for (const auto& [k, v] : objects) {
      if (k.first == t.resource && (ns.empty() || k.second.namespace_ == ns)) {
        out.push_back(std::make_shared<const Json>(v));
      }
    }
    return out;
  }

  // KubeClient
  Result<Json> Get(const ResourceType& t, const ObjectKey& k) override {
    const Json* j = Find(t, k);
    if (!j) return NotFoundError(t.resource + " " + k.ToString() + " not found");
    return *j;
  }
  Result<ObjectList> List(const ResourceType& t, const std::string& ns,
                          const ListOptions&) override {
    ObjectList out;
    for (const auto& p : static_cast<const ObjectReader*>(this)->List(t, ns, {})) {
      out.items.push_back(*p);
    }
    return out;
  }
  Result<Json> Create(const ResourceType& t, const Json& obj) override {
    if (Find(t, meta::Key(obj))) return AlreadyExistsError("exists");
    ++writes;
    Put(t, obj);
    return *Find(t, meta::Key(obj));
  }
  Result<Json> Update(const ResourceType& t, const Json& obj, Subresource sub) override {
    const Json* cur = Find(t, meta::Key(obj));
    if (!cur) return NotFoundError("not found");
    if (meta::ResourceVersion(*cur) != meta::ResourceVersion(obj)) return ConflictError("stale");
    ++writes;
    Json next = *cur;
    if (sub == Subresource::kStatus) {
      next["status"] = obj.value("status", Json::object());
    } else {
      Json status = cur->value("status", Json());
      next = obj;
      if (!status.is_null()) next["status"] = status;
    }
    // A deleted object whose last finalizer went away disappears.
    if (meta::IsBeingDeleted(next) && next["metadata"].value("finalizers", Json::array()).empty()) {
      objects.erase({t.resource, meta::Key(obj)});
      return next;
    }
    Put(t, next);
    return *Find(t, meta::Key(obj));
  }
  Status Delete(const ResourceType& t, const ObjectKey& k, const DeleteOptions&) override {
    if (!Find(t, k)) return NotFoundError("not found");
    ++writes;
    objects.erase({t.resource, k});
    return Status::Ok();
  }
  Result<Json> Patch(const ResourceType&, const ObjectKey&, PatchType, const Json&,
                     const PatchOptions&) override {
    return InternalError("not used");
  }
  Result<Json> CreateSubresource(const ResourceType&, const ObjectKey&, const std::string&,
                                 const Json&) override {
    return InternalError("not used");
  }
  Result<std::unique_ptr<WatchStream>> Watch(const ResourceType&, const std::string&,
                                             const WatchOptions&) override {
    return InternalError("not used");
  }

  // Marks an object deleted (as the API server does when finalizers remain).
  void MarkDeleted(const ResourceType& t, const ObjectKey& k) {
    Json obj = *Find(t, k);
    obj["metadata"]["deletionTimestamp"] = "2026-01-02T00:00:00Z";
    Put(t, obj);
  }
};

struct RecordedEvent {
  EventType type;
  std::string reason, note;
};
class FakeEvents : public EventRecorder {
 public:
  std::vector<RecordedEvent> events;
  void Record(const Json&, EventType type, const std::string& reason, const std::string&,
              const std::string& note) override {
    events.push_back({type, reason, note});
  }
  bool Has(const std::string& reason) const {
    for (const auto& e : events) {
      if (e.reason == reason) return true;
    }
    return false;
  }
};

// A model of the Postgres side, shared by every FakePgAdmin the factory hands out.
struct FakePostgres {
  struct Role {
    std::string password;
    int connection_limit = -1;
    std::string marker;
    bool attributes_ok = true;
    bool login = true;
  };
  struct Database {
    std::string owner;
    bool public_connect = true;
    std::set<std::string> granted;
  };
  std::map<std::string, Role> roles;
  std::map<std::string, Database> databases;
  std::vector<std::string> writes;  // "CreateRole app", ...
  bool reachable = true;
  std::optional<PgTarget> last_target;
};

class FakePgAdmin : public PgAdmin {
 public:
  explicit FakePgAdmin(FakePostgres& pg) : pg_(pg) {}
  Result<RoleObservation> ObserveRole(const std::string& role, int limit,
                                      const std::string& password) override {
    RoleObservation o;
    auto it = pg_.roles.find(role);
    if (it == pg_.roles.end()) return o;
    o.exists = true;
    o.managed_by = ParseRoleMarker(it->second.marker);
    o.attributes_match =
        it->second.attributes_ok && it->second.login && it->second.connection_limit == limit;
    o.can_login = it->second.login;
    o.password_matches = !password.empty() && password == it->second.password;
    return o;
  }
  Result<DatabaseObservation> ObserveDatabase(const std::string& db, const std::string& role,
                                              AttachmentPrivileges p) override {
    DatabaseObservation o;
    auto it = pg_.databases.find(db);
    if (it == pg_.databases.end()) return o;
    o.exists = true;
    o.owner = it->second.owner;
    o.public_can_connect = it->second.public_connect;
    o.access_complete = p == AttachmentPrivileges::kOwner || it->second.granted.count(role) > 0;
    return o;
  }
  Status CreateRole(const std::string& role, const std::string& password, int limit,
                    const std::string& marker) override {
    pg_.writes.push_back("CreateRole " + role);
    pg_.roles[role] = {password, limit, marker, true};
    return Status::Ok();
  }
  Status ResetRoleAttributes(const std::string& role, int limit) override {
    pg_.writes.push_back("ResetRoleAttributes " + role);
    pg_.roles[role].attributes_ok = true;
    pg_.roles[role].login = true;
    pg_.roles[role].connection_limit = limit;
    return Status::Ok();
  }
  Status SetPassword(const std::string& role, const std::string& password) override {
    pg_.writes.push_back("SetPassword " + role);
    pg_.roles[role].password = password;
    return Status::Ok();
  }
  Status CreateDatabase(const std::string& db, const std::string& owner) override {
    pg_.writes.push_back("CreateDatabase " + db);
    pg_.databases[db] = {owner, true, {}};
    return Status::Ok();
  }
  Status RevokePublicConnect(const std::string& db) override {
    pg_.writes.push_back("RevokePublicConnect " + db);
    pg_.databases[db].public_connect = false;
    return Status::Ok();
  }
  Status GrantAccess(const std::string& db, const std::string& role, const std::string&,
                     AttachmentPrivileges) override {
    pg_.writes.push_back("GrantAccess " + role);
    pg_.databases[db].granted.insert(role);
    return Status::Ok();
  }
  Status RevokeLogin(const std::string& role) override {
    pg_.writes.push_back("RevokeLogin " + role);
    if (auto it = pg_.roles.find(role); it != pg_.roles.end()) it->second.login = false;
    return Status::Ok();
  }
  Status DetachRole(const std::string& role, OwnedObjectsPolicy, const std::string&) override {
    pg_.writes.push_back("DetachRole " + role);
    pg_.roles.erase(role);
    for (auto& [name, db] : pg_.databases) {
      if (db.owner == role) db.owner = "postgres";
      db.granted.erase(role);
    }
    return Status::Ok();
  }

 private:
  FakePostgres& pg_;
};

inline PgAdminFactory FakePgAdminFactory(FakePostgres& pg) {
  return [&pg](const PgTarget& target) -> Result<std::unique_ptr<PgAdmin>> {
    pg.last_target = target;
    if (!pg.reachable) return UnavailableError("connecting to postgres: connection refused");
    return std::unique_ptr<PgAdmin>(new FakePgAdmin(pg));
  };
}

}  // namespace petrel::testing_attach
