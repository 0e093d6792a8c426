#include "controller/informer.h"

#include <thread>

#include <gtest/gtest.h>

#include "tests/controller/fake_kube_client.h"

namespace petrel {
namespace {
using namespace std::chrono_literals;
using testing_support::FakeKubeClient;

const ResourceType& kType = resources::kPostgresCluster;

Json Obj(const std::string& ns, const std::string& name,
         std::map<std::string, std::string> labels = {}) {
  Json o = {{"apiVersion", "petrel.dev/v1alpha1"},
            {"kind", "PostgresCluster"},
            {"metadata", {{"namespace", ns}, {"name", name}}},
            {"spec", {{"replicas", 1}}}};
  if (!labels.empty()) o["metadata"]["labels"] = labels;
  return o;
}

template <typename Pred>
bool WaitUntil(Pred pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// Records handler calls as "add ns/name", "update ns/name", "delete ns/name".
struct Recorder {
  std::mutex mu;
  std::vector<std::string> events;
  EventHandler Handler() {
    return EventHandler{
        [this](const ObjectPtr& o) { Push("add " + meta::Key(*o).ToString()); },
        [this](const ObjectPtr&, const ObjectPtr& o) { Push("update " + meta::Key(*o).ToString()); },
        [this](const ObjectPtr& o) { Push("delete " + meta::Key(*o).ToString()); }};
  }
  void Push(std::string e) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(std::move(e));
  }
  std::vector<std::string> Events() {
    std::lock_guard<std::mutex> lock(mu);
    return events;
  }
  bool Has(const std::string& e) {
    auto ev = Events();
    return std::find(ev.begin(), ev.end(), e) != ev.end();
  }
};

class InformerTest : public testing::Test {
 protected:
  InformerOptions Options() {
    InformerOptions o;
    o.type = kType;
    o.metrics = &metrics_;
    o.backoff_initial = 1ms;
    o.backoff_max = 20ms;
    o.poll_interval = 50ms;
    return o;
  }
  FakeKubeClient fake_;
  MetricsRegistry metrics_;
};

TEST_F(InformerTest, ListsThenWatchesAndReportsAddUpdateDelete) {
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "one")).ok());
  SharedInformer informer(fake_, Options());
  Recorder rec;
  informer.AddEventHandler(rec.Handler());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  EXPECT_TRUE(rec.Has("add a/one"));

  auto two = fake_.Create(kType, Obj("a", "two"));
  ASSERT_TRUE(two.ok());
  Json changed = *two;
  changed["spec"]["replicas"] = 3;
  ASSERT_TRUE(fake_.Update(kType, changed).ok());
  ASSERT_TRUE(fake_.Delete(kType, ObjectKey{"a", "one"}).ok());
  ASSERT_TRUE(WaitUntil([&] { return rec.Events().size() == 4; }));
  EXPECT_EQ(rec.Events(),
            (std::vector<std::string>{"add a/one", "add a/two", "update a/two", "delete a/one"}));
  EXPECT_EQ(informer.Get(ObjectKey{"a", "one"}), nullptr);
  ASSERT_NE(informer.Get(ObjectKey{"a", "two"}), nullptr);
  EXPECT_EQ((*informer.Get(ObjectKey{"a", "two"}))["spec"]["replicas"], 3);
  EXPECT_EQ(fake_.list_calls, 1);
}

TEST_F(InformerTest, PagedListCollectsEveryPage) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fake_.Create(kType, Obj("a", "o" + std::to_string(i))).ok());
  InformerOptions o = Options();
  o.page_size = 2;
  SharedInformer informer(fake_, o);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  EXPECT_EQ(informer.Size(), 5u);
  EXPECT_EQ(fake_.list_calls, 3);
}

TEST_F(InformerTest, ReconnectResumesFromTheLastBookmarkWithoutRelisting) {
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "one")).ok());
  SharedInformer informer(fake_, Options());
  Recorder rec;
  informer.AddEventHandler(rec.Handler());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  ASSERT_TRUE(WaitUntil([&] { return fake_.watch_calls >= 1; }));
  fake_.Bookmark(kType);
  std::string bookmark = std::to_string(fake_.CurrentResourceVersion());
  ASSERT_TRUE(WaitUntil([&] { return informer.LastResourceVersion() == bookmark; }));

  fake_.fail_watches = 2;  // the first reconnects fail: the informer backs off and retries
  fake_.DisconnectWatches();
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "two")).ok());
  ASSERT_TRUE(WaitUntil([&] { return rec.Has("add a/two"); }));
  EXPECT_EQ(fake_.list_calls, 1) << "a reconnect must resume, not relist";
  auto resumes = fake_.WatchResumePoints();
  ASSERT_GE(resumes.size(), 2u);
  EXPECT_EQ(std::to_string(resumes.back()), bookmark);
  EXPECT_EQ(rec.Events(), (std::vector<std::string>{"add a/one", "add a/two"}));
}

TEST_F(InformerTest, GoneRelistsAndReportsObjectsDeletedDuringTheGap) {
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "kept")).ok());
  auto changed = fake_.Create(kType, Obj("a", "changed"));
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "deleted")).ok());
  ASSERT_TRUE(changed.ok());
  SharedInformer informer(fake_, Options());
  Recorder rec;
  informer.AddEventHandler(rec.Handler());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  ASSERT_TRUE(WaitUntil([&] { return fake_.watch_calls >= 1; }));

  // Cut the informer off, change things, and compact the history it would resume from.
  fake_.fail_watches = 1000000;
  fake_.DisconnectWatches();
  ASSERT_TRUE(fake_.Delete(kType, ObjectKey{"a", "deleted"}).ok());
  Json c = *changed;
  c["spec"]["replicas"] = 2;
  ASSERT_TRUE(fake_.Update(kType, c).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "new")).ok());
  fake_.Compact();
  fake_.fail_watches = 0;

  ASSERT_TRUE(WaitUntil([&] { return rec.Has("delete a/deleted"); }));
  ASSERT_TRUE(WaitUntil([&] { return rec.Has("add a/new"); }));
  EXPECT_TRUE(rec.Has("update a/changed"));
  EXPECT_FALSE(rec.Has("update a/kept")) << "unchanged objects are not reported again";
  EXPECT_EQ(fake_.list_calls, 2);
  EXPECT_EQ(informer.Size(), 3u);
  EXPECT_EQ(informer.Get(ObjectKey{"a", "deleted"}), nullptr);
  EXPECT_NE(metrics_.Expose().find("informer_relists_after_gone_total{resource=\"postgresclusters."
                                   "petrel.dev\",namespace=\"\"} 1"),
            std::string::npos);
}

TEST_F(InformerTest, NamespaceAndLabelSelectorLimitWhatIsCached) {
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "match", {{"app", "x"}})).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "other", {{"app", "y"}})).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("b", "match", {{"app", "x"}})).ok());
  InformerOptions o = Options();
  o.namespace_ = "a";
  o.label_selector = "app=x";
  SharedInformer informer(fake_, o);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "later", {{"app", "x"}})).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("b", "later", {{"app", "x"}})).ok());
  ASSERT_TRUE(WaitUntil([&] { return informer.Size() == 2; }));
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(informer.Size(), 2u);
  EXPECT_NE(informer.Get(ObjectKey{"a", "later"}), nullptr);
  EXPECT_EQ(informer.Get(ObjectKey{"b", "later"}), nullptr);
}

TEST_F(InformerTest, ListFiltersByNamespaceAndSelectorInKeyOrder) {
  ASSERT_TRUE(fake_.Create(kType, Obj("b", "y", {{"role", "primary"}})).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "z", {{"role", "replica"}})).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "x", {{"role", "primary"}})).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("ab", "w", {{"role", "primary"}})).ok());
  SharedInformer informer(fake_, Options());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  auto names = [](const std::vector<ObjectPtr>& v) {
    std::vector<std::string> out;
    for (auto& o : v) out.push_back(meta::Key(*o).ToString());
    return out;
  };
  EXPECT_EQ(names(informer.List()), (std::vector<std::string>{"a/x", "a/z", "ab/w", "b/y"}));
  EXPECT_EQ(names(informer.List("a")), (std::vector<std::string>{"a/x", "a/z"}));
  EXPECT_EQ(names(informer.List("", LabelSelector::FromMap({{"role", "primary"}}))),
            (std::vector<std::string>{"a/x", "ab/w", "b/y"}));
  EXPECT_EQ(names(informer.List("c")), std::vector<std::string>{});
}

TEST_F(InformerTest, IndexesFollowUpdatesAndDeletes) {
  Json owned = Obj("a", "pod-1");
  owned["metadata"]["ownerReferences"] =
      Json::array({{{"apiVersion", "petrel.dev/v1alpha1"}, {"kind", "PostgresCluster"},
                    {"name", "db"}, {"uid", "uid-db"}, {"controller", true}}});
  ASSERT_TRUE(fake_.Create(kType, owned).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "pod-2", {{"tier", "gold"}})).ok());
  SharedInformer informer(fake_, Options());
  informer.AddIndex("tier", [](const Json& o) {
    std::string t = meta::Label(o, "tier");
    return t.empty() ? std::vector<std::string>{} : std::vector<std::string>{t};
  });
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  ASSERT_EQ(informer.ByIndex(kIndexControllerUid, "uid-db").size(), 1u);
  ASSERT_EQ(informer.ByIndex("tier", "gold").size(), 1u);

  Json moved = *fake_.Get(kType, ObjectKey{"a", "pod-2"});
  moved["metadata"]["labels"]["tier"] = "silver";
  ASSERT_TRUE(fake_.Update(kType, moved).ok());
  ASSERT_TRUE(fake_.Delete(kType, ObjectKey{"a", "pod-1"}).ok());
  ASSERT_TRUE(WaitUntil([&] { return informer.ByIndex("tier", "silver").size() == 1; }));
  ASSERT_TRUE(WaitUntil([&] { return informer.ByIndex(kIndexControllerUid, "uid-db").empty(); }));
  EXPECT_TRUE(informer.ByIndex("tier", "gold").empty());
  EXPECT_TRUE(informer.ByIndex("no-such-index", "x").empty());
}

TEST_F(InformerTest, ManagedFieldsAreStrippedFromCachedObjects) {
  Json o = Obj("a", "one");
  o["metadata"]["managedFields"] = Json::array({{{"manager", "kubectl"}}});
  ASSERT_TRUE(fake_.Create(kType, o).ok());
  SharedInformer informer(fake_, Options());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  ObjectPtr cached = informer.Get(ObjectKey{"a", "one"});
  ASSERT_NE(cached, nullptr);
  EXPECT_FALSE((*cached)["metadata"].contains("managedFields"));
}

TEST_F(InformerTest, LateHandlerFirstReceivesEveryCachedObject) {
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "one")).ok());
  ASSERT_TRUE(fake_.Create(kType, Obj("a", "two")).ok());
  SharedInformer informer(fake_, Options());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(5s));
  Recorder rec;
  informer.AddEventHandler(rec.Handler());
  EXPECT_EQ(rec.Events(), (std::vector<std::string>{"add a/one", "add a/two"}));
}

TEST_F(InformerTest, FailedListsAreRetriedUntilSynced) {
  fake_.fail_lists = 3;
  SharedInformer informer(fake_, Options());
  informer.Start();
  EXPECT_TRUE(informer.WaitForSync(5s));
  EXPECT_EQ(fake_.list_calls, 4);
}

TEST_F(InformerTest, StopEndsABlockedWatchAndWaitForSyncReturnsFalseAfterStop) {
  fake_.fail_lists = 1000000;
  SharedInformer informer(fake_, Options());
  informer.Start();
  informer.Stop();
  EXPECT_FALSE(informer.HasSynced());
  EXPECT_FALSE(informer.WaitForSync(5s));
}

}  // namespace
}  // namespace petrel
