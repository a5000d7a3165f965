package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

func TestVariables(t *testing.T) {
	tests := []struct {
		name     string
		in       Input
		want     map[string]string
		wantErrs []string // substrings, one per error diagnostic, in order
		wantWarn string
	}{
		{
			name: "defaults",
			want: map[string]string{"s": "default", "n": "1", "l": "", "a": `"x"`},
		},
		{
			name: "environment over default",
			in:   Input{Environ: []string{"PGHERD_VAR_s=env", "PGHERD_VAR_n=2", "PGHERD_VAR_other=1"}},
			want: map[string]string{"s": "env", "n": "2", "l": "", "a": `"x"`},
		},
		{
			name: "var file over environment",
			in:   Input{Environ: []string{"PGHERD_VAR_s=env", "PGHERD_VAR_n=2"}, VarFiles: []string{"testdata/vars/values.vars"}},
			want: map[string]string{"s": "file", "n": "3", "l": "", "a": `"x"`},
		},
		{
			name: "-var over everything, last wins",
			in: Input{
				Environ:  []string{"PGHERD_VAR_s=env"},
				VarFiles: []string{"testdata/vars/values.vars"},
				Vars:     []string{"s=flag1", "s=flag2", "n=4"},
			},
			want: map[string]string{"s": "flag2", "n": "4", "l": "", "a": `"x"`},
		},
		{
			name: "string taken literally, list parsed",
			in:   Input{Vars: []string{`s=["x"]`, `l=["a", "b"]`}},
			want: map[string]string{"s": `["x"]`, "n": "1", "l": "a,b", "a": `"x"`},
		},
		{
			name: "untyped: parsed when it parses, else a string",
			in:   Input{Vars: []string{`a={k = 1}`}},
			want: map[string]string{"s": "default", "n": "1", "l": "", "a": `{"k":1}`},
		},
		{
			name: "untyped: not an expression",
			in:   Input{Vars: []string{`a=hello world`}},
			want: map[string]string{"s": "default", "n": "1", "l": "", "a": `"hello world"`},
		},
		{
			name: "value with an equals sign",
			in:   Input{Vars: []string{`s=a=b`}},
			want: map[string]string{"s": "a=b", "n": "1", "l": "", "a": `"x"`},
		},
		{
			name:     "bad values",
			in:       Input{Vars: []string{"n=many", "nn=1", "novalue", "l=[1"}, Environ: []string{"PGHERD_VAR_n=x"}},
			wantErrs: []string{`environment variable PGHERD_VAR_n is not valid for variable "n"`, `-var for variable "n" is not valid`, `sets "nn", which is not declared in the spec. Did you mean "n"?`, `not of the form name=value`, `list(string) is required, and the value is not a valid HCL expression`},
		},
		{
			name:     "bad var file",
			in:       Input{VarFiles: []string{"testdata/vars/bad.vars", "testdata/vars/missing.vars"}},
			wantErrs: []string{`The value for variable "n" does not match its type`, "missing.vars"},
			wantWarn: `sets "nope", which is not declared`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Paths = []string{"testdata/vars/main.hcl"}
			m, diags := Load(tt.in)
			var errs []string
			warn := ""
			for _, d := range diags.Diags {
				if d.Severity == hcl.DiagError {
					errs = append(errs, d.Summary+": "+d.Detail)
				} else {
					warn += d.Detail
				}
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("got errors %q, want %d", errs, len(tt.wantErrs))
			}
			for i, e := range errs {
				if !strings.Contains(e, tt.wantErrs[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, e, tt.wantErrs[i])
				}
			}
			if !strings.Contains(warn, tt.wantWarn) {
				t.Errorf("warnings %q, want %q", warn, tt.wantWarn)
			}
			if tt.want == nil {
				return
			}
			if diff := cmp.Diff(tt.want, m.Hosts[0].Labels); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSensitiveVariable(t *testing.T) {
	// A secret given with -var reaches the model only masked; its
	// derived values are masked too.
	m, diags := Load(Input{
		Paths: []string{"testdata/good/full.hcl"},
		Vars:  []string{"db_password=pa55 word"},
	})
	if diags.HasErrors() {
		t.Fatal(diags.Diags)
	}
	want := []string{"pa55 word", "replicator:pa55 word\n"}
	if diff := cmp.Diff(want, m.Sensitive); diff != "" {
		t.Errorf("Sensitive (-want +got):\n%s", diff)
	}
	if got := m.Mask("password is pa55 word."); got != "password is (sensitive)." {
		t.Errorf("Mask = %q", got)
	}
	for _, f := range m.Files {
		if f.Path == "/etc/pgherd/replication.pass" && !f.Sensitive {
			t.Errorf("%s is not sensitive", f.Path)
		}
		if f.Path == "/etc/motd" && f.Sensitive {
			t.Errorf("%s is sensitive", f.Path)
		}
	}
}
