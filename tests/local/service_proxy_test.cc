#include "local/service_proxy.h"

#include <gtest/gtest.h>

#include "local/store.h"
#include "tests/local/local_test_util.h"

namespace petrel {
namespace {

Json Service(const std::string& name, const std::map<std::string, std::string>& selector,
             Json ports, const std::string& cluster_ip = "127.0.10.129") {
  Json s = {{"metadata", {{"name", name}, {"namespace", "default"}}},
            {"spec", {{"clusterIP", cluster_ip}, {"ports", ports}}}};
  if (!selector.empty()) s["spec"]["selector"] = selector;
  return s;
}

Json PodAt(const std::string& name, const std::string& ip,
           const std::map<std::string, std::string>& labels, bool ready,
           const std::string& phase = "Running") {
  return {{"metadata", {{"name", name}, {"namespace", "default"}, {"labels", labels}}},
          {"spec",
           {{"containers",
             Json::array({{{"name", "c"},
                           {"ports", Json::array({{{"name", "postgresql"}, {"containerPort", 5432}}})}}})}}},
          {"status",
           {{"phase", phase},
            {"podIP", ip},
            {"conditions", Json::array({{{"type", "Ready"}, {"status", ready ? "True" : "False"}}})}}}};
}

std::vector<std::string> BackendHosts(const Route& r) {
  std::vector<std::string> out;
  for (const auto& b : r.backends) out.push_back(b.ToString());
  return out;
}

TEST(PlanRoutesTest, SelectsReadyPodsOnTheTargetPort) {
  std::vector<Json> pods = {
      PodAt("db-1", "127.0.10.1", {{"cluster", "db"}, {"role", "primary"}}, true),
      PodAt("db-2", "127.0.10.2", {{"cluster", "db"}, {"role", "replica"}}, true),
      PodAt("db-3", "127.0.10.3", {{"cluster", "db"}, {"role", "replica"}}, false),
      PodAt("web", "127.0.10.4", {{"cluster", "web"}}, true),
  };
  struct Case {
    std::string name;
    std::map<std::string, std::string> selector;
    Json port;
    std::vector<std::string> backends;
  };
  std::vector<Case> cases = {
      {"rw", {{"cluster", "db"}, {"role", "primary"}}, {{"port", 5432}}, {"127.0.10.1:5432"}},
      {"ro", {{"cluster", "db"}, {"role", "replica"}}, {{"port", 5432}}, {"127.0.10.2:5432"}},
      {"r", {{"cluster", "db"}}, {{"port", 5432}}, {"127.0.10.1:5432", "127.0.10.2:5432"}},
      {"named", {{"cluster", "db"}, {"role", "primary"}},
       {{"port", 6000}, {"targetPort", "postgresql"}}, {"127.0.10.1:5432"}},
      {"numbered", {{"cluster", "db"}, {"role", "primary"}},
       {{"port", 6000}, {"targetPort", 7000}}, {"127.0.10.1:7000"}},
      {"nobody", {{"cluster", "none"}}, {{"port", 5432}}, {}},
  };
  for (const Case& c : cases) {
    auto routes = PlanRoutes({Service(c.name, c.selector, Json::array({c.port}))}, pods,
                             AddressMode::kClusterIp);
    ASSERT_EQ(routes.size(), 1u) << c.name;
    EXPECT_EQ(routes[0].address, "127.0.10.129");
    EXPECT_EQ(routes[0].port, c.port["port"].get<int>());
    EXPECT_EQ(BackendHosts(routes[0]), c.backends) << c.name;
  }
}

TEST(PlanRoutesTest, NotRunningOrDeletingPodsAreNotBackends) {
  Json deleting = PodAt("a", "127.0.10.1", {{"app", "x"}}, true);
  deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  std::vector<Json> pods = {deleting, PodAt("b", "127.0.10.2", {{"app", "x"}}, true, "Pending"),
                            PodAt("c", "", {{"app", "x"}}, true)};
  auto routes = PlanRoutes({Service("s", {{"app", "x"}}, Json::array({{{"port", 1}}}))}, pods,
                           AddressMode::kClusterIp);
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_TRUE(routes[0].backends.empty());
}

TEST(PlanRoutesTest, PublishNotReadyAddressesIncludesUnreadyPods) {
  Json svc = Service("s", {{"app", "x"}}, Json::array({{{"port", 1}}}));
  svc["spec"]["publishNotReadyAddresses"] = true;
  auto routes = PlanRoutes({svc}, {PodAt("a", "127.0.10.1", {{"app", "x"}}, false)},
                           AddressMode::kClusterIp);
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(routes[0].backends.size(), 1u);
}

TEST(PlanRoutesTest, ServicesWithoutAnAddressOrSelectorAreSkipped) {
  Json ports = Json::array({{{"port", 1}}});
  Json external = Service("ext", {{"a", "b"}}, ports);
  external["spec"]["type"] = "ExternalName";
  Json annotated = Service("ann", {{"a", "b"}}, ports, "10.0.0.7");
  annotated["metadata"]["annotations"] = {{kLocalAddressAnnotation, "127.0.20.5"}};
  std::vector<Json> services = {Service("headless", {{"a", "b"}}, ports, "None"),
                                Service("noselector", {}, ports), external,
                                Service("noip", {{"a", "b"}}, ports, ""), annotated};
  auto by_cluster_ip = PlanRoutes(services, {}, AddressMode::kClusterIp);
  ASSERT_EQ(by_cluster_ip.size(), 1u);
  EXPECT_EQ(by_cluster_ip[0].address, "10.0.0.7");
  auto by_annotation = PlanRoutes(services, {}, AddressMode::kAnnotation);
  ASSERT_EQ(by_annotation.size(), 1u);
  EXPECT_EQ(by_annotation[0].address, "127.0.20.5");
}

TEST(ServiceProxyTest, AnnotationModePublishesALoopbackAddress) {
  auto store = LocalStore::Open({}).value();
  Json svc = Service("db-rw", {{"role", "primary"}}, Json::array({{{"port", 5432}}}), "");
  ASSERT_TRUE(store->Create(resources::kService, svc).ok());
  ServiceProxyOptions options;
  options.mode = AddressMode::kAnnotation;
  std::string block = testing::RandomLoopbackBlock();
  options.address_block = block;
  ServiceProxy proxy(*store, options);
  ASSERT_TRUE(proxy.Start().ok());
  ASSERT_TRUE(testing::WaitFor([&] { return proxy.Routes().size() == 1; }));
  std::string address = meta::Annotation(
      store->Get(resources::kService, {"default", "db-rw"}).value(), kLocalAddressAnnotation);
  EXPECT_EQ(address, testing::BlockPrefix(block) + "1");
  EXPECT_EQ(proxy.Routes()[0].address, address);
  proxy.Stop();
}

}  // namespace
}  // namespace petrel
