ssh {
  user = "a"
}

ssh { # ERROR: Only one ssh block is allowed; the first is at testdata/broken/two_ssh.hcl:1
  user = "b"
}

ssh { # ERROR: Duplicate ssh block
  connect_timeout = "soon" # ERROR: Invalid duration
}
