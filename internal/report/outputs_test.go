package report_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atomic-deploy/atomic-deploy/internal/report"
)

var outputValues = []string{
	"",
	"simple",
	"20261125231842",
	"/var/www/app/releases/20261125231842",
	"two\nlines",
	"\n",
	"\n\n",
	"trailing newline\n",
	"\nleading newline",
	"ghadelimiter_",
	"ghadelimiter_00000000000000000000000000000000",
	"x\nghadelimiter_0123456789abcdef0123456789abcdef\ny",
	"_GitHubActionsFileCommandDelimeter_",
	"EOF",
	"x=y",
	"=",
	"==",
	"<<",
	"a<<b",
	"name<<EOF\nEOF",
	"evil\nrelease-id=hacked",
	"evil\nrelease-id<<X\nhacked\nX",
	"crlf\r\nline",
	"\r",
	"lone\rcr",
	"tab\tand spaces  ",
	"héllo 日本語 🚀",
	"%0A%25::set-output name=x::y",
	"::add-mask::x",
}

func TestOutputsRoundTrip(t *testing.T) {
	var outs []report.Output
	want := map[string]string{}
	for i, v := range outputValues {
		name := fmt.Sprintf("out-%d", i)
		outs = append(outs, report.Output{Name: name, Value: v})
		want[name] = v
	}
	var b bytes.Buffer
	if err := report.WriteOutputs(&b, outs); err != nil {
		t.Fatal(err)
	}
	got, err := report.ParseOutputs(b.String())
	if err != nil {
		t.Fatalf("ParseOutputs: %v\n%s", err, b.String())
	}
	if !maps.Equal(got, want) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("injected output %q = %q", k, got[k])
			}
		}
	}
}

func TestOutputsDelimiterIsRandom(t *testing.T) {
	var a, b bytes.Buffer
	report.WriteOutputs(&a, []report.Output{{Name: "x", Value: "1"}})
	report.WriteOutputs(&b, []report.Output{{Name: "x", Value: "1"}})
	if a.String() == b.String() {
		t.Errorf("the same delimiter twice: %q", a.String())
	}
	if !strings.HasPrefix(a.String(), "x<<ghadelimiter_") {
		t.Errorf("output %q", a.String())
	}
}

func TestOutputsRefuseBadNames(t *testing.T) {
	for _, name := range []string{"", "a=b", "a<b", "a<<b", "a\nb", "a\rb"} {
		var b bytes.Buffer
		err := report.WriteOutputs(&b, []report.Output{{Name: "ok", Value: "1"}, {Name: name, Value: "v"}})
		if err == nil {
			t.Errorf("WriteOutputs accepted the name %q", name)
		}
		if b.Len() != 0 {
			t.Errorf("WriteOutputs wrote %q before failing", b.String())
		}
	}
}

func TestAppendOutputs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "github_output")
	os.WriteFile(p, []byte("earlier=step\n"), 0o644)
	if err := report.AppendOutputs(p, []report.Output{{Name: "a", Value: "1\n2"}}); err != nil {
		t.Fatal(err)
	}
	if err := report.AppendOutputs(p, []report.Output{{Name: "a", Value: "3"}, {Name: "b", Value: ""}}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	got, err := report.ParseOutputs(string(data))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"earlier": "step", "a": "3", "b": ""}; !maps.Equal(got, want) {
		t.Errorf("outputs = %q, want %q", got, want)
	}
	if err := report.AppendOutputs(filepath.Join(t.TempDir(), "no", "dir"), nil); err == nil {
		t.Error("AppendOutputs into a missing directory succeeded")
	}
}

// TestParseOutputsLikeTheRunner pins ParseOutputs to the Linux runner's
// parser (actions/runner FileCommandManager): lines end at \n only, a
// heredoc value is the raw text between the lines, empty lines are skipped.
func TestParseOutputsLikeTheRunner(t *testing.T) {
	tests := []struct {
		name, data string
		want       map[string]string
		err        string
	}{
		{"plain", "a=1\nb=x=y\n", map[string]string{"a": "1", "b": "x=y"}, ""},
		{"no final newline", "a=1", map[string]string{"a": "1"}, ""},
		{"empty value", "a=\n", map[string]string{"a": ""}, ""},
		{"heredoc", "a<<EOF\nx\ny\nEOF\n", map[string]string{"a": "x\ny"}, ""},
		{"heredoc empty", "a<<EOF\nEOF\n", map[string]string{"a": ""}, ""},
		{"heredoc one empty line", "a<<EOF\n\nEOF\n", map[string]string{"a": ""}, ""},
		{"heredoc two empty lines", "a<<EOF\n\n\nEOF\n", map[string]string{"a": "\n"}, ""},
		{"heredoc delimiter at EOF", "a<<EOF\nx\nEOF", map[string]string{"a": "x"}, ""},
		{"equals before heredoc", "a=b<<c\n", map[string]string{"a": "b<<c"}, ""},
		{"heredoc before equals", "a<<b=c\nv\nb=c\n", map[string]string{"a": "v"}, ""},
		{"blank lines skipped", "\n\na=1\n\n", map[string]string{"a": "1"}, ""},
		{"later wins", "a=1\na=2\n", map[string]string{"a": "2"}, ""},
		{"CR is data on Linux", "a=1\r\nb<<E\r\nx\r\nE\r\n", map[string]string{"a": "1\r", "b": "x\r"}, ""},
		{"delimiter must match exactly", "a<<EOF\nx\nEOF \nEOF\n", map[string]string{"a": "x\nEOF "}, ""},
		{"missing delimiter", "a<<EOF\nx\n", nil, "delimiter"},
		{"not a command", "hello\n", nil, "line 1"},
		{"empty name", "=x\n", nil, "name"},
		{"empty heredoc name", "<<EOF\nx\nEOF\n", nil, "name"},
		{"empty delimiter", "a<<\nx\n", nil, "delimiter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := report.ParseOutputs(tt.data)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("ParseOutputs(%q) = %q, %v; want an error about %s", tt.data, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseOutputs(%q): %v", tt.data, err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("ParseOutputs(%q) = %q, want %q", tt.data, got, tt.want)
			}
		})
	}
}

// FuzzOutputs: any value round-trips through WriteOutputs and ParseOutputs,
// and no value can end its heredoc early or add another output.
func FuzzOutputs(f *testing.F) {
	for _, v := range outputValues {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, value string) {
		var b bytes.Buffer
		err := report.WriteOutputs(&b, []report.Output{{Name: "before", Value: "1"}, {Name: "value", Value: value}, {Name: "after", Value: "2"}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := report.ParseOutputs(b.String())
		if err != nil {
			t.Fatalf("ParseOutputs: %v\n%q", err, b.String())
		}
		want := map[string]string{"before": "1", "value": value, "after": "2"}
		if !maps.Equal(got, want) {
			t.Fatalf("value %q came back as %q", value, got)
		}
	})
}
