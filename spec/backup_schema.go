package spec

import "github.com/zclconf/go-cty/cty"

// Defaults of the backup block that the decoder also needs.
const (
	defaultFullSchedule        = "Sun *-*-* 01:00:00"
	defaultIncrementalSchedule = "Mon..Sat *-*-* 01:00:00"
)

var backupSchema = Block{
	Type: "backup",
	Description: "Backups by the pgherd agent (see docs/backup.md): PostgreSQL archives its WAL with `pgherd wal-push` into every repository, " +
		"and timers take full and incremental base backups on schedule and apply the retention. Not set up when absent.",
	Attrs: []Attr{
		{Name: "compression_level", Type: cty.Number, Default: cty.NumberIntVal(3), Description: "The zstd level of stored objects, 1 to 22."},
		passwordAttr("encryption_passphrase", "Encrypts every repository (AES-256-GCM, each with a key of its own) under this passphrase; unencrypted when unset. Losing it loses the backups.", false),
		{Name: "parallel", Type: cty.Number, Default: cty.NumberIntVal(2), Description: "How many files a backup or restore copies at once, at least 1."},
		{Name: "from", Type: cty.String, Default: cty.StringVal(string(BackupFromStandby)), Enum: []string{string(BackupFromStandby), string(BackupFromPrimary)},
			Description: "Where base backups are taken: from a `standby`, sparing the primary the reads, or from the `primary`."},
		{Name: "create_replica_from_backup", Type: cty.Bool, Default: cty.False,
			Description: "A new replica restores the latest backup and replays the archive instead of copying the primary."},
		{Name: "spool_dir", Type: cty.String, Kind: KindAbsPath,
			Description: "A local directory, private to each database host (pgherd makes it postgres's, 0700), that makes archiving asynchronous and fetching prefetch: " +
				"each `wal-push` also pushes, `parallel` at a time, the other segments PostgreSQL marked ready, so that archiving keeps up with a busy primary " +
				"(a segment is still acknowledged only once every repository has it), and each `wal-fetch` keeps the next 8 segments ready there for recovery. " +
				"Unset: one segment per call. Never on shared storage."},
	},
	Blocks: []Block{
		{
			Type: "repository", Required: true, Repeatable: true,
			Description: "Where backups and archived WAL are stored: a directory (`path`, local disk or NFS), an SFTP server (`sftp`) or an S3 bucket (`s3`). " +
				"Only the attributes of its `type` are allowed. With several repositories (say a local one and another offsite), each segment of WAL is archived into every one, " +
				"and archiving succeeds only once each has it; `wal-fetch` and `restore` take from the first, in order, that has what they need; " +
				"the scheduled backups go into each in turn, and `pgherd backup` into the first unless `--repo` names another (see docs/backup.md).",
			Attrs: []Attr{
				{Name: "name", Type: cty.String, DefaultDoc: "required with several repositories",
					Description: "Tells the repository apart in messages and commands (`--repo`): at most 63 lower-case letters, digits and dashes, starting with a letter and not ending with a dash."},
				{Name: "type", Type: cty.String, Required: true, Enum: []string{RepoPath, RepoSFTP, RepoS3}, Description: "The kind of repository."},
				{Name: "path", Type: cty.String, Kind: KindAbsPath, DefaultDoc: "required for `path`", Description: "`path`: the repository's directory on the PostgreSQL hosts."},
				{Name: "host", Type: cty.String, Kind: KindAddress, DefaultDoc: "required for `sftp`", Description: "`sftp`: the server."},
				{Name: "port", Type: cty.Number, Kind: KindPort, DefaultDoc: "`22` for `sftp`", Description: "`sftp`: the server's SSH port."},
				{Name: "user", Type: cty.String, DefaultDoc: "required for `sftp`", Description: "`sftp`: the user the agent logs in as."},
				{Name: "key_file", Type: cty.String, Kind: KindAbsPath, DefaultDoc: "`sftp`: this or `private_key`", Description: "`sftp`: the private key, a file on the PostgreSQL hosts readable by `postgres`."},
				passwordAttr("private_key", "`sftp`: the private key itself (OpenSSH PEM, unencrypted), instead of `key_file`: pgherd writes it beside the agent's configuration, readable by `postgres` only.", false),
				{Name: "known_hosts_file", Type: cty.String, Kind: KindAbsPath, DefaultDoc: "`sftp`: this or `host_key`", Description: "`sftp`: the known_hosts file on the PostgreSQL hosts that holds the server's key."},
				{Name: "host_key", Type: cty.String, DefaultDoc: "`sftp`: this or `known_hosts_file`",
					Description: "`sftp`: the server's public host key, as in a known_hosts or `.pub` file (`\"ssh-ed25519 AAAA…\"`), instead of `known_hosts_file`: pgherd writes the known_hosts line for `host` and `port` beside the agent's configuration."},
				{Name: "root", Type: cty.String, Kind: KindAbsPath, DefaultDoc: "required for `sftp`", Description: "`sftp`: the repository's directory on the server."},
				{Name: "endpoint", Type: cty.String, DefaultDoc: "required for `s3`", Description: "`s3`: the service's URL, such as `\"https://s3.eu-west-1.amazonaws.com\"`."},
				{Name: "region", Type: cty.String, DefaultDoc: "`\"us-east-1\"` for `s3`", Description: "`s3`: the region requests are signed for."},
				{Name: "bucket", Type: cty.String, DefaultDoc: "required for `s3`", Description: "`s3`: the bucket."},
				{Name: "prefix", Type: cty.String, Description: "`s3`: a prefix of every key, to share a bucket."},
				{Name: "access_key", Type: cty.String, DefaultDoc: "required for `s3`", Description: "`s3`: the access key ID."},
				passwordAttr("secret_key", "`s3`: the secret access key; required for `s3`.", false),
			},
			Blocks: []Block{{
				Type: "retention",
				Description: "This repository's own retention, such as fewer backups on a local disk and more offsite: " +
					"an attribute set here replaces the `backup` block's `retention` for this repository, one left out is the `backup` block's.",
				Attrs: []Attr{
					{Name: "full", Type: cty.Number, DefaultDoc: "the `backup` block's", Description: "How many full backups this repository keeps (with their incrementals), at least 1."},
					{Name: "age", Type: cty.String, Kind: KindDuration, DefaultDoc: "the `backup` block's", Description: "Also keep every full backup younger than this in this repository."},
				},
			}},
		},
		{
			Type:        "schedule",
			Description: "When base backups are taken, as systemd calendar expressions (`OnCalendar=`, see systemd.time(7)). Without a `schedule` block, every default applies.",
			Attrs: []Attr{
				{Name: "full", Type: cty.String, Default: cty.StringVal(defaultFullSchedule), Description: "When full backups are taken."},
				{Name: "incremental", Type: cty.String, Default: cty.StringVal(defaultIncrementalSchedule), Description: "When incremental backups are taken; `\"\"` for none."},
			},
		},
		{
			Type:        "retention",
			Description: "Which backups are kept: the scheduled backups apply it to each repository after each backup they take (`pgherd backup --expire`), and `pgherd backup expire` applies it on demand; it deletes older backups and the WAL only they need. Without a `retention` block, every default applies.",
			Attrs: []Attr{
				{Name: "full", Type: cty.Number, Default: cty.NumberIntVal(2), Description: "How many full backups are kept (with their incrementals), at least 1."},
				{Name: "age", Type: cty.String, Kind: KindDuration, DefaultDoc: "none", Description: "Also keep every full backup younger than this, such as `\"336h\"` (14 days)."},
			},
		},
	},
}
