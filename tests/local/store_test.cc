#include "local/store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "core/base64.h"
#include "local/files.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using resources::kConfigMap;
using resources::kPersistentVolumeClaim;
using resources::kPod;
using resources::kPostgresCluster;
using resources::kSecret;
using resources::kService;

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("petrel-store-test-" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::unique_ptr<LocalStore> MemoryStore(Clock* clock = &Clock::Real()) {
  LocalStoreOptions options;
  options.clock = clock;
  auto store = LocalStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return std::move(store).value();
}

Json Cluster(const std::string& name, int replicas = 3) {
  return {{"apiVersion", "petrel.dev/v1alpha1"},
          {"kind", "PostgresCluster"},
          {"metadata", {{"name", name}, {"namespace", "default"}}},
          {"spec", {{"replicas", replicas}}}};
}

Json Pod(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
  Json pod = {{"metadata", {{"name", name}, {"namespace", "default"}}},
              {"spec", {{"containers", Json::array({{{"name", "c"}}})}}}};
  if (!labels.empty()) pod["metadata"]["labels"] = labels;
  return pod;
}

int64_t Rv(const Json& o) { return std::stoll(meta::ResourceVersion(o)); }

TEST(LocalStoreTest, CreateAssignsIdentityAndIncreasingVersions) {
  FakeClock clock;
  auto store = MemoryStore(&clock);
  auto a = store->Create(kPostgresCluster, Cluster("a"));
  auto b = store->Create(kPostgresCluster, Cluster("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_FALSE(meta::Uid(*a).empty());
  EXPECT_NE(meta::Uid(*a), meta::Uid(*b));
  EXPECT_LT(Rv(*a), Rv(*b));
  EXPECT_EQ(meta::Generation(*a), 1);
  EXPECT_EQ((*a)["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
  EXPECT_EQ(store->CurrentResourceVersion(), Rv(*b));
}

TEST(LocalStoreTest, CreateOfAnExistingNameIsAlreadyExists) {
  auto store = MemoryStore();
  ASSERT_TRUE(store->Create(kPostgresCluster, Cluster("a")).ok());
  auto again = store->Create(kPostgresCluster, Cluster("a"));
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);
}

TEST(LocalStoreTest, MissingObjectsAreNotFound) {
  auto store = MemoryStore();
  EXPECT_EQ(store->Get(kPod, {"default", "x"}).status().code(), Code::kNotFound);
  EXPECT_EQ(store->Update(kPod, Pod("x")).status().code(), Code::kNotFound);
  EXPECT_EQ(store->Delete(kPod, {"default", "x"}).code(), Code::kNotFound);
  EXPECT_EQ(store->Patch(kPod, {"default", "x"}, PatchType::kMerge, Json::object())
                .status()
                .code(),
            Code::kNotFound);
}

TEST(LocalStoreTest, GenerateNameAndDefaultNamespace) {
  auto store = MemoryStore();
  Json cm = {{"metadata", {{"generateName", "cfg-"}}}};
  auto created = store->Create(kConfigMap, cm);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(meta::Name(*created).rfind("cfg-", 0), 0u);
  EXPECT_EQ(meta::Name(*created).size(), 9u);
  EXPECT_EQ(meta::Namespace(*created), "default");
}

TEST(LocalStoreTest, InvalidNamesAreRefused) {
  auto store = MemoryStore();
  for (const char* bad : {"Upper", "a/b", "..", "-x", ""}) {
    Json cm = {{"metadata", {{"name", bad}}}};
    EXPECT_EQ(store->Create(kConfigMap, cm).status().code(), Code::kInvalid) << bad;
  }
}

TEST(LocalStoreTest, UnknownKindsAreRefusedClearly) {
  auto store = MemoryStore();
  ResourceType deployments{"apps", "v1", "deployments", "Deployment", true};
  auto created = store->Create(deployments, {{"metadata", {{"name", "x"}}}});
  EXPECT_EQ(created.status().code(), Code::kInvalid);
  EXPECT_NE(created.status().message().find("deployments.apps"), std::string::npos);
  EXPECT_EQ(store->List(deployments, "", {}).status().code(), Code::kInvalid);
}

TEST(LocalStoreTest, KindMismatchIsRefused) {
  auto store = MemoryStore();
  Json pod = Pod("x");
  pod["kind"] = "Service";
  EXPECT_EQ(store->Create(kPod, pod).status().code(), Code::kInvalid);
}

TEST(LocalStoreTest, GenerationBumpsOnlyOnSpecChanges) {
  auto store = MemoryStore();
  Json c = store->Create(kPostgresCluster, Cluster("a")).value();
  c["metadata"]["labels"] = {{"x", "y"}};
  c = store->Update(kPostgresCluster, c).value();
  EXPECT_EQ(meta::Generation(c), 1);
  c["status"] = {{"phase", "Ready"}};
  c = store->UpdateStatus(kPostgresCluster, c).value();
  EXPECT_EQ(meta::Generation(c), 1);
  c["spec"]["replicas"] = 5;
  c = store->Update(kPostgresCluster, c).value();
  EXPECT_EQ(meta::Generation(c), 2);
}

TEST(LocalStoreTest, UpdateIgnoresStatusAndUpdateStatusIgnoresSpec) {
  auto store = MemoryStore();
  Json c = store->Create(kPostgresCluster, Cluster("a")).value();
  Json with_status = c;
  with_status["status"] = {{"phase", "Ready"}};
  with_status["spec"]["replicas"] = 9;
  Json after_status = store->UpdateStatus(kPostgresCluster, with_status).value();
  EXPECT_EQ(after_status["status"]["phase"], "Ready");
  EXPECT_EQ(after_status["spec"]["replicas"], 3);

  Json main = after_status;
  main["status"] = {{"phase", "Broken"}};
  main["spec"]["replicas"] = 4;
  Json after_main = store->Update(kPostgresCluster, main).value();
  EXPECT_EQ(after_main["status"]["phase"], "Ready");
  EXPECT_EQ(after_main["spec"]["replicas"], 4);
}

TEST(LocalStoreTest, CreateDropsStatusOfKindsWithStatusSubresource) {
  auto store = MemoryStore();
  Json c = Cluster("a");
  c["status"] = {{"phase", "Ready"}};
  EXPECT_FALSE(store->Create(kPostgresCluster, c)->contains("status"));
}

TEST(LocalStoreTest, StatusSubresourceRefusedForKindsWithoutOne) {
  auto store = MemoryStore();
  Json cm = store->Create(kConfigMap, {{"metadata", {{"name", "c"}}}}).value();
  EXPECT_EQ(store->UpdateStatus(kConfigMap, cm).status().code(), Code::kInvalid);
}

TEST(LocalStoreTest, StaleResourceVersionConflicts) {
  auto store = MemoryStore();
  Json v1 = store->Create(kPostgresCluster, Cluster("a")).value();
  Json v2 = v1;
  v2["spec"]["replicas"] = 4;
  ASSERT_TRUE(store->Update(kPostgresCluster, v2).ok());
  v1["spec"]["replicas"] = 5;
  EXPECT_EQ(store->Update(kPostgresCluster, v1).status().code(), Code::kConflict);
  EXPECT_EQ(store->UpdateStatus(kPostgresCluster, v1).status().code(), Code::kConflict);
  // Without a resourceVersion the write is unconditional.
  v1["metadata"].erase("resourceVersion");
  EXPECT_EQ(store->Update(kPostgresCluster, v1).value()["spec"]["replicas"], 5);
}

TEST(LocalStoreTest, NoOpUpdateKeepsTheVersion) {
  auto store = MemoryStore();
  Json c = store->Create(kPostgresCluster, Cluster("a")).value();
  Json same = store->Update(kPostgresCluster, c).value();
  EXPECT_EQ(meta::ResourceVersion(same), meta::ResourceVersion(c));
}

TEST(LocalStoreTest, LabelAndFieldSelectors) {
  auto store = MemoryStore();
  ASSERT_TRUE(store->Create(kPod, Pod("a", {{"app", "db"}, {"role", "primary"}})).ok());
  ASSERT_TRUE(store->Create(kPod, Pod("b", {{"app", "db"}, {"role", "replica"}})).ok());
  Json other = Pod("c", {{"app", "web"}});
  other["metadata"]["namespace"] = "other";
  other["spec"]["nodeName"] = "n1";
  ASSERT_TRUE(store->Create(kPod, other).ok());

  struct Case {
    std::string ns, labels, fields;
    std::vector<std::string> names;
  };
  std::vector<Case> cases = {
      {"", "", "", {"a", "b", "c"}},
      {"default", "", "", {"a", "b"}},
      {"", "app=db", "", {"a", "b"}},
      {"", "app=db,role!=primary", "", {"b"}},
      {"", "role in (primary,replica)", "", {"a", "b"}},
      {"", "", "metadata.name=b", {"b"}},
      {"", "", "spec.nodeName=", {"a", "b"}},
      {"", "", "spec.nodeName=n1", {"c"}},
      {"", "", "spec.nodeName!=n1,metadata.namespace==default", {"a", "b"}},
  };
  for (const Case& c : cases) {
    auto list = store->List(kPod, c.ns, {c.labels, c.fields});
    ASSERT_TRUE(list.ok()) << list.status().ToString();
    std::vector<std::string> names;
    for (const Json& item : list->items) names.push_back(meta::Name(item));
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, c.names) << c.ns << " | " << c.labels << " | " << c.fields;
  }
  EXPECT_EQ(store->List(kPod, "", {"", "spec.image=x"}).status().code(), Code::kInvalid);
  EXPECT_EQ(store->List(kPod, "", {"a in (", ""}).status().code(), Code::kInvalid);
}

TEST(LocalStoreTest, ListPagesWithContinueTokens) {
  auto store = MemoryStore();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->Create(kPod, Pod("p" + std::to_string(i))).ok());
  ListOptions options;
  options.limit = 2;
  auto first = store->List(kPod, "default", options).value();
  EXPECT_EQ(first.items.size(), 2u);
  EXPECT_FALSE(first.continue_token.empty());
  auto all = store->ListAll(kPod, "default", options).value();
  EXPECT_EQ(all.items.size(), 5u);
  options.limit = 5;
  EXPECT_TRUE(store->List(kPod, "default", options)->continue_token.empty());
}

TEST(LocalStoreTest, MergePatchFollowsRfc7386) {
  auto store = MemoryStore();
  Json c = Cluster("a");
  c["spec"]["parameters"] = {{"work_mem", "4MB"}, {"max_connections", "100"}};
  ASSERT_TRUE(store->Create(kPostgresCluster, c).ok());
  Json patch = {{"spec", {{"replicas", 5}, {"parameters", {{"work_mem", nullptr}}}}}};
  auto patched = store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kMerge, patch);
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ((*patched)["spec"]["replicas"], 5);
  EXPECT_FALSE((*patched)["spec"]["parameters"].contains("work_mem"));
  EXPECT_EQ((*patched)["spec"]["parameters"]["max_connections"], "100");
  EXPECT_EQ(meta::Generation(*patched), 2);
}

TEST(LocalStoreTest, MergePatchWithStaleVersionConflicts) {
  auto store = MemoryStore();
  Json c = store->Create(kPostgresCluster, Cluster("a")).value();
  ASSERT_TRUE(store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kMerge,
                           {{"spec", {{"replicas", 4}}}})
                  .ok());
  Json stale = {{"metadata", {{"resourceVersion", meta::ResourceVersion(c)}}},
                {"spec", {{"replicas", 5}}}};
  EXPECT_EQ(store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kMerge, stale)
                .status()
                .code(),
            Code::kConflict);
}

TEST(LocalStoreTest, JsonPatchFollowsRfc6902) {
  auto store = MemoryStore();
  ASSERT_TRUE(store->Create(kPostgresCluster, Cluster("a")).ok());
  Json ops = Json::array({{{"op", "replace"}, {"path", "/spec/replicas"}, {"value", 1}},
                          {{"op", "add"}, {"path", "/metadata/labels"}, {"value", {{"k", "v"}}}}});
  auto patched = store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kJson, ops);
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ((*patched)["spec"]["replicas"], 1);
  EXPECT_EQ(meta::Label(*patched, "k"), "v");
  Json failing = Json::array({{{"op", "test"}, {"path", "/spec/replicas"}, {"value", 7}}});
  EXPECT_EQ(store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kJson, failing)
                .status()
                .code(),
            Code::kInvalid);
}

TEST(LocalStoreTest, StatusPatchChangesOnlyStatus) {
  auto store = MemoryStore();
  ASSERT_TRUE(store->Create(kPostgresCluster, Cluster("a")).ok());
  PatchOptions options;
  options.subresource = "status";
  auto patched = store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kMerge,
                              {{"status", {{"phase", "Ready"}}}, {"spec", {{"replicas", 1}}}},
                              options);
  ASSERT_TRUE(patched.ok());
  EXPECT_EQ((*patched)["status"]["phase"], "Ready");
  EXPECT_EQ((*patched)["spec"]["replicas"], 3);
}

TEST(LocalStoreTest, ApplyCreatesThenMergesAppliedFields) {
  auto store = MemoryStore();
  Json applied = Cluster("a");
  auto created = store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kApply, applied);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(meta::Generation(*created), 1);
  Json again = store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kApply, applied).value();
  EXPECT_EQ(meta::ResourceVersion(again), meta::ResourceVersion(*created));  // no change
  applied["spec"]["replicas"] = 2;
  applied["spec"]["instances"] = nullptr;
  Json changed = store->Patch(kPostgresCluster, {"default", "a"}, PatchType::kApply, applied).value();
  EXPECT_EQ(changed["spec"]["replicas"], 2);
  EXPECT_EQ(meta::Generation(changed), 2);
}

TEST(LocalStoreTest, FinalizersHoldDeletionUntilRemoved) {
  auto store = MemoryStore();
  Json c = Cluster("a");
  c["metadata"]["finalizers"] = {"petrel.dev/cleanup"};
  ASSERT_TRUE(store->Create(kPostgresCluster, c).ok());
  ASSERT_TRUE(store->Delete(kPostgresCluster, {"default", "a"}).ok());
  Json marked = store->Get(kPostgresCluster, {"default", "a"}).value();
  EXPECT_TRUE(meta::IsBeingDeleted(marked));
  // No new finalizers once deletion started.
  Json more = marked;
  more["metadata"]["finalizers"].push_back("other");
  EXPECT_EQ(store->Update(kPostgresCluster, more).status().code(), Code::kForbidden);
  marked["metadata"]["finalizers"] = Json::array();
  ASSERT_TRUE(store->Update(kPostgresCluster, marked).ok());
  EXPECT_EQ(store->Get(kPostgresCluster, {"default", "a"}).status().code(), Code::kNotFound);
}

TEST(LocalStoreTest, DeletePreconditions) {
  auto store = MemoryStore();
  Json c = store->Create(kPostgresCluster, Cluster("a")).value();
  DeleteOptions wrong_uid;
  wrong_uid.precondition_uid = "nope";
  EXPECT_EQ(store->Delete(kPostgresCluster, {"default", "a"}, wrong_uid).code(), Code::kConflict);
  DeleteOptions right;
  right.precondition_uid = meta::Uid(c);
  right.precondition_resource_version = meta::ResourceVersion(c);
  EXPECT_TRUE(store->Delete(kPostgresCluster, {"default", "a"}, right).ok());
}

TEST(LocalStoreTest, GarbageCollectionCascadesAndSparesUnownedObjects) {
  auto store = MemoryStore();
  Json cluster = store->Create(kPostgresCluster, Cluster("db")).value();
  Json pod = Pod("db-1");
  pod["metadata"]["ownerReferences"] = Json::array({meta::ControllerRefTo(cluster)});
  Json pod_created = store->Create(kPod, pod).value();
  Json cm = {{"metadata", {{"name", "db-1-config"},
                           {"ownerReferences", Json::array({meta::ControllerRefTo(pod_created)})}}}};
  ASSERT_TRUE(store->Create(kConfigMap, cm).ok());
  Json pvc = {{"metadata", {{"name", "db-1"}}}, {"spec", Json::object()}};
  ASSERT_TRUE(store->Create(kPersistentVolumeClaim, pvc).ok());
  Json secret = {{"metadata", {{"name", "db-superuser"},
                               {"ownerReferences", Json::array({meta::ControllerRefTo(cluster)})}}},
                 {"stringData", {{"password", "x"}}}};
  ASSERT_TRUE(store->Create(kSecret, secret).ok());

  ASSERT_TRUE(store->Delete(kPostgresCluster, {"default", "db"}).ok());
  EXPECT_EQ(store->Get(kPod, {"default", "db-1"}).status().code(), Code::kNotFound);
  EXPECT_EQ(store->Get(kConfigMap, {"default", "db-1-config"}).status().code(), Code::kNotFound);
  EXPECT_EQ(store->Get(kSecret, {"default", "db-superuser"}).status().code(), Code::kNotFound);
  EXPECT_TRUE(store->Get(kPersistentVolumeClaim, {"default", "db-1"}).ok());
}

TEST(LocalStoreTest, DependentWithAnotherLiveOwnerSurvives) {
  auto store = MemoryStore();
  Json a = store->Create(kPostgresCluster, Cluster("a")).value();
  Json b = store->Create(kPostgresCluster, Cluster("b")).value();
  Json cm = {{"metadata", {{"name", "shared"},
                           {"ownerReferences",
                            Json::array({meta::ControllerRefTo(a), meta::ControllerRefTo(b)})}}}};
  ASSERT_TRUE(store->Create(kConfigMap, cm).ok());
  ASSERT_TRUE(store->Delete(kPostgresCluster, {"default", "a"}).ok());
  EXPECT_TRUE(store->Get(kConfigMap, {"default", "shared"}).ok());
  ASSERT_TRUE(store->Delete(kPostgresCluster, {"default", "b"}).ok());
  EXPECT_FALSE(store->Get(kConfigMap, {"default", "shared"}).ok());
}

TEST(LocalStoreTest, OrphanPropagationKeepsDependents) {
  auto store = MemoryStore();
  Json a = store->Create(kPostgresCluster, Cluster("a")).value();
  Json cm = {{"metadata", {{"name", "c"}, {"ownerReferences", Json::array({meta::ControllerRefTo(a)})}}}};
  ASSERT_TRUE(store->Create(kConfigMap, cm).ok());
  DeleteOptions orphan;
  orphan.propagation = PropagationPolicy::kOrphan;
  ASSERT_TRUE(store->Delete(kPostgresCluster, {"default", "a"}, orphan).ok());
  auto kept = store->Get(kConfigMap, {"default", "c"});
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(meta::OwnerRefs(*kept).empty());
}

TEST(LocalStoreTest, SecretStringDataIsFoldedIntoData) {
  auto store = MemoryStore();
  Json secret = {{"metadata", {{"name", "s"}}},
                 {"data", {{"a", Base64Encode("one")}}},
                 {"stringData", {{"b", "two"}}}};
  Json created = store->Create(kSecret, secret).value();
  EXPECT_FALSE(created.contains("stringData"));
  EXPECT_EQ(created["data"]["a"], Base64Encode("one"));
  EXPECT_EQ(created["data"]["b"], Base64Encode("two"));
  Json bad = {{"metadata", {{"name", "t"}}}, {"data", {{"a", "not base64!"}}}};
  auto refused = store->Create(kSecret, bad);
  EXPECT_EQ(refused.status().code(), Code::kInvalid);
  EXPECT_EQ(refused.status().message().find("not base64!"), std::string::npos);
}

TEST(LocalStoreTest, ServicesGetClusterIpsFromTheBlock) {
  auto store = MemoryStore();
  Json svc = {{"metadata", {{"name", "db-rw"}}}, {"spec", {{"ports", Json::array()}}}};
  Json a = store->Create(kService, svc).value();
  svc["metadata"]["name"] = "db-ro";
  Json b = store->Create(kService, svc).value();
  std::string ip_a = a["spec"]["clusterIP"];
  std::string ip_b = b["spec"]["clusterIP"];
  EXPECT_EQ(ip_a, "127.0.10.129");
  EXPECT_NE(ip_a, ip_b);
  // An update without clusterIP keeps it; a different one is refused.
  a["spec"].erase("clusterIP");
  EXPECT_EQ(store->Update(kService, a).value()["spec"]["clusterIP"], ip_a);
  Json moved = store->Get(kService, {"default", "db-rw"}).value();
  moved["spec"]["clusterIP"] = ip_b;
  EXPECT_EQ(store->Update(kService, moved).status().code(), Code::kInvalid);
  // Deleting frees the address for the next Service.
  ASSERT_TRUE(store->Delete(kService, {"default", "db-rw"}).ok());
  svc["metadata"]["name"] = "db-r";
  EXPECT_EQ(store->Create(kService, svc).value()["spec"]["clusterIP"], ip_a);
  Json headless = {{"metadata", {{"name", "h"}}}, {"spec", {{"clusterIP", "None"}}}};
  EXPECT_EQ(store->Create(kService, headless).value()["spec"]["clusterIP"], "None");
}

TEST(LocalStoreTest, BindingSetsNodeNameOnce) {
  auto store = MemoryStore();
  ASSERT_TRUE(store->Create(kPod, Pod("p")).ok());
  Json binding = {{"apiVersion", "v1"}, {"kind", "Binding"},
                  {"metadata", {{"name", "p"}}}, {"target", {{"kind", "Node"}, {"name", "n1"}}}};
  ASSERT_TRUE(store->CreateSubresource(kPod, {"default", "p"}, "binding", binding).ok());
  EXPECT_EQ(store->Get(kPod, {"default", "p"}).value()["spec"]["nodeName"], "n1");
  EXPECT_EQ(store->CreateSubresource(kPod, {"default", "p"}, "binding", binding).status().code(),
            Code::kConflict);
  EXPECT_EQ(store->CreateSubresource(kPod, {"default", "p"}, "eviction", binding).status().code(),
            Code::kInvalid);
}

TEST(LocalStoreTest, BoundPodsAreDeletedGracefully) {
  auto store = MemoryStore();
  Json pod = Pod("p");
  pod["spec"]["nodeName"] = "n1";
  pod["spec"]["terminationGracePeriodSeconds"] = 10;
  ASSERT_TRUE(store->Create(kPod, pod).ok());
  ASSERT_TRUE(store->Delete(kPod, {"default", "p"}).ok());
  Json terminating = store->Get(kPod, {"default", "p"}).value();
  EXPECT_TRUE(meta::IsBeingDeleted(terminating));
  EXPECT_EQ(terminating["metadata"]["deletionGracePeriodSeconds"], 10);
  DeleteOptions now;
  now.grace_period_seconds = 0;
  ASSERT_TRUE(store->Delete(kPod, {"default", "p"}, now).ok());
  EXPECT_EQ(store->Get(kPod, {"default", "p"}).status().code(), Code::kNotFound);
  // Unbound pods go at once.
  ASSERT_TRUE(store->Create(kPod, Pod("q")).ok());
  ASSERT_TRUE(store->Delete(kPod, {"default", "q"}).ok());
  EXPECT_EQ(store->Get(kPod, {"default", "q"}).status().code(), Code::kNotFound);
}

std::vector<WatchEvent> Drain(WatchStream& stream) {
  std::vector<WatchEvent> out;
  WatchEvent e;
  while (stream.Next(&e, std::chrono::milliseconds(50)).ok()) out.push_back(e);
  return out;
}

TEST(LocalStoreTest, WatchDeliversChangesAsTheyHappen) {
  auto store = MemoryStore();
  WatchOptions options;
  options.resource_version = std::to_string(store->CurrentResourceVersion());
  auto watch = store->Watch(kPostgresCluster, "default", options);
  ASSERT_TRUE(watch.ok());
  Json c = store->Create(kPostgresCluster, Cluster("a")).value();
  c["spec"]["replicas"] = 1;
  ASSERT_TRUE(store->Update(kPostgresCluster, c).ok());
  ASSERT_TRUE(store->Delete(kPostgresCluster, {"default", "a"}).ok());
  auto events = Drain(**watch);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].type, WatchEventType::kAdded);
  EXPECT_EQ(events[1].type, WatchEventType::kModified);
  EXPECT_EQ(events[2].type, WatchEventType::kDeleted);
  EXPECT_EQ(Rv(events[2].object), store->CurrentResourceVersion());
  WatchEvent e;
  EXPECT_EQ((*watch)->Next(&e, std::chrono::milliseconds(10)).code(), Code::kTimeout);
  (*watch)->Cancel();
  EXPECT_EQ((*watch)->Next(&e, std::chrono::milliseconds(10)).code(), Code::kCancelled);
}

TEST(LocalStoreTest, WatchWithoutVersionStartsWithSyntheticAdds) {
  auto store = MemoryStore();
  ASSERT_TRUE(store->Create(kPostgresCluster, Cluster("a")).ok());
  ASSERT_TRUE(store->Create(kPostgresCluster, Cluster("b")).ok());
  auto watch = store->Watch(kPostgresCluster, "", {});
  ASSERT_TRUE(watch.ok());
  auto events = Drain(**watch);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, WatchEventType::kAdded);
}

TEST(LocalStoreTest, WatchResumeReplaysMissedEvents) {
  auto store = MemoryStore();
  Json a = store->Create(kPostgresCluster, Cluster("a")).value();
  ASSERT_TRUE(store->Create(kPostgresCluster, Cluster("b")).ok());
  ASSERT_TRUE(store->Create(kPod, Pod("p")).ok());  // other resources are not replayed
  WatchOptions options;
  options.resource_version = meta::ResourceVersion(a);
  auto watch = store->Watch(kPostgresCluster, "", options);
  ASSERT_TRUE(watch.ok());
  auto events = Drain(**watch);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(meta::Name(events[0].object), "b");
}

TEST(LocalStoreTest, WatchFromBeyondTheHistoryIsGone) {
  LocalStoreOptions options;
  options.history_size = 2;
  auto store = LocalStore::Open(options).value();
  Json first = store->Create(kConfigMap, {{"metadata", {{"name", "a"}}}}).value();
  for (const char* n : {"b", "c", "d"}) {
    ASSERT_TRUE(store->Create(kConfigMap, {{"metadata", {{"name", n}}}}).ok());
  }
  WatchOptions old;
  old.resource_version = meta::ResourceVersion(first);
  EXPECT_EQ(store->Watch(kConfigMap, "", old).status().code(), Code::kGone);
  WatchOptions recent;
  recent.resource_version = std::to_string(store->CurrentResourceVersion() - 1);
  EXPECT_TRUE(store->Watch(kConfigMap, "", recent).ok());
}

TEST(LocalStoreTest, WatchSeesObjectsEnterAndLeaveItsSelector) {
  auto store = MemoryStore();
  WatchOptions options;
  options.label_selector = "petrel.dev/role=primary";
  options.resource_version = std::to_string(store->CurrentResourceVersion());
  auto watch = store->Watch(kPod, "default", options);
  ASSERT_TRUE(watch.ok());
  Json p = store->Create(kPod, Pod("p", {{"petrel.dev/role", "replica"}})).value();
  p["metadata"]["labels"]["petrel.dev/role"] = "primary";
  p = store->Update(kPod, p).value();
  p["metadata"]["labels"]["petrel.dev/role"] = "replica";
  p = store->Update(kPod, p).value();
  auto events = Drain(**watch);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, WatchEventType::kAdded);
  EXPECT_EQ(events[1].type, WatchEventType::kDeleted);
}

TEST(LocalStoreTest, WatchEndsAfterItsTimeout) {
  FakeClock clock;
  auto store = MemoryStore(&clock);
  WatchOptions options;
  options.timeout_seconds = 5;
  options.resource_version = "1";
  auto watch = store->Watch(kPod, "", options).value();
  WatchEvent e;
  EXPECT_EQ(watch->Next(&e, std::chrono::milliseconds(10)).code(), Code::kTimeout);
  clock.Advance(std::chrono::seconds(6));
  EXPECT_EQ(watch->Next(&e, std::chrono::milliseconds(500)).code(), Code::kUnavailable);
}

TEST(LocalStoreTest, WatchOutlivingTheStoreEnds) {
  auto store = MemoryStore();
  auto watch = store->Watch(kPod, "", {}).value();
  store.reset();
  WatchEvent e;
  EXPECT_EQ(watch->Next(&e, std::chrono::milliseconds(100)).code(), Code::kUnavailable);
}

TEST(LocalStoreTest, EventsAreCappedOldestFirst) {
  auto store = MemoryStore();
  for (size_t i = 0; i <= LocalStore::kMaxEvents; ++i) {
    Json event = {{"metadata", {{"name", "e" + std::to_string(i)}}}};
    ASSERT_TRUE(store->Create(resources::kEvent, event).ok());
  }
  EXPECT_EQ(store->List(resources::kEvent, "", {})->items.size(), LocalStore::kMaxEvents);
  EXPECT_FALSE(store->Get(resources::kEvent, {"default", "e0"}).ok());
}

TEST(LocalStoreTest, StateSurvivesARestart) {
  TempDir dir;
  LocalStoreOptions options;
  options.state_dir = dir.path();
  std::string uid;
  int64_t rv = 0;
  {
    auto store = LocalStore::Open(options).value();
    uid = meta::Uid(store->Create(kPostgresCluster, Cluster("a")).value());
    Json svc = {{"metadata", {{"name", "s"}}}, {"spec", Json::object()}};
    ASSERT_TRUE(store->Create(kService, svc).ok());
    rv = store->CurrentResourceVersion();
  }
  auto store = LocalStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto back = (*store)->Get(kPostgresCluster, {"default", "a"});
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(meta::Uid(*back), uid);
  EXPECT_EQ((*store)->CurrentResourceVersion(), rv);
  // Versions keep increasing; the old history is gone, so resuming from it is Gone.
  Json svc2 = {{"metadata", {{"name", "s2"}}}, {"spec", Json::object()}};
  Json created = (*store)->Create(kService, svc2).value();
  EXPECT_GT(Rv(created), rv);
  EXPECT_NE(created["spec"]["clusterIP"], (*store)->Get(kService, {"default", "s"}).value()["spec"]["clusterIP"]);
  WatchOptions resume;
  resume.resource_version = std::to_string(rv - 1);
  EXPECT_EQ((*store)->Watch(kPostgresCluster, "", resume).status().code(), Code::kGone);
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() / "store.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(LocalStoreTest, SecretsAreMaterialisedAsPrivateFiles) {
  TempDir dir;
  LocalStoreOptions options;
  options.state_dir = dir.path();
  auto store = LocalStore::Open(options).value();
  Json secret = {{"metadata", {{"name", "db-superuser"}, {"namespace", "apps"}}},
                 {"stringData", {{"username", "postgres"}, {"password", "s3cret"}}}};
  Json created = store->Create(kSecret, secret).value();
  fs::path sdir = dir.path() / "secrets" / "apps" / "db-superuser";
  EXPECT_EQ(ReadFile(sdir / "password").value(), "s3cret");
  struct stat st {};
  ASSERT_EQ(::stat((sdir / "password").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(sdir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((dir.path() / "secrets").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // A removed key disappears; deleting the Secret removes its directory.
  created["data"].erase("username");
  ASSERT_TRUE(store->Update(kSecret, created).ok());
  EXPECT_FALSE(fs::exists(sdir / "username"));
  ASSERT_TRUE(store->Delete(kSecret, {"apps", "db-superuser"}).ok());
  EXPECT_FALSE(fs::exists(sdir));
}

TEST(LocalStoreTest, SecondStoreOnTheSameDirectoryNamesTheHolder) {
  TempDir dir;
  LocalStoreOptions options;
  options.state_dir = dir.path();
  auto first = LocalStore::Open(options);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(StateDirLock::HolderPid(dir.path()), ::getpid());
  auto second = LocalStore::Open(options);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("pid " + std::to_string(::getpid())),
            std::string::npos)
      << second.status().message();
  first->reset();
  EXPECT_EQ(StateDirLock::HolderPid(dir.path()), 0);
  EXPECT_TRUE(LocalStore::Open(options).ok());
}

}  // namespace
}  // namespace petrel
