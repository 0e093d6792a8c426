// The Beast-free half of net/http.h: request helpers and URL coding.
#include <cctype>

#include "net/http.h"

namespace petrel {

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits "a=1&b=2" and calls visit(name, value) with both still encoded.
template <typename Visit>
void ForEachQueryPair(const std::string& target, Visit visit) {
  size_t q = target.find('?');
  if (q == std::string::npos) return;
  size_t pos = q + 1;
  while (pos <= target.size()) {
    size_t amp = target.find('&', pos);
    if (amp == std::string::npos) amp = target.size();
    std::string pair = target.substr(pos, amp - pos);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      if (eq == std::string::npos) {
        if (visit(pair, std::string())) return;
      } else {
        if (visit(pair.substr(0, eq), pair.substr(eq + 1))) return;
      }
    }
    pos = amp + 1;
  }
}

// Query strings use the form encoding, where '+' stands for a space.
std::string DecodeQueryComponent(std::string s) {
  for (char& c : s) {
    if (c == '+') c = ' ';
  }
  return UrlDecode(s);
}

}  // namespace

std::string HttpRequest::Path() const {
  size_t q = target.find('?');
  return UrlDecode(q == std::string::npos ? target : target.substr(0, q));
}

std::string HttpRequest::QueryParam(const std::string& name) const {
  std::string found;
  ForEachQueryPair(target, [&](const std::string& k, const std::string& v) {
    if (DecodeQueryComponent(k) != name) return false;
    found = DecodeQueryComponent(v);
    return true;
  });
  return found;
}

bool HttpRequest::HasQueryParam(const std::string& name) const {
  bool found = false;
  ForEachQueryPair(target, [&](const std::string& k, const std::string&) {
    found = DecodeQueryComponent(k) == name;
    return found;
  });
  return found;
}

HttpResponse HttpResponse::Json(int status, const std::string& body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = body;
  return r;
}

HttpResponse HttpResponse::Text(int status, const std::string& body) {
  HttpResponse r;
  r.status = status;
  r.body = body;
  return r;
}

std::string UrlEncode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string UrlDecode(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexValue(s[i + 1]);
      int lo = HexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

}  // namespace petrel
