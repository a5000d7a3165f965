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

  backup { # ERROR: A backup block needs a repository block
    from = "primary"

    schedule {
      full = "" # ERROR: Full backups need a schedule
    }
  }
}
