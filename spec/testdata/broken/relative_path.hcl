file "etc/motd" { # ERROR: is relative
  content = "hi"
}

directory "/var/lib/../tmp" { # ERROR: write it "/var/tmp"
}

directory "/srv/data/" { # ERROR: is not clean
}
