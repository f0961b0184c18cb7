#include <airlock/secret_value.hpp>
#include <airlock/secret_value_fmt.hpp>

#include "secrets/secret_value_hooks.hpp"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

namespace airlock {
namespace {

constexpr std::string_view kFake = "sk-FAKE-test-value-0123456789";

// Records what a mapping held when SecretValue handed it back, just before munmap.
struct WipeRecord {
  static inline std::vector<std::string> seen;
  static void observe(const char* data, std::size_t capacity) { seen.emplace_back(data, capacity); }
};

class WipeObserverScope {
 public:
  WipeObserverScope() {
    WipeRecord::seen.clear();
    testing::set_wipe_observer(&WipeRecord::observe);
  }
  ~WipeObserverScope() { testing::set_wipe_observer(nullptr); }
};

TEST(SecretValue, HoldsTheBytes) {
  SecretValue v(kFake);
  EXPECT_EQ(v.size(), kFake.size());
  EXPECT_FALSE(v.empty());
  EXPECT_EQ(v.expose(), kFake);
  EXPECT_TRUE(SecretValue().empty());
  EXPECT_TRUE(SecretValue("").empty());
}

TEST(SecretValue, MemoryIsWipedOnDestruction) {
  WipeObserverScope scope;
  const char* where = nullptr;
  {
    SecretValue v(kFake);
    where = v.expose().data();
  }
  ASSERT_EQ(WipeRecord::seen.size(), 1u);
  const std::string& page = WipeRecord::seen[0];
  EXPECT_GE(page.size(), kFake.size());
  EXPECT_EQ(page.size() % static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), 0u);
  EXPECT_EQ(page, std::string(page.size(), '\0'));
  EXPECT_NE(where, nullptr);
}

TEST(SecretValue, MemoryIsWipedOnMoveAssignOver) {
  WipeObserverScope scope;
  SecretValue a(kFake);
  SecretValue b("another-fake-value");
  a = std::move(b);  // the old mapping of a is released
  ASSERT_EQ(WipeRecord::seen.size(), 1u);
  EXPECT_EQ(WipeRecord::seen[0], std::string(WipeRecord::seen[0].size(), '\0'));
  EXPECT_EQ(a.expose(), "another-fake-value");
}

TEST(SecretValue, MoveTransfersWithoutCopying) {
  SecretValue a(kFake);
  const char* where = a.expose().data();
  SecretValue b(std::move(a));
  EXPECT_EQ(b.expose().data(), where);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented moved-from state
  EXPECT_EQ(a.expose().size(), 0u);
}

TEST(SecretValue, CloneIsAFreshMapping) {
  SecretValue a(kFake);
  SecretValue b = a.clone();
  EXPECT_EQ(b.expose(), kFake);
  EXPECT_NE(b.expose().data(), a.expose().data());
}

TEST(SecretValue, TakeWipesTheSource) {
  std::string source(kFake);
  SecretValue v = SecretValue::take(source);
  EXPECT_EQ(v.expose(), kFake);
  EXPECT_TRUE(source.empty());
  // The old bytes in the string's buffer were overwritten too.
  EXPECT_EQ(std::string(source.data(), kFake.size()).find("FAKE"), std::string::npos);
}

TEST(SecretValue, Equals) {
  SecretValue v(kFake);
  EXPECT_TRUE(v.equals(kFake));
  EXPECT_FALSE(v.equals("sk-FAKE-test-value-0123456788"));
  EXPECT_FALSE(v.equals("sk-FAKE"));
  EXPECT_FALSE(v.equals(""));
  EXPECT_TRUE(SecretValue().equals(""));
}

TEST(SecretValue, ContainsAnyOf) {
  EXPECT_FALSE(SecretValue(kFake).contains_any_of("\r\n"));
  EXPECT_TRUE(SecretValue("a\nb").contains_any_of("\r\n"));
  EXPECT_TRUE(SecretValue(std::string_view("a\0b", 3)).contains_any_of(std::string_view("\0", 1)));
}

TEST(SecretValue, NeverFormatsItsBytes) {
  SecretValue v(kFake);
  std::ostringstream os;
  os << v << ' ' << std::hex << std::setw(40) << v;
  EXPECT_EQ(os.str().find("FAKE"), std::string::npos);
  EXPECT_NE(os.str().find("<redacted>"), std::string::npos);
  EXPECT_EQ(fmt::format("{}", v), "<redacted>");
  EXPECT_EQ(fmt::format("{:>40}", v), "<redacted>");
  EXPECT_EQ(fmt::format("key={}", v).find("FAKE"), std::string::npos);
}

// Reads the VmFlags line of the mapping that holds `addr` from /proc/self/smaps.
std::string vm_flags_of(const void* addr) {
  std::ifstream smaps("/proc/self/smaps");
  const auto target = reinterpret_cast<std::uintptr_t>(addr);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    // Mapping headers start "lo-hi perms ..."; field lines ("Size:", "VmFlags:") do not.
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2) {
      inside = target >= lo && target < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

TEST(SecretValue, MappingIsExcludedFromCoreDumpsAndLockedWhenAllowed) {
  SecretValue v(kFake);
  const std::string flags = vm_flags_of(v.expose().data());
  ASSERT_FALSE(flags.empty());
  EXPECT_NE(flags.find(" dd"), std::string::npos) << flags;  // MADV_DONTDUMP
  if (v.locked()) {
    EXPECT_NE(flags.find(" lo"), std::string::npos) << flags;
  } else {
    EXPECT_EQ(flags.find(" lo"), std::string::npos) << flags;
  }
}

TEST(SecretValue, StillWorksWhenMlockIsRefused) {
  // In a child: RLIMIT_MEMLOCK 0 makes mlock fail for a process without CAP_IPC_LOCK (root
  // becomes nobody first, dropping its capabilities). The value must still work.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const rlimit none{0, 0};
    if (setrlimit(RLIMIT_MEMLOCK, &none) != 0) _exit(3);
    if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(4);
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);  // a uid change hides /proc/self/smaps otherwise
    SecretValue v(kFake);
    const bool ok = v.equals(kFake) && !v.locked() && vm_flags_of(v.expose().data()).find(" dd") != std::string::npos;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(HardenProcess, MakesTheProcessNonDumpableWithNoCore) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1) _exit(3);  // the precondition
    harden_process();
    rlimit core{};
    getrlimit(RLIMIT_CORE, &core);
    const bool ok = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 && core.rlim_cur == 0 && core.rlim_max == 0;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace airlock
