# Backups into S3, encrypted, from the primary, with every setting given.

variable "db_password" {
  sensitive = true
}

variable "backup_secret" {
  sensitive = true
  default   = "s3cr3t-key"
}

host "a" {
  address = "10.0.0.1"
}

host "b" {
  address = "10.0.0.2"
}

cluster "pg" {
  postgres {
    hosts                = ["a", "b"]
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  etcd {
    hosts = ["a"]
  }

  backup {
    compression_level          = 6
    encryption_passphrase      = var.db_password
    parallel                   = 4
    from                       = "primary"
    create_replica_from_backup = true
    spool_dir                  = "/var/lib/pgherd/spool"

    repository {
      type       = "s3"
      endpoint   = "https://s3.eu-west-1.amazonaws.com"
      region     = "eu-west-1"
      bucket     = "backups"
      prefix     = "pg/"
      access_key = "AKIAEXAMPLE"
      secret_key = var.backup_secret
    }

    schedule {
      full        = "Sat,Sun *-*-* 02:30:00 UTC"
      incremental = "hourly"
    }

    retention {
      full = 4
      age  = "336h"
    }
  }
}
