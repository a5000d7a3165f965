host "db1" {
  address = "10.0.0.1"
}

host "db1" { # ERROR: already declared at testdata/broken/duplicate.hcl:1
  address = "10.0.0.2"
}

package "nginx" {}
package "nginx" {} # ERROR: Duplicate package block

service "nginx" {}
service "nginx.service" {} # ERROR: already declared

variable "x" { default = 1 }
variable "x" { default = 2 } # ERROR: Duplicate variable
