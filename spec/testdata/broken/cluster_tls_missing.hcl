variable "pw" {
  sensitive = true
  default   = "secret"
}

host "a" {
  address = "10.0.0.1"
}

host "b" {
  address = "10.0.0.2"
}

cluster "pg" {
  postgres {
    superuser_password   = var.pw
    replication_password = var.pw
  }

  tls { # ERROR: The hosts "b" have no certificate: give ca_key
    ca_cert = file("../tls/ca.crt")

    host "a" {
      cert = file("../tls/a-wrong-ip.crt") # ERROR: does not name its address 10.0.0.1
      key  = file("../tls/a.key") # ERROR: is not the key of its certificate
    }
  }
}

cluster "other" { # ERROR: Only one cluster block is allowed
  postgres {
    superuser_password   = var.pw
    replication_password = var.pw
  }
}
