# Every attribute of the cluster block, set.

variable "db_password" {
  type      = string
  sensitive = true
}

variable "ca_key" {
  type      = string
  sensitive = true
  default   = <<-EOT
    -----BEGIN PRIVATE KEY-----
    MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg0/Rzhkd0wUGttWyI
    c7YULNAGNyb0DM0OD9wsSrTaUgShRANCAAQLHwJEKGZow96hvAQkmXwAgD4/9qU7
    4yjGZI0VXrAc5/jtjhvUDCc/nIKEzBLY5GZmvyRpOjCpk28NE17HtWxK
    -----END PRIVATE KEY-----
  EOT
}

variable "app_password" {
  type      = string
  sensitive = true
  default   = "s3cr3t-app"
}

variable "api_token" {
  type      = string
  sensitive = true
  default   = "s3cr3t-token"
}

variable "vrrp_password" {
  type      = string
  sensitive = true
  default   = "s3cr3t"
}

host "node1" {
  address = "10.77.0.11"
  roles   = ["db", "lb"]
}

host "node2" {
  address = "10.77.0.12"
  roles   = ["db", "lb"]
}

host "node3" {
  address = "10.77.0.13"
  roles   = ["db"]
}

host "witness" {
  address = "10.77.0.14"
  roles   = ["dcs"]
}

cluster "main" {
  postgres {
    version              = 16
    package_version      = "16.4-1.pgdg120+1"
    port                 = 5433
    data_dir             = "/srv/pg/16/main"
    roles                = ["db"]
    superuser_password   = var.db_password
    replication_user     = "repl"
    replication_password = "repl-${var.db_password}"
    parameters = {
      shared_buffers                = "128MB"
      max_connections               = 200
      hot_standby_feedback          = true
      "auto_explain.log_min_duration" = "250ms"
    }

    hba {
      type   = "local"
      method = "peer"
    }

    hba {
      type     = "hostssl"
      database = "app"
      user     = "app"
      address  = "10.77.0.0/24"
      method   = "cert"
    }

    hba {
      address = "samenet"
    }

    role "readers" {
      login = false
    }

    role "app" {
      password         = var.app_password
      login            = true
      superuser        = false
      createdb         = true
      createrole       = true
      replication      = false
      connection_limit = 50
      member_of        = ["readers", "pg_read_all_stats"]
    }

    database "app" {
      owner      = "app"
      extensions = ["pg_stat_statements", "pgcrypto"]
    }

    database "reports" {}
  }

  etcd {
    hosts              = ["node1", "node2"]
    roles              = ["dcs"]
    client_port        = 12379
    peer_port          = 12380
    heartbeat_interval = "100ms"
    election_timeout   = "1s"
    tls                = true
  }

  ha {
    ttl                     = "20s"
    loop_wait               = "2s"
    retry_timeout           = "8s"
    maximum_lag_on_failover = "16MB"
    synchronous_mode        = "strict"
    synchronous_node_count  = 1
    synchronous_quorum      = true
    api_port                = 8009
    api_token               = var.api_token
    pause                   = true
  }

  rolling {
    max_lag             = "64MB"
    max_transaction_age = "30s"
    timeout             = "10m"
  }

  member "node3" {
    priority   = 0
    nofailover = true
    nosync     = true
  }

  member "node2" {
    priority = 2
  }

  haproxy {
    roles           = ["lb"]
    primary_port    = 6000
    replica_port    = 6001
    stats_port      = 7001
    check_interval  = "500ms"
    max_connections = 500
  }

  keepalived {
    hosts     = ["node2"]
    vip       = "10.77.0.100/24"
    interface = "ens3"
    router_id = 7
    password  = var.vrrp_password
  }

  tls {
    ca_cert = file("../tls/ca.crt")
    ca_key  = var.ca_key
  }
}
