variable "db_password" {
  sensitive = true
}

host "a" {
  address = "10.0.0.1"
}

cluster "main" {
  postgres {
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  ha {
    ttl           = "1500ms" # ERROR: The ttl (1.5s) must be at least 2s
    loop_wait     = "500ms"
    retry_timeout = "1s"
    api_port      = 70000 # ERROR: must be a port number
    api_token     = var.db_password
    synchronous_node_count = 0 # ERROR: must be at least 1
    switchover_timeout = "500ms" # ERROR: must be at least 1s
  }

  etcd {
    heartbeat_interval = 10 # ERROR: is not a positive duration
  }

  keepalived { # ERROR: keepalived moves the VIP between HAProxy hosts, and the cluster has none
    vip = "10.0.0.300/24" # ERROR: is not an address with a prefix length
  }
}
