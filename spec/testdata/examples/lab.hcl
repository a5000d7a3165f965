# pgherd lab "pgherd-lab": 4 hosts on 10.77.0.0/24. Written by `pgherd lab up`.

ssh {
  user             = "root"
  private_key_file = "/home/u/.cache/pgherd/lab/pgherd-lab/id_ed25519"
  known_hosts_file = "/home/u/.cache/pgherd/lab/pgherd-lab/known_hosts"
  host_key_check   = "strict"
}

host "node1" {
  address = "10.77.0.11"
}

host "node2" {
  address = "10.77.0.12"
}

host "node3" {
  address = "10.77.0.13"
}

host "node4" {
  address = "10.77.0.14"
}
