package airlock_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	m "github.com/airlock/airlock/sdk/go"
)

// needAirlock skips a test that starts real sandboxes when there is no airlock to start them
// with (plain `go test`); scripts/test and ctest run them with AIRLOCK_BIN set, as root.
func needAirlock(t *testing.T) {
	t.Helper()
	if os.Getenv("AIRLOCK_BIN") == "" || os.Geteuid() != 0 {
		t.Skip("needs AIRLOCK_BIN and root (run through ctest: e2e.test_sdk_go)")
	}
}

func create(t *testing.T, opts ...m.SandboxOption) (*m.Sandbox, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sb, err := m.CreateSandbox(ctx, "test", append([]m.SandboxOption{m.WithLogOutput(&log)}, opts...)...)
	if err != nil {
		t.Fatalf("CreateSandbox: %v\nairlock's log:\n%s", err, log.String())
	}
	t.Cleanup(func() { sb.Stop() })
	return sb, &log
}

func run(t *testing.T, sb *m.Sandbox, script string) *m.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := sb.Shell(ctx, script)
	if err != nil {
		t.Fatalf("Shell(%q): %v", script, err)
	}
	return r
}

func TestRunsShareTheSandbox(t *testing.T) {
	needAirlock(t)
	sb, _ := create(t, m.WithEnv("GREETING", "hello"))
	if r := run(t, sb, `echo "$GREETING" > /tmp/state; sleep 300 >/dev/null 2>&1 & echo $! > /tmp/bg`); r.ExitCode != 0 {
		t.Fatalf("exit %d: %s", r.ExitCode, r.Stderr)
	}
	// The second command sees the first one's /tmp and its background process.
	r := run(t, sb, `cat /tmp/state; kill -0 "$(cat /tmp/bg)" && echo alive`)
	if string(r.Stdout) != "hello\nalive\n" {
		t.Fatalf("stdout %q stderr %q", r.Stdout, r.Stderr)
	}
}

func TestExitCodesOutputStdinDirAndEnv(t *testing.T) {
	needAirlock(t)
	sb, _ := create(t)
	ctx := context.Background()
	r, err := sb.Exec(ctx, m.Command{Args: []string{"sh", "-c", `cat; echo "$X" >&2; pwd; exit 7`},
		Stdin: []byte("from stdin\n"), Env: map[string]string{"X": "per-command"}, Dir: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitCode != 7 || string(r.Stdout) != "from stdin\n/tmp\n" || string(r.Stderr) != "per-command\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if r, err = sb.Run(ctx, "no-such-command-here"); err != nil || r.ExitCode != 127 {
		t.Fatalf("a missing command: %v %+v", err, r)
	}
	r, err = sb.Exec(ctx, m.Command{Args: []string{"sleep", "30"}, Timeout: 200 * time.Millisecond})
	if err != nil || !r.TimedOut {
		t.Fatalf("a timed-out command: %v %+v", err, r)
	}
	// The sandbox is still there after a timed-out command.
	if r := run(t, sb, "echo still"); string(r.Stdout) != "still\n" {
		t.Fatalf("%q", r.Stdout)
	}
}

func TestCancellingTheContextKillsTheCommand(t *testing.T) {
	needAirlock(t)
	sb, _ := create(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(300 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	if _, err := sb.Run(ctx, "sleep", "60"); err != context.Canceled {
		t.Fatalf("got %v", err)
	}
	// The next command runs at once: the cancelled one was killed, not left to block the queue.
	r := run(t, sb, "pgrep -x sleep || echo no-sleep")
	if string(r.Stdout) != "no-sleep\n" || time.Since(start) > 20*time.Second {
		t.Fatalf("stdout %q after %v", r.Stdout, time.Since(start))
	}
}

func TestWithWorkspace(t *testing.T) {
	needAirlock(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.WriteFile(filepath.Join(dir, "README"), []byte("project\n"), 0o644)
	sb, _ := create(t, m.WithWorkspace(dir, m.WorkspaceOverlay))
	if r := run(t, sb, "pwd; echo changed > README; cat README"); string(r.Stdout) != dir+"\nchanged\n" {
		t.Fatalf("%q %q", r.Stdout, r.Stderr)
	}
	sb.Stop()
	if data, _ := os.ReadFile(filepath.Join(dir, "README")); string(data) != "project\n" {
		t.Fatalf("the overlay wrote through: %q", data)
	}
	none, _ := create(t, m.WithWorkspace("", m.WorkspaceNone), m.WithWorkdir("/"))
	if r := run(t, none, "test -e "+dir+"/README || echo absent"); string(r.Stdout) != "absent\n" {
		t.Fatalf("%q", r.Stdout)
	}
}

func TestStopEndsTheSandbox(t *testing.T) {
	needAirlock(t)
	sb, _ := create(t)
	if err := sb.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sb.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after Stop")
	}
	if _, err := sb.Run(context.Background(), "true"); err == nil {
		t.Fatal("Run after Stop succeeded")
	}
}

func TestAirlocksOwnValidationReachesTheCaller(t *testing.T) {
	needAirlock(t)
	for pattern, rule := range map[string]string{"*.com": "single label", "api.*.com": "*", "*": "allow_any_host_dangerous"} {
		_, err := m.CreateSandbox(context.Background(), "w", m.WithLogOutput(&bytes.Buffer{}),
			m.WithSecrets(m.Secret.Env("K", "sk-fake-validation", m.SecretEnvOptions{AllowHostPatterns: []string{pattern}})))
		if err == nil || !strings.Contains(err.Error(), rule) || strings.Contains(err.Error(), "sk-fake-validation") {
			t.Errorf("pattern %q: got %v, want an error with %q", pattern, err, rule)
		}
	}
}

func TestARunCarryingTheValueIsRefused(t *testing.T) {
	needAirlock(t)
	const value = "sk-fake-go-run-refused-0123"
	sb, log := create(t, m.WithSecrets(m.Secret.Env("API_KEY", value, m.SecretEnvOptions{AllowHosts: []string{"api.example.com"}})))
	_, err := sb.Run(context.Background(), "echo", "Bearer "+value)
	if err == nil || !strings.Contains(err.Error(), `secret "API_KEY"`) || strings.Contains(err.Error(), value) {
		t.Fatalf("got %v", err)
	}
	if _, err := sb.Exec(context.Background(), m.Command{Args: []string{"cat"}, Stdin: []byte(value)}); err == nil {
		t.Fatal("the value on stdin was accepted")
	}
	r := run(t, sb, `echo "$API_KEY"`)
	if string(r.Stdout) != "$MSB_API_KEY\n" || sb.Placeholder("API_KEY") != "$MSB_API_KEY" {
		t.Fatalf("the sandbox sees %q", r.Stdout)
	}
	if strings.Contains(log.String(), value) {
		t.Fatal("airlock's log holds the value")
	}
}

// A local directory as the image: the sandbox's root is that directory.
func TestWithImageALocalRootFileSystem(t *testing.T) {
	needAirlock(t)
	root := t.TempDir()
	os.Chmod(root, 0o755)
	// /bin/sh and the libraries it links: enough of a root file system for a shell.
	files := []string{"/bin/sh"}
	out, err := exec.Command("ldd", "/bin/sh").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	for _, f := range files {
		real, _ := filepath.EvalSymlinks(f)
		data, err := os.ReadFile(real)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755)
		if err := os.WriteFile(filepath.Join(root, f), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "marker"), []byte("from the image\n"), 0o644)
	sb, _ := create(t, m.WithImage(root), m.WithWorkdir("/"))
	ctx := context.Background()
	r, err := sb.Exec(ctx, m.Command{Args: []string{"/bin/sh", "-c", "read line < /marker; echo \"$line\"; test -e /usr/bin/curl || echo no-host-curl"}})
	if err != nil || string(r.Stdout) != "from the image\nno-host-curl\n" {
		t.Fatalf("%v: stdout %q stderr %q", err, r.Stdout, r.Stderr)
	}
}
