variable "db_password" {
  sensitive = true
}

host "a" {
  address = "10.0.0.1"
}

host "b" {
  address = "10.0.0.2"
}

cluster "pg" {
  postgres {
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  backup {
    compression_level     = 30 # ERROR: The compression_level must be from 1 to 22
    parallel              = 0 # ERROR: The parallel must be at least 1
    from                  = "replica" # ERROR: The value "replica" is not allowed here
    encryption_passphrase = "" # ERROR: The encryption_passphrase must not be empty

    repository { # ERROR: The argument "bucket" is required in a repository of type "s3"
      type       = "s3"
      endpoint   = "s3.example.com" # ERROR: The endpoint "s3.example.com" is not an http or https URL
      path       = "/var/lib/pgherd/backup" # ERROR: The argument "path" is not used by a "s3" repository
      access_key = "AK"
      secret_key = var.db_password
    }

    repository { # ERROR: With several repository blocks, each needs a name
      type = "path"
      path = "/srv/backup"
    }

    schedule {
      full        = "every sunday" # ERROR: "every sunday" is not a systemd calendar expression
      incremental = "*-*-* 25h" # ERROR: "*-*-* 25h" is not a systemd calendar expression
    }

    retention {
      full = 0 # ERROR: The full retention must be at least 1
      age  = "14d" # ERROR: The value "14d" of "age" is not a positive duration
    }
  }
}
