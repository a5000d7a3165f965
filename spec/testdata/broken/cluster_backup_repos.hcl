variable "db_password" {
  sensitive = true
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
    from = "primary"

    repository {
      name = "local"
      type = "path"
      path = "/srv/backup"

      retention {
        full = 0 # ERROR: The full retention must be at least 1
      }
    }

    repository {
      name = "local" # ERROR: A repository named "local" is declared at testdata/broken/cluster_backup_repos.hcl:18,5 already
      type = "path"
      path = "/mnt/nfs/backup"
    }

    repository { # ERROR: This repository (path /srv/backup) is declared at testdata/broken/cluster_backup_repos.hcl:18,5 already
      name = "again"
      type = "path"
      path = "/srv/backup"
    }

    repository {
      name = "Off Site" # ERROR: "Off Site" is not a valid repository name
      type = "sftp"
      host = "backup.example.com"
      user = "pgbackup"
      root = "/srv/pg"
      key_file         = "/var/lib/postgresql/.ssh/id_ed25519"
      known_hosts_file = "/var/lib/postgresql/.ssh/known_hosts"
    }

    repository { # ERROR: This repository (sftp backup.example.com:22/srv/pg) is declared at testdata/broken/cluster_backup_repos.hcl:40,5 already
      name = "offsite"
      type = "sftp"
      host = "backup.example.com"
      port = 22
      user = "other"
      root = "/srv/pg"
      key_file         = "/var/lib/postgresql/.ssh/id_ed25519"
      known_hosts_file = "/var/lib/postgresql/.ssh/known_hosts"
    }

    repository { # ERROR: With several repository blocks, each needs a name
      type = "s3"
      endpoint   = "https://s3.example.com"
      bucket     = "b"
      access_key = "AK"
      secret_key = var.db_password
      name2      = "x" # ERROR: An argument named "name2" is not expected here
    }
  }
}
