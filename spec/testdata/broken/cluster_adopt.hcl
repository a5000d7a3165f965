variable "db_password" {
  sensitive = true
}

host "node1" {
  address = "10.77.0.11"
}

host "node2" {
  address = "10.77.0.12"
}

host "node3" {
  address = "10.77.0.13"
}

cluster "main" {
  postgres {
    hosts                = ["node1", "node2"]
    adopt                = "node3" # ERROR: adopt names "node3", which is not one of the PostgreSQL hosts (node1, node2): the host to adopt must be in hosts.
    superuser_password   = var.db_password
    replication_password = var.db_password
  }
}
