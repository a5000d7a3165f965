hots "db1" { # ERROR: Blocks of type "hots" are not expected here. Did you mean "host"?
  address = "10.0.0.1"
}

frobnicate "x" { # ERROR: Unsupported block type
}
