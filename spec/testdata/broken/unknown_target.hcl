host "db1" {
  address = "10.0.0.1"
  roles   = ["postgres"]
}

package "nginx" {
  hosts = ["db2"] # ERROR: No host named "db2" is declared. Did you mean "db1"?
}

package "postgresql-16" {
  roles = ["postgre"] # ERROR: Unknown role in target
}
