#include "local/pod_plan.h"

#include <gtest/gtest.h>

#include "local/addresses.h"

namespace petrel {
namespace {

PodEnvironment Env() {
  PodEnvironment env;
  env.pod_ip = "127.0.10.5";
  env.host_ip = "127.0.0.1";
  env.petrel_binary = "/opt/build/petrel";
  env.volume_dirs = {{"data", "/state/volumes/default/db-1"}, {"run", "/state/pods/u/run"}};
  env.base_env = {{"PATH", "/usr/bin:/bin"}};
  env.secret_value = [](const std::string& name, const std::string& key) -> Result<std::string> {
    if (name == "db-superuser" && key == "password") return std::string("s3cret");
    return NotFoundError("secret " + name + " has no key " + key);
  };
  env.config_map_value = [](const std::string&, const std::string&) -> Result<std::string> {
    return NotFoundError("no config maps");
  };
  env.secret_data = [](const std::string&) -> Result<std::map<std::string, std::string>> {
    return std::map<std::string, std::string>{{"user", "postgres"}};
  };
  env.config_map_data = [](const std::string&) -> Result<std::map<std::string, std::string>> {
    return NotFoundError("no config maps");
  };
  return env;
}

Json Pod(Json container) {
  return {{"metadata", {{"name", "db-1"}, {"namespace", "default"}, {"uid", "u-1"},
                        {"labels", {{"petrel.dev/cluster", "db"}}}}},
          {"spec", {{"containers", Json::array({container})},
                    {"volumes", Json::array({{{"name", "data"}}, {{"name", "run"}}})}}}};
}

std::string EnvOf(const ContainerPlan& c, const std::string& name) {
  std::string value;
  for (const auto& [k, v] : c.env) {
    if (k == name) value = v;
  }
  return value;
}

TEST(RewriteMountPathsTest, ReplacesWholePathPrefixesOnly) {
  std::vector<std::pair<std::string, std::string>> mounts = {
      {"/var/lib/postgresql/data", "/s/vol"}, {"/var/lib/postgresql", "/s/other"},
      {"/run", "/s/run"}};
  struct Case {
    std::string in, out;
  };
  std::vector<Case> cases = {
      {"/var/lib/postgresql/data", "/s/vol"},
      {"/var/lib/postgresql/data/pgdata", "/s/vol/pgdata"},
      {"--pgdata=/var/lib/postgresql/data/pgdata", "--pgdata=/s/vol/pgdata"},
      {"/var/lib/postgresql/other", "/s/other/other"},
      {"/var/lib/postgresql/database", "/s/other/database"},
      {"/running", "/running"},
      {"/x/run", "/x/run"},
      {"a:/run:b", "a:/s/run:b"},
      {"host=/run/postgresql port=5432", "host=/s/run/postgresql port=5432"},
      {"no paths here", "no paths here"},
      {"", ""},
  };
  for (const Case& c : cases) EXPECT_EQ(RewriteMountPaths(c.in, mounts), c.out) << c.in;
}

TEST(ExpandEnvReferencesTest, FollowsKubeletRules) {
  std::map<std::string, std::string> vars = {{"A", "1"}, {"B", "two"}};
  struct Case {
    std::string in, out;
  };
  std::vector<Case> cases = {
      {"$(A)", "1"},         {"x$(A)y$(B)", "x1ytwo"}, {"$(C)", "$(C)"},
      {"$$(A)", "$(A)"},     {"$A", "$A"},             {"$(A", "$(A"},
      {"cost $5", "cost $5"}, {"end$", "end$"},
  };
  for (const Case& c : cases) EXPECT_EQ(ExpandEnvReferences(c.in, vars), c.out) << c.in;
}

TEST(PlanPodTest, PetrelCommandRunsTheAgentsBinaryWithRewrittenMounts) {
  Json container = {{"name", "postgres"},
                    {"image", "ghcr.io/petrel/petrel:1"},
                    {"command", {"/usr/local/bin/petrel"}},
                    {"args", {"instance", "--pgdata=/var/lib/postgresql/data/pgdata"}},
                    {"volumeMounts", Json::array({{{"name", "data"},
                                                   {"mountPath", "/var/lib/postgresql/data"}}})}};
  auto plan = PlanPod(Pod(container), Env());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_EQ(plan->containers.size(), 1u);
  EXPECT_EQ(plan->containers[0].argv,
            (std::vector<std::string>{"/opt/build/petrel", "instance",
                                      "--pgdata=/state/volumes/default/db-1/pgdata"}));
  EXPECT_EQ(plan->restart_policy, RestartPolicy::kAlways);
}

TEST(PlanPodTest, OtherCommandsRunAsWritten) {
  Json container = {{"name", "c"}, {"command", {"sh", "-c", "echo hi"}}};
  auto plan = PlanPod(Pod(container), Env());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->containers[0].argv, (std::vector<std::string>{"sh", "-c", "echo hi"}));
}

TEST(PlanPodTest, EnvironmentIsResolvedLikeTheKubelet) {
  Json container = {
      {"name", "c"},
      {"command", {"sh"}},
      {"args", {"-c", "echo $(NAME)"}},
      {"volumeMounts", Json::array({{{"name", "run"}, {"mountPath", "/run"}}})},
      {"env",
       Json::array({
           {{"name", "NAME"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.name"}}}}}},
           {{"name", "NS"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.namespace"}}}}}},
           {{"name", "IP"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "status.podIP"}}}}}},
           {{"name", "CLUSTER"},
            {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.labels['petrel.dev/cluster']"}}}}}},
           {{"name", "PASSWORD"},
            {"valueFrom",
             {{"secretKeyRef", {{"name", "db-superuser"}, {"key", "password"}}}}}},
           {{"name", "GREETING"}, {"value", "hello $(NAME) at $(IP)"}},
           {{"name", "SOCKET"}, {"value", "/run/postgresql"}},
           {{"name", "MISSING"},
            {"valueFrom",
             {{"secretKeyRef", {{"name", "nope"}, {"key", "k"}, {"optional", true}}}}}},
       })},
      {"envFrom", Json::array({{{"secretRef", {{"name", "creds"}}}, {"prefix", "DB_"}}})}};
  auto plan = PlanPod(Pod(container), Env());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const ContainerPlan& c = plan->containers[0];
  EXPECT_EQ(EnvOf(c, "NAME"), "db-1");
  EXPECT_EQ(EnvOf(c, "NS"), "default");
  EXPECT_EQ(EnvOf(c, "IP"), "127.0.10.5");
  EXPECT_EQ(EnvOf(c, "CLUSTER"), "db");
  EXPECT_EQ(EnvOf(c, "PASSWORD"), "s3cret");
  EXPECT_EQ(EnvOf(c, "GREETING"), "hello db-1 at 127.0.10.5");
  EXPECT_EQ(EnvOf(c, "SOCKET"), "/state/pods/u/run/postgresql");
  EXPECT_EQ(EnvOf(c, "HOSTNAME"), "db-1");
  EXPECT_EQ(EnvOf(c, "PATH"), "/usr/bin:/bin");
  EXPECT_EQ(EnvOf(c, "DB_user"), "postgres");
  EXPECT_EQ(EnvOf(c, "MISSING"), "");
  EXPECT_EQ(c.argv[2], "echo db-1");
}

TEST(PlanPodTest, MissingSecretKeyIsNotFoundWithoutTheValue) {
  Json container = {
      {"name", "c"},
      {"command", {"sh"}},
      {"env", Json::array({{{"name", "X"},
                            {"valueFrom",
                             {{"secretKeyRef", {{"name", "db-superuser"}, {"key", "nope"}}}}}}})}};
  auto plan = PlanPod(Pod(container), Env());
  ASSERT_EQ(plan.status().code(), Code::kNotFound);
  EXPECT_NE(plan.status().message().find("env[X]"), std::string::npos);
  EXPECT_EQ(plan.status().message().find("s3cret"), std::string::npos);
}

TEST(PlanPodTest, ContainersWithoutCommandCannotRun) {
  auto plan = PlanPod(Pod({{"name", "c"}, {"image", "postgres:15"}}), Env());
  ASSERT_EQ(plan.status().code(), Code::kInvalid);
  EXPECT_NE(plan.status().message().find("no command"), std::string::npos);
}

TEST(PlanPodTest, UnknownVolumeIsRefused) {
  Json container = {{"name", "c"},
                    {"command", {"sh"}},
                    {"volumeMounts", Json::array({{{"name", "nope"}, {"mountPath", "/x"}}})}};
  EXPECT_EQ(PlanPod(Pod(container), Env()).status().code(), Code::kInvalid);
}

TEST(PlanPodTest, ReadinessProbes) {
  Json container = {{"name", "c"},
                    {"command", {"sh"}},
                    {"ports", Json::array({{{"name", "api"}, {"containerPort", 8000}}})},
                    {"readinessProbe",
                     {{"httpGet", {{"path", "/readyz"}, {"port", "api"}}},
                      {"failureThreshold", 2},
                      {"initialDelaySeconds", 3}}}};
  auto plan = PlanPod(Pod(container), Env());
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  const ProbePlan& p = plan->containers[0].readiness;
  EXPECT_EQ(p.kind, ProbePlan::Kind::kHttpGet);
  EXPECT_EQ(p.host, "127.0.10.5");
  EXPECT_EQ(p.port, 8000);
  EXPECT_EQ(p.path, "/readyz");
  EXPECT_EQ(p.failure_threshold, 2);
  EXPECT_EQ(p.initial_delay, std::chrono::seconds(3));

  container["livenessProbe"] = {{"httpGet", {{"path", "/healthz"}, {"port", 8000}}},
                                {"periodSeconds", 10}, {"failureThreshold", 6}};
  const ProbePlan live = PlanPod(Pod(container), Env())->containers[0].liveness;
  EXPECT_EQ(live.kind, ProbePlan::Kind::kHttpGet);
  EXPECT_EQ(live.period, std::chrono::seconds(10));
  EXPECT_EQ(live.failure_threshold, 6);
  container.erase("livenessProbe");

  container["readinessProbe"] = {{"tcpSocket", {{"port", 5432}}}};
  EXPECT_EQ(PlanPod(Pod(container), Env())->containers[0].readiness.kind,
            ProbePlan::Kind::kTcpSocket);
  container["readinessProbe"] = {{"exec", {{"command", {"true"}}}}};
  EXPECT_EQ(PlanPod(Pod(container), Env()).status().code(), Code::kInvalid);
  container["readinessProbe"] = {{"tcpSocket", {{"port", "nope"}}}};
  EXPECT_EQ(PlanPod(Pod(container), Env()).status().code(), Code::kInvalid);
}

TEST(PlanPodTest, RestartPolicyAndGracePeriod) {
  Json pod = Pod({{"name", "c"}, {"command", {"true"}}});
  pod["spec"]["restartPolicy"] = "OnFailure";
  pod["spec"]["terminationGracePeriodSeconds"] = 5;
  auto plan = PlanPod(pod, Env());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->restart_policy, RestartPolicy::kOnFailure);
  EXPECT_EQ(plan->grace_period, std::chrono::seconds(5));
}

TEST(AddressBlockTest, ParsesLoopbackBlocksOnly) {
  auto block = AddressBlock::Parse("127.0.10.0/24");
  ASSERT_TRUE(block.ok());
  EXPECT_TRUE(block->Contains("127.0.10.1"));
  EXPECT_TRUE(block->Contains("127.0.10.254"));
  EXPECT_FALSE(block->Contains("127.0.10.0"));
  EXPECT_FALSE(block->Contains("127.0.10.255"));
  EXPECT_FALSE(block->Contains("127.0.11.1"));
  auto [pods, services] = block->Split();
  EXPECT_EQ(pods.ToString(), "127.0.10.0/25");
  EXPECT_EQ(services.ToString(), "127.0.10.128/25");
  for (const char* bad : {"10.0.0.0/24", "127.0.0.1", "127.0.0.0/31", "127.0.0.0/x", "nope/24"}) {
    EXPECT_EQ(AddressBlock::Parse(bad).status().code(), Code::kInvalid) << bad;
  }
}

TEST(AddressAllocatorTest, AllocatesLowestFreeAndReuses) {
  AddressAllocator ips(AddressBlock::Parse("127.1.2.0/30").value());
  EXPECT_EQ(ips.Allocate().value(), "127.1.2.1");
  EXPECT_EQ(ips.Allocate().value(), "127.1.2.2");
  EXPECT_EQ(ips.Allocate().status().code(), Code::kUnavailable);
  ips.Release("127.1.2.1");
  EXPECT_FALSE(ips.Reserve("127.1.2.2"));
  EXPECT_TRUE(ips.Reserve("127.1.2.1"));
  EXPECT_FALSE(ips.Reserve("127.9.9.9"));
}

}  // namespace
}  // namespace petrel
