host "db1" {
  address = "10.0.0.1"
  port    = "ssh" # ERROR: a number is required
  roles   = "db" # ERROR: list of string required
  labels  = ["a"] # ERROR: map of string required
}

package "nginx" {
  hold = "maybe" # ERROR: a bool is required
}

group "dba" {
  gid = 1.5 # ERROR: must be a whole number
}

ssh {
  port = 70000 # ERROR: 1 to 65535
}
