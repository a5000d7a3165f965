package spec

import "github.com/zclconf/go-cty/cty"

var tlsSchema = Block{
	Type: "tls",
	Description: "TLS for every service of the cluster: etcd (clients and peers, with client certificates), the agents' REST API (HTTPS; HAProxy checks it with `check-ssl verify required`), " +
		"and PostgreSQL (`ssl = on`, `hostssl` rules in `pg_hba.conf`, replication, `pg_rewind` and clones with `sslmode=verify-full`). " +
		"Each host of etcd and PostgreSQL gets a certificate: issued by pgherd with `ca_key` (ECDSA P-256, valid one year, renewed by `apply` when less than 30 days are left; " +
		"its names are the host's address, its name, `127.0.0.1` and `localhost`), or given by a `host` block. " +
		"The files live in `/etc/ssl/pgherd` on the hosts: `ca.crt`, `host.crt`, `etcd.key` (etcd's, mode 0600) and `postgres.key` (PostgreSQL's and the agent's, mode 0600). " +
		"Without a `tls` block nothing is encrypted. See docs/runbooks/tls.md to turn it on and to rotate certificates.",
	Attrs: []Attr{
		{Name: "ca_cert", Type: cty.String, Required: true,
			Description: "The CA certificates the hosts trust, in PEM form (`file(\"ca.crt\")`); several may be given one after the other while a CA is replaced. The one `ca_key` belongs to signs the certificates pgherd issues."},
		passwordAttr("ca_key", "The CA's private key in PEM form (PKCS #8, EC or RSA), with which pgherd issues the hosts' certificates; needed unless every etcd and PostgreSQL host has a `host` block. It never leaves the machine that runs pgherd.", false),
	},
	Blocks: []Block{
		{
			Type: "host", Label: "name", Repeatable: true,
			LabelDoc:    "An etcd or PostgreSQL host of the cluster.",
			Description: "A certificate given for one host instead of one pgherd issues. It must be signed by a CA of `ca_cert`, not expired, and name the host's address.",
			Attrs: []Attr{
				{Name: "cert", Type: cty.String, Required: true, Description: "The host's certificate in PEM form; it serves as both server and client certificate."},
				passwordAttr("key", "The certificate's private key in PEM form.", true),
			},
		},
	},
}
