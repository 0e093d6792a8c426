// A small HTTP/1.1 server and client on Boost.Beast, kept behind this header so that only
// net/*.cc pays Beast's compile time. Used for /metrics, /healthz, /readyz, the instance API,
// and the local API server. Plain HTTP on loopback or pod networks; TLS is only needed for
// the kube-apiserver client (controller/http_kube_client.cc).
//
// Thread-safety: HttpServer handlers run on the server's threads and may run concurrently;
// HttpCall is safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/status.h"

namespace petrel {

struct HttpRequest {
  std::string method;  // "GET"
  std::string target;  // "/status?verbose=1"
  std::map<std::string, std::string> headers;  // keys lower-cased
  std::string body;

  std::string Path() const;                                 // "/status"
  std::string QueryParam(const std::string& name) const;    // URL-decoded, "" if absent
  bool HasQueryParam(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::map<std::string, std::string> headers;
  std::string body;

  static HttpResponse Json(int status, const std::string& body);
  static HttpResponse Text(int status, const std::string& body);
};

// For long-lived responses (watch streams): chunked transfer encoding. Write() returns false
// once the client has gone away; the handler should then return.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  virtual bool Write(const std::string& chunk) = 0;
  // True once the server is stopping or the client disconnected.
  virtual bool Closed() const = 0;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;
// Returns the status and content type; then streams the body until it returns.
using StreamHandler =
    std::function<void(const HttpRequest&, const std::function<ResponseStream&(int status,
                                                                  const std::string& type)>&)>;

class HttpServer {
 public:
  virtual ~HttpServer() = default;
  // Binds at once, so "address in use" surfaces here with the address in the message.
  // port 0 picks a free port (see port()). `threads` connection-serving threads.
  static Result<std::unique_ptr<HttpServer>> Listen(const std::string& address, uint16_t port,
                                                    int threads = 2);

  // Route by exact path, or by prefix when `path` ends with '/'. Longest match wins.
  // Register every route before Start().
  virtual void Handle(const std::string& path, HttpHandler handler) = 0;
  virtual void HandleStream(const std::string& path, StreamHandler handler) = 0;
  virtual uint16_t port() const = 0;
  virtual std::string address() const = 0;
  virtual void Start() = 0;
  // Stops accepting, closes open connections (streams see Closed()), joins threads.
  virtual void Stop() = 0;
};

struct HttpCallOptions {
  std::chrono::milliseconds timeout{5000};  // whole exchange: connect, send, receive
  std::map<std::string, std::string> headers;
};

// One plain-HTTP exchange: url like "http://127.0.1.2:8000/status". Connection errors and
// timeouts are Unavailable/Timeout; an HTTP error status is still a response (check .status).
Result<HttpResponse> HttpCall(const std::string& method, const std::string& url,
                              const std::string& body = "", const HttpCallOptions& options = {});

std::string UrlEncode(const std::string& s);  // RFC 3986 unreserved kept, rest %XX
std::string UrlDecode(const std::string& s);

}  // namespace petrel
