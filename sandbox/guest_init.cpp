// The guest side: what runs between clone3 and exec. Only system calls and the data the parent
// prepared (no allocation: the parent may have had other threads holding allocator locks).
#include "sandbox/internal.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace airlock::sandbox::detail {
namespace {

constexpr const char* kInitArgv0 = "airlock-sandbox-init";

int g_status_fd = -1;

[[noreturn]] void fail(const char* what, const char* path) {
  char buf[1024];
  const int n = std::snprintf(buf, sizeof buf, "S%s%s%s: %s", what, path ? " " : "",
                              path ? path : "", std::strerror(errno));
  if (n > 0) (void)!::write(g_status_fd, buf, static_cast<std::size_t>(std::min(n, 1023)));
  _exit(kExitSetupFailed);
}

void mkdir_p(const char* path, mode_t mode) {
  char buf[4096];
  const std::size_t len = std::strlen(path);
  if (len >= sizeof buf) {
    errno = ENAMETOOLONG;
    fail("mkdir", path);
  }
  std::memcpy(buf, path, len + 1);
  for (std::size_t i = 1; i <= len; ++i) {
    if (buf[i] == '/' || buf[i] == '\0') {
      const char saved = buf[i];
      buf[i] = '\0';
      if (::mkdir(buf, mode) != 0 && errno != EEXIST) fail("mkdir", buf);
      buf[i] = saved;
    }
  }
}

void parent_dir_p(const char* path) {
  char buf[4096];
  const std::size_t len = std::strlen(path);
  if (len >= sizeof buf) return;
  std::memcpy(buf, path, len + 1);
  char* slash = std::strrchr(buf, '/');
  if (slash == nullptr || slash == buf) return;
  *slash = '\0';
  mkdir_p(buf, 0755);
}

void touch(const char* path) {
  parent_dir_p(path);
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0 && errno != EEXIST && errno != EISDIR) fail("create", path);
  if (fd >= 0) ::close(fd);
}

void do_mount(const char* source, const char* target, const char* type, unsigned long flags,
              const char* data) {
  if (::mount(source, target, type, flags, data) != 0) fail("mount", target);
}

void close_other_fds(const std::vector<int>& keep) {
  unsigned int next = 3;
  for (const int fd : keep) {
    if (fd < static_cast<int>(next)) continue;
    if (static_cast<unsigned int>(fd) > next) {
      ::syscall(SYS_close_range, next, static_cast<unsigned int>(fd) - 1, 0);
    }
    next = static_cast<unsigned int>(fd) + 1;
  }
  ::syscall(SYS_close_range, next, ~0u, 0);
}

void loopback_up() {
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket", "lo");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) fail("SIOCGIFFLAGS", "lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) fail("SIOCSIFFLAGS", "lo");
  ::close(s);
}

void attach(const ChildPlan::Bind& b) {
  // Targets under a tmpfs mounted here need their mount point created there.
  if (b.directory) mkdir_p(b.target.c_str(), 0755);
  else touch(b.target.c_str());
  if (::syscall(SYS_move_mount, b.tree_fd, "", AT_FDCWD, b.target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    fail("attach a mount on", b.target.c_str());
  }
  ::close(b.tree_fd);
}

// A file shown with other content (placeholders, or nothing): a private copy in the guest's
// /tmp, bound on the file, its name removed again.
void cover(const ChildPlan::Cover& c) {
  const int fd = ::open(c.staging.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                        static_cast<mode_t>(c.mode));
  if (fd < 0) fail("create", c.staging.c_str());
  std::size_t off = 0;
  while (off < c.content.size()) {
    const ssize_t n = ::write(fd, c.content.data() + off, c.content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("write", c.staging.c_str());
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  // EACCES: a directory on the way is closed to the guest's root, which then cannot read the
  // file either.
  if (::mount(c.staging.c_str(), c.target.c_str(), nullptr, MS_BIND, nullptr) == 0) {
    (void)::mount(nullptr, c.target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV, nullptr);
  } else if (errno != EACCES) {
    fail("mount", c.target.c_str());
  }
  if (::unlink(c.staging.c_str()) != 0) fail("unlink", c.staging.c_str());
}

void set_up_filesystem(ChildPlan& plan) {
  do_mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
  if (::syscall(SYS_move_mount, plan.root_mount_fd, "", AT_FDCWD, plan.root.c_str(),
                MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    fail("attach the root on", plan.root.c_str());
  }
  ::close(plan.root_mount_fd);
  for (const ChildPlan::Bind& b : plan.volumes) {
    if (b.early) attach(b);
  }

  do_mount("proc", plan.proc_dir.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  // A fresh sysfs shows this network namespace only; skipped where the kernel refuses it.
  (void)::mount("sysfs", plan.sys_dir.c_str(), "sysfs",
                MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  do_mount("tmpfs", plan.dev_dir.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
  for (const ChildPlan::DevNode& d : plan.dev_nodes) {
    touch(d.target.c_str());
    do_mount(d.host.c_str(), d.target.c_str(), nullptr, MS_BIND, nullptr);
  }
  for (const ChildPlan::Link& l : plan.dev_links) {
    if (::symlink(l.target.c_str(), l.path.c_str()) != 0) fail("symlink", l.path.c_str());
  }
  mkdir_p(plan.pts_dir.c_str(), 0755);
  do_mount("devpts", plan.pts_dir.c_str(), "devpts", MS_NOSUID | MS_NOEXEC,
           "newinstance,ptmxmode=0666,mode=0620");
  mkdir_p(plan.shm_dir.c_str(), 01777);
  do_mount("shm", plan.shm_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  do_mount("tmp", plan.tmp_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  do_mount("home", plan.home_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700");
  // The host's /run holds its daemons' unix sockets (a path socket is reachable from any network
  // namespace): the guest gets an empty one.
  do_mount("run", plan.run_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");

  for (const ChildPlan::Bind& b : plan.volumes) {
    if (!b.early) attach(b);
  }
  for (const ChildPlan::Cover& c : plan.covers) cover(c);

  if (::chdir(plan.root.c_str()) != 0) fail("chdir", plan.root.c_str());
  if (::syscall(SYS_pivot_root, ".", ".") != 0) fail("pivot_root", plan.root.c_str());
  if (::umount2(".", MNT_DETACH) != 0) fail("umount", "old root");
  if (::chdir("/") != 0) fail("chdir", "/");
}

void drop_capabilities(const std::vector<int>& drop) {
  for (const int cap : drop) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) fail("drop capability", nullptr);
  }
  (void)::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

void install_seccomp(std::vector<sock_filter>& program) {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs", nullptr);
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program.size());
  prog.filter = program.data();
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) fail("seccomp", nullptr);
}

const int kForwardedSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

void init_signal_set(sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGCHLD);
  for (const int s : kForwardedSignals) sigaddset(set, s);
}

// -t: a pty from the guest's own devpts (so `tty` and ttyname work inside); the master is sent
// to the parent, which copies it to and from the host's terminal.
void open_guest_pty(ChildPlan& plan) {
  const int master = ::open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) fail("open", "/dev/pts/ptmx");
  int unlock = 0;
  if (::ioctl(master, TIOCSPTLCK, &unlock) != 0) fail("unlock pty", nullptr);
  plan.tty_slave = ::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (plan.tty_slave < 0) fail("open pty peer", nullptr);
  char byte = 't';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &master, sizeof(int));
  if (::sendmsg(plan.tty_socket, &msg, MSG_NOSIGNAL) != 1) fail("send pty", nullptr);
  ::close(master);
  ::close(plan.tty_socket);
}

[[noreturn]] void exec_command(ChildPlan& plan) {
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) ::signal(s, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();
  if (plan.tty_slave >= 0) {
    ::ioctl(plan.tty_slave, TIOCSCTTY, 0);
    ::dup2(plan.tty_slave, 0);
    ::dup2(plan.tty_slave, 1);
    ::dup2(plan.tty_slave, 2);
    if (plan.tty_slave > 2) ::close(plan.tty_slave);
  }
  if (plan.cwd.empty() || ::chdir(plan.cwd.c_str()) != 0) (void)!::chdir("/root");
  environ = plan.envp.data();  // execvp searches the guest's PATH, not the host's
  ::execvp(plan.argv[0], plan.argv.data());
  const int err = errno;
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "X%d", err);
  (void)!::write(g_status_fd, buf, static_cast<std::size_t>(n));
  _exit(err == ENOENT || err == ENOTDIR ? kExitNotFound : kExitCannotRun);
}

// PID 1 of the guest: reaps every orphan, passes signals to the command's process group, and
// exits with the command's status (128+N when a signal N ended it). When it exits, the kernel
// kills whatever else still runs in the PID namespace.
[[noreturn]] void run_init(pid_t command) {
  sigset_t set;
  init_signal_set(&set);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  for (;;) {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == command) {
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      }
    }
    if (pid < 0 && errno == ECHILD) _exit(kExitSetupFailed);
    siginfo_t info{};
    const int sig = ::sigwaitinfo(&set, &info);
    if (sig > 0 && sig != SIGCHLD) {
      if (::kill(-command, sig) != 0) (void)::kill(command, sig);
    }
  }
}

}  // namespace

void child_main(ChildPlan& plan) {
  g_status_fd = plan.status_fd;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // No host terminal in the guest, not even in its init (whose fds /proc/1/fd would show).
  for (int i = 0; i < 3; ++i) {
    if (plan.stdio[i] >= 0 && ::dup2(plan.stdio[i], i) != i) _exit(kExitSetupFailed);
  }
  close_other_fds(plan.keep_fds);
  char go = 0;
  ssize_t n;
  while ((n = ::read(plan.sync_fd, &go, 1)) < 0 && errno == EINTR) {
  }
  if (n != 1 || go != 'g') _exit(kExitSetupFailed);  // the parent gave up or died

  // Become the guest's root (host id base); the parent has written the id maps.
  // Raw system calls: glibc's wrappers would wait for the parent's other threads, which were
  // not copied into this process.
  if (::syscall(SYS_setresgid, 0, 0, 0) != 0) fail("setresgid", nullptr);
  if (::syscall(SYS_setresuid, 0, 0, 0) != 0) fail("setresuid", nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);  // a credential change cleared it
  ::umask(022);
  if (::unshare(CLONE_NEWCGROUP) != 0) fail("unshare", "cgroup namespace");
  if (::sethostname(plan.hostname.data(), plan.hostname.size()) != 0) fail("sethostname", nullptr);
  loopback_up();
  set_up_filesystem(plan);
  if (plan.tty_socket >= 0) open_guest_pty(plan);

  std::vector<int>& drop = plan.drop_caps;
  drop_capabilities(drop);
  install_seccomp(plan.seccomp);

  // The network is ready when the parent says so; only then may the command run.
  while ((n = ::read(plan.sync_fd, &go, 1)) < 0 && errno == EINTR) {
  }
  if (n != 1 || go != 'n') _exit(kExitSetupFailed);
  ::close(plan.sync_fd);

  sigset_t set;
  init_signal_set(&set);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGCHLD, SIG_DFL);
  // The raw system call, not fork(): glibc's fork takes the allocator's locks, which another
  // thread of the parent may have held at clone time (their copies here are never released).
  (void)!::write(g_status_fd, "R", 1);  // set up: the parent need not wait for the init's exec
  const pid_t command = static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, 0));
  if (command < 0) fail("fork", nullptr);
  if (command == 0) exec_command(plan);
  if (plan.tty_slave >= 0) ::close(plan.tty_slave);

  // Become a fresh init (init.c from a memfd, else this binary again): an exec leaves none of the
  // parent's memory (which held secret values) in a process inside the sandbox. Signals stay
  // blocked across exec.
  char pid_text[16];
  std::snprintf(pid_text, sizeof pid_text, "%d", static_cast<int>(command));
  char* init_argv[] = {const_cast<char*>(kInitArgv0), pid_text, nullptr};
  char* init_env[] = {nullptr};
  ::syscall(SYS_execveat, plan.exe_fd, "", init_argv, init_env, AT_EMPTY_PATH);
  // Re-executing this binary failed (--rootfs without its libraries): stay as we are.
  ::close(plan.exe_fd);
  ::close(plan.status_fd);
  run_init(command);
}

namespace {
// Entry point of the re-executed init. glibc passes argc/argv to constructors; this one takes
// over only as PID 1 with the init's argv0, and never returns then.
__attribute__((constructor)) void airlock_sandbox_init_entry(int argc, char** argv, char**) {
  if (argc == 2 && ::getpid() == 1 && std::strcmp(argv[0], kInitArgv0) == 0) {
    const long pid = std::strtol(argv[1], nullptr, 10);
    if (pid > 1) run_init(static_cast<pid_t>(pid));
    _exit(kExitSetupFailed);
  }
}
}  // namespace

}  // namespace airlock::sandbox::detail
