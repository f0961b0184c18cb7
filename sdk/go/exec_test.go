package airlock_test

import (
	"os"
	"os/exec"
	"testing"
)

// execSelf is this test binary running only `test`, with extra environment variables.
func execSelf(t *testing.T, test string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}
