variable "db_password" {
  type        = string
  sensitive   = true
  description = "Password of the replication user."
}

variable "pg_version" {
  type    = number
  default = 16
}

variable "admins" {
  type    = list(string)
  default = ["alice", "bob"]
}

variable "env" {
  type    = string
  default = "prod"
}

ssh {
  user             = "deploy"
  port             = 2222
  private_key_file = "~/.ssh/id_ed25519"
  use_agent        = false
  host_key_check   = "accept-new"
  jump_host        = "ops@bastion.example.com:22"
  sudo             = true
  connect_timeout  = "5s"
  command_timeout  = "30m"
}

host "db1" {
  address = "10.0.0.11"
  roles   = ["postgres", "etcd"]
  labels  = { zone = "a", env = var.env }
}

host "db2" {
  address = "db2.example.com"
  user    = "admin"
  port    = 22022
  roles   = ["postgres"]
}

host "lb1" {
  address = "2001:db8::1"
  roles   = ["haproxy"]
}

package "postgresql-16" {
  version = "16.4-1.pgdg120+1"
  hold    = true
  roles   = ["postgres"]
}

package "telnet" {
  state = "absent"
}

file "/etc/motd" {
  content = upper("managed by pgherd (${var.env})\n")
  mode    = "644"
}

file "/etc/pgherd/replication.pass" {
  content = "replicator:${var.db_password}\n"
  owner   = "postgres"
  group   = "postgres"
  mode    = "0600"
  roles   = ["postgres"]
}

file "/etc/haproxy/haproxy.cfg" {
  content = templatefile("files/haproxy.cfg.tpl", { backends = ["db1", "db2"], port = 5432 })
  hosts   = ["lb1"]
  notify  = ["service.haproxy"]
}

file "/etc/issue" {
  source = "files/issue.txt"
}

file "/etc/old.conf" {
  state = "absent"
}

directory "/var/lib/pgherd" {
  owner = "postgres"
  mode  = "0750"
}

group "dba" {
  gid    = 2000
  system = true
}

user "dba" {
  uid    = 2000
  group  = "dba"
  groups = concat(["adm"], var.admins)
  home   = "/home/dba"
  shell  = "/bin/bash"
}

service "haproxy" {
  enabled = true
  state   = "running"
  reload  = true
  hosts   = ["lb1"]
}

service "pgherd-agent.service" {
  enabled = true
  unit    = file("files/agent.service")
}

sysctl "vm.swappiness" {
  value = 1
}
