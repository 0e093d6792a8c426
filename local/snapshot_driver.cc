#include "local/snapshot_driver.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/base64.h"
#include "local/files.h"
#include "net/http.h"

namespace petrel {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSnapshotGroup = "snapshot.storage.k8s.io";
constexpr const char* kClusterLabel = "petrel.dev/cluster";
constexpr const char* kManagedBy = "app.kubernetes.io/managed-by=petrel";
constexpr const char* kMetadataFile = "snapshot.json";
constexpr const char* kVolumeImage = "volume";
// In a restored volume: the uid of the claim it was restored for (so a restore interrupted
// after the copy but before the claim was bound finishes instead of refusing its own data).
constexpr const char* kRestoreMarker = ".petrel-restored-for";

constexpr auto kTraversableDir =
    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec;

Json Spec(const Json& o) { return o.value("spec", Json::object()); }
Json StatusOf(const Json& o) { return o.value("status", Json::object()); }

PatchOptions StatusPatch() {
  PatchOptions options;
  options.subresource = "status";
  return options;
}

std::string ClaimPhase(const Json& pvc) { return StatusOf(pvc).value("phase", ""); }

bool ReadyToUse(const Json& snapshot) {
  Json s = StatusOf(snapshot);
  return s.contains("readyToUse") && s["readyToUse"].is_boolean() && s["readyToUse"].get<bool>();
}

// The message of an instance API error (a Kubernetes-style Status body), else the raw body.
std::string ErrorMessage(const HttpResponse& r) {
  Json j = Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  std::string body = r.body.substr(0, 300);
  while (!body.empty() && body.back() == '\n') body.pop_back();
  return body;
}

// The uid recorded in a copy's snapshot.json; "" when the copy is incomplete or unreadable.
std::string CopyUid(const fs::path& dir) {
  auto text = ReadFile(dir / kMetadataFile);
  if (!text.ok()) return "";
  Json j = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("uid") || !j["uid"].is_string()) return "";
  return j["uid"].get<std::string>();
}

}  // namespace

std::optional<ObjectKey> SnapshotDataSource(const Json& pvc) {
  Json source = Spec(pvc).value("dataSource", Json());
  if (!source.is_object()) return std::nullopt;
  if (source.value("apiGroup", "") != kSnapshotGroup ||
      source.value("kind", "") != "VolumeSnapshot" || source.value("name", "").empty()) {
    return std::nullopt;
  }
  return ObjectKey{meta::Namespace(pvc), source.value("name", "")};
}

Result<std::string> DataDirInVolume(const Json& pod, const std::string& claim) {
  const Json spec = Spec(pod);
  std::string volume;
  for (const Json& v : spec.value("volumes", Json::array())) {
    if (v.contains("persistentVolumeClaim") &&
        v["persistentVolumeClaim"].value("claimName", "") == claim) {
      volume = v.value("name", "");
    }
  }
  if (volume.empty()) {
    return InvalidError("Pod " + meta::Name(pod) + " does not mount PersistentVolumeClaim " + claim);
  }
  for (const Json& c : spec.value("containers", Json::array())) {
    std::string mount;
    for (const Json& m : c.value("volumeMounts", Json::array())) {
      if (m.value("name", "") != volume) continue;
      if (!m.value("subPath", "").empty()) {
        return InvalidError("Pod " + meta::Name(pod) + " mounts the claim with a subPath, which "
                            "the snapshot driver does not support");
      }
      mount = m.value("mountPath", "");
    }
    if (mount.empty()) continue;
    std::string pgdata;
    std::vector<std::string> words;
    for (const char* field : {"command", "args"}) {
      for (const Json& w : c.value(field, Json::array())) {
        if (w.is_string()) words.push_back(w.get<std::string>());
      }
    }
    for (size_t i = 0; i < words.size(); ++i) {
      if (words[i].rfind("--pgdata=", 0) == 0) pgdata = words[i].substr(9);
      if (words[i] == "--pgdata" && i + 1 < words.size()) pgdata = words[i + 1];
    }
    for (const Json& e : c.value("env", Json::array())) {
      if (pgdata.empty() && e.value("name", "") == "PGDATA") pgdata = e.value("value", "");
    }
    if (pgdata.empty()) continue;
    fs::path data = fs::path(pgdata).lexically_normal();
    fs::path root = fs::path(mount).lexically_normal();
    fs::path rel = data.lexically_relative(root);
    if (rel.empty() || *rel.begin() == "..") {
      return InvalidError("the data directory " + pgdata + " of Pod " + meta::Name(pod) +
                          " is not inside the claim's mount " + mount);
    }
    std::string out = rel == "." ? std::string() : rel.string();
    while (!out.empty() && out.back() == '/') out.pop_back();
    return out;
  }
  return InvalidError("no container of Pod " + meta::Name(pod) +
                      " both mounts PersistentVolumeClaim " + claim +
                      " and names its data directory (--pgdata or PGDATA)");
}

Json ReadyStatus(const SnapshotInfo& info, const std::string& now) {
  return {{"status",
           {{"readyToUse", true},
            {"restoreSize", std::to_string(info.size_bytes)},
            {"creationTime", now},
            {"error", nullptr}}}};
}

Json ErrorStatus(const std::string& message, const std::string& now) {
  return {{"status", {{"readyToUse", false}, {"error", {{"message", message}, {"time", now}}}}}};
}

SnapshotDriver::SnapshotDriver(KubeClient& client, SnapshotDriverOptions options, Clock& clock)
    : client_(client),
      options_(std::move(options)),
      clock_(clock),
      events_(client, "petrel-snapshot-driver", clock) {}

SnapshotDriver::~SnapshotDriver() { Stop(); }

Status SnapshotDriver::Start() {
  if (options_.state_dir.empty()) return InvalidError("the snapshot driver needs a state directory");
  PETREL_RETURN_IF_ERROR(MakeDirectory(options_.state_dir / "snapshots", kTraversableDir));
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void SnapshotDriver::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void SnapshotDriver::Run() {
  while (true) {
    Reconcile();
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, options_.resync, [this] { return stopping_; })) return;
  }
}

fs::path SnapshotDriver::SnapshotDir(const ObjectKey& snapshot) const {
  return options_.state_dir / "snapshots" / snapshot.namespace_ / snapshot.name;
}

bool SnapshotDriver::Stopping() {
  std::lock_guard lock(mu_);
  return stopping_;
}

bool SnapshotDriver::Hosts(const std::string& ns, const std::string& claim) const {
  std::error_code ec;
  return fs::is_directory(options_.state_dir / "volumes" / ns / claim, ec);
}

bool SnapshotDriver::Due(const std::string& key) {
  auto it = retries_.find(key);
  return it == retries_.end() || clock_.Now() >= it->second.next;
}

void SnapshotDriver::Failed(const std::string& key) {
  Retry& r = retries_[key];
  ++r.attempts;
  auto backoff = options_.retry_initial * (1LL << std::min(r.attempts - 1, 10));
  r.next = clock_.Now() + std::min<std::chrono::milliseconds>(backoff, options_.retry_max);
}

void SnapshotDriver::WarnClaim(const Json& pvc, const std::string& reason,
                               const std::string& note) {
  const std::string key = meta::Key(pvc).ToString();
  if (warned_[key] == note) return;
  warned_[key] = note;
  spdlog::warn("snapshot driver: PersistentVolumeClaim {}: {}", key, note);
  Json regarding = pvc;  // list items may lack apiVersion and kind
  regarding["apiVersion"] = "v1";
  regarding["kind"] = "PersistentVolumeClaim";
  events_.Record(regarding, EventType::kWarning, reason, "Provision", note);
}

void SnapshotDriver::Reconcile() {
  auto listed = client_.ListAll(resources::kVolumeSnapshot, "", ListOptions{});
  if (listed.ok()) {
    TakeSnapshots(listed->items);
    DeleteOrphans(listed->items);
  } else if (listed.status().code() != Code::kNotFound) {
    // NotFound: the API serves no VolumeSnapshots (a bare kube-apiserver without the CRD).
    spdlog::warn("snapshot driver: listing VolumeSnapshots: {}", listed.status().message());
  }
  RestoreClaims();
}

void SnapshotDriver::TakeSnapshots(const std::vector<Json>& snapshots) {
  for (const Json& vs : snapshots) {
    if (Stopping()) return;
    if (meta::IsBeingDeleted(vs)) continue;
    const ObjectKey key = meta::Key(vs);
    std::string claim = Spec(vs).value("source", Json::object()).value("persistentVolumeClaimName", "");
    if (claim.empty() || !Hosts(key.namespace_, claim)) continue;  // not a claim of this node
    const fs::path dir = SnapshotDir(key);
    const bool have_copy = CopyUid(dir) == meta::Uid(vs);
    if (ReadyToUse(vs) && have_copy) continue;
    if (StatusOf(vs).contains("creationTime") && !have_copy) {
      // Taken once: taking it again would be another point in time under the same name.
      if (ReadyToUse(vs)) {
        (void)client_.Patch(resources::kVolumeSnapshot, key, PatchType::kMerge,
                            ErrorStatus("the snapshot's data in " + dir.string() +
                                            " is gone; delete this VolumeSnapshot",
                                        FormatRfc3339(clock_.WallNow())),
                            StatusPatch());
      }
      continue;
    }
    const std::string retry_key = "VolumeSnapshot/" + key.ToString();
    if (!Due(retry_key)) continue;
    Status st = TakeSnapshot(vs);
    if (st.ok()) {
      retries_.erase(retry_key);
      continue;
    }
    if (Stopping()) return;  // the instance went away with the agent: not the snapshot's fault
    Failed(retry_key);
    spdlog::warn("snapshot driver: VolumeSnapshot {}: {}", key.ToString(), st.message());
    auto patched = client_.Patch(resources::kVolumeSnapshot, key, PatchType::kMerge,
                                 ErrorStatus(st.message(), FormatRfc3339(clock_.WallNow())),
                                 StatusPatch());
    if (!patched.ok() && patched.status().code() != Code::kNotFound) {
      spdlog::warn("snapshot driver: status of VolumeSnapshot {}: {}", key.ToString(),
                   patched.status().message());
    }
  }
}

Result<Json> SnapshotDriver::FindPod(const std::string& ns, const std::string& claim) {
  ListOptions list;
  list.label_selector = kManagedBy;
  PETREL_ASSIGN_OR_RETURN(ObjectList pods, client_.ListAll(resources::kPod, ns, list));
  for (const Json& pod : pods.items) {
    if (meta::IsBeingDeleted(pod)) continue;
    if (Spec(pod).value("nodeName", "") != options_.node_name) continue;
    if (StatusOf(pod).value("phase", "") != "Running" || StatusOf(pod).value("podIP", "").empty()) {
      continue;
    }
    for (const Json& v : Spec(pod).value("volumes", Json::array())) {
      if (v.contains("persistentVolumeClaim") &&
          v["persistentVolumeClaim"].value("claimName", "") == claim) {
        return pod;
      }
    }
  }
  return UnavailableError("no running Pod on this node uses PersistentVolumeClaim " + claim +
                          "; the snapshot is taken by the Petrel instance running on it");
}

Result<std::string> SnapshotDriver::InstanceToken(const Json& pod) {
  std::string cluster = meta::Label(pod, kClusterLabel);
  if (cluster.empty()) {
    return InvalidError("Pod " + meta::Name(pod) + " has no " + kClusterLabel + " label");
  }
  std::string name = cluster + "-petrel";
  PETREL_ASSIGN_OR_RETURN(Json secret, client_.Get(resources::kSecret, {meta::Namespace(pod), name}));
  Json data = secret.value("data", Json::object());
  std::optional<std::string> token;
  if (data.contains("password") && data["password"].is_string()) {
    token = Base64Decode(data["password"].get<std::string>());
  }
  if (!token || token->empty()) return InvalidError("Secret " + name + " has no usable password");
  return *token;
}

Status SnapshotDriver::TakeSnapshot(const Json& vs) {
  const ObjectKey key = meta::Key(vs);
  const std::string claim =
      Spec(vs).value("source", Json::object()).value("persistentVolumeClaimName", "");
  PETREL_ASSIGN_OR_RETURN(Json pod, FindPod(key.namespace_, claim));
  PETREL_ASSIGN_OR_RETURN(std::string data_dir, DataDirInVolume(pod, claim));
  PETREL_ASSIGN_OR_RETURN(std::string token, InstanceToken(pod));

  const fs::path dir = SnapshotDir(key);
  std::error_code ec;
  fs::remove_all(dir, ec);  // an earlier, failed attempt
  PETREL_RETURN_IF_ERROR(MakeDirectory(dir.parent_path(), kTraversableDir));
  PETREL_RETURN_IF_ERROR(MakeDirectory(dir, kTraversableDir));
  PETREL_RETURN_IF_ERROR(MakeDirectory(dir / kVolumeImage, kTraversableDir));
  const fs::path target = data_dir.empty() ? dir / kVolumeImage : dir / kVolumeImage / data_dir;

  std::string ip = StatusOf(pod).value("podIP", "");
  HttpCallOptions call;
  call.timeout = options_.snapshot_timeout;
  call.headers["Authorization"] = "Bearer " + token;
  call.headers["Content-Type"] = "application/json";
  spdlog::info("snapshot driver: VolumeSnapshot {}: copying {} through Pod {}", key.ToString(),
               claim, meta::Name(pod));
  auto response = HttpCall(
      "POST", "http://" + ip + ":" + std::to_string(options_.instance_api_port) + "/snapshot",
      Json{{"dir", target.string()}}.dump(), call);
  Status failed = Status::Ok();
  Result<SnapshotInfo> info = InternalError("no answer");
  if (!response.ok()) {
    failed = response.status().Annotate("POST /snapshot to Pod " + meta::Name(pod));
  } else if (response->status != 200) {
    failed = UnavailableError("Pod " + meta::Name(pod) + " refused the snapshot (HTTP " +
                              std::to_string(response->status) + "): " + ErrorMessage(*response));
  } else {
    info = SnapshotInfo::FromJson(Json::parse(response->body, nullptr, false));
    if (!info.ok()) failed = info.status().Annotate("the instance's answer");
  }
  if (!failed.ok()) {
    fs::remove_all(dir, ec);
    return failed;
  }
  Json metadata = {{"uid", meta::Uid(vs)},
                   {"source", {{"namespace", key.namespace_}, {"claim", claim},
                               {"pod", meta::Name(pod)}, {"dataDir", data_dir}}},
                   {"info", info->ToJson()}};
  PETREL_RETURN_IF_ERROR(WriteFileAtomically(dir / kMetadataFile, metadata.dump(2) + "\n",
                                             fs::perms::owner_read | fs::perms::owner_write));
  const std::string now = FormatRfc3339(clock_.WallNow());
  auto patched = client_.Patch(resources::kVolumeSnapshot, key, PatchType::kMerge,
                               ReadyStatus(*info, now), StatusPatch());
  if (!patched.ok()) return patched.status().Annotate("setting the VolumeSnapshot's status");
  spdlog::info("snapshot driver: VolumeSnapshot {} is ready ({} bytes, end LSN {})",
               key.ToString(), info->size_bytes, info->lsn);
  return Status::Ok();
}

void SnapshotDriver::DeleteOrphans(const std::vector<Json>& snapshots) {
  std::map<ObjectKey, std::string> uids;
  for (const Json& vs : snapshots) uids[meta::Key(vs)] = meta::Uid(vs);
  std::error_code ec;
  const fs::path root = options_.state_dir / "snapshots";
  for (const auto& ns : fs::directory_iterator(root, ec)) {
    if (!ns.is_directory()) continue;
    std::error_code nec;
    for (const auto& copy : fs::directory_iterator(ns.path(), nec)) {
      ObjectKey key{ns.path().filename().string(), copy.path().filename().string()};
      auto it = uids.find(key);
      std::string uid = CopyUid(copy.path());
      if (it != uids.end() && !uid.empty() && uid == it->second) continue;
      // Gone, re-created under the same name, or an interrupted copy (this thread is the
      // only writer and is not copying now): nothing refers to this data any more.
      spdlog::info("snapshot driver: deleting {} ({})", copy.path().string(),
                   it == uids.end() ? "its VolumeSnapshot is gone"
                   : uid.empty()    ? "an incomplete copy"
                                    : "its VolumeSnapshot was re-created");
      std::error_code rec;
      fs::remove_all(copy.path(), rec);
      if (rec) spdlog::warn("snapshot driver: deleting {}: {}", copy.path().string(), rec.message());
    }
  }
}

void SnapshotDriver::RestoreClaims() {
  ListOptions list;
  list.label_selector = kManagedBy;
  auto claims = client_.ListAll(resources::kPersistentVolumeClaim, "", list);
  if (!claims.ok()) return;
  for (const Json& pvc : claims->items) {
    auto source = SnapshotDataSource(pvc);
    if (!source || meta::IsBeingDeleted(pvc) || ClaimPhase(pvc) == "Bound") continue;
    const std::string retry_key = "PersistentVolumeClaim/" + meta::Key(pvc).ToString();
    if (!Due(retry_key)) continue;
    Status st = RestoreClaim(pvc, *source);
    if (st.ok()) {
      retries_.erase(retry_key);
      warned_.erase(meta::Key(pvc).ToString());
      continue;
    }
    Failed(retry_key);
    WarnClaim(pvc, st.code() == Code::kConflict ? "VolumeNotEmpty" : "ProvisioningFailed",
         st.message());
  }
}

Status SnapshotDriver::RestoreClaim(const Json& pvc, const ObjectKey& source) {
  auto vs = client_.Get(resources::kVolumeSnapshot, source);
  if (!vs.ok()) {
    if (vs.status().code() == Code::kNotFound) {
      return NotFoundError("VolumeSnapshot " + source.name + " does not exist; the claim stays "
                           "Pending until it does (or delete the claim)");
    }
    return vs.status();
  }
  if (!ReadyToUse(*vs)) {
    std::string why = StatusOf(*vs).value("error", Json::object()).value("message", "");
    return UnavailableError("VolumeSnapshot " + source.name + " is not ready to use yet" +
                            (why.empty() ? "" : " (" + why + ")"));
  }
  const fs::path copy = SnapshotDir(source);
  if (CopyUid(copy) != meta::Uid(*vs)) {
    return NotFoundError("the data of VolumeSnapshot " + source.name + " is not on this node (" +
                         copy.string() + ")");
  }

  const std::string ns = meta::Namespace(pvc);
  const std::string claim = meta::Name(pvc);
  const fs::path volume = options_.state_dir / "volumes" / ns / claim;
  std::error_code ec;
  bool done = false;
  if (fs::exists(volume, ec) && !fs::is_empty(volume, ec)) {
    auto marker = ReadFile(volume / kRestoreMarker);
    if (!marker.ok() || *marker != meta::Uid(pvc)) {
      return ConflictError("the volume directory " + volume.string() +
                           " already holds data; a restore never overwrites a volume (delete "
                           "that directory, or the claim, to restore)");
    }
    done = true;  // restored earlier, the claim just was not bound yet
  }
  if (!done) {
    const fs::path tmp = volume.parent_path() / ("." + claim + ".restore");
    fs::remove_all(tmp, ec);
    PETREL_RETURN_IF_ERROR(MakeDirectory(volume.parent_path(), kTraversableDir));
    spdlog::info("snapshot driver: restoring VolumeSnapshot {} into claim {}", source.ToString(),
                 meta::Key(pvc).ToString());
    fs::copy(copy / kVolumeImage, tmp, fs::copy_options::recursive | fs::copy_options::copy_symlinks,
             ec);
    if (!ec) fs::permissions(tmp, kTraversableDir, ec);
    if (ec) {
      std::error_code rec;
      fs::remove_all(tmp, rec);
      return UnavailableError("copying the snapshot into " + tmp.string() + ": " + ec.message());
    }
    PETREL_RETURN_IF_ERROR(WriteFileAtomically(tmp / kRestoreMarker, meta::Uid(pvc),
                                               fs::perms::owner_read | fs::perms::owner_write));
    fs::remove(volume, ec);  // an empty directory only (checked above)
    fs::rename(tmp, volume, ec);
    if (ec) return UnavailableError("moving the restored data to " + volume.string() + ": " + ec.message());
  }
  const Json spec = Spec(pvc);
  Json status = {{"phase", "Bound"},
                 {"accessModes", spec.value("accessModes", Json::array({"ReadWriteOnce"}))},
                 {"capacity", spec.value("resources", Json::object()).value("requests", Json::object())}};
  auto bound = client_.Patch(resources::kPersistentVolumeClaim, meta::Key(pvc), PatchType::kMerge,
                             {{"status", status}}, StatusPatch());
  if (!bound.ok()) return bound.status().Annotate("binding the restored claim");
  spdlog::info("snapshot driver: claim {} restored from VolumeSnapshot {} and bound",
               meta::Key(pvc).ToString(), source.name);
  return Status::Ok();
}

}  // namespace petrel
