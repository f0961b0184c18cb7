// The pure parts of the guest's view (see view.hpp).
#include "sandbox/view.hpp"

#include <airlock/errors.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace airlock::sandbox {
namespace {

constexpr int kMaxReplacePasses = 4;

// One left-to-right pass. Returns whether anything was replaced.
bool replace_once(std::string_view content, const std::vector<ValueReplacement>& values,
                  std::string& out, std::vector<bool>& seen) {
  constexpr std::size_t npos = std::string_view::npos;
  std::vector<std::size_t> next(values.size(), npos);
  const auto find_from = [&](std::size_t i, std::size_t from) {
    next[i] = values[i].value.empty() ? npos : content.find(values[i].value, from);
  };
  for (std::size_t i = 0; i < values.size(); ++i) find_from(i, 0);
  bool any = false;
  std::size_t cursor = 0;
  out.clear();
  for (;;) {
    std::size_t best = npos;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (next[i] == npos) continue;
      if (best == npos || next[i] < next[best] ||
          (next[i] == next[best] && values[i].value.size() > values[best].value.size())) {
        best = i;
      }
    }
    if (best == npos) break;
    const std::size_t at = next[best];
    out.append(content.substr(cursor, at - cursor));
    out.append(values[best].placeholder);
    cursor = at + values[best].value.size();
    seen[best] = true;
    any = true;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (next[i] != npos && next[i] < cursor) find_from(i, cursor);
    }
  }
  out.append(content.substr(cursor));
  return any;
}

bool holds_a_value(std::string_view content, const std::vector<ValueReplacement>& values) {
  return std::any_of(values.begin(), values.end(), [&](const ValueReplacement& v) {
    return !v.value.empty() && content.find(v.value) != std::string_view::npos;
  });
}

std::optional<std::uint64_t> parse_number(std::string_view text) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view line, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = line.find(sep, start);
    out.push_back(line.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

template <typename Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && line.front() != '#') fn(line);
    start = end + 1;
  }
}

}  // namespace

std::optional<std::string> replace_values(std::string_view content,
                                          const std::vector<ValueReplacement>& values,
                                          std::vector<std::size_t>* found) {
  std::vector<bool> seen(values.size(), false);
  std::string current, out;
  if (!replace_once(content, values, current, seen)) return std::nullopt;
  for (int pass = 1; pass < kMaxReplacePasses && holds_a_value(current, values); ++pass) {
    replace_once(current, values, out, seen);
    current.swap(out);
  }
  if (holds_a_value(current, values)) current.clear();
  if (found != nullptr) {
    found->clear();
    for (std::size_t i = 0; i < seen.size(); ++i) {
      if (seen[i]) found->push_back(i);
    }
  }
  return current;
}

IdRange parse_id_range(std::string_view text) {
  const std::size_t dash = text.find('-');
  const auto bad = [&](const std::string& why) {
    return ConfigError("id range '" + std::string(text) + "': " + why);
  };
  if (dash == std::string_view::npos) throw bad("expected FIRST-LAST");
  const auto first = parse_number(text.substr(0, dash));
  const auto last = parse_number(text.substr(dash + 1));
  if (!first || !last) throw bad("expected FIRST-LAST (decimal ids)");
  if (*last < *first) throw bad("LAST is below FIRST");
  if (*last >= 0xFFFFFFFFull) throw bad("ids must be below 4294967295");
  if (*first == 0) throw bad("the range must not hold id 0 (root)");
  const IdRange range{*first, *last - *first + 1};
  if (range.count < kIdsPerSandbox) {
    throw bad("too small: each sandbox needs " + std::to_string(kIdsPerSandbox) + " ids");
  }
  return range;
}

std::vector<std::uint64_t> ids_in_passwd(std::string_view text, bool with_group_field) {
  std::vector<std::uint64_t> ids;
  for_each_line(text, [&](std::string_view line) {
    const auto fields = split(line, ':');
    if (fields.size() < 3) return;
    if (const auto id = parse_number(fields[2])) ids.push_back(*id);
    if (with_group_field && fields.size() >= 4) {
      if (const auto gid = parse_number(fields[3])) ids.push_back(*gid);
    }
  });
  return ids;
}

std::vector<IdRange> ranges_in_subid(std::string_view text) {
  std::vector<IdRange> ranges;
  for_each_line(text, [&](std::string_view line) {
    const auto fields = split(line, ':');
    if (fields.size() < 3) return;
    const auto first = parse_number(fields[1]);
    const auto count = parse_number(fields[2]);
    if (first && count && *count > 0) ranges.push_back({*first, *count});
  });
  return ranges;
}

std::vector<IdRange> free_slots(const IdRange& pool, const std::vector<std::uint64_t>& busy,
                                const std::vector<IdRange>& busy_ranges) {
  std::vector<IdRange> slots;
  for (std::uint64_t first = pool.first; first + kIdsPerSandbox <= pool.end(); first += kIdsPerSandbox) {
    const IdRange slot{first, kIdsPerSandbox};
    const bool taken =
        std::any_of(busy.begin(), busy.end(), [&](std::uint64_t id) { return id >= slot.first && id < slot.end(); }) ||
        std::any_of(busy_ranges.begin(), busy_ranges.end(), [&](const IdRange& r) { return r.overlaps(slot); });
    if (!taken) slots.push_back(slot);
  }
  return slots;
}

}  // namespace airlock::sandbox
