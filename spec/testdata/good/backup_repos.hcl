# Backups into two repositories: a directory on NFS, and an S3 bucket
# offsite. WAL goes into both; the scheduled backups into each in turn.
# The offsite repository keeps more full backups than the NFS one, and
# the backup block's age.

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
    encryption_passphrase = var.db_password

    repository {
      name = "nfs"
      type = "path"
      path = "/mnt/nfs/pgherd"
    }

    repository {
      name       = "offsite"
      type       = "s3"
      endpoint   = "https://s3.eu-west-1.amazonaws.com"
      bucket     = "backups"
      prefix     = "pg/"
      access_key = "AKIAEXAMPLE"
      secret_key = var.backup_secret

      retention {
        full = 8
      }
    }

    retention {
      full = 3
      age  = "168h"
    }
  }
}
