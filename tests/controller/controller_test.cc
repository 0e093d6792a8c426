#include "controller/controller.h"

#include <thread>

#include <gtest/gtest.h>

#include "tests/controller/fake_kube_client.h"

namespace petrel {
namespace {
using namespace std::chrono_literals;
using testing_support::FakeKubeClient;

template <typename Pred>
bool WaitUntil(Pred pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

Json Named(const std::string& kind, const std::string& ns, const std::string& name) {
  return {{"kind", kind}, {"metadata", {{"namespace", ns}, {"name", name}}}};
}

Json OwnedBy(Json obj, const std::string& kind, const std::string& owner, bool controller) {
  obj["metadata"]["ownerReferences"] = Json::array(
      {{{"apiVersion", "v1"}, {"kind", kind}, {"name", owner}, {"uid", "u"},
        {"controller", controller}}});
  return obj;
}

// A reconciler scripted per key: returns results from a list, then Done.
class ScriptedReconciler : public Reconciler {
 public:
  Result<ReconcileResult> Reconcile(const ObjectKey& key) override {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(key.ToString());
    auto& script = scripts_[key.ToString()];
    if (script.empty()) return ReconcileResult::Done();
    auto next = script.front();
    script.erase(script.begin());
    if (next == "throw") throw std::runtime_error("boom");
    if (next == "error") return UnavailableError("try later");
    if (next == "terminal") return TerminalError("bad spec");
    if (next == "requeue") return ReconcileResult::RequeueAfter(10ms);
    return ReconcileResult::Done();
  }
  void Script(const std::string& key, std::vector<std::string> steps) {
    std::lock_guard<std::mutex> lock(mu_);
    scripts_[key] = std::move(steps);
  }
  int Calls(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(std::count(calls_.begin(), calls_.end(), key));
  }

 private:
  std::mutex mu_;
  std::vector<std::string> calls_;
  std::map<std::string, std::vector<std::string>> scripts_;
};

TEST(EventMapperTest, MapsSelfOwnersAndCustomReferences) {
  EXPECT_EQ(EnqueueSelf()(Named("Pod", "ns", "p")), (std::vector<ObjectKey>{{"ns", "p"}}));
  auto owner = EnqueueControllerOwner("PostgresCluster");
  EXPECT_EQ(owner(OwnedBy(Named("Pod", "ns", "db-1"), "PostgresCluster", "db", true)),
            (std::vector<ObjectKey>{{"ns", "db"}}));
  EXPECT_TRUE(owner(OwnedBy(Named("Pod", "ns", "db-1"), "StatefulSet", "db", true)).empty());
  EXPECT_TRUE(owner(OwnedBy(Named("Pod", "ns", "db-1"), "PostgresCluster", "db", false)).empty())
      << "only the controller owner counts";
  EXPECT_TRUE(owner(Named("Pod", "ns", "p")).empty());
  auto mapped = EnqueueMapped([](const Json& o) {
    return std::vector<ObjectKey>{{meta::Namespace(o), o["spec"]["clusterRef"]}};
  });
  Json att = Named("PostgresAttachment", "ns", "app");
  att["spec"]["clusterRef"] = "db";
  EXPECT_EQ(mapped(att), (std::vector<ObjectKey>{{"ns", "db"}}));
}

class ControllerTest : public testing::Test {
 protected:
  ControllerOptions Options(int workers = 2) {
    ControllerOptions o;
    o.workers = workers;
    o.metrics = &metrics_;
    o.rate_limiter.base_delay = 1ms;
    return o;
  }
  InformerOptions Informer(const ResourceType& type) {
    InformerOptions o;
    o.type = type;
    o.metrics = &metrics_;
    o.poll_interval = 50ms;
    return o;
  }
  FakeKubeClient fake_;
  MetricsRegistry metrics_;
  std::shared_ptr<ScriptedReconciler> reconciler_ = std::make_shared<ScriptedReconciler>();
};

TEST_F(ControllerTest, ReconcilesPrimaryObjectsAndOwnersOfOwnedObjects) {
  ASSERT_TRUE(fake_.Create(resources::kPostgresCluster, Named("PostgresCluster", "ns", "db")).ok());
  SharedInformer clusters(fake_, Informer(resources::kPostgresCluster));
  SharedInformer pods(fake_, Informer(resources::kPod));
  Controller c("cluster", reconciler_, Options());
  c.Watch(clusters, EnqueueSelf());
  c.Watch(pods, EnqueueControllerOwner("PostgresCluster"));
  clusters.Start();
  pods.Start();
  c.Start();
  ASSERT_TRUE(WaitUntil([&] { return reconciler_->Calls("ns/db") == 1; }));
  ASSERT_TRUE(fake_.Create(resources::kPod,
                           OwnedBy(Named("Pod", "ns", "db-1"), "PostgresCluster", "db", true))
                  .ok());
  ASSERT_TRUE(WaitUntil([&] { return reconciler_->Calls("ns/db") == 2; }));
  EXPECT_EQ(reconciler_->Calls("ns/db-1"), 0);
  clusters.Stop();
  pods.Stop();
  c.Stop();
}

TEST_F(ControllerTest, ErrorsAreRetriedWithBackoffAndSuccessForgetsTheKey) {
  reconciler_->Script("ns/a", {"error", "error", "done"});
  Controller c("test", reconciler_, Options());
  c.queue().Add(ObjectKey{"ns", "a"});
  c.Start();
  ASSERT_TRUE(WaitUntil([&] { return reconciler_->Calls("ns/a") == 3; }));
  ASSERT_TRUE(WaitUntil([&] { return c.queue().NumRequeues(ObjectKey{"ns", "a"}) == 0; }));
  c.Stop();
  std::string text = metrics_.Expose();
  EXPECT_NE(text.find("controller_runtime_reconcile_errors_total{controller=\"test\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("controller_runtime_reconcile_total{controller=\"test\",result=\"success\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("workqueue_retries_total{name=\"test\"} 2\n"), std::string::npos);
}

TEST_F(ControllerTest, RequeueAfterReconcilesAgainLater) {
  reconciler_->Script("ns/a", {"requeue", "requeue", "done"});
  Controller c("test", reconciler_, Options());
  c.queue().Add(ObjectKey{"ns", "a"});
  c.Start();
  ASSERT_TRUE(WaitUntil([&] { return reconciler_->Calls("ns/a") == 3; }));
  c.Stop();
  EXPECT_NE(metrics_.Expose().find(
                "controller_runtime_reconcile_total{controller=\"test\",result=\"requeue_after\"} 2\n"),
            std::string::npos);
}

TEST_F(ControllerTest, TerminalErrorsAreNotRetried) {
  reconciler_->Script("ns/a", {"terminal"});
  reconciler_->Script("ns/b", {"done"});
  Controller c("test", reconciler_, Options(1));
  c.queue().Add(ObjectKey{"ns", "a"});
  c.queue().Add(ObjectKey{"ns", "b"});
  c.Start();
  ASSERT_TRUE(WaitUntil([&] { return reconciler_->Calls("ns/b") == 1; }));
  std::this_thread::sleep_for(30ms);
  c.Stop();
  EXPECT_EQ(reconciler_->Calls("ns/a"), 1);
}

TEST_F(ControllerTest, AThrowingReconcilerIsRetriedAndTheWorkerSurvives) {
  reconciler_->Script("ns/a", {"throw", "done"});
  Controller c("test", reconciler_, Options(1));
  c.queue().Add(ObjectKey{"ns", "a"});
  c.Start();
  ASSERT_TRUE(WaitUntil([&] { return reconciler_->Calls("ns/a") == 2; }));
  c.queue().Add(ObjectKey{"ns", "b"});
  ASSERT_TRUE(WaitUntil([&] { return reconciler_->Calls("ns/b") == 1; }));
  c.Stop();
}

}  // namespace
}  // namespace petrel
