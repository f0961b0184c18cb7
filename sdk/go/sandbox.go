// Package airlock starts airlock sandboxes from Go: untrusted code runs in a Linux sandbox whose
// environment holds only placeholders for credentials; a host-side gateway swaps a placeholder
// for the real value only on the way to a host the secret allows.
//
// The package drives the airlock binary through its machine interface (`airlock serve`,
// docs/machine-interface.md): the spec, with the secrets' values, goes over a socket the child
// inherits, never on a command line, in an environment or in a file. Standard library only.
package airlock

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NetworkConfig is the sandbox's network policy.
type NetworkConfig struct {
	// OnSecretViolation is the sandbox-wide violation action (SecretEntry.OnViolation overrides
	// it; the last non-empty one wins network-wide).
	OnSecretViolation ViolationAction
	// Egress rules, first match wins, before the defaults (allow public TCP, deny the rest),
	// e.g. "allow@api.example.com:tcp:443", "deny@private", "allow@203.0.113.7:tcp:443".
	Egress []string
	// DNSServers the sandbox's DNS forwarder asks ("IP" or "IP:PORT"); empty: the host's.
	DNSServers []string
	// UpstreamCAFiles are extra PEM files trusted for upstream TLS (besides the system roots).
	UpstreamCAFiles []string
	// TLSBypass host patterns are spliced without interception (no substitution, no detection).
	TLSBypass []string
	// InterceptPorts replaces the default [443].
	InterceptPorts []int
}

// Mount is a host path bound into the sandbox.
type Mount struct {
	Host, Guest string
	ReadOnly    bool
}

// WorkspaceMode says how the sandbox sees its workspace.
type WorkspaceMode string

const (
	WorkspaceReadWrite WorkspaceMode = "read-write" // the default
	WorkspaceOverlay   WorkspaceMode = "overlay"    // writes go to a layer discarded with the sandbox
	WorkspaceNone      WorkspaceMode = "none"       // no workspace
)

type sandboxConfig struct {
	workspace  *specWorkspace
	image      string
	imageSet   bool
	secrets    []SecretEntry
	network    NetworkConfig
	env        [][2]string
	mounts     []Mount
	workdir    string
	timeout    time.Duration
	memory     uint64
	cpus       float64
	pids       uint64
	binary     string
	logOutput  io.Writer
	home       string
	auditLog   string
	logLevel   string
	optionErrs []error
}

// SandboxOption configures CreateSandbox.
type SandboxOption func(*sandboxConfig)

// WithImage sets the sandbox's root file system. airlock pulls no images: the image must be a
// local directory (a path starting with "/", "./" or "../") holding either a root file system
// (e.g. from `docker export`) or an OCI image layout (e.g. `skopeo copy docker://python:3.12
// oci:DIR`), which is unpacked once into airlock's image cache. Anything else (a registry
// reference such as "python:3.12") makes CreateSandbox return an error. Without WithImage the
// sandbox sees the host's system read-only.
func WithImage(image string) SandboxOption {
	return func(c *sandboxConfig) { c.image, c.imageSet = image, true }
}

// WithSecrets appends credential secrets to the sandbox; multiple calls accumulate. Secrets
// never enter the sandbox; the gateway substitutes them at the transport layer.
func WithSecrets(secrets ...SecretEntry) SandboxOption {
	return func(c *sandboxConfig) { c.secrets = append(c.secrets, secrets...) }
}

// WithNetwork sets the network policy.
func WithNetwork(n NetworkConfig) SandboxOption {
	return func(c *sandboxConfig) { c.network = n }
}

// WithEnv sets a variable in the sandbox's environment (appends; later calls win).
func WithEnv(key, value string) SandboxOption {
	return func(c *sandboxConfig) { c.env = append(c.env, [2]string{key, value}) }
}

// WithMount binds a host path into the sandbox.
func WithMount(m Mount) SandboxOption {
	return func(c *sandboxConfig) { c.mounts = append(c.mounts, m) }
}

// WithWorkspace sets the workspace: a host directory the sandbox sees at the same path ("":
// the current directory, the default), and how (WorkspaceReadWrite, WorkspaceOverlay, or
// WorkspaceNone with dir "").
func WithWorkspace(dir string, mode WorkspaceMode) SandboxOption {
	return func(c *sandboxConfig) { c.workspace = &specWorkspace{Dir: dir, Mode: string(mode)} }
}

// WithWorkdir sets the directory commands start in (default: the current directory, which the
// sandbox sees read-write, when it exists there).
func WithWorkdir(dir string) SandboxOption { return func(c *sandboxConfig) { c.workdir = dir } }

// WithTimeout bounds the sandbox's whole life; then it is killed.
func WithTimeout(d time.Duration) SandboxOption { return func(c *sandboxConfig) { c.timeout = d } }

// WithLimits sets cgroup limits (zero: no limit).
func WithLimits(memoryBytes uint64, cpus float64, pids uint64) SandboxOption {
	return func(c *sandboxConfig) { c.memory, c.cpus, c.pids = memoryBytes, cpus, pids }
}

// WithAirlockBinary sets the airlock executable (default: $AIRLOCK_BIN, else "airlock" on PATH).
func WithAirlockBinary(path string) SandboxOption { return func(c *sandboxConfig) { c.binary = path } }

// WithLogOutput receives airlock's own log lines (warnings, violations; never a value).
// Default: os.Stderr.
func WithLogOutput(w io.Writer) SandboxOption { return func(c *sandboxConfig) { c.logOutput = w } }

// WithAirlockHome sets airlock's state directory (its CA); default $AIRLOCK_HOME or ~/.airlock.
func WithAirlockHome(dir string) SandboxOption { return func(c *sandboxConfig) { c.home = dir } }

// WithAuditLog makes the gateway append its audit records (JSON lines, never a value) to path.
func WithAuditLog(path string) SandboxOption { return func(c *sandboxConfig) { c.auditLog = path } }

// Result is what a command in the sandbox did.
type Result struct {
	Stdout, Stderr []byte
	ExitCode       int
	// TimedOut: the command's timeout (Command.Timeout or the context's deadline) killed it.
	TimedOut bool
	// Truncated: more output than airlock keeps (8 MiB per stream) was dropped.
	Truncated bool
}

// Command is a command to run with options beyond its arguments.
type Command struct {
	Args    []string // Args[0] is looked up in the sandbox's PATH
	Env     map[string]string
	Dir     string
	Stdin   []byte
	Timeout time.Duration
}

// Violation is a gateway audit record of a secret sent to a host it may not reach (fields such
// as "secret", "host", "sni", "action"; never a value).
type Violation map[string]any

// Sandbox is a started sandbox. Commands run in it one after another and share its state (its
// /tmp, workspace and background processes). Stop it when done.
type Sandbox struct {
	name         string
	id           string
	placeholders map[string]string
	cmd          *exec.Cmd
	conn         *os.File

	writeMu sync.Mutex
	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan event
	viol    []Violation
	done    chan struct{}
	code    int
	reason  string
	exited  chan struct{}
}

type event struct {
	Type            string            `json:"type"`
	ID              *uint64           `json:"id"`
	Sandbox         string            `json:"sandbox"`
	Placeholders    map[string]string `json:"placeholders"`
	Message         string            `json:"message"`
	Record          Violation         `json:"record"`
	Code            int               `json:"code"`
	TimedOut        bool              `json:"timed_out"`
	Stdout          []byte            `json:"stdout"` // base64 in JSON, as encoding/json does
	Stderr          []byte            `json:"stderr"`
	StdoutTruncated bool              `json:"stdout_truncated"`
	StderrTruncated bool              `json:"stderr_truncated"`
	Reason          string            `json:"reason"`
}

type specSecret struct {
	Env               string   `json:"env"`
	Value             string   `json:"value"`
	AllowHosts        []string `json:"allow_hosts"`
	AllowHostPatterns []string `json:"allow_host_patterns"`
	Placeholder       string   `json:"placeholder,omitempty"`
	RequireTLS        *bool    `json:"require_tls,omitempty"`
	OnViolation       string   `json:"on_violation,omitempty"`
}

type specMount struct {
	Host     string `json:"host"`
	Guest    string `json:"guest"`
	ReadOnly bool   `json:"read_only"`
}

type specUpstreamCA struct {
	File string `json:"file"`
}

type specNetwork struct {
	OnSecretViolation string           `json:"on_secret_violation,omitempty"`
	Egress            []string         `json:"egress,omitempty"`
	DNSServers        []string         `json:"dns_servers,omitempty"`
	UpstreamCAs       []specUpstreamCA `json:"upstream_cas,omitempty"`
	TLSBypass         []string         `json:"tls_bypass,omitempty"`
	InterceptPorts    []int            `json:"intercept_ports,omitempty"`
}

type specLimits struct {
	TimeoutMS   uint64  `json:"timeout_ms,omitempty"`
	MemoryBytes uint64  `json:"memory_bytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
	PIDs        uint64  `json:"pids,omitempty"`
}

type specWorkspace struct {
	Dir  string `json:"dir,omitempty"`
	Mode string `json:"mode,omitempty"`
}

type specGateway struct {
	Home     string `json:"home,omitempty"`
	AuditLog string `json:"audit_log,omitempty"`
	LogLevel string `json:"log_level,omitempty"`
}

type spec struct {
	Version   int               `json:"version"`
	Name      string            `json:"name,omitempty"`
	Secrets   []specSecret      `json:"secrets"`
	Network   specNetwork       `json:"network"`
	Mounts    []specMount       `json:"mounts,omitempty"`
	RootFS    string            `json:"rootfs,omitempty"`
	Workspace *specWorkspace    `json:"workspace,omitempty"`
	Workdir   string            `json:"workdir,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Limits    specLimits        `json:"limits"`
	Gateway   specGateway       `json:"gateway"`
}

// imageCache is where OCI layouts are unpacked: <airlock home>/images.
func imageCache(home string) string {
	if home == "" {
		home = os.Getenv("AIRLOCK_HOME")
	}
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = filepath.Join(h, ".airlock")
		}
	}
	return filepath.Join(home, "images")
}

// rootFS maps WithImage to a root file system directory (a directory as it is, an OCI image
// layout unpacked into the image cache), or explains why it cannot.
func rootFS(image, home string) (string, error) {
	if image == "" {
		return "", errors.New("airlock: WithImage: the image is empty")
	}
	looksLikePath := strings.HasPrefix(image, "/") || strings.HasPrefix(image, "./") || strings.HasPrefix(image, "../")
	if looksLikePath {
		abs, err := filepath.Abs(image)
		if err != nil {
			return "", fmt.Errorf("airlock: WithImage(%q): %v", image, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return "", fmt.Errorf("airlock: WithImage(%q): %v", image, err)
		}
		if st.IsDir() && isOCILayout(abs) {
			root, err := ociRootFS(abs, imageCache(home))
			if err != nil {
				return "", fmt.Errorf("airlock: WithImage(%q): OCI image layout: %v", image, err)
			}
			return root, nil
		}
		if st.IsDir() {
			return abs, nil
		}
		return "", fmt.Errorf("airlock: WithImage(%q): not a directory; airlock needs an unpacked root file system", image)
	}
	return "", fmt.Errorf("airlock: WithImage(%q): airlock does not pull images; give a local directory holding a root file system or an OCI image layout (e.g. `skopeo copy docker://%s oci:DIR`), or leave WithImage out to use the host's system read-only", image, image)
}

func buildSpec(name string, c *sandboxConfig) (*spec, error) {
	if err := validateSecrets(c.secrets); err != nil {
		return nil, err
	}
	if !c.network.OnSecretViolation.valid() {
		return nil, fmt.Errorf("airlock: NetworkConfig.OnSecretViolation %q is not one of \"\", \"block\", \"block-and-log\", \"block-and-terminate\"", string(c.network.OnSecretViolation))
	}
	s := &spec{Version: 1, Name: name, Secrets: []specSecret{}}
	for _, e := range c.secrets {
		s.Secrets = append(s.Secrets, specSecret{
			Env: e.EnvVar, Value: e.Value, AllowHosts: nonNil(e.AllowHosts), AllowHostPatterns: nonNil(e.AllowHostPatterns),
			Placeholder: e.Placeholder, RequireTLS: e.RequireTLS, OnViolation: string(e.OnViolation),
		})
	}
	n := c.network
	s.Network = specNetwork{OnSecretViolation: string(n.OnSecretViolation), Egress: n.Egress, DNSServers: n.DNSServers,
		TLSBypass: n.TLSBypass, InterceptPorts: n.InterceptPorts}
	for _, f := range n.UpstreamCAFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		s.Network.UpstreamCAs = append(s.Network.UpstreamCAs, specUpstreamCA{File: abs})
	}
	if c.imageSet {
		root, err := rootFS(c.image, c.home)
		if err != nil {
			return nil, err
		}
		s.RootFS = root
	}
	for _, m := range c.mounts {
		s.Mounts = append(s.Mounts, specMount{Host: m.Host, Guest: m.Guest, ReadOnly: m.ReadOnly})
	}
	if c.workspace != nil {
		w := *c.workspace
		if w.Dir != "" {
			abs, err := filepath.Abs(w.Dir)
			if err != nil {
				return nil, err
			}
			w.Dir = abs
		}
		s.Workspace = &w
	}
	s.Workdir = c.workdir
	if len(c.env) > 0 {
		s.Env = map[string]string{}
		for _, kv := range c.env {
			s.Env[kv[0]] = kv[1]
		}
	}
	if c.timeout > 0 {
		s.Limits.TimeoutMS = uint64(c.timeout / time.Millisecond)
		if s.Limits.TimeoutMS == 0 {
			s.Limits.TimeoutMS = 1
		}
	}
	s.Limits.MemoryBytes, s.Limits.CPUs, s.Limits.PIDs = c.memory, c.cpus, c.pids
	s.Gateway = specGateway{Home: c.home, AuditLog: c.auditLog, LogLevel: c.logLevel}
	return s, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// childEnv is the environment airlock is started with: only the variables it uses (PATH, HOME,
// TMPDIR, the locale, TERM and AIRLOCK_*), and none that holds a secret's value. The user's
// environment often holds credentials (the seeds read them with os.Getenv); anything airlock
// inherited would show in /proc/PID/environ to whoever may read that process.
func childEnv(secrets []SecretEntry) []string {
	var out []string
	for _, kv := range os.Environ() {
		name := kv
		if i := strings.IndexByte(kv, '='); i >= 0 {
			name = kv[:i]
		}
		switch {
		case name == "PATH", name == "HOME", name == "TMPDIR", name == "LANG", name == "TERM",
			strings.HasPrefix(name, "LC_"), strings.HasPrefix(name, "AIRLOCK_"):
		default:
			continue
		}
		keep := true
		for _, s := range secrets {
			if s.Value != "" && strings.Contains(kv, s.Value) {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

func airlockBinary(c *sandboxConfig) string {
	if c.binary != "" {
		return c.binary
	}
	if b := os.Getenv("AIRLOCK_BIN"); b != "" {
		return b
	}
	return "airlock"
}

// CreateSandbox starts a sandbox named name (informational) and returns once its command
// agent is ready. The secrets' values go to airlock over an inherited socket.
func CreateSandbox(ctx context.Context, name string, opts ...SandboxOption) (*Sandbox, error) {
	c := &sandboxConfig{logOutput: os.Stderr}
	for _, o := range opts {
		o(c)
	}
	sp, err := buildSpec(name, c)
	if err != nil {
		return nil, err
	}
	text, err := json.Marshal(sp)
	if err != nil {
		return nil, fmt.Errorf("airlock: encoding the spec: %v", err)
	}
	defer wipe(text)

	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("airlock: socketpair: %v", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "airlock-control")
	child := os.NewFile(uintptr(fds[1]), "airlock-control-child")
	cmd := exec.Command(airlockBinary(c), "serve", "--control-fd", "3")
	cmd.ExtraFiles = []*os.File{child} // fd 3 in the child
	cmd.Env = childEnv(c.secrets)
	cmd.Stderr = c.logOutput
	if err := cmd.Start(); err != nil {
		parent.Close()
		child.Close()
		return nil, fmt.Errorf("airlock: starting %s: %v", cmd.Path, err)
	}
	child.Close()
	sb := &Sandbox{name: name, cmd: cmd, conn: parent, pending: map[uint64]chan event{},
		done: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(sb.exited)
	}()

	started := make(chan event, 1)
	go sb.readEvents(started)
	line := append(text, '\n')
	_, werr := parent.Write(line)
	wipe(line)
	if werr != nil {
		sb.kill()
		return nil, fmt.Errorf("airlock: sending the spec: %v", werr)
	}
	select {
	case e := <-started:
		if e.Type != "started" {
			sb.kill()
			msg := e.Message
			if msg == "" {
				msg = e.Reason
			}
			return nil, fmt.Errorf("airlock: %s", msg)
		}
		sb.id, sb.placeholders = e.Sandbox, e.Placeholders
		return sb, nil
	case <-ctx.Done():
		sb.kill()
		return nil, ctx.Err()
	}
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

// readEvents dispatches airlock's events until the channel closes. The first of started, error
// or stopped goes to `started`.
func (sb *Sandbox) readEvents(started chan event) {
	r := bufio.NewReaderSize(sb.conn, 1<<20)
	first := true
	var firstErr string
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var e event
			if json.Unmarshal(line, &e) == nil {
				switch {
				case first && e.Type == "started":
					first = false
					started <- e
				case first && e.Type == "error" && e.ID == nil:
					firstErr = e.Message
				case first && e.Type == "stopped":
					first = false
					if firstErr != "" {
						e.Message = firstErr
					}
					started <- e
				default:
					sb.dispatch(e)
				}
			}
		}
		if err != nil {
			break
		}
	}
	if first {
		started <- event{Type: "stopped", Message: "airlock serve ended before the sandbox started (see its log output)"}
	}
	sb.finish(-1, "airlock serve ended")
}

func (sb *Sandbox) dispatch(e event) {
	switch e.Type {
	case "exited", "error":
		if e.ID == nil {
			return // a message about no request (logged by airlock too)
		}
		sb.mu.Lock()
		ch := sb.pending[*e.ID]
		delete(sb.pending, *e.ID)
		sb.mu.Unlock()
		if ch != nil {
			ch <- e
		}
	case "violation":
		sb.mu.Lock()
		if len(sb.viol) < MaxViolationsKept { // a guest can loop on violations: bounded
			sb.viol = append(sb.viol, e.Record)
		}
		sb.mu.Unlock()
	case "stopped":
		sb.finish(e.Code, e.Reason)
	}
}

func (sb *Sandbox) finish(code int, reason string) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	select {
	case <-sb.done:
		return
	default:
	}
	sb.code, sb.reason = code, reason
	for id, ch := range sb.pending {
		ch <- event{Type: "error", Message: "the sandbox stopped: " + reason}
		delete(sb.pending, id)
	}
	close(sb.done)
}

// kill ends airlock: closing the channel makes it stop the sandbox and clean up; SIGKILL only
// if it does not exit in time (what it leaves then, `airlock gc` removes).
func (sb *Sandbox) kill() {
	sb.conn.Close()
	select {
	case <-sb.exited:
	case <-time.After(10 * time.Second):
		_ = sb.cmd.Process.Kill()
		<-sb.exited
	}
}

// Name is the name given to CreateSandbox.
func (sb *Sandbox) Name() string { return sb.name }

// ID is airlock's id of the sandbox.
func (sb *Sandbox) ID() string { return sb.id }

// Placeholder is what the sandbox sees in envVar in place of the secret's value.
func (sb *Sandbox) Placeholder(envVar string) string { return sb.placeholders[envVar] }

// MaxViolationsKept is how many violation records a Sandbox keeps (the first ones; the audit log,
// WithAuditLog, has every one).
const MaxViolationsKept = 1000

// Violations are the violations recorded so far (at most MaxViolationsKept).
func (sb *Sandbox) Violations() []Violation {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return append([]Violation(nil), sb.viol...)
}

// Done is closed when the sandbox has stopped (Stop, its timeout, or block-and-terminate).
func (sb *Sandbox) Done() <-chan struct{} { return sb.done }

// StopReason says why the sandbox stopped ("" after Stop); valid once Done is closed.
func (sb *Sandbox) StopReason() string {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.reason
}

// Run runs a command (looked up in the sandbox's PATH) and waits for it.
func (sb *Sandbox) Run(ctx context.Context, name string, args ...string) (*Result, error) {
	return sb.Exec(ctx, Command{Args: append([]string{name}, args...)})
}

// Shell runs script with /bin/sh -c.
func (sb *Sandbox) Shell(ctx context.Context, script string) (*Result, error) {
	return sb.Exec(ctx, Command{Args: []string{"/bin/sh", "-c", script}})
}

type runRequest struct {
	Type      string            `json:"type"`
	ID        uint64            `json:"id"`
	Argv      []string          `json:"argv"`
	Env       map[string]string `json:"env,omitempty"`
	Workdir   string            `json:"workdir,omitempty"`
	Stdin     []byte            `json:"stdin,omitempty"`
	TimeoutMS uint64            `json:"timeout_ms,omitempty"`
}

// Exec runs a command and waits for it. A non-zero exit status is a Result, not an error; an
// error means the command did not run to its end (refused, cancelled, or the sandbox stopped).
// The context's deadline, if sooner than cmd.Timeout, becomes the command's timeout; cancelling
// the context kills the command.
func (sb *Sandbox) Exec(ctx context.Context, cmd Command) (*Result, error) {
	if len(cmd.Args) == 0 || cmd.Args[0] == "" {
		return nil, errors.New("airlock: Exec: no command")
	}
	timeout := cmd.Timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); timeout == 0 || left < timeout {
			timeout = left
		}
		if timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	ch := make(chan event, 1)
	sb.mu.Lock()
	select {
	case <-sb.done:
		sb.mu.Unlock()
		return nil, fmt.Errorf("airlock: the sandbox has stopped: %s", sb.reason)
	default:
	}
	sb.nextID++
	id := sb.nextID
	sb.pending[id] = ch
	sb.mu.Unlock()
	req := runRequest{Type: "run", ID: id, Argv: cmd.Args, Env: cmd.Env, Workdir: cmd.Dir, Stdin: cmd.Stdin}
	if timeout > 0 {
		req.TimeoutMS = uint64(timeout / time.Millisecond)
		if req.TimeoutMS == 0 {
			req.TimeoutMS = 1
		}
	}
	if err := sb.send(req); err != nil {
		sb.mu.Lock()
		delete(sb.pending, id)
		sb.mu.Unlock()
		return nil, err
	}
	select {
	case e := <-ch:
		if e.Type == "error" {
			return nil, fmt.Errorf("airlock: %s", e.Message)
		}
		return &Result{Stdout: e.Stdout, Stderr: e.Stderr, ExitCode: e.Code, TimedOut: e.TimedOut,
			Truncated: e.StdoutTruncated || e.StderrTruncated}, nil
	case <-ctx.Done():
		// Kill the command (or drop it from the queue) so that later commands do not wait
		// behind it; its answer is then discarded.
		_ = sb.send(map[string]any{"type": "cancel", "id": id})
		return nil, ctx.Err()
	}
}

func (sb *Sandbox) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sb.writeMu.Lock()
	defer sb.writeMu.Unlock()
	if _, err := sb.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("airlock: the sandbox is gone: %v", err)
	}
	return nil
}

// Stop stops the sandbox (killing whatever still runs in it) and waits for airlock to exit.
// Safe to call more than once.
func (sb *Sandbox) Stop() error {
	_ = sb.send(map[string]string{"type": "stop"})
	select {
	case <-sb.exited:
	case <-time.After(15 * time.Second):
		_ = sb.cmd.Process.Kill()
		<-sb.exited
	}
	sb.conn.Close()
	return nil
}

// String names the sandbox in logs.
func (sb *Sandbox) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "airlock sandbox %q (%s)", sb.name, sb.id)
	return b.String()
}
