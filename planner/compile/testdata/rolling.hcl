# A cluster with the gates of rolling procedures set, with the hosts of
# spec/testdata/examples/lab.hcl.

variable "password" {
  sensitive = true
  default   = "test-password"
}

cluster "lab" {
  postgres {
    version              = 15
    hosts                = ["node1", "node2"]
    superuser_password   = var.password
    replication_password = var.password
  }

  etcd {
    hosts = ["node1"]
  }

  rolling {
    max_lag             = "64MB"
    max_transaction_age = "30s"
    timeout             = "10m"
  }
}
