// The command agent of `airlock serve`: the sandbox's long-lived command, which runs the SDK's
// commands one after another in the same sandbox (same /tmp, workspace, processes) and reports
// their output and exit status. A static program embedded in airlock and executed from a memfd,
// so it needs nothing from the guest's root file system.
//
// Descriptors at start: 0 = this program (the memfd it was executed from), 1 = the control socket
// to airlock serve, 2 = airlock's stderr. The frames are described in machine/protocol.hpp.
// Everything in the sandbox is hostile, this agent included once the guest's code runs: airlock
// treats what it sends as untrusted, and it is made non-dumpable so that other guest processes
// cannot ptrace it to forge frames.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST (24u << 20)  // a run frame: argv, env and up to 8 MiB of stdin
#define CHUNK (64u << 10)        // kMaxAgentFrameBytes

extern char** environ;
static int ctl = -1;

static void die(const char* what) {
  dprintf(2, "airlock: command agent: %s: %s\n", what, strerror(errno));
  _exit(3);
}

static int read_full(int fd, void* buf, size_t n) {
  char* p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static void write_full(int fd, const void* buf, size_t n) {
  const char* p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(0);  // airlock is gone: so is the sandbox, soon
    p += w;
    n -= (size_t)w;
  }
}

static void send_frame(char type, const char* payload, size_t n) {
  unsigned char header[5] = {(unsigned char)type, (unsigned char)(n & 0xff), (unsigned char)((n >> 8) & 0xff),
                             (unsigned char)((n >> 16) & 0xff), (unsigned char)((n >> 24) & 0xff)};
  write_full(ctl, header, sizeof header);
  write_full(ctl, payload, n);
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

// The next NUL-terminated string in [*p, end), or NULL.
static char* next_string(char** p, char* end) {
  char* s = *p;
  char* nul = memchr(s, '\0', (size_t)(end - s));
  if (nul == NULL) return NULL;
  *p = nul + 1;
  return s;
}

// environ with `vars` (K=V) added or replacing the same names.
static char** merged_env(char** vars, size_t n) {
  size_t base = 0;
  while (environ[base]) ++base;
  char** out = calloc(base + n + 1, sizeof *out);
  if (!out) die("calloc");
  size_t count = 0;
  for (size_t i = 0; i < base; ++i) {
    const char* eq = strchr(environ[i], '=');
    size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int replaced = 0;
    for (size_t k = 0; k < n && !replaced; ++k) replaced = strncmp(vars[k], environ[i], len) == 0 && vars[k][len] == '=';
    if (!replaced) out[count++] = environ[i];
  }
  for (size_t k = 0; k < n; ++k) out[count++] = vars[k];
  out[count] = NULL;
  return out;
}

static void child(char** argv, char** envp, const char* cwd, int in, int out, int err) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  setpgid(0, 0);
  dup2(in, 0);
  dup2(out, 1);
  dup2(err, 2);
  if (*cwd && chdir(cwd) != 0) {
    dprintf(2, "airlock: cannot change to %s: %s\n", cwd, strerror(errno));
    _exit(126);
  }
  execvpe(argv[0], argv, envp);
  const int e = errno;
  dprintf(2, "airlock: %s: %s\n", argv[0], strerror(e));
  _exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
}

// Runs one request (its payload, see encode_run_frame) and reports its output and status.
static void run(char* payload, size_t size, int sigchld) {
  char* p = payload;
  char* end = payload + size;
  char* argc_s = next_string(&p, end);
  char* envc_s = next_string(&p, end);
  char* timeout_s = next_string(&p, end);
  char* cwd = next_string(&p, end);
  if (!argc_s || !envc_s || !timeout_s || !cwd) die("malformed run frame");
  size_t argc = strtoul(argc_s, NULL, 10), envc = strtoul(envc_s, NULL, 10);
  long timeout = strtol(timeout_s, NULL, 10);
  if (argc == 0 || argc > size || envc > size) die("malformed run frame");
  char** argv = calloc(argc + 1, sizeof *argv);
  char** vars = calloc(envc + 1, sizeof *vars);
  if (!argv || !vars) die("calloc");
  for (size_t i = 0; i < argc; ++i) {
    if (!(argv[i] = next_string(&p, end))) die("malformed run frame");
  }
  for (size_t i = 0; i < envc; ++i) {
    if (!(vars[i] = next_string(&p, end))) die("malformed run frame");
  }
  const char* stdin_data = p;
  size_t stdin_left = (size_t)(end - p);
  char** envp = merged_env(vars, envc);

  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) child(argv, envp, cwd, in[0], out[1], err[1]);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  if (stdin_left == 0) {
    close(in[1]);
    in[1] = -1;
  }
  const long deadline = timeout > 0 ? now_ms() + timeout : 0;
  int status = 0, exited = 0, timed_out = 0;
  static char buf[CHUNK];
  for (;;) {
    struct pollfd fds[5] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {in[1], POLLOUT, 0}, {sigchld, POLLIN, 0},
                            {exited ? -1 : ctl, POLLIN, 0}};
    int wait_ms = -1;
    if (deadline && !timed_out) {
      long left = deadline - now_ms();
      wait_ms = left > 0 ? (int)left : 0;
    }
    if (exited) wait_ms = 0;  // drain what is already there, then stop
    int n = poll(fds, 5, wait_ms);
    if (n < 0 && errno != EINTR) die("poll");
    int got_output = 0;
    for (int k = 0; k < 2; ++k) {
      if (fds[k].fd >= 0 && (fds[k].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = read(fds[k].fd, buf, sizeof buf);
        if (r > 0) {
          send_frame(k == 0 ? 'O' : 'E', buf, (size_t)r);
          got_output = 1;
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          close(fds[k].fd);
          if (k == 0) out[0] = -1; else err[0] = -1;
        }
      }
    }
    if (in[1] >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = write(in[1], stdin_data, stdin_left > CHUNK ? CHUNK : stdin_left);
      if (w > 0) {
        stdin_data += w;
        stdin_left -= (size_t)w;
      }
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || stdin_left == 0) {
        close(in[1]);
        in[1] = -1;
      }
    }
    if (fds[3].revents & POLLIN) {
      struct signalfd_siginfo info;
      while (read(sigchld, &info, sizeof info) > 0) {
      }
    }
    if (fds[4].revents & (POLLIN | POLLHUP)) {
      // While a command runs, airlock sends only 'K': kill it (its exit is reported as usual).
      unsigned char k[5];
      if (read_full(ctl, k, sizeof k) != 0) _exit(0);  // airlock is gone
      if (k[0] != 'K' || k[1] | k[2] | k[3] | k[4]) die("unexpected frame");
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) exited = 1;
    if (deadline && !timed_out && !exited && now_ms() >= deadline) {
      timed_out = 1;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
    }
    // Done once the command ended and its pipes are drained (or hold nothing right now: a
    // background process that keeps them open does not hold the answer back).
    if (exited && ((out[0] < 0 && err[0] < 0) || (n == 0 || !got_output))) break;
  }
  if (out[0] >= 0) close(out[0]);
  if (err[0] >= 0) close(err[0]);
  if (in[1] >= 0) close(in[1]);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  char x[16];
  int len = snprintf(x, sizeof x, "%d%c%c%c", code, '\0', timed_out ? '1' : '0', '\0');
  send_frame('X', x, (size_t)len);
  free(envp);
  free(argv);
  free(vars);
}

int main(void) {
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  ctl = fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (ctl < 0) die("control socket");
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) die("/dev/null");
  dup2(null, 0);  // closes this program's memfd
  dup2(null, 1);
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sigchld = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigchld < 0) die("signalfd");
  send_frame('H', "", 0);
  for (;;) {
    unsigned char header[5];
    if (read_full(ctl, header, sizeof header) != 0) return 0;  // airlock closed the channel
    uint32_t n = header[1] | (header[2] << 8) | (header[3] << 16) | ((uint32_t)header[4] << 24);
    if (header[0] == 'K' && n == 0) continue;  // a kill for a command that had already ended
    if (header[0] != 'R' || n > MAX_REQUEST) die("unexpected frame");
    char* payload = malloc(n + 1);
    if (!payload) die("malloc");
    if (read_full(ctl, payload, n) != 0) return 0;
    run(payload, n, sigchld);
    free(payload);
  }
}
