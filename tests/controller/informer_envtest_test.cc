// The informer against a real kube-apiserver: it must converge after the server restarts and,
// after its resume point was compacted away (Gone), relist and report what was deleted in the
// gap.
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "controller/informer.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {
using namespace std::chrono_literals;

template <typename Pred>
bool WaitUntil(Pred pred, std::chrono::seconds limit = 60s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

Json ConfigMap(const std::string& ns, const std::string& name, const std::string& value) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"namespace", ns}, {"name", name}}},
          {"data", {{"v", value}}}};
}

// Forwards to a real client; Partition() cuts open watches and refuses new ones until Heal().
class PartitionableClient : public KubeClient {
 public:
  explicit PartitionableClient(KubeClient& inner) : inner_(inner) {}
  Result<Json> Get(const ResourceType& t, const ObjectKey& k) override { return inner_.Get(t, k); }
  Result<ObjectList> List(const ResourceType& t, const std::string& ns,
                          const ListOptions& o) override {
    if (partitioned_) return UnavailableError("partitioned");
    return inner_.List(t, ns, o);
  }
  Result<Json> Create(const ResourceType& t, const Json& o) override { return inner_.Create(t, o); }
  Result<Json> Update(const ResourceType& t, const Json& o, Subresource s) override {
    return inner_.Update(t, o, s);
  }
  Status Delete(const ResourceType& t, const ObjectKey& k, const DeleteOptions& o) override {
    return inner_.Delete(t, k, o);
  }
  Result<Json> Patch(const ResourceType& t, const ObjectKey& k, PatchType p, const Json& j,
                     const PatchOptions& o) override {
    return inner_.Patch(t, k, p, j, o);
  }
  Result<Json> CreateSubresource(const ResourceType& t, const ObjectKey& k, const std::string& s,
                                 const Json& b) override {
    return inner_.CreateSubresource(t, k, s, b);
  }
  Result<std::unique_ptr<WatchStream>> Watch(const ResourceType& t, const std::string& ns,
                                             const WatchOptions& o) override {
    if (partitioned_) return UnavailableError("partitioned");
    PETREL_ASSIGN_OR_RETURN(auto stream, inner_.Watch(t, ns, o));
    auto wrapped = std::make_unique<Stream>(this, std::move(stream));
    if (partitioned_) wrapped->inner->Cancel();  // partitioned while this watch was opening
    return std::unique_ptr<WatchStream>(std::move(wrapped));
  }
  bool HasOpenWatch() {
    std::lock_guard<std::mutex> lock(mu_);
    return !open_.empty();
  }

  void Partition() {
    partitioned_ = true;
    std::lock_guard<std::mutex> lock(mu_);
    for (Stream* s : open_) s->inner->Cancel();
  }
  void Heal() { partitioned_ = false; }

 private:
  struct Stream : WatchStream {
    Stream(PartitionableClient* owner, std::unique_ptr<WatchStream> in)
        : owner(owner), inner(std::move(in)) {
      std::lock_guard<std::mutex> lock(owner->mu_);
      owner->open_.insert(this);
    }
    ~Stream() override {
      std::lock_guard<std::mutex> lock(owner->mu_);
      owner->open_.erase(this);
    }
    Status Next(WatchEvent* e, std::chrono::milliseconds timeout) override {
      Status s = inner->Next(e, timeout);
      // A cut connection looks like a dropped stream, not like our own Stop().
      if (s.code() == Code::kCancelled) return UnavailableError("connection cut");
      return s;
    }
    void Cancel() override { inner->Cancel(); }
    PartitionableClient* owner;
    std::unique_ptr<WatchStream> inner;
  };

  KubeClient& inner_;
  std::atomic<bool> partitioned_{false};
  std::mutex mu_;
  std::set<Stream*> open_;
};

// Keys and resourceVersions, from the cache and from a fresh list.
std::map<std::string, std::string> CacheState(const SharedInformer& informer) {
  std::map<std::string, std::string> out;
  for (const ObjectPtr& o : informer.List()) out[meta::Name(*o)] = meta::ResourceVersion(*o);
  return out;
}
std::map<std::string, std::string> ApiState(KubeClient& client, const std::string& ns) {
  std::map<std::string, std::string> out;
  auto listed = client.ListAll(resources::kConfigMap, ns, {});
  if (!listed.ok()) return {{"<error>", listed.status().ToString()}};
  for (const Json& o : listed->items) out[meta::Name(o)] = meta::ResourceVersion(o);
  return out;
}

class InformerEnvtest : public EnvtestTest {
 protected:
  InformerOptions Options() {
    InformerOptions o;
    o.type = resources::kConfigMap;
    o.namespace_ = ns_;
    o.page_size = 2;  // exercise paging on a real server
    o.backoff_initial = 50ms;
    o.backoff_max = 1s;
    o.poll_interval = 1s;
    o.metrics = &metrics_;
    return o;
  }
  MetricsRegistry metrics_;
};

TEST_F(InformerEnvtest, CacheConvergesAfterAnApiServerRestart) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "cm-" + std::to_string(i), "a")).ok());
  }
  SharedInformer informer(client(), Options());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(30s));
  EXPECT_EQ(CacheState(informer), ApiState(client(), ns_));

  ASSERT_TRUE(env().RestartApiServer().ok());
  ASSERT_TRUE(client().Delete(resources::kConfigMap, ObjectKey{ns_, "cm-0"}).ok());
  auto cm1 = client().Get(resources::kConfigMap, ObjectKey{ns_, "cm-1"});
  ASSERT_TRUE(cm1.ok());
  Json changed = *cm1;
  changed["data"]["v"] = "b";
  ASSERT_TRUE(client().Update(resources::kConfigMap, changed).ok());
  ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "cm-new", "a")).ok());

  EXPECT_TRUE(WaitUntil([&] { return CacheState(informer) == ApiState(client(), ns_); }))
      << "cache never converged after the restart";
  ObjectPtr cached = informer.Get(ObjectKey{ns_, "cm-1"});
  ASSERT_NE(cached, nullptr);
  EXPECT_EQ((*cached)["data"]["v"], "b");
  informer.Stop();
}

TEST_F(InformerEnvtest, RelistAfterGoneRemovesObjectsDeletedDuringTheGap) {
  for (const char* name : {"kept", "deleted", "changed"}) {
    ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, name, "a")).ok());
  }
  PartitionableClient partitionable(client());
  SharedInformer informer(partitionable, Options());
  std::mutex mu;
  std::vector<std::string> deletes;
  informer.AddEventHandler(EventHandler{nullptr, nullptr, [&](const ObjectPtr& o) {
                                          std::lock_guard<std::mutex> lock(mu);
                                          deletes.push_back(meta::Name(*o));
                                        }});
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(30s));
  ASSERT_TRUE(WaitUntil([&] { return partitionable.HasOpenWatch(); }));
  std::string resume_from = informer.LastResourceVersion();

  partitionable.Partition();
  ASSERT_TRUE(client().Delete(resources::kConfigMap, ObjectKey{ns_, "deleted"}).ok());
  auto changed = client().Get(resources::kConfigMap, ObjectKey{ns_, "changed"});
  ASSERT_TRUE(changed.ok());
  Json c = *changed;
  c["data"]["v"] = "b";
  ASSERT_TRUE(client().Update(resources::kConfigMap, c).ok());
  ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "created", "a")).ok());
  // Other writes move etcd's revision on; compaction then makes resume_from too old.
  ASSERT_TRUE(client().Create(resources::kConfigMap, ConfigMap(ns_, "filler", "a")).ok());
  ASSERT_TRUE(env().CompactEtcd().ok());
  EXPECT_EQ(informer.Get(ObjectKey{ns_, "deleted"}) != nullptr, true)
      << "while partitioned the cache still holds the old state";
  partitionable.Heal();

  EXPECT_TRUE(WaitUntil([&] { return CacheState(informer) == ApiState(client(), ns_); }));
  EXPECT_EQ(informer.Get(ObjectKey{ns_, "deleted"}), nullptr);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(deletes, std::vector<std::string>{"deleted"});
  }
  EXPECT_NE(metrics_.Expose().find("informer_relists_after_gone_total{resource=\"configmaps\","
                                   "namespace=\"" + ns_ + "\"} 1"),
            std::string::npos)
      << "expected exactly one relist after Gone (resumed from " << resume_from << ")";
  informer.Stop();
}

}  // namespace
}  // namespace petrel
