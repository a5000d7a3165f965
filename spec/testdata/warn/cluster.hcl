variable "db_password" {
  sensitive = true
}

variable "plain" {
  default = "not-a-secret"
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

host "node4" {
  address = "10.77.0.14"
}

cluster "main" { # WARNING: Every PostgreSQL host has nofailover = true or priority = 0
  postgres {
    hosts                = ["node1", "node2", "node3"]
    superuser_password   = "postgres" # WARNING: The superuser_password is not sensitive: it would be shown in plans
    replication_password = var.db_password

    role "app" {
      password = var.plain # WARNING: The password of role "app" is not sensitive
    }
  }

  etcd {
    hosts              = ["node1", "node2", "node3", "node4"] # WARNING: An etcd cluster of 4 members survives the loss of 1, no more than one of 3
    heartbeat_interval = "500ms"
    election_timeout   = "5s"
  }

  ha { # WARNING: a primary among them has only 1 possible synchronous replicas
    ttl                    = "7s" # WARNING: etcd grants no lease shorter than 8s
    retry_timeout          = "5s"
    synchronous_mode       = "strict"
    synchronous_node_count = 2
    api_token              = "${var.plain}-token" # WARNING: The api_token is not sensitive
  }

  member "node1" {
    nofailover = true
  }

  member "node2" {
    priority = 0
    nosync   = true
  }

  member "node3" {
    nofailover = true
  }

  haproxy {}

  keepalived {
    vip      = "10.77.0.100/24"
    password = "vrrp" # WARNING: The VRRP password is not sensitive
  }
}
