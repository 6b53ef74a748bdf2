// Package actionspec keeps action.yml and README.md in step with the single
// table of inputs and outputs in internal/config. Render produces the
// generated regions; `make generate` (go run ./internal/actionspec/gen)
// writes them, and the package's test fails when they drift.
package actionspec

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/atomic-deploy/atomic-deploy/internal/config"
)

// Required names the inputs marked `required: true` in action.yml. The
// runner does not enforce it (config validates anyway); it documents.
var Required = map[string]bool{"path": true}

// Region is a generated part of a file, between two marker lines.
type Region struct {
	Begin, End string
	Render     func() string
}

// ActionRegions are the generated parts of action.yml.
var ActionRegions = []Region{
	{"# BEGIN generated inputs", "# END generated inputs", InputsYAML},
	{"# BEGIN generated outputs", "# END generated outputs", OutputsYAML},
}

// ReadmeRegions are the generated parts of README.md.
var ReadmeRegions = []Region{
	{"<!-- BEGIN generated inputs -->", "<!-- END generated inputs -->", InputsTable},
	{"<!-- BEGIN generated outputs -->", "<!-- END generated outputs -->", OutputsTable},
}

// InputsYAML renders the `inputs:` mapping of action.yml.
func InputsYAML() string {
	return encode("inputs", config.Inputs, func(in config.Input) []*yaml.Node {
		n := []*yaml.Node{str("description"), str(in.Description)}
		if Required[in.Name] {
			n = append(n, str("required"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
		if in.Default != "" {
			n = append(n, str("default"), str(in.Default))
		}
		return n
	})
}

// OutputsYAML renders the `outputs:` mapping of action.yml.
func OutputsYAML() string {
	return encode("outputs", config.Outputs, func(out config.Input) []*yaml.Node {
		return []*yaml.Node{str("description"), str(out.Description)}
	})
}

func encode(key string, list []config.Input, fields func(config.Input) []*yaml.Node) string {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, in := range list {
		m.Content = append(m.Content, str(in.Name), &yaml.Node{Kind: yaml.MappingNode, Content: fields(in)})
	}
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{str(key), m}}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		panic(err) // only strings: cannot fail
	}
	enc.Close()
	return b.String()
}

func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if strings.Contains(s, "\n") {
		n.Style = yaml.LiteralStyle
	}
	return n
}

// InputsTable renders the README's Markdown table of inputs.
func InputsTable() string {
	var b strings.Builder
	b.WriteString("| Input | Default | Description |\n|---|---|---|\n")
	for _, in := range config.Inputs {
		desc := cell(in.Description)
		if in.Secret {
			desc += " Secret: pass it from `secrets`; it is masked in logs."
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", in.Name, code(in.Default), desc)
	}
	return b.String()
}

// OutputsTable renders the README's Markdown table of outputs.
func OutputsTable() string {
	var b strings.Builder
	b.WriteString("| Output | Description |\n|---|---|\n")
	for _, out := range config.Outputs {
		fmt.Fprintf(&b, "| `%s` | %s |\n", out.Name, cell(out.Description))
	}
	return b.String()
}

// code shows a default as inline code, one line of the value per span.
func code(s string) string {
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = "`" + l + "`"
	}
	return strings.Join(lines, "<br>")
}

// cell escapes what would break a table row.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "<", "&lt;")
	s = strings.ReplaceAll(s, ">", "&gt;")
	return strings.ReplaceAll(s, "\n", "<br>")
}

// Apply replaces every region's body in text with its rendering. It fails
// when a marker is missing or out of order.
func Apply(text string, regions []Region) (string, error) {
	for _, r := range regions {
		start := strings.Index(text, r.Begin)
		if start < 0 {
			return "", fmt.Errorf("marker %q not found", r.Begin)
		}
		bodyStart := strings.Index(text[start:], "\n")
		if bodyStart < 0 {
			return "", fmt.Errorf("nothing after marker %q", r.Begin)
		}
		bodyStart += start + 1
		end := strings.Index(text[bodyStart:], r.End)
		if end < 0 {
			return "", fmt.Errorf("marker %q not found after %q", r.End, r.Begin)
		}
		end += bodyStart
		// Keep the end marker's own indentation.
		lineStart := strings.LastIndex(text[:end], "\n") + 1
		text = text[:bodyStart] + r.Render() + text[lineStart:]
	}
	return text, nil
}
