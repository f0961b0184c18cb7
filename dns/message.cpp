#include "dns/message.hpp"

#include <algorithm>

namespace airlock::dns {
namespace {

class Category : public std::error_category {
 public:
  const char* name() const noexcept override { return "dns"; }
  std::string message(int e) const override {
    switch (static_cast<Errc>(e)) {
      case Errc::kTruncated: return "message ends inside a field";
      case Errc::kTooLarge: return "message longer than 65535 bytes";
      case Errc::kBadLabelType: return "reserved label type";
      case Errc::kLabelTooLong: return "label longer than 63 bytes";
      case Errc::kNameTooLong: return "name longer than 255 bytes";
      case Errc::kBadPointer: return "compression pointer that does not point backwards";
      case Errc::kBadRdata: return "record data malformed for its type";
      case Errc::kTrailingData: return "unexpected bytes after the data";
      case Errc::kBadName: return "name cannot be encoded";
      case Errc::kTooManyRecords: return "more than 65535 entries in a section";
    }
    return "unknown dns error";
  }
};

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

constexpr unsigned kMaxPointerJumps = 128;

std::uint16_t u16(std::string_view w, std::size_t at) noexcept {
  return static_cast<std::uint16_t>((static_cast<unsigned char>(w[at]) << 8) | static_cast<unsigned char>(w[at + 1]));
}
std::uint32_t u32(std::string_view w, std::size_t at) noexcept {
  return (std::uint32_t{u16(w, at)} << 16) | u16(w, at + 2);
}
void put16(std::string& out, std::uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}
void put32(std::string& out, std::uint32_t v) {
  put16(out, static_cast<std::uint16_t>(v >> 16));
  put16(out, static_cast<std::uint16_t>(v & 0xffff));
}

// Reads the name at `pos`; bytes read in place must end by `limit`. On success `next` is the
// offset after the name's in-place bytes, and `out` is its expanded wire form.
std::error_code read_name(std::string_view msg, std::size_t pos, std::size_t limit, std::string& out,
                          std::size_t& next) {
  out.clear();
  std::size_t cur = pos;
  std::size_t segment_start = pos;  // where the bytes now being read began
  std::size_t bound = limit;
  bool jumped = false;
  unsigned jumps = 0;
  while (true) {
    if (cur >= bound) return Errc::kTruncated;
    const auto len = static_cast<unsigned char>(msg[cur]);
    if ((len & 0xc0) == 0xc0) {
      if (cur + 1 >= bound) return Errc::kTruncated;
      const std::size_t target = ((len & 0x3fu) << 8) | static_cast<unsigned char>(msg[cur + 1]);
      // Strictly before every byte of this name read so far: reads can never cycle.
      if (target < kHeaderBytes || target >= segment_start || ++jumps > kMaxPointerJumps) {
        return Errc::kBadPointer;
      }
      if (!jumped) next = cur + 2;
      jumped = true;
      cur = target;
      segment_start = target;
      bound = msg.size();
      continue;
    }
    if (len & 0xc0) return Errc::kBadLabelType;
    if (out.size() + 1 + len > kMaxNameBytes) return Errc::kNameTooLong;
    if (len == 0) {
      out += '\0';
      if (!jumped) next = cur + 1;
      return {};
    }
    if (cur + 1 + len > bound) return Errc::kTruncated;
    out.append(msg.substr(cur, 1 + len));
    cur += 1 + len;
  }
}

// Record data layouts with names that may be compressed (RFC 1035 §3.3, RFC 3597 §4).
enum class Layout { kOpaque, kName, kTwoNames, kPreferenceName, kSoa };

Layout layout_of(std::uint16_t t) noexcept {
  switch (t) {
    case type::kNs: case type::kMd: case type::kMf: case type::kCname: case type::kMb: case type::kMg:
    case type::kMr: case type::kPtr:
      return Layout::kName;
    case type::kMinfo: return Layout::kTwoNames;
    case type::kMx: return Layout::kPreferenceName;
    case type::kSoa: return Layout::kSoa;
    default: return Layout::kOpaque;
  }
}

std::error_code read_rdata(std::string_view msg, std::uint16_t t, std::size_t pos, std::size_t end,
                           std::string& out) {
  out.clear();
  std::string name;
  std::size_t next = pos;
  auto name_at = [&](std::size_t at) -> std::error_code {
    if (auto ec = read_name(msg, at, end, name, next)) return ec;
    out += name;
    return {};
  };
  switch (layout_of(t)) {
    case Layout::kOpaque:
      if (t == type::kA && end - pos != 4) return Errc::kBadRdata;
      if (t == type::kAaaa && end - pos != 16) return Errc::kBadRdata;
      out.assign(msg.substr(pos, end - pos));
      return {};
    case Layout::kName:
      if (auto ec = name_at(pos)) return ec;
      break;
    case Layout::kTwoNames:
      if (auto ec = name_at(pos)) return ec;
      if (auto ec = name_at(next)) return ec;
      break;
    case Layout::kPreferenceName:
      if (end - pos < 2) return Errc::kBadRdata;
      out.assign(msg.substr(pos, 2));
      if (auto ec = name_at(pos + 2)) return ec;
      break;
    case Layout::kSoa:
      if (auto ec = name_at(pos)) return ec;
      if (auto ec = name_at(next)) return ec;
      if (end - next != 20) return Errc::kBadRdata;  // serial, refresh, retry, expire, minimum
      out.append(msg.substr(next, 20));
      next = end;
      break;
  }
  if (next != end) return Errc::kTrailingData;
  return {};
}

std::error_code read_header(std::string_view wire, Header& h, std::uint16_t counts[4]) {
  if (wire.size() > kMaxMessageBytes) return Errc::kTooLarge;
  if (wire.size() < kHeaderBytes) return Errc::kTruncated;
  h.id = u16(wire, 0);
  h.flags = u16(wire, 2);
  for (int i = 0; i < 4; ++i) counts[i] = u16(wire, 4 + 2 * static_cast<std::size_t>(i));
  return {};
}

std::error_code read_question(std::string_view wire, std::size_t& pos, Question& q) {
  std::string name;
  std::size_t next = pos;
  if (auto ec = read_name(wire, pos, wire.size(), name, next)) return ec;
  if (next + 4 > wire.size()) return Errc::kTruncated;
  q.name = Name::from_wire_unchecked(std::move(name));
  q.type = u16(wire, next);
  q.klass = u16(wire, next + 2);
  pos = next + 4;
  return {};
}

std::error_code read_record(std::string_view wire, std::size_t& pos, Record& r) {
  std::string name;
  std::size_t next = pos;
  if (auto ec = read_name(wire, pos, wire.size(), name, next)) return ec;
  if (next + 10 > wire.size()) return Errc::kTruncated;
  r.name = Name::from_wire_unchecked(std::move(name));
  r.type = u16(wire, next);
  r.klass = u16(wire, next + 2);
  r.ttl = u32(wire, next + 4);
  const std::size_t length = u16(wire, next + 8);
  const std::size_t start = next + 10;
  if (start + length > wire.size()) return Errc::kTruncated;
  if (auto ec = read_rdata(wire, r.type, start, start + length, r.rdata)) return ec;
  pos = start + length;
  return {};
}

bool name_char_plain(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

const std::error_category& category() noexcept {
  static const Category instance;
  return instance;
}

// ---- Name ----

std::optional<Name> Name::from_text(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text == ".") return Name();
  std::string wire;
  std::string label;
  auto end_label = [&]() -> bool {
    if (label.empty() || label.size() > kMaxLabelBytes) return false;
    wire += static_cast<char>(label.size());
    wire += label;
    label.clear();
    return true;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      if (!end_label()) return std::nullopt;
      continue;
    }
    if (c != '\\') {
      label += c;
      continue;
    }
    if (i + 1 >= text.size()) return std::nullopt;
    const char d = text[i + 1];
    if (d >= '0' && d <= '9') {
      if (i + 3 >= text.size()) return std::nullopt;  // needs three digits
      unsigned v = 0;
      for (std::size_t k = 1; k <= 3; ++k) {
        const char x = text[i + k];
        if (x < '0' || x > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned>(x - '0');
      }
      if (v > 255) return std::nullopt;
      label += static_cast<char>(v);
      i += 3;
    } else {
      label += d;
      i += 1;
    }
  }
  if (!label.empty() && !end_label()) return std::nullopt;
  wire += '\0';
  if (wire.size() > kMaxNameBytes) return std::nullopt;
  Name n;
  n.wire_ = std::move(wire);
  return n;
}

std::string Name::text() const {
  if (is_root()) return ".";
  std::string out;
  std::size_t i = 0;
  while (i < wire_.size()) {
    const auto len = static_cast<unsigned char>(wire_[i]);
    if (len == 0) break;
    if (!out.empty()) out += '.';
    for (std::size_t k = 1; k <= len && i + k < wire_.size(); ++k) {
      const char c = wire_[i + k];
      if (name_char_plain(c)) {
        out += lower(c);
      } else {
        const auto v = static_cast<unsigned char>(c);
        out += '\\';
        out += static_cast<char>('0' + v / 100);
        out += static_cast<char>('0' + (v / 10) % 10);
        out += static_cast<char>('0' + v % 10);
      }
    }
    i += 1 + len;
  }
  return out;
}

bool operator==(const Name& a, const Name& b) noexcept {
  // Length bytes are below 64, never ASCII letters, so folding them is harmless.
  return a.wire_.size() == b.wire_.size() &&
         std::equal(a.wire_.begin(), a.wire_.end(), b.wire_.begin(),
                    [](char x, char y) { return lower(x) == lower(y); });
}

// ---- Record, Message ----

std::optional<IpAddress> Record::address() const {
  IpAddress ip;
  if (type == type::kA && rdata.size() == 4) {
    std::copy(rdata.begin(), rdata.end(), ip.bytes.begin());
    return ip;
  }
  if (type == type::kAaaa && rdata.size() == 16) {
    ip.family = IpAddress::Family::kV6;
    std::copy(rdata.begin(), rdata.end(), ip.bytes.begin());
    return ip;
  }
  return std::nullopt;
}

std::optional<Name> Record::cname_target() const {
  if (type != type::kCname || rdata.empty()) return std::nullopt;
  return Name::from_wire_unchecked(rdata);
}

Record Record::a_or_aaaa(Name name, const IpAddress& ip, std::uint32_t ttl) {
  Record r;
  r.name = std::move(name);
  r.type = ip.is_v4() ? type::kA : type::kAaaa;
  r.ttl = ttl;
  r.rdata.assign(reinterpret_cast<const char*>(ip.bytes.data()), ip.size());
  return r;
}

Record Record::cname(Name name, const Name& target, std::uint32_t ttl) {
  Record r;
  r.name = std::move(name);
  r.type = type::kCname;
  r.ttl = ttl;
  r.rdata = target.wire();
  return r;
}

const Record* Message::opt() const noexcept {
  for (const auto& r : additional) {
    if (r.type == type::kOpt) return &r;
  }
  return nullptr;
}

std::uint16_t Message::udp_payload_limit() const noexcept {
  const Record* o = opt();
  if (o == nullptr) return kMinUdpPayload;
  return std::max<std::uint16_t>(o->klass, kMinUdpPayload);
}

std::error_code parse(std::string_view wire, Message& out) {
  out = Message{};
  std::uint16_t counts[4];
  if (auto ec = read_header(wire, out.header, counts)) return ec;
  std::size_t pos = kHeaderBytes;
  // A question takes at least 5 bytes, a record at least 11: never allocate more entries
  // than the bytes can hold.
  if (counts[0] > (wire.size() - pos) / 5) return Errc::kTruncated;
  out.questions.resize(counts[0]);
  for (auto& q : out.questions) {
    if (auto ec = read_question(wire, pos, q)) return ec;
  }
  std::vector<Record>* sections[3] = {&out.answers, &out.authority, &out.additional};
  for (int s = 0; s < 3; ++s) {
    const std::size_t count = counts[s + 1];
    if (count > (wire.size() - pos) / 11) return Errc::kTruncated;
    sections[s]->resize(count);
    for (auto& r : *sections[s]) {
      if (auto ec = read_record(wire, pos, r)) return ec;
    }
  }
  if (pos != wire.size()) return Errc::kTrailingData;
  return {};
}

std::error_code parse_question(std::string_view wire, Header& header, std::optional<Question>& question) {
  question.reset();
  std::uint16_t counts[4];
  if (auto ec = read_header(wire, header, counts)) return ec;
  if (counts[0] == 0) return {};
  std::size_t pos = kHeaderBytes;
  Question q;
  if (auto ec = read_question(wire, pos, q)) return ec;
  question = std::move(q);
  return {};
}

std::error_code build(const Message& m, std::string& out) {
  out.clear();
  const std::vector<Record>* sections[3] = {&m.answers, &m.authority, &m.additional};
  if (m.questions.size() > 0xffff) return Errc::kTooManyRecords;
  for (const auto* s : sections) {
    if (s->size() > 0xffff) return Errc::kTooManyRecords;
  }
  put16(out, m.header.id);
  put16(out, m.header.flags);
  put16(out, static_cast<std::uint16_t>(m.questions.size()));
  for (const auto* s : sections) put16(out, static_cast<std::uint16_t>(s->size()));
  for (const auto& q : m.questions) {
    out += q.name.wire();
    put16(out, q.type);
    put16(out, q.klass);
    if (out.size() > kMaxMessageBytes) return Errc::kTooLarge;
  }
  for (const auto* s : sections) {
    for (const auto& r : *s) {
      if (r.rdata.size() > 0xffff) return Errc::kBadRdata;
      out += r.name.wire();
      put16(out, r.type);
      put16(out, r.klass);
      put32(out, r.ttl);
      put16(out, static_cast<std::uint16_t>(r.rdata.size()));
      out += r.rdata;
      if (out.size() > kMaxMessageBytes) return Errc::kTooLarge;
    }
  }
  return {};
}

Message make_response(const Message& query, std::uint8_t rc, std::uint16_t udp_size) {
  Message m;
  m.header.id = query.header.id;
  m.header.flags = static_cast<std::uint16_t>(query.header.flags & 0x7910);  // opcode, RD, CD
  m.header.set_qr(true);
  m.header.set_ra(true);
  m.header.set_rcode(rc);
  m.questions = query.questions;
  if (query.opt() != nullptr) {
    Record opt;
    opt.type = type::kOpt;
    opt.klass = udp_size;
    m.additional.push_back(std::move(opt));
  }
  return m;
}

Message truncated(const Message& response) {
  Message m;
  m.header = response.header;
  m.header.set_tc(true);
  m.questions = response.questions;
  for (const auto& r : response.additional) {
    if (r.type == type::kOpt) m.additional.push_back(r);
  }
  return m;
}

}  // namespace airlock::dns
