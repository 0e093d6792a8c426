#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "net/http.h"

namespace petrel {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

std::unique_ptr<HttpServer> StartServer(
    const std::function<void(HttpServer&)>& routes) {
  auto server = HttpServer::Listen("127.0.0.1", 0);
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  routes(**server);
  (*server)->Start();
  return std::move(server).value();
}

std::string Url(const HttpServer& s, const std::string& target) {
  return "http://127.0.0.1:" + std::to_string(s.port()) + target;
}

// A plain socket, so tests can misbehave in ways a well-mannered client never would.
class RawSocket {
 public:
  RawSocket() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {}
  ~RawSocket() { Close(); }
  bool Connect(uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  // Binds to a free loopback port and listens, but never accepts.
  uint16_t ListenWithoutAccepting() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 0;
    if (::listen(fd_, 16) != 0) return 0;
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
  }
  bool Send(const std::string& s) { return ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == ssize_t(s.size()); }
  // Reads until `needle` has arrived or the peer closes; gives up after 10 s.
  std::string ReadUntil(const std::string& needle) {
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string got;
    char buf[4096];
    while (got.find(needle) == std::string::npos) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, n);
    }
    return got;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

TEST(HttpServerTest, RoutesByExactPathOrLongestPrefix) {
  auto reply = [](std::string name) {
    return [name](const HttpRequest&) { return HttpResponse::Text(200, name); };
  };
  auto server = StartServer([&](HttpServer& s) {
    s.Handle("/", reply("root"));
    s.Handle("/api/", reply("api"));
    s.Handle("/api/v1/", reply("v1"));
    s.Handle("/status", reply("status"));
  });
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/status", "status"},      {"/status?x=1", "status"}, {"/status/more", "root"},
      {"/api/v1/pods", "v1"},     {"/api/v2/pods", "api"},   {"/api", "root"},
      {"/anything/else", "root"},
  };
  for (const auto& [target, want] : cases) {
    auto r = HttpCall("GET", Url(*server, target));
    ASSERT_TRUE(r.ok()) << target << ": " << r.status().ToString();
    EXPECT_EQ(r->status, 200) << target;
    EXPECT_EQ(r->body, want) << target;
  }
}

TEST(HttpServerTest, UnknownPathIs404) {
  auto server = StartServer([](HttpServer& s) {
    s.Handle("/status", [](const HttpRequest&) { return HttpResponse::Text(200, "ok"); });
  });
  auto r = HttpCall("GET", Url(*server, "/nope"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 404);
  EXPECT_THAT(r->body, HasSubstr("/nope"));
}

TEST(HttpServerTest, HandlerSeesMethodHeadersQueryAndBody) {
  auto server = StartServer([](HttpServer& s) {
    s.Handle("/echo", [](const HttpRequest& req) {
      HttpResponse r = HttpResponse::Json(
          201, req.method + "|" + req.QueryParam("q") + "|" + req.headers.at("x-token") + "|" +
                   req.body);
      r.headers["X-Reply"] = "yes";
      return r;
    });
  });
  HttpCallOptions options;
  options.headers["X-Token"] = "abc";
  auto r = HttpCall("PUT", Url(*server, "/echo?q=a%20b"), "{\"k\":1}", options);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->content_type, "application/json");
  EXPECT_EQ(r->headers["x-reply"], "yes");
  EXPECT_EQ(r->body, "PUT|a b|abc|{\"k\":1}");
}

TEST(HttpServerTest, ThrowingHandlerAnswers500) {
  auto server = StartServer([](HttpServer& s) {
    s.Handle("/boom", [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("x"); });
  });
  auto r = HttpCall("GET", Url(*server, "/boom"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 500);
}

TEST(HttpServerTest, StreamingHandlerDeliversChunksInOrder) {
  auto server = StartServer([](HttpServer& s) {
    s.HandleStream("/watch", [](const HttpRequest&, const auto& start) {
      ResponseStream& out = start(200, "application/json");
      for (int i = 0; i < 3; ++i) {
        if (!out.Write("{\"n\":" + std::to_string(i) + "}\n")) return;
      }
    });
  });
  auto r = HttpCall("GET", Url(*server, "/watch"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers["transfer-encoding"], "chunked");
  EXPECT_EQ(r->body, "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n");
}

// The handler writes until Write() fails, as a watch does between events.
TEST(HttpServerTest, StreamingHandlerNoticesClientDisconnectOnWrite) {
  std::promise<bool> write_failed;
  auto server = StartServer([&](HttpServer& s) {
    s.HandleStream("/watch", [&](const HttpRequest&, const auto& start) {
      ResponseStream& out = start(200, "text/plain");
      auto give_up = std::chrono::steady_clock::now() + 20s;
      while (std::chrono::steady_clock::now() < give_up) {
        if (!out.Write("tick\n")) {
          write_failed.set_value(true);
          return;
        }
        std::this_thread::sleep_for(10ms);
      }
      write_failed.set_value(false);
    });
  });
  RawSocket client;
  ASSERT_TRUE(client.Connect(server->port()));
  ASSERT_TRUE(client.Send("GET /watch HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_THAT(client.ReadUntil("tick"), HasSubstr("tick"));
  client.Close();
  auto result = write_failed.get_future();
  ASSERT_EQ(result.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(result.get());
}

// A quiet stream (no events to send) must still learn that its client left.
TEST(HttpServerTest, QuietStreamSeesClosedAfterClientDisconnect) {
  std::promise<bool> saw_closed;
  std::promise<void> streaming;
  auto server = StartServer([&](HttpServer& s) {
    s.HandleStream("/watch", [&](const HttpRequest&, const auto& start) {
      ResponseStream& out = start(200, "text/plain");
      out.Write("hello\n");
      streaming.set_value();
      auto give_up = std::chrono::steady_clock::now() + 20s;
      while (!out.Closed() && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(10ms);
      }
      saw_closed.set_value(out.Closed());
    });
  });
  RawSocket client;
  ASSERT_TRUE(client.Connect(server->port()));
  ASSERT_TRUE(client.Send("GET /watch HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_THAT(client.ReadUntil("hello"), HasSubstr("hello"));
  streaming.get_future().wait();
  client.Close();
  auto result = saw_closed.get_future();
  ASSERT_EQ(result.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(result.get());
}

TEST(HttpServerTest, StopClosesOpenStreams) {
  std::promise<void> streaming;
  std::atomic<bool> saw_closed{false};
  auto server = StartServer([&](HttpServer& s) {
    s.HandleStream("/watch", [&](const HttpRequest&, const auto& start) {
      ResponseStream& out = start(200, "text/plain");
      out.Write("open\n");
      streaming.set_value();
      auto give_up = std::chrono::steady_clock::now() + 20s;
      while (!out.Closed() && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(10ms);
      }
      saw_closed = out.Closed();
    });
  });
  RawSocket client;
  ASSERT_TRUE(client.Connect(server->port()));
  ASSERT_TRUE(client.Send("GET /watch HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_EQ(streaming.get_future().wait_for(10s), std::future_status::ready);
  auto stopped = std::async(std::launch::async, [&] { server->Stop(); });
  ASSERT_EQ(stopped.wait_for(30s), std::future_status::ready);
  EXPECT_TRUE(saw_closed);
  // The client sees the connection end.
  std::string rest = client.ReadUntil("never-sent");
  EXPECT_THAT(rest, ::testing::Not(HasSubstr("never-sent")));
}

TEST(HttpServerTest, ListenOnTakenPortNamesTheAddress) {
  auto first = HttpServer::Listen("127.0.0.1", 0);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  uint16_t port = (*first)->port();
  auto second = HttpServer::Listen("127.0.0.1", port);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("127.0.0.1:" + std::to_string(port)));
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
}

TEST(HttpServerTest, ListenRejectsANonAddress) {
  auto s = HttpServer::Listen("not an address", 0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kInvalid);
}

TEST(HttpServerTest, StopWithoutStartIsSafe) {
  auto s = HttpServer::Listen("127.0.0.1", 0);
  ASSERT_TRUE(s.ok());
  (*s)->Stop();
  (*s)->Stop();
}

TEST(HttpCallTest, TimesOutAgainstAServerThatNeverAnswers) {
  RawSocket silent;
  uint16_t port = silent.ListenWithoutAccepting();
  ASSERT_NE(port, 0);
  HttpCallOptions options;
  options.timeout = 300ms;
  auto r = HttpCall("GET", "http://127.0.0.1:" + std::to_string(port) + "/status", "", options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTimeout);
  EXPECT_THAT(r.status().message(), HasSubstr("300 ms"));
}

TEST(HttpCallTest, RefusedConnectionIsUnavailable) {
  uint16_t port;
  {
    RawSocket probe;
    port = probe.ListenWithoutAccepting();
  }
  auto r = HttpCall("GET", "http://127.0.0.1:" + std::to_string(port) + "/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST(HttpCallTest, RejectsNonHttpUrls) {
  auto r = HttpCall("GET", "https://127.0.0.1/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalid);
}

}  // namespace
}  // namespace petrel
