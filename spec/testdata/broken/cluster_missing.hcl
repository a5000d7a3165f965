host "a" {
  address = "10.0.0.1"
}

cluster "main" { # ERROR: A cluster block needs a postgres block
  keepalived { # ERROR: The argument "vip" is required in a keepalived block
  }

  haproxy {
    hosts = [] # ERROR: The haproxy block names no host
  }

  bogus { # ERROR: Blocks of type "bogus" are not expected here
  }
}
