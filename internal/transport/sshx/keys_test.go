package sshx_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/atomic-deploy/atomic-deploy/internal/testutil/sshtest"
	"github.com/atomic-deploy/atomic-deploy/internal/transport/sshx"
)

const passphrase = "correct horse battery staple"

func TestParsePrivateKey(t *testing.T) {
	plain := sshtest.GenerateKeyPEM(t, sshtest.ED25519)
	ecdsaKey := sshtest.GenerateKeyPEM(t, sshtest.ECDSA)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	encBlock, err := ssh.MarshalPrivateKeyWithPassphrase(edKey, "", []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	encrypted := string(pem.EncodeToMemory(encBlock))
	signer, _ := ssh.ParsePrivateKey([]byte(plain))
	public := string(ssh.MarshalAuthorizedKey(signer.PublicKey()))

	lines := strings.Split(strings.TrimSpace(plain), "\n")
	truncated := strings.Join(lines[:len(lines)/2], "\n")
	missingLine := strings.Join(append(append([]string{}, lines[:2]...), lines[3:]...), "\n")

	tests := []struct {
		name, text, pass string
		want             error // nil: parses
	}{
		{"ed25519 openssh", plain, "", nil},
		{"ecdsa openssh", ecdsaKey, "", nil},
		{"rsa pkcs1", pkcs1, "", nil},
		{"encrypted with passphrase", encrypted, passphrase, nil},
		{"passphrase given for a plain key", plain, "unused", nil},
		{"CRLF line ends", strings.ReplaceAll(plain, "\n", "\r\n"), "", nil},
		{"literal backslash-n", strings.ReplaceAll(plain, "\n", `\n`), "", nil},
		{"newlines turned into spaces", strings.ReplaceAll(plain, "\n", " "), "", nil},
		{"empty", "", "", sshx.ErrKeyNotPEM},
		{"not PEM", "hello world", "", sshx.ErrKeyNotPEM},
		{"public key", public, "", sshx.ErrKeyNotPEM},
		{"file path", "/home/me/.ssh/id_ed25519", "", sshx.ErrKeyNotPEM},
		{"truncated", truncated, "", sshx.ErrKeyTruncated},
		{"line missing", missingLine, "", sshx.ErrKeyTruncated},
		{"pkcs8 encrypted", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "", sshx.ErrKeyUnsupported},
		{"certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "", sshx.ErrKeyUnsupported},
		{"putty", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n", "", sshx.ErrKeyUnsupported},
		{"encrypted without passphrase", encrypted, "", sshx.ErrKeyPassphraseMissing},
		{"encrypted with wrong passphrase", encrypted, "wrong " + passphrase, sshx.ErrKeyPassphraseWrong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signer, err := sshx.ParsePrivateKey(tt.text, tt.pass)
			if tt.want == nil {
				if err != nil || signer == nil {
					t.Fatalf("ParsePrivateKey: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			var keyErr *sshx.KeyError
			if !errors.As(err, &keyErr) {
				t.Fatalf("error %T is not *sshx.KeyError", err)
			}
			assertNoSecret(t, err.Error(), tt.text, tt.pass)
		})
	}

	// The x/crypto errors stay reachable for callers that know them.
	_, err = sshx.ParsePrivateKey(encrypted, "wrong")
	if !errors.Is(err, x509.IncorrectPasswordError) {
		t.Errorf("wrong passphrase: %v does not wrap x509.IncorrectPasswordError", err)
	}
	var missing *ssh.PassphraseMissingError
	if _, err = sshx.ParsePrivateKey(encrypted, ""); !errors.As(err, &missing) {
		t.Errorf("no passphrase: %v does not wrap *ssh.PassphraseMissingError", err)
	}
}

// assertNoSecret fails if msg contains the passphrase or any base64 line of
// the key text.
func assertNoSecret(t *testing.T, msg, keyText, pass string) {
	t.Helper()
	if pass != "" && strings.Contains(msg, pass) {
		t.Errorf("error contains the passphrase: %s", msg)
	}
	for _, line := range strings.FieldsFunc(keyText, func(r rune) bool { return r == '\n' || r == ' ' || r == '\r' }) {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && !strings.HasPrefix(line, "PuTTY") && strings.Contains(msg, line) {
			t.Errorf("error contains key material %q: %s", line, msg)
		}
	}
}

func TestParseFingerprint(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(key)
	fp := ssh.FingerprintSHA256(signer.PublicKey())
	b64 := strings.TrimPrefix(fp, "SHA256:")
	tests := []struct {
		in, want string
		ok       bool
	}{
		{fp, fp, true},
		{"  " + fp + "\n", fp, true},
		{"sha256:" + b64, fp, true},
		{b64, fp, true},
		{fp + "=", fp, true},
		{"256 " + fp + " root@web1 (ED25519)", fp, true},
		{"SHA256:tooShort", "", false},
		{"MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", "", false},
		{"16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := sshx.ParseFingerprint(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseKnownHosts(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(key)
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	tests := []struct {
		name, text, wantErr string
	}{
		{"plain", "web1 " + pub, ""},
		{"bracketed port and comments", "# ssh-keyscan\n\n[10.0.0.1]:2222 " + pub + " comment\n", ""},
		{"several hosts", "web1,10.0.0.1 " + pub, ""},
		{"hashed", "|1|c2FsdHNhbHRzYWx0c2FsdHNhbHQ=|aGFzaGhhc2hoYXNoaGFzaGhhc2g= " + pub, ""},
		{"marker", "@cert-authority *.example.com " + pub, ""},
		{"no host", pub, "line 1 has no host name"},
		{"bad key", "web1 ssh-ed25519 AAAAnotbase64!!", "line 1: the key does not parse"},
		{"bad hashed host", "|1|nope " + pub, "line 1: hashed host"},
		{"only comments", "# nothing\n", "no entries"},
		{"second line bad", "web1 " + pub + "\nweb2 ssh-ed25519\n", "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sshx.ParseKnownHosts(tt.text)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	key := sshtest.GenerateKeyPEM(t, sshtest.ED25519)
	good := sshx.Config{Host: "web1", User: "deploy", PrivateKey: key, Fingerprints: []string{"SHA256:" + strings.Repeat("A", 43)}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		modify func(*sshx.Config)
		want   string
		is     error
	}{
		{"no pin", func(c *sshx.Config) { c.Fingerprints = nil }, "ssh-keyscan -p 22 web1", sshx.ErrNoHostKeyPin},
		{"insecure is a pin of sorts", func(c *sshx.Config) { c.Fingerprints = nil; c.InsecureIgnoreHostKey = true }, "", nil},
		{"no host", func(c *sshx.Config) { c.Host = "" }, "host is empty", nil},
		{"user in host", func(c *sshx.Config) { c.Host = "deploy@web1" }, "give the user separately", nil},
		{"bad port", func(c *sshx.Config) { c.Port = 70000 }, "out of range", nil},
		{"no user", func(c *sshx.Config) { c.User = "" }, "user is empty", nil},
		{"no credentials", func(c *sshx.Config) { c.PrivateKey = "" }, "no credentials", nil},
		{"bad key", func(c *sshx.Config) { c.PrivateKey = "nope" }, "not PEM", sshx.ErrKeyNotPEM},
		{"bad fingerprint", func(c *sshx.Config) { c.Fingerprints = []string{"MD5:xx"} }, "MD5", nil},
		{"bad known_hosts", func(c *sshx.Config) { c.KnownHosts = "garbage" }, "known_hosts line 1", nil},
		{"jump host", func(c *sshx.Config) {
			c.JumpHost, c.JumpHostFingerprints = "bastion@10.0.0.1:2200", []string{"SHA256:" + strings.Repeat("B", 43)}
		}, "", nil},
		{"jump host ipv6", func(c *sshx.Config) {
			c.JumpHost, c.KnownHosts = "[::1]:22", "[::1] ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
		}, "", nil},
		{"jump host without a pin of its own", func(c *sshx.Config) { c.JumpHost = "bastion@10.0.0.1:2200" }, "jump host 10.0.0.1:2200", sshx.ErrNoHostKeyPin},
		{"bad jump host fingerprint", func(c *sshx.Config) { c.JumpHost, c.JumpHostFingerprints = "bastion", []string{"SHA256:short"} }, "SHA256:short", nil},
		{"bad jump port", func(c *sshx.Config) { c.JumpHost = "bastion:ssh" }, "jump host", nil},
		{"negative timeout", func(c *sshx.Config) { c.ConnectTimeout = -time.Second }, "negative", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v is not %v", err, tt.is)
			}
		})
	}
}

func TestConfigRedactsSecrets(t *testing.T) {
	c := sshx.Config{Host: "web1", User: "deploy", PrivateKey: "KEYMATERIAL", Passphrase: "PASSPHRASE", Password: "PASSWORD"}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := strings.Join([]string{fmt.Sprintf(format, c), fmt.Sprintf(format, &c)}, " ")
		for _, secret := range []string{"KEYMATERIAL", "PASSPHRASE", "PASSWORD"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s prints %s: %s", format, secret, out)
			}
		}
	}
}
