package app

import (
	"slices"
	"testing"
)

// TestChildEnvDropsSecretEnv: secret-env is a secret input, so its
// variables (as the runner and the CLI spell them) are kept from the build
// and local hooks and blanked in /proc/<pid>/environ; env is not.
func TestChildEnvDropsSecretEnv(t *testing.T) {
	environ := []string{"INPUT_SECRET-ENV=DB=x", "INPUT_SECRET_ENV=DB=x", "ATOMIC_DEPLOY_SECRET_ENV=DB=x", "INPUT_ENV=A=1", "ATOMIC_DEPLOY_ENV=A=1"}
	if got, want := childEnv(environ), []string{"INPUT_ENV=A=1", "ATOMIC_DEPLOY_ENV=A=1"}; !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
	names := secretEnvNames()
	for _, n := range []string{"INPUT_SECRET-ENV", "INPUT_SECRET_ENV", "ATOMIC_DEPLOY_SECRET_ENV"} {
		if !names[n] {
			t.Errorf("hideSecretEnv does not blank %s", n)
		}
	}
}
