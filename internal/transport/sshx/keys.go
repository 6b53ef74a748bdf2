package sshx

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ParsePrivateKeys parses one or more private keys pasted one after the
// other (a fleet whose hosts take different keys); every key is offered to
// every host, as ssh does with several IdentityFiles. Errors name the key
// by its position, never by content.
func ParsePrivateKeys(text, passphrase string) ([]ssh.Signer, error) {
	blocks := splitKeys(normalizeKeyText(text))
	if len(blocks) <= 1 {
		s, err := ParsePrivateKey(text, passphrase)
		if err != nil {
			return nil, err
		}
		return []ssh.Signer{s}, nil
	}
	signers := make([]ssh.Signer, 0, len(blocks))
	for i, b := range blocks {
		s, err := ParsePrivateKey(b, passphrase)
		if err != nil {
			return nil, fmt.Errorf("private key %d of %d: %w", i+1, len(blocks), err)
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// splitKeys cuts text at each -----BEGIN line.
func splitKeys(text string) []string {
	var out []string
	for {
		i := strings.Index(text, "-----BEGIN ")
		if i < 0 {
			return out
		}
		j := strings.Index(text[i+1:], "-----BEGIN ")
		if j < 0 {
			return append(out, text[i:])
		}
		out = append(out, text[i:i+1+j])
		text = text[i+1+j:]
	}
}

// ParsePrivateKey parses PEM private key text (OpenSSH, PKCS#1, PKCS#8, SEC1),
// decrypting it with passphrase when it is encrypted. Errors are *KeyError and
// say what is wrong in plain words; they never contain the key or passphrase.
func ParsePrivateKey(pemText, passphrase string) (ssh.Signer, error) {
	text := normalizeKeyText(pemText)
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return nil, diagnoseNotPEM(text)
	}
	switch block.Type {
	case "OPENSSH PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY":
	case "ENCRYPTED PRIVATE KEY":
		return nil, &KeyError{Kind: ErrKeyUnsupported, Hint: "encrypted PKCS#8 keys cannot be read; " +
			"rewrite it in OpenSSH format with `ssh-keygen -p -f <keyfile>`"}
	case "DSA PRIVATE KEY":
		return nil, &KeyError{Kind: ErrKeyUnsupported, Hint: "DSA keys are disabled in current OpenSSH; " +
			"create an ed25519 key with `ssh-keygen -t ed25519`"}
	default:
		return nil, &KeyError{Kind: ErrKeyUnsupported, Hint: "the text is a PEM " + block.Type +
			", not a private key (expected -----BEGIN OPENSSH PRIVATE KEY-----)"}
	}
	raw := pem.EncodeToMemory(block)

	signer, err := ssh.ParsePrivateKey(raw)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) && passphrase != "" {
		// Only use the passphrase when the key needs one: a passphrase set
		// for an unencrypted key is harmless and not worth failing over.
		signer, err = ssh.ParsePrivateKeyWithPassphrase(raw, []byte(passphrase))
	}
	if err == nil {
		return signer, nil
	}
	switch {
	case errors.As(err, &missing):
		return nil, &KeyError{Kind: ErrKeyPassphraseMissing, Err: err,
			Hint: "set the passphrase, or remove it with `ssh-keygen -p -f <keyfile>`"}
	case errors.Is(err, x509.IncorrectPasswordError):
		return nil, &KeyError{Kind: ErrKeyPassphraseWrong, Err: err,
			Hint: "check the passphrase secret (test it with `ssh-keygen -y -f <keyfile>`)"}
	case isUnsupportedKeyErr(err):
		return nil, &KeyError{Kind: ErrKeyUnsupported, Err: err,
			Hint: "use an ed25519, ecdsa or rsa key without a security token (" + err.Error() + ")"}
	}
	return nil, &KeyError{Kind: ErrKeyTruncated, Err: err,
		Hint: "the text has the right BEGIN/END lines but its content does not decode; " +
			"copy the whole key file again"}
}

func isUnsupportedKeyErr(err error) bool {
	msg := err.Error()
	for _, s := range []string{"unsupported", "unhandled key type", "unknown cipher", "unknown KDF", "not supported"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// normalizeKeyText undoes what copying a key into a CI secret commonly does
// to it: CRLF line ends, literal "\n" sequences, or newlines turned into
// spaces.
func normalizeKeyText(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	if strings.Contains(s, "\n") {
		return s
	}
	if strings.Contains(s, `\n`) {
		return strings.ReplaceAll(s, `\n`, "\n")
	}
	// One line "-----BEGIN X----- body body -----END X-----": put the
	// newlines back. Headers (with ':') would need more than this.
	if !strings.HasPrefix(s, "-----BEGIN ") || strings.Contains(s, ":") {
		return s
	}
	hdrEnd := strings.Index(s[len("-----BEGIN "):], "-----")
	endAt := strings.LastIndex(s, "-----END ")
	if hdrEnd < 0 || endAt < 0 {
		return s
	}
	hdrEnd += len("-----BEGIN ") + len("-----")
	if hdrEnd > endAt {
		return s
	}
	body := strings.Fields(s[hdrEnd:endAt])
	return s[:hdrEnd] + "\n" + strings.Join(body, "\n") + "\n" + s[endAt:]
}

// diagnoseNotPEM explains text that pem.Decode rejected.
func diagnoseNotPEM(text string) error {
	hasBegin := strings.Contains(text, "-----BEGIN ")
	hasEnd := strings.Contains(text, "-----END ")
	switch {
	case text == "":
		return &KeyError{Kind: ErrKeyNotPEM, Hint: "the text is empty (is the secret set for this workflow?)"}
	case hasBegin && !hasEnd:
		return &KeyError{Kind: ErrKeyTruncated, Hint: "the -----BEGIN line has no -----END line: " +
			"the text was cut off; copy the whole key file including the last line"}
	case hasBegin:
		return &KeyError{Kind: ErrKeyTruncated, Hint: "the text between the BEGIN and END lines " +
			"is not valid base64 (lines missing or altered?); copy the whole key file again"}
	case strings.HasPrefix(text, "PuTTY-User-Key-File"):
		return &KeyError{Kind: ErrKeyUnsupported, Hint: "this is a PuTTY .ppk key; convert it with " +
			"`puttygen key.ppk -O private-openssh -o key`"}
	case strings.HasPrefix(text, "---- BEGIN SSH2"):
		return &KeyError{Kind: ErrKeyUnsupported, Hint: "this is an SSH2 (RFC 4716) key; " +
			"convert it with `ssh-keygen -i -f <keyfile>`"}
	case strings.HasPrefix(text, "ssh-") || strings.HasPrefix(text, "ecdsa-sha2-") || strings.HasPrefix(text, "sk-"):
		return &KeyError{Kind: ErrKeyNotPEM, Hint: "this is a public key; " +
			"use the private key file (the one without .pub)"}
	case !strings.ContainsAny(text, " \n") && (strings.HasPrefix(text, "/") || strings.HasPrefix(text, "~")):
		return &KeyError{Kind: ErrKeyNotPEM, Hint: "this looks like a file path; give the key's content"}
	}
	return &KeyError{Kind: ErrKeyNotPEM, Hint: "expected text starting with -----BEGIN OPENSSH PRIVATE KEY-----"}
}
