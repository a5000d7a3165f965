variable "db_password" {
  sensitive = true
}

host "node1" {
  address = "10.77.0.11"
  roles   = ["db"]
}

host "node2" {
  address = "10.77.0.12"
  roles   = ["db"]
}

host "node3" {
  address = "10.77.0.13"
}

cluster "main" {
  postgres {
    hosts                = ["node1", "node2", "nod3"] # ERROR: No host named "nod3" is declared. Did you mean "node3"?
    roles                = ["dbs"] # ERROR: No host has the role "dbs". Did you mean "db"?
    superuser_password   = var.db_password
    replication_password = var.db_password
  }

  etcd {
    hosts       = ["node1", "node2", "node3"]
    client_port = 5432 # ERROR: The port 5432 of etcd.client_port is also the port of postgres.port, on hosts "node1", "node2"
  }

  ha {
    api_port = 2380 # ERROR: The port 2380 of ha.api_port is also the port of etcd.peer_port
  }

  member "node3" { # ERROR: The host "node3" does not run PostgreSQL in this cluster
  }

  member "node4" { # ERROR: No host named "node4" is declared. Did you mean "node1"?
  }

  member "node1" {
    priority = -1 # ERROR: The priority must be 0 or more
  }

  member "node1" { # ERROR: The member "node1" was already declared
  }

  haproxy {
    hosts        = ["node1"]
    primary_port = 6000
    replica_port = 6000 # ERROR: The port 6000 of haproxy.replica_port is also the port of haproxy.primary_port, on host "node1"
  }

  keepalived {
    hosts     = ["node1", "node2"] # ERROR: The host "node2" does not run HAProxy
    vip       = "10.77.0.12/24" # ERROR: The VIP 10.77.0.12 is the address of host "node2"
    router_id = 256 # ERROR: The router_id must be from 1 to 255
    password  = var.db_password # ERROR: The VRRP password has 15 characters; VRRP's PASS authentication uses at most 8
    interface = "this-is-too-long-for-linux" # ERROR: is not a network interface name
  }
}

cluster "other" { # ERROR: Only one cluster block is allowed
  postgres {
    superuser_password   = var.db_password
    replication_password = var.db_password
  }
}
