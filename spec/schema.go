package spec

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Kind says how the string value of an attribute is checked beyond its type.
type Kind string

// Kinds of attribute values.
const (
	KindPlain    Kind = ""
	KindMode     Kind = "mode"     // octal file mode, at most 07777
	KindDuration Kind = "duration" // Go duration such as "10s" or "1m30s"
	KindAbsPath  Kind = "abspath"  // absolute, clean path
	KindPath     Kind = "path"     // path on the operator's machine; "~" expanded
	KindAddress  Kind = "address"  // IP address or DNS hostname
	KindJumpHost Kind = "jumphost" // [user@]host[:port]
	KindPort     Kind = "port"     // 1 to 65535
	KindID       Kind = "id"       // uid or gid, 1 to 2^31-1
	KindHostRefs Kind = "hostrefs" // names of declared hosts
	KindRoleRefs Kind = "rolerefs" // roles of declared hosts
	KindNotify   Kind = "notify"   // addresses of declared resources
	KindSize     Kind = "size"     // bytes, or a number with a unit such as "16MB"
	KindCIDR     Kind = "cidr"     // address/prefix length, such as "10.0.0.0/24"
	KindHBAAddr  Kind = "hbaaddr"  // a CIDR, or all, samehost, samenet
	KindDNSLabel Kind = "dnslabel" // lower-case letters, digits and dashes
)

var kindDocs = map[Kind]string{
	KindMode:     "an octal mode as a string, such as `\"0640\"`, at most `\"07777\"`",
	KindDuration: "a duration such as `\"10s\"`, `\"1m30s\"`, `\"2h\"`",
	KindAbsPath:  "an absolute, clean path",
	KindPath:     "a path on the machine running pgherd; `~` is expanded",
	KindAddress:  "an IP address or a DNS host name",
	KindJumpHost: "`[user@]host[:port]`",
	KindPort:     "a TCP port, 1 to 65535",
	KindID:       "a positive integer",
	KindHostRefs: "names of declared `host` blocks",
	KindRoleRefs: "roles given to at least one `host`",
	KindNotify:   "resource addresses such as `\"service.nginx\"` or `\"file./etc/motd\"`",
	KindSize:     "a size: a number of bytes, or a string with a unit such as `\"16MB\"` (`B`, `kB`, `MB`, `GB`, `TB`; 1kB = 1024 bytes, as in PostgreSQL)",
	KindCIDR:     "an address with a prefix length, such as `\"10.0.0.100/24\"`",
	KindHBAAddr:  "a CIDR such as `\"10.0.0.0/24\"`, or `all`, `samehost`, `samenet`",
	KindDNSLabel: "at most 63 lower-case letters, digits and dashes, starting with a letter and not ending with a dash",
}

// Attr describes one attribute of a block.
type Attr struct {
	Name string
	// Type is the type the value is converted to.
	Type cty.Type
	// Kind adds a check on the value.
	Kind     Kind
	Required bool
	// Default is used when the attribute is absent; cty.NilVal for none.
	Default cty.Value
	// DefaultDoc describes the default in the docs when it is not a
	// constant (or to say more than the value).
	DefaultDoc string
	// Enum, when set, lists the only values allowed.
	Enum        []string
	Description string
}

// Block describes one kind of top-level block.
type Block struct {
	Type string
	// Label names the block's label ("" for a block without one).
	Label      string
	LabelKind  Kind
	LabelDoc   string
	AtMostOnce bool
	// Required is true for a nested block that must be given.
	Required bool
	// Repeatable is true for a nested block that may be given many times;
	// other nested blocks may be given at most once.
	Repeatable bool
	// Blocks are the nested blocks.
	Blocks []Block
	// Resource is true for the resource kinds, which can be targeted
	// (hosts, roles) and notified ("kind.label").
	Resource    bool
	Description string
	Attrs       []Attr
}

// Attr returns the attribute schema named name, or nil.
func (b *Block) Attr(name string) *Attr {
	for i := range b.Attrs {
		if b.Attrs[i].Name == name {
			return &b.Attrs[i]
		}
	}
	return nil
}

// Block returns the nested block schema of type typ, or nil.
func (b *Block) Block(typ string) *Block {
	for i := range b.Blocks {
		if b.Blocks[i].Type == typ {
			return &b.Blocks[i]
		}
	}
	return nil
}

func (b *Block) bodySchema() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, a := range b.Attrs {
		// Required attributes are checked by the decoder with a message
		// that says more than hcl's.
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a.Name})
	}
	for _, n := range b.Blocks {
		bs := hcl.BlockHeaderSchema{Type: n.Type}
		if n.Label != "" {
			bs.LabelNames = []string{n.Label}
		}
		s.Blocks = append(s.Blocks, bs)
	}
	return s
}

var (
	listOfString = cty.List(cty.String)
	mapOfString  = cty.Map(cty.String)
)

func targetAttrs() []Attr {
	return []Attr{
		{Name: "hosts", Type: listOfString, Kind: KindHostRefs,
			Description: "The hosts the resource applies to."},
		{Name: "roles", Type: listOfString, Kind: KindRoleRefs,
			Description: "The resource applies to the hosts that have any of these roles. With neither `hosts` nor `roles`, it applies to every host."},
	}
}

func stateAttr() Attr {
	return Attr{Name: "state", Type: cty.String, Default: cty.StringVal(string(Present)),
		Enum: []string{string(Present), string(Absent)}, Description: "Whether the resource should exist."}
}

func resource(b Block, withState bool) Block {
	b.Resource = true
	if withState {
		b.Attrs = append(b.Attrs, stateAttr())
	}
	b.Attrs = append(b.Attrs, targetAttrs()...)
	return b
}

// Schema is the language: every top-level block with its attributes. The
// decoder follows it and docs/spec.md is generated from it.
var Schema = []Block{
	{
		Type: "variable", Label: "name",
		LabelDoc:    "The variable's name, referenced as `var.<name>`.",
		Description: "An input variable. Its value comes, from lowest to highest precedence, from `default`, the environment variable `PGHERD_VAR_<name>`, `-var-file` files, and `-var name=value` flags. A `-var` or environment value of a `string`, `number` or `bool` variable is taken literally; one of another type is parsed as an HCL expression (`-var 'roles=[\"a\",\"b\"]'`).",
		Attrs: []Attr{
			{Name: "type", Type: cty.DynamicPseudoType, DefaultDoc: "`any`",
				Description: "A type constraint: `string`, `number`, `bool`, `list(string)`, `map(string)`, … (written as a keyword, not a string)."},
			{Name: "default", Type: cty.DynamicPseudoType,
				Description: "The value used when no other is given. Without a default, a value must be given."},
			{Name: "sensitive", Type: cty.Bool, Default: cty.False,
				Description: "Every value derived from a sensitive variable is shown as `(sensitive)` in plans, logs and diagnostics; a `file` whose content uses one is sensitive."},
			{Name: "description", Type: cty.String, Description: "What the variable is for."},
		},
	},
	{
		Type: "ssh", AtMostOnce: true,
		Description: "How pgherd connects to the hosts. At most one `ssh` block; without one, every default applies.",
		Attrs: []Attr{
			{Name: "user", Type: cty.String, Default: cty.StringVal("root"), Description: "Remote user, unless the host says otherwise."},
			{Name: "port", Type: cty.Number, Kind: KindPort, Default: cty.NumberIntVal(22), Description: "Remote port, unless the host says otherwise."},
			{Name: "private_key_file", Type: cty.String, Kind: KindPath, Description: "Private key used to authenticate."},
			{Name: "use_agent", Type: cty.Bool, DefaultDoc: "`true` when `SSH_AUTH_SOCK` is set", Description: "Authenticate with the keys of the running ssh-agent."},
			{Name: "known_hosts_file", Type: cty.String, Kind: KindPath, Default: cty.StringVal("~/.ssh/known_hosts"), Description: "Where host keys are checked (and recorded with `accept-new`)."},
			{Name: "host_key_check", Type: cty.String, Default: cty.StringVal(string(HostKeyStrict)), Enum: []string{string(HostKeyStrict), string(HostKeyAcceptNew)},
				Description: "`strict` refuses unknown hosts and changed keys; `accept-new` records the key of a host seen for the first time and refuses changed keys."},
			{Name: "jump_host", Type: cty.String, Kind: KindJumpHost, Description: "A bastion every connection goes through."},
			{Name: "sudo", Type: cty.Bool, Default: cty.False, Description: "Run commands through `sudo -n` when the user is not root."},
			{Name: "connect_timeout", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("10s"), Description: "How long to wait for a connection."},
			{Name: "command_timeout", Type: cty.String, Kind: KindDuration, Default: cty.StringVal("10m"), Description: "How long one remote command or file transfer may run; it is killed on the host then."},
		},
	},
	{
		Type: "host", Label: "name", LabelDoc: "A unique name for the host, used in plans and in `hosts = [...]`.",
		Description: "A machine pgherd manages.",
		Attrs: []Attr{
			{Name: "address", Type: cty.String, Kind: KindAddress, Required: true, Description: "Where to reach it."},
			{Name: "user", Type: cty.String, DefaultDoc: "`ssh.user`", Description: "SSH user for this host."},
			{Name: "port", Type: cty.Number, Kind: KindPort, DefaultDoc: "`ssh.port`", Description: "SSH port for this host."},
			{Name: "labels", Type: mapOfString, Description: "Free-form labels."},
			{Name: "roles", Type: listOfString, Description: "Roles of the host; resources target hosts by role."},
		},
	},
	resource(Block{
		Type: "package", Label: "name", LabelDoc: "The Debian package name.",
		Description: "A Debian package, installed with apt.",
		Attrs: []Attr{
			{Name: "version", Type: cty.String, Description: "An exact version to install; any version when unset."},
			{Name: "hold", Type: cty.Bool, Default: cty.False, Description: "Hold the package (`apt-mark hold`) so that upgrades leave it alone."},
		},
	}, true),
	resource(Block{
		Type: "file", Label: "path", LabelKind: KindAbsPath, LabelDoc: "The file's absolute path.",
		Description: "A regular file and its content. Exactly one of `content` and `source` is required unless `state = \"absent\"`.",
		Attrs: []Attr{
			{Name: "content", Type: cty.String, Description: "The content."},
			{Name: "source", Type: cty.String, Description: "A file whose content is used, relative to the directory of the spec file; read when the spec is loaded."},
			{Name: "owner", Type: cty.String, Default: cty.StringVal("root"), Description: "Owning user."},
			{Name: "group", Type: cty.String, Default: cty.StringVal("root"), Description: "Owning group."},
			{Name: "mode", Type: cty.String, Kind: KindMode, Default: cty.StringVal("0644"), Description: "Permissions."},
			{Name: "sensitive", Type: cty.Bool, Default: cty.False, DefaultDoc: "`false`, `true` when the content derives from a sensitive variable",
				Description: "Never show the content in plans or logs."},
			{Name: "notify", Type: listOfString, Kind: KindNotify, Description: "Resources told when the file changes: a service is restarted (or reloaded when it has `reload = true`)."},
		},
	}, true),
	resource(Block{
		Type: "directory", Label: "path", LabelKind: KindAbsPath, LabelDoc: "The directory's absolute path.",
		Description: "A directory.",
		Attrs: []Attr{
			{Name: "owner", Type: cty.String, Default: cty.StringVal("root"), Description: "Owning user."},
			{Name: "group", Type: cty.String, Default: cty.StringVal("root"), Description: "Owning group."},
			{Name: "mode", Type: cty.String, Kind: KindMode, Default: cty.StringVal("0755"), Description: "Permissions."},
		},
	}, true),
	resource(Block{
		Type: "group", Label: "name", LabelDoc: "The group name.",
		Description: "A Unix group.",
		Attrs: []Attr{
			{Name: "gid", Type: cty.Number, Kind: KindID, Description: "Group id; any when unset."},
			{Name: "system", Type: cty.Bool, Default: cty.False, Description: "Create a system group."},
		},
	}, true),
	resource(Block{
		Type: "user", Label: "name", LabelDoc: "The user name.",
		Description: "A Unix user.",
		Attrs: []Attr{
			{Name: "uid", Type: cty.Number, Kind: KindID, Description: "User id; any when unset."},
			{Name: "group", Type: cty.String, Description: "Primary group; the system's default when unset."},
			{Name: "groups", Type: listOfString, Description: "Supplementary groups."},
			{Name: "home", Type: cty.String, Description: "Home directory; the system's default when unset."},
			{Name: "shell", Type: cty.String, Description: "Login shell; the system's default when unset."},
			{Name: "system", Type: cty.Bool, Default: cty.False, Description: "Create a system user."},
		},
	}, true),
	resource(Block{
		Type: "service", Label: "name", LabelDoc: "The systemd unit; `.service` is added when the name has no suffix, so `service.nginx` and `service.nginx.service` are the same resource.",
		Description: "A systemd unit.",
		Attrs: []Attr{
			{Name: "enabled", Type: cty.Bool, DefaultDoc: "left as it is", Description: "Start the unit at boot."},
			{Name: "state", Type: cty.String, Enum: []string{"running", "stopped"}, DefaultDoc: "left as it is", Description: "Whether the unit should be running."},
			{Name: "reload", Type: cty.Bool, Default: cty.False, Description: "A notification reloads the unit instead of restarting it."},
			{Name: "unit", Type: cty.String, Description: "The unit file's content, written to `/etc/systemd/system/<name>`."},
		},
	}, false),
	resource(Block{
		Type: "sysctl", Label: "key", LabelDoc: "The kernel parameter, such as `vm.swappiness`.",
		Description: "A kernel parameter, set live and persisted in `/etc/sysctl.d/99-pgherd.conf`.",
		Attrs: []Attr{
			{Name: "value", Type: cty.String, Required: true, Description: "The value; numbers are accepted."},
		},
	}, false),
	clusterSchema,
}

func blockSchema(typ string) *Block {
	for i := range Schema {
		if Schema[i].Type == typ {
			return &Schema[i]
		}
	}
	return nil
}

func rootSchema() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, b := range Schema {
		bs := hcl.BlockHeaderSchema{Type: b.Type}
		if b.Label != "" {
			bs.LabelNames = []string{b.Label}
		}
		s.Blocks = append(s.Blocks, bs)
	}
	return s
}
