#include <http/response_decoder.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

#include <openssl/crypto.h>

namespace airlock::http {
namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls visit(name, value, line) for each field line of a head (status line skipped); false when
// a line is not CRLF-ended or has no colon.
template <typename Visit>
bool each_field(std::string_view head, Visit&& visit) {
  std::size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return false;
  std::size_t at = eol + 2;
  while (at < head.size()) {
    eol = head.find("\r\n", at);
    if (eol == std::string_view::npos) return false;
    const std::string_view line = head.substr(at, eol - at);
    at = eol + 2;
    if (line.empty()) return at == head.size();
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    visit(line.substr(0, colon), trim(line.substr(colon + 1)), head.substr(at - line.size() - 2, line.size() + 2));
  }
  return false;
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

}  // namespace

std::string_view describe(ChunkError e) noexcept {
  switch (e) {
    case ChunkError::kNone: return "ok";
    case ChunkError::kBadSize: return "bad chunk size";
    case ChunkError::kLineTooLong: return "chunk line too long";
    case ChunkError::kBadLineEnd: return "chunk line not ended by CRLF";
    case ChunkError::kTrailersTooLong: return "trailer section too long";
  }
  return "?";
}

std::string_view describe(DecodeError e) noexcept {
  switch (e) {
    case DecodeError::kNone: return "ok";
    case DecodeError::kBadHead: return "response head not parseable";
    case DecodeError::kBadFraming: return "response framing not acceptable";
    case DecodeError::kUnknownCoding: return "response coding not decodable";
    case DecodeError::kChunking: return "bad chunked framing";
    case DecodeError::kCoding: return "corrupt or truncated compressed body";
    case DecodeError::kOutputCap: return "decoded body above the size cap";
    case DecodeError::kRatioCap: return "decompression ratio above the cap";
    case DecodeError::kNoMemory: return "decoder could not allocate";
    case DecodeError::kTruncated: return "response body truncated";
  }
  return "?";
}

ChunkError ChunkedDecoder::feed(std::string_view in, std::string& data, std::size_t& used) {
  used = 0;
  if (error_ != ChunkError::kNone) return error_;
  auto fail = [&](ChunkError e) { return error_ = e; };
  std::size_t i = 0;
  while (i < in.size() && state_ != State::kDone) {
    const char c = in[i];
    switch (state_) {
      case State::kSize: {
        const int v = hex_value(c);
        if (v >= 0) {
          if (digits_ == 16) return fail(ChunkError::kBadSize);  // would not fit 64 bits
          remaining_ = remaining_ * 16 + static_cast<unsigned>(v);
          ++digits_;
          ++i;
        } else if (digits_ == 0) {
          return fail(ChunkError::kBadSize);
        } else if (c == '\r') {
          state_ = State::kSizeLf;
          ++i;
        } else if (c == '\n') {
          return fail(ChunkError::kBadLineEnd);
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kExtension;
          line_ = digits_;
        } else {
          return fail(ChunkError::kBadSize);
        }
        break;
      }
      case State::kExtension:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n' || c == '\0') {
          return fail(ChunkError::kBadLineEnd);
        } else if (++line_ > kMaxLine) {
          return fail(ChunkError::kLineTooLong);
        }
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return fail(ChunkError::kBadLineEnd);
        ++i;
        digits_ = 0;
        line_ = 0;
        state_ = remaining_ == 0 ? State::kTrailerLine : State::kData;
        break;
      case State::kData: {
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - i));
        data.append(in.substr(i, take));
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') return fail(ChunkError::kBadLineEnd);
        ++i;
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail(ChunkError::kBadLineEnd);
        ++i;
        state_ = State::kSize;
        break;
      case State::kTrailerLine:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n' || c == '\0') {
          return fail(ChunkError::kBadLineEnd);
        } else {
          if (trailers_.size() + 2 >= kMaxTrailers) return fail(ChunkError::kTrailersTooLong);
          trailers_ += c;
          ++line_;
        }
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail(ChunkError::kBadLineEnd);
        ++i;
        if (line_ == 0) {
          state_ = State::kDone;
        } else {
          trailers_ += "\r\n";
          line_ = 0;
          state_ = State::kTrailerLine;
        }
        break;
      case State::kDone:
        break;
    }
  }
  used = i;
  return ChunkError::kNone;
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

DecodeError plan_body(std::string_view head, std::string_view method, BodyPlan& plan) {
  plan = BodyPlan{};
  // Status line: HTTP/1.x SP 3DIGIT SP reason.
  if (head.size() < 12 || head.substr(0, 7) != "HTTP/1." || (head[7] != '0' && head[7] != '1') || head[8] != ' ') {
    return DecodeError::kBadHead;
  }
  int status = 0;
  for (std::size_t k = 9; k < 12; ++k) {
    if (head[k] < '0' || head[k] > '9') return DecodeError::kBadHead;
    status = status * 10 + (head[k] - '0');
  }
  plan.http10 = head[7] == '0';
  std::optional<std::uint64_t> length;
  bool conflicting_length = false, has_te = false, chunked_last = false, bad_te = false;
  std::vector<Coding> content, transfer;
  std::string content_field;
  const bool ok = each_field(head, [&](std::string_view name, std::string_view value, std::string_view) {
    if (iequals(name, "content-length")) {
      // A list of equal values is one length (RFC 9110 §8.6); anything else conflicts.
      while (!value.empty()) {
        const std::size_t comma = value.find(',');
        const std::string_view item = trim(value.substr(0, comma));
        value.remove_prefix(comma == std::string_view::npos ? value.size() : comma + 1);
        std::uint64_t n = 0;
        const auto r = std::from_chars(item.data(), item.data() + item.size(), n);
        if (item.empty() || r.ec != std::errc() || r.ptr != item.data() + item.size() || (length && *length != n)) {
          conflicting_length = true;
        }
        length = n;
      }
    } else if (iequals(name, "transfer-encoding")) {
      has_te = true;
      while (!value.empty()) {
        const std::size_t comma = value.find(',');
        const std::string_view item = trim(value.substr(0, comma));
        value.remove_prefix(comma == std::string_view::npos ? value.size() : comma + 1);
        if (item.empty()) continue;
        if (chunked_last) bad_te = true;  // chunked must be the last, and only once
        if (iequals(item, "chunked")) {
          chunked_last = true;
          continue;
        }
        std::vector<Coding> one;
        if (parse_content_encoding(item, one) != CodingError::kNone || one.empty()) {
          bad_te = true;
        } else {
          transfer.push_back(one[0]);
        }
      }
    } else if (iequals(name, "content-encoding")) {
      if (!content_field.empty()) content_field += ',';
      content_field.append(value);
    }
  });
  if (!ok) return DecodeError::kBadHead;
  if (parse_content_encoding(content_field, content) != CodingError::kNone) return DecodeError::kUnknownCoding;
  plan.codings = content;
  plan.codings.insert(plan.codings.end(), transfer.begin(), transfer.end());
  if (plan.codings.size() > kMaxCodings) return DecodeError::kUnknownCoding;

  const bool no_body = (status >= 100 && status < 200) || status == 204 || status == 304 || method == "HEAD";
  if (no_body) {
    plan.framing = BodyPlan::Framing::kNone;
    plan.codings.clear();
    return DecodeError::kNone;
  }
  if (has_te) {
    // HTTP/1.0 has no transfer codings (RFC 9112 §6.1); without a final chunked the body would
    // run to the close, which is refused rather than guessed at.
    if (plan.http10 || bad_te || !chunked_last) return DecodeError::kBadFraming;
    plan.framing = BodyPlan::Framing::kChunked;
    return DecodeError::kNone;
  }
  if (conflicting_length) return DecodeError::kBadFraming;
  if (length) {
    plan.framing = BodyPlan::Framing::kLength;
    plan.length = *length;
  } else {
    plan.framing = BodyPlan::Framing::kClose;
  }
  return DecodeError::kNone;
}

void adjust_head(std::string_view head, const BodyPlan& plan, std::string& out) {
  const std::size_t status_end = head.find("\r\n");
  out.append(head.substr(0, status_end + 2));
  each_field(head, [&](std::string_view name, std::string_view, std::string_view line) {
    if (iequals(name, "content-encoding") || iequals(name, "content-length") || iequals(name, "transfer-encoding")) return;
    if (plan.close_after() && iequals(name, "connection")) return;
    out.append(line);
  });
  if (plan.reframe()) out.append("Transfer-Encoding: chunked\r\n");
  if (plan.close_after()) out.append("Connection: close\r\n");
  out.append("\r\n");
}

ResponseBodyDecoder::ResponseBodyDecoder(BodyPlan plan, const CodingLimits& limits, const ScrubForms* forms)
    : plan_(std::move(plan)), reframe_(plan_.reframe()), forms_(forms), left_(plan_.length) {
  if (!plan_.codings.empty()) {
    content_.emplace(plan_.codings, limits);
    if (content_->error() != CodingError::kNone) error_ = from_coding(content_->error());
  }
  if (forms_ != nullptr) scrubber_.emplace(*forms_);
  if (plan_.framing == BodyPlan::Framing::kNone) done_ = true;
}

ResponseBodyDecoder::~ResponseBodyDecoder() {
  for (std::string* s : {&data_, &plain_, &scrubbed_}) OPENSSL_cleanse(s->data(), s->size());
}

std::uint64_t ResponseBodyDecoder::masked_bytes() const noexcept {
  return (scrubber_ ? scrubber_->masked_bytes() : 0) + trailer_masked_;
}

void ResponseBodyDecoder::emit(std::string_view scrubbed, std::string& out) {
  if (reframe_) {
    append_chunk(scrubbed, out);
  } else {
    out.append(scrubbed);
  }
}

// Bytes of the body as the guest's application reads them, before decoding.
DecodeError ResponseBodyDecoder::decoded(std::string_view bytes, std::string& out) {
  std::string_view plain = bytes;
  if (content_) {
    plain_.clear();
    if (CodingError e = content_->feed(bytes, plain_); e != CodingError::kNone) return fail(from_coding(e));
    plain = plain_;
  }
  if (plain.empty()) return DecodeError::kNone;
  if (scrubber_) {
    scrubbed_.clear();
    scrubber_->feed(plain, scrubbed_);
    emit(scrubbed_, out);
  } else {
    emit(plain, out);
  }
  return DecodeError::kNone;
}

DecodeError ResponseBodyDecoder::end(std::string& out) {
  if (content_) {
    plain_.clear();
    if (CodingError e = content_->finish(plain_); e != CodingError::kNone) return fail(from_coding(e));
    if (!plain_.empty()) {
      const std::string last = std::move(plain_);
      content_.reset();
      if (DecodeError e = decoded(last, out); e != DecodeError::kNone) return e;
    }
  }
  flush(out);
  std::string trailers;
  if (plan_.framing == BodyPlan::Framing::kChunked) {
    trailers = chunks_.trailers();
    if (forms_ != nullptr && !trailers.empty()) {
      ResponseScrubber t(*forms_);
      std::string masked;
      t.feed(trailers, masked);
      t.flush(masked);
      trailer_masked_ += t.masked_bytes();
      trailers.swap(masked);
    }
  }
  if (reframe_) append_last_chunk(trailers, out);
  done_ = true;
  return DecodeError::kNone;
}

DecodeError ResponseBodyDecoder::feed(std::string_view in, std::string& out, std::size_t& used) {
  used = 0;
  if (error_ != DecodeError::kNone) return error_;
  if (done_) return DecodeError::kNone;
  switch (plan_.framing) {
    case BodyPlan::Framing::kChunked: {
      data_.clear();
      if (chunks_.feed(in, data_, used) != ChunkError::kNone) return fail(DecodeError::kChunking);
      if (DecodeError e = decoded(data_, out); e != DecodeError::kNone) return e;
      if (chunks_.done()) return end(out);
      return DecodeError::kNone;
    }
    case BodyPlan::Framing::kLength: {
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, in.size()));
      used = take;
      left_ -= take;
      if (DecodeError e = decoded(in.substr(0, take), out); e != DecodeError::kNone) return e;
      if (left_ == 0) return end(out);
      return DecodeError::kNone;
    }
    case BodyPlan::Framing::kClose:
      used = in.size();
      return decoded(in, out);
    case BodyPlan::Framing::kNone:
      break;
  }
  return DecodeError::kNone;
}

void ResponseBodyDecoder::flush(std::string& out) {
  if (!scrubber_ || scrubber_->pending() == 0) return;
  scrubbed_.clear();
  scrubber_->flush(scrubbed_);
  emit(scrubbed_, out);
}

DecodeError ResponseBodyDecoder::finish(std::string& out) {
  if (error_ != DecodeError::kNone) return error_;
  if (done_) return DecodeError::kNone;
  if (plan_.framing == BodyPlan::Framing::kClose) return end(out);
  return fail(DecodeError::kTruncated);
}

}  // namespace airlock::http
