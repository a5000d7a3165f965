# Backups over SFTP with the defaults: from a standby, weekly full and
# daily incremental backups, two full backups kept.

variable "db_password" {
  sensitive = true
}

host "a" {
  address = "10.0.0.1"
}

host "b" {
  address = "10.0.0.2"
}

host "c" {
  address = "10.0.0.3"
}

cluster "pg" {
  postgres {
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  backup {
    repository {
      type             = "sftp"
      host             = "backup.example.com"
      user             = "pgbackup"
      key_file         = "/var/lib/postgresql/.ssh/id_ed25519"
      known_hosts_file = "/var/lib/postgresql/.ssh/known_hosts"
      root             = "/srv/backup/pg"
    }
  }
}
