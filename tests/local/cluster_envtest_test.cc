// The issue-4 scenario on a real kube-apiserver: the real `petrel controller` process and the
// node agent (in this process, through HttpKubeClient) run a 3-instance PostgresCluster with
// real Postgres, observed with the real kubectl: Pods Running, status Ready, printer columns,
// and a row written through the leader Service's local address.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/base64.h"
#include "local/addresses.h"
#include "local/node_agent.h"
#include "local/service_proxy.h"
#include "pg/conn.h"
#include "tests/local/local_test_util.h"
#include "tests/support/envtest.h"

namespace petrel {
namespace {

using testing::WaitFor;

// `petrel controller` as a child process; SIGTERM and reaped when the test ends.
class ControllerChild {
 public:
  explicit ControllerChild(const std::vector<std::string>& args) {
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~ControllerChild() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) ::usleep(50000);
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  bool running() const { return pid_ > 0 && ::kill(pid_, 0) == 0; }

 private:
  pid_t pid_ = -1;
};

// One node of a cluster on the shared apiserver: the CRDs, a node agent running Pods with the
// petrel binary under test, and a service proxy, on a fresh loopback block.
class ClusterEnvtest : public EnvtestTest {
 protected:
  void StartNode(const std::string& prefix) {
    const char* binary = std::getenv("PETREL_BINARY");
    const char* source = std::getenv("PETREL_SOURCE_DIR");
    ASSERT_TRUE(binary && source)
        << "PETREL_BINARY and PETREL_SOURCE_DIR must be set (ctest does)";
    binary_ = binary;
    InstallOnce({"crds/postgrescluster.yaml", "crds/postgresattachment.yaml"},
                {"crd/postgresclusters.petrel.dev"});
    if (HasFatalFailure()) return;
    dir_ = std::make_unique<testing::TempDir>(prefix);
    auto [pod_block, service_block] = AddressBlock::Parse(testing::RandomLoopbackBlock())->Split();
    NodeAgentOptions agent_options;
    agent_options.state_dir = dir_->path();
    agent_options.pod_block = pod_block.ToString();
    agent_options.petrel_binary = binary_;
    agent_ = std::make_unique<NodeAgent>(client(), agent_options);
    ASSERT_TRUE(agent_->Start().ok());
    ServiceProxyOptions proxy_options;
    proxy_options.mode = AddressMode::kAnnotation;
    proxy_options.address_block = service_block.ToString();
    proxy_ = std::make_unique<ServiceProxy>(client(), proxy_options);
    ASSERT_TRUE(proxy_->Start().ok());
  }
  void StopNode() {
    if (proxy_) proxy_->Stop();
    if (agent_) agent_->Stop();
  }
  void TearDown() override { StopNode(); }

  std::string binary_;
  std::unique_ptr<testing::TempDir> dir_;  // outlives the agent and proxy below
  std::unique_ptr<NodeAgent> agent_;
  std::unique_ptr<ServiceProxy> proxy_;
};

// What happens to a cluster's Pods, in the order the API server reports it (one watch, so one
// total order): "create db-N" (added), "delete db-N" (deletion requested: deletionTimestamp
// first seen) and "primary db-N" (its petrel.dev/role label becomes primary).
class PodStepLog {
 public:
  PodStepLog(KubeClient& client, const std::string& ns) : client_(client), ns_(ns) {
    ListOptions list;
    list.label_selector = "petrel.dev/cluster=db";
    auto pods = client_.List(resources::kPod, ns_, list);
    if (!pods.ok()) {
      failure_ = pods.status().ToString();
      return;
    }
    for (const Json& pod : pods->items) Remember(pod);
    thread_ = std::thread([this, rv = pods->resource_version] { Run(rv); });
  }
  ~PodStepLog() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::string> Steps() {
    std::lock_guard lock(mu_);
    return steps_;
  }
  std::string failure() {
    std::lock_guard lock(mu_);
    return failure_;
  }

 private:
  void Remember(const Json& pod) {
    role_[meta::Uid(pod)] = meta::Label(pod, "petrel.dev/role");
    if (meta::IsBeingDeleted(pod)) deleting_.insert(meta::Uid(pod));
  }
  void Record(const WatchEvent& e) {
    const Json& pod = e.object;
    const std::string uid = meta::Uid(pod);
    const std::string name = meta::Name(pod);
    std::lock_guard lock(mu_);
    if (e.type == WatchEventType::kAdded) steps_.push_back("create " + name);
    if (meta::IsBeingDeleted(pod) || e.type == WatchEventType::kDeleted) {
      if (deleting_.insert(uid).second) steps_.push_back("delete " + name);
    }
    std::string role = meta::Label(pod, "petrel.dev/role");
    if (role == "primary" && role_[uid] != "primary" && e.type != WatchEventType::kAdded) {
      steps_.push_back("primary " + name);
    }
    role_[uid] = role;
  }
  void Run(std::string rv) {
    // Reconnects from the last resourceVersion when the server ends the stream.
    for (int attempt = 0; attempt < 50 && !stop_; ++attempt) {
      WatchOptions options;
      options.label_selector = "petrel.dev/cluster=db";
      options.resource_version = rv;
      options.timeout_seconds = 120;
      auto stream = client_.Watch(resources::kPod, ns_, options);
      if (!stream.ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      while (!stop_) {
        WatchEvent e;
        Status st = (*stream)->Next(&e, std::chrono::milliseconds(200));
        if (st.code() == Code::kTimeout) continue;
        if (st.code() == Code::kGone || e.type == WatchEventType::kError) {
          std::lock_guard lock(mu_);
          failure_ = "the pod watch lost its place (" + st.ToString() + "); steps are incomplete";
          return;
        }
        if (!st.ok()) break;
        rv = meta::ResourceVersion(e.object);
        if (e.type != WatchEventType::kBookmark) Record(e);
      }
    }
  }

  KubeClient& client_;
  std::string ns_;
  std::mutex mu_;
  std::vector<std::string> steps_;
  std::map<std::string, std::string> role_;  // by uid
  std::set<std::string> deleting_;           // uids
  std::string failure_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Issue 3's rolling update on a real API server with real Postgres: changing spec.image of a
// 3-instance cluster recreates the replicas first (highest serial first), then switches over,
// then recreates the old primary; status.image follows and the data stays. The node agent
// runs the host's Postgres 15 whatever the tag says, so any 15.x tag exercises the roll.
TEST_F(ClusterEnvtest, ImageChangeRollsReplicasThenSwitchesOverThenTheOldPrimary) {
  ASSERT_NO_FATAL_FAILURE(StartNode("petrel-roll-envtest"));
  ControllerChild controller({binary_, "controller", "--kubeconfig", env().KubeconfigPath(),
                              "--no-leader-elect", "--namespace", ns_, "--metrics-bind-address",
                              "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"});

  const std::string old_image = "ghcr.io/petrel-dev/postgres:15.4";
  const std::string new_image = "ghcr.io/petrel-dev/postgres:15.5";
  auto applied = env().Kubectl({"apply", "-n", ns_, "-f", "-"},
                               "apiVersion: petrel.dev/v1alpha1\nkind: PostgresCluster\n"
                               "metadata:\n  name: db\nspec:\n  replicas: 3\n  image: " +
                                   old_image + "\n  storage:\n    size: 1Gi\n");
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  auto status = [&] {
    auto c = client().Get(resources::kPostgresCluster, {ns_, "db"});
    return c.ok() ? c->value("status", Json::object()) : Json::object();
  };
  auto healthy_with = [&](const std::string& image) {
    Json s = status();
    return s.value("readyReplicas", 0) == 3 && s.value("phase", "") == "Healthy" &&
           s.value("image", "") == image;
  };
  ASSERT_TRUE(WaitFor([&] { return healthy_with(old_image); }, std::chrono::seconds(240)))
      << status().dump(2);
  ASSERT_EQ(status().value("currentPrimary", ""), "db-1");

  // Kubernetes 1.20 serves policy/v1beta1 only: the controller found that out at start.
  auto pdb = client().Get(resources::kPodDisruptionBudget, {ns_, "db-primary"});
  ASSERT_TRUE(pdb.ok()) << pdb.status().ToString();
  EXPECT_EQ(pdb->value("apiVersion", ""), "policy/v1beta1");

  auto superuser = client().Get(resources::kSecret, {ns_, "db-superuser"});
  ASSERT_TRUE(superuser.ok());
  auto password = Base64Decode((*superuser)["data"].value("password", ""));
  ASSERT_TRUE(password.has_value());
  auto leader_sql = [&]() -> Result<PgConn> {
    auto svc = client().Get(resources::kService, {ns_, "db-rw"});
    std::string address = svc.ok() ? meta::Annotation(*svc, kLocalAddressAnnotation) : "";
    if (address.empty()) return UnavailableError("db-rw has no local address yet");
    return PgConn::Connect(
        ConnInfo(
            {{"host", address}, {"port", "5432"}, {"user", "postgres"}, {"dbname", "postgres"}}),
        *password);
  };
  {
    auto conn = leader_sql();
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE(
        conn->ExecScript("CREATE TABLE kept(v text); INSERT INTO kept VALUES ('before')").ok());
  }

  PodStepLog log(client(), ns_);
  ASSERT_EQ(log.failure(), "");
  auto patched = env().Kubectl({"patch", "pgc", "db", "-n", ns_, "--type=merge", "-p",
                                "{\"spec\":{\"image\":\"" + new_image + "\"}}"});
  ASSERT_EQ(patched.exit_code, 0) << patched.err;
  // status.image names what every instance runs: still the old image while Pods are outdated.
  ASSERT_TRUE(
      WaitFor([&] { return status().value("phase", "") == "Upgrading"; }, std::chrono::seconds(30)))
      << status().dump(2);
  EXPECT_EQ(status().value("image", ""), old_image);
  ASSERT_TRUE(WaitFor([&] { return healthy_with(new_image); }, std::chrono::seconds(300)))
      << status().dump(2) << ::testing::PrintToString(log.Steps());
  EXPECT_EQ(log.failure(), "");

  std::vector<std::string> steps = log.Steps();
  const std::string new_primary = status().value("currentPrimary", "");
  EXPECT_TRUE(new_primary == "db-2" || new_primary == "db-3") << new_primary;
  EXPECT_EQ(steps,
            (std::vector<std::string>{"delete db-3", "create db-3", "delete db-2", "create db-2",
                                      "primary " + new_primary, "delete db-1", "create db-1"}));
  EXPECT_EQ(status().value("targetPrimary", ""), new_primary);
  for (const Json& i : status().value("instances", Json::array())) {
    EXPECT_EQ(i.value("role", ""), i.value("name", "") == new_primary ? "primary" : "replica")
        << i.dump();
    EXPECT_TRUE(i.value("ready", false)) << i.dump();
  }
  ListOptions by_cluster;
  by_cluster.label_selector = "petrel.dev/cluster=db";
  auto pods = client().List(resources::kPod, ns_, by_cluster);
  ASSERT_TRUE(pods.ok());
  ASSERT_EQ(pods->items.size(), 3u);
  for (const Json& pod : pods->items) {
    EXPECT_EQ(pod["spec"]["containers"][0].value("image", ""), new_image) << meta::Name(pod);
  }

  // The data survived, the new primary takes writes and the old primary replicates them.
  Result<PgConn> conn = UnavailableError("not connected");
  ASSERT_TRUE(WaitFor([&] {
    conn = leader_sql();
    return conn.ok();
  })) << conn.status().ToString();
  auto rows = conn->Exec("SELECT string_agg(v, ','), pg_is_in_recovery() FROM kept");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(rows->GetOr(0, 0), "before");
  EXPECT_EQ(rows->GetOr(0, 1), "f");
  ASSERT_TRUE(conn->ExecScript("INSERT INTO kept VALUES ('after')").ok());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto svc = client().Get(resources::kService, {ns_, "db-1"});
        std::string address = svc.ok() ? meta::Annotation(*svc, kLocalAddressAnnotation) : "";
        if (address.empty()) return false;
        auto old_primary = PgConn::Connect(ConnInfo({{"host", address},
                                                     {"port", "5432"},
                                                     {"user", "postgres"},
                                                     {"dbname", "postgres"}}),
                                           *password);
        if (!old_primary.ok()) return false;
        auto r = old_primary->Exec(
            "SELECT string_agg(v, ',' ORDER BY v), pg_is_in_recovery() FROM kept");
        return r.ok() && r->GetOr(0, 0) == "after,before" && r->GetOr(0, 1) == "t";
      },
      std::chrono::seconds(30)));
  EXPECT_TRUE(controller.running());
  StopNode();
}

TEST_F(ClusterEnvtest, ControllerAndNodeAgentRunAThreeInstanceCluster) {
  ASSERT_NO_FATAL_FAILURE(StartNode("petrel-cluster-envtest"));

  ControllerChild controller({binary_, "controller", "--kubeconfig", env().KubeconfigPath(),
                              "--no-leader-elect", "--namespace", ns_,
                              "--metrics-bind-address", "127.0.0.1:0",
                              "--health-probe-bind-address", "127.0.0.1:0"});

  const std::string manifest =
      "apiVersion: petrel.dev/v1alpha1\nkind: PostgresCluster\nmetadata:\n  name: db\n"
      "spec:\n  replicas: 3\n  image: ghcr.io/petrel-dev/postgres:15.4\n"
      "  storage:\n    size: 1Gi\n";
  auto applied = env().Kubectl({"apply", "-n", ns_, "-f", "-"}, manifest);
  ASSERT_EQ(applied.exit_code, 0) << applied.err;

  auto cluster = [&] {
    auto c = client().Get(resources::kPostgresCluster, {ns_, "db"});
    return c.ok() ? *c : Json::object();
  };
  ASSERT_TRUE(WaitFor([&] {
    Json s = cluster().value("status", Json::object());
    return s.value("readyReplicas", 0) == 3 && s.value("phase", "") == "Healthy";
  }, std::chrono::seconds(240))) << cluster().dump(2);
  EXPECT_TRUE(controller.running());

  // Pods Running, as kubectl shows them.
  auto pods = env().Kubectl({"get", "pods", "-n", ns_, "-l", "petrel.dev/cluster=db",
                             "-o", "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}"});
  ASSERT_EQ(pods.exit_code, 0) << pods.err;
  EXPECT_EQ(pods.out, "Running\nRunning\nRunning\n");

  // Printer columns: Replicas, Ready, Primary, Version, Status.
  auto table = env().Kubectl({"get", "pgc", "db", "-n", ns_, "--no-headers"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  std::string primary = cluster()["status"].value("currentPrimary", "");
  EXPECT_NE(table.out.find(" 3 "), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(primary), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("Healthy"), std::string::npos) << table.out;

  // A row through the leader Service's local address, read back on the leader.
  auto secret = client().Get(resources::kSecret, {ns_, "db-superuser"});
  ASSERT_TRUE(secret.ok());
  auto password = Base64Decode((*secret)["data"].value("password", ""));
  ASSERT_TRUE(password.has_value());
  std::string leader;
  ASSERT_TRUE(WaitFor([&] {
    auto svc = client().Get(resources::kService, {ns_, "db-rw"});
    leader = svc.ok() ? meta::Annotation(*svc, kLocalAddressAnnotation) : "";
    return !leader.empty();
  }));
  auto conn = PgConn::Connect(
      ConnInfo({{"host", leader}, {"port", "5432"}, {"user", "postgres"}, {"dbname", "postgres"}}),
      *password);
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  ASSERT_TRUE(conn->ExecScript("CREATE TABLE t(x int); INSERT INTO t VALUES (7)").ok());
  auto rows = conn->Exec("SELECT x, pg_is_in_recovery() FROM t");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(rows->GetOr(0, 0), "7");
  EXPECT_EQ(rows->GetOr(0, 1), "f");

  StopNode();
}

}  // namespace
}  // namespace petrel
