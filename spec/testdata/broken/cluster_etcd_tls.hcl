variable "pw" {
  sensitive = true
  default   = "secret"
}

host "a" {
  address = "10.0.0.1"
}

cluster "pg" {
  postgres {
    superuser_password   = var.pw
    replication_password = var.pw
  }
  etcd {
    tls = true # ERROR: etcd over TLS needs the cluster's certificates: add a tls block
  }
}
