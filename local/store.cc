#include "local/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <random>

#include <spdlog/spdlog.h>

#include "core/base64.h"
#include "local/files.h"

namespace petrel {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Served types and small helpers

const std::vector<const ResourceType*>& LocalStoreServedTypes() {
  static const std::vector<const ResourceType*> served = {
      &resources::kPod,        &resources::kPersistentVolumeClaim,
      &resources::kService,    &resources::kEndpoints,
      &resources::kSecret,     &resources::kConfigMap,
      &resources::kNamespace,  &resources::kEvent,
      &resources::kLease,      &resources::kPodDisruptionBudget,
      &resources::kCustomResourceDefinition,
      &resources::kPostgresCluster, &resources::kPostgresAttachment,
      &resources::kVolumeSnapshot};
  return served;
}

const ResourceType* LocalStoreServedType(const ResourceType& type) {
  for (const ResourceType* t : LocalStoreServedTypes()) {
    if (t->group == type.group && t->version == type.version && t->resource == type.resource) {
      return t;
    }
  }
  return nullptr;
}

namespace {

const ResourceType* ServedByGroupResource(const std::string& group_resource) {
  for (const ResourceType* t : LocalStoreServedTypes()) {
    if (t->GroupResource() == group_resource) return t;
  }
  return nullptr;
}

Status Unserved(const ResourceType& type) {
  return InvalidError(
      "the local store does not serve \"" + type.GroupResource() + "\" (" + type.ApiVersion() +
      ", kind " + type.kind +
      "); petrel local serves PostgresCluster and PostgresAttachment (petrel.dev/v1alpha1) and "
      "the core kinds Petrel uses (Pod, PersistentVolumeClaim, Service, Endpoints, Secret, "
      "ConfigMap, Namespace, Event, Lease, PodDisruptionBudget, VolumeSnapshot, "
      "CustomResourceDefinition)");
}

bool HasStatusSubresource(const ResourceType& type) {
  return !(type == resources::kSecret || type == resources::kConfigMap ||
           type == resources::kEndpoints || type == resources::kEvent ||
           type == resources::kLease);
}

std::string Describe(const ResourceType& type, const ObjectKey& key) {
  return type.GroupResource() + " \"" + key.name + "\"" +
         (key.namespace_.empty() ? "" : " in namespace \"" + key.namespace_ + "\"");
}

Status ConflictOn(const ResourceType& type, const ObjectKey& key) {
  return ConflictError("Operation cannot be fulfilled on " + Describe(type, key) +
                       ": the object has been modified; please apply your changes to the "
                       "latest version and try again");
}

std::string NewUid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  uint64_t hi, lo;
  {
    std::lock_guard lock(mu);
    hi = rng();
    lo = rng();
  }
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // RFC 4122 variant
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(hi >> 32), static_cast<unsigned>((hi >> 16) & 0xffff),
                static_cast<unsigned>(hi & 0xffff), static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

std::string RandomSuffix() {
  static std::mutex mu;
  static std::mt19937 rng{std::random_device{}()};
  static constexpr char kChars[] = "bcdfghjklmnpqrstvwxz2456789";
  std::lock_guard lock(mu);
  std::string out;
  for (int i = 0; i < 5; ++i) out += kChars[rng() % (sizeof(kChars) - 1)];
  return out;
}

// DNS-1123 subdomain: what Kubernetes requires of most object names. Also keeps names safe
// to use as path components (no '/', no "..").
bool IsDnsSubdomain(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(s.front()) || !alnum(s.back())) return false;
  for (char c : s) {
    if (!alnum(c) && c != '-' && c != '.') return false;
  }
  return s.find("..") == std::string::npos;
}

bool IsDnsLabel(const std::string& s) {
  return s.size() <= 63 && IsDnsSubdomain(s) && s.find('.') == std::string::npos;
}

// Secret and ConfigMap keys: [-._a-zA-Z0-9]+, not "." or "..".
bool IsConfigKey(const std::string& s) {
  if (s.empty() || s.size() > 253 || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

// The object without metadata and status: what generation tracks.
Json Body(const Json& object) {
  Json body = object;
  body.erase("metadata");
  body.erase("status");
  body.erase("apiVersion");
  body.erase("kind");
  return body;
}

std::string StringAt(const Json& object, const std::string& dotted_path) {
  const Json* cur = &object;
  size_t start = 0;
  while (start <= dotted_path.size()) {
    size_t dot = dotted_path.find('.', start);
    std::string part = dotted_path.substr(start, dot == std::string::npos ? dot : dot - start);
    if (!cur->is_object()) return "";
    auto it = cur->find(part);
    if (it == cur->end()) return "";
    cur = &*it;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur->is_string() ? cur->get<std::string>() : "";
}

// Which objects a List or Watch sees: namespace, labels, fields.
class Matcher {
 public:
  static Result<Matcher> Make(const std::string& namespace_, const std::string& labels,
                              const std::string& fields) {
    Matcher m;
    m.namespace_ = namespace_;
    if (!labels.empty() && !LabelSelector::Parse(labels, &m.labels_)) {
      return InvalidError("label selector \"" + labels +
                          "\" is malformed; write it like app=x,tier!=db,env in (a,b)");
    }
    size_t start = 0;
    while (start < fields.size()) {
      size_t comma = fields.find(',', start);
      std::string term = fields.substr(start, comma == std::string::npos ? comma : comma - start);
      start = comma == std::string::npos ? fields.size() : comma + 1;
      if (term.empty()) continue;
      FieldTerm t;
      size_t op = term.find("!=");
      size_t len = 2;
      if (op != std::string::npos) {
        t.negate = true;
      } else if ((op = term.find("==")) == std::string::npos) {
        op = term.find('=');
        len = 1;
      }
      if (op == std::string::npos) {
        return InvalidError("field selector term \"" + term + "\" has no =, == or !=");
      }
      t.field = term.substr(0, op);
      t.value = term.substr(op + len);
      static const std::array<const char*, 4> kFields = {"metadata.name", "metadata.namespace",
                                                         "spec.nodeName", "status.phase"};
      if (std::find(kFields.begin(), kFields.end(), t.field) == kFields.end()) {
        return InvalidError("field selector on \"" + t.field +
                            "\" is not supported; the local store supports metadata.name, "
                            "metadata.namespace, spec.nodeName and status.phase");
      }
      m.fields_.push_back(std::move(t));
    }
    return m;
  }

  bool Matches(const Json& object) const {
    if (object.is_null()) return false;
    if (!namespace_.empty() && meta::Namespace(object) != namespace_) return false;
    if (!labels_.Empty() && !labels_.Matches(meta::Labels(object))) return false;
    for (const FieldTerm& t : fields_) {
      if ((StringAt(object, t.field) == t.value) == t.negate) return false;
    }
    return true;
  }

 private:
  struct FieldTerm {
    std::string field, value;
    bool negate = false;
  };
  std::string namespace_;
  LabelSelector labels_;
  std::vector<FieldTerm> fields_;
};

const char* kStoreFile = "store.json";
const char* kLockFile = "petrel-local.lock";

}  // namespace

// ---------------------------------------------------------------------------------------------
// Watches

struct LocalStore::WatchState {
  std::string resource;
  Matcher matcher;
  std::optional<SteadyTime> deadline;  // stream end (timeout_seconds)

  std::mutex mu;
  std::condition_variable cv;
  std::deque<WatchEvent> queue;  // guarded by mu
  bool cancelled = false;        // guarded by mu
  bool closed = false;           // guarded by mu; the store went away

  explicit WatchState(Matcher m) : matcher(std::move(m)) {}

  // The event this watcher sees for a change, if any (selector entry/exit included).
  static std::optional<WatchEvent> EventFor(const Matcher& matcher, const Json& old_object,
                                            const Json& new_object, int64_t rv) {
    bool was = matcher.Matches(old_object);
    bool is = matcher.Matches(new_object);
    if (!was && is) return WatchEvent{WatchEventType::kAdded, new_object};
    if (was && is) return WatchEvent{WatchEventType::kModified, new_object};
    if (was && !is) {
      // Leaving the selector, or deleted: the last state the watcher could see, stamped with
      // the change's resourceVersion (as kube-apiserver does).
      Json last = new_object.is_null() ? old_object : new_object;
      last["metadata"]["resourceVersion"] = std::to_string(rv);
      return WatchEvent{WatchEventType::kDeleted, std::move(last)};
    }
    return std::nullopt;
  }

  void Push(WatchEvent event) {
    {
      std::lock_guard lock(mu);
      queue.push_back(std::move(event));
    }
    cv.notify_all();
  }
  void Close() {
    {
      std::lock_guard lock(mu);
      closed = true;
    }
    cv.notify_all();
  }
};

namespace {

class LocalWatchStream : public WatchStream {
 public:
  LocalWatchStream(std::shared_ptr<LocalStore::WatchState> state, Clock* clock)
      : state_(std::move(state)), clock_(clock) {}
  ~LocalWatchStream() override { Cancel(); }

  Status Next(WatchEvent* event, std::chrono::milliseconds timeout) override {
    auto& s = *state_;
    std::unique_lock lock(s.mu);
    auto until = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (s.cancelled) return CancelledError("watch cancelled");
      if (!s.queue.empty()) {
        *event = std::move(s.queue.front());
        s.queue.pop_front();
        return Status::Ok();
      }
      if (s.closed) return UnavailableError("the local store was closed; reconnect");
      if (s.deadline && clock_->Now() >= *s.deadline) {
        return UnavailableError("watch reached its timeout; reconnect");
      }
      auto wake = until;
      if (s.deadline) {
        // The store's clock may be fake; poll it at least every 100 ms.
        wake = std::min(wake, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
      }
      if (s.cv.wait_until(lock, wake) == std::cv_status::timeout &&
          std::chrono::steady_clock::now() >= until) {
        if (!s.queue.empty() || s.cancelled || s.closed) continue;
        return TimeoutError("no watch event yet");
      }
    }
  }

  void Cancel() override {
    {
      std::lock_guard lock(state_->mu);
      state_->cancelled = true;
    }
    state_->cv.notify_all();
  }

 private:
  std::shared_ptr<LocalStore::WatchState> state_;
  Clock* clock_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// StateDirLock

Result<std::unique_ptr<StateDirLock>> StateDirLock::Acquire(const fs::path& dir) {
  // Others may traverse but not list: instances drop privileges to `postgres` and must reach
  // their data directory under <state>/volumes. Private files (store.json, secrets/) are 0600
  // and 0700 themselves.
  PETREL_RETURN_IF_ERROR(MakeDirectory(
      dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec));
  fs::path path = dir / kLockFile;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return InternalError("cannot open lock file " + path.string() + ": " + std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return InternalError("cannot lock " + path.string() + ": " + std::strerror(err));
    }
    int pid = HolderPid(dir);
    return UnavailableError(
        "state directory " + dir.string() + " is in use by another petrel local" +
        (pid > 0 ? " (pid " + std::to_string(pid) + ")" : std::string()) +
        "; stop it with `petrel local down --state-dir " + dir.string() +
        "` or choose another --state-dir");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    ::close(fd);
    return InternalError("cannot write lock file " + path.string() + ": " + std::strerror(errno));
  }
  return std::unique_ptr<StateDirLock>(new StateDirLock(fd));
}

int StateDirLock::HolderPid(const fs::path& dir) {
  fs::path path = dir / kLockFile;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  int pid = 0;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {  // held exclusively: read who holds it
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    if (n > 0) pid = std::atoi(buf);
    if (pid <= 0) pid = -1;  // locked, but the holder has not written its PID yet
  }
  ::close(fd);
  return pid;
}

StateDirLock::~StateDirLock() { ::close(fd_); }

// ---------------------------------------------------------------------------------------------
// LocalStore

Result<std::unique_ptr<LocalStore>> LocalStore::Open(LocalStoreOptions options) {
  PETREL_ASSIGN_OR_RETURN(AddressBlock block, AddressBlock::Parse(options.service_block));
  std::unique_ptr<StateDirLock> lock;
  if (!options.state_dir.empty()) {
    PETREL_ASSIGN_OR_RETURN(lock, StateDirLock::Acquire(options.state_dir));
  }
  std::unique_ptr<LocalStore> store(new LocalStore(std::move(options), std::move(lock)));
  store->service_ips_ = std::make_unique<AddressAllocator>(block);
  if (!store->options_.state_dir.empty()) {
    std::lock_guard lock_guard(store->mu_);
    PETREL_RETURN_IF_ERROR(store->Load());
  }
  return store;
}

LocalStore::LocalStore(LocalStoreOptions options, std::unique_ptr<StateDirLock> lock)
    : options_(std::move(options)), lock_(std::move(lock)) {}

LocalStore::~LocalStore() {
  std::lock_guard lock(mu_);
  for (auto& weak : watches_) {
    if (auto w = weak.lock()) w->Close();
  }
}

int64_t LocalStore::CurrentResourceVersion() {
  std::lock_guard lock(mu_);
  return rv_;
}

Status LocalStore::Load() {
  fs::path path = options_.state_dir / kStoreFile;
  auto text = ReadFile(path);
  if (!text.ok()) {
    if (text.status().code() == Code::kNotFound) return Status::Ok();
    return text.status();
  }
  Json doc;
  try {
    doc = Json::parse(*text);
  } catch (const Json::exception& e) {
    return InternalError(path.string() + " is not valid JSON (" + e.what() +
                         "); move it away to start with an empty store");
  }
  rv_ = doc.value("resourceVersion", int64_t{0});
  compacted_rv_ = rv_;
  for (const Json& object : doc.value("objects", Json::array())) {
    const ResourceType* type =
        resources::FindByKind(object.value("apiVersion", ""), object.value("kind", ""));
    if (type == nullptr || LocalStoreServedType(*type) == nullptr) {
      spdlog::warn("local store: skipping stored object of unknown kind {} {}",
                   object.value("apiVersion", ""), object.value("kind", ""));
      continue;
    }
    Table(*type)[meta::Key(object)] = object;
    if (*type == resources::kService) {
      std::string ip = StringAt(object, "spec.clusterIP");
      if (!ip.empty() && ip != "None") service_ips_->Reserve(ip);
    }
    if (*type == resources::kSecret) WriteSecretFiles(nullptr, &object);
  }
  return Status::Ok();
}

Status LocalStore::Persist() {
  if (options_.state_dir.empty()) return Status::Ok();
  Json objects = Json::array();
  for (const auto& [resource, table] : tables_) {
    if (resource == resources::kEvent.GroupResource()) continue;  // memory only
    for (const auto& [key, object] : table) objects.push_back(object);
  }
  Json doc = {{"resourceVersion", rv_}, {"objects", std::move(objects)}};
  Status status = WriteFileAtomically(options_.state_dir / kStoreFile, doc.dump(),
                                      fs::perms::owner_read | fs::perms::owner_write);
  if (!status.ok()) {
    // The change stands in memory; the next change writes the whole store again.
    spdlog::error("local store: could not save {}: {}", (options_.state_dir / kStoreFile).string(),
                  status.message());
  }
  return status;
}

void LocalStore::WriteSecretFiles(const Json* old_secret, const Json* new_secret) {
  if (options_.state_dir.empty()) return;
  const Json* any = new_secret != nullptr ? new_secret : old_secret;
  fs::path root = options_.state_dir / "secrets";
  fs::path dir = root / meta::Namespace(*any) / meta::Name(*any);
  std::error_code ec;
  if (new_secret == nullptr) {
    fs::remove_all(dir, ec);
    return;
  }
  const fs::perms kDirMode = fs::perms::owner_all;
  Status made = MakeDirectory(root, kDirMode);
  if (made.ok()) made = MakeDirectory(dir.parent_path(), kDirMode);
  if (made.ok()) made = MakeDirectory(dir, kDirMode);
  if (!made.ok()) {
    spdlog::error("local store: secret files: {}", made.message());
    return;
  }
  Json data = new_secret->value("data", Json::object());
  for (auto& [key, value] : data.items()) {
    std::optional<std::string> bytes;
    if (!value.is_string() || !(bytes = Base64Decode(value.get<std::string>()))) continue;
    Status written =
        WriteFileAtomically(dir / key, *bytes, fs::perms::owner_read | fs::perms::owner_write);
    if (!written.ok()) spdlog::error("local store: secret files: {}", written.message());
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!data.contains(entry.path().filename().string())) fs::remove(entry.path(), ec);
  }
}

void LocalStore::Record(const ResourceType& type, Json old_object, Json new_object) {
  const std::string resource = type.GroupResource();
  for (auto it = watches_.begin(); it != watches_.end();) {
    auto w = it->lock();
    if (!w) {
      it = watches_.erase(it);
      continue;
    }
    ++it;
    if (w->resource != resource) continue;
    if (auto e = WatchState::EventFor(w->matcher, old_object, new_object, rv_)) {
      w->Push(std::move(*e));
    }
  }
  history_.push_back(Change{rv_, resource, std::move(old_object), std::move(new_object)});
  while (history_.size() > options_.history_size) {
    compacted_rv_ = history_.front().rv;
    history_.pop_front();
  }
}

Status LocalStore::PrepareSecretLocked(Json* secret) {
  Json& data = (*secret)["data"];
  if (data.is_null()) data = Json::object();
  if (!data.is_object()) return InvalidError("Secret data must be a map of base64 strings");
  for (auto& [key, value] : data.items()) {
    if (!IsConfigKey(key)) {
      return InvalidError("Secret key \"" + key +
                          "\" is invalid: keys may contain only letters, digits, '-', '_' and "
                          "'.'");
    }
    if (!value.is_string() || !Base64Decode(value.get<std::string>())) {
      // The value itself is never echoed: it is secret.
      return InvalidError("Secret data[" + key + "] is not base64; put plain text in stringData");
    }
  }
  if (secret->contains("stringData")) {
    const Json& string_data = (*secret)["stringData"];
    if (!string_data.is_object()) return InvalidError("Secret stringData must be a map of strings");
    for (auto& [key, value] : string_data.items()) {
      if (!IsConfigKey(key)) {
        return InvalidError("Secret key \"" + key +
                            "\" is invalid: keys may contain only letters, digits, '-', '_' and "
                            "'.'");
      }
      if (!value.is_string()) return InvalidError("Secret stringData[" + key + "] is not a string");
      data[key] = Base64Encode(value.get<std::string>());
    }
    secret->erase("stringData");
  }
  if (data.empty()) secret->erase("data");
  return Status::Ok();
}

Status LocalStore::AllocateClusterIpLocked(const Json* old_service, Json* service) {
  Json& spec = (*service)["spec"];
  if (!spec.is_object()) spec = Json::object();
  std::string wanted = spec.value("clusterIP", "");
  if (old_service != nullptr) {
    std::string old_ip = StringAt(*old_service, "spec.clusterIP");
    if (wanted.empty()) {
      if (!old_ip.empty()) spec["clusterIP"] = old_ip;
      return Status::Ok();
    }
    if (wanted != old_ip) {
      return InvalidError("spec.clusterIP is immutable (" + old_ip + "); delete and recreate the "
                          "Service to change it");
    }
    return Status::Ok();
  }
  if (wanted == "None") return Status::Ok();
  if (!wanted.empty()) {
    if (!service_ips_->Reserve(wanted)) {
      return InvalidError("spec.clusterIP " + wanted + " is taken or outside the local service "
                          "block " + service_ips_->block().ToString() +
                          "; leave it empty to get one allocated");
    }
    return Status::Ok();
  }
  PETREL_ASSIGN_OR_RETURN(std::string ip, service_ips_->Allocate());
  spec["clusterIP"] = ip;
  spec["clusterIPs"] = Json::array({ip});
  return Status::Ok();
}

void LocalStore::TrimEventsLocked() {
  Objects& events = Table(resources::kEvent);
  while (events.size() > kMaxEvents) {
    // The least recently written one goes first.
    auto oldest = events.begin();
    int64_t oldest_rv = INT64_MAX;
    for (auto it = events.begin(); it != events.end(); ++it) {
      int64_t rv = std::stoll(meta::ResourceVersion(it->second));
      if (rv < oldest_rv) {
        oldest_rv = rv;
        oldest = it;
      }
    }
    ObjectKey key = oldest->first;
    RemoveLocked(resources::kEvent, key, PropagationPolicy::kBackground);
  }
}

Result<Json> LocalStore::CreateLocked(const ResourceType& type, Json object) {
  if (!object.is_object()) return InvalidError("the object to create must be a JSON object");
  std::string api_version = object.value("apiVersion", type.ApiVersion());
  std::string kind = object.value("kind", type.kind);
  if (api_version != type.ApiVersion() || kind != type.kind) {
    return InvalidError("object is " + api_version + " " + kind + " but was sent to " +
                        type.GroupResource() + " (" + type.ApiVersion() + " " + type.kind + ")");
  }
  object["apiVersion"] = type.ApiVersion();
  object["kind"] = type.kind;
  Json& metadata = object["metadata"];
  if (!metadata.is_object()) metadata = Json::object();
  if (metadata.contains("resourceVersion") && !metadata["resourceVersion"].is_null() &&
      metadata["resourceVersion"] != "") {
    return InvalidError("metadata.resourceVersion must not be set on create");
  }
  std::string name = metadata.value("name", "");
  if (name.empty()) {
    std::string prefix = metadata.value("generateName", "");
    if (prefix.empty()) {
      return InvalidError(type.kind + ": metadata.name or metadata.generateName is required");
    }
    name = prefix + RandomSuffix();
    metadata["name"] = name;
  }
  if (!IsDnsSubdomain(name)) {
    return InvalidError(type.kind + " name \"" + name +
                        "\" is invalid: use lower-case letters, digits, '-' and '.', starting "
                        "and ending with a letter or digit, at most 253 characters");
  }
  if (type.namespaced) {
    std::string ns = metadata.value("namespace", "");
    if (ns.empty()) ns = "default";
    if (!IsDnsLabel(ns)) {
      return InvalidError("namespace \"" + ns +
                          "\" is invalid: use lower-case letters, digits and '-', at most 63");
    }
    metadata["namespace"] = ns;
  } else {
    metadata.erase("namespace");
  }
  ObjectKey key = meta::Key(object);
  Objects& table = Table(type);
  if (table.count(key) != 0) {
    return AlreadyExistsError(Describe(type, key) + " already exists");
  }
  if (type == resources::kSecret) PETREL_RETURN_IF_ERROR(PrepareSecretLocked(&object));
  if (type == resources::kService) PETREL_RETURN_IF_ERROR(AllocateClusterIpLocked(nullptr, &object));
  if (HasStatusSubresource(type)) object.erase("status");

  metadata["uid"] = NewUid();
  metadata["creationTimestamp"] = FormatRfc3339(options_.clock->WallNow());
  metadata["generation"] = 1;
  metadata.erase("deletionTimestamp");
  metadata.erase("deletionGracePeriodSeconds");
  metadata["resourceVersion"] = std::to_string(++rv_);
  table[key] = object;
  Record(type, nullptr, object);
  if (type == resources::kEvent) TrimEventsLocked();
  (void)Persist();
  if (type == resources::kSecret) WriteSecretFiles(nullptr, &object);
  return object;
}

Result<Json> LocalStore::UpdateLocked(const ResourceType& type, Json object, Subresource sub) {
  if (!object.is_object()) return InvalidError("the object to update must be a JSON object");
  ObjectKey key = meta::Key(object);
  if (type.namespaced && key.namespace_.empty()) key.namespace_ = "default";
  Objects& table = Table(type);
  auto it = table.find(key);
  if (it == table.end()) return NotFoundError(Describe(type, key) + " not found");
  const Json old = it->second;
  std::string rv = meta::ResourceVersion(object);
  if (!rv.empty() && rv != meta::ResourceVersion(old)) return ConflictOn(type, key);

  Json updated;
  if (sub == Subresource::kStatus) {
    if (!HasStatusSubresource(type)) {
      return InvalidError(type.GroupResource() + " has no status subresource");
    }
    updated = old;
    if (object.contains("status")) {
      updated["status"] = object["status"];
    } else {
      updated.erase("status");
    }
  } else {
    updated = object;
    updated["apiVersion"] = type.ApiVersion();
    updated["kind"] = type.kind;
    Json& metadata = updated["metadata"];
    const Json& old_metadata = old["metadata"];
    // System-owned metadata cannot be changed by an update.
    for (const char* field : {"uid", "creationTimestamp", "generation", "deletionTimestamp",
                              "deletionGracePeriodSeconds", "namespace", "name"}) {
      if (old_metadata.contains(field)) {
        metadata[field] = old_metadata[field];
      } else {
        metadata.erase(field);
      }
    }
    if (HasStatusSubresource(type)) {
      if (old.contains("status")) {
        updated["status"] = old["status"];
      } else {
        updated.erase("status");
      }
    }
    if (type == resources::kSecret) PETREL_RETURN_IF_ERROR(PrepareSecretLocked(&updated));
    if (type == resources::kService) {
      PETREL_RETURN_IF_ERROR(AllocateClusterIpLocked(&old, &updated));
    }
    if (meta::IsBeingDeleted(old)) {
      // Once deletion started no new finalizer may be added.
      for (const Json& f : metadata.value("finalizers", Json::array())) {
        if (f.is_string() && !meta::HasFinalizer(old, f.get<std::string>())) {
          return ForbiddenError("cannot add finalizer \"" + f.get<std::string>() + "\" to " +
                                Describe(type, key) + ": it is being deleted");
        }
      }
    }
    if (Body(updated) != Body(old)) metadata["generation"] = meta::Generation(old) + 1;
  }
  updated["metadata"]["resourceVersion"] = meta::ResourceVersion(old);
  if (updated == old) return old;  // a no-op write changes nothing, not even the version

  updated["metadata"]["resourceVersion"] = std::to_string(++rv_);
  it->second = updated;
  Record(type, old, updated);
  Json& metadata = updated["metadata"];
  bool finalized = meta::IsBeingDeleted(updated) &&
                   metadata.value("finalizers", Json::array()).empty() &&
                   metadata.value("deletionGracePeriodSeconds", int64_t{0}) == 0;
  if (finalized) {
    RemoveLocked(type, key, PropagationPolicy::kBackground);
  } else {
    (void)Persist();
    if (type == resources::kSecret) WriteSecretFiles(&old, &updated);
  }
  return updated;
}

bool LocalStore::UidExistsLocked(const std::string& uid) const {
  for (const auto& [resource, table] : tables_) {
    for (const auto& [key, object] : table) {
      if (meta::Uid(object) == uid) return true;
    }
  }
  return false;
}

void LocalStore::RemoveLocked(const ResourceType& type, const ObjectKey& key,
                              PropagationPolicy policy) {
  Objects& table = Table(type);
  auto it = table.find(key);
  if (it == table.end()) return;
  Json old = std::move(it->second);
  table.erase(it);
  ++rv_;
  Record(type, old, nullptr);
  if (type == resources::kService) {
    std::string ip = StringAt(old, "spec.clusterIP");
    if (!ip.empty() && ip != "None") service_ips_->Release(ip);
  }
  (void)Persist();
  if (type == resources::kSecret) WriteSecretFiles(&old, nullptr);
  CollectGarbageLocked(meta::Uid(old), policy);
}

void LocalStore::CollectGarbageLocked(const std::string& owner_uid, PropagationPolicy policy) {
  struct Dependent {
    const ResourceType* type;
    ObjectKey key;
  };
  std::vector<Dependent> dependents;
  for (const auto& [resource, table] : tables_) {
    for (const auto& [key, object] : table) {
      for (const auto& ref : meta::OwnerRefs(object)) {
        if (ref.uid == owner_uid) {
          dependents.push_back({ServedByGroupResource(resource), key});
          break;
        }
      }
    }
  }
  for (const Dependent& d : dependents) {
    if (d.type == nullptr) continue;
    auto it = Table(*d.type).find(d.key);
    if (it == Table(*d.type).end()) continue;  // already gone through another path
    if (policy == PropagationPolicy::kOrphan) {
      Json updated = it->second;
      Json refs = Json::array();
      for (const Json& r : updated["metadata"]["ownerReferences"]) {
        if (r.value("uid", "") != owner_uid) refs.push_back(r);
      }
      updated["metadata"]["ownerReferences"] = refs;
      if (refs.empty()) updated["metadata"].erase("ownerReferences");
      (void)UpdateLocked(*d.type, std::move(updated), Subresource::kNone);
      continue;
    }
    bool owner_left = false;
    for (const auto& ref : meta::OwnerRefs(it->second)) {
      if (ref.uid != owner_uid && UidExistsLocked(ref.uid)) owner_left = true;
    }
    if (!owner_left) (void)DeleteLocked(*d.type, d.key, DeleteOptions{});
  }
}

Status LocalStore::DeleteLocked(const ResourceType& type, const ObjectKey& key,
                                const DeleteOptions& options) {
  Objects& table = Table(type);
  auto it = table.find(key);
  if (it == table.end()) return NotFoundError(Describe(type, key) + " not found");
  const Json& object = it->second;
  if (options.precondition_uid && *options.precondition_uid != meta::Uid(object)) {
    return ConflictError("Precondition failed for " + Describe(type, key) + ": uid is " +
                         meta::Uid(object) + ", not " + *options.precondition_uid);
  }
  if (options.precondition_resource_version &&
      *options.precondition_resource_version != meta::ResourceVersion(object)) {
    return ConflictOn(type, key);
  }
  bool has_finalizers = !object["metadata"].value("finalizers", Json::array()).empty();
  bool bound_pod = type == resources::kPod && !StringAt(object, "spec.nodeName").empty();
  int64_t grace = 0;
  if (bound_pod) {
    grace = options.grace_period_seconds.value_or(
        object["spec"].value("terminationGracePeriodSeconds", int64_t{30}));
    if (grace < 0) grace = 0;
  }
  if (!has_finalizers && grace == 0) {
    RemoveLocked(type, key, options.propagation);
    return Status::Ok();
  }
  Json updated = object;
  Json& metadata = updated["metadata"];
  if (meta::IsBeingDeleted(object)) {
    // Already terminating: a delete may only shorten a Pod's grace period.
    int64_t current = metadata.value("deletionGracePeriodSeconds", int64_t{0});
    if (!bound_pod || grace >= current) return Status::Ok();
  }
  metadata["deletionTimestamp"] =
      FormatRfc3339(options_.clock->WallNow() + std::chrono::seconds(grace));
  metadata["deletionGracePeriodSeconds"] = grace;
  Json old = object;
  metadata["resourceVersion"] = std::to_string(++rv_);
  it->second = updated;
  Record(type, std::move(old), updated);
  (void)Persist();
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// KubeClient

Result<Json> LocalStore::Get(const ResourceType& type, const ObjectKey& key) {
  if (LocalStoreServedType(type) == nullptr) return Unserved(type);
  std::lock_guard lock(mu_);
  ObjectKey k = key;
  if (type.namespaced && k.namespace_.empty()) k.namespace_ = "default";
  auto& table = Table(type);
  auto it = table.find(k);
  if (it == table.end()) return NotFoundError(Describe(type, k) + " not found");
  return it->second;
}

Result<ObjectList> LocalStore::List(const ResourceType& type, const std::string& namespace_,
                                    const ListOptions& options) {
  if (LocalStoreServedType(type) == nullptr) return Unserved(type);
  PETREL_ASSIGN_OR_RETURN(Matcher matcher,
                          Matcher::Make(type.namespaced ? namespace_ : "",
                                        options.label_selector, options.field_selector));
  std::lock_guard lock(mu_);
  ObjectList out;
  out.resource_version = std::to_string(rv_);
  auto& table = Table(type);
  auto it = table.begin();
  if (!options.continue_token.empty()) {
    it = table.upper_bound(ObjectKey::Parse(options.continue_token));
  }
  for (; it != table.end(); ++it) {
    if (!matcher.Matches(it->second)) continue;
    if (options.limit > 0 && static_cast<int64_t>(out.items.size()) == options.limit) {
      // Another matching item exists: the next page starts after the last one returned.
      out.continue_token = meta::Key(out.items.back()).ToString();
      break;
    }
    out.items.push_back(it->second);
  }
  return out;
}

Result<Json> LocalStore::Create(const ResourceType& type, const Json& object) {
  if (LocalStoreServedType(type) == nullptr) return Unserved(type);
  std::lock_guard lock(mu_);
  return CreateLocked(type, object);
}

Result<Json> LocalStore::Update(const ResourceType& type, const Json& object, Subresource sub) {
  if (LocalStoreServedType(type) == nullptr) return Unserved(type);
  std::lock_guard lock(mu_);
  return UpdateLocked(type, object, sub);
}

Status LocalStore::Delete(const ResourceType& type, const ObjectKey& key,
                          const DeleteOptions& options) {
  if (LocalStoreServedType(type) == nullptr) return Unserved(type);
  std::lock_guard lock(mu_);
  ObjectKey k = key;
  if (type.namespaced && k.namespace_.empty()) k.namespace_ = "default";
  return DeleteLocked(type, k, options);
}

Result<Json> LocalStore::Patch(const ResourceType& type, const ObjectKey& key,
                               PatchType patch_type, const Json& patch,
                               const PatchOptions& options) {
  if (LocalStoreServedType(type) == nullptr) return Unserved(type);
  if (!options.subresource.empty() && options.subresource != "status") {
    return InvalidError("the local store cannot patch the \"" + options.subresource +
                        "\" subresource; patch spec or status instead");
  }
  Subresource sub = options.subresource == "status" ? Subresource::kStatus : Subresource::kNone;
  ObjectKey k = key;
  if (type.namespaced && k.namespace_.empty()) k.namespace_ = "default";
  std::lock_guard lock(mu_);
  auto& table = Table(type);
  auto it = table.find(k);
  if (patch_type == PatchType::kApply) {
    if (!patch.is_object()) return InvalidError("an applied configuration must be an object");
    Json applied = patch;
    if (applied.contains("metadata") && applied["metadata"].is_object()) {
      applied["metadata"].erase("resourceVersion");
    }
    if (it == table.end()) {
      if (sub == Subresource::kStatus) return NotFoundError(Describe(type, k) + " not found");
      applied["metadata"]["name"] = k.name;
      if (type.namespaced) applied["metadata"]["namespace"] = k.namespace_;
      return CreateLocked(type, std::move(applied));
    }
    Json merged = it->second;
    merged.merge_patch(applied);
    return UpdateLocked(type, std::move(merged), sub);
  }
  if (it == table.end()) return NotFoundError(Describe(type, k) + " not found");
  Json patched = it->second;
  try {
    if (patch_type == PatchType::kMerge) {
      patched.merge_patch(patch);
    } else {
      patched = patched.patch(patch);
    }
  } catch (const Json::exception& e) {
    return InvalidError("the patch to " + Describe(type, k) + " cannot be applied: " + e.what());
  }
  if (meta::Name(patched) != k.name ||
      (type.namespaced && meta::Namespace(patched) != k.namespace_)) {
    return InvalidError("a patch may not change metadata.name or metadata.namespace");
  }
  return UpdateLocked(type, std::move(patched), sub);
}

Result<Json> LocalStore::CreateSubresource(const ResourceType& type, const ObjectKey& key,
                                           const std::string& subresource, const Json& body) {
  if (type != resources::kPod || subresource != "binding") {
    return InvalidError("the local store does not serve the \"" + subresource +
                        "\" subresource of " + type.GroupResource() +
                        "; only pods/binding is served");
  }
  std::string node = body.is_object() ? StringAt(body, "target.name") : "";
  if (node.empty()) return InvalidError("a Binding needs target.name (the node)");
  ObjectKey k = key;
  if (k.namespace_.empty()) k.namespace_ = "default";
  std::lock_guard lock(mu_);
  auto& table = Table(type);
  auto it = table.find(k);
  if (it == table.end()) return NotFoundError(Describe(type, k) + " not found");
  std::string bound = StringAt(it->second, "spec.nodeName");
  if (!bound.empty()) {
    return ConflictError("pod " + k.ToString() + " is already assigned to node \"" + bound + "\"");
  }
  Json old = it->second;
  Json updated = old;
  updated["spec"]["nodeName"] = node;
  Json& conditions = updated["status"]["conditions"];
  if (!conditions.is_array()) conditions = Json::array();
  conditions.push_back({{"type", "PodScheduled"},
                        {"status", "True"},
                        {"lastTransitionTime", FormatRfc3339(options_.clock->WallNow())}});
  updated["metadata"]["resourceVersion"] = std::to_string(++rv_);
  it->second = updated;
  Record(type, std::move(old), updated);
  (void)Persist();
  return Json{{"apiVersion", "v1"}, {"kind", "Status"}, {"status", "Success"}};
}

Result<std::unique_ptr<WatchStream>> LocalStore::Watch(const ResourceType& type,
                                                       const std::string& namespace_,
                                                       const WatchOptions& options) {
  if (LocalStoreServedType(type) == nullptr) return Unserved(type);
  PETREL_ASSIGN_OR_RETURN(Matcher matcher,
                          Matcher::Make(type.namespaced ? namespace_ : "",
                                        options.label_selector, options.field_selector));
  auto state = std::make_shared<WatchState>(std::move(matcher));
  state->resource = type.GroupResource();
  if (options.timeout_seconds > 0) {
    state->deadline = options_.clock->Now() + std::chrono::seconds(options.timeout_seconds);
  }
  std::lock_guard lock(mu_);
  const std::string& from = options.resource_version;
  if (from.empty() || from == "0") {
    for (const auto& [key, object] : Table(type)) {
      if (state->matcher.Matches(object)) {
        state->queue.push_back(WatchEvent{WatchEventType::kAdded, object});
      }
    }
  } else {
    int64_t since = 0;
    try {
      size_t used = 0;
      since = std::stoll(from, &used);
      if (used != from.size()) throw std::invalid_argument(from);
    } catch (const std::exception&) {
      return InvalidError("resourceVersion \"" + from + "\" is not a number");
    }
    if (since < compacted_rv_) {
      return GoneError("too old resource version: " + from + " (" +
                       std::to_string(compacted_rv_ + 1) + "); list again and watch from the "
                       "list's resourceVersion");
    }
    for (const Change& c : history_) {
      if (c.rv <= since || c.resource != state->resource) continue;
      if (auto e = WatchState::EventFor(state->matcher, c.old_object, c.new_object, c.rv)) {
        state->queue.push_back(std::move(*e));
      }
    }
  }
  watches_.push_back(state);
  return std::unique_ptr<WatchStream>(new LocalWatchStream(state, options_.clock));
}

}  // namespace petrel
