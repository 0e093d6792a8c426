// HttpInstanceClient against a real HTTP server on loopback that plays the instance API.
#include "reconcilers/http_instance_client.h"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "net/http.h"

namespace petrel {
namespace {

class SecretReader : public ObjectReader {
 public:
  ObjectPtr Get(const ResourceType& type, const ObjectKey& key) const override {
    if (&type != &resources::kSecret || key.name != "db-petrel" || !present) return nullptr;
    // "s3cr3t-token" in base64, as the API server returns Secret data.
    return std::make_shared<const Json>(
        Json{{"metadata", {{"name", "db-petrel"}, {"namespace", "ns"}}},
             {"data", {{"password", "czNjcjN0LXRva2Vu"}}}});
  }
  std::vector<ObjectPtr> List(const ResourceType&, const std::string&,
                              const LabelSelector&) const override {
    return {};
  }
  bool present = true;
};

class HttpInstanceClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = HttpServer::Listen("127.0.0.1", 0);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    server_->Handle("/status", [](const HttpRequest&) {
      return HttpResponse::Json(200, R"({"name": "db-2", "initialized": true, "running": true,
        "ready": true, "role": "replica", "specGeneration": 4, "replayLsn": "0/3000060",
        "streaming": true, "lagBytes": 0, "timeline": 1})");
    });
    server_->Handle("/spec", [this](const HttpRequest& req) {
      std::lock_guard<std::mutex> lock(mu_);
      last_method_ = req.method;
      last_auth_ = req.headers.count("authorization") ? req.headers.at("authorization") : "";
      last_body_ = req.body;
      if (last_auth_ != "Bearer s3cr3t-token") return HttpResponse::Text(401, "no token");
      return HttpResponse::Text(reply_status_, reply_body_);
    });
    server_->Handle("/lease", [this](const HttpRequest& req) {
      std::lock_guard<std::mutex> lock(mu_);
      last_method_ = req.method;
      last_auth_ = req.headers.count("authorization") ? req.headers.at("authorization") : "";
      last_body_ = req.body;
      if (last_auth_ != "Bearer s3cr3t-token") return HttpResponse::Text(401, "no token");
      if (lease_refusal_) return HttpResponse::Text(409, "not the primary of term 7");
      if (lease_delay_.count() > 0) std::this_thread::sleep_for(lease_delay_);
      return HttpResponse::Json(200, R"({"term": 7, "remainingMs": 1000})");
    });
    server_->Start();
    client_ =
        std::make_unique<HttpInstanceClient>(reader_, std::chrono::seconds(3), server_->port());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  Json Pod(const std::string& ip) {
    Json pod = {
        {"metadata",
         {{"name", "db-2"}, {"namespace", "ns"}, {"labels", {{"petrel.dev/cluster", "db"}}}}},
        {"status", Json::object()}};
    if (!ip.empty()) pod["status"]["podIP"] = ip;
    return pod;
  }

  SecretReader reader_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<HttpInstanceClient> client_;
  std::mutex mu_;
  std::string last_method_, last_auth_, last_body_;
  bool lease_refusal_ = false;
  std::chrono::milliseconds lease_delay_{0};
  int reply_status_ = 202;
  std::string reply_body_ = "accepted";
};

TEST_F(HttpInstanceClientTest, ReadsStatus) {
  auto s = client_->GetStatus(Pod("127.0.0.1"));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->name, "db-2");
  EXPECT_TRUE(s->ready);
  EXPECT_EQ(s->role, InstanceRole::kReplica);
  EXPECT_EQ(s->spec_generation, 4);
  EXPECT_EQ(s->replay_lsn, "0/3000060");
}

TEST_F(HttpInstanceClientTest, PodWithoutIpIsUnavailable) {
  auto s = client_->GetStatus(Pod(""));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kUnavailable);
  EXPECT_NE(s.status().message().find("no IP"), std::string::npos);
}

TEST_F(HttpInstanceClientTest, PutsSpecWithTheClusterToken) {
  InstanceSpec spec;
  spec.generation = 5;
  spec.role = InstanceRole::kReplica;
  spec.bootstrap = BootstrapMethod::kClone;
  spec.primary = Endpoint{"10.0.0.1", 5432};
  spec.slot_name = "petrel_db_2";
  ASSERT_TRUE(client_->PutSpec(Pod("127.0.0.1"), spec).ok());
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_EQ(last_method_, "PUT");
  EXPECT_EQ(last_auth_, "Bearer s3cr3t-token");
  auto sent = InstanceSpec::FromJson(Json::parse(last_body_));
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, spec);
}

TEST_F(HttpInstanceClientTest, RefusalsBecomeTypedErrorsWithoutTheToken) {
  reply_status_ = 409;
  reply_body_ = "cannot demote a primary that has not been fenced";
  Status st = client_->PutSpec(Pod("127.0.0.1"), InstanceSpec{});
  EXPECT_EQ(st.code(), Code::kConflict);
  EXPECT_NE(st.message().find("cannot demote"), std::string::npos);
  EXPECT_EQ(st.message().find("s3cr3t"), std::string::npos);

  reader_.present = false;
  Status missing = client_->PutSpec(Pod("127.0.0.1"), InstanceSpec{});
  EXPECT_EQ(missing.code(), Code::kUnavailable);
  EXPECT_NE(missing.message().find("db-petrel"), std::string::npos);
}

TEST_F(HttpInstanceClientTest, SilentInstanceTimesOut) {
  // A port nobody listens on: connection refused surfaces as Unavailable, quickly.
  auto dead = HttpServer::Listen("127.0.0.1", 0);
  ASSERT_TRUE(dead.ok());
  uint16_t port = (*dead)->port();
  (*dead)->Stop();
  dead->reset();
  HttpInstanceClient client(reader_, std::chrono::milliseconds(500), port);
  auto s = client.GetStatus(Pod("127.0.0.1"));
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.status().code() == Code::kUnavailable || s.status().code() == Code::kTimeout)
      << s.status().ToString();
}

TEST_F(HttpInstanceClientTest, RenewsALeaseWithTheClusterToken) {
  LeaseGrant grant;
  grant.term = 7;
  grant.duration_ms = 1000;
  auto reply = client_->PutLease(Pod("127.0.0.1"), grant, std::chrono::milliseconds(2000));
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->term, 7);
  EXPECT_EQ(reply->remaining_ms, 1000);
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(last_method_, "PUT");
    EXPECT_EQ(last_auth_, "Bearer s3cr3t-token");
    auto sent = LeaseGrant::FromJson(Json::parse(last_body_));
    ASSERT_TRUE(sent.ok());
    EXPECT_EQ(sent->term, 7);
    EXPECT_EQ(sent->duration_ms, 1000);
  }
  lease_refusal_ = true;
  auto refused = client_->PutLease(Pod("127.0.0.1"), grant, std::chrono::milliseconds(2000));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kConflict);
  EXPECT_NE(refused.status().message().find("term 7"), std::string::npos);
}

TEST_F(HttpInstanceClientTest, LeaseRenewalHonoursItsShortTimeout) {
  lease_delay_ = std::chrono::milliseconds(1500);
  auto slow = client_->PutLease(Pod("127.0.0.1"), LeaseGrant{7, 1000}, std::chrono::milliseconds(100));
  ASSERT_FALSE(slow.ok());
  EXPECT_TRUE(slow.status().code() == Code::kTimeout || slow.status().code() == Code::kUnavailable)
      << slow.status().ToString();
}

}  // namespace
}  // namespace petrel
