variable "x" {
type = string
  default="a"
    }
host "db1" {
address="10.0.0.1"
  roles = [ "a","b" ]
      labels = {
   zone="a"
   environment = "prod"
  }
}
