variable "db_password" {
  sensitive = true
}

host "a" {
  address = "10.0.0.1"
}

cluster "main" {
  postgres {
    version              = 12 # ERROR: PostgreSQL 12 is not supported
    package_version      = "15.18-0+deb12u1" # ERROR: must start with "12."
    data_dir             = "var/lib/pg" # ERROR: is relative
    superuser_password   = "" # ERROR: The superuser_password must not be empty
    replication_user     = "postgres" # ERROR: "postgres" cannot be the replication user
    replication_password = var.db_password
    parameters = { # ERROR: The parameter "port" is set by pgherd: set port in the postgres block
      port       = 5433
      "Bad-Name" = 1
    }

    hba {
      type    = "local"
      address = "10.0.0.0/8" # ERROR: remove address
    }

    hba { # ERROR: The argument "address" is required in an hba rule of type "host"
      method = "peer" # ERROR: The method "peer" only works for connections of type "local"
    }

    hba {
      type    = "hostssl"
      address = "10.0.0.0/33" # ERROR: is neither a CIDR
      method  = "password" # ERROR: The value "password" is not allowed here
    }

    role "App" { # ERROR: "App" is not a valid role name
    }

    role "pg_monitor" { # ERROR: "pg_monitor" is not a valid role name
    }

    role "app" {
      member_of        = ["reader", "app"] # ERROR: The role "reader" is not declared. Did you mean "readers"?
      connection_limit = -2 # ERROR: must be -1 (no limit) or more
    }

    role "readers" {
      login = false
    }

    role "readers" { # ERROR: The role "readers" was already declared
    }

    database "app" {
      owner      = "apps" # ERROR: The owner "apps" of database "app" is not a declared role. Did you mean "app"?
      extensions = ["pg stat"] # ERROR: "pg stat" is not an extension name
    }

    database "template1" { # ERROR: "template1" is not a valid database name
    }

    database "app" { # ERROR: The database "app" was already declared
    }
  }

  postgres { # ERROR: Only one postgres block is allowed in a cluster block
  }
}

cluster "main" { # ERROR: Only one cluster block is allowed
}
