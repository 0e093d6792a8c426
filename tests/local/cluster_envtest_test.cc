// The issue-4 scenario on a real kube-apiserver: the real `petrel controller` process and the
// node agent (in this process, through HttpKubeClient) run a 3-instance PostgresCluster with
// real Postgres, observed with the real kubectl: Pods Running, status Ready, printer columns,
// and a row written through the leader Service's local address.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

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

class ClusterEnvtest : public EnvtestTest {};

TEST_F(ClusterEnvtest, ControllerAndNodeAgentRunAThreeInstanceCluster) {
  const char* binary = std::getenv("PETREL_BINARY");
  const char* source = std::getenv("PETREL_SOURCE_DIR");
  ASSERT_TRUE(binary && source) << "PETREL_BINARY and PETREL_SOURCE_DIR must be set (ctest does)";
  for (const char* crd : {"postgrescluster.yaml", "postgresattachment.yaml"}) {
    auto r = env().Kubectl({"apply", "-f", std::string(source) + "/crds/" + crd});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  auto established = env().Kubectl({"wait", "--for=condition=established", "--timeout=60s",
                                    "crd/postgresclusters.petrel.dev"});
  ASSERT_EQ(established.exit_code, 0) << established.err;

  testing::TempDir dir("petrel-cluster-envtest");
  std::string block = testing::RandomLoopbackBlock();
  auto [pod_block, service_block] = AddressBlock::Parse(block)->Split();
  NodeAgentOptions agent_options;
  agent_options.state_dir = dir.path();
  agent_options.pod_block = pod_block.ToString();
  agent_options.petrel_binary = binary;
  NodeAgent agent(client(), agent_options);
  ASSERT_TRUE(agent.Start().ok());
  ServiceProxyOptions proxy_options;
  proxy_options.mode = AddressMode::kAnnotation;
  proxy_options.address_block = service_block.ToString();
  ServiceProxy proxy(client(), proxy_options);
  ASSERT_TRUE(proxy.Start().ok());

  ControllerChild controller({binary, "controller", "--kubeconfig", env().KubeconfigPath(),
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

  proxy.Stop();
  agent.Stop();
}

}  // namespace
}  // namespace petrel
