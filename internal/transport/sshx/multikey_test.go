package sshx_test

import (
	"context"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

// Hosts of a fleet that each accept a different key are reached with one
// private-key input holding all the keys.
func TestSeveralKeysAreAllOffered(t *testing.T) {
	keyA := sshtest.GenerateKeyPEM(t, sshtest.ED25519)
	keyB := sshtest.GenerateKeyPEM(t, sshtest.ECDSA)
	servers := sshtest.StartMany(t, sshtest.Options{ClientKeyPEM: keyA}, sshtest.Options{ClientKeyPEM: keyB})
	both := keyA + "\n" + keyB
	for _, srv := range servers {
		cfg := srv.Config()
		cfg.PrivateKey = both
		tr, err := sshx.Dial(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", srv.Addr, err)
		}
		tr.Close()
	}
	cfg := servers[0].Config()
	cfg.PrivateKey = keyA + "\n-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n-----END OPENSSH PRIVATE KEY-----\n"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "private key 2 of 2") {
		t.Fatalf("err = %v", err)
	}
}
