variable "db_password" {
  sensitive = true
}

variable "key" {
  sensitive = true
  default   = "not a key"
}

host "a" {
  address = "10.0.0.1"
}

cluster "pg" {
  postgres {
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  backup {
    repository { # ERROR: An sftp repository needs "known_hosts_file" (a file on the PostgreSQL hosts) or "host_key"
      type        = "sftp"
      host        = "backup.example.com"
      user        = "pgbackup"
      key_file    = "/var/lib/postgresql/.ssh/id_ed25519"
      private_key = var.key # ERROR: Give "key_file" or "private_key" in an sftp repository, not both
      root        = "/srv/backup/pg"
    }
  }
}
