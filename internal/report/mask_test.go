package report_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/report"
)

// encodings of a secret that programs print: Go's %q, JSON (with and
// without HTML escaping), percent-encoding (query and path) and POSIX
// shell quoting.
func encodings(s string) map[string]string {
	q := strconv.Quote(s)
	jsonHTML, _ := json.Marshal(s)
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return map[string]string{
		"raw":          s,
		"%q":           q[1 : len(q)-1],
		"json":         string(jsonHTML[1 : len(jsonHTML)-1]),
		"json no html": strings.TrimSpace(plain.String())[1 : len(strings.TrimSpace(plain.String()))-1],
		"query":        url.QueryEscape(s),
		"path":         url.PathEscape(s),
		"rfc 3986":     strings.ReplaceAll(url.QueryEscape(s), "+", "%20"),
		"shell":        "'" + strings.ReplaceAll(s, "'", `'\''`) + "'",
		"shell, bash":  "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'",
	}
}

// TestLogMasksEncodedForms: a secret is redacted from every line however
// a hook or an error message encoded it.
func TestLogMasksEncodedForms(t *testing.T) {
	secret := `it's "db" p@ss/wörd <&> 100%+\ x`
	for _, actions := range []bool{true, false} {
		var out bytes.Buffer
		l := report.NewTerminal(&out, false)
		if actions {
			l = report.NewActions(&out, actionsEnv)
		}
		l.Mask([]string{secret})
		w := l.Writer("web1")
		for name, form := range encodings(secret) {
			l.Infof("%s: before %s after", name, form)
			fmt.Fprintf(w, "%s: %s\n", name, form)
			l.Errorf("failed", "%s: value=%s;", name, form)
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, "::add-mask::") {
				continue
			}
			for name, form := range encodings(secret) {
				if strings.Contains(line, form) || strings.Contains(line, strings.Trim(form, "'")) {
					t.Errorf("actions=%v: the %s form is shown: %s", actions, name, line)
				}
			}
			for _, piece := range []string{"p@ss", "wörd", "w%C3%B6rd", "100%"} {
				if strings.Contains(line, piece) {
					t.Errorf("actions=%v: part of the secret is shown (%q): %s", actions, piece, line)
				}
			}
		}
		if !strings.Contains(out.String(), "before *** after") {
			t.Errorf("nothing redacted:\n%s", out.String())
		}
	}
}
