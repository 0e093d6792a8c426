// HttpKubeClient on Boost.Beast and OpenSSL.
//
// Every connection owns a private io_context that only the thread currently holding the
// connection runs, so there are no I/O threads and no shared asynchronous state: a call borrows
// a connection from the pool, drives it to completion with Beast's stream timeouts set to the
// call's deadline, and gives it back. A watch keeps its connection for itself and runs its
// io_context inside Next(); Cancel() posts a close onto that io_context, which wakes Next().
#include "controller/http_kube_client.h"

#include <poll.h>

#include <atomic>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "core/log.h"
#include "net/http.h"

namespace petrel {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMaxResponseBody = 512ull << 20;  // a list of many large objects
constexpr auto kMaxIdle = std::chrono::seconds(60);   // drop pooled connections older than this
constexpr auto kTokenRefresh = std::chrono::seconds(60);

std::string JsonString(const Json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

struct ServerAddress {
  bool tls = true;
  std::string host;  // without brackets
  std::string port;
  std::string base_path;  // "" or "/prefix" when the API sits behind a path
  std::string host_header;
};

Result<ServerAddress> ParseServer(const std::string& server) {
  ServerAddress a;
  std::string rest;
  if (server.rfind("https://", 0) == 0) {
    rest = server.substr(8);
  } else if (server.rfind("http://", 0) == 0) {
    a.tls = false;
    rest = server.substr(7);
  } else {
    return InvalidError("API server address \"" + server + "\" must start with https://");
  }
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) {
    a.base_path = rest.substr(slash);
    while (!a.base_path.empty() && a.base_path.back() == '/') a.base_path.pop_back();
  }
  std::string default_port = a.tls ? "443" : "80";
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) {
      return InvalidError("API server address \"" + server + "\" has a malformed IPv6 host");
    }
    a.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    a.port = after.size() > 1 && after[0] == ':' ? after.substr(1) : default_port;
  } else {
    size_t colon = authority.rfind(':');
    a.host = authority.substr(0, colon);
    a.port = colon == std::string::npos ? default_port : authority.substr(colon + 1);
  }
  if (a.host.empty()) return InvalidError("API server address \"" + server + "\" has no host");
  a.host_header = (a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host) + ":" +
                  a.port;
  return a;
}

bool IsIpAddress(const std::string& host) {
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// One HTTP/1.1 connection, plain or TLS, with its own io_context. Used by one thread at a time.
class Conn {
 public:
  Conn() = default;
  ~Conn() { Close(); }

  Status Connect(const ServerAddress& address, ssl::context* tls, const std::string& verify_name,
                 Clock::time_point deadline) {
    tcp::resolver resolver(io_);
    bool resolved = false;
    beast::error_code ec;
    tcp::resolver::results_type endpoints;
    resolver.async_resolve(address.host, address.port,
                           [&](beast::error_code e, tcp::resolver::results_type r) {
                             ec = e;
                             endpoints = std::move(r);
                             resolved = true;
                           });
    io_.restart();
    io_.run_until(deadline);
    if (!resolved) {
      resolver.cancel();
      io_.restart();
      io_.run();
      return TimeoutError("resolving " + address.host + ": no answer before the deadline");
    }
    if (ec) return UnavailableError("resolving " + address.host + ": " + ec.message());

    if (tls != nullptr) {
      tls_.emplace(io_, *tls);
    } else {
      plain_.emplace(io_);
    }
    Lowest().expires_at(deadline);
    ec = Run([&](auto done) { Lowest().async_connect(endpoints, done); });
    if (ec) {
      return ec == beast::error::timeout
                 ? TimeoutError("connecting to " + address.host_header + ": timed out")
                 : UnavailableError("connecting to " + address.host_header + ": " + ec.message());
    }
    beast::error_code ignored;
    Lowest().socket().set_option(tcp::no_delay(true), ignored);
    if (tls_) {
      SSL* handle = tls_->native_handle();
      if (!IsIpAddress(verify_name)) SSL_set_tlsext_host_name(handle, verify_name.c_str());
      if (tls->native_handle() != nullptr &&
          SSL_CTX_get_verify_mode(tls->native_handle()) != SSL_VERIFY_NONE) {
        X509_VERIFY_PARAM* param = SSL_get0_param(handle);
        if (IsIpAddress(verify_name)) {
          X509_VERIFY_PARAM_set1_ip_asc(param, verify_name.c_str());
        } else {
          X509_VERIFY_PARAM_set1_host(param, verify_name.c_str(), 0);
        }
      }
      ec = Run([&](auto done) { tls_->async_handshake(ssl::stream_base::client, done); });
      if (ec) {
        long verify = SSL_get_verify_result(handle);
        tls_verify_failed_ = verify != X509_V_OK;
        std::string why = tls_verify_failed_
                              ? std::string("server certificate not trusted: ") +
                                    X509_verify_cert_error_string(verify) +
                                    " (check certificate-authority and the server name)"
                              : ec.message();
        return UnavailableError("TLS handshake with " + address.host_header + ": " + why);
      }
    }
    return Status::Ok();
  }

  bool tls_verify_failed() const { return tls_verify_failed_; }

  beast::error_code Write(http::request<http::string_body>& request, Clock::time_point deadline) {
    Lowest().expires_at(deadline);
    return Run([&](auto done) {
      if (tls_) {
        http::async_write(*tls_, request, done);
      } else {
        http::async_write(*plain_, request, done);
      }
    });
  }

  template <typename Parser>
  beast::error_code ReadHeader(Parser& parser, Clock::time_point deadline) {
    Lowest().expires_at(deadline);
    return Run([&](auto done) {
      if (tls_) {
        http::async_read_header(*tls_, buffer_, parser, done);
      } else {
        http::async_read_header(*plain_, buffer_, parser, done);
      }
    });
  }

  template <typename Parser>
  beast::error_code Read(Parser& parser, Clock::time_point deadline) {
    Lowest().expires_at(deadline);
    return Run([&](auto done) {
      if (tls_) {
        http::async_read(*tls_, buffer_, parser, done);
      } else {
        http::async_read(*plain_, buffer_, parser, done);
      }
    });
  }

  // Starts reading whatever body bytes arrive next; `done(ec)` runs inside io().run*().
  template <typename Parser, typename Done>
  void StartReadSome(Parser& parser, Done done) {
    if (tls_) {
      http::async_read_some(*tls_, buffer_, parser,
                            [done](beast::error_code ec, size_t) { done(ec); });
    } else {
      http::async_read_some(*plain_, buffer_, parser,
                            [done](beast::error_code ec, size_t) { done(ec); });
    }
  }

  // False when the server closed the idle connection (or sent something unasked).
  bool StillOpen() {
    if (!Lowest().socket().is_open()) return false;
    pollfd p{Lowest().socket().native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 0;
  }

  void Close() {
    if (!tls_ && !plain_) return;
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Lowest().socket().close(ignored);
  }

  beast::tcp_stream& Lowest() { return tls_ ? beast::get_lowest_layer(*tls_) : *plain_; }
  asio::io_context& io() { return io_; }
  Clock::time_point idle_since;

 private:
  // Runs one asynchronous operation to completion on this thread.
  template <typename Start>
  beast::error_code Run(Start start) {
    bool done = false;
    beast::error_code result;
    start([&](beast::error_code ec, auto&&...) {
      result = ec;
      done = true;
    });
    io_.restart();
    while (!done && io_.run_one() > 0) {
    }
    return result;
  }

  asio::io_context io_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  std::optional<beast::tcp_stream> plain_;
  beast::flat_buffer buffer_;
  bool tls_verify_failed_ = false;
};

// Whether a failed request may be sent again.
enum class Replay {
  kSafe,          // reads, PUT with resourceVersion, DELETE, merge patch, apply
  kOnlyIfUnsent,  // POST, JSON patch: only when it surely never reached the server, or on 429
};

struct Request {
  std::string verb;  // for the observer: get, list, create, ...
  std::string method;
  std::string target;  // path and query, base path included
  std::string body;
  std::string content_type;
  Replay replay = Replay::kSafe;
};

struct Response {
  int code = 0;
  std::string body;
  std::string retry_after;
};

// What one attempt produced.
struct Attempt {
  Status status;  // Ok when an HTTP response arrived (of any code)
  bool maybe_sent = true;
  bool retryable = true;
  Response response;
  // For watches: the open connection and its parser, header read, body pending.
  std::unique_ptr<Conn> conn;
  std::unique_ptr<http::response_parser<http::buffer_body>> stream_parser;
};

WatchEventType ParseEventType(const std::string& t, bool* ok) {
  *ok = true;
  if (t == "ADDED") return WatchEventType::kAdded;
  if (t == "MODIFIED") return WatchEventType::kModified;
  if (t == "DELETED") return WatchEventType::kDeleted;
  if (t == "BOOKMARK") return WatchEventType::kBookmark;
  if (t == "ERROR") return WatchEventType::kError;
  *ok = false;
  return WatchEventType::kError;
}

class HttpWatchStream : public WatchStream {
 public:
  HttpWatchStream(std::unique_ptr<Conn> conn,
                  std::unique_ptr<http::response_parser<http::buffer_body>> parser,
                  std::string what, int timeout_seconds)
      : conn_(std::move(conn)), parser_(std::move(parser)), what_(std::move(what)) {
    // The server ends the watch after timeoutSeconds; past that (plus slack) the peer is gone.
    conn_->Lowest().expires_after(std::chrono::seconds(timeout_seconds + 60));
  }

  ~HttpWatchStream() override {
    cancelled_ = true;
    conn_->Close();
    conn_->io().restart();
    conn_->io().run_for(std::chrono::seconds(2));  // lets aborted handlers finish
  }

  Status Next(WatchEvent* event, std::chrono::milliseconds timeout) override {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (cancelled_) return CancelledError("watch " + what_ + " cancelled");
      if (!events_.empty()) {
        *event = std::move(events_.front());
        events_.pop_front();
        return Status::Ok();
      }
      if (!ended_.ok()) return ended_;
      if (!read_pending_) StartRead();
      conn_->io().restart();
      if (conn_->io().run_one_until(deadline) == 0 && Clock::now() >= deadline) {
        if (cancelled_) continue;
        return TimeoutError("no watch event within " + std::to_string(timeout.count()) + " ms");
      }
    }
  }

  void Cancel() override {
    cancelled_ = true;
    asio::post(conn_->io(), [this] { conn_->Close(); });
  }

 private:
  void StartRead() {
    read_pending_ = true;
    parser_->get().body().data = chunk_;
    parser_->get().body().size = sizeof chunk_;
    conn_->StartReadSome(*parser_, [this](beast::error_code ec) {
      read_pending_ = false;
      if (ec == http::error::need_buffer) ec = {};
      size_t n = sizeof chunk_ - parser_->get().body().size;
      line_.append(chunk_, n);
      if (ec) {
        Ended(UnavailableError("watch " + what_ + " broke: " + ec.message() + "; re-watch"));
        return;
      }
      SplitLines();
      if (parser_->is_done()) {
        Ended(UnavailableError("watch " + what_ + " ended by the server; re-watch"));
      }
    });
  }

  void SplitLines() {
    size_t start = 0;
    size_t nl;
    while (ended_.ok() && (nl = line_.find('\n', start)) != std::string::npos) {
      std::string one = line_.substr(start, nl - start);
      start = nl + 1;
      if (one.find_first_not_of(" \r\t") == std::string::npos) continue;
      Json j = Json::parse(one, nullptr, false);
      bool known = false;
      WatchEventType type = ParseEventType(JsonString(j, "type"), &known);
      if (j.is_discarded() || !known || !j.contains("object")) {
        Ended(UnavailableError("watch " + what_ + " sent a malformed event; re-watch"));
        break;
      }
      Json object = std::move(j["object"]);
      if (type == WatchEventType::kError) {
        int code = object.is_object() && object.contains("code") && object["code"].is_number()
                       ? object["code"].get<int>()
                       : 0;
        if (code == 410) {
          Ended(GoneError("watch " + what_ + ": " + JsonString(object, "message") +
                          "; relist and watch again"));
          break;
        }
      }
      events_.push_back(WatchEvent{type, std::move(object)});
    }
    line_.erase(0, start);
  }

  void Ended(Status status) {
    if (ended_.ok()) ended_ = std::move(status);
  }

  std::unique_ptr<Conn> conn_;
  std::unique_ptr<http::response_parser<http::buffer_body>> parser_;
  const std::string what_;
  std::atomic<bool> cancelled_{false};
  bool read_pending_ = false;
  char chunk_[16384];
  std::string line_;
  std::deque<WatchEvent> events_;
  Status ended_;
};

const char* PropagationName(PropagationPolicy p) {
  switch (p) {
    case PropagationPolicy::kBackground: return "Background";
    case PropagationPolicy::kForeground: return "Foreground";
    case PropagationPolicy::kOrphan: return "Orphan";
    case PropagationPolicy::kDefault: break;
  }
  return "";
}

void AddQuery(std::string* target, const std::string& name, const std::string& value) {
  if (value.empty()) return;
  *target += (target->find('?') == std::string::npos ? "?" : "&") + name + "=" + UrlEncode(value);
}

}  // namespace

std::string KubeResourcePath(const ResourceType& type, const std::string& namespace_,
                             const std::string& name, const std::string& subresource) {
  std::string path = type.group.empty() ? "/api/" + type.version
                                        : "/apis/" + type.group + "/" + type.version;
  if (type.namespaced && !namespace_.empty()) path += "/namespaces/" + UrlEncode(namespace_);
  path += "/" + type.resource;
  if (!name.empty()) path += "/" + UrlEncode(name);
  if (!name.empty() && !subresource.empty()) path += "/" + subresource;
  return path;
}

Status KubeStatusFromResponse(int http_code, const std::string& body,
                              const std::string& retry_after_header) {
  Json j = Json::parse(body, nullptr, false);
  std::string message;
  std::string reason;
  std::vector<StatusCause> causes;
  int retry_after_s = 0;
  if (j.is_object() && JsonString(j, "kind") == "Status") {
    message = JsonString(j, "message");
    reason = JsonString(j, "reason");
    const Json& details = j.contains("details") ? j["details"] : Json();
    if (details.is_object()) {
      if (details.contains("causes") && details["causes"].is_array()) {
        for (const auto& c : details["causes"]) {
          causes.push_back(StatusCause{JsonString(c, "field"), JsonString(c, "reason"),
                                       JsonString(c, "message")});
        }
      }
      if (details.contains("retryAfterSeconds") && details["retryAfterSeconds"].is_number()) {
        retry_after_s = details["retryAfterSeconds"].get<int>();
      }
    }
  }
  if (message.empty()) {
    std::string excerpt = body.substr(0, 300);
    message = "HTTP " + std::to_string(http_code) + (excerpt.empty() ? "" : ": " + excerpt);
  }
  if (!retry_after_header.empty()) {
    try {
      retry_after_s = std::stoi(retry_after_header);
    } catch (const std::exception&) {
      // An HTTP-date: rare from kube-apiserver; the backoff alone will do.
    }
  }
  Code code;
  switch (http_code) {
    case 400: code = Code::kInvalid; break;  // BadRequest: a malformed patch or body
    case 401: code = Code::kUnauthorized; break;
    case 403: code = Code::kForbidden; break;
    case 404: code = Code::kNotFound; break;
    case 409: code = reason == "AlreadyExists" ? Code::kAlreadyExists : Code::kConflict; break;
    case 410: code = Code::kGone; break;
    case 415: code = Code::kInvalid; break;  // e.g. strategic merge patch on a custom resource
    case 422: code = Code::kInvalid; break;
    case 429: code = Code::kTooManyRequests; break;
    default: code = http_code >= 500 ? Code::kUnavailable : Code::kTerminal;
  }
  Status status(code, message);
  status.WithCauses(std::move(causes));
  if (retry_after_s > 0) status.WithRetryAfterMs(retry_after_s * 1000);
  return status;
}

struct HttpKubeClient::Impl {
  KubeConfig config;
  HttpKubeClientOptions options;
  ServerAddress address;
  std::string verify_name;
  std::optional<ssl::context> tls;

  std::mutex mu;  // guards the members below
  std::vector<std::unique_ptr<Conn>> idle;
  KubeRequestObserver observer;
  std::string file_token;
  Clock::time_point file_token_read{};
  std::mt19937_64 rng{std::random_device{}()};

  Status Init() {
    PETREL_ASSIGN_OR_RETURN(address, ParseServer(config.server));
    verify_name = config.tls_server_name.empty() ? address.host : config.tls_server_name;
    if (!address.tls) return Status::Ok();
    tls.emplace(ssl::context::tls_client);
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    beast::error_code ec;
    if (config.insecure_skip_tls_verify) {
      tls->set_verify_mode(ssl::verify_none);
    } else {
      tls->set_verify_mode(ssl::verify_peer);
      if (!config.ca_pem.empty()) {
        tls->add_certificate_authority(asio::buffer(config.ca_pem), ec);
        if (ec) {
          return InvalidError(config.source + ": the certificate authority is not a PEM "
                              "certificate (" + ec.message() + ")");
        }
      } else {
        tls->set_default_verify_paths(ec);
      }
    }
    if (!config.client_cert_pem.empty()) {
      tls->use_certificate_chain(asio::buffer(config.client_cert_pem), ec);
      if (ec) {
        return InvalidError(config.source + ": the client certificate is not PEM (" +
                            ec.message() + ")");
      }
      tls->use_private_key(asio::buffer(config.client_key_pem), ssl::context::pem, ec);
      if (ec) {
        // Never echo the key itself.
        return InvalidError(config.source + ": the client key is unreadable or does not match "
                            "the certificate (" + ec.message() + ")");
      }
    }
    return Status::Ok();
  }

  std::string Token() {
    if (!config.token.empty() || config.token_file.empty()) return config.token;
    std::lock_guard<std::mutex> lock(mu);
    auto now = Clock::now();
    if (file_token.empty() || now - file_token_read > kTokenRefresh) {
      std::ifstream in(config.token_file);
      std::string t((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      t.erase(t.find_last_not_of(" \t\r\n") + 1);
      if (!t.empty()) {
        file_token = t;  // keep the last good token if the file is mid-rotation
        file_token_read = now;
      }
    }
    return file_token;
  }

  std::unique_ptr<Conn> TakeIdle() {
    std::lock_guard<std::mutex> lock(mu);
    while (!idle.empty()) {
      std::unique_ptr<Conn> c = std::move(idle.back());
      idle.pop_back();
      if (Clock::now() - c->idle_since < kMaxIdle && c->StillOpen()) return c;
    }
    return nullptr;
  }

  void GiveBack(std::unique_ptr<Conn> c) {
    c->idle_since = Clock::now();
    std::lock_guard<std::mutex> lock(mu);
    if (static_cast<int>(idle.size()) < options.max_idle_connections) {
      idle.push_back(std::move(c));
    }
  }

  void Observe(const std::string& verb, int code, Clock::time_point start) {
    KubeRequestObserver o;
    {
      std::lock_guard<std::mutex> lock(mu);
      o = observer;
    }
    if (o) o(verb, code, std::chrono::duration<double>(Clock::now() - start).count());
  }

  std::chrono::milliseconds Backoff(int attempt) {
    auto d = options.initial_backoff * (1LL << std::min(attempt - 1, 20));
    if (d > options.max_backoff) d = options.max_backoff;
    std::lock_guard<std::mutex> lock(mu);
    // Equal jitter: half fixed, half random, so many clients do not retry in lock step.
    std::uniform_int_distribution<int64_t> jitter(0, d.count() / 2);
    return std::chrono::milliseconds(d.count() / 2 + jitter(rng));
  }

  // One HTTP exchange. With `stream`, only the header of a 200 response is read and the
  // connection is handed over for the body.
  Attempt Once(const Request& r, Clock::time_point deadline, bool stream) {
    Attempt a;
    std::unique_ptr<Conn> conn = TakeIdle();
    if (!conn) {
      conn = std::make_unique<Conn>();
      Status s = conn->Connect(address, tls ? &*tls : nullptr, verify_name, deadline);
      if (!s.ok()) {
        a.status = s;
        a.maybe_sent = false;
        a.retryable = !conn->tls_verify_failed();  // a wrong CA does not fix itself
        return a;
      }
    }
    http::request<http::string_body> req;
    req.method_string(r.method);
    req.target(r.target);
    req.version(11);
    req.set(http::field::host, address.host_header);
    req.set(http::field::user_agent, options.user_agent);
    req.set(http::field::accept, "application/json");
    std::string token = Token();
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!r.content_type.empty()) req.set(http::field::content_type, r.content_type);
    req.keep_alive(true);
    req.body() = r.body;
    if (r.method != "GET") req.prepare_payload();

    const std::string what = r.method + " " + r.target;
    auto failed = [&](beast::error_code ec, const char* stage) {
      a.status = ec == beast::error::timeout
                     ? TimeoutError(what + ": timed out " + stage)
                     : UnavailableError(what + ": " + stage + ": " + ec.message());
      return std::move(a);
    };
    if (auto ec = conn->Write(req, deadline)) return failed(ec, "sending the request");

    if (stream) {
      auto parser = std::make_unique<http::response_parser<http::buffer_body>>();
      parser->body_limit(boost::none);
      if (auto ec = conn->ReadHeader(*parser, deadline)) return failed(ec, "reading the response");
      a.response.code = static_cast<int>(parser->get().result_int());
      if (a.response.code == 200) {
        a.conn = std::move(conn);
        a.stream_parser = std::move(parser);
        return a;
      }
      // An error answer: read its (small) Status body whole.
      a.response.retry_after = std::string(parser->get()[http::field::retry_after]);
      char buf[8192];
      while (!parser->is_done()) {
        parser->get().body().data = buf;
        parser->get().body().size = sizeof buf;
        beast::error_code ec = conn->Read(*parser, deadline);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) break;
        a.response.body.append(buf, sizeof buf - parser->get().body().size);
      }
      return a;
    }

    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBody);
    if (auto ec = conn->Read(parser, deadline)) return failed(ec, "reading the response");
    a.response.code = static_cast<int>(parser.get().result_int());
    a.response.retry_after = std::string(parser.get()[http::field::retry_after]);
    a.response.body = std::move(parser.get().body());
    if (parser.get().keep_alive()) GiveBack(std::move(conn));
    return a;
  }

  // Sends `r` until it gets an answer that is not worth retrying, or the bounds run out.
  // Returns the 2xx attempt, or the error as a Status.
  Result<Attempt> Send(const Request& r, bool stream = false) {
    const auto deadline = Clock::now() + options.request_timeout;
    Status last;
    for (int attempt = 1; attempt <= std::max(1, options.max_attempts); ++attempt) {
      auto start = Clock::now();
      Attempt a = Once(r, deadline, stream);
      Observe(r.verb, a.status.ok() ? a.response.code : 0, start);
      bool retry;
      if (a.status.ok()) {
        if (a.response.code >= 200 && a.response.code < 300) return a;
        last = KubeStatusFromResponse(a.response.code, a.response.body, a.response.retry_after);
        retry = a.response.code == 429 || (a.response.code >= 500 && r.replay == Replay::kSafe);
      } else {
        last = a.status;
        retry = a.retryable && (!a.maybe_sent || r.replay == Replay::kSafe);
      }
      if (!retry || attempt == options.max_attempts) break;
      auto delay = std::max<std::chrono::milliseconds>(
          Backoff(attempt), std::chrono::milliseconds(last.retry_after_ms()));
      if (Clock::now() + delay >= deadline) break;
      spdlog::debug("kube client: retrying {} {} in {} ms after {}", r.method, r.target,
                    delay.count(), CodeName(last.code()));
      std::this_thread::sleep_for(delay);
    }
    return last;
  }

  Result<Json> SendJson(const Request& r) {
    PETREL_ASSIGN_OR_RETURN(Attempt a, Send(r));
    Json j = Json::parse(a.response.body, nullptr, false);
    if (j.is_discarded()) {
      return InternalError(r.method + " " + r.target + ": the server's answer is not JSON");
    }
    return j;
  }

  std::string Target(const ResourceType& type, const std::string& ns, const std::string& name,
                     const std::string& sub = "") const {
    return address.base_path + KubeResourcePath(type, ns, name, sub);
  }

  Status CheckKey(const ResourceType& type, const ObjectKey& key, const char* op) const {
    if (key.name.empty()) {
      return InvalidError(std::string(op) + " " + type.GroupResource() + ": no object name given");
    }
    if (type.namespaced && key.namespace_.empty()) {
      return InvalidError(std::string(op) + " " + type.GroupResource() + " \"" + key.name +
                          "\": the resource is namespaced but no namespace was given");
    }
    return Status::Ok();
  }
};

HttpKubeClient::HttpKubeClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpKubeClient::~HttpKubeClient() = default;

Result<std::unique_ptr<HttpKubeClient>> HttpKubeClient::Create(
    const KubeConfig& config, const HttpKubeClientOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->options = options;
  PETREL_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<HttpKubeClient>(new HttpKubeClient(std::move(impl)));
}

void HttpKubeClient::SetObserver(KubeRequestObserver observer) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->observer = std::move(observer);
}

const std::string& HttpKubeClient::default_namespace() const { return impl_->config.namespace_; }

Result<std::string> HttpKubeClient::RawGet(const std::string& path) {
  PETREL_ASSIGN_OR_RETURN(Attempt a, impl_->Send({"get", "GET", impl_->address.base_path + path}));
  return std::move(a.response.body);
}

Status HttpKubeClient::RawGetStream(const std::string& path,
                                    const std::function<bool(std::string_view data)>& on_data,
                                    std::chrono::milliseconds max_duration) {
  const std::string what = "GET " + path;
  PETREL_ASSIGN_OR_RETURN(Attempt a,
                          impl_->Send({"get", "GET", impl_->address.base_path + path}, true));
  if (!a.conn) {
    return UnavailableError(what + ": the server answered HTTP " +
                            std::to_string(a.response.code) + " instead of a stream");
  }
  Conn& conn = *a.conn;
  auto& parser = *a.stream_parser;
  conn.Lowest().expires_at(Clock::now() + max_duration);
  char chunk[16384];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    bool done = false;
    beast::error_code ec;
    conn.StartReadSome(parser, [&](beast::error_code e) {
      ec = e;
      done = true;
    });
    conn.io().restart();
    while (!done && conn.io().run_one() > 0) {
    }
    if (ec == http::error::need_buffer) ec = {};
    size_t n = sizeof chunk - parser.get().body().size;
    if (n > 0 && !on_data(std::string_view(chunk, n))) return Status::Ok();
    if (ec == beast::error::timeout) {
      return TimeoutError(what + ": still open after " + std::to_string(max_duration.count()) +
                          " ms");
    }
    if (ec) return UnavailableError(what + ": " + ec.message());
  }
  return Status::Ok();
}

Result<Json> HttpKubeClient::Get(const ResourceType& type, const ObjectKey& key) {
  PETREL_RETURN_IF_ERROR(impl_->CheckKey(type, key, "get"));
  return impl_->SendJson({"get", "GET", impl_->Target(type, key.namespace_, key.name)});
}

Result<ObjectList> HttpKubeClient::List(const ResourceType& type, const std::string& namespace_,
                                        const ListOptions& options) {
  std::string target = impl_->Target(type, namespace_, "");
  AddQuery(&target, "labelSelector", options.label_selector);
  AddQuery(&target, "fieldSelector", options.field_selector);
  if (options.limit > 0) AddQuery(&target, "limit", std::to_string(options.limit));
  AddQuery(&target, "continue", options.continue_token);
  AddQuery(&target, "resourceVersion", options.resource_version);
  PETREL_ASSIGN_OR_RETURN(Json j, impl_->SendJson({"list", "GET", target}));
  ObjectList list;
  if (j.contains("metadata") && j["metadata"].is_object()) {
    list.resource_version = JsonString(j["metadata"], "resourceVersion");
    list.continue_token = JsonString(j["metadata"], "continue");
  }
  if (j.contains("items") && j["items"].is_array()) {
    list.items.reserve(j["items"].size());
    for (auto& item : j["items"]) {
      // The API leaves apiVersion and kind off list items; callers want whole objects.
      if (!item.contains("apiVersion")) item["apiVersion"] = type.ApiVersion();
      if (!item.contains("kind")) item["kind"] = type.kind;
      list.items.push_back(std::move(item));
    }
  }
  return list;
}

Result<Json> HttpKubeClient::Create(const ResourceType& type, const Json& object) {
  std::string ns = meta::Namespace(object);
  if (type.namespaced && ns.empty()) {
    return InvalidError("create " + type.GroupResource() +
                        ": the resource is namespaced but metadata.namespace is empty");
  }
  return impl_->SendJson({"create", "POST", impl_->Target(type, ns, ""), object.dump(),
                          "application/json", Replay::kOnlyIfUnsent});
}

Result<Json> HttpKubeClient::Update(const ResourceType& type, const Json& object,
                                    Subresource sub) {
  ObjectKey key = meta::Key(object);
  PETREL_RETURN_IF_ERROR(impl_->CheckKey(type, key, "update"));
  // A PUT without resourceVersion is an unconditional overwrite: replaying it is still safe.
  return impl_->SendJson({"update", "PUT",
                          impl_->Target(type, key.namespace_, key.name,
                                        sub == Subresource::kStatus ? "status" : ""),
                          object.dump(), "application/json", Replay::kSafe});
}

Status HttpKubeClient::Delete(const ResourceType& type, const ObjectKey& key,
                              const DeleteOptions& options) {
  PETREL_RETURN_IF_ERROR(impl_->CheckKey(type, key, "delete"));
  Json body = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}};
  if (options.precondition_uid) body["preconditions"]["uid"] = *options.precondition_uid;
  if (options.precondition_resource_version) {
    body["preconditions"]["resourceVersion"] = *options.precondition_resource_version;
  }
  if (options.propagation != PropagationPolicy::kDefault) {
    body["propagationPolicy"] = PropagationName(options.propagation);
  }
  if (options.grace_period_seconds) body["gracePeriodSeconds"] = *options.grace_period_seconds;
  auto r = impl_->Send({"delete", "DELETE", impl_->Target(type, key.namespace_, key.name),
                        body.dump(), "application/json", Replay::kSafe});
  return r.status();
}

Result<Json> HttpKubeClient::Patch(const ResourceType& type, const ObjectKey& key,
                                   PatchType patch_type, const Json& patch,
                                   const PatchOptions& options) {
  PETREL_RETURN_IF_ERROR(impl_->CheckKey(type, key, "patch"));
  std::string target = impl_->Target(type, key.namespace_, key.name, options.subresource);
  AddQuery(&target, "fieldManager", options.field_manager);
  std::string content_type;
  Replay replay = Replay::kSafe;
  switch (patch_type) {
    case PatchType::kMerge: content_type = "application/merge-patch+json"; break;
    case PatchType::kJson:
      content_type = "application/json-patch+json";
      replay = Replay::kOnlyIfUnsent;  // "add" to a list twice is not the same as once
      break;
    case PatchType::kApply:
      content_type = "application/apply-patch+yaml";  // JSON is YAML
      if (options.force) AddQuery(&target, "force", "true");
      break;
  }
  return impl_->SendJson({"patch", "PATCH", target, patch.dump(), content_type, replay});
}

Result<Json> HttpKubeClient::CreateSubresource(const ResourceType& type, const ObjectKey& key,
                                               const std::string& subresource, const Json& body) {
  PETREL_RETURN_IF_ERROR(impl_->CheckKey(type, key, "create subresource"));
  if (subresource.empty()) return InvalidError("CreateSubresource needs a subresource name");
  return impl_->SendJson({"create", "POST",
                          impl_->Target(type, key.namespace_, key.name, subresource), body.dump(),
                          "application/json", Replay::kOnlyIfUnsent});
}

Result<std::unique_ptr<WatchStream>> HttpKubeClient::Watch(const ResourceType& type,
                                                           const std::string& namespace_,
                                                           const WatchOptions& options) {
  std::string resource_version = options.resource_version;
  if (resource_version.empty()) {
    // Without a resourceVersion the server would replay every object as ADDED; "from now"
    // means from the collection's current version.
    ListOptions probe;
    probe.label_selector = options.label_selector;
    probe.field_selector = options.field_selector;
    probe.limit = 1;
    PETREL_ASSIGN_OR_RETURN(ObjectList now, List(type, namespace_, probe));
    resource_version = now.resource_version;
  }
  int timeout_seconds = options.timeout_seconds;
  if (timeout_seconds <= 0) {
    std::lock_guard<std::mutex> lock(impl_->mu);
    timeout_seconds = std::uniform_int_distribution<int>(300, 600)(impl_->rng);
  }
  std::string target = impl_->Target(type, namespace_, "");
  AddQuery(&target, "watch", "1");
  AddQuery(&target, "resourceVersion", resource_version);
  if (options.allow_bookmarks) AddQuery(&target, "allowWatchBookmarks", "true");
  AddQuery(&target, "timeoutSeconds", std::to_string(timeout_seconds));
  AddQuery(&target, "labelSelector", options.label_selector);
  AddQuery(&target, "fieldSelector", options.field_selector);
  PETREL_ASSIGN_OR_RETURN(Attempt a, impl_->Send({"watch", "GET", target}, /*stream=*/true));
  if (!a.conn) {
    return UnavailableError("watch " + type.GroupResource() + ": the server answered HTTP " +
                            std::to_string(a.response.code) + " instead of a stream");
  }
  std::string what = type.GroupResource() + (namespace_.empty() ? "" : " in " + namespace_);
  return std::unique_ptr<WatchStream>(std::make_unique<HttpWatchStream>(
      std::move(a.conn), std::move(a.stream_parser), what, timeout_seconds));
}

}  // namespace petrel
