#include "gateway/proxy_request.hpp"

#include <common/ip_address.hpp>

#include <charconv>

namespace airlock::gateway {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (lower(s[i]) != lower(prefix[i])) return false;
  return true;
}

bool valid_host(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  if (IpAddress::parse(host)) return true;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return host.find("..") == std::string_view::npos && host.front() != '.';
}

std::string normalized(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::string out(host);
  for (char& c : out) c = lower(c);
  return out;
}

ProxyRequest bad(const char* why) {
  ProxyRequest r;
  r.kind = ProxyRequest::Kind::kBad;
  r.error = why;
  return r;
}

}  // namespace

bool split_authority(std::string_view authority, std::uint16_t default_port, std::string& host, std::uint16_t& port) {
  std::string_view h, p;
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    h = authority.substr(1, close - 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);
      if (p.empty()) return false;
    }
    auto ip = IpAddress::parse(h);
    if (!ip || ip->is_v4()) return false;
  } else {
    std::size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      h = authority.substr(0, colon);
      p = authority.substr(colon + 1);
      if (p.empty()) return false;
    } else {
      h = authority;
    }
    if (h.find(':') != std::string_view::npos) return false;  // unbracketed IPv6
  }
  if (!valid_host(h)) return false;
  if (p.empty()) {
    if (default_port == 0) return false;
    port = default_port;
  } else {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
    if (ec != std::errc() || end != p.data() + p.size() || value == 0 || value > 65535) return false;
    port = static_cast<std::uint16_t>(value);
  }
  host = normalized(h);
  return true;
}

ProxyRequest parse_proxy_request(std::string_view data) {
  std::size_t line_end = data.find("\r\n");
  if (line_end == std::string_view::npos) {
    if (data.size() >= kMaxProxyHead) return bad("request line too long");
    return {};
  }
  std::string_view line = data.substr(0, line_end);
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) return bad("malformed request line");
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return bad("unsupported HTTP version");
  if (method.empty()) return bad("empty method");
  for (char c : method)
    if (c < 'A' || c > 'Z') return bad("malformed method");

  ProxyRequest out;
  if (method == "CONNECT") {
    std::size_t head_end = data.find("\r\n\r\n");
    if (head_end == std::string_view::npos) {
      if (data.size() >= kMaxProxyHead) return bad("CONNECT head too large");
      return {};
    }
    if (head_end + 4 > kMaxProxyHead) return bad("CONNECT head too large");
    if (!split_authority(target, 0, out.host, out.port)) return bad("bad CONNECT authority");
    out.kind = ProxyRequest::Kind::kConnect;
    out.head_bytes = head_end + 4;
    return out;
  }
  if (iequals_prefix(target, "https://")) return bad("absolute-form https:// target (use CONNECT)");
  if (!iequals_prefix(target, "http://")) return bad("not an absolute-form http:// target");
  if (!absolute_http_authority(target, out.host, out.port)) return bad("bad target authority");
  out.kind = ProxyRequest::Kind::kAbsoluteHttp;
  return out;
}

bool absolute_http_authority(std::string_view target, std::string& host, std::uint16_t& port) {
  if (!iequals_prefix(target, "http://")) return false;
  std::string_view rest = target.substr(7);
  std::size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos) return false;  // userinfo
  return split_authority(authority, 80, host, port);
}

std::string host_header(std::string_view data) {
  std::size_t head_end = data.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return {};
  std::string_view head = data.substr(0, head_end + 2);
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    std::size_t start = pos + 2;
    std::size_t next = head.find("\r\n", start);
    std::string_view field = head.substr(start, next - start);
    if (iequals_prefix(field, "host:")) {
      std::string_view value = field.substr(5);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
      std::string host;
      std::uint16_t port = 0;
      if (!split_authority(value, 80, host, port)) return {};
      return host;
    }
    pos = next;
  }
  return {};
}

bool looks_like_http_request(std::string_view data) {
  std::size_t i = 0;
  while (i < data.size() && i < 24 && data[i] >= 'A' && data[i] <= 'Z') ++i;
  return i > 0 && i < data.size() && data[i] == ' ';
}

}  // namespace airlock::gateway
