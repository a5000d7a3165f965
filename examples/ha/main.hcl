# A highly available PostgreSQL cluster on the lab's three hosts: PostgreSQL
# and etcd on node1..node3, HAProxy and keepalived on node1 and node2, with
# the virtual IP 10.77.0.100 in front. The lab writes the ssh and host blocks
# to lab.hcl; pgherd reads both files as one spec:
#
#   pgherd plan examples/ha ~/.cache/pgherd/lab/pgherd-lab/lab.hcl
#
# The passwords' defaults suit the lab demo only: elsewhere, give them with
# -var, a -var-file or PGHERD_VAR_<name>.

variable "pg_superuser_password" {
  type        = string
  sensitive   = true
  default     = "lab-superuser-pw"
  description = "Password of the postgres superuser."
}

variable "pg_replication_password" {
  type        = string
  sensitive   = true
  default     = "lab-replication-pw"
  description = "Password of the replication role."
}

variable "app_password" {
  type        = string
  sensitive   = true
  default     = "lab-app-pw"
  description = "Password of the application's role."
}

variable "api_token" {
  type        = string
  sensitive   = true
  default     = "lab-api-token"
  description = "Bearer token of the agents' REST API write verbs."
}

variable "vrrp_password" {
  type        = string
  sensitive   = true
  default     = "lab-vrrp"
  description = "keepalived's VRRP password (at most 8 characters)."
}

variable "backup_passphrase" {
  type        = string
  sensitive   = true
  default     = "lab-backup-passphrase"
  description = "Passphrase of the backup repository's encryption key."
}

cluster "lab" {
  postgres {
    version              = 15
    hosts                = ["node1", "node2", "node3"]
    superuser_password   = var.pg_superuser_password
    replication_password = var.pg_replication_password

    parameters = {
      shared_buffers             = "128MB"
      max_connections            = 200
      log_min_duration_statement = "1s"
    }

    hba {
      type     = "host"
      database = "app"
      user     = "app"
      address  = "10.77.0.0/24"
      method   = "scram-sha-256"
    }

    role "app" {
      password = var.app_password
    }

    database "app" {
      owner      = "app"
      extensions = ["pg_stat_statements"]
    }
  }

  etcd {
    hosts              = ["node1", "node2", "node3"]
    heartbeat_interval = "50ms"
    election_timeout   = "500ms"
  }

  # The default timings (ttl 3s, loop_wait 500ms) replace a lost primary
  # host in about 4 s; docs/ha.md says why they are safe.
  ha {
    synchronous_mode = "off"
    api_token        = var.api_token
  }

  haproxy {
    hosts        = ["node1", "node2"]
    primary_port = 5000
    replica_port = 5001
    stats_port   = 7000
  }

  keepalived {
    vip       = "10.77.0.100/24"
    interface = "eth0"
    router_id = 51
    password  = var.vrrp_password
  }

  # WAL archiving and base backups (taken from a standby) into a directory
  # of each PostgreSQL host; mount shared storage (NFS) there, or use an
  # sftp or s3 repository, to survive the loss of a host.
  backup {
    compression_level     = 3
    encryption_passphrase = var.backup_passphrase

    repository {
      type = "path"
      path = "/var/lib/pgherd/backup"
    }

    schedule {
      full        = "Sun *-*-* 01:00:00"
      incremental = "Mon..Sat *-*-* 01:00:00"
    }

    retention {
      full = 2
      age  = "336h"
    }
  }
}
