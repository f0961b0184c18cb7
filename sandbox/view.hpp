#pragma once
// The pure parts of the guest's view: finding secret values in file contents (the workspace
// scan), the id ranges a sandbox may take, and the host files that list ids in use. No I/O.
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::sandbox {

// One secret as the scan sees it: its value (never logged) and what replaces it.
struct ValueReplacement {
  std::string_view value;
  std::string_view placeholder;
};

// Every occurrence of a value in `content`, left to right, the longest value first where two
// start at the same offset, replaced by its placeholder. `found` (when given) gets the index of
// each value that occurred. nullopt when no value occurs. When a replacement would itself form
// a value again (placeholder bytes next to the rest of the text), replacing is repeated a few
// times; if a value still remains, the result is the empty string (the file is shown empty).
std::optional<std::string> replace_values(std::string_view content,
                                          const std::vector<ValueReplacement>& values,
                                          std::vector<std::size_t>* found = nullptr);

// Bounds of the scan of the workspace and the volumes before start.
struct ScanLimits {
  std::uint64_t max_file_bytes = 4u << 20;  // larger files are not read
  std::size_t max_files = 20000;            // regular files read at most
  std::chrono::milliseconds max_time{2000}; // then the scan stops (and says so)
  std::uint64_t max_copy_bytes = 64u << 20; // rewritten copies in all; past it, shown empty
};

// A contiguous range of host ids: [first, first + count).
struct IdRange {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
  std::uint64_t end() const noexcept { return first + count; }
  bool overlaps(const IdRange& other) const noexcept {
    return first < other.end() && other.first < end();
  }
  friend bool operator==(const IdRange&, const IdRange&) = default;
};

// Every sandbox maps its guest ids 0..65535 to one slot of the pool.
inline constexpr std::uint64_t kIdsPerSandbox = 65536;
// The pool reserved for airlock by default: above systemd's container range
// (0x00080000-0x6FFFFFFF) and below 0x7FFE0000 (systemd's foreign/nobody ids) and 2^31 (ids
// that some tools read as negative): 4094 sandboxes at once.
inline constexpr IdRange kDefaultIdPool{0x70000000u, 0x7FFE0000u - 0x70000000u};

// `FIRST-LAST` (inclusive, decimal), at least one whole slot, below 2^32-1. Throws ConfigError.
IdRange parse_id_range(std::string_view text);

// The ids named in the third (and fourth) field of /etc/passwd or the third of /etc/group
// lines; malformed lines are skipped.
std::vector<std::uint64_t> ids_in_passwd(std::string_view text, bool with_group_field);
// The ranges of /etc/subuid or /etc/subgid lines (`name:first:count`); malformed lines skipped.
std::vector<IdRange> ranges_in_subid(std::string_view text);

// The slots of `pool` (each kIdsPerSandbox ids, in order) that hold none of the `busy` ids and
// overlap none of the `busy_ranges`.
std::vector<IdRange> free_slots(const IdRange& pool, const std::vector<std::uint64_t>& busy,
                                const std::vector<IdRange>& busy_ranges);

}  // namespace airlock::sandbox
