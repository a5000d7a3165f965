package agent

// BackupConfig is the backup section of the agent's configuration: where
// the repository is and how to reach it. It is filled in by the backup
// wiring (see docs/backup.md).
type BackupConfig struct{}
