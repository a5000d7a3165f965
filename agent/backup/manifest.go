package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// BackupType is full or incr.
type BackupType string

// Backup types.
const (
	Full BackupType = "full"
	Incr BackupType = "incr"
)

// ErrNoBackup: no (matching) backup in the repository.
var ErrNoBackup = errors.New("no backup found")

// Manifest describes one base backup; it is written last, so a backup
// without a manifest is an interrupted one.
type Manifest struct {
	Version int        `json:"version"`
	ID      string     `json:"id"`
	Type    BackupType `json:"type"`
	// Prior is the backup an incremental one is based on.
	Prior     string    `json:"prior,omitempty"`
	Label     string    `json:"label"`
	StartTime time.Time `json:"start_time"`
	StopTime  time.Time `json:"stop_time"`
	StartLSN  LSN       `json:"start_lsn"`
	StopLSN   LSN       `json:"stop_lsn"`
	// StartWAL and StopWAL are the first and last WAL segments needed to
	// make the backup consistent.
	StartWAL       string `json:"start_wal"`
	StopWAL        string `json:"stop_wal"`
	Timeline       uint32 `json:"timeline"`
	FromStandby    bool   `json:"from_standby"`
	PGVersion      string `json:"pg_version"`
	BlockSize      int    `json:"block_size"`
	WALSegmentSize int64  `json:"wal_segment_size"`
	// BackupLabel and TablespaceMap are pg_backup_stop's labelfile and
	// spcmapfile, written into the data directory by Restore.
	BackupLabel   string         `json:"backup_label"`
	TablespaceMap string         `json:"tablespace_map,omitempty"`
	Dirs          []ManifestDir  `json:"dirs"`
	Links         []ManifestLink `json:"links,omitempty"`
	Files         []ManifestFile `json:"files"`
	// Size is the sum of the files' sizes; StoredSize what this backup
	// added to the repository.
	Size       int64 `json:"size"`
	StoredSize int64 `json:"stored_size"`
}

// ManifestDir is a directory of the data directory.
type ManifestDir struct {
	Path string `json:"path"`
	Mode uint32 `json:"mode"`
}

// ManifestLink is a symbolic link (a tablespace in pg_tblspc).
type ManifestLink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// ManifestFile is one file of the data directory.
type ManifestFile struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	Mode    uint32    `json:"mode"`
	ModTime time.Time `json:"mtime"`
	// SHA256 is the checksum of the whole file as restored.
	SHA256 string `json:"sha256"`
	// Key is the object holding the data ("" for an empty file). It
	// belongs to backup Ref when Ref is set (an unchanged file).
	Key string `json:"key,omitempty"`
	Ref string `json:"ref,omitempty"`
	// DeltaBase, when set, makes Key a block delta: the file is the same
	// path restored from backup DeltaBase, cut to Size, with the stored
	// blocks written over it.
	DeltaBase string `json:"delta_base,omitempty"`
	// StoredSHA256 is the checksum of the decoded object when it differs
	// from SHA256 (block deltas).
	StoredSHA256 string `json:"stored_sha256,omitempty"`
	StoredSize   int64  `json:"stored_size,omitempty"`
}

// owner is the backup that stored f's object.
func (f ManifestFile) owner(m *Manifest) string {
	if f.Ref != "" {
		return f.Ref
	}
	return m.ID
}

func (m *Manifest) file(p string) (ManifestFile, bool) {
	i := sort.Search(len(m.Files), func(i int) bool { return m.Files[i].Path >= p })
	if i < len(m.Files) && m.Files[i].Path == p {
		return m.Files[i], true
	}
	return ManifestFile{}, false
}

const backupPrefix = "backup/"

func (s *Store) manifestKey(id string) string {
	return backupPrefix + id + "/backup.manifest" + s.suffix()
}

func (s *Store) putManifest(ctx context.Context, m *Manifest) error {
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	return s.putBytes(ctx, s.manifestKey(m.ID), data)
}

// LoadManifest reads the manifest of backup id.
func (s *Store) LoadManifest(ctx context.Context, id string) (*Manifest, error) {
	if err := ValidateKey(id); err != nil || strings.Contains(id, "/") {
		return nil, fmt.Errorf("backup: bad backup id %q: %w", id, ErrInvalidKey)
	}
	data, err := s.getBytes(ctx, s.manifestKey(id))
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("backup %s: %w", id, ErrNoBackup)
	}
	if err != nil {
		return nil, err
	}
	return parseManifest(id, data)
}

// parseManifest decodes the manifest of backup id and checks what Restore
// trusts it with: every path it writes stays inside the data directory
// (clean relative paths; links only as pg_tblspc/<oid>, to absolute
// targets), modes are permission bits, and no file is based on the backup
// itself. A repository others can write to must not become a way to write
// anywhere on a host.
func parseManifest(id string, data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("backup %s: manifest: %w: %v", id, ErrCorrupt, err)
	}
	if err := m.check(id); err != nil {
		return nil, fmt.Errorf("backup %s: manifest: %w: %v", id, ErrCorrupt, err)
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return &m, nil
}

func (m *Manifest) check(id string) error {
	if m.ID != id {
		return fmt.Errorf("it names backup %q", m.ID)
	}
	for _, d := range m.Dirs {
		if err := checkManifestPath("directory", d.Path, d.Mode); err != nil {
			return err
		}
	}
	for _, l := range m.Links {
		if err := checkManifestPath("link", l.Path, 0); err != nil {
			return err
		}
		dir, oid := path.Split(l.Path)
		if dir != "pg_tblspc/" || strings.Trim(oid, "0123456789") != "" {
			return fmt.Errorf("link %q: not pg_tblspc/<oid>", l.Path)
		}
		if !path.IsAbs(l.Target) || path.Clean(l.Target) != l.Target || l.Target == "/" || strings.ContainsRune(l.Target, 0) {
			return fmt.Errorf("link %q: target %q is not a clean absolute path", l.Path, l.Target)
		}
	}
	for _, f := range m.Files {
		if err := checkManifestPath("file", f.Path, f.Mode); err != nil {
			return err
		}
		if f.Size < 0 {
			return fmt.Errorf("file %q: size %d", f.Path, f.Size)
		}
		if f.Ref == m.ID || f.DeltaBase == m.ID {
			return fmt.Errorf("file %q: based on its own backup", f.Path)
		}
	}
	return nil
}

func checkManifestPath(what, p string, mode uint32) error {
	if err := ValidateKey(p); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if mode&^0o777 != 0 {
		return fmt.Errorf("%s %q: mode %o is more than permission bits", what, p, mode)
	}
	return nil
}

// backupIDs lists the backups: complete ones (with a manifest), sorted
// oldest first, and incomplete ones (objects but no manifest).
func (s *Store) backupIDs(ctx context.Context) (complete, incomplete []string, err error) {
	objs, err := s.repo.List(ctx, backupPrefix)
	if err != nil {
		return nil, nil, err
	}
	has := map[string]bool{}
	seen := map[string]bool{}
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Key, backupPrefix)
		id, file, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		seen[id] = true
		if strings.HasPrefix(file, "backup.manifest") {
			has[id] = true
		}
	}
	for id := range seen {
		if has[id] {
			complete = append(complete, id)
		} else {
			incomplete = append(incomplete, id)
		}
	}
	// IDs start with the start time, so they sort in time order; an
	// incremental's ID is its full's ID plus its own time.
	sort.Slice(complete, func(i, j int) bool { return idTime(complete[i]) < idTime(complete[j]) })
	sort.Strings(incomplete)
	return complete, incomplete, nil
}

// idTime is the time part of the backup ID's last element.
func idTime(id string) string {
	if i := strings.LastIndexByte(id, '_'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// BackupInfo summarizes a backup for List.
type BackupInfo struct {
	ID         string
	Type       BackupType
	Prior      string
	StartTime  time.Time
	StopTime   time.Time
	StartLSN   LSN
	StopLSN    LSN
	StartWAL   string
	StopWAL    string
	Timeline   uint32
	Size       int64
	StoredSize int64
}

// List returns the complete backups, oldest first.
func (s *Store) List(ctx context.Context) ([]BackupInfo, error) {
	ids, _, err := s.backupIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]BackupInfo, 0, len(ids))
	for _, id := range ids {
		m, err := s.LoadManifest(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, m.info())
	}
	return out, nil
}

// FindBackup returns the backup Restore would restore with opts: the one
// opts names, or the latest that can reach the target. The error wraps
// ErrNoBackup when the repository has none.
func (s *Store) FindBackup(ctx context.Context, opts RestoreOptions) (BackupInfo, error) {
	m, err := s.chooseBackup(ctx, opts)
	if err != nil {
		return BackupInfo{}, err
	}
	return m.info(), nil
}

func (m *Manifest) info() BackupInfo {
	return BackupInfo{ID: m.ID, Type: m.Type, Prior: m.Prior, StartTime: m.StartTime, StopTime: m.StopTime,
		StartLSN: m.StartLSN, StopLSN: m.StopLSN, StartWAL: m.StartWAL, StopWAL: m.StopWAL,
		Timeline: m.Timeline, Size: m.Size, StoredSize: m.StoredSize}
}

// dataKey is the object key of a file of backup id.
func (s *Store) fileKey(id, filePath, kind string) string {
	return backupPrefix + id + "/data/" + path.Clean(filePath) + kind + s.suffix()
}

// LSN is a PostgreSQL log sequence number; its text form is "16/B374D848".
type LSN uint64

// ParseLSN parses the text form of an LSN.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := parseHex32(hi)
	l, err2 := parseHex32(lo)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad LSN %q: want two hexadecimal numbers of 1 to 8 digits around a slash, such as 0/3000060", s)
	}
	return LSN(h<<32 | l), nil
}

// parseHex32 reads 1 to 8 hexadecimal digits, nothing else (no sign, no
// 0x, no space).
func parseHex32(s string) (uint64, error) {
	if len(s) == 0 || len(s) > 8 || strings.Trim(s, "0123456789abcdefABCDEF") != "" {
		return 0, errors.New("not 1 to 8 hexadecimal digits")
	}
	return strconv.ParseUint(s, 16, 32)
}

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// MarshalText implements encoding.TextMarshaler.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	*l = v
	return err
}
