variable "db_password" {
  sensitive = true
}

host "a" {
  address = "10.0.0.1"
}

host "b" {
  address = "10.0.0.2"
}

cluster "Main_1" { # ERROR: "Main_1" is not a valid cluster name
  postgres {
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  etcd {
    heartbeat_interval = "100ms"
    election_timeout   = "300ms" # ERROR: must be at least 5 times the heartbeat_interval
  }

  ha {
    ttl                     = "3s" # ERROR: The ttl (3s) must be more than twice loop_wait (2s)
    loop_wait               = "2s"
    retry_timeout           = "3s" # ERROR: The retry_timeout (3s) must be less than the ttl (3s)
    maximum_lag_on_failover = "1 PB" # ERROR: The value "1 PB" of "maximum_lag_on_failover" is not a size: the unit "PB" is unknown
    synchronous_mode        = "on"
    synchronous_node_count  = 2 # ERROR: The synchronous_node_count (2) must be less than the number of PostgreSQL hosts (2)
  }

  rolling {
    max_lag = "lots" # ERROR: The value "lots" of "max_lag" is not a size
    timeout = "0s" # ERROR: The value "0s" of "timeout" is not a positive duration
  }

  haproxy {
    check_interval  = "often" # ERROR: The value "often" of "check_interval" is not a positive duration
    max_connections = 0 # ERROR: The max_connections must be at least 1
  }
}
