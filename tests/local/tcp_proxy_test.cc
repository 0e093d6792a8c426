#include "local/tcp_proxy.h"

#include <gtest/gtest.h>

#include "tests/local/local_test_util.h"
#include "tests/local/socket_util.h"

namespace petrel {
namespace {

using testing::Client;
using testing::EchoServer;

class TcpProxyTest : public ::testing::Test {
 protected:
  std::string Ip(int host) const { return testing::BlockPrefix(block_) + std::to_string(host); }
  std::string block_ = testing::RandomLoopbackBlock();
};

TEST_F(TcpProxyTest, ForwardsBytesBothWays) {
  EchoServer a(Ip(1), "A");
  ASSERT_TRUE(a.ok());
  TcpProxy proxy;
  auto listener = proxy.Listen(Ip(100), 0);
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  (*listener)->SetBackends({{Ip(1), a.port()}});
  Client client(Ip(100), (*listener)->port());
  ASSERT_TRUE(client.connected());
  EXPECT_EQ(client.RoundTrip("hello"), "A:hello");
  EXPECT_EQ(client.RoundTrip("again"), "A:again");
  EXPECT_EQ((*listener)->Connections(), 1u);
}

TEST_F(TcpProxyTest, RepointingClosesConnectionsToTheOldBackend) {
  EchoServer a(Ip(1), "A");
  EchoServer b(Ip(2), "B");
  TcpProxy proxy;
  auto listener = proxy.Listen(Ip(100), 0).value();
  listener->SetBackends({{Ip(1), a.port()}});
  Client old_client(Ip(100), listener->port());
  ASSERT_EQ(old_client.RoundTrip("x"), "A:x");

  listener->SetBackends({{Ip(2), b.port()}});
  // The client blocked on the old backend sees its connection end.
  EXPECT_EQ(old_client.Read(), std::nullopt);
  Client new_client(Ip(100), listener->port());
  EXPECT_EQ(new_client.RoundTrip("y"), "B:y");
}

TEST_F(TcpProxyTest, ConnectionsToBackendsStillSelectedAreKept) {
  EchoServer a(Ip(1), "A");
  EchoServer b(Ip(2), "B");
  TcpProxy proxy;
  auto listener = proxy.Listen(Ip(100), 0).value();
  listener->SetBackends({{Ip(1), a.port()}});
  Client client(Ip(100), listener->port());
  ASSERT_EQ(client.RoundTrip("x"), "A:x");
  listener->SetBackends({{Ip(1), a.port()}, {Ip(2), b.port()}});
  EXPECT_EQ(client.RoundTrip("still"), "A:still");
}

TEST_F(TcpProxyTest, WithoutBackendsAConnectionIsClosedAfterTheHold) {
  TcpProxyOptions options;
  options.hold = std::chrono::milliseconds(300);
  TcpProxy proxy(options);
  auto listener = proxy.Listen(Ip(100), 0).value();
  Client client(Ip(100), listener->port());
  ASSERT_TRUE(client.connected());
  client.Send("anyone?");
  EXPECT_EQ(client.Read(5000), std::nullopt);
  EXPECT_TRUE(testing::WaitFor([&] { return listener->Connections() == 0; }));
}

TEST_F(TcpProxyTest, AHeldConnectionTakesABackendThatAppears) {
  EchoServer a(Ip(1), "A");
  TcpProxyOptions options;
  options.hold = std::chrono::seconds(10);
  TcpProxy proxy(options);
  auto listener = proxy.Listen(Ip(100), 0).value();
  Client client(Ip(100), listener->port());
  ASSERT_TRUE(client.Send("waiting"));
  EXPECT_EQ(client.Read(300), "");  // held, not closed
  listener->SetBackends({{Ip(1), a.port()}});
  EXPECT_EQ(client.Read(), "A:waiting");
}

TEST_F(TcpProxyTest, RefusingBackendIsSkipped) {
  EchoServer a(Ip(1), "A");
  TcpProxy proxy;
  auto listener = proxy.Listen(Ip(100), 0).value();
  // Nothing listens on Ip(3):1, so each connection ends up on A.
  listener->SetBackends({{Ip(3), 1}, {Ip(1), a.port()}});
  for (int i = 0; i < 3; ++i) {
    Client client(Ip(100), listener->port());
    EXPECT_EQ(client.RoundTrip("r"), "A:r");
  }
}

TEST_F(TcpProxyTest, ClosingTheListenerClosesItsConnectionsAndFreesThePort) {
  EchoServer a(Ip(1), "A");
  TcpProxy proxy;
  auto listener = proxy.Listen(Ip(100), 0).value();
  uint16_t port = listener->port();
  listener->SetBackends({{Ip(1), a.port()}});
  Client client(Ip(100), port);
  ASSERT_EQ(client.RoundTrip("x"), "A:x");
  listener.reset();
  EXPECT_EQ(client.Read(), std::nullopt);
  EXPECT_TRUE(proxy.Listen(Ip(100), port).ok());
}

TEST_F(TcpProxyTest, AddressInUseIsReportedWithTheAddress) {
  TcpProxy proxy;
  auto first = proxy.Listen(Ip(100), 0).value();
  auto second = proxy.Listen(Ip(100), first->port());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_NE(second.status().message().find(Ip(100) + ":" + std::to_string(first->port())),
            std::string::npos);
}

}  // namespace
}  // namespace petrel
