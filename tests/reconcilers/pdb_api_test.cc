// Which PodDisruptionBudget API the cluster reconciler uses, and that the planner writes it.
#include "reconcilers/pdb_api.h"

#include <gtest/gtest.h>

#include <set>

#include "reconcilers/cluster_plan.h"

namespace petrel {
namespace {

TEST(PdbApi, ChoosesTheNewestVersionThatAnswers) {
  struct Case {
    const char* name;
    Status v1;
    Status v1beta1;
    const ResourceType* want;  // nullptr: an error
    Code code = Code::kOk;
  };
  const std::vector<Case> cases = {
      {"1.21 to 1.24: both served", Status::Ok(), Status::Ok(), &resources::kPodDisruptionBudgetV1},
      {"1.25 and later: v1 only", Status::Ok(), NotFoundError("404 page not found"),
       &resources::kPodDisruptionBudgetV1},
      {"1.20: v1beta1 only", NotFoundError("404 page not found"), Status::Ok(),
       &resources::kPodDisruptionBudget},
      {"petrel local: v1 not served", InvalidError("the local store does not serve it"),
       Status::Ok(), &resources::kPodDisruptionBudget},
      {"no answer", UnavailableError("connection refused"), UnavailableError("connection refused"),
       nullptr, Code::kUnavailable},
      {"not allowed", ForbiddenError("cannot list"), ForbiddenError("cannot list"), nullptr,
       Code::kForbidden},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto chosen = ChoosePdbType(c.v1, c.v1beta1);
    if (c.want) {
      ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
      EXPECT_EQ(*chosen, c.want);
    } else {
      ASSERT_FALSE(chosen.ok());
      EXPECT_EQ(chosen.status().code(), c.code);
      EXPECT_NE(chosen.status().message().find("poddisruptionbudgets"), std::string::npos)
          << chosen.status().message();
      EXPECT_NE(chosen.status().message().find(c.v1.message()), std::string::npos);
    }
  }
}

// Serves List for the given PodDisruptionBudget versions only, like an API server of one
// Kubernetes release; records what was asked.
class PdbVersionsClient : public KubeClient {
 public:
  explicit PdbVersionsClient(std::set<std::string> served) : served_(std::move(served)) {}
  Result<ObjectList> List(const ResourceType& type, const std::string&,
                          const ListOptions& options) override {
    asked.push_back(type.ApiVersion());
    limits.push_back(options.limit);
    if (!served_.count(type.ApiVersion())) return NotFoundError("404 page not found");
    return ObjectList{};
  }
  Result<Json> Get(const ResourceType&, const ObjectKey&) override { return Unused(); }
  Result<Json> Create(const ResourceType&, const Json&) override { return Unused(); }
  Result<Json> Update(const ResourceType&, const Json&, Subresource) override { return Unused(); }
  Status Delete(const ResourceType&, const ObjectKey&, const DeleteOptions&) override {
    return Unused();
  }
  Result<Json> Patch(const ResourceType&, const ObjectKey&, PatchType, const Json&,
                     const PatchOptions&) override {
    return Unused();
  }
  Result<Json> CreateSubresource(const ResourceType&, const ObjectKey&, const std::string&,
                                 const Json&) override {
    return Unused();
  }
  Result<std::unique_ptr<WatchStream>> Watch(const ResourceType&, const std::string&,
                                             const WatchOptions&) override {
    return Unused();
  }
  std::vector<std::string> asked;
  std::vector<int64_t> limits;

 private:
  static Status Unused() { return InternalError("not used by discovery"); }
  std::set<std::string> served_;
};

TEST(PdbApi, DiscoveryAsksTheServer) {
  PdbVersionsClient k120({"policy/v1beta1"});
  auto chosen = DiscoverPdbType(k120);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(*chosen, &resources::kPodDisruptionBudget);
  EXPECT_EQ(k120.asked, (std::vector<std::string>{"policy/v1", "policy/v1beta1"}));
  EXPECT_EQ(k120.limits, (std::vector<int64_t>{1, 1}));

  PdbVersionsClient k125({"policy/v1"});
  chosen = DiscoverPdbType(k125);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(*chosen, &resources::kPodDisruptionBudgetV1);
  EXPECT_EQ(k125.asked, (std::vector<std::string>{"policy/v1"}));

  PdbVersionsClient none({});
  EXPECT_EQ(DiscoverPdbType(none).status().code(), Code::kNotFound);
}

TEST(PdbApi, PlannerWritesTheChosenVersion) {
  for (const ResourceType* type :
       {&resources::kPodDisruptionBudget, &resources::kPodDisruptionBudgetV1}) {
    SCOPED_TRACE(type->ApiVersion());
    ClusterObservation o;
    o.cluster = {
        {"apiVersion", "petrel.dev/v1alpha1"},
        {"kind", "PostgresCluster"},
        {"metadata", {{"name", "db"}, {"namespace", "ns"}, {"uid", "u"}, {"generation", 1}}},
        {"spec",
         {{"replicas", 3},
          {"image", "ghcr.io/petrel-dev/postgres:15.4"},
          {"storage", {{"size", "1Gi"}}}}}};
    o.pdb_type = type;
    ClusterPlan plan = PlanCluster(o);
    int pdbs = 0;
    for (const auto& a : plan.actions) {
      if (a.body.value("kind", "") != "PodDisruptionBudget") continue;
      ++pdbs;
      EXPECT_EQ(a.type, type);
      EXPECT_EQ(a.body.value("apiVersion", ""), type->ApiVersion());
    }
    EXPECT_EQ(pdbs, 2);
  }
}

}  // namespace
}  // namespace petrel
