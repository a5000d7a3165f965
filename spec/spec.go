// Package spec decodes a pgherd spec, written in HCL, into a Model: the
// hosts, how to reach them over SSH, and the resources each should have.
// Every error is an hcl.Diagnostic with a source range, and all of them are
// reported at once. The language is described by Schema, from which
// docs/spec.md is generated (go run ./spec/cmd/gendoc).
package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

//go:generate go run ./cmd/gendoc -o ../docs/spec.md

// Input says where a spec and its variables come from.
type Input struct {
	// Paths are spec files, or directories whose *.hcl files are read in
	// name order.
	Paths []string
	// Vars are -var options, "name=value".
	Vars []string
	// VarFiles are -var-file options: HCL files of name = value.
	VarFiles []string
	// Environ is the environment (os.Environ()): PGHERD_VAR_<name>=value
	// sets a variable; HOME expands "~"; SSH_AUTH_SOCK turns on the agent.
	Environ []string
}

// Diagnostics are the errors and warnings of a Load, with the files they
// point into so that they can be printed with a snippet of the source.
type Diagnostics struct {
	Diags hcl.Diagnostics
	Files map[string]*hcl.File
}

// HasErrors reports whether any diagnostic is an error.
func (d Diagnostics) HasErrors() bool { return d.Diags.HasErrors() }

// Err returns the diagnostics as an error when there is an error among
// them, else nil.
func (d Diagnostics) Err() error {
	if !d.Diags.HasErrors() {
		return nil
	}
	return d.Diags
}

// Write prints the diagnostics Terraform-style: "Error: <summary>", the
// file and line, a snippet of the source, and the detail.
func (d Diagnostics) Write(w io.Writer, color bool) error {
	return hcl.NewDiagnosticTextWriter(w, d.Files, 78, color).WriteDiagnostics(d.Diags)
}

// SensitiveMask replaces a sensitive value wherever it is shown.
const SensitiveMask = "(sensitive)"

// Mask replaces every sensitive value of the model found in s with
// SensitiveMask.
func (m *Model) Mask(s string) string {
	if m == nil || len(m.Sensitive) == 0 {
		return s
	}
	vals := append([]string(nil), m.Sensitive...)
	// Longest first, so that a value containing another is masked whole.
	sort.SliceStable(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	for _, v := range vals {
		if v != "" {
			s = strings.ReplaceAll(s, v, SensitiveMask)
		}
	}
	return s
}

// Digest is a stable hash of the resolved model, source ranges and file
// names aside: it changes when, and only when, what the spec asks of the
// hosts changes. Sensitive values are hashed, never shown.
func Digest(m *Model) string {
	if m == nil {
		return ""
	}
	b, err := json.Marshal(m)
	if err != nil {
		// A Model holds only strings, numbers, bools, slices and maps.
		panic("spec: cannot encode model: " + err.Error())
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		panic("spec: cannot decode model: " + err.Error())
	}
	v = stripKeys(v, "Range", "Sources")
	b, _ = json.Marshal(v) // map keys are sorted
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func stripKeys(v any, keys ...string) any {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range keys {
			delete(x, k)
		}
		for k, e := range x {
			x[k] = stripKeys(e, keys...)
		}
	case []any:
		for i, e := range x {
			x[i] = stripKeys(e, keys...)
		}
	}
	return v
}

// Format returns src formatted canonically (as hclwrite does). It refuses
// source with syntax errors, which it returns as diagnostics.
func Format(src []byte, filename string) ([]byte, hcl.Diagnostics) {
	_, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), diags
}
