// The node agent and the service proxy against a real kube-apiserver (envtest): the same
// code as under petrel local, through HttpKubeClient.
#include <signal.h>

#include <cerrno>

#include <gtest/gtest.h>

#include "local/node_agent.h"
#include "local/service_proxy.h"
#include "tests/local/local_test_util.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

using testing::WaitFor;

class NodeAgentEnvtest : public EnvtestTest {
 protected:
  Json Pod(const std::string& name, bool managed) {
    Json pod = {{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", {{"name", name}, {"namespace", ns_},
                              {"labels", {{"petrel.dev/cluster", "db"}}}}},
                {"spec",
                 {{"terminationGracePeriodSeconds", 5},
                  {"containers", Json::array({{{"name", "main"},
                                               {"image", "none"},
                                               {"command", {"/bin/sh", "-c", "exec sleep 1000"}}}})}}}};
    if (managed) pod["metadata"]["labels"][kManagedByLabel] = kManagedByValue;
    return pod;
  }
  Json Get(const ResourceType& type, const std::string& name) {
    auto o = client().Get(type, {ns_, name});
    return o.ok() ? *o : Json::object();
  }
};

TEST_F(NodeAgentEnvtest, RunsBindsAndFinallyDeletesPodsOnARealApiServer) {
  testing::TempDir dir;
  std::string block = testing::RandomLoopbackBlock();
  auto [pod_block, service_block] = AddressBlock::Parse(block)->Split();
  NodeAgentOptions options;
  options.state_dir = dir.path();
  options.pod_block = pod_block.ToString();
  options.resync = std::chrono::milliseconds(300);
  NodeAgent agent(client(), options);
  ASSERT_TRUE(agent.Start().ok());

  ASSERT_TRUE(client().Create(resources::kPod, Pod("db-1", true)).ok());
  ASSERT_TRUE(client().Create(resources::kPod, Pod("other", false)).ok());
  Json pvc = {{"apiVersion", "v1"}, {"kind", "PersistentVolumeClaim"},
              {"metadata", {{"name", "db-1"}, {"namespace", ns_},
                            {"labels", {{kManagedByLabel, kManagedByValue}}}}},
              {"spec", {{"accessModes", {"ReadWriteOnce"}},
                        {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}};
  ASSERT_TRUE(client().Create(resources::kPersistentVolumeClaim, pvc).ok());

  ASSERT_TRUE(WaitFor([&] {
    Json p = Get(resources::kPod, "db-1");
    return p.value("status", Json::object()).value("phase", "") == "Running";
  }, std::chrono::seconds(30))) << Get(resources::kPod, "db-1").dump();
  Json running = Get(resources::kPod, "db-1");
  EXPECT_EQ(running["spec"]["nodeName"], "petrel-local");
  EXPECT_EQ(running["status"]["podIP"], testing::BlockPrefix(block) + "1");
  std::string id = running["status"]["containerStatuses"][0].value("containerID", "");
  pid_t pid = std::stoi(id.substr(id.rfind('/') + 1));
  EXPECT_TRUE(WaitFor([&] {
    return Get(resources::kPersistentVolumeClaim, "db-1")
               .value("status", Json::object())
               .value("phase", "") == "Bound";
  }));
  EXPECT_FALSE(Get(resources::kPod, "other")["spec"].contains("nodeName"));

  // The leader Service gets a local address published, and routes to the Ready pod.
  ServiceProxyOptions proxy_options;
  proxy_options.mode = AddressMode::kAnnotation;
  proxy_options.address_block = service_block.ToString();
  proxy_options.resync = std::chrono::milliseconds(300);
  ServiceProxy proxy(client(), proxy_options);
  ASSERT_TRUE(proxy.Start().ok());
  Json svc = {{"apiVersion", "v1"}, {"kind", "Service"},
              {"metadata", {{"name", "db-rw"}, {"namespace", ns_}}},
              {"spec", {{"selector", {{"petrel.dev/cluster", "db"}}},
                        {"ports", Json::array({{{"port", 5432}}})}}}};
  ASSERT_TRUE(client().Create(resources::kService, svc).ok());
  ASSERT_TRUE(WaitFor([&] {
    for (const Route& r : proxy.Routes()) {
      if (r.service.name == "db-rw" && r.backends.size() == 1) return true;
    }
    return false;
  }));
  EXPECT_EQ(meta::Annotation(Get(resources::kService, "db-rw"), kLocalAddressAnnotation),
            testing::BlockPrefix(block) + "129");
  proxy.Stop();

  // A real API server deletes a bound Pod gracefully; the agent stops it and finishes.
  ASSERT_TRUE(client().Delete(resources::kPod, {ns_, "db-1"}).ok());
  EXPECT_TRUE(WaitFor([&] {
    return client().Get(resources::kPod, {ns_, "db-1"}).status().code() == Code::kNotFound;
  }, std::chrono::seconds(30)));
  EXPECT_TRUE(::kill(pid, 0) != 0 && errno == ESRCH);
  agent.Stop();
}

}  // namespace
}  // namespace petrel
