# A highly available PostgreSQL cluster on four lab hosts: PostgreSQL and
# etcd on node1..node3, HAProxy and keepalived on node1 and node2, with the
# virtual IP 10.77.0.100 in front, and the backup repository on node4, an
# SFTP server every database host reaches (so that backups and archived WAL
# outlive any database host). The lab writes the ssh and host blocks to
# lab.hcl; pgherd reads both files as one spec:
#
#   pgherd lab up --hosts 4
#   pgherd plan examples/ha ~/.cache/pgherd/lab/pgherd-lab/lab.hcl
#
# The passwords' and keys' defaults suit the lab demo only: elsewhere, give
# them with -var, a -var-file or PGHERD_VAR_<name>.

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

variable "backup_sftp_private_key" {
  type        = string
  sensitive   = true
  description = "The key the agents log in to the backup SFTP server with (its public half is in authorized_keys below)."
  default     = <<-EOT
    -----BEGIN OPENSSH PRIVATE KEY-----
    b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
    QyNTUxOQAAACDZoZBz7LqcO02tfSV0kP1hnvmCb7NC7DVL9/AXUPZmaAAAAKDeS0HF3ktB
    xQAAAAtzc2gtZWQyNTUxOQAAACDZoZBz7LqcO02tfSV0kP1hnvmCb7NC7DVL9/AXUPZmaA
    AAAEAa2sbj03qRn1/FK1diesY742vNDbFPwsYsaIAsNC6kWdmhkHPsupw7Ta19JXSQ/WGe
    +YJvs0LsNUv38BdQ9mZoAAAAGHBnaGVyZCBsYWIgYmFja3VwIGNsaWVudAECAwQF
    -----END OPENSSH PRIVATE KEY-----
  EOT
}

variable "backup_sftp_host_private_key" {
  type        = string
  sensitive   = true
  description = "The backup SFTP server's host key (its public half is the repository's host_key below)."
  default     = <<-EOT
    -----BEGIN OPENSSH PRIVATE KEY-----
    b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
    QyNTUxOQAAACBArarUZZKcYJkdej2EF9a42XAEjB++0rf/ASGJehyJWwAAAKijUxjko1MY
    5AAAAAtzc2gtZWQyNTUxOQAAACBArarUZZKcYJkdej2EF9a42XAEjB++0rf/ASGJehyJWw
    AAAECAVNdvnbY6u+ixB1C7zMl8PzhsJjkiZGj42Dx+Mpyy/UCtqtRlkpxgmR16PYQX1rjZ
    cASMH77St/8BIYl6HIlbAAAAH3BnaGVyZCBsYWIgYmFja3VwIHNmdHAgaG9zdCBrZXkBAg
    MEBQY=
    -----END OPENSSH PRIVATE KEY-----
  EOT
}

# The backup repository's server on node4: a second sshd, on port 2222,
# that lets only the pgherd-backup user in, by key, for SFTP only, into
# /srv/pgherd-backup. It has its own host key, so that the agents can check
# it from the first connection. On your own network, point the repository
# at any SFTP server (or use a path on NFS, or S3) and drop these blocks.
user "pgherd-backup" {
  system = true
  home   = "/srv/pgherd-backup"
  shell  = "/usr/sbin/nologin"
  hosts  = ["node4"]
}

directory "/srv/pgherd-backup" {
  owner = "pgherd-backup"
  mode  = "0700"
  hosts = ["node4"]
}

directory "/etc/ssh/pgherd-backup" {
  hosts = ["node4"]
}

file "/etc/ssh/pgherd-backup/ssh_host_ed25519_key" {
  content = var.backup_sftp_host_private_key
  mode    = "0600"
  notify  = ["service.pgherd-backup-sftp"]
  hosts   = ["node4"]
}

file "/etc/ssh/pgherd-backup/authorized_keys" {
  content = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINmhkHPsupw7Ta19JXSQ/WGe+YJvs0LsNUv38BdQ9mZo pgherd lab backup client\n"
  hosts   = ["node4"]
}

file "/etc/ssh/pgherd-backup/sshd_config" {
  content = <<-EOT
    Port 2222
    HostKey /etc/ssh/pgherd-backup/ssh_host_ed25519_key
    PidFile /run/pgherd-backup-sftp.pid
    AuthorizedKeysFile /etc/ssh/pgherd-backup/authorized_keys
    AllowUsers pgherd-backup
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    PermitRootLogin no
    DisableForwarding yes
    UsePAM yes
    Subsystem sftp internal-sftp
    ForceCommand internal-sftp
  EOT
  notify  = ["service.pgherd-backup-sftp"]
  hosts   = ["node4"]
}

service "pgherd-backup-sftp" {
  enabled = true
  state   = "running"
  unit    = <<-EOT
    [Unit]
    Description=SFTP server of the pgherd backup repository
    After=network.target

    [Service]
    ExecStartPre=/usr/bin/mkdir -p /run/sshd
    ExecStartPre=/usr/sbin/sshd -t -f /etc/ssh/pgherd-backup/sshd_config
    ExecStart=/usr/sbin/sshd -D -f /etc/ssh/pgherd-backup/sshd_config
    Restart=on-failure

    [Install]
    WantedBy=multi-user.target
  EOT
  hosts   = ["node4"]
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

  # WAL archiving and base backups (taken from a standby) into the SFTP
  # repository on node4, which every member reaches: the new primary goes
  # on archiving after a failover, and any host can restore.
  backup {
    compression_level     = 3
    encryption_passphrase = var.backup_passphrase

    repository {
      type        = "sftp"
      host        = "10.77.0.14"
      port        = 2222
      user        = "pgherd-backup"
      private_key = var.backup_sftp_private_key
      host_key    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIECtqtRlkpxgmR16PYQX1rjZcASMH77St/8BIYl6HIlb"
      root        = "/srv/pgherd-backup"
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
