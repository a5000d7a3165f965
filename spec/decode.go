package spec

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// decoded is a block's attributes, evaluated, converted and checked, with
// the defaults of the schema filled in.
type decoded struct {
	b      *blockIn
	schema *Block
	vals   map[string]cty.Value
	sens   map[string]bool
	rngs   map[string]hcl.Range
	bad    map[string]bool // attributes with an error, already reported
	// children are the nested blocks, by type.
	children map[string][]*blockIn
}

func (d *decoded) has(name string) bool { _, ok := d.vals[name]; return ok }

func (d *decoded) str(name string) string {
	if v, ok := d.vals[name]; ok {
		return v.AsString()
	}
	return ""
}

func (d *decoded) boolean(name string) bool {
	if v, ok := d.vals[name]; ok {
		return v.True()
	}
	return false
}

func (d *decoded) integer(name string) int {
	if v, ok := d.vals[name]; ok {
		i, _ := v.AsBigFloat().Int64()
		return int(i)
	}
	return 0
}

func (d *decoded) list(name string) []string {
	v, ok := d.vals[name]
	if !ok {
		return nil
	}
	out := []string{}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	return out
}

func (d *decoded) mapping(name string) map[string]string {
	v, ok := d.vals[name]
	if !ok {
		return nil
	}
	out := map[string]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		out[k.AsString()] = e.AsString()
	}
	return out
}

// rng is the range of an attribute's expression, or of the block header
// when the attribute is absent.
func (d *decoded) rng(name string) *hcl.Range {
	if r, ok := d.rngs[name]; ok {
		return &r
	}
	return d.b.blk.DefRange.Ptr()
}

// defaults returns the schema's defaults for a block that is absent.
func defaults(schema *Block) *decoded {
	d := &decoded{schema: schema, vals: map[string]cty.Value{}, sens: map[string]bool{}, rngs: map[string]hcl.Range{}, bad: map[string]bool{}}
	for _, a := range schema.Attrs {
		if a.Default != cty.NilVal {
			d.vals[a.Name] = a.Default
		}
	}
	return d
}

func (l *loader) decodeBlock(b *blockIn) *decoded {
	return l.decodeWith(b, blockSchema(b.blk.Type))
}

// decodeWith decodes a block with its schema; nested blocks are left in
// children, undecoded.
func (l *loader) decodeWith(b *blockIn, schema *Block) *decoded {
	d := &decoded{b: b, schema: schema, vals: map[string]cty.Value{}, sens: map[string]bool{}, rngs: map[string]hcl.Range{}, bad: map[string]bool{},
		children: map[string][]*blockIn{}}
	content, diags := b.blk.Body.Content(schema.bodySchema())
	l.diags = append(l.diags, diags...)
	for _, c := range content.Blocks {
		d.children[c.Type] = append(d.children[c.Type], &blockIn{blk: c, file: b.file})
	}
	for i := range schema.Attrs {
		a := &schema.Attrs[i]
		if attr, ok := content.Attributes[a.Name]; ok {
			v, sens, good := l.evalAttr(b.file.ctx, attr, a)
			if !good {
				d.bad[a.Name] = true
				continue
			}
			if v != cty.NilVal {
				d.vals[a.Name] = v
				d.sens[a.Name] = sens
				d.rngs[a.Name] = attr.Expr.Range()
				continue
			}
		}
		if a.Required {
			l.errorf(b.blk.DefRange.Ptr(), "Missing required argument",
				"The argument %q is required in a %s block.", a.Name, b.blk.Type)
			d.bad[a.Name] = true
			continue
		}
		if a.Default != cty.NilVal {
			d.vals[a.Name] = a.Default
		}
	}
	return d
}

// evalAttr evaluates an attribute, converts it to its type and checks it.
// A null value is returned as cty.NilVal: the attribute is unset. ok is
// false when there was an error, or when the value depends on a variable
// that has none (an error already reported).
func (l *loader) evalAttr(ctx *hcl.EvalContext, attr *hcl.Attribute, a *Attr) (v cty.Value, sensitive bool, ok bool) {
	if !l.checkRefs(attr.Expr) {
		return cty.NilVal, false, false
	}
	val, diags := attr.Expr.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false, false
	}
	uv, pvm := val.UnmarkDeepWithPaths()
	sensitive = len(pvm) > 0
	if !uv.IsWhollyKnown() {
		return cty.NilVal, sensitive, false
	}
	if uv.IsNull() {
		return cty.NilVal, sensitive, true
	}
	rng := attr.Expr.Range()
	cv, err := convert.Convert(uv, a.Type)
	if err != nil {
		l.errorf(&rng, "Incorrect attribute value type",
			"Inappropriate value for attribute %q: %s.", a.Name, err)
		return cty.NilVal, sensitive, false
	}
	if (cv.Type().IsListType() || cv.Type().IsMapType()) && !cv.IsNull() {
		for it := cv.ElementIterator(); it.Next(); {
			if _, e := it.Element(); e.IsNull() {
				l.errorf(&rng, "Invalid value", "The elements of %q must not be null.", a.Name)
				return cty.NilVal, sensitive, false
			}
		}
	}
	for _, pv := range pvm {
		sub, err := pv.Path.Apply(uv)
		if err != nil {
			continue
		}
		l.collectSensitive(sub)
	}
	cv, ok = l.checkValue(a, cv, sensitive, rng)
	return cv, sensitive, ok
}

func (l *loader) collectSensitive(v cty.Value) {
	_ = cty.Walk(v, func(_ cty.Path, v cty.Value) (bool, error) {
		if v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
			l.sensitive[v.AsString()] = true
		}
		return true, nil
	})
}

// checkValue checks a converted value against the attribute's enum and
// kind, returning it normalised.
func (l *loader) checkValue(a *Attr, v cty.Value, sensitive bool, rng hcl.Range) (cty.Value, bool) {
	if v.Type() == cty.Number {
		bf := v.AsBigFloat()
		i, acc := bf.Int64()
		if !bf.IsInt() || acc != big.Exact {
			l.errorf(&rng, "Invalid number", "The value of %q must be a whole number.", a.Name)
			return v, false
		}
		switch {
		case a.Kind == KindPort && (i < 1 || i > 65535):
			l.errorf(&rng, "Invalid port", "The value of %q must be a port number, 1 to 65535.", a.Name)
			return v, false
		case a.Kind == KindID && (i < 0 || i > 1<<31-1):
			l.errorf(&rng, "Invalid id", "The value of %q must be an integer from 0 to 2147483647.", a.Name)
			return v, false
		}
		return v, true
	}
	if v.Type() != cty.String {
		return v, true
	}
	s := v.AsString()
	if len(a.Enum) > 0 && !contains(a.Enum, s) {
		l.errorf(&rng, "Invalid value for "+a.Name,
			"The value %s is not allowed here; use one of %s.", quoteValue(s, sensitive), quoteList(a.Enum))
		return v, false
	}
	switch a.Kind {
	case KindMode:
		m, ok := normalizeMode(s)
		if !ok {
			l.errorf(&rng, "Invalid mode",
				"The mode %s is not valid: give it as an octal number in a string, such as \"0644\", at most \"07777\".", quoteValue(s, sensitive))
			return v, false
		}
		return cty.StringVal(m), true
	case KindDuration:
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			l.errorf(&rng, "Invalid duration",
				"The value %s of %q is not a positive duration: write it like \"10s\", \"1m30s\" or \"2h\".", quoteValue(s, sensitive), a.Name)
			return v, false
		}
	case KindAbsPath:
		if msg := checkAbsPath(s); msg != "" {
			l.errorf(&rng, "Invalid path", "The path %s %s.", quoteValue(s, sensitive), msg)
			return v, false
		}
	case KindPath:
		if s == "" {
			l.errorf(&rng, "Invalid path", "The value of %q must not be empty.", a.Name)
			return v, false
		}
	case KindAddress:
		if !validAddress(s) {
			l.errorf(&rng, "Invalid address",
				"The address %s is neither an IP address nor a valid DNS host name.", quoteValue(s, sensitive))
			return v, false
		}
	case KindSize:
		n, err := parseSize(s)
		if err != nil {
			l.errorf(&rng, "Invalid size",
				"The value %s of %q is not a size: %s. Write a number of bytes, or a number with a unit such as \"16MB\" (B, kB, MB, GB, TB).", quoteValue(s, sensitive), a.Name, err)
			return v, false
		}
		return cty.StringVal(strconv.FormatInt(n, 10)), true
	case KindCIDR:
		if _, err := netip.ParsePrefix(s); err != nil {
			l.errorf(&rng, "Invalid CIDR",
				"The value %s of %q is not an address with a prefix length, such as \"10.0.0.100/24\".", quoteValue(s, sensitive), a.Name)
			return v, false
		}
	case KindHBAAddr:
		if _, err := netip.ParsePrefix(s); err != nil && s != "all" && s != "samehost" && s != "samenet" {
			l.errorf(&rng, "Invalid address",
				"The value %s of %q is neither a CIDR, such as \"10.0.0.0/24\", nor one of \"all\", \"samehost\", \"samenet\".", quoteValue(s, sensitive), a.Name)
			return v, false
		}
	case KindJumpHost:
		if !validJumpHost(s) {
			l.errorf(&rng, "Invalid jump host",
				"The jump host %s is not of the form [user@]host[:port].", quoteValue(s, sensitive))
			return v, false
		}
	}
	return v, true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

var octal = regexp.MustCompile(`^0?[0-7]{3,4}$`)

// normalizeMode returns an octal mode as four digits: "644" → "0644".
func normalizeMode(s string) (string, bool) {
	if !octal.MatchString(s) {
		return "", false
	}
	s = strings.TrimPrefix(s, "0")
	if len(s) > 4 || (len(s) == 4 && s[0] > '7') {
		return "", false
	}
	for len(s) < 4 {
		s = "0" + s
	}
	return s, true
}

// checkAbsPath says what is wrong with a path that must be absolute and
// clean, or "".
func checkAbsPath(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "is relative: it must be absolute, starting with \"/\""
	case path.Clean(p) != p:
		return fmt.Sprintf("is not clean: write it %q", path.Clean(p))
	case strings.ContainsAny(p, "\x00\n"):
		return "holds a NUL or newline character"
	}
	return ""
}

var dnsLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func validAddress(s string) bool {
	if isIP(s) {
		return true
	}
	h := strings.TrimSuffix(s, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, lb := range labels {
		if !dnsLabel.MatchString(lb) {
			return false
		}
	}
	// An all-numeric name is a malformed IPv4 address, not a host name.
	return !regexp.MustCompile(`^[0-9.]+$`).MatchString(h)
}

func validJumpHost(s string) bool {
	if u, rest, ok := strings.Cut(s, "@"); ok {
		if u == "" || strings.ContainsAny(u, " :/") {
			return false
		}
		s = rest
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") { // [v6]:port
		end := strings.Index(s, "]")
		if end < 0 {
			return false
		}
		host, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		if !isIP(host) || (s[end+1:] != "" && !strings.HasPrefix(s[end+1:], ":")) {
			return false
		}
	} else if h, p, ok := strings.Cut(s, ":"); ok {
		host, port = h, p
		if p == "" {
			return false
		}
	}
	if port != "" {
		n := 0
		for _, c := range port {
			if c < '0' || c > '9' || n > 65535 {
				return false
			}
			n = n*10 + int(c-'0')
		}
		if n < 1 || n > 65535 {
			return false
		}
	}
	return validAddress(host)
}

var (
	hostName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	packageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	unixName    = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}\$?$`)
	unitName    = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+$`)
	sysctlKey   = regexp.MustCompile(`^[a-z0-9_]+([./][A-Za-z0-9_-]+)+$`)
)

// checkLabel checks a block's label against a pattern.
func (l *loader) checkLabel(b *blockIn, ok bool, summary, detail string) bool {
	if !ok {
		l.errorf(b.blk.LabelRanges[0].Ptr(), summary, "%s", detail)
	}
	return ok
}

// declare records a resource address; false when it is a duplicate.
func (l *loader) declare(b *blockIn, name string) bool {
	addr := b.blk.Type + "." + name
	if prev, ok := l.addrs[addr]; ok {
		l.errorf(b.blk.DefRange.Ptr(), "Duplicate "+b.blk.Type+" block",
			"The %s %q was already declared at %s; each resource is declared once.", b.blk.Type, name, posString(prev))
		return false
	}
	l.addrs[addr] = b.blk.DefRange
	return true
}

func (l *loader) resourceAddrs() []string {
	var out []string
	for a := range l.addrs {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// target reads hosts and roles, and checks them once every host is known.
func (l *loader) target(d *decoded) Target {
	t := Target{Hosts: d.list("hosts"), Roles: d.list("roles")}
	if d.has("hosts") {
		r := d.rng("hosts")
		l.later = append(l.later, func() {
			var names []string
			for n := range l.hosts {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, h := range t.Hosts {
				if _, ok := l.hosts[h]; !ok {
					l.errorf(r, "Unknown host in target",
						"No host named %q is declared.%s", h, suggest(h, names))
				}
			}
		})
	}
	if d.has("roles") {
		r := d.rng("roles")
		l.later = append(l.later, func() {
			var roles []string
			for n := range l.roles {
				roles = append(roles, n)
			}
			sort.Strings(roles)
			for _, role := range t.Roles {
				if !l.roles[role] {
					l.errorf(r, "Unknown role in target",
						"No host has the role %q.%s", role, suggest(role, roles))
				}
			}
		})
	}
	return t
}

func (l *loader) state(d *decoded) State { return State(d.str("state")) }

func (l *loader) homeDir() string {
	if h, ok := envValue(l.in.Environ, "HOME"); ok && h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

func (l *loader) expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h := l.homeDir(); h != "" {
			return filepath.Join(h, strings.TrimPrefix(p, "~"))
		}
	}
	return p
}

func (l *loader) decodeSSH(blocks []*blockIn) {
	schema := blockSchema("ssh")
	d := defaults(schema)
	for i, b := range blocks {
		if i == 0 {
			d = l.decodeBlock(b)
			continue
		}
		l.errorf(b.blk.DefRange.Ptr(), "Duplicate ssh block",
			"Only one ssh block is allowed; the first is at %s.", posString(blocks[0].blk.DefRange))
		l.decodeBlock(b) // for its own errors
	}
	s := SSH{
		User:           d.str("user"),
		Port:           d.integer("port"),
		PrivateKeyFile: l.expandHome(d.str("private_key_file")),
		KnownHostsFile: l.expandHome(d.str("known_hosts_file")),
		HostKeyCheck:   HostKeyCheck(d.str("host_key_check")),
		JumpHost:       d.str("jump_host"),
		Sudo:           d.boolean("sudo"),
	}
	if d.has("use_agent") {
		s.UseAgent = d.boolean("use_agent")
	} else {
		sock, _ := envValue(l.in.Environ, "SSH_AUTH_SOCK")
		s.UseAgent = sock != ""
	}
	s.ConnectTimeout, _ = time.ParseDuration(d.str("connect_timeout"))
	s.CommandTimeout, _ = time.ParseDuration(d.str("command_timeout"))
	l.m.SSH = s
}

func (l *loader) decodeHost(b *blockIn) {
	name := b.blk.Labels[0]
	if !l.checkLabel(b, hostName.MatchString(name), "Invalid host name",
		"A host name starts with a letter or digit and holds only letters, digits, dots, dashes and underscores.") {
		return
	}
	if prev, ok := l.hosts[name]; ok {
		l.errorf(b.blk.DefRange.Ptr(), "Duplicate host",
			"A host named %q was already declared at %s; host names must be unique.", name, posString(prev))
		return
	}
	l.hosts[name] = b.blk.DefRange
	d := l.decodeBlock(b)
	h := Host{
		Name:    name,
		Address: d.str("address"),
		User:    d.str("user"),
		Port:    d.integer("port"),
		Labels:  d.mapping("labels"),
		Roles:   d.list("roles"),
		Range:   b.blk.DefRange,
	}
	for _, r := range h.Roles {
		l.roles[r] = true
	}
	l.m.Hosts = append(l.m.Hosts, h)
}

func (l *loader) decodePackage(b *blockIn) {
	name := b.blk.Labels[0]
	if !l.checkLabel(b, packageName.MatchString(name), "Invalid package name",
		fmt.Sprintf("%q is not a valid Debian package name (lower case letters, digits, and + - .).", name)) || !l.declare(b, name) {
		return
	}
	d := l.decodeBlock(b)
	l.m.Packages = append(l.m.Packages, Package{
		Name: name, Version: d.str("version"), Hold: d.boolean("hold"),
		State: l.state(d), Target: l.target(d), Range: b.blk.DefRange,
	})
}

func (l *loader) decodeFile(b *blockIn) {
	p := b.blk.Labels[0]
	if msg := checkAbsPath(p); msg != "" {
		l.errorf(b.blk.LabelRanges[0].Ptr(), "Invalid path", "The path %q %s.", p, msg)
		return
	}
	if !l.declare(b, p) {
		return
	}
	d := l.decodeBlock(b)
	f := File{
		Path: p, Owner: d.str("owner"), Group: d.str("group"), Mode: d.str("mode"),
		State: l.state(d), Target: l.target(d), Range: b.blk.DefRange,
	}
	sensitive := d.boolean("sensitive") || d.sens["content"] || d.sens["source"]
	switch {
	case d.bad["content"] || d.bad["source"]:
		// already reported
	case d.has("content") && d.has("source"):
		l.errorf(d.rng("source"), "Conflicting arguments",
			"A file takes its content from either content or source, not both.")
	case d.has("content"):
		f.Content = d.str("content")
	case d.has("source"):
		src := d.str("source")
		content, err := readFile(b.file.dir, src)
		if err != nil {
			detail := err.Error()
			if d.sens["source"] {
				detail = "the path is sensitive"
			}
			l.errorf(d.rng("source"), "Cannot read source file",
				"The source of file %q cannot be read: %s. A relative source is read from the directory of the spec file, %s.", p, detail, b.file.dir)
		}
		f.Content = content
	case f.State == Present:
		l.errorf(b.blk.DefRange.Ptr(), "Missing file content",
			"The file %q needs its content: set exactly one of content or source.", p)
	}
	f.Sensitive = sensitive
	if sensitive {
		l.sensitive[f.Content] = true
	}
	f.Notify = l.notify(d)
	l.m.Files = append(l.m.Files, f)
}

// serviceName adds ".service" to a unit name without a suffix.
func serviceName(n string) string {
	if strings.Contains(n, ".") {
		return n
	}
	return n + ".service"
}

// notify reads and normalises notify, and checks it once every resource
// is known.
func (l *loader) notify(d *decoded) []string {
	list := d.list("notify")
	if list == nil {
		return nil
	}
	r := d.rng("notify")
	for i, n := range list {
		if kind, name, ok := strings.Cut(n, "."); ok && kind == "service" {
			list[i] = kind + "." + serviceName(name)
		}
	}
	l.later = append(l.later, func() {
		for i, addr := range list {
			if _, ok := l.addrs[addr]; !ok {
				l.errorf(r, "Reference to undeclared resource",
					"notify names %q, which is not declared.%s Name a resource as kind.name, such as \"service.nginx\".",
					d.list("notify")[i], suggest(addr, l.resourceAddrs()))
			}
		}
	})
	return list
}

func (l *loader) decodeDirectory(b *blockIn) {
	p := b.blk.Labels[0]
	if msg := checkAbsPath(p); msg != "" {
		l.errorf(b.blk.LabelRanges[0].Ptr(), "Invalid path", "The path %q %s.", p, msg)
		return
	}
	if !l.declare(b, p) {
		return
	}
	d := l.decodeBlock(b)
	l.m.Directories = append(l.m.Directories, Directory{
		Path: p, Owner: d.str("owner"), Group: d.str("group"), Mode: d.str("mode"),
		State: l.state(d), Target: l.target(d), Range: b.blk.DefRange,
	})
}

func (l *loader) decodeGroup(b *blockIn) {
	name := b.blk.Labels[0]
	if !l.checkLabel(b, unixName.MatchString(name), "Invalid group name",
		fmt.Sprintf("%q is not a valid group name (lower case letters, digits, _ and -, at most 32).", name)) || !l.declare(b, name) {
		return
	}
	d := l.decodeBlock(b)
	l.m.Groups = append(l.m.Groups, Group{
		Name: name, GID: d.integer("gid"), System: d.boolean("system"),
		State: l.state(d), Target: l.target(d), Range: b.blk.DefRange,
	})
}

func (l *loader) decodeUser(b *blockIn) {
	name := b.blk.Labels[0]
	if !l.checkLabel(b, unixName.MatchString(name), "Invalid user name",
		fmt.Sprintf("%q is not a valid user name (lower case letters, digits, _ and -, at most 32).", name)) || !l.declare(b, name) {
		return
	}
	d := l.decodeBlock(b)
	l.m.Users = append(l.m.Users, User{
		Name: name, UID: d.integer("uid"), Group: d.str("group"), Groups: d.list("groups"),
		Home: d.str("home"), Shell: d.str("shell"), System: d.boolean("system"),
		State: l.state(d), Target: l.target(d), Range: b.blk.DefRange,
	})
}

func (l *loader) decodeService(b *blockIn) {
	name := b.blk.Labels[0]
	if !l.checkLabel(b, unitName.MatchString(name), "Invalid unit name",
		fmt.Sprintf("%q is not a valid systemd unit name.", name)) || !l.declare(b, serviceName(name)) {
		return
	}
	d := l.decodeBlock(b)
	s := Service{
		Name: serviceName(name), State: d.str("state"), Reload: d.boolean("reload"),
		Unit: d.str("unit"), Target: l.target(d), Range: b.blk.DefRange,
	}
	if d.has("enabled") {
		e := d.boolean("enabled")
		s.Enabled = &e
	}
	l.m.Services = append(l.m.Services, s)
}

func (l *loader) decodeSysctl(b *blockIn) {
	key := b.blk.Labels[0]
	if !l.checkLabel(b, sysctlKey.MatchString(key), "Invalid sysctl key",
		fmt.Sprintf("%q is not a kernel parameter name such as \"vm.swappiness\".", key)) || !l.declare(b, key) {
		return
	}
	d := l.decodeBlock(b)
	l.m.Sysctls = append(l.m.Sysctls, Sysctl{
		Key: key, Value: d.str("value"), Target: l.target(d), Range: b.blk.DefRange,
	})
}

func isIP(s string) bool { return net.ParseIP(s) != nil }
