variable "db_password" {
  sensitive = true
}

host "node1" {
  address = "10.77.0.11"
}

cluster "solo" {
  postgres {
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  backup { # WARNING: the cluster has a single PostgreSQL host: no base backup will be taken
    encryption_passphrase = "plain words" # WARNING: The encryption_passphrase is not sensitive

    repository {
      type       = "s3"
      endpoint   = "http://127.0.0.1:7070"
      bucket     = "b"
      access_key = "AK"
      secret_key = "plain" # WARNING: The S3 secret_key is not sensitive
    }
  }
}
