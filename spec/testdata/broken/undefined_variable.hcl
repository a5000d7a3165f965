variable "address" {
  default = "10.0.0.1"
}

host "db1" {
  address = var.adress # ERROR: Did you mean "address"?
}

host "db2" {
  address = var.nowhere_near # ERROR: Reference to undeclared input variable
}

host "db3" {
  address = local.address # ERROR: There is no variable named "local"
}
