host "db1" {
  address = "db_1.example.com" # ERROR: Invalid address
}

host "db2" {
  address = "999.0.0.1" # ERROR: neither an IP address nor a valid DNS host name
}

host "db3" { # ERROR: The argument "address" is required
}

host "bad name" { # ERROR: Invalid host name
  address = "10.0.0.3"
}
