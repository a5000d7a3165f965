variable "s" {
  type    = string
  default = "default"
}

variable "n" {
  type    = number
  default = 1
}

variable "l" {
  type    = list(string)
  default = []
}

variable "a" {
  default = "x"
}

host "h" {
  address = "10.0.0.1"
  labels = {
    s = var.s
    n = tostring(var.n)
    l = join(",", var.l)
    a = jsonencode(var.a)
  }
}
