variable "hosts" {
  type = map(string)
  default = {
    pg1 = "192.0.2.1"
  }
}

variable "token" {
  sensitive = true
  default   = "s3cr3t-token"
}
