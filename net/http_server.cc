// HttpServer on Boost.Beast.
//
// Threading model: sockets live on an io_context served by `threads` I/O threads, and every
// connection also gets its own thread that runs the handlers, because handlers may block for a
// long time (a watch stream lasts minutes). The connection thread drives its socket by posting
// each operation to the connection's strand and waiting for it, so all socket access is
// serialised on the strand while the handler code stays plain blocking code. Every operation
// is bounded by Beast's stream timeouts, and Stop() closes sockets to wake everything up.
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/log.h"
#include "net/http.h"

namespace petrel {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Keep-alive connections are closed after this long without a new request.
constexpr auto kIdleTimeout = std::chrono::seconds(120);
// One response write (or one chunk of a stream) must finish within this.
constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr uint64_t kBodyLimit = 64ull << 20;

struct Route {
  HttpHandler handler;
  StreamHandler stream;
};

class ServerImpl;

class Connection : public ResponseStream, public std::enable_shared_from_this<Connection> {
 public:
  Connection(ServerImpl& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)) {}

  // Serves requests until the client goes away, a timeout passes or the server stops.
  void Run();

  bool Write(const std::string& chunk) override;
  bool Closed() const override { return closed_; }

  // From any thread: makes Closed() true and wakes whatever the connection waits on.
  void Shutdown();

 private:
  using Completion = std::function<void(beast::error_code, size_t)>;

  // Runs one asynchronous operation on the strand and waits for it to complete.
  template <typename Start>
  beast::error_code Await(Start start) {
    std::promise<beast::error_code> done;
    std::future<beast::error_code> result = done.get_future();
    asio::post(stream_.get_executor(), [&] {
      start(Completion([&done](beast::error_code ec, size_t) { done.set_value(ec); }));
    });
    return result.get();
  }

  bool WriteResponse(const HttpResponse& response, unsigned version, bool keep_alive);
  void ServeStream(const HttpRequest& request, const StreamHandler& handler, unsigned version);
  bool WriteStreamHeader(int status, const std::string& content_type, unsigned version);
  // While a stream is open, a pending read notices the client closing its end.
  void WatchForDisconnect();
  void CloseSocket();

  ServerImpl& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::atomic<bool> closed_{false};
  char probe_[1];
  bool probe_armed_ = false;  // touched only on the strand
  std::promise<void> probe_done_;
};

class ServerImpl : public HttpServer {
 public:
  explicit ServerImpl(int threads) : threads_(threads < 1 ? 1 : threads), acceptor_(asio::make_strand(io_)) {}
  ~ServerImpl() override { Stop(); }

  Status Bind(const std::string& address, uint16_t port) {
    beast::error_code ec;
    asio::ip::address ip = asio::ip::make_address(address == "localhost" ? "127.0.0.1" : address, ec);
    if (ec) {
      return InvalidError("listen address \"" + address + "\" is not an IP address");
    }
    tcp::endpoint endpoint(ip, port);
    std::string where = (ip.is_v6() ? "[" + ip.to_string() + "]" : ip.to_string()) + ":" +
                        std::to_string(port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return UnavailableError("cannot listen on " + where + ": " + ec.message() +
                              (ec == asio::error::address_in_use
                                   ? " (another process holds this port; pick another one)"
                                   : ""));
    }
    address_ = ip.to_string();
    port_ = acceptor_.local_endpoint().port();
    return Status::Ok();
  }

  void Handle(const std::string& path, HttpHandler handler) override {
    std::lock_guard<std::mutex> lock(mu_);
    routes_[path] = Route{std::move(handler), nullptr};
  }
  void HandleStream(const std::string& path, StreamHandler handler) override {
    std::lock_guard<std::mutex> lock(mu_);
    routes_[path] = Route{nullptr, std::move(handler)};
  }
  uint16_t port() const override { return port_; }
  std::string address() const override { return address_; }

  void Start() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_ || stopping_) return;
    started_ = true;
    work_.emplace(io_.get_executor());
    asio::post(acceptor_.get_executor(), [this] { Accept(); });
    for (int i = 0; i < threads_; ++i) io_threads_.emplace_back([this] { io_.run(); });
  }

  void Stop() override {
    std::set<std::shared_ptr<Connection>> open;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      open = connections_;
    }
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
    for (const auto& c : open) c->Shutdown();
    open.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      idle_.wait(lock, [this] { return active_ == 0; });
    }
    work_.reset();
    for (auto& t : io_threads_) t.join();
    io_threads_.clear();
    if (!started_) {
      beast::error_code ignored;
      acceptor_.close(ignored);
    }
  }

  // The handler of the longest registered path that matches; nullptr for none.
  const Route* Find(const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    const Route* best = nullptr;
    size_t best_len = 0;
    for (const auto& [pattern, route] : routes_) {
      bool prefix = !pattern.empty() && pattern.back() == '/';
      bool match = prefix ? path.compare(0, pattern.size(), pattern) == 0 : path == pattern;
      if (match && (best == nullptr || pattern.size() > best_len)) {
        best = &route;
        best_len = pattern.size();
      }
    }
    return best;
  }

  bool stopping() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopping_;
  }

 private:
  void Accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (ec) {
        // Out of descriptors and the like: back off a little instead of spinning.
        spdlog::warn("http server on {}:{}: accept failed: {}", address_, port_, ec.message());
        auto timer = std::make_shared<asio::steady_timer>(acceptor_.get_executor(),
                                                          std::chrono::milliseconds(100));
        timer->async_wait([this, timer](beast::error_code) {
          if (acceptor_.is_open()) Accept();
        });
        return;
      }
      Spawn(std::move(s));
      Accept();
    });
  }

  void Spawn(tcp::socket socket) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;  // the socket closes as it goes out of scope
    auto conn = std::make_shared<Connection>(*this, std::move(socket));
    connections_.insert(conn);
    ++active_;
    std::thread([this, conn]() mutable {
      conn->Run();
      {
        std::lock_guard<std::mutex> lock(mu_);
        connections_.erase(conn);
      }
      conn.reset();
      std::lock_guard<std::mutex> lock(mu_);
      --active_;
      idle_.notify_all();  // under the lock: Stop() may destroy us as soon as it wakes
    }).detach();
  }

  const int threads_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> io_threads_;
  std::string address_;
  uint16_t port_ = 0;

  mutable std::mutex mu_;
  std::condition_variable idle_;
  std::map<std::string, Route> routes_;
  std::set<std::shared_ptr<Connection>> connections_;
  int active_ = 0;
  bool started_ = false;
  bool stopping_ = false;
};

HttpRequest ToRequest(const http::request<http::string_body>& r) {
  HttpRequest out;
  out.method = std::string(r.method_string());
  out.target = std::string(r.target());
  for (const auto& field : r) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  out.body = r.body();
  return out;
}

void Connection::Run() {
  while (!closed_) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    beast::error_code ec = Await([&](Completion done) {
      stream_.expires_after(kIdleTimeout);
      http::async_read(stream_, buffer_, parser, std::move(done));
    });
    if (ec) {
      if (ec == http::error::body_limit) {
        WriteResponse(HttpResponse::Text(413, "request body too large\n"), 11, false);
      } else if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
                 ec != http::error::end_of_stream && ec != http::error::partial_message) {
        WriteResponse(HttpResponse::Text(400, "malformed request: " + ec.message() + "\n"), 11,
                      false);
      }
      break;
    }
    const auto& raw = parser.get();
    HttpRequest request = ToRequest(raw);
    bool keep_alive = raw.keep_alive();
    unsigned version = raw.version();
    const Route* route = server_.Find(request.Path());
    if (route != nullptr && route->stream) {
      ServeStream(request, route->stream, version);
      break;
    }
    HttpResponse response;
    if (route == nullptr) {
      response = HttpResponse::Text(404, "no handler for " + request.Path() + "\n");
    } else {
      try {
        response = route->handler(request);
      } catch (const std::exception& e) {
        spdlog::error("http handler for {} threw: {}", request.Path(), e.what());
        response = HttpResponse::Text(500, "internal error\n");
      }
    }
    if (!WriteResponse(response, version, keep_alive && !server_.stopping())) break;
    if (!keep_alive) break;
  }
  CloseSocket();
}

bool Connection::WriteResponse(const HttpResponse& r, unsigned version, bool keep_alive) {
  http::response<http::string_body> res;
  res.version(version);
  res.result(static_cast<unsigned>(r.status));
  res.set(http::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) res.set(k, v);
  res.body() = r.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  beast::error_code ec = Await([&](Completion done) {
    stream_.expires_after(kWriteTimeout);
    http::async_write(stream_, res, std::move(done));
  });
  return !ec;
}

void Connection::ServeStream(const HttpRequest& request, const StreamHandler& handler,
                             unsigned version) {
  bool started = false;
  bool header_ok = false;
  auto start = [&](int status, const std::string& type) -> ResponseStream& {
    if (!started) {
      started = true;
      header_ok = WriteStreamHeader(status, type, version);
      if (header_ok) {
        WatchForDisconnect();
      } else {
        closed_ = true;
      }
    }
    return *this;
  };
  try {
    handler(request, start);
  } catch (const std::exception& e) {
    spdlog::error("http stream handler for {} threw: {}", request.Path(), e.what());
  }
  if (!started) {
    WriteResponse(HttpResponse::Text(500, "stream handler sent no response\n"), version, false);
    return;
  }
  if (header_ok && !closed_) {
    Await([&](Completion done) {
      stream_.expires_after(kWriteTimeout);
      asio::async_write(stream_, http::make_chunk_last(), std::move(done));
    });
  }
}

bool Connection::WriteStreamHeader(int status, const std::string& content_type,
                                   unsigned version) {
  http::response<http::empty_body> res;
  res.version(version);
  res.result(static_cast<unsigned>(status));
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(false);
  res.chunked(true);
  http::response_serializer<http::empty_body> serializer(res);
  beast::error_code ec = Await([&](Completion done) {
    stream_.expires_after(kWriteTimeout);
    http::async_write_header(stream_, serializer, std::move(done));
  });
  return !ec;
}

bool Connection::Write(const std::string& chunk) {
  if (closed_) return false;
  if (chunk.empty()) return true;  // an empty chunk would end the stream
  beast::error_code ec = Await([&](Completion done) {
    stream_.expires_after(kWriteTimeout);
    asio::async_write(stream_, http::make_chunk(asio::buffer(chunk)), std::move(done));
  });
  if (ec) closed_ = true;
  return !closed_;
}

void Connection::WatchForDisconnect() {
  asio::post(stream_.get_executor(), [this] {
    if (probe_armed_) return;
    probe_armed_ = true;
    // A bare socket read: the stream's timeout is for writes and must not end a quiet stream.
    auto again = std::make_shared<std::function<void()>>();
    *again = [this, again] {
      stream_.socket().async_read_some(
          asio::buffer(probe_), [this, again](beast::error_code ec, size_t) {
            if (ec) {
              closed_ = true;
              probe_done_.set_value();
              *again = nullptr;  // breaks the self-reference
              return;
            }
            (*again)();  // the client sent bytes mid-stream; ignore them and keep watching
          });
    };
    (*again)();
  });
}

void Connection::Shutdown() {
  closed_ = true;
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    beast::error_code ignored;
    self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    self->stream_.cancel();
  });
}

void Connection::CloseSocket() {
  bool armed = false;
  Await([&](Completion done) {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    armed = probe_armed_;
    done(ignored, 0);
  });
  // The probe's handler refers to this connection: wait until it has run.
  if (armed) probe_done_.get_future().wait();
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Listen(const std::string& address, uint16_t port,
                                                       int threads) {
  auto server = std::make_unique<ServerImpl>(threads);
  PETREL_RETURN_IF_ERROR(server->Bind(address, port));
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace petrel
