#include "local/tcp_proxy.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace petrel {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto kTuple = asio::as_tuple(use_awaitable);

struct TcpProxy::Impl {
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{asio::make_work_guard(io)};
  TcpProxyOptions options;
  std::thread thread;
  std::atomic<bool> stopped{false};
};

namespace {

void SetKeepAlive(tcp::socket& socket) {
  int fd = socket.native_handle();
  int on = 1, idle = 30, interval = 10, count = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
}

// One client connection and its upstream. Used on the I/O thread only.
struct Session {
  explicit Session(tcp::socket c) : client(std::move(c)), upstream(client.get_executor()) {}
  tcp::socket client;
  tcp::socket upstream;
  std::optional<ProxyBackend> backend;
  bool closed = false;

  void Close() {
    if (closed) return;
    closed = true;
    boost::system::error_code ignored;
    client.shutdown(tcp::socket::shutdown_both, ignored);
    client.close(ignored);
    upstream.shutdown(tcp::socket::shutdown_both, ignored);
    upstream.close(ignored);
  }
};

class ListenerState : public std::enable_shared_from_this<ListenerState> {
 public:
  ListenerState(TcpProxy::Impl* impl, std::string address)
      : impl_(impl), acceptor_(impl_->io), address_(std::move(address)) {}

  Status Bind(uint16_t port) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(address_, ec);
    if (ec) return InvalidError("\"" + address_ + "\" is not an IP address");
    tcp::endpoint endpoint(addr, port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return UnavailableError("cannot listen on " + address_ + ":" + std::to_string(port) + ": " +
                              ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    return Status::Ok();
  }

  void Start() {
    asio::co_spawn(impl_->io, AcceptLoop(shared_from_this()), asio::detached);
  }

  void SetBackends(std::vector<ProxyBackend> backends) {
    {
      std::lock_guard lock(mu_);
      if (backends == backends_) return;
      backends_ = std::move(backends);
    }
    asio::post(impl_->io, [self = shared_from_this()] { self->DropStale(); });
  }

  std::vector<ProxyBackend> Backends() const {
    std::lock_guard lock(mu_);
    return backends_;
  }

  // Closes the acceptor and every connection, and waits until that is done.
  void Close() {
    if (impl_->stopped.load()) return;  // the I/O thread is gone; destructors close sockets
    std::promise<void> done;
    asio::post(impl_->io, [self = shared_from_this(), &done] {
      self->closed_ = true;
      boost::system::error_code ignored;
      self->acceptor_.close(ignored);
      for (const auto& s : self->sessions_) s->Close();
      done.set_value();
    });
    // Bounded: if the I/O thread were stuck we would rather leak than hang shutdown.
    done.get_future().wait_for(std::chrono::seconds(5));
  }

  const std::string& address() const { return address_; }
  uint16_t port() const { return port_; }
  size_t Connections() const { return connections_.load(); }

 private:
  std::optional<ProxyBackend> Pick() {
    std::lock_guard lock(mu_);
    if (backends_.empty()) return std::nullopt;
    return backends_[next_++ % backends_.size()];
  }
  bool Selected(const ProxyBackend& b) {
    std::lock_guard lock(mu_);
    return std::find(backends_.begin(), backends_.end(), b) != backends_.end();
  }

  // On the I/O thread: connections to backends that left the set are closed.
  void DropStale() {
    for (const auto& s : sessions_) {
      if (s->backend && !Selected(*s->backend)) s->Close();
    }
  }

  static awaitable<void> AcceptLoop(std::shared_ptr<ListenerState> self) {
    while (!self->closed_) {
      auto [ec, socket] = co_await self->acceptor_.async_accept(kTuple);
      if (ec) {
        if (self->closed_ || ec == asio::error::operation_aborted) co_return;
        // Out of descriptors or similar: back off briefly instead of spinning.
        asio::steady_timer pause(self->impl_->io, std::chrono::milliseconds(100));
        co_await pause.async_wait(kTuple);
        continue;
      }
      auto session = std::make_shared<Session>(std::move(socket));
      self->sessions_.insert(session);
      ++self->connections_;
      asio::co_spawn(self->impl_->io, Serve(self, session), asio::detached);
    }
  }

  static awaitable<bool> Connect(std::shared_ptr<ListenerState> self,
                                 std::shared_ptr<Session> s, const ProxyBackend& backend) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(backend.host, ec);
    if (ec) co_return false;
    boost::system::error_code ignored;
    s->upstream.close(ignored);
    s->upstream = tcp::socket(self->impl_->io);
    asio::steady_timer timeout(self->impl_->io, self->impl_->options.connect_timeout);
    timeout.async_wait([s](boost::system::error_code e) {
      boost::system::error_code ignored;
      if (!e) s->upstream.cancel(ignored);
    });
    auto [cec] = co_await s->upstream.async_connect(tcp::endpoint(addr, backend.port), kTuple);
    timeout.cancel();
    co_return !cec && !s->closed;
  }

  static awaitable<void> Relay(std::shared_ptr<Session> s, tcp::socket& from, tcp::socket& to) {
    std::array<char, 16384> buffer;
    while (true) {
      auto [ec, n] = co_await from.async_read_some(asio::buffer(buffer), kTuple);
      if (ec) {
        if (ec == asio::error::eof && !s->closed) {
          boost::system::error_code ignored;
          to.shutdown(tcp::socket::shutdown_send, ignored);
        } else {
          s->Close();
        }
        co_return;
      }
      auto [wec, written] = co_await asio::async_write(to, asio::buffer(buffer.data(), n), kTuple);
      if (wec) {
        s->Close();
        co_return;
      }
    }
  }

  static awaitable<void> Serve(std::shared_ptr<ListenerState> self, std::shared_ptr<Session> s) {
    using namespace asio::experimental::awaitable_operators;
    SetKeepAlive(s->client);
    auto deadline = std::chrono::steady_clock::now() + self->impl_->options.hold;
    bool connected = false;
    while (!s->closed && !self->closed_) {
      if (auto backend = self->Pick()) {
        if (co_await Connect(self, s, *backend) && self->Selected(*backend)) {
          s->backend = *backend;
          connected = true;
          break;
        }
      }
      if (std::chrono::steady_clock::now() >= deadline) break;
      asio::steady_timer wait(self->impl_->io, std::chrono::milliseconds(100));
      co_await wait.async_wait(kTuple);
    }
    if (connected && !s->closed) {
      SetKeepAlive(s->upstream);
      co_await (Relay(s, s->client, s->upstream) && Relay(s, s->upstream, s->client));
    }
    s->Close();
    self->sessions_.erase(s);
    --self->connections_;
  }

  TcpProxy::Impl* impl_;  // outlives every listener handle
  tcp::acceptor acceptor_;
  const std::string address_;
  uint16_t port_ = 0;

  mutable std::mutex mu_;
  std::vector<ProxyBackend> backends_;  // guarded by mu_
  size_t next_ = 0;                     // guarded by mu_

  // I/O thread only.
  bool closed_ = false;
  std::set<std::shared_ptr<Session>> sessions_;
  std::atomic<size_t> connections_{0};
};

class ListenerHandle : public ProxyListener {
 public:
  explicit ListenerHandle(std::shared_ptr<ListenerState> state) : state_(std::move(state)) {}
  ~ListenerHandle() override { state_->Close(); }
  void SetBackends(std::vector<ProxyBackend> backends) override {
    state_->SetBackends(std::move(backends));
  }
  std::vector<ProxyBackend> Backends() const override { return state_->Backends(); }
  std::string address() const override { return state_->address(); }
  uint16_t port() const override { return state_->port(); }
  size_t Connections() const override { return state_->Connections(); }

 private:
  std::shared_ptr<ListenerState> state_;
};

}  // namespace

TcpProxy::TcpProxy(TcpProxyOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

TcpProxy::~TcpProxy() {
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->stopped = true;
  // Destroying the io_context (with impl_) destroys the pending coroutines, which releases
  // the listeners' state and closes what is left.
}

Result<std::unique_ptr<ProxyListener>> TcpProxy::Listen(const std::string& address,
                                                        uint16_t port) {
  auto state = std::make_shared<ListenerState>(impl_.get(), address);
  PETREL_RETURN_IF_ERROR(state->Bind(port));
  state->Start();
  return std::unique_ptr<ProxyListener>(new ListenerHandle(std::move(state)));
}

}  // namespace petrel
