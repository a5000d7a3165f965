host "db1" {
  address = "10.0.0.1"
  rolse   = ["db"] # ERROR: Did you mean "roles"?
}

package "nginx" {
  versoin = "1.22" # ERROR: An argument named "versoin" is not expected here
}

colour = "blue" # ERROR: Unsupported argument
