package airlock_test

import (
	"context"
	"os"
	"strings"
	"testing"

	m "github.com/airlock/airlock/sdk/go"
)

func TestViolationActionStrings(t *testing.T) {
	for action, want := range map[m.ViolationAction]string{
		m.ViolationActionDefault:           "",
		m.ViolationActionBlock:             "block",
		m.ViolationActionBlockAndLog:       "block-and-log",
		m.ViolationActionBlockAndTerminate: "block-and-terminate",
	} {
		if string(action) != want {
			t.Errorf("%q, want %q", string(action), want)
		}
	}
}

func TestSecretEnvCopiesEveryOption(t *testing.T) {
	tls := false
	opts := m.SecretEnvOptions{AllowHosts: []string{"api.stripe.com"}, AllowHostPatterns: []string{"*.stripe.com"},
		Placeholder: "$MSB_STRIPE", RequireTLS: &tls, OnViolation: m.ViolationActionBlock}
	s := m.Secret.Env("STRIPE_KEY", "sk-fake", opts)
	if s.EnvVar != "STRIPE_KEY" || s.Value != "sk-fake" || s.AllowHosts[0] != "api.stripe.com" ||
		s.AllowHostPatterns[0] != "*.stripe.com" || s.Placeholder != "$MSB_STRIPE" || *s.RequireTLS ||
		s.OnViolation != m.ViolationActionBlock {
		t.Fatalf("Secret.Env lost an option: %+v", s.AllowHosts)
	}
	opts.AllowHosts[0] = "changed.example.com" // the entry owns its slices
	if s.AllowHosts[0] != "api.stripe.com" {
		t.Fatal("SecretEntry shares the options' slice")
	}
	if got := m.Secret.Env("OPENAI_API_KEY", "v", m.SecretEnvOptions{}).EffectivePlaceholder(); got != "$MSB_OPENAI_API_KEY" {
		t.Fatalf("default placeholder %q", got)
	}
}

func TestTheSeedsValidationRules(t *testing.T) {
	host := []string{"api.example.com"}
	cases := []struct {
		entry m.SecretEntry
		rule  string
	}{
		{m.SecretEntry{Value: "v", AllowHosts: host}, "EnvVar must be non-empty"},
		{m.SecretEntry{EnvVar: "A=B", Value: "v", AllowHosts: host}, "cannot contain '=' or NUL"},
		{m.SecretEntry{EnvVar: "A\x00B", Value: "v", AllowHosts: host}, "cannot contain '=' or NUL"},
		{m.SecretEntry{EnvVar: "A", Value: "v"}, "at least one exact or wildcard host"},
		{m.SecretEntry{EnvVar: "A", Value: "v", AllowHosts: host, Placeholder: strings.Repeat("x", 1025)}, "longer than 1024"},
		{m.SecretEntry{EnvVar: "A", Value: "v", AllowHosts: host, Placeholder: "a\nb"}, "NUL, CR or LF"},
		{m.SecretEntry{EnvVar: "A", Value: "v", AllowHosts: host, Placeholder: "a\rb"}, "NUL, CR or LF"},
		{m.SecretEntry{EnvVar: "A", Value: "v", AllowHosts: host, Placeholder: "a\x00b"}, "NUL, CR or LF"},
		{m.SecretEntry{EnvVar: "A", Value: "v", AllowHosts: host, OnViolation: "explode"}, "is not one of"},
		{m.SecretEntry{EnvVar: "A", AllowHosts: host}, "Value is empty"},
	}
	for _, c := range cases {
		err := c.entry.Validate()
		if err == nil || !strings.Contains(err.Error(), c.rule) {
			t.Errorf("%q: got %v, want an error with %q", c.entry.EnvVar, err, c.rule)
			continue
		}
		// CreateSandbox refuses the same entry before it starts anything.
		_, err = m.CreateSandbox(context.Background(), "worker", m.WithSecrets(c.entry), m.WithAirlockBinary("/nonexistent"))
		if err == nil || !strings.Contains(err.Error(), c.rule) {
			t.Errorf("CreateSandbox with %q: got %v, want %q", c.entry.EnvVar, err, c.rule)
		}
	}
	ok := m.SecretEntry{EnvVar: "weird-name.x", Value: "v", AllowHosts: host, Placeholder: strings.Repeat("p", 1024)}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a valid entry (shell-identifier syntax not required, a 1024-byte placeholder): %v", err)
	}
}

func TestAPlaceholderInsideAnotherIsRefused(t *testing.T) {
	a := m.Secret.Env("KEY", "v1", m.SecretEnvOptions{AllowHosts: []string{"a.test"}})
	b := m.Secret.Env("KEY_2", "v2", m.SecretEnvOptions{AllowHosts: []string{"b.test"}}) // $MSB_KEY_2 holds $MSB_KEY
	_, err := m.CreateSandbox(context.Background(), "w", m.WithSecrets(a, b), m.WithAirlockBinary("/nonexistent"))
	if err == nil || !strings.Contains(err.Error(), "one placeholder contains the other") {
		t.Fatalf("got %v", err)
	}
	_, err = m.CreateSandbox(context.Background(), "w", m.WithSecrets(a), m.WithSecrets(a), m.WithAirlockBinary("/nonexistent"))
	if err == nil || !strings.Contains(err.Error(), "bound twice") {
		t.Fatalf("WithSecrets appends, so the same secret twice is an error: got %v", err)
	}
}

func TestTheLastNonEmptyOnViolationWinsNetworkWide(t *testing.T) {
	s := func(a m.ViolationAction) m.SecretEntry { return m.SecretEntry{OnViolation: a} }
	cases := []struct {
		network m.ViolationAction
		secrets []m.SecretEntry
		want    m.ViolationAction
	}{
		{"", nil, m.ViolationActionBlockAndLog},
		{m.ViolationActionBlock, nil, m.ViolationActionBlock},
		{m.ViolationActionBlock, []m.SecretEntry{s(m.ViolationActionBlockAndTerminate), s("")}, m.ViolationActionBlockAndTerminate},
		{"", []m.SecretEntry{s(m.ViolationActionBlockAndTerminate), s(m.ViolationActionBlock)}, m.ViolationActionBlock},
		{m.ViolationActionBlockAndTerminate, []m.SecretEntry{s(""), s("")}, m.ViolationActionBlockAndTerminate},
	}
	for i, c := range cases {
		if got := m.EffectiveViolationAction(c.network, c.secrets); got != c.want {
			t.Errorf("case %d: %q, want %q", i, got, c.want)
		}
	}
}

func TestWithImageNeedsALocalDirectory(t *testing.T) {
	for _, image := range []string{"python:3.12", "docker.io/library/alpine", ""} {
		_, err := m.CreateSandbox(context.Background(), "w", m.WithImage(image), m.WithAirlockBinary("/nonexistent"))
		if err == nil || !strings.Contains(err.Error(), "WithImage") {
			t.Errorf("WithImage(%q): got %v", image, err)
		}
	}
	f, _ := os.CreateTemp("", "airlock-not-a-dir")
	defer os.Remove(f.Name())
	f.Close()
	if _, err := m.CreateSandbox(context.Background(), "w", m.WithImage(f.Name()), m.WithAirlockBinary("/nonexistent")); err == nil ||
		!strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as the image: got %v", err)
	}
	// A directory is accepted; the (missing) binary is what fails then.
	_, err := m.CreateSandbox(context.Background(), "w", m.WithImage(t.TempDir()), m.WithAirlockBinary("/nonexistent"))
	if err == nil || strings.Contains(err.Error(), "WithImage") {
		t.Errorf("a directory image: got %v", err)
	}
}
