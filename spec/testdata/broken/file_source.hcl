file "/etc/a" {
  source = "no/such/file.txt" # ERROR: Cannot read source file
}

file "/etc/b" {
  content = "b"
  source  = "../good/files/issue.txt" # ERROR: not both
}

file "/etc/c" { # ERROR: set exactly one of content or source
  mode = "0600"
}

file "/etc/d" {
  content = file("missing.txt") # ERROR: Call to function "file" failed
}
