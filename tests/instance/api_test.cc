#include "instance/api.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace petrel {
namespace {

class InstanceApiTest : public testing::Test {
 protected:
  InstanceApiTest() {
    char tmpl[] = "/tmp/petrel-api-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::filesystem::create_directories(dir_ + "/petrel");
    ManagerOptions o;
    o.node.name = "db-1";
    o.node.pgdata = dir_ + "/pgdata";
    manager_ = std::make_unique<InstanceManager>(o, Clock::Real());
    api_ = std::make_unique<InstanceApi>(*manager_, "the-token");
  }
  ~InstanceApiTest() override { std::filesystem::remove_all(dir_); }

  HttpResponse Put(const std::string& body, const std::string& auth = "Bearer the-token") {
    HttpRequest r;
    r.method = "PUT";
    r.target = "/spec";
    if (!auth.empty()) r.headers["authorization"] = auth;
    r.body = body;
    return api_->Spec(r);
  }

  std::string dir_;
  std::unique_ptr<InstanceManager> manager_;
  std::unique_ptr<InstanceApi> api_;
};

TEST_F(InstanceApiTest, PutSpecNeedsTheBearerToken) {
  const std::string body = R"({"generation":1,"role":"primary","bootstrap":"initdb"})";
  EXPECT_EQ(Put(body, "").status, 401);
  EXPECT_EQ(Put(body, "Bearer wrong").status, 401);
  EXPECT_EQ(Put(body, "the-token").status, 401);
  HttpResponse r = Put(body, "Bearer the-token");
  EXPECT_EQ(r.status, 202) << r.body;
  ASSERT_TRUE(manager_->CurrentSpec().has_value());
  EXPECT_EQ(manager_->CurrentSpec()->role, InstanceRole::kPrimary);
  // Persisted for a restart.
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/petrel/spec.json"));
}

TEST_F(InstanceApiTest, MalformedOrInvalidSpecIs400AndChangesNothing) {
  HttpResponse bad = Put("{\"role\":");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("not valid JSON"), std::string::npos);
  HttpResponse invalid = Put(R"({"role":"replica"})");
  EXPECT_EQ(invalid.status, 400);
  Json j = Json::parse(invalid.body);
  EXPECT_EQ(j["details"]["causes"][0]["field"], "primary");
  EXPECT_NE(j["message"].get<std::string>().find("is required"), std::string::npos);
  EXPECT_FALSE(manager_->CurrentSpec().has_value());
}

TEST_F(InstanceApiTest, ImpossibleTransitionIs409WithTheReason) {
  ASSERT_EQ(Put(R"({"generation":3,"role":"primary","bootstrap":"initdb"})").status, 202);
  HttpResponse stale = Put(R"({"generation":2,"role":"primary","bootstrap":"initdb"})");
  EXPECT_EQ(stale.status, 409);
  EXPECT_NE(stale.body.find("older than the accepted generation 3"), std::string::npos);
  HttpResponse initdb_replica = Put(
      R"({"generation":4,"role":"replica","bootstrap":"initdb","primary":{"host":"10.0.0.1"}})");
  EXPECT_EQ(initdb_replica.status, 409);
  EXPECT_NE(initdb_replica.body.find("cannot be created with initdb"), std::string::npos);
  EXPECT_EQ(manager_->CurrentSpec()->generation, 3);
}

TEST_F(InstanceApiTest, ReadOnlyEndpoints) {
  HttpRequest get;
  get.method = "GET";
  EXPECT_EQ(api_->Healthz(get).status, 200);
  EXPECT_EQ(api_->Readyz(get).status, 503);  // nothing runs
  HttpResponse status = api_->Status(get);
  EXPECT_EQ(status.status, 200);
  EXPECT_EQ(Json::parse(status.body)["name"], "db-1");
  EXPECT_EQ(api_->Spec(get).status, 404);
  HttpRequest post = get;
  post.method = "POST";
  EXPECT_EQ(api_->Status(post).status, 405);
}

HttpRequest Authed(const std::string& method, const std::string& body) {
  HttpRequest r;
  r.method = method;
  r.headers["authorization"] = "Bearer the-token";
  r.body = body;
  return r;
}

TEST_F(InstanceApiTest, LeaseIsGrantedOnlyToThePrimaryOfTheSameTerm) {
  const std::string grant = R"({"term":2,"durationMs":1000})";
  HttpResponse no_spec = api_->Lease(Authed("PUT", grant));
  EXPECT_EQ(no_spec.status, 409);
  EXPECT_NE(no_spec.body.find("no spec has been accepted"), std::string::npos) << no_spec.body;

  ASSERT_EQ(Put(R"({"generation":1,"role":"primary","bootstrap":"initdb","term":2,)"
                R"("leaseDurationMs":1000})")
                .status,
            202);
  EXPECT_EQ(manager_->GetStatus().lease_remaining_ms, 0);  // needed, not held
  EXPECT_EQ(manager_->GetStatus().term, 2);
  HttpResponse other = api_->Lease(Authed("PUT", R"({"term":1,"durationMs":1000})"));
  EXPECT_EQ(other.status, 409);
  EXPECT_NE(other.body.find("accepted spec is for term 2"), std::string::npos) << other.body;

  HttpRequest no_token = Authed("PUT", grant);
  no_token.headers.clear();
  EXPECT_EQ(api_->Lease(no_token).status, 401);
  EXPECT_EQ(api_->Lease(Authed("PUT", "{")).status, 400);
  EXPECT_EQ(api_->Lease(Authed("PUT", R"({"term":2,"durationMs":0})")).status, 400);
  EXPECT_EQ(api_->Lease(Authed("GET", "")).status, 405);
  EXPECT_EQ(manager_->GetStatus().lease_remaining_ms, 0);

  HttpResponse ok = api_->Lease(Authed("PUT", grant));
  ASSERT_EQ(ok.status, 200) << ok.body;
  auto reply = LeaseReply::FromJson(Json::parse(ok.body));
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->term, 2);
  EXPECT_GT(manager_->GetStatus().lease_remaining_ms, 0);
}

TEST_F(InstanceApiTest, AReplicaConfirmsOnlyItsOwnTerm) {
  ASSERT_EQ(Put(R"({"generation":1,"role":"replica","bootstrap":"clone","term":5,)"
                R"("primary":{"host":"10.0.0.1"}})")
                .status,
            202);
  EXPECT_EQ(manager_->GetStatus().lease_remaining_ms, -1);
  auto ask = [&](int64_t term) {
    HttpResponse r =
        api_->ConfirmLeader(Authed("POST", PeerConfirmRequest{term, "db-1"}.ToJson().dump()));
    EXPECT_EQ(r.status, 200) << r.body;
    auto reply = PeerConfirmReply::FromJson(Json::parse(r.body));
    return reply.ok() && reply->confirmed;
  };
  EXPECT_TRUE(ask(5));
  EXPECT_FALSE(ask(4));
  EXPECT_FALSE(ask(6));
  HttpRequest no_token = Authed("POST", R"({"term":5,"primary":"db-1"})");
  no_token.headers.clear();
  EXPECT_EQ(api_->ConfirmLeader(no_token).status, 401);
  EXPECT_EQ(api_->ConfirmLeader(Authed("POST", "[")).status, 400);
  EXPECT_EQ(api_->ConfirmLeader(Authed("PUT", "{}")).status, 405);
}

TEST(ConstantTimeEqualsTest, ComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

}  // namespace
}  // namespace petrel
