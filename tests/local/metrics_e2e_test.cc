// Metrics and health checks of a real `petrel local` cluster, read the way users read them: a
// real Prometheus server (Debian's `prometheus`) scrapes both instances' metrics ports and the
// controllers' /metrics, and the test asks its HTTP API for a few series. The cluster's status
// carries every instance's checks and the ChecksPassing condition.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "core/object.h"
#include "local/files.h"
#include "local/process.h"
#include "net/http.h"
#include "tests/local/local_test_util.h"
#include "tests/local/petrel_run.h"

namespace petrel {
namespace {

namespace fs = std::filesystem;
using testing::WaitFor;

constexpr const char* kPrometheus = "/usr/bin/prometheus";
constexpr const char* kPromtool = "/usr/bin/promtool";

// A free TCP port on 127.0.0.1 (bound to port 0, then released).
uint16_t FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  uint16_t port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// A Kubernetes label or annotation name as pod discovery turns it into a label name.
std::string Sanitize(const std::string& name) {
  std::string out = name;
  for (char& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
  }
  return out;
}

std::string UrlEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

class MetricsE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0) {
      FAIL() << "PostgreSQL 15 is required: /usr/lib/postgresql/15/bin/postgres";
    }
    if (::access(kPrometheus, X_OK) != 0) {
      FAIL() << "Prometheus is required: " << kPrometheus
             << " (Debian package prometheus; scripts/install-deps.sh installs it)";
    }
  }
  std::unique_ptr<Process> Spawn(const std::vector<std::string>& argv, const std::string& log) {
    auto p = Process::Spawn(testing::SpecIn(dir_.path(), argv, log));
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p).value() : nullptr;
  }
  std::string Petrel() const { return testing::PetrelBinary(); }
  std::string Log(const std::string& name) const {
    return ReadFile(dir_.path() / name).value_or("");
  }
  Json Runtime() const { return testing::LocalRuntime(state_); }
  // The cluster as `petrel local` reports it (GET /status), or null.
  Json Cluster() const { return testing::FirstLocalCluster(state_); }
  // The stored objects of a kind (as the controller and node agent wrote them).
  std::vector<Json> StoredObjects(const std::string& kind) const {
    std::vector<Json> found;
    auto text = ReadFile(state_ / "store.json");
    if (!text.ok()) return found;
    Json store = Json::parse(*text, nullptr, false);
    if (store.is_discarded()) return found;
    std::function<void(const Json&)> walk = [&](const Json& j) {
      if (j.is_object()) {
        if (j.value("kind", "") == kind && j.contains("metadata")) {
          found.push_back(j);
          return;
        }
        for (const auto& [k, v] : j.items()) walk(v);
      } else if (j.is_array()) {
        for (const Json& v : j) walk(v);
      }
    };
    walk(store);
    return found;
  }
  // An instant query; the result vector, or null while Prometheus cannot answer.
  Json Query(const std::string& promql) const {
    HttpCallOptions opts;
    opts.timeout = std::chrono::milliseconds(5000);
    auto r = HttpCall("GET", prometheus_ + "/api/v1/query?query=" + UrlEncode(promql), "", opts);
    if (!r.ok() || r->status != 200) return nullptr;
    Json j = Json::parse(r->body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return nullptr;
    return j["data"]["result"];
  }
  // The single value of an instant query, or NaN while there is none.
  double Value(const std::string& promql) const {
    Json result = Query(promql);
    if (!result.is_array() || result.size() != 1) return std::nan("");
    return std::stod(result[0]["value"][1].get<std::string>());
  }
  ::testing::AssertionResult Eventually(const std::string& promql, double want) {
    double got = std::nan("");
    if (WaitFor([&] { return (got = Value(promql)) == want; }, std::chrono::seconds(60))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << promql << " = " << got << ", want " << want << "; all: " << Query(promql).dump()
           << "; targets: "
           << HttpCall("GET", prometheus_ + "/api/v1/targets").value_or(HttpResponse{}).body;
  }

  testing::TempDir dir_;
  fs::path state_ = dir_.path() / "state";
  std::string block_ = testing::RandomLoopbackBlock();
  std::string prometheus_;
};

TEST_F(MetricsE2e, PrometheusScrapesInstancesAndControllerAndTheStatusCarriesTheChecks) {
  fs::path manifest = dir_.path() / "db.yaml";
  std::ofstream(manifest) << "apiVersion: petrel.dev/v1alpha1\nkind: PostgresCluster\n"
                             "metadata: {name: db}\nspec:\n  replicas: 2\n"
                             "  image: ghcr.io/petrel-dev/postgres:15.4\n  storage: {size: 1Gi}\n";
  auto up = Spawn({Petrel(), "local", "up", "-f", manifest.string(), "--state-dir", state_.string(),
                   "--address-block", block_},
                  "up.log");
  ASSERT_TRUE(up);
  auto ready = [&] {
    Json c = Cluster();
    return c.is_object() && c.value("ready", false) && c.value("readyReplicas", 0) == 2 &&
           !c.value("primary", "").empty();
  };
  ASSERT_TRUE(WaitFor([&] { return ready() || up->Poll().has_value(); }, std::chrono::seconds(150)))
      << Log("up.log");
  Json cluster = Cluster();
  const std::string primary = cluster.value("primary", "");
  std::string replica;
  std::map<std::string, std::string> pod_ips;
  for (const Json& i : cluster["instances"]) {
    pod_ips[i.value("name", "")] = i.value("podIP", "");
    if (i.value("name", "") != primary) replica = i.value("name", "");
  }
  ASSERT_EQ(pod_ips.size(), 2u) << cluster.dump();
  ASSERT_FALSE(replica.empty()) << cluster.dump();
  std::string controller = Runtime().value("api", "");
  ASSERT_EQ(controller.rfind("http://", 0), 0u);
  controller = controller.substr(7);

  // A Prometheus of our own on loopback. It finds the instances with the chart's scrape job
  // (charts/petrel/files/prometheus-scrape-config.yaml); Debian's Prometheus is built without
  // Kubernetes discovery, so its `kubernetes_sd_configs` is replaced by the targets pod
  // discovery would produce from the stored Pods: one per declared container port, carrying
  // the Pod's name, namespace, labels and annotations as __meta_kubernetes_* labels. A Pod
  // without the scrape annotation is there too, and the job must drop it.
  const std::string chart_job_path = std::string(std::getenv("PETREL_SOURCE_DIR")) +
                                     "/charts/petrel/files/prometheus-scrape-config.yaml";
  std::string chart_job = ReadFile(chart_job_path).value_or("");
  const std::string discovery = "  kubernetes_sd_configs:\n    - role: pod\n";
  auto at = chart_job.find(discovery);
  ASSERT_NE(at, std::string::npos) << chart_job_path << " no longer discovers Pods:\n" << chart_job;
  std::string targets = "  static_configs:\n";
  int discovered = 0;
  for (const Json& pod : StoredObjects("Pod")) {
    std::string ip = pod["status"].value("podIP", "");
    if (ip.empty() || pod_ips.count(meta::Name(pod)) == 0) continue;
    const Json ports = pod["spec"]["containers"][0].value("ports", Json::array());
    for (const Json& port : ports) {
      targets += "    - targets: ['" + ip + ":" + std::to_string(port.value("containerPort", 0)) +
                 "']\n      labels:\n";
      targets += "        __meta_kubernetes_namespace: '" + meta::Namespace(pod) + "'\n";
      targets += "        __meta_kubernetes_pod_name: '" + meta::Name(pod) + "'\n";
      targets +=
          "        __meta_kubernetes_pod_container_port_name: '" + port.value("name", "") + "'\n";
      const Json labels = pod["metadata"].value("labels", Json::object());
      const Json annotations = pod["metadata"].value("annotations", Json::object());
      for (const auto& [k, v] : labels.items()) {
        targets += "        __meta_kubernetes_pod_label_" + Sanitize(k) + ": '" +
                   v.get<std::string>() + "'\n";
      }
      for (const auto& [k, v] : annotations.items()) {
        targets += "        __meta_kubernetes_pod_annotation_" + Sanitize(k) + ": '" +
                   v.get<std::string>() + "'\n";
      }
      ++discovered;
    }
  }
  ASSERT_EQ(discovered, 6) << "two Pods with three ports each";
  targets += "    - targets: ['127.0.0.1:1']\n      labels: {__meta_kubernetes_pod_name: other}\n";
  chart_job.replace(at, discovery.size(), targets);

  fs::path config = dir_.path() / "prometheus.yml";
  {
    std::ofstream out(config);
    out << "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
           "scrape_configs:\n";
    std::istringstream job(chart_job);
    for (std::string line; std::getline(job, line);) out << "  " << line << "\n";
    out << "  - job_name: petrel-controller\n    static_configs:\n      - targets: ['" << controller
        << "']\n";
  }
  auto promtool = Spawn({kPromtool, "check", "config", config.string()}, "promtool.log");
  ASSERT_TRUE(promtool);
  std::optional<ExitStatus> checked;
  ASSERT_TRUE(
      WaitFor([&] { return (checked = promtool->Poll()).has_value(); }, std::chrono::seconds(30)));
  ASSERT_EQ(checked->code, 0) << Log("promtool.log") << ReadFile(config).value_or("");

  uint16_t port = FreeLoopbackPort();
  ASSERT_NE(port, 0);
  prometheus_ = "http://127.0.0.1:" + std::to_string(port);
  fs::create_directories(dir_.path() / "tsdb");
  auto prometheus =
      Spawn({kPrometheus, "--config.file=" + config.string(),
             "--storage.tsdb.path=" + (dir_.path() / "tsdb").string(),
             "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"},
            "prometheus.log");
  ASSERT_TRUE(prometheus);
  ASSERT_TRUE(WaitFor([&] { return Query("up").is_array() || prometheus->Poll().has_value(); },
                      std::chrono::seconds(30)))
      << Log("prometheus.log");

  // The chart's job keeps one target per annotated Pod (the duplicates of its other ports
  // collapse into it) on the annotated port, labelled with the Pod's identity.
  EXPECT_TRUE(Eventually("count(up{job=\"petrel\"} == 1)", 2));
  EXPECT_TRUE(Eventually("count(up{job=\"petrel\"})", 2));
  EXPECT_TRUE(Eventually("up{job=\"petrel-controller\"}", 1));
  EXPECT_TRUE(Eventually("count(pg_up{namespace=\"default\",petrel_cluster=\"db\"})", 2));
  // The series carry what the instances report.
  EXPECT_TRUE(Eventually("pg_up{pod=\"" + primary + "\"}", 1));
  EXPECT_TRUE(Eventually("pg_up{pod=\"" + replica + "\"}", 1));
  EXPECT_TRUE(Eventually("petrel_instance_role{pod=\"" + primary + "\",role=\"primary\"}", 1));
  EXPECT_TRUE(Eventually("petrel_instance_role{pod=\"" + replica + "\",role=\"replica\"}", 1));
  EXPECT_TRUE(Eventually("pg_replication_is_replica{pod=\"" + replica + "\"}", 1));
  // The replication lag of the standby, seen from the primary and from the replica itself.
  EXPECT_TRUE(Eventually("count(petrel_instance_standby_lag_bytes{pod=\"" + primary +
                             "\",standby=\"" + replica + "\"} >= 0)",
                         1));
  EXPECT_TRUE(Eventually(
      "petrel_instance_standby_streaming{pod=\"" + primary + "\",standby=\"" + replica + "\"}", 1));
  EXPECT_TRUE(Eventually("count(pg_replication_lag_seconds{pod=\"" + replica + "\"} >= 0)", 1));
  EXPECT_TRUE(Eventually("count(pg_database_size_bytes{datname=\"postgres\"} > 0)", 2));
  EXPECT_TRUE(Eventually("count(pg_stat_database_xact_commit{datname=\"postgres\"} > 0)", 2));
  EXPECT_TRUE(Eventually("count(petrel_instance_check_status)", 6));
  EXPECT_TRUE(Eventually("max(petrel_instance_check_status{check=\"pg\"})", 0));
  // The controllers' own series, from the petrel local process.
  EXPECT_TRUE(Eventually(
      "count(sum by (controller) (controller_runtime_reconcile_total{job=\"petrel-controller\"}) "
      "> 0) > bool 0",
      1));

  // The cluster's status: every instance's checks, and the ChecksPassing condition agreeing
  // with them. (The vm check depends on this shared machine's load, so it may fail here.)
  Json stored;
  auto instance_checks_pass = [&] {
    auto clusters = StoredObjects("PostgresCluster");
    if (clusters.size() != 1) return false;
    stored = clusters[0];
    const Json instances = stored["status"].value("instances", Json::array());
    if (instances.size() != 2) return false;
    for (const Json& i : instances) {
      int passing = 0;
      for (const Json& c : i.value("checks", Json::array())) {
        std::string name = c.value("name", "");
        if ((name == "pg" || name == "role") && c.value("status", "") == "passing") ++passing;
      }
      if (passing != 2) return false;
    }
    return true;
  };
  // The controller refreshes status on each reconcile (every 60 s once healthy).
  ASSERT_TRUE(WaitFor(instance_checks_pass, std::chrono::seconds(150))) << stored.dump();
  std::vector<std::string> failing;
  for (const Json& i : stored["status"]["instances"]) {
    std::map<std::string, Json> checks;
    for (const Json& c : i.value("checks", Json::array())) {
      checks[c.value("name", "")] = c;
      if (c.value("status", "") != "passing") {
        failing.push_back(i.value("name", "") + " " + c.value("name", ""));
      }
    }
    EXPECT_EQ(checks.size(), 3u) << i.dump();
    EXPECT_EQ(checks["role"]["output"], i.value("name", "") == primary ? "leader" : "replica")
        << i.dump();
    EXPECT_NE(checks["pg"].value("output", "").find("connections used"), std::string::npos)
        << i.dump();
  }
  Json condition;
  for (const Json& c : stored["status"].value("conditions", Json::array())) {
    if (c.value("type", "") == "ChecksPassing") condition = c;
  }
  ASSERT_TRUE(condition.is_object()) << stored["status"].dump();
  if (failing.empty()) {
    EXPECT_EQ(condition.value("status", ""), "True") << condition.dump();
  } else {
    EXPECT_EQ(condition.value("status", ""), "False") << condition.dump();
    for (const std::string& f : failing) {
      EXPECT_NE(condition.value("message", "").find(f), std::string::npos)
          << f << ": " << condition.dump();
    }
  }

  prometheus->Terminate(std::chrono::seconds(10));
  auto down = Spawn({Petrel(), "local", "down", "--state-dir", state_.string()}, "down.log");
  std::optional<ExitStatus> exit;
  EXPECT_TRUE(WaitFor([&] { return (exit = up->Poll()).has_value(); }, std::chrono::seconds(90)));
  EXPECT_EQ(exit.value_or(ExitStatus{1, 0}).code, 0) << Log("up.log");
}

}  // namespace
}  // namespace petrel
