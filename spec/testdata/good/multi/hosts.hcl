host "pg1" {
  address = var.hosts["pg1"]
  roles   = ["db"]
}
