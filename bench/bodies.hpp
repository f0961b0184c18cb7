#pragma once
// Request and response bodies the micro-benchmarks scan: seeded, so every run measures the same bytes.
#include <cstddef>
#include <initializer_list>
#include <random>
#include <string>

namespace airlock::bench {

// `size` bytes of the given words, chosen at random and separated by spaces.
inline std::string words_body(std::initializer_list<const char*> words, std::size_t size, unsigned seed = 7) {
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < size) {
    s += words.begin()[rng() % words.size()];
    s += ' ';
  }
  s.resize(size);
  return s;
}

// `size` bytes of JSON-like text (the words an API response or request body is made of).
inline std::string json_like_body(std::size_t size) {
  return words_body({"{\"id\":", "12345,", "\"name\":", "\"value\",", "\"url\":", "\"https:\\/\\/x.example\\/a\",",
                     "true,", "null}", "[1,2,3]", "lorem", "ipsum", "dolor", "sit", "amet\n"},
                    size);
}

// `size` uniformly random bytes.
inline std::string random_body(std::size_t size, unsigned seed = 11) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

}  // namespace airlock::bench
