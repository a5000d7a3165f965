variable "pw" {
  sensitive = true
  default   = "secret"
}

variable "ca_key" {
  sensitive = true
}

host "node1" {
  address = "10.0.0.1"
}

host "node2" {
  address = "10.0.0.2"
}

host "node3" {
  address = "10.0.0.3"
}

host "lb" {
  address = "10.0.0.9"
}

cluster "main" {
  postgres {
    hosts                = ["node1", "node2", "node3"]
    superuser_password   = var.pw
    replication_password = var.pw
    hba {
      address = "10.0.0.0/24"
    }
  }
  haproxy {
    hosts = ["lb", "node1"]
  }
  keepalived {
    vip       = "10.0.0.100/24"
    interface = "eth0"
    router_id = 51
    password  = var.pw
  }
  tls {
    ca_cert = file("ca.crt")
    ca_key  = var.ca_key
  }
}
