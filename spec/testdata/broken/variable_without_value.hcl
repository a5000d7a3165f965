variable "region" { # ERROR: PGHERD_VAR_region
  type = string
}

host "db1" {
  address = "10.0.0.1"
  labels  = { region = var.region }
}

variable "bad_type" {
  type = strin # ERROR: The keyword "strin" is not a valid type specification
}

variable "bad_default" {
  type    = number
  default = "many" # ERROR: does not match its type
}

variable "uses_var" {
  default = var.region # ERROR: Variables not allowed
}
