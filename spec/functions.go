package spec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// maxFileSize bounds what file, templatefile and a file's source read.
const maxFileSize = 16 << 20

var errNotRegular = errors.New("not a regular file")

// readFile reads a regular file of at most maxFileSize bytes, relative to
// dir when not absolute.
func readFile(dir, path string) (string, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s: %w", path, errNotRegular)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxFileSize {
		return "", fmt.Errorf("%s: larger than %d MiB", path, maxFileSize>>20)
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%s: not UTF-8 text", path)
	}
	return string(b), nil
}

// functions returns the functions available in expressions of a spec file
// in dir. Templates get every function but templatefile.
func functions(dir string, withTemplate bool) map[string]function.Function {
	fs := map[string]function.Function{
		"abs":           stdlib.AbsoluteFunc,
		"ceil":          stdlib.CeilFunc,
		"chomp":         stdlib.ChompFunc,
		"chunklist":     stdlib.ChunklistFunc,
		"coalesce":      stdlib.CoalesceFunc,
		"coalescelist":  stdlib.CoalesceListFunc,
		"compact":       stdlib.CompactFunc,
		"concat":        stdlib.ConcatFunc,
		"contains":      stdlib.ContainsFunc,
		"csvdecode":     stdlib.CSVDecodeFunc,
		"distinct":      stdlib.DistinctFunc,
		"element":       stdlib.ElementFunc,
		"flatten":       stdlib.FlattenFunc,
		"floor":         stdlib.FloorFunc,
		"format":        stdlib.FormatFunc,
		"formatlist":    stdlib.FormatListFunc,
		"indent":        stdlib.IndentFunc,
		"join":          stdlib.JoinFunc,
		"jsondecode":    stdlib.JSONDecodeFunc,
		"jsonencode":    stdlib.JSONEncodeFunc,
		"keys":          stdlib.KeysFunc,
		"length":        stdlib.LengthFunc,
		"lookup":        stdlib.LookupFunc,
		"lower":         stdlib.LowerFunc,
		"max":           stdlib.MaxFunc,
		"merge":         stdlib.MergeFunc,
		"min":           stdlib.MinFunc,
		"parseint":      stdlib.ParseIntFunc,
		"range":         stdlib.RangeFunc,
		"regex":         stdlib.RegexFunc,
		"regexall":      stdlib.RegexAllFunc,
		"regex_replace": stdlib.RegexReplaceFunc,
		"replace":       stdlib.ReplaceFunc,
		"reverse":       stdlib.ReverseListFunc,
		"setunion":      stdlib.SetUnionFunc,
		"slice":         stdlib.SliceFunc,
		"sort":          stdlib.SortFunc,
		"split":         stdlib.SplitFunc,
		"strrev":        stdlib.ReverseFunc,
		"substr":        stdlib.SubstrFunc,
		"title":         stdlib.TitleFunc,
		"tobool":        stdlib.MakeToFunc(cty.Bool),
		"tolist":        stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":         stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber":      stdlib.MakeToFunc(cty.Number),
		"tostring":      stdlib.MakeToFunc(cty.String),
		"trim":          stdlib.TrimFunc,
		"trimprefix":    stdlib.TrimPrefixFunc,
		"trimspace":     stdlib.TrimSpaceFunc,
		"trimsuffix":    stdlib.TrimSuffixFunc,
		"upper":         stdlib.UpperFunc,
		"values":        stdlib.ValuesFunc,
		"zipmap":        stdlib.ZipmapFunc,
		"file":          fileFunc(dir),
	}
	if withTemplate {
		fs["templatefile"] = templateFileFunc(dir)
	}
	return fs
}

// FunctionNames lists the functions available in expressions, sorted.
func FunctionNames() []string {
	var names []string
	for n := range functions("", true) {
		names = append(names, n)
	}
	sortStrings(names)
	return names
}

func fileFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Description: "Reads a file, relative to the spec file's directory.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String, AllowMarked: true}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p, marks := args[0].Unmark()
			s, err := readFile(dir, p.AsString())
			if err != nil {
				return cty.NilVal, maskErr(err, len(marks) > 0)
			}
			return cty.StringVal(s).WithMarks(marks), nil
		},
	})
}

func templateFileFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Description: "Renders a file as an HCL template with the given variables.",
		Params: []function.Parameter{
			{Name: "path", Type: cty.String, AllowMarked: true},
			{Name: "vars", Type: cty.DynamicPseudoType, AllowMarked: true},
		},
		Type: function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p, pmarks := args[0].Unmark()
			src, err := readFile(dir, p.AsString())
			if err != nil {
				return cty.NilVal, maskErr(err, len(pmarks) > 0)
			}
			vars, vmarks := args[1].Unmark()
			marks := cty.NewValueMarks()
			for m := range pmarks {
				marks[m] = struct{}{}
			}
			for m := range vmarks {
				marks[m] = struct{}{}
			}
			if vars.IsNull() || !vars.CanIterateElements() || !(vars.Type().IsObjectType() || vars.Type().IsMapType()) {
				return cty.NilVal, function.NewArgErrorf(1, "vars must be an object or a map")
			}
			if !vars.IsKnown() {
				return cty.UnknownVal(cty.String).WithMarks(marks), nil
			}
			ctxVars := map[string]cty.Value{}
			for it := vars.ElementIterator(); it.Next(); {
				k, v := it.Element()
				name := k.AsString()
				if !hclsyntax.ValidIdentifier(name) {
					return cty.NilVal, function.NewArgErrorf(1, "invalid template variable name %q: must start with a letter, followed by letters, digits, underscores or dashes", name)
				}
				ctxVars[name] = v
			}
			expr, diags := hclsyntax.ParseTemplate([]byte(src), p.AsString(), hcl.InitialPos)
			if diags.HasErrors() {
				return cty.NilVal, diags
			}
			ctx := &hcl.EvalContext{Variables: ctxVars, Functions: functions(dir, false)}
			val, diags := expr.Value(ctx)
			if diags.HasErrors() {
				return cty.NilVal, diags
			}
			val, err = convert.Convert(val, cty.String)
			if err != nil {
				return cty.NilVal, fmt.Errorf("template result: %w", err)
			}
			return val.WithMarks(marks), nil
		},
	})
}

// errSensitivePath stands for an error about a file whose path is
// sensitive: the path must not appear in a message.
var errSensitivePath = errors.New("cannot read the file (its path is sensitive)")

func maskErr(err error, sensitive bool) error {
	if sensitive {
		return errSensitivePath
	}
	return err
}
