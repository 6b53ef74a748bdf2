package sshtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

func (s *Server) writeKeys(opts Options) error {
	types := append([]KeyType{cmpOr(opts.HostKeyType, ED25519)}, opts.ExtraHostKeyTypes...)
	for i, typ := range types {
		priv, err := generateKey(typ)
		if err != nil {
			return err
		}
		block, err := ssh.MarshalPrivateKey(priv, "sshtest host key")
		if err != nil {
			return err
		}
		if err := os.WriteFile(s.hostKeyPath(i), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			return err
		}
		s.HostKeys = append(s.HostKeys, signer.PublicKey())
	}
	s.HostPublicKey = s.HostKeys[0]
	s.HostFingerprint = ssh.FingerprintSHA256(s.HostPublicKey)

	if opts.ClientKeyPEM != "" {
		key, err := ssh.ParseRawPrivateKey([]byte(opts.ClientKeyPEM))
		if err != nil {
			return fmt.Errorf("sshtest: Options.ClientKeyPEM: %w", err)
		}
		s.clientKey = key
	} else {
		key, err := generateKey(ED25519)
		if err != nil {
			return err
		}
		s.clientKey = key
	}
	block, err := ssh.MarshalPrivateKey(s.clientKey, "sshtest client key")
	if err != nil {
		return err
	}
	s.ClientKeyPEM = string(pem.EncodeToMemory(block))
	if s.ClientSigner, err = ssh.NewSignerFromKey(s.clientKey); err != nil {
		return err
	}
	authKeys := filepath.Join(s.Dir, "authorized_keys."+s.User)
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(s.ClientSigner.PublicKey()), 0o600); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return os.Chown(authKeys, s.uid, s.gid)
	}
	return nil
}

func (s *Server) hostKeyPath(i int) string {
	return filepath.Join(s.Dir, fmt.Sprintf("host_key_%d", i))
}

func generateKey(typ KeyType) (crypto.PrivateKey, error) {
	switch typ {
	case ED25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	case RSA:
		return rsa.GenerateKey(rand.Reader, 2048)
	case ECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("sshtest: unknown key type %q", typ)
}

func cmpOr(t, def KeyType) KeyType {
	if t == "" {
		return def
	}
	return t
}

// EncryptedClientKeyPEM returns the authorized client key encrypted with
// passphrase (OpenSSH format, bcrypt KDF).
func (s *Server) EncryptedClientKeyPEM(t testing.TB, passphrase string) string {
	t.Helper()
	block, err := ssh.MarshalPrivateKeyWithPassphrase(s.clientKey, "sshtest client key", []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

// GenerateKeyPEM returns a new unencrypted OpenSSH private key that no
// server authorizes (for wrong-key tests) or that Options.ClientKeyPEM shares.
func GenerateKeyPEM(t testing.TB, typ KeyType) string {
	t.Helper()
	key, err := generateKey(typ)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "sshtest key")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}
