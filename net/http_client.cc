// HttpCall: one plain-HTTP exchange on a private io_context run by the calling thread, so
// calls from many threads share nothing. A single deadline bounds resolve, connect, write and
// read together.
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "net/http.h"

namespace petrel {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr uint64_t kBodyLimit = 64ull << 20;

struct ParsedUrl {
  std::string host;  // without brackets
  std::string port;
  std::string target;
};

Result<ParsedUrl> ParseHttpUrl(const std::string& url) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) {
    return InvalidError("URL \"" + url + "\" is not an http:// URL (HttpCall speaks plain HTTP)");
  }
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  ParsedUrl out;
  out.target = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string host_port = authority;
  if (!host_port.empty() && host_port[0] == '[') {
    size_t close = host_port.find(']');
    if (close == std::string::npos) return InvalidError("URL \"" + url + "\" has a bad IPv6 host");
    out.host = host_port.substr(1, close - 1);
    std::string after = host_port.substr(close + 1);
    out.port = after.size() > 1 && after[0] == ':' ? after.substr(1) : "80";
  } else {
    size_t colon = host_port.rfind(':');
    out.host = host_port.substr(0, colon);
    out.port = colon == std::string::npos ? "80" : host_port.substr(colon + 1);
  }
  if (out.host.empty()) return InvalidError("URL \"" + url + "\" has no host");
  return out;
}

}  // namespace

Result<HttpResponse> HttpCall(const std::string& method, const std::string& url,
                              const std::string& body, const HttpCallOptions& options) {
  PETREL_ASSIGN_OR_RETURN(ParsedUrl parsed, ParseHttpUrl(url));
  const std::string what = method + " " + url;

  http::request<http::string_body> request;
  request.method_string(method);
  request.target(parsed.target);
  request.version(11);
  request.set(http::field::host,
              parsed.host.find(':') != std::string::npos ? "[" + parsed.host + "]:" + parsed.port
                                                         : parsed.host + ":" + parsed.port);
  request.set(http::field::user_agent, "petrel");
  for (const auto& [k, v] : options.headers) request.set(k, v);
  request.keep_alive(false);
  request.body() = body;
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    request.prepare_payload();
  }

  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;

  bool done = false;
  beast::error_code error;
  std::string stage = "resolving";
  auto finish = [&](beast::error_code ec) {
    done = true;
    error = ec;
  };
  resolver.async_resolve(
      parsed.host, parsed.port, [&](beast::error_code ec, tcp::resolver::results_type results) {
        if (ec) return finish(ec);
        stage = "connecting";
        stream.expires_at(deadline);
        stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
          if (ec) return finish(ec);
          stage = "sending";
          http::async_write(stream, request, [&](beast::error_code ec, size_t) {
            if (ec) return finish(ec);
            stage = "waiting for the response";
            http::async_read(stream, buffer, parser,
                             [&](beast::error_code ec, size_t) { finish(ec); });
          });
        });
      });
  io.run_until(deadline);
  if (!done) {
    // Only the resolver can still be pending here; stream operations carry the deadline.
    resolver.cancel();
    beast::error_code ignored;
    stream.socket().close(ignored);
    io.restart();
    io.run();
    error = beast::error::timeout;
  }
  if (error == beast::error::timeout) {
    return TimeoutError(what + ": no complete response within " +
                        std::to_string(options.timeout.count()) + " ms (" + stage + ")");
  }
  if (error) return UnavailableError(what + ": " + stage + ": " + error.message());

  const auto& raw = parser.get();
  HttpResponse response;
  response.status = static_cast<int>(raw.result_int());
  response.content_type = std::string(raw[http::field::content_type]);
  for (const auto& field : raw) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    response.headers[name] = std::string(field.value());
  }
  response.body = raw.body();
  return response;
}

}  // namespace petrel
