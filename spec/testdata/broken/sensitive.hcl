# db_password comes from PGHERD_VAR_db_password="hunter2 SECRET!" in the test:
# no diagnostic may show it.
variable "db_password" {
  sensitive = true
}

host "db1" {
  address = var.db_password # ERROR: The address (sensitive) is neither
  port    = var.db_password # ERROR: a number is required
}

file "/etc/a" {
  content = var.db_password
  mode    = var.db_password # ERROR: The mode (sensitive) is not valid
  state   = var.db_password # ERROR: The value (sensitive) is not allowed
}

file "/etc/b" {
  content = file(var.db_password) # ERROR: its path is sensitive
}

file "/etc/c" {
  content = var.db_password + 1 # ERROR: Unsuitable value for left operand
}

file "/etc/d" {
  source = var.db_password # ERROR: the path is sensitive
}
