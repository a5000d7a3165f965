package spec

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// markSensitive is the cty mark of values derived from sensitive variables.
const markSensitive = "sensitive"

// envVarPrefix prefixes the environment variables that set spec variables.
const envVarPrefix = "PGHERD_VAR_"

type variable struct {
	name      string
	typ       cty.Type
	def       cty.Value // cty.NilVal when there is no default
	sensitive bool
	rng       hcl.Range
	invalid   bool // its declaration has errors (already reported)

	val cty.Value // cty.NilVal until set
}

func (l *loader) variable(name string) *variable {
	for _, v := range l.vars {
		if v.name == name {
			return v
		}
	}
	return nil
}

func (l *loader) varNames() []string {
	var names []string
	for _, v := range l.vars {
		names = append(names, v.name)
	}
	return names
}

func (l *loader) declareVariables(blocks []*blockIn) {
	schema := blockSchema("variable")
	for _, b := range blocks {
		name := b.blk.Labels[0]
		rng := b.blk.DefRange
		if !hclsyntax.ValidIdentifier(name) {
			l.errorf(&b.blk.LabelRanges[0], "Invalid variable name",
				"A variable name must start with a letter and hold only letters, digits, underscores and dashes.")
			continue
		}
		if prev := l.variable(name); prev != nil {
			l.errorf(&rng, "Duplicate variable", "A variable named %q was already declared at %s.", name, posString(prev.rng))
			continue
		}
		v := &variable{name: name, typ: cty.DynamicPseudoType, rng: rng}
		l.vars = append(l.vars, v)
		content, diags := b.blk.Body.Content(schema.bodySchema())
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			v.invalid = true
		}
		if a, ok := content.Attributes["type"]; ok {
			ty, diags := typeexpr.TypeConstraint(a.Expr)
			l.diags = append(l.diags, diags...)
			if diags.HasErrors() {
				v.invalid = true
			} else {
				v.typ = ty
			}
		}
		if a, ok := content.Attributes["sensitive"]; ok {
			if val, ok := l.constant(a, cty.Bool); ok {
				v.sensitive = val.True()
			} else {
				v.invalid = true
			}
		}
		if a, ok := content.Attributes["description"]; ok {
			if _, ok := l.constant(a, cty.String); !ok {
				v.invalid = true
			}
		}
		if a, ok := content.Attributes["default"]; ok {
			val, diags := a.Expr.Value(nil)
			l.diags = append(l.diags, diags...)
			switch {
			case diags.HasErrors():
				v.invalid = true
			case val.IsNull():
				// default = null is no default.
			default:
				cv, err := convert.Convert(val, v.typ)
				if err != nil {
					l.errorf(a.Expr.Range().Ptr(), "Invalid default value for variable",
						"The default of variable %q does not match its type: %s.", name, err)
					v.invalid = true
				} else {
					v.def = cv
				}
			}
		}
	}
}

// constant evaluates an attribute that may not refer to anything.
func (l *loader) constant(a *hcl.Attribute, ty cty.Type) (cty.Value, bool) {
	val, diags := a.Expr.Value(nil)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	cv, err := convert.Convert(val, ty)
	if err != nil || cv.IsNull() || !cv.IsWhollyKnown() {
		msg := "a value is required"
		if err != nil {
			msg = err.Error()
		}
		l.errorf(a.Expr.Range().Ptr(), "Incorrect attribute value type",
			"Inappropriate value for attribute %q: %s.", a.Name, msg)
		return cty.NilVal, false
	}
	return cv, true
}

// parseRawValue turns a -var or environment value into a value of type ty.
// Like Terraform, a value for a primitive type is taken literally; one for
// another type is parsed as an HCL expression (and, for an unconstrained
// variable, taken as a string when it does not parse).
func parseRawValue(raw string, ty cty.Type) (cty.Value, error) {
	if ty.IsPrimitiveType() {
		return convert.Convert(cty.StringVal(raw), ty)
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), "<value>", hcl.InitialPos)
	var val cty.Value
	if !diags.HasErrors() {
		val, diags = expr.Value(nil)
	}
	if diags.HasErrors() {
		if ty == cty.DynamicPseudoType {
			return cty.StringVal(raw), nil
		}
		return cty.NilVal, fmt.Errorf("%s is required, and the value is not a valid HCL expression", typeexpr.TypeString(ty))
	}
	return convert.Convert(val, ty)
}

// assignVariables sets every variable's value: default, environment,
// -var-file, -var, in increasing precedence.
func (l *loader) assignVariables() {
	for _, v := range l.vars {
		v.val = v.def
	}
	for _, kv := range l.in.Environ {
		k, raw, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, envVarPrefix) {
			continue
		}
		name := strings.TrimPrefix(k, envVarPrefix)
		v := l.variable(name)
		if v == nil || v.invalid {
			continue // like Terraform: the environment may hold more
		}
		val, err := parseRawValue(raw, v.typ)
		if err != nil {
			l.errorf(nil, "Invalid value for variable",
				"The value of the environment variable %s is not valid for variable %q: %s.", k, name, err)
			continue
		}
		v.val = val
	}
	for _, path := range l.in.VarFiles {
		l.readVarFile(path)
	}
	for _, opt := range l.in.Vars {
		name, raw, ok := strings.Cut(opt, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			l.errorf(nil, "Invalid -var option",
				"The option -var %q is not of the form name=value.", name)
			continue
		}
		v := l.variable(name)
		if v == nil {
			l.errorf(nil, "Value for undeclared variable",
				"A -var option sets %q, which is not declared in the spec.%s Declare it with a variable %q block.",
				name, suggest(name, l.varNames()), name)
			continue
		}
		if v.invalid {
			continue
		}
		val, err := parseRawValue(raw, v.typ)
		if err != nil {
			l.errorf(nil, "Invalid value for variable",
				"The value given with -var for variable %q is not valid: %s.", name, err)
			continue
		}
		v.val = val
	}
	for _, v := range l.vars {
		if v.invalid {
			v.val = cty.DynamicVal
			continue
		}
		if v.val == cty.NilVal {
			l.errorf(v.rng.Ptr(), "No value for required variable",
				"The variable %q has no default and no value was given. Set it with -var '%s=...', in a -var-file, or with the environment variable %s%s.",
				v.name, v.name, envVarPrefix, v.name)
			v.val = cty.DynamicVal
			continue
		}
		if v.sensitive {
			l.collectSensitive(v.val)
			v.val = v.val.Mark(markSensitive)
		}
	}
}

func (l *loader) readVarFile(path string) {
	src, err := os.ReadFile(path)
	if err != nil {
		l.errorf(nil, "Cannot read variable file", "%s.", err)
		return
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	l.diags = append(l.diags, diags...)
	if f == nil {
		return
	}
	l.files[path] = f
	if diags.HasErrors() {
		return
	}
	attrs, diags := f.Body.JustAttributes()
	l.diags = append(l.diags, diags...)
	for _, a := range sortedAttrs(attrs) {
		v := l.variable(a.Name)
		if v == nil {
			l.warnf(a.NameRange.Ptr(), "Value for undeclared variable",
				"The variable file sets %q, which is not declared in the spec.%s", a.Name, suggest(a.Name, l.varNames()))
			continue
		}
		val, diags := a.Expr.Value(nil)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() || v.invalid {
			continue
		}
		cv, err := convert.Convert(val, v.typ)
		if err != nil {
			l.errorf(a.Expr.Range().Ptr(), "Invalid value for variable",
				"The value for variable %q does not match its type: %s.", a.Name, err)
			continue
		}
		if cv.IsNull() {
			continue
		}
		v.val = cv
	}
}

func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	var out []*hcl.Attribute
	for _, a := range attrs {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *hcl.Attribute) int { return a.Range.Start.Byte - b.Range.Start.Byte })
	return out
}

// varObject is the value of "var" in expressions.
func (l *loader) varObject() map[string]cty.Value {
	attrs := map[string]cty.Value{}
	for _, v := range l.vars {
		attrs[v.name] = v.val
	}
	return map[string]cty.Value{"var": cty.ObjectVal(attrs)}
}

// checkRefs reports references to undeclared variables in expr; false
// when there is one, and expr is then not evaluated.
func (l *loader) checkRefs(expr hcl.Expression) bool {
	ok := true
	for _, t := range expr.Variables() {
		if t.RootName() != "var" || len(t) < 2 {
			continue
		}
		attr, isAttr := t[1].(hcl.TraverseAttr)
		if !isAttr || l.variable(attr.Name) != nil {
			continue
		}
		rng := t.SourceRange()
		l.errorf(&rng, "Reference to undeclared input variable",
			"An input variable named %q has not been declared.%s Declare it with a variable %q block.",
			attr.Name, suggest(attr.Name, l.varNames()), attr.Name)
		ok = false
	}
	return ok
}
