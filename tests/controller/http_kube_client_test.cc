// Protocol behaviour of HttpKubeClient against a scripted plain-HTTP server (net/HttpServer):
// error mapping, retries, list decoration and watch stream handling. The real API server is
// exercised in http_kube_client_envtest.cc.
#include "controller/http_kube_client.h"

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "net/http.h"

namespace petrel {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST(KubeStatusFromResponseTest, MapsCodesAndReasons) {
  struct Case {
    int http;
    std::string reason;
    Code want;
  };
  const std::vector<Case> cases = {
      {400, "BadRequest", Code::kInvalid},        {401, "Unauthorized", Code::kUnauthorized},
      {403, "Forbidden", Code::kForbidden},       {404, "NotFound", Code::kNotFound},
      {409, "AlreadyExists", Code::kAlreadyExists}, {409, "Conflict", Code::kConflict},
      {410, "Expired", Code::kGone},              {415, "UnsupportedMediaType", Code::kInvalid},
      {422, "Invalid", Code::kInvalid},           {429, "TooManyRequests", Code::kTooManyRequests},
      {500, "InternalError", Code::kUnavailable}, {503, "ServiceUnavailable", Code::kUnavailable},
      {504, "Timeout", Code::kUnavailable},       {405, "MethodNotAllowed", Code::kTerminal},
  };
  for (const auto& c : cases) {
    Json body = {{"kind", "Status"},  {"apiVersion", "v1"},        {"status", "Failure"},
                 {"reason", c.reason}, {"message", "server says " + c.reason}, {"code", c.http}};
    Status s = KubeStatusFromResponse(c.http, body.dump());
    EXPECT_EQ(s.code(), c.want) << c.http << " " << c.reason;
    EXPECT_EQ(s.message(), "server says " + c.reason);
  }
}

TEST(KubeStatusFromResponseTest, InvalidKeepsCausesAndMessage) {
  const std::string body = R"({"kind":"Status","apiVersion":"v1","status":"Failure",
    "message":"Widget.petrel.test \"w\" is invalid: spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1",
    "reason":"Invalid","details":{"name":"w","kind":"Widget","causes":[
      {"reason":"FieldValueInvalid","message":"Invalid value: 0: spec.size in body should be greater than or equal to 1","field":"spec.size"}]},
    "code":422})";
  Status s = KubeStatusFromResponse(422, body);
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_THAT(s.message(), HasSubstr("greater than or equal to 1"));
  ASSERT_EQ(s.causes().size(), 1u);
  EXPECT_EQ(s.causes()[0].field, "spec.size");
  EXPECT_EQ(s.causes()[0].reason, "FieldValueInvalid");
  EXPECT_THAT(s.causes()[0].message, HasSubstr("greater than or equal to 1"));
}

TEST(KubeStatusFromResponseTest, RetryAfterFromHeaderOrDetails) {
  EXPECT_EQ(KubeStatusFromResponse(429, "", "3").retry_after_ms(), 3000);
  EXPECT_EQ(KubeStatusFromResponse(
                429, R"({"kind":"Status","details":{"retryAfterSeconds":2},"message":"slow"})")
                .retry_after_ms(),
            2000);
  EXPECT_EQ(KubeStatusFromResponse(429, "", "Wed, 21 Oct 2015 07:28:00 GMT").retry_after_ms(), 0);
}

TEST(KubeStatusFromResponseTest, NonStatusBodyIsQuotedShortly) {
  Status s = KubeStatusFromResponse(502, "<html>bad gateway</html>");
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("HTTP 502"));
  EXPECT_THAT(s.message(), HasSubstr("bad gateway"));
  Status big = KubeStatusFromResponse(500, std::string(10000, 'x'));
  EXPECT_LT(big.message().size(), 400u);
}

TEST(KubeResourcePathTest, CoreCustomNamespacedAndClusterScoped) {
  ResourceType widgets{"petrel.test", "v1", "widgets", "Widget", true};
  ResourceType nodes{"", "v1", "nodes", "Node", false};
  EXPECT_EQ(KubeResourcePath(resources::kPod, "db", "db-1"), "/api/v1/namespaces/db/pods/db-1");
  EXPECT_EQ(KubeResourcePath(resources::kPod, "db", "db-1", "binding"),
            "/api/v1/namespaces/db/pods/db-1/binding");
  EXPECT_EQ(KubeResourcePath(resources::kPod, "", ""), "/api/v1/pods");
  EXPECT_EQ(KubeResourcePath(widgets, "ns", "w", "status"),
            "/apis/petrel.test/v1/namespaces/ns/widgets/w/status");
  EXPECT_EQ(KubeResourcePath(widgets, "ns"), "/apis/petrel.test/v1/namespaces/ns/widgets");
  EXPECT_EQ(KubeResourcePath(nodes, "ignored", "n1"), "/api/v1/nodes/n1");
}

// A scripted API server: each test installs handlers and counts requests.
class ScriptedServerTest : public ::testing::Test {
 protected:
  void StartServer(const std::function<void(HttpServer&)>& routes) {
    auto s = HttpServer::Listen("127.0.0.1", 0, 2);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    routes(*server_);
    server_->Start();
    KubeConfig config;
    config.server = "http://127.0.0.1:" + std::to_string(server_->port());
    config.token = "t0ken";
    HttpKubeClientOptions options;
    options.request_timeout = 5s;
    options.initial_backoff = 10ms;
    options.max_backoff = 50ms;
    options.max_attempts = 4;
    auto c = HttpKubeClient::Create(config, options);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->Stop();
  }

  static HttpResponse StatusReply(int code, const std::string& reason) {
    Json j = {{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Failure"},
              {"reason", reason}, {"message", reason + " from test"}, {"code", code}};
    return HttpResponse::Json(code, j.dump());
  }

  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<HttpKubeClient> client_;
};

TEST_F(ScriptedServerTest, GetRetries503ThenSucceedsAndSendsTheToken) {
  std::atomic<int> calls{0};
  std::string auth;
  StartServer([&](HttpServer& s) {
    s.Handle("/api/v1/namespaces/ns/configmaps/cm", [&](const HttpRequest& r) {
      auth = r.headers.count("authorization") ? r.headers.at("authorization") : "";
      if (++calls < 3) return StatusReply(503, "ServiceUnavailable");
      return HttpResponse::Json(200, R"({"kind":"ConfigMap","metadata":{"name":"cm"}})");
    });
  });
  std::vector<int> codes;
  std::mutex mu;
  client_->SetObserver([&](const std::string& verb, int code, double seconds) {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(verb, "get");
    EXPECT_GE(seconds, 0);
    codes.push_back(code);
  });
  auto r = client_->Get(resources::kConfigMap, {"ns", "cm"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(meta::Name(*r), "cm");
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(auth, "Bearer t0ken");
  EXPECT_EQ(codes, (std::vector<int>{503, 503, 200}));
}

TEST_F(ScriptedServerTest, ManyThreadsShareOneClient) {
  std::atomic<int> calls{0};
  StartServer([&](HttpServer& s) {
    s.Handle("/api/v1/namespaces/ns/configmaps/", [&](const HttpRequest& r) {
      ++calls;
      std::string name = r.Path().substr(r.Path().rfind('/') + 1);
      return HttpResponse::Json(200, Json{{"metadata", {{"name", name}}}}.dump());
    });
  });
  std::vector<std::future<int>> workers;
  for (int t = 0; t < 8; ++t) {
    workers.push_back(std::async(std::launch::async, [&, t] {
      int good = 0;
      for (int i = 0; i < 25; ++i) {
        std::string name = "cm-" + std::to_string(t) + "-" + std::to_string(i);
        auto r = client_->Get(resources::kConfigMap, {"ns", name});
        if (r.ok() && meta::Name(*r) == name) ++good;
      }
      return good;
    }));
  }
  int good = 0;
  for (auto& w : workers) good += w.get();
  EXPECT_EQ(good, 200);
  EXPECT_EQ(calls, 200);
}

TEST_F(ScriptedServerTest, RetriesAreBounded) {
  std::atomic<int> calls{0};
  StartServer([&](HttpServer& s) {
    s.Handle("/api/v1/namespaces/ns/configmaps/cm", [&](const HttpRequest&) {
      ++calls;
      return StatusReply(500, "InternalError");
    });
  });
  auto r = client_->Get(resources::kConfigMap, {"ns", "cm"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(calls, 4);
}

TEST_F(ScriptedServerTest, CreateIsNotRepeatedAfter500ButIsAfter429) {
  std::atomic<int> calls{0};
  std::atomic<bool> throttle{true};
  StartServer([&](HttpServer& s) {
    s.Handle("/api/v1/namespaces/ns/configmaps", [&](const HttpRequest& r) {
      EXPECT_EQ(r.method, "POST");
      ++calls;
      if (throttle.exchange(false)) {
        HttpResponse t = StatusReply(429, "TooManyRequests");
        t.headers["Retry-After"] = "0";
        return t;
      }
      return StatusReply(500, "InternalError");
    });
  });
  Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"},
             {"metadata", {{"name", "x"}, {"namespace", "ns"}}}};
  auto r = client_->Create(resources::kConfigMap, cm);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(calls, 2);  // the 429 was retried, the 500 was not
}

TEST_F(ScriptedServerTest, CreateIsRetriedWhenTheServerWasNotReachable) {
  // Nothing listens on the port at first: the connect fails, so the POST surely never arrived.
  uint16_t port;
  {
    auto probe = HttpServer::Listen("127.0.0.1", 0);
    ASSERT_TRUE(probe.ok());
    port = (*probe)->port();
  }
  KubeConfig config;
  config.server = "http://127.0.0.1:" + std::to_string(port);
  HttpKubeClientOptions options;
  options.request_timeout = 10s;
  options.initial_backoff = 200ms;
  options.max_backoff = 200ms;
  options.max_attempts = 30;
  auto client = HttpKubeClient::Create(config, options);
  ASSERT_TRUE(client.ok());
  std::atomic<int> calls{0};
  auto later = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(300ms);
    auto s = HttpServer::Listen("127.0.0.1", port);
    if (!s.ok()) return std::unique_ptr<HttpServer>();
    (*s)->Handle("/api/v1/namespaces/ns/configmaps", [&](const HttpRequest& r) {
      ++calls;
      return HttpResponse::Json(201, r.body);
    });
    (*s)->Start();
    return std::move(s).value();
  });
  Json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"},
             {"metadata", {{"name", "x"}, {"namespace", "ns"}}}};
  auto r = (*client)->Create(resources::kConfigMap, cm);
  auto server = later.get();
  ASSERT_TRUE(server) << "port " << port << " was taken meanwhile";
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(calls, 1);
  server->Stop();
}

TEST_F(ScriptedServerTest, ListFillsApiVersionAndKindAndPassesPaging) {
  std::string query;
  StartServer([&](HttpServer& s) {
    s.Handle("/apis/petrel.test/v1/widgets", [&](const HttpRequest& r) {
      query = r.QueryParam("labelSelector") + "|" + r.QueryParam("limit") + "|" +
              r.QueryParam("continue");
      return HttpResponse::Json(
          200, R"({"kind":"WidgetList","apiVersion":"petrel.test/v1",
                   "metadata":{"resourceVersion":"42","continue":"next"},
                   "items":[{"metadata":{"name":"a","namespace":"x"}}]})");
    });
  });
  ResourceType widgets{"petrel.test", "v1", "widgets", "Widget", true};
  ListOptions o;
  o.label_selector = "app in (db,web)";
  o.limit = 1;
  o.continue_token = "abc=";
  auto r = client_->List(widgets, "", o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(query, "app in (db,web)|1|abc=");
  EXPECT_EQ(r->resource_version, "42");
  EXPECT_EQ(r->continue_token, "next");
  ASSERT_EQ(r->items.size(), 1u);
  EXPECT_EQ(r->items[0]["apiVersion"], "petrel.test/v1");
  EXPECT_EQ(r->items[0]["kind"], "Widget");
}

TEST_F(ScriptedServerTest, RequestsNeedANamespaceForNamespacedTypes) {
  StartServer([](HttpServer&) {});
  auto r = client_->Get(resources::kConfigMap, {"", "cm"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalid);
  EXPECT_THAT(r.status().message(), HasSubstr("namespace"));
}

// A watch endpoint that sends `lines` and then either ends or stays open until closed.
StreamHandler WatchHandler(std::vector<std::string> lines, bool stay_open) {
  return [lines, stay_open](const HttpRequest& r, const auto& start) {
    if (r.QueryParam("watch") != "1") {
      start(400, "text/plain").Write("not a watch");
      return;
    }
    ResponseStream& out = start(200, "application/json");
    for (const auto& l : lines) {
      if (!out.Write(l)) return;
    }
    auto give_up = std::chrono::steady_clock::now() + 20s;
    while (stay_open && !out.Closed() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(10ms);
    }
  };
}

WatchOptions FromVersion(const std::string& rv) {
  WatchOptions o;
  o.resource_version = rv;
  o.timeout_seconds = 30;
  return o;
}

TEST_F(ScriptedServerTest, WatchDeliversEventsSplitAcrossChunksThenUnavailableAtEnd) {
  StartServer([](HttpServer& s) {
    s.HandleStream("/api/v1/namespaces/ns/configmaps",
                   WatchHandler({R"({"type":"ADDED","object":{"metadata":{"name":"a"}}})" "\n"
                                 R"({"type":"MODIF)",
                                 R"(IED","object":{"metadata":{"name":"a"}}})" "\n",
                                 R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}})" "\n"},
                                false));
  });
  auto w = client_->Watch(resources::kConfigMap, "ns", FromVersion("5"));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  WatchEvent e;
  ASSERT_TRUE((*w)->Next(&e, 5s).ok());
  EXPECT_EQ(e.type, WatchEventType::kAdded);
  ASSERT_TRUE((*w)->Next(&e, 5s).ok());
  EXPECT_EQ(e.type, WatchEventType::kModified);
  ASSERT_TRUE((*w)->Next(&e, 5s).ok());
  EXPECT_EQ(e.type, WatchEventType::kBookmark);
  EXPECT_EQ(meta::ResourceVersion(e.object), "9");
  EXPECT_EQ((*w)->Next(&e, 5s).code(), Code::kUnavailable);
}

TEST_F(ScriptedServerTest, WatchErrorEvent410IsGone) {
  StartServer([](HttpServer& s) {
    s.HandleStream(
        "/api/v1/namespaces/ns/configmaps",
        WatchHandler({R"x({"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (20)"}})x" "\n"},
                     true));
  });
  auto w = client_->Watch(resources::kConfigMap, "ns", FromVersion("1"));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  WatchEvent e;
  Status s = (*w)->Next(&e, 5s);
  EXPECT_EQ(s.code(), Code::kGone) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("too old resource version"));
}

TEST_F(ScriptedServerTest, WatchAnswered410IsGone) {
  StartServer([](HttpServer& s) {
    s.Handle("/api/v1/namespaces/ns/configmaps",
             [](const HttpRequest&) { return StatusReply(410, "Expired"); });
  });
  auto w = client_->Watch(resources::kConfigMap, "ns", FromVersion("1"));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), Code::kGone);
}

TEST_F(ScriptedServerTest, QuietWatchTimesOutAndStaysUsableThenCancelWakesIt) {
  StartServer([](HttpServer& s) {
    s.HandleStream("/api/v1/namespaces/ns/configmaps", WatchHandler({}, true));
  });
  auto w = client_->Watch(resources::kConfigMap, "ns", FromVersion("5"));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  WatchEvent e;
  EXPECT_EQ((*w)->Next(&e, 100ms).code(), Code::kTimeout);
  EXPECT_EQ((*w)->Next(&e, 100ms).code(), Code::kTimeout);
  WatchStream* stream = w->get();
  auto blocked = std::async(std::launch::async, [&] { return stream->Next(&e, 60s); });
  std::this_thread::sleep_for(100ms);
  stream->Cancel();
  ASSERT_EQ(blocked.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(blocked.get().code(), Code::kCancelled);
  EXPECT_EQ(stream->Next(&e, 10ms).code(), Code::kCancelled);
}

TEST_F(ScriptedServerTest, WatchWithoutVersionStartsFromTheListVersion) {
  std::string watched_from;
  StartServer([&](HttpServer& s) {
    s.HandleStream("/api/v1/namespaces/ns/configmaps", [&](const HttpRequest& r,
                                                           const auto& start) {
      if (r.QueryParam("watch") != "1") {
        ResponseStream& out = start(200, "application/json");
        out.Write(R"({"kind":"ConfigMapList","metadata":{"resourceVersion":"77"},"items":[]})");
        return;
      }
      watched_from = r.QueryParam("resourceVersion");
      start(200, "application/json");
    });
  });
  auto w = client_->Watch(resources::kConfigMap, "ns", WatchOptions{});
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(watched_from, "77");
}

}  // namespace
}  // namespace petrel
