// The node agent with real processes (/bin/sh containers) against the LocalStore.
#include "local/node_agent.h"

#include <signal.h>

#include <atomic>
#include <cerrno>

#include <gtest/gtest.h>

#include "local/files.h"
#include "local/service_proxy.h"
#include "local/store.h"
#include "net/http.h"
#include "tests/local/local_test_util.h"
#include "tests/local/socket_util.h"

namespace petrel {
namespace {

using testing::TempDir;
using testing::WaitFor;

class NodeAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = LocalStore::Open({}).value();
    block_ = testing::RandomLoopbackBlock();
    NodeAgentOptions options;
    options.state_dir = dir_.path();
    options.pod_block = AddressBlock::Parse(block_)->Split().first.ToString();
    options.resync = std::chrono::milliseconds(200);
    options.probe_period = std::chrono::milliseconds(200);
    options.restart_backoff_initial = std::chrono::milliseconds(100);
    options.restart_backoff_max = std::chrono::milliseconds(400);
    agent_ = std::make_unique<NodeAgent>(*store_, options);
    ASSERT_TRUE(agent_->Start().ok());
  }
  void TearDown() override { agent_->Stop(); }

  std::string FirstPodIp() const { return testing::BlockPrefix(block_) + "1"; }

  static Json ManagedPod(const std::string& name, const std::string& script) {
    return {{"metadata",
             {{"name", name}, {"namespace", "default"},
              {"labels", {{kManagedByLabel, kManagedByValue}}}}},
            {"spec",
             {{"terminationGracePeriodSeconds", 10},
              {"containers", Json::array({{{"name", "main"},
                                           {"image", "none"},
                                           {"command", {"/bin/sh", "-c", script}}}})}}}};
  }

  Json PodOr(const std::string& name) {
    auto pod = store_->Get(resources::kPod, {"default", name});
    return pod.ok() ? *pod : Json::object();
  }
  std::string Phase(const std::string& name) {
    return PodOr(name).value("status", Json::object()).value("phase", "");
  }
  bool Ready(const std::string& name) {
    for (const Json& c : PodOr(name).value("status", Json::object()).value("conditions", Json::array())) {
      if (c.value("type", "") == "Ready") return c.value("status", "") == "True";
    }
    return false;
  }
  Json ContainerStatus(const std::string& name) {
    Json statuses = PodOr(name).value("status", Json::object()).value("containerStatuses", Json::array());
    return statuses.empty() ? Json::object() : statuses[0];
  }
  pid_t ContainerPid(const std::string& name) {
    std::string id = ContainerStatus(name).value("containerID", "");
    auto slash = id.rfind('/');
    return slash == std::string::npos ? 0 : std::stoi(id.substr(slash + 1));
  }
  bool Gone(const std::string& name) {
    return store_->Get(resources::kPod, {"default", name}).status().code() == Code::kNotFound;
  }
  static bool ProcessGone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

  TempDir dir_;
  std::string block_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<NodeAgent> agent_;
};

TEST_F(NodeAgentTest, RunsManagedPodsWithVolumesSecretsAndFieldRefs) {
  Json secret = {{"metadata", {{"name", "creds"}}}, {"stringData", {{"password", "pw1"}}}};
  ASSERT_TRUE(store_->Create(resources::kSecret, secret).ok());
  Json pvc = {{"metadata", {{"name", "db-1"}, {"labels", {{kManagedByLabel, kManagedByValue}}}}},
              {"spec", {{"accessModes", {"ReadWriteOnce"}},
                        {"resources", {{"requests", {{"storage", "1Gi"}}}}}}}};
  ASSERT_TRUE(store_->Create(resources::kPersistentVolumeClaim, pvc).ok());
  Json pod = ManagedPod("db-1", "echo \"$MY_IP $MY_NAME $PASSWORD\" > /var/lib/data/out; exec sleep 1000");
  pod["spec"]["volumes"] = Json::array({{{"name", "data"}, {"persistentVolumeClaim", {{"claimName", "db-1"}}}}});
  Json& c = pod["spec"]["containers"][0];
  c["volumeMounts"] = Json::array({{{"name", "data"}, {"mountPath", "/var/lib/data"}}});
  c["env"] = Json::array(
      {{{"name", "MY_IP"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "status.podIP"}}}}}},
       {{"name", "MY_NAME"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.name"}}}}}},
       {{"name", "PASSWORD"},
        {"valueFrom", {{"secretKeyRef", {{"name", "creds"}, {"key", "password"}}}}}}});
  ASSERT_TRUE(store_->Create(resources::kPod, pod).ok());

  ASSERT_TRUE(WaitFor([&] { return Phase("db-1") == "Running" && Ready("db-1"); }))
      << PodOr("db-1").dump();
  Json running = PodOr("db-1");
  EXPECT_EQ(running["spec"]["nodeName"], "petrel-local");
  EXPECT_EQ(running["status"]["podIP"], FirstPodIp());
  EXPECT_EQ(running["status"]["hostIP"], "127.0.0.1");
  auto out_file = dir_.path() / "volumes" / "default" / "db-1" / "out";
  ASSERT_TRUE(WaitFor([&] { return ReadFile(out_file).ok(); }));
  EXPECT_EQ(ReadFile(out_file).value(), FirstPodIp() + " db-1 pw1\n");
  Json claim = store_->Get(resources::kPersistentVolumeClaim, {"default", "db-1"}).value();
  EXPECT_EQ(claim["status"]["phase"], "Bound");
  EXPECT_EQ(claim["status"]["capacity"]["storage"], "1Gi");
  EXPECT_TRUE(std::filesystem::exists(dir_.path() / "logs" / "default" / "db-1.log"));
}

TEST_F(NodeAgentTest, LeavesUnmanagedPodsAlone) {
  Json pod = ManagedPod("other", "exec sleep 1000");
  pod["metadata"].erase("labels");
  ASSERT_TRUE(store_->Create(resources::kPod, pod).ok());
  Json managed = ManagedPod("mine", "exec sleep 1000");
  ASSERT_TRUE(store_->Create(resources::kPod, managed).ok());
  ASSERT_TRUE(WaitFor([&] { return Phase("mine") == "Running"; }));
  Json other = PodOr("other");
  EXPECT_FALSE(other["spec"].contains("nodeName"));
  EXPECT_FALSE(other.contains("status"));
}

TEST_F(NodeAgentTest, ReadinessFollowsTheHttpProbe) {
  auto server = HttpServer::Listen(FirstPodIp(), 0, 1);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  std::atomic<int> answer{200};
  (*server)->Handle("/readyz", [&](const HttpRequest&) {
    return HttpResponse::Text(answer.load(), "");
  });
  (*server)->Start();
  Json pod = ManagedPod("probed", "exec sleep 1000");
  pod["spec"]["containers"][0]["readinessProbe"] = {
      {"httpGet", {{"path", "/readyz"}, {"port", (*server)->port()}}}, {"failureThreshold", 1}};
  ASSERT_TRUE(store_->Create(resources::kPod, pod).ok());
  ASSERT_TRUE(WaitFor([&] { return Ready("probed"); })) << PodOr("probed").dump();
  answer = 503;
  EXPECT_TRUE(WaitFor([&] { return !Ready("probed") && Phase("probed") == "Running"; }));
  answer = 200;
  EXPECT_TRUE(WaitFor([&] { return Ready("probed"); }));
  (*server)->Stop();
}

TEST_F(NodeAgentTest, CrashedContainersRestartWithBackoff) {
  ASSERT_TRUE(store_->Create(resources::kPod, ManagedPod("crashy", "exit 3")).ok());
  ASSERT_TRUE(WaitFor([&] { return ContainerStatus("crashy").value("restartCount", 0) >= 2; }));
  Json status = ContainerStatus("crashy");
  EXPECT_EQ(status["lastState"]["terminated"]["exitCode"], 3);
  EXPECT_FALSE(Ready("crashy"));
}

TEST_F(NodeAgentTest, FailingLivenessProbeRestartsTheContainer) {
  Json pod = ManagedPod("unhealthy", "exec sleep 1000");
  pod["spec"]["terminationGracePeriodSeconds"] = 1;
  // Nothing listens on port 1 of the pod's address.
  pod["spec"]["containers"][0]["livenessProbe"] = {
      {"tcpSocket", {{"port", 1}}}, {"periodSeconds", 1}, {"failureThreshold", 1}};
  ASSERT_TRUE(store_->Create(resources::kPod, pod).ok());
  ASSERT_TRUE(WaitFor([&] { return ContainerStatus("unhealthy").value("restartCount", 0) >= 1; }))
      << PodOr("unhealthy").dump();
  auto log = ReadFile(dir_.path() / "logs" / "default" / "unhealthy.log");
  EXPECT_NE(log.value_or("").find("failed its liveness probe"), std::string::npos);
}

TEST_F(NodeAgentTest, PodsThatCompleteAreNotRestarted) {
  Json pod = ManagedPod("job", "exit 0");
  pod["spec"]["restartPolicy"] = "Never";
  ASSERT_TRUE(store_->Create(resources::kPod, pod).ok());
  ASSERT_TRUE(WaitFor([&] { return Phase("job") == "Succeeded"; })) << PodOr("job").dump();
  EXPECT_EQ(ContainerStatus("job")["restartCount"], 0);
  EXPECT_EQ(ContainerStatus("job")["state"]["terminated"]["exitCode"], 0);
  Json failing = ManagedPod("failing", "exit 4");
  failing["spec"]["restartPolicy"] = "Never";
  ASSERT_TRUE(store_->Create(resources::kPod, failing).ok());
  EXPECT_TRUE(WaitFor([&] { return Phase("failing") == "Failed"; }));
}

TEST_F(NodeAgentTest, DeletionSendsSigtermThenRemovesThePod) {
  Json pod = ManagedPod("graceful",
                        "trap 'echo term > \"$MARK\"; exit 0' TERM; while :; do sleep 0.1; done");
  std::string mark = (dir_.path() / "term-mark").string();
  pod["spec"]["containers"][0]["env"] = Json::array({{{"name", "MARK"}, {"value", mark}}});
  ASSERT_TRUE(store_->Create(resources::kPod, pod).ok());
  ASSERT_TRUE(WaitFor([&] { return Phase("graceful") == "Running"; }));
  pid_t pid = ContainerPid("graceful");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(store_->Delete(resources::kPod, {"default", "graceful"}).ok());
  ASSERT_TRUE(WaitFor([&] { return Gone("graceful"); }));
  EXPECT_EQ(ReadFile(mark).value_or(""), "term\n");
  EXPECT_TRUE(ProcessGone(pid));
}

TEST_F(NodeAgentTest, ContainersIgnoringSigtermAreKilledAfterTheGracePeriod) {
  Json pod = ManagedPod("stubborn", "trap '' TERM; while :; do sleep 0.1; done");
  pod["spec"]["terminationGracePeriodSeconds"] = 1;
  ASSERT_TRUE(store_->Create(resources::kPod, pod).ok());
  ASSERT_TRUE(WaitFor([&] { return Phase("stubborn") == "Running"; }));
  pid_t pid = ContainerPid("stubborn");
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(store_->Delete(resources::kPod, {"default", "stubborn"}).ok());
  ASSERT_TRUE(WaitFor([&] { return Gone("stubborn"); }));
  EXPECT_TRUE(ProcessGone(pid));
}

TEST_F(NodeAgentTest, StopStopsEveryContainerAndKeepsThePods) {
  ASSERT_TRUE(store_->Create(resources::kPod, ManagedPod("a", "exec sleep 1000")).ok());
  ASSERT_TRUE(WaitFor([&] { return Phase("a") == "Running" && ContainerPid("a") > 0; }));
  pid_t pid = ContainerPid("a");
  agent_->Stop();
  EXPECT_TRUE(ProcessGone(pid));
  EXPECT_FALSE(Gone("a"));
}

TEST_F(NodeAgentTest, MissingSecretKeepsThePodPendingUntilItAppears) {
  Json pod = ManagedPod("waits", "exec sleep 1000");
  pod["spec"]["containers"][0]["env"] = Json::array(
      {{{"name", "P"}, {"valueFrom", {{"secretKeyRef", {{"name", "later"}, {"key", "k"}}}}}}});
  ASSERT_TRUE(store_->Create(resources::kPod, pod).ok());
  ASSERT_TRUE(WaitFor([&] {
    Json state = ContainerStatus("waits").value("state", Json::object());
    return state.value("waiting", Json::object()).value("reason", "") ==
           "CreateContainerConfigError";
  })) << PodOr("waits").dump();
  EXPECT_EQ(Phase("waits"), "Pending");
  Json secret = {{"metadata", {{"name", "later"}}}, {"stringData", {{"k", "v"}}}};
  ASSERT_TRUE(store_->Create(resources::kSecret, secret).ok());
  EXPECT_TRUE(WaitFor([&] { return Phase("waits") == "Running"; }));
}

// The leader endpoint end to end: agent-run Pods, readiness from a real probe, a Service in
// the store, and the proxy re-pointing when the primary label moves.
TEST_F(NodeAgentTest, LeaderServiceFollowsThePrimary) {
  std::string ip1 = FirstPodIp();
  std::string ip2 = testing::BlockPrefix(block_) + "2";
  testing::EchoServer a(ip1, "A");
  ASSERT_TRUE(a.ok());
  testing::EchoServer b(ip2, "B", a.port());
  ASSERT_TRUE(b.ok());
  auto pod = [&](const std::string& name, const std::string& role) {
    Json p = ManagedPod(name, "exec sleep 1000");
    p["metadata"]["labels"]["petrel.dev/cluster"] = "db";
    p["metadata"]["labels"]["petrel.dev/role"] = role;
    p["spec"]["containers"][0]["readinessProbe"] = {{"tcpSocket", {{"port", a.port()}}}};
    return p;
  };
  ASSERT_TRUE(store_->Create(resources::kPod, pod("db-1", "primary")).ok());
  ASSERT_TRUE(WaitFor([&] { return Ready("db-1"); }));
  ASSERT_TRUE(store_->Create(resources::kPod, pod("db-2", "replica")).ok());
  ASSERT_TRUE(WaitFor([&] { return Ready("db-2"); }));
  ASSERT_EQ(PodOr("db-2")["status"]["podIP"], ip2);

  auto service_block = AddressBlock::Parse(block_)->Split().second;
  ServiceProxyOptions options;
  options.mode = AddressMode::kAnnotation;
  options.address_block = service_block.ToString();
  options.resync = std::chrono::milliseconds(200);
  ServiceProxy proxy(*store_, options);
  ASSERT_TRUE(proxy.Start().ok());
  ASSERT_TRUE(store_->Create(resources::kService,
                             {{"metadata", {{"name", "db-rw"}}},
                              {"spec", {{"selector", {{"petrel.dev/cluster", "db"},
                                                      {"petrel.dev/role", "primary"}}},
                                        {"ports", Json::array({{{"port", 5432},
                                                                {"targetPort", a.port()}}})}}}})
                  .ok());
  ASSERT_TRUE(WaitFor([&] {
    auto routes = proxy.Routes();
    return routes.size() == 1 && routes[0].backends.size() == 1;
  }));
  std::string leader = proxy.Routes()[0].address;
  testing::Client before(leader, 5432);
  ASSERT_TRUE(before.connected());
  ASSERT_EQ(before.RoundTrip("q"), "A:q");

  // Switchover: the primary label moves from db-1 to db-2.
  Json one = PodOr("db-1");
  one["metadata"]["labels"]["petrel.dev/role"] = "replica";
  ASSERT_TRUE(store_->Update(resources::kPod, one).ok());
  Json two = PodOr("db-2");
  two["metadata"]["labels"]["petrel.dev/role"] = "primary";
  ASSERT_TRUE(store_->Update(resources::kPod, two).ok());

  EXPECT_EQ(before.Read(), std::nullopt);  // the old primary's client is cut off
  testing::Client after(leader, 5432);
  EXPECT_EQ(after.RoundTrip("q"), "B:q");
  proxy.Stop();
}

}  // namespace
}  // namespace petrel
