package spec

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"golang.org/x/crypto/ssh"
)

// repoAttrs are the attributes each repository type allows beside type.
var repoAttrs = map[string][]string{
	RepoPath: {"path"},
	RepoSFTP: {"host", "port", "user", "key_file", "private_key", "known_hosts_file", "host_key", "root"},
	RepoS3:   {"endpoint", "region", "bucket", "prefix", "access_key", "secret_key"},
}

// repoRequired are the attributes each repository type needs.
var repoRequired = map[string][]string{
	RepoPath: {"path"},
	RepoSFTP: {"host", "user", "root"},
	RepoS3:   {"endpoint", "bucket", "access_key", "secret_key"},
}

// decodeSFTPKeys checks that an sftp repository names its key and the
// server's key once each: a file on the hosts, or the value itself.
func (l *loader) decodeSFTPKeys(d *decoded, r *BackupRepository) {
	for _, p := range [][2]string{{"key_file", "private_key"}, {"known_hosts_file", "host_key"}} {
		switch {
		case d.bad[p[0]] || d.bad[p[1]]:
		case d.has(p[0]) && d.has(p[1]):
			l.errorf(d.rng(p[1]), "Conflicting arguments", "Give %q or %q in an sftp repository, not both.", p[0], p[1])
		case !d.has(p[0]) && !d.has(p[1]):
			l.errorf(d.b.blk.DefRange.Ptr(), "Missing required argument",
				"An sftp repository needs %q (a file on the PostgreSQL hosts) or %q (the value itself).", p[0], p[1])
		}
	}
	if d.has("private_key") {
		r.PrivateKey = l.password(d, "private_key", "sftp private_key")
		if _, err := ssh.ParsePrivateKey([]byte(r.PrivateKey)); r.PrivateKey != "" && err != nil {
			l.errorf(d.rng("private_key"), "Invalid private key",
				"The private_key is not an unencrypted private key in OpenSSH or PEM form (%s).", err)
		}
	}
	if d.good("host_key") {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(r.HostKey)); err != nil {
			l.errorf(d.rng("host_key"), "Invalid host key",
				"The host_key %q is not a public key such as \"ssh-ed25519 AAAA…\", as in the server's /etc/ssh/ssh_host_ed25519_key.pub (%s).", r.HostKey, err)
		}
	}
}

// decodeBackup decodes the backup block of a cluster.
func (l *loader) decodeBackup(c *decoded, cl *Cluster) *Backup {
	d, ok := l.one(c, "backup")
	if !ok {
		return nil
	}
	b := &Backup{
		CompressionLevel:        d.integer("compression_level"),
		EncryptionPassphrase:    l.password(d, "encryption_passphrase", "encryption_passphrase"),
		Parallel:                d.integer("parallel"),
		From:                    BackupFrom(d.str("from")),
		CreateReplicaFromBackup: d.boolean("create_replica_from_backup"),
		SpoolDir:                d.str("spool_dir"),
		Range:                   d.defRange(),
	}
	if d.good("compression_level") && (b.CompressionLevel < 1 || b.CompressionLevel > 22) {
		l.errorf(d.rng("compression_level"), "Invalid compression level", "The compression_level must be from 1 to 22; 3 is a good balance.")
	}
	if d.good("parallel") && b.Parallel < 1 {
		l.errorf(d.rng("parallel"), "Invalid parallelism", "The parallel must be at least 1.")
	}
	if d.good("from") && b.From == BackupFromStandby && len(cl.Postgres.Hosts) == 1 {
		rng := d.rng("from")
		l.warnf(rng, "No standby to back up from",
			"Backups are taken from a standby, and the cluster has a single PostgreSQL host: no base backup will be taken. Set from = \"primary\".")
	}
	b.Retention = l.decodeRetention(d)
	b.Repositories = l.decodeRepositories(d, b.Retention)
	b.Schedule = l.decodeSchedule(d)
	return b
}

// decodeRepositories decodes the repository blocks of a backup block: one
// or more, each named when there are several, no two the same place;
// retention is the backup block's.
func (l *loader) decodeRepositories(parent *decoded, retention BackupRetention) []BackupRepository {
	schema := parent.schema.Block("repository")
	blocks := parent.children["repository"]
	if len(blocks) == 0 {
		l.errorf(parent.b.blk.DefRange.Ptr(), "Missing repository block", "A backup block needs a repository block.")
		return nil
	}
	var repos []BackupRepository
	names := map[string]hcl.Range{}
	places := map[string]hcl.Range{}
	for _, b := range blocks {
		d := l.decodeWith(b, schema)
		r := l.decodeRepository(d)
		r.Retention = l.decodeRepoRetention(d, retention)
		switch {
		case len(blocks) > 1 && !d.has("name") && !d.bad["name"]:
			l.errorf(b.blk.DefRange.Ptr(), "Missing repository name",
				"With several repository blocks, each needs a name, such as name = \"offsite\": commands take it (pgherd backup --repo offsite).")
		case !d.good("name"):
		case !repoName.MatchString(r.Name):
			l.errorf(d.rng("name"), "Invalid repository name",
				"%q is not a valid repository name: use at most 63 lower-case letters, digits and dashes, starting with a letter and not ending with a dash.", r.Name)
		default:
			if prev, dup := names[r.Name]; dup {
				l.errorf(d.rng("name"), "Duplicate repository name",
					"A repository named %q is declared at %s already; give each its own name.", r.Name, posString(prev))
			}
			names[r.Name] = b.blk.DefRange
		}
		if place := r.place(); place != "" {
			if prev, dup := places[place]; dup {
				l.errorf(b.blk.DefRange.Ptr(), "Duplicate repository",
					"This repository (%s) is declared at %s already: the WAL would be archived into it twice.", place, posString(prev))
			}
			places[place] = b.blk.DefRange
		}
		repos = append(repos, r)
	}
	return repos
}

var repoName = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// place says where a repository is, to find two blocks for one
// repository; "" when that is not known (an error reported already).
func (r *BackupRepository) place() string {
	switch {
	case r.Type == RepoPath && r.Path != "":
		return "path " + r.Path
	case r.Type == RepoSFTP && r.Host != "" && r.Root != "":
		return fmt.Sprintf("sftp %s:%d%s", r.Host, r.Port, r.Root)
	case r.Type == RepoS3 && r.Endpoint != "" && r.Bucket != "":
		return fmt.Sprintf("s3 %s/%s/%s", strings.TrimSuffix(r.Endpoint, "/"), r.Bucket, r.Prefix)
	}
	return ""
}

// decodeRepository decodes one repository block.
func (l *loader) decodeRepository(d *decoded) BackupRepository {
	schema := d.schema
	r := BackupRepository{
		Name: d.str("name"), Type: d.str("type"), Path: d.str("path"),
		Host: d.str("host"), Port: d.integer("port"), User: d.str("user"), KeyFile: d.str("key_file"),
		KnownHosts: d.str("known_hosts_file"), HostKey: strings.TrimSpace(d.str("host_key")), Root: d.str("root"),
		Endpoint: d.str("endpoint"), Region: d.str("region"), Bucket: d.str("bucket"), Prefix: d.str("prefix"),
		AccessKey: d.str("access_key"), SecretKey: l.password(d, "secret_key", "S3 secret_key"),
		Range: d.defRange(),
	}
	if !d.good("type") {
		return r
	}
	allowed := repoAttrs[r.Type]
	for _, a := range schema.Attrs {
		if a.Name == "type" || a.Name == "name" || !d.has(a.Name) || contains(allowed, a.Name) {
			continue
		}
		l.errorf(d.rng(a.Name), "Attribute not for this repository",
			"The argument %q is not used by a %q repository, which takes %s.", a.Name, r.Type, quoteList(allowed))
	}
	for _, a := range repoRequired[r.Type] {
		if !d.has(a) && !d.bad[a] {
			l.errorf(d.b.blk.DefRange.Ptr(), "Missing required argument",
				"The argument %q is required in a repository of type %q.", a, r.Type)
		}
	}
	if r.Type == RepoSFTP {
		l.decodeSFTPKeys(d, &r)
	}
	if r.Type == RepoSFTP && r.Port == 0 && !d.bad["port"] {
		r.Port = 22
	}
	if r.Type == RepoS3 && d.good("endpoint") {
		u, err := url.Parse(r.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.errorf(d.rng("endpoint"), "Invalid endpoint",
				"The endpoint %q is not an http or https URL such as \"https://s3.eu-west-1.amazonaws.com\".", r.Endpoint)
		}
	}
	if r.Type == RepoS3 && d.good("prefix") && (strings.HasPrefix(r.Prefix, "/") || strings.Contains(r.Prefix, "..")) {
		l.errorf(d.rng("prefix"), "Invalid prefix", "The prefix %q must be relative, without \"..\", such as \"pgherd/main/\".", r.Prefix)
	}
	return r
}

func (l *loader) decodeSchedule(parent *decoded) BackupSchedule {
	d, _ := l.one(parent, "schedule")
	s := BackupSchedule{Full: d.str("full"), Incremental: d.str("incremental"), Range: d.defRange()}
	if d.good("full") {
		if s.Full == "" {
			l.errorf(d.rng("full"), "Empty schedule", "Full backups need a schedule, such as %q.", defaultFullSchedule)
		} else if !validCalendar(s.Full) {
			l.errorf(d.rng("full"), "Invalid schedule", calendarHelp, s.Full)
		}
	}
	if d.good("incremental") && s.Incremental != "" && !validCalendar(s.Incremental) {
		l.errorf(d.rng("incremental"), "Invalid schedule", calendarHelp, s.Incremental)
	}
	return s
}

const calendarHelp = "%q is not a systemd calendar expression such as \"Sun *-*-* 01:00:00\", \"*-*-* 01:00:00\" or \"daily\" (see systemd.time(7); check one with systemd-analyze calendar)."

func (l *loader) decodeRetention(parent *decoded) BackupRetention {
	d, _ := l.one(parent, "retention")
	r := BackupRetention{Full: d.integer("full"), Age: d.duration("age"), Range: d.defRange()}
	l.checkRetention(d, r)
	return r
}

// decodeRepoRetention decodes a repository's retention block: what it
// leaves out is the backup block's retention, def. Nil without one.
func (l *loader) decodeRepoRetention(repo *decoded, def BackupRetention) *BackupRetention {
	d, ok := l.one(repo, "retention")
	if !ok {
		return nil
	}
	r := def
	r.Range = d.defRange()
	if d.has("full") {
		r.Full = d.integer("full")
	}
	if d.has("age") {
		r.Age = d.duration("age")
	}
	l.checkRetention(d, r)
	return &r
}

func (l *loader) checkRetention(d *decoded, r BackupRetention) {
	if d.good("full") && r.Full < 1 {
		l.errorf(d.rng("full"), "Invalid retention", "The full retention must be at least 1: the newest full backup is always kept.")
	}
}

var (
	calShorthands = []string{"minutely", "hourly", "daily", "weekly", "monthly", "yearly", "annually", "quarterly", "semiannually"}
	day           = `(?i:mon|tue|wed|thu|fri|sat|sun)[a-z]*`
	calWeekday    = regexp.MustCompile(`^` + day + `((\.\.|,)` + day + `)*$`)
	calDate       = regexp.MustCompile(`^[0-9*][0-9*,./~]*-[0-9*,./~-]+$`)
	calTime       = regexp.MustCompile(`^[0-9*][0-9*,./]*:[0-9*,./:]+$`)
	calZone       = regexp.MustCompile(`^[A-Za-z_]+(/[A-Za-z_+-]+)*$`)
)

// validCalendar checks, loosely, that s is a systemd OnCalendar
// expression: a shorthand such as "daily", or an optional weekday list, an
// optional date, an optional time and an optional time zone, in that order.
func validCalendar(s string) bool {
	f := strings.Fields(s)
	if len(f) == 1 && contains(calShorthands, strings.ToLower(f[0])) {
		return true
	}
	if len(f) == 0 || len(f) > 4 {
		return false
	}
	i := 0
	if calWeekday.MatchString(f[i]) {
		i++
	}
	dateOrTime := false
	if i < len(f) && calDate.MatchString(f[i]) {
		i, dateOrTime = i+1, true
	}
	if i < len(f) && calTime.MatchString(f[i]) {
		i, dateOrTime = i+1, true
	}
	if i < len(f) && dateOrTime && calZone.MatchString(f[i]) && !calWeekday.MatchString(f[i]) {
		i++
	}
	return i == len(f) && i > 0
}
