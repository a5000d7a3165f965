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

host "c" {
  address = "10.0.0.3"
}

host "d" {
  address = "10.0.0.4"
}

cluster "pg" {
  postgres {
    hosts                = ["a", "b", "c"]
    superuser_password   = var.pw
    replication_password = var.pw
  }

  etcd {
    tls = false # ERROR: The cluster has a tls block, so etcd serves its clients and peers over TLS
  }

  tls {
    ca_cert = file("../tls/ca.crt")
    ca_key  = file("../tls/other-ca.key") # ERROR: The ca_key is not the key of any certificate of ca_cert

    host "a" {
      cert = file("../tls/a.crt")
      key  = file("../tls/ca.key") # ERROR: The key of host "a" is not the key of its certificate
    }
    host "b" {
      cert = file("../tls/a-other-ca.crt") # ERROR: it is not signed by a CA of ca_cert
      key  = file("../tls/ca.key") # ERROR: The key of host "b" is not the key of its certificate
    }
    host "c" {
      cert = file("../tls/a-expired.crt") # ERROR: it expired on 2024-06-01
      key  = file("../tls/ca.key") # ERROR: The key of host "c" is not the key of its certificate
    }
    host "d" { # ERROR: The host "d" runs neither etcd nor PostgreSQL
      cert = file("../tls/a.crt")
      key  = file("../tls/ca.key")
    }
  }
}
