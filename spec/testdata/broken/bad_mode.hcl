file "/etc/a" {
  content = "a"
  mode    = "0999" # ERROR: Invalid mode
}

file "/etc/b" {
  content = "b"
  mode    = "107777" # ERROR: at most "07777"
}

directory "/srv/c" {
  mode = "rwx" # ERROR: Invalid mode
}
