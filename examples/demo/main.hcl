# The demo converged by `make demo` on the lab's hosts (the lab writes the
# ssh and host blocks to lab.hcl; pgherd reads both files as one spec).

variable "greeting" {
  description = "what the demo page says"
  default     = "Hello from pgherd"
}

variable "api_token" {
  description = "a secret: never shown in plans or logs"
  sensitive   = true
  default     = "demo-token-0f9a"
}

group "demo" {
  system = true
}

user "demo" {
  group  = "demo"
  system = true
  home   = "/srv/demo"
  shell  = "/usr/sbin/nologin"
}

directory "/srv/demo" {
  owner = "demo"
  group = "demo"
  mode  = "0750"
}

directory "/etc/pgherd-demo" {
  mode = "0755"
}

package "htop" {}

file "/srv/demo/index.txt" {
  content = "${var.greeting}\n"
  owner   = "demo"
  group   = "demo"
  notify  = ["service.pgherd-demo"]
}

file "/etc/pgherd-demo/token" {
  content = var.api_token
  owner   = "demo"
  group   = "demo"
  mode    = "0600"
}

service "pgherd-demo" {
  enabled = true
  state   = "running"
  unit    = <<-EOT
    [Unit]
    Description=pgherd demo service

    [Service]
    User=demo
    ExecStart=/bin/sh -c 'while :; do cat /srv/demo/index.txt >/dev/null; sleep 60; done'

    [Install]
    WantedBy=multi-user.target
  EOT
}
