file "/etc/token" {
  content = jsonencode({ token = var.token })
  roles   = ["db"]
}

sysctl "kernel.shmmax" {
  value = "68719476736"
}
