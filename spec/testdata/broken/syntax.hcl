host "db1" {
  address = "10.0.0.1" "10.0.0.2" # ERROR: Missing newline after argument
}
