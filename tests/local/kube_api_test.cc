// The Kubernetes-compatible API of petrel local, spoken to by the real HttpKubeClient over
// loopback HTTP: CRUD, the status subresource, error codes, watch, discovery and pods/log.
#include "local/kube_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "controller/http_kube_client.h"
#include "local/store.h"

namespace petrel {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr const char* kToken = "test-token-0123";

class KubeApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    logs_ = fs::temp_directory_path() /
            ("kube-api-test-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(logs_ / "default");
    auto store = LocalStore::Open({});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    api_ = std::make_unique<KubeApi>(*store_, KubeApiOptions{kToken, logs_,
                                                             std::chrono::milliseconds(20)});
    auto server = HttpServer::Listen("127.0.0.1", 0, 1);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    api_->Register(*server_);
    server_->Start();
    server_url_ = "http://127.0.0.1:" + std::to_string(server_->port());
    KubeConfig config;
    config.server = server_url_;
    config.token = kToken;
    HttpKubeClientOptions options;
    options.request_timeout = std::chrono::seconds(10);
    auto client = HttpKubeClient::Create(config, options);
    ASSERT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(*client);
  }

  void TearDown() override {
    client_.reset();
    if (server_) server_->Stop();
    std::error_code ec;
    fs::remove_all(logs_, ec);
  }

  static Json Cluster(const std::string& name) {
    return {{"apiVersion", "petrel.dev/v1alpha1"},
            {"kind", "PostgresCluster"},
            {"metadata", {{"name", name}, {"namespace", "default"}}},
            {"spec", {{"replicas", 1}}}};
  }

  void CreatePod(const std::string& name) {
    Json pod = {{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", {{"name", name}, {"namespace", "default"}}},
                {"spec", {{"containers", {{{"name", "postgres"}, {"image", "pg"}}}}}}};
    ASSERT_TRUE(client_->Create(resources::kPod, pod).ok());
  }

  fs::path logs_;
  std::unique_ptr<LocalStore> store_;
  std::unique_ptr<KubeApi> api_;
  std::unique_ptr<HttpServer> server_;
  std::string server_url_;
  std::unique_ptr<HttpKubeClient> client_;
};

TEST_F(KubeApiTest, RequestsWithoutTheTokenAreUnauthorized) {
  auto response = HttpCall("GET", server_url_ + "/apis/petrel.dev/v1alpha1/postgresclusters");
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 401);
  HttpCallOptions wrong;
  wrong.headers["Authorization"] = "Bearer nope";
  response = HttpCall("GET", server_url_ + "/api/v1/namespaces/default/pods", "", wrong);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 401);
  EXPECT_THAT(response->body, HasSubstr("\"reason\":\"Unauthorized\""));
}

TEST_F(KubeApiTest, TheTokenAsPathPrefixAuthenticatesClientsThatSendNoHeader) {
  auto response = HttpCall("GET", server_url_ + "/t/" + kToken + "/api/v1/namespaces/default/pods");
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 200) << response->body;
  EXPECT_THAT(response->body, HasSubstr("\"kind\":\"PodList\""));
  response = HttpCall("GET", server_url_ + "/t/" + kToken + "/apis");
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 200) << response->body;
  response = HttpCall("GET", server_url_ + "/t/wrong-token/api/v1/namespaces/default/pods");
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 404);
}

TEST_F(KubeApiTest, MalformedBodiesAreBadRequestsAndChangeNothing) {
  ASSERT_TRUE(client_->Create(resources::kPostgresCluster, Cluster("db")).ok());
  HttpCallOptions auth;
  auth.headers["Authorization"] = std::string("Bearer ") + kToken;
  auto response =
      HttpCall("DELETE", server_url_ + "/apis/petrel.dev/v1alpha1/namespaces/default/postgresclusters/db",
               R"({"propagationPolicy": 5})", auth);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 400) << response->body;
  auth.headers["Content-Type"] = "application/strategic-merge-patch+json";
  response = HttpCall("PATCH",
                      server_url_ + "/apis/petrel.dev/v1alpha1/namespaces/default/postgresclusters/db",
                      R"({"spec": {"replicas": 3}})", auth);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 415);
  EXPECT_THAT(response->body, HasSubstr("kubectl patch --type merge"));
  auto db = client_->Get(resources::kPostgresCluster, {"default", "db"});
  ASSERT_TRUE(db.ok());
  EXPECT_EQ((*db)["spec"]["replicas"], 1);
}

TEST_F(KubeApiTest, CrudAndStatusSubresourceKeepKubernetesSemanticsAndErrorCodes) {
  auto created = client_->Create(resources::kPostgresCluster, Cluster("db"));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ((*created)["metadata"]["generation"], 1);
  EXPECT_EQ(client_->Create(resources::kPostgresCluster, Cluster("db")).status().code(),
            Code::kAlreadyExists);
  EXPECT_EQ(client_->Get(resources::kPostgresCluster, {"default", "nope"}).status().code(),
            Code::kNotFound);

  // A merge patch of the status subresource changes status only, as the plugin's switchover
  // sends it, and a stale resourceVersion in it conflicts.
  PatchOptions status_patch;
  status_patch.subresource = "status";
  auto patched = client_->Patch(resources::kPostgresCluster, {"default", "db"}, PatchType::kMerge,
                                {{"status", {{"targetPrimary", "db-2"}}}, {"spec", {{"replicas", 5}}}},
                                status_patch);
  ASSERT_TRUE(patched.ok()) << patched.status().ToString();
  EXPECT_EQ((*patched)["status"]["targetPrimary"], "db-2");
  EXPECT_EQ((*patched)["spec"]["replicas"], 1);
  auto stale = client_->Patch(
      resources::kPostgresCluster, {"default", "db"}, PatchType::kMerge,
      {{"metadata", {{"resourceVersion", meta::ResourceVersion(*created)}}},
       {"status", {{"targetPrimary", "db-3"}}}},
      status_patch);
  EXPECT_EQ(stale.status().code(), Code::kConflict);

  auto list = client_->List(resources::kPostgresCluster, "default", {});
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->items.size(), 1u);
  EXPECT_FALSE(list->resource_version.empty());

  ASSERT_TRUE(client_->Delete(resources::kPostgresCluster, {"default", "db"}).ok());
  EXPECT_EQ(client_->Get(resources::kPostgresCluster, {"default", "db"}).status().code(),
            Code::kNotFound);
  EXPECT_EQ(client_->Delete(resources::kPostgresCluster, {"default", "db"}).code(),
            Code::kNotFound);
}

TEST_F(KubeApiTest, WatchStreamsChangesToTheClient) {
  WatchOptions options;
  options.timeout_seconds = 30;
  auto watch = client_->Watch(resources::kPostgresCluster, "default", options);
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  ASSERT_TRUE(client_->Create(resources::kPostgresCluster, Cluster("watched")).ok());
  WatchEvent event;
  Status next = (*watch)->Next(&event, std::chrono::seconds(10));
  ASSERT_TRUE(next.ok()) << next.ToString();
  EXPECT_EQ(event.type, WatchEventType::kAdded);
  EXPECT_EQ(meta::Name(event.object), "watched");
  (*watch)->Cancel();
}

TEST_F(KubeApiTest, DiscoveryListsServedResourcesWithShortNamesAndSubresources) {
  auto petrel = client_->RawGet("/apis/petrel.dev/v1alpha1");
  ASSERT_TRUE(petrel.ok()) << petrel.status().ToString();
  Json doc = Json::parse(*petrel);
  bool pgc = false;
  bool status = false;
  for (const auto& r : doc["resources"]) {
    pgc |= r["name"] == "postgresclusters" && r["shortNames"][0] == "pgc";
    status |= r["name"] == "postgresclusters/status";
  }
  EXPECT_TRUE(pgc && status) << doc.dump();
  auto core = client_->RawGet("/api/v1");
  ASSERT_TRUE(core.ok());
  EXPECT_THAT(*core, HasSubstr("\"pods/log\""));
  auto groups = client_->RawGet("/apis");
  ASSERT_TRUE(groups.ok());
  EXPECT_THAT(*groups, HasSubstr("\"petrel.dev/v1alpha1\""));
  EXPECT_EQ(client_->RawGet("/apis/apps/v1").status().code(), Code::kNotFound);
}

TEST_F(KubeApiTest, PodLogServesTheLogFileWithTailAndChecksTheContainer) {
  CreatePod("db-1");
  EXPECT_THAT(client_->RawGet("/api/v1/namespaces/default/pods/db-1/log").status().message(),
              HasSubstr("is waiting to start"));
  std::ofstream(logs_ / "default" / "db-1.log") << "one\ntwo\nthree\n";
  auto all = client_->RawGet("/api/v1/namespaces/default/pods/db-1/log?container=postgres");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(*all, "one\ntwo\nthree\n");
  auto tail = client_->RawGet("/api/v1/namespaces/default/pods/db-1/log?tailLines=2");
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(*tail, "two\nthree\n");
  auto wrong = client_->RawGet("/api/v1/namespaces/default/pods/db-1/log?container=sidecar");
  EXPECT_EQ(wrong.status().code(), Code::kInvalid);
  EXPECT_THAT(wrong.status().message(), HasSubstr("container sidecar is not valid for pod db-1"));
  EXPECT_EQ(client_->RawGet("/api/v1/namespaces/default/pods/db-9/log").status().code(),
            Code::kNotFound);
}

TEST_F(KubeApiTest, FollowedLogStreamsNewLinesUntilThePodIsDeleted) {
  CreatePod("db-1");
  std::ofstream(logs_ / "default" / "db-1.log") << "old\n";
  std::string received;
  std::mutex mu;
  std::atomic<bool> ended{false};
  Status result;
  std::thread reader([&] {
    result = client_->RawGetStream(
        "/api/v1/namespaces/default/pods/db-1/log?follow=true&tailLines=1",
        [&](std::string_view data) {
          std::lock_guard<std::mutex> lock(mu);
          received.append(data);
          return true;
        },
        std::chrono::seconds(30));
    ended = true;
  });
  auto wait_for = [&](const std::string& text) {
    for (int i = 0; i < 200; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (received.find(text) != std::string::npos) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  };
  EXPECT_TRUE(wait_for("old\n"));
  std::ofstream(logs_ / "default" / "db-1.log", std::ios::app) << "new line\n";
  EXPECT_TRUE(wait_for("new line\n"));
  ASSERT_TRUE(client_->Delete(resources::kPod, {"default", "db-1"}).ok());
  reader.join();
  EXPECT_TRUE(ended);
  EXPECT_TRUE(result.ok()) << result.ToString();
  EXPECT_EQ(received, "old\nnew line\n");
}

TEST(LocalKubeconfigYaml, LoadsAsAKubeconfigWithServerTokenAndNamespace) {
  fs::path file = fs::temp_directory_path() / ("kubeconfig-" + std::to_string(::getpid()));
  std::ofstream(file) << LocalKubeconfigYaml("http://127.0.0.1:1234", "secret-token");
  auto config = LoadKubeconfigFiles({file.string()});
  fs::remove(file);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->server, "http://127.0.0.1:1234/t/secret-token");
  EXPECT_EQ(config->token, "secret-token");
  EXPECT_EQ(config->namespace_, "default");
}

}  // namespace
}  // namespace petrel
