#pragma once
// The response side of one connection across reloads (issue 17): a response may echo the values
// of the snapshot its request was sent under, and of the newest one (a token endpoint answering
// with the rotated value), so the bytes go through one scrubber per snapshot still needed, in a
// chain. With one snapshot (no reload) it is exactly one ResponseScrubber.
#include "gateway/core.hpp"
#include "http/response_scrubber.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::gateway {

// Builds `next.scrub_forms` over the values of `next.set` and of `previous` (the snapshot it
// replaces; null for the first): one scrubber then masks both wholly, overlapping values included,
// and the chain needs no scrubber for `previous` (next.covers_from). A removed secret's old value
// is among `previous`'s (its retired binding in `next` has a random one). Control path (throws
// std::bad_alloc only).
void build_scrub_forms(SecretsSnapshot& next, const SecretsSnapshot* previous);

// As an http::Scrubber it is what the connection's response paths borrow (the HTTP/1
// ResponseStream, the WebSocket relay, opaque bytes), so keep()/release_unneeded() between two
// calls apply to every path at once. An empty chain passes bytes through unchanged.
class ResponseScrubbers final : public http::Scrubber {
 public:
  ResponseScrubbers() = default;
  ~ResponseScrubbers() override;  // wipes the stage buffers
  ResponseScrubbers(const ResponseScrubbers&) = delete;
  ResponseScrubbers& operator=(const ResponseScrubbers&) = delete;

  // Scrubs for `snapshot`'s values too from now on (unless it does already, itself or through the
  // newest kept snapshot's forms, which cover the snapshot before it: see build_scrub_forms; a
  // snapshot without secrets adds no scrubber). The chain holds the snapshot, so its values stay
  // until release().
  void keep(const std::shared_ptr<const SecretsSnapshot>& snapshot);
  // Lets go of every snapshot `needed(generation)` says no to, and of every older one whose values
  // the newest kept snapshot's forms cover, once no scrubber holds bytes back (so nothing held is
  // lost or let through unscrubbed); until then it keeps them all.
  template <typename Needed>
  void release_unneeded(Needed&& needed) {
    if (chain_.size() < 2 || pending() > 0) return;
    const SecretsSnapshot& last = *chain_.back().snapshot;
    std::erase_if(chain_, [&](const Entry& e) {
      const std::uint64_t g = e.snapshot->generation;
      const bool covered = g != last.generation && last.covers(g);
      if (!covered && needed(g)) return false;
      released_masked_ += e.scrubber->masked_bytes();
      return true;
    });
  }
  // The newest generation kept (0: none yet).
  std::uint64_t newest() const noexcept { return newest_; }
  bool empty() const noexcept { return chain_.empty(); }
  std::size_t size() const noexcept { return chain_.size(); }

  // As ResponseScrubber's, through every scrubber of the chain in turn.
  void feed(std::string_view in, std::string& out) override;
  void flush(std::string& out) override;
  // Every scrubber of the chain forgets its held bytes (ResponseScrubber::reset): a new text.
  void reset() noexcept;
  // `in` as a whole text on its own through the chain (ResponseScrubber::scrub_text): the same
  // output as reset(), feed(in), flush(), reset().
  void scrub_text(std::string_view in, std::string& out);
  std::size_t pending() const noexcept override;
  std::uint64_t masked_bytes() const noexcept override;
  http::ResponseScrubber* sole() noexcept override { return chain_.size() == 1 ? chain_[0].scrubber.get() : nullptr; }

 private:
  struct Entry {
    std::shared_ptr<const SecretsSnapshot> snapshot;
    std::unique_ptr<http::ResponseScrubber> scrubber;
  };
  std::vector<Entry> chain_;
  std::uint64_t newest_ = 0;
  std::uint64_t released_masked_ = 0;
  std::string stage_[2];  // between two scrubbers (may hold another snapshot's values: wiped)

  // Runs `step(scrubber, from, to)` down the chain: `in` into the first scrubber, each one's
  // output into the next, the last one's into `out`; a stage is wiped once it is used up.
  template <typename Step>
  void through_chain(std::string_view in, std::string& out, Step step);
};

}  // namespace airlock::gateway
