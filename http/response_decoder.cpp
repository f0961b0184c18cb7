#include <http/response_decoder.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

#include <openssl/crypto.h>

namespace airlock::http {
namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

DecodeError from_coding(CodingError e) noexcept {
  switch (e) {
    case CodingError::kNone: return DecodeError::kNone;
    case CodingError::kUnknownCoding:
    case CodingError::kTooManyCodings: return DecodeError::kUnknownCoding;
    case CodingError::kCorrupt:
    case CodingError::kTruncated: return DecodeError::kCoding;
    case CodingError::kOutputCap: return DecodeError::kOutputCap;
    case CodingError::kRatioCap: return DecodeError::kRatioCap;
    case CodingError::kNoMemory: return DecodeError::kNoMemory;
  }
  return DecodeError::kCoding;
}

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

// Compressed input is decoded in slices of this size, so one call's output stays near
// max_ratio × the slice however much is fed at once.
constexpr std::size_t kSlice = 16u << 10;

}  // namespace

std::string_view describe(DecodeError e) noexcept {
  switch (e) {
    case DecodeError::kNone: return "ok";
    case DecodeError::kUnknownCoding: return "a content or transfer coding the gateway does not decode";
    case DecodeError::kCoding: return "a corrupt or truncated compressed body";
    case DecodeError::kOutputCap: return "a decoded body above the size cap";
    case DecodeError::kRatioCap: return "a body above the decompression-ratio cap";
    case DecodeError::kNoMemory: return "a decoder that could not allocate";
    case DecodeError::kFraming: return "malformed framing";
    case DecodeError::kTruncated: return "a truncated body";
  }
  return "?";
}

void append_chunk(std::string_view data, std::string& out) {
  if (data.empty()) return;
  char size[20];
  const auto r = std::to_chars(size, size + sizeof size, data.size(), 16);
  out.append(size, r.ptr);
  out.append("\r\n");
  out.append(data);
  out.append("\r\n");
}

void append_last_chunk(std::string_view trailers, std::string& out) {
  out.append("0\r\n");
  out.append(trailers);
  out.append("\r\n");
}

DecodeError plan_body(const ResponseHead& head, bool undo_codings, BodyPlan& plan) {
  using Body = ResponseHead::Body;
  plan = BodyPlan{};
  plan.framing = head.body;
  if (head.body == Body::kNone || !undo_codings) return DecodeError::kNone;
  // Most responses name no coding: then there is nothing to join, parse or decode (one pass
  // over the names instead of a list of values per field name).
  const bool named = std::any_of(head.fields.begin(), head.fields.end(), [](const auto& f) {
    return iequals(f.first, "content-encoding") || iequals(f.first, "transfer-encoding");
  });
  if (!named) return DecodeError::kNone;
  std::string joined;
  for (const std::string_view v : head.values("content-encoding")) {
    if (!joined.empty()) joined += ',';
    joined.append(v);
  }
  // Transfer codings were applied after the content codings; a final chunked is the framing.
  std::vector<std::string> transfer = head.codings("transfer-encoding");
  if (head.body == Body::kChunked && !transfer.empty()) transfer.pop_back();
  for (const std::string& t : transfer) {
    if (t == "chunked") return DecodeError::kUnknownCoding;  // chunked twice, or not last
    joined += ',';
    joined += t;
  }
  if (parse_content_encoding(joined, plan.codings) != CodingError::kNone) return DecodeError::kUnknownCoding;
  // Re-framed as chunked only where the guest's client reads chunked: a 1.1 response to a 1.1 request.
  plan.close_after = !plan.codings.empty() && head.body != Body::kClose &&
                     (head.minor_version == 0 || head.request.http10);
  return DecodeError::kNone;
}

void adjust_head(const ResponseHead& head, const BodyPlan& plan, std::string& out) {
  out.append(head.status_line).append("\r\n");
  for (const auto& [name, value] : head.fields) {
    if (iequals(name, "content-encoding") || iequals(name, "content-length") || iequals(name, "transfer-encoding")) continue;
    if (plan.close_after && iequals(name, "connection")) continue;
    out.append(name).append(": ").append(value).append("\r\n");
  }
  if (plan.reframe()) out.append("Transfer-Encoding: chunked\r\n");
  if (plan.close_after) out.append("Connection: close\r\n");
  out.append("\r\n");
}

ResponseBodyDecoder::ResponseBodyDecoder(BodyPlan plan, const CodingLimits& limits, const ScrubForms& forms)
    : plan_(std::move(plan)), own_(std::in_place, forms), scrubber_(&*own_) {
  start(limits);
}

ResponseBodyDecoder::ResponseBodyDecoder(BodyPlan plan, const CodingLimits& limits, Scrubber& scrub)
    : plan_(std::move(plan)), scrubber_(&scrub), masked_before_(scrub.masked_bytes()) {
  start(limits);
}

void ResponseBodyDecoder::start(const CodingLimits& limits) {
  if (!plan_.codings.empty()) {
    content_.emplace(plan_.codings, limits);
    if (content_->error() != CodingError::kNone) error_ = from_coding(content_->error());
  }
}

ResponseBodyDecoder::~ResponseBodyDecoder() {
  wipe(plain_);
  wipe(scrubbed_);
}

std::uint64_t ResponseBodyDecoder::masked_bytes() const noexcept { return scrubber_->masked_bytes() - masked_before_; }

void ResponseBodyDecoder::emit(std::string_view scrubbed, std::string& out) {
  if (plan_.reframe()) append_chunk(scrubbed, out);
  else out.append(scrubbed);
}

DecodeError ResponseBodyDecoder::scrub(std::string_view plain, std::string& out) {
  if (plain.empty()) return DecodeError::kNone;
  if (plan_.reframe()) {
    if (ResponseScrubber* one = scrubber_->sole()) {  // framed as it is scrubbed: no copy between
      one->feed_chunk(plain, out);
      return DecodeError::kNone;
    }
  }
  scrubbed_.clear();
  scrubber_->feed(plain, scrubbed_);
  emit(scrubbed_, out);
  return DecodeError::kNone;
}

DecodeError ResponseBodyDecoder::feed(std::string_view data, std::string& out) {
  if (error_ != DecodeError::kNone) return error_;
  if (!content_) return scrub(data, out);  // de-chunking only: the data is what the guest reads
  while (!data.empty()) {
    const std::string_view slice = data.substr(0, kSlice);
    data.remove_prefix(slice.size());
    plain_.clear();
    const CodingError e = content_->feed(slice, plain_);
    if (e != CodingError::kNone) {
      wipe(plain_);  // never forwarded: what decoded before the error is dropped with the response
      return fail(from_coding(e));
    }
    scrub(plain_, out);
    wipe(plain_);
  }
  return DecodeError::kNone;
}

DecodeError ResponseBodyDecoder::end(std::string_view trailers, std::string& out) {
  if (error_ != DecodeError::kNone) return error_;
  if (content_) {
    plain_.clear();
    const CodingError e = content_->finish(plain_);
    if (e != CodingError::kNone) {
      wipe(plain_);
      return fail(from_coding(e));
    }
    scrub(plain_, out);
    wipe(plain_);
  }
  flush(out);
  if (!plan_.reframe()) return DecodeError::kNone;
  std::string masked;
  if (!trailers.empty()) {  // the body's scrubber holds nothing now (flushed above)
    scrubber_->feed(trailers, masked);
    scrubber_->flush(masked);
  }
  append_last_chunk(masked, out);
  return DecodeError::kNone;
}

void ResponseBodyDecoder::flush(std::string& out) {
  if (scrubber_->pending() == 0) return;
  scrubbed_.clear();
  scrubber_->flush(scrubbed_);
  emit(scrubbed_, out);
}

// ---- ResponseStream ----

ResponseStream::ResponseStream(const ScrubForms* forms, ResponseDecodeLimits limits)
    : limits_(limits), reader_(limits.framing) {
  if (forms != nullptr) scrubber_ = &own_.emplace(*forms);
}

ResponseStream::ResponseStream(Scrubber* scrub, ResponseDecodeLimits limits)
    : limits_(limits), reader_(limits.framing), scrubber_(scrub) {}

ResponseStream::~ResponseStream() {
  wipe(head_);
  wipe(adjusted_);
}

std::uint64_t ResponseStream::masked_bytes() const noexcept {
  return scrubber_ != nullptr ? scrubber_->masked_bytes() : 0;
}

ResponseStream::Event ResponseStream::fail(std::string reason) {
  failed_ = true;
  error_ = std::move(reason);
  wipe(head_);
  body_.reset();
  return Event::kError;
}

void ResponseStream::plain(std::string_view bytes, std::string& out) {
  if (scrubber_) scrubber_->feed(bytes, out);
  else out.append(bytes);
}

// A head was read (its bytes in head_): it leaves as it came, or adjusted for its body's plan.
ResponseStream::Event ResponseStream::on_head(std::string& out) {
  const ResponseHead& head = reader_.head();
  BodyPlan plan;
  if (scrubber_ != nullptr && !head.interim && !head.switched) {
    if (plan_body(head, undo_codings_, plan) != DecodeError::kNone) {
      return fail("a response in a coding the gateway does not decode, from a host that may have received a "
                  "secret value: not forwarded");
    }
  }
  if (!plan.codings.empty()) {
    adjusted_.clear();
    adjust_head(head, plan, adjusted_);
    plain(adjusted_, out);
    wipe(adjusted_);
  } else {
    plain(head_, out);
  }
  wipe(head_);
  if (plan.decode()) {
    // The stream's held bytes go first: the body's output follows them.
    if (scrubber_ && scrubber_->pending() > 0) scrubber_->flush(out);
    close_after_ = plan.close_after;
    body_.emplace(std::move(plan), limits_.coding, *scrubber_);
  }
  return Event::kHead;
}

ResponseStream::Event ResponseStream::feed(std::string_view in, std::size_t& used, std::string& out) {
  used = 0;
  if (failed_) return Event::kError;
  if (opaque_) {
    plain(in, out);
    used = in.size();
    return Event::kNeedMore;
  }
  const bool head_bytes = reader_.in_head();
  const ResponseReader::Event event = reader_.feed(in, used);
  const std::string_view consumed = in.substr(0, used);
  using RE = ResponseReader::Event;
  if (event == RE::kError) return fail("malformed response: " + std::string(to_string(reader_.error())));
  if (event == RE::kOpaque) {
    opaque_ = true;
    return Event::kOpaque;
  }
  if (head_bytes) {
    head_.append(consumed);  // bounded by the reader's head limit
    return event == RE::kHead ? on_head(out) : Event::kNeedMore;
  }
  if (!body_) {
    plain(consumed, out);  // a plain body, and its framing when no scrubber asks for de-chunking
    return Event::kNeedMore;
  }
  if (DecodeError e = body_->feed(reader_.body(), out); e != DecodeError::kNone) {
    return fail("a response body that cannot be scrubbed (" + std::string(describe(e)) + "): not forwarded");
  }
  if (event != RE::kEnd) return Event::kNeedMore;
  if (DecodeError e = body_->end(reader_.trailers(), out); e != DecodeError::kNone) {
    return fail("a response body that cannot be scrubbed (" + std::string(describe(e)) + "): not forwarded");
  }
  body_.reset();
  if (close_after_) {
    failed_ = true;  // nothing after this body reaches the guest
    error_ = "the connection closes after a body re-framed as close-delimited";
    return Event::kClose;
  }
  return Event::kNeedMore;
}

ResponseScrubber* ResponseStream::in_place_scrubber() noexcept {
  if (failed_ || scrubber_ == nullptr || body_ || (!opaque_ && reader_.in_head())) return nullptr;
  const ResponseHead::Body framing = reader_.head().body;
  if (!opaque_ && framing != ResponseHead::Body::kLength && framing != ResponseHead::Body::kClose) return nullptr;
  return scrubber_->sole();
}

void ResponseStream::feed_in_place(std::string& buf, std::size_t at, std::string& rest) {
  std::size_t used = buf.size() - at;
  if (!opaque_) {
    // The reader counts the body's bytes (and ends it); no event here needs more than that.
    reader_.feed(std::string_view(buf).substr(at), used);
    if (used < buf.size() - at) {
      rest.assign(buf, at + used);
      OPENSSL_cleanse(buf.data() + at + used, buf.size() - at - used);
      buf.resize(at + used);
    }
  }
  scrubber_->sole()->scrub_in_place(buf, at);
}

void ResponseStream::flush(std::string& out) {
  if (body_) body_->flush(out);
  else if (scrubber_ && scrubber_->pending() > 0) scrubber_->flush(out);
}

DecodeError ResponseStream::finish(std::string& out) {
  if (failed_) return DecodeError::kNone;
  if (body_ && reader_.head().body == ResponseHead::Body::kClose && !reader_.in_head()) {
    // A close-delimited body ends here: a compressed one must end as a whole stream.
    if (DecodeError e = body_->end({}, out); e != DecodeError::kNone) {
      fail("a response body that cannot be scrubbed (" + std::string(describe(e)) + "): not forwarded");
      return e;
    }
      body_.reset();
    return DecodeError::kNone;
  }
  // Otherwise what was scanned goes; a body cut short stays cut short (no last chunk).
  flush(out);
  return DecodeError::kNone;
}

}  // namespace airlock::http
