#pragma once
// The scrub forms of one secret, shared by the micro-benchmarks that scrub a response stream.
#include <airlock/secret.hpp>
#include <http/response_scrubber.hpp>

#include <vector>

namespace airlock::bench {

inline const http::ScrubForms& one_secret_forms() {
  static const http::ScrubForms f = [] {
    std::vector<SecretBinding> s;
    s.push_back(SecretBuilder().env("KEY").value("+/bench0123456789abcdefghijklmnopqrstu").allow_host("api.example.com").build());
    return http::ScrubForms(s);
  }();
  return f;
}

}  // namespace airlock::bench
