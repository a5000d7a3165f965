# The smallest cluster: every default. Hosts with the role "postgres" run
# PostgreSQL, and etcd, since no host has the role "etcd".

variable "db_password" {
  sensitive = true
}

host "a" {
  address = "10.0.0.1"
  roles   = ["postgres"]
}

host "b" {
  address = "10.0.0.2"
  roles   = ["postgres"]
}

host "c" {
  address = "10.0.0.3"
  roles   = ["postgres"]
}

host "backup" {
  address = "10.0.0.9"
}

cluster "pg" {
  postgres {
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  haproxy {}
}
