package "nginx" {
  state = "installed" # ERROR: use one of "present", "absent"
}

service "nginx" {
  state = "started" # ERROR: use one of "running", "stopped"
}

ssh {
  host_key_check = "off" # ERROR: Invalid value for host_key_check
}
