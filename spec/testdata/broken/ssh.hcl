ssh {
  jump_host        = "ops@:22" # ERROR: Invalid jump host
  command_timeout  = "-1m" # ERROR: not a positive duration
  private_key_file = "" # ERROR: must not be empty
}

sysctl "swappiness" { # ERROR: Invalid sysctl key
  value = 1
}

sysctl "vm.overcommit_memory" { # ERROR: The argument "value" is required
}

user "Bad User" { # ERROR: Invalid user name
}
