#include "gateway/response_scrubbers.hpp"

#include <openssl/crypto.h>

#include <algorithm>

namespace airlock::gateway {
namespace {

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace

void build_scrub_forms(SecretsSnapshot& next, const SecretsSnapshot* previous) {
  if (!previous || previous->set->secrets().empty()) {
    if (!next.set->secrets().empty()) next.scrub_forms.emplace(next.set->secrets());
    return;
  }
  std::vector<std::string_view> both;  // views of the values in their locked memory
  for (const SecretBinding& b : next.set->secrets()) both.push_back(b.value().expose());
  for (const SecretBinding& b : previous->set->secrets()) both.push_back(b.value().expose());
  next.scrub_forms.emplace(http::ScrubForms::OfValues{}, both);
  next.covers_from = previous->generation;
}

ResponseScrubbers::~ResponseScrubbers() {
  for (std::string& s : stage_) wipe(s);
}

void ResponseScrubbers::keep(const std::shared_ptr<const SecretsSnapshot>& snapshot) {
  if (!snapshot) return;
  newest_ = std::max(newest_, snapshot->generation);
  if (!snapshot->scrub_forms) return;
  for (const Entry& e : chain_)
    if (e.snapshot->generation == snapshot->generation) return;
  if (!chain_.empty() && chain_.back().snapshot->covers(snapshot->generation)) return;
  chain_.push_back({snapshot, std::make_unique<http::ResponseScrubber>(*snapshot->scrub_forms)});
}

template <typename Step>
void ResponseScrubbers::through_chain(std::string_view in, std::string& out, Step step) {
  std::string_view from = in;
  for (std::size_t i = 0; i < chain_.size(); ++i) {
    const bool last = i + 1 == chain_.size();
    std::string& to = last ? out : stage_[i % 2];
    if (!last) to.clear();
    step(*chain_[i].scrubber, from, to);
    if (i > 0) wipe(stage_[(i - 1) % 2]);  // `from` is used up
    from = to;
  }
}

void ResponseScrubbers::feed(std::string_view in, std::string& out) {
  if (chain_.empty()) {
    out.append(in);
    return;
  }
  if (chain_.size() == 1) {
    chain_[0].scrubber->feed(in, out);
    return;
  }
  through_chain(in, out, [](http::ResponseScrubber& s, std::string_view from, std::string& to) { s.feed(from, to); });
}

void ResponseScrubbers::flush(std::string& out) {
  // Each scrubber gets what the one before it let go, then lets go of what it held.
  through_chain({}, out, [](http::ResponseScrubber& s, std::string_view from, std::string& to) {
    s.feed(from, to);
    s.flush(to);
  });
}

void ResponseScrubbers::reset() noexcept {
  for (const Entry& e : chain_) e.scrubber->reset();
  for (std::string& s : stage_) wipe(s);
}

void ResponseScrubbers::scrub_text(std::string_view in, std::string& out) {
  if (chain_.empty()) {
    out.append(in);
    return;
  }
  through_chain(in, out, [](http::ResponseScrubber& s, std::string_view from, std::string& to) { s.scrub_text(from, to); });
}

std::size_t ResponseScrubbers::pending() const noexcept {
  std::size_t n = 0;
  for (const Entry& e : chain_) n += e.scrubber->pending();
  return n;
}

std::uint64_t ResponseScrubbers::masked_bytes() const noexcept {
  std::uint64_t n = released_masked_;
  for (const Entry& e : chain_) n += e.scrubber->masked_bytes();
  return n;
}

}  // namespace airlock::gateway
