package airlock

import (
	"fmt"
	"strings"
)

// ViolationAction is what happens when a secret's placeholder is detected going to a host the
// secret is not allowed to reach. The sandbox-wide default is NetworkConfig.OnSecretViolation;
// SecretEntry.OnViolation overrides it. The runtime applies one action network-wide: the last
// non-empty OnViolation across all secrets wins.
type ViolationAction string

const (
	// ViolationActionDefault leaves the runtime default in place (currently block-and-log).
	ViolationActionDefault ViolationAction = ""
	// ViolationActionBlock silently drops the request. The guest sees a connection reset.
	ViolationActionBlock ViolationAction = "block"
	// ViolationActionBlockAndLog drops the request and emits a warning log on the host side.
	ViolationActionBlockAndLog ViolationAction = "block-and-log"
	// ViolationActionBlockAndTerminate drops the request, logs an error, and shuts down the
	// entire sandbox.
	ViolationActionBlockAndTerminate ViolationAction = "block-and-terminate"
)

func (a ViolationAction) valid() bool {
	switch a {
	case ViolationActionDefault, ViolationActionBlock, ViolationActionBlockAndLog, ViolationActionBlockAndTerminate:
		return true
	}
	return false
}

// MaxPlaceholderBytes is the longest custom placeholder.
const MaxPlaceholderBytes = 1024

// SecretEntry is a single credential the network proxy substitutes at the transport layer. The
// value never reaches the sandbox. Usually produced by Secret.Env; exported for callers that
// prefer struct literals.
type SecretEntry struct {
	// EnvVar is the environment variable holding the placeholder inside the sandbox. Must be
	// non-empty and cannot contain '=' or NUL; shell-identifier syntax is not required.
	EnvVar string
	// Value is the real secret value; it stays on the host.
	Value string
	// AllowHosts are hosts allowed to receive the real value (exact match).
	AllowHosts []string
	// AllowHostPatterns are wildcard host patterns, e.g. "*.openai.com".
	AllowHostPatterns []string
	// Placeholder is shown inside the sandbox in place of the secret; "$MSB_<EnvVar>" when
	// empty. Custom values must be non-empty, at most 1024 bytes, without NUL, CR or LF.
	Placeholder string
	// RequireTLS requires a verified TLS identity before substituting; true when nil.
	RequireTLS *bool
	// OnViolation overrides the sandbox-wide action. The last non-empty value across all
	// secrets wins, since the runtime applies it network-wide.
	OnViolation ViolationAction
}

// SecretEnvOptions tunes Secret.Env beyond the required envVar and value.
type SecretEnvOptions struct {
	AllowHosts        []string
	AllowHostPatterns []string
	Placeholder       string
	RequireTLS        *bool
	OnViolation       ViolationAction
}

type secretFactory struct{}

// Secret builds SecretEntry values: Secret.Env(...).
var Secret secretFactory

// Env builds a SecretEntry that maps an environment variable to a real value. The sandbox sees a
// placeholder; the real value is substituted only when traffic goes to an allowed host. Pass
// SecretEnvOptions{} when no extra tuning is needed.
func (secretFactory) Env(envVar, value string, opts SecretEnvOptions) SecretEntry {
	return SecretEntry{
		EnvVar:            envVar,
		Value:             value,
		AllowHosts:        append([]string(nil), opts.AllowHosts...),
		AllowHostPatterns: append([]string(nil), opts.AllowHostPatterns...),
		Placeholder:       opts.Placeholder,
		RequireTLS:        opts.RequireTLS,
		OnViolation:       opts.OnViolation,
	}
}

// EffectivePlaceholder is the placeholder the sandbox sees for this secret.
func (s SecretEntry) EffectivePlaceholder() string {
	if s.Placeholder != "" {
		return s.Placeholder
	}
	return "$MSB_" + s.EnvVar
}

// Validate checks the rules of a single secret. Errors name the secret by its EnvVar, never
// its value. airlock checks the host patterns themselves (e.g. "*.com" is refused) when the
// sandbox is created.
func (s SecretEntry) Validate() error {
	if s.EnvVar == "" {
		return fmt.Errorf("airlock: secret: EnvVar must be non-empty")
	}
	if strings.ContainsAny(s.EnvVar, "=\x00") {
		return fmt.Errorf("airlock: secret %q: EnvVar cannot contain '=' or NUL", s.EnvVar)
	}
	if s.Value == "" {
		return fmt.Errorf("airlock: secret %q: Value is empty (is the host variable set?)", s.EnvVar)
	}
	if len(s.AllowHosts) == 0 && len(s.AllowHostPatterns) == 0 {
		return fmt.Errorf("airlock: secret %q: at least one exact or wildcard host is required (AllowHosts or AllowHostPatterns)", s.EnvVar)
	}
	for _, h := range s.AllowHosts {
		if h == "" {
			return fmt.Errorf("airlock: secret %q: AllowHosts has an empty host", s.EnvVar)
		}
	}
	for _, p := range s.AllowHostPatterns {
		if p == "" {
			return fmt.Errorf("airlock: secret %q: AllowHostPatterns has an empty pattern", s.EnvVar)
		}
	}
	if s.Placeholder != "" {
		if len(s.Placeholder) > MaxPlaceholderBytes {
			return fmt.Errorf("airlock: secret %q: Placeholder is longer than %d bytes", s.EnvVar, MaxPlaceholderBytes)
		}
		if strings.ContainsAny(s.Placeholder, "\x00\r\n") {
			return fmt.Errorf("airlock: secret %q: Placeholder cannot contain NUL, CR or LF", s.EnvVar)
		}
	}
	if !s.OnViolation.valid() {
		return fmt.Errorf("airlock: secret %q: OnViolation %q is not one of \"\", \"block\", \"block-and-log\", \"block-and-terminate\"", s.EnvVar, string(s.OnViolation))
	}
	return nil
}

// EffectiveViolationAction is the action the runtime applies network-wide: the last non-empty
// OnViolation across secrets, else the network's OnSecretViolation, else block-and-log.
func EffectiveViolationAction(network ViolationAction, secrets []SecretEntry) ViolationAction {
	for i := len(secrets) - 1; i >= 0; i-- {
		if secrets[i].OnViolation != ViolationActionDefault {
			return secrets[i].OnViolation
		}
	}
	if network != ViolationActionDefault {
		return network
	}
	return ViolationActionBlockAndLog
}

func validateSecrets(secrets []SecretEntry) error {
	seenEnv := map[string]bool{}
	for i, s := range secrets {
		if err := s.Validate(); err != nil {
			return err
		}
		if seenEnv[s.EnvVar] {
			return fmt.Errorf("airlock: secret %q is bound twice", s.EnvVar)
		}
		seenEnv[s.EnvVar] = true
		for _, o := range secrets[:i] {
			a, b := s.EffectivePlaceholder(), o.EffectivePlaceholder()
			if strings.Contains(a, b) || strings.Contains(b, a) {
				return fmt.Errorf("airlock: secrets %q and %q: one placeholder contains the other", o.EnvVar, s.EnvVar)
			}
		}
	}
	return nil
}
